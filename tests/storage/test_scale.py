"""Scale detection: the recommendation table, the signals, `storage status`, the policy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from milestones.agents.coord import Agents
from milestones.cli import cli
from milestones.errors import InvalidInput
from milestones.model import events as ev
from milestones.ops import activity, scale
from milestones.ops.migrate import checksums, migrate
from milestones.ops.scale import Signals, Thresholds, recommend
from milestones.project import Project
from milestones.storage import open_store
from milestones.storage.file import FileStore
from milestones.storage.memory import MemoryStore

WITH_HYBRID = ("file", "hybrid", "database")
NO_HYBRID = ("file", "database")


# ------------------------------------------------------------ the pure table


@pytest.mark.parametrize(
    ("milestones", "team", "available", "backend", "ideal", "pending"),
    [
        (24, 1, WITH_HYBRID, "file", "file", None),
        (25, 1, WITH_HYBRID, "hybrid", "hybrid", None),
        (99, 1, WITH_HYBRID, "hybrid", "hybrid", None),
        (100, 1, WITH_HYBRID, "database", "database", None),
        (1, 4, WITH_HYBRID, "file", "file", None),
        (1, 5, WITH_HYBRID, "hybrid", "hybrid", None),
        (1, 19, WITH_HYBRID, "hybrid", "hybrid", None),
        (1, 20, WITH_HYBRID, "database", "database", None),
        (24, 4, WITH_HYBRID, "file", "file", None),
        (99, 19, WITH_HYBRID, "hybrid", "hybrid", None),
        # hybrid not built: stay, say hybrid would be recommended; database only past
        # the database thresholds.
        (24, 1, NO_HYBRID, "file", "file", None),
        (25, 1, NO_HYBRID, "file", "hybrid", "hybrid"),
        (99, 1, NO_HYBRID, "file", "hybrid", "hybrid"),
        (100, 1, NO_HYBRID, "database", "database", None),
        (1, 5, NO_HYBRID, "file", "hybrid", "hybrid"),
        (1, 19, NO_HYBRID, "file", "hybrid", "hybrid"),
        (1, 20, NO_HYBRID, "database", "database", None),
    ],
)
def test_seed_table_from_file(milestones: int, team: int, available: tuple[str, ...],
                              backend: str, ideal: str, pending: str | None) -> None:
    rec = recommend(Signals(milestones=milestones, team=team), "file", available=available)
    assert (rec.backend, rec.ideal, rec.pending) == (backend, ideal, pending)
    assert rec.change == (backend != "file")


def test_recommendations_only_go_up() -> None:
    rec = recommend(Signals(milestones=3), "database", available=WITH_HYBRID)
    assert (rec.backend, rec.ideal, rec.change) == ("database", "file", False)
    assert "never suggested" in rec.explain()
    rec = recommend(Signals(milestones=50), "hybrid", available=WITH_HYBRID)
    assert not rec.change
    rec = recommend(Signals(milestones=100), "hybrid", available=WITH_HYBRID)
    assert rec.backend == "database"


@pytest.mark.parametrize(
    ("p95", "samples", "current", "available", "backend"),
    [
        (499.0, 200, "file", WITH_HYBRID, "file"),
        (500.0, 200, "file", WITH_HYBRID, "hybrid"),  # the next built backend up
        (500.0, 200, "file", NO_HYBRID, "database"),
        (500.0, 200, "hybrid", WITH_HYBRID, "database"),
        (900.0, 19, "file", WITH_HYBRID, "file"),  # too few commands to judge
        (900.0, 20, "file", WITH_HYBRID, "hybrid"),
        (900.0, 200, "database", WITH_HYBRID, "database"),  # nothing above it
        (None, 0, "file", WITH_HYBRID, "file"),
    ],
)
def test_latency_trigger(p95: float | None, samples: int, current: str,
                         available: tuple[str, ...], backend: str) -> None:
    rec = recommend(Signals(milestones=1, p95_ms=p95, samples=samples), current,
                    available=available)
    assert rec.backend == backend
    latency = next(f for f in rec.findings if f.signal == "latency")
    assert latency.detail["triggered"] == (p95 is not None and samples >= 20 and p95 >= 500)


def test_features_ask_for_hybrid_but_encryption_for_nothing() -> None:
    rec = recommend(Signals(milestones=1, features=frozenset({"agents"})), "file",
                    available=NO_HYBRID)
    assert (rec.backend, rec.pending) == ("file", "hybrid")
    assert "agents" in rec.explain()
    rec = recommend(Signals(milestones=1, features=frozenset({"encryption"})), "file",
                    available=WITH_HYBRID)
    assert not rec.change and rec.ideal == "file"


def test_the_note_names_the_signal_and_the_command() -> None:
    th = Thresholds(hybrid_below_milestones=30)
    rec = recommend(Signals(milestones=31, team=2), "file", th, available=NO_HYBRID)
    assert rec.note() == (
        "milestone: note: this project has 31 milestones; the database backend would serve "
        "it better — run `milestone storage migrate --to database`")
    rec = recommend(Signals(milestones=2, team=7), "file", available=WITH_HYBRID)
    assert rec.note().startswith("milestone: note: this project's team has 7 people")


def test_settings_read_the_config_and_report_bad_values() -> None:
    policy, th, problems = scale.settings({"scale": {"policy": "auto", "file_below_team": 3,
                                                     "latency_p95_ms": 250.5}})
    assert (policy, th.file_below_team, th.latency_p95_ms, problems) == ("auto", 3, 250.5, [])
    assert th.file_below_milestones == 25
    policy, th, problems = scale.settings({"scale": {"policy": "sometimes",
                                                     "hybrid_below_team": "many"}})
    assert policy == "suggest" and th.hybrid_below_team == 20 and len(problems) == 2
    problems = scale.settings({"scale": {"hybrid_below_milestones": 10}})[2]
    assert problems == ["scale.file_below_milestones (25) should be below "
                        "scale.hybrid_below_milestones (10)"]
    assert scale.settings({})[:2] == ("suggest", Thresholds())
    assert scale.settings({"scale": {"policy": False}})[0] == "off"  # YAML's bare `off`


def test_p95_and_team_size() -> None:
    assert scale.p95([]) is None
    assert scale.p95([float(i) for i in range(1, 101)]) == 95.0
    assert scale.p95([7.0]) == 7.0
    members = [{"ann@example.com", "Ann"}, {"carol"}]
    assert scale.team_size(members, ["ann@example.com", "bob@example.com"]) == 3
    assert scale.team_size([], ["a", "b"]) == 2


# -------------------------------------------------------------- CLI helpers


def invoke(root: Path, *args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(cli, ["-C", str(root), *args],
                                              catch_exceptions=False)


def ok(root: Path, *args: str) -> Result:
    result = invoke(root, *args)
    assert result.exit_code == 0, (args, result.output, result.stderr)
    return result


def metrics(root: Path) -> list[dict[str, Any]]:
    path = root / ".milestones" / "performance" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def configure(root: Path, text: str) -> None:
    (root / ".milestones" / "config" / "config.yaml").write_text(text)


def big(tmp_path: Path, n: int, backend: str = "file") -> Project:
    p, _ = Project.init(tmp_path, backend=backend, actor="ann@example.com", session_id="s1")
    p.plan_many([{"title": f"Milestone {i}", "tasks": [f"Task {i}"]} for i in range(n)])
    return p


# ------------------------------------------------------------------ metrics


def test_each_command_records_its_wall_time(project_dir: Path) -> None:
    ok(project_dir, "plan", "Alpha", "--task", "One")
    ok(project_dir, "task", "start", "1/1")
    ok(project_dir, "status")
    assert invoke(project_dir, "show", "99").exit_code != 0
    rows = metrics(project_dir)
    assert [(r["command"], r["ok"]) for r in rows] == [
        ("plan", True), ("task start", True), ("status", True), ("show", False)]
    for r in rows:
        assert set(r) == {"timestamp", "command", "ms", "backend", "ok"}
        assert r["backend"] == "file" and 0 < r["ms"] < 60_000
        assert datetime.strptime(r["timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    ignored = (project_dir / ".milestones" / "performance" / ".gitignore").read_text()
    assert "metrics.jsonl" in ignored.splitlines()


def test_no_project_no_metrics(tmp_path: Path) -> None:
    assert invoke(tmp_path, "status").exit_code != 0
    assert not (tmp_path / ".milestones").exists()


def test_metrics_stay_bounded(project_dir: Path) -> None:
    path = project_dir / ".milestones" / "performance" / "metrics.jsonl"
    path.parent.mkdir()
    line = {"timestamp": "2026-01-01T00:00:00Z", "command": "status", "ms": 10.0,
            "backend": "file", "ok": True}
    path.write_text("".join(json.dumps({**line, "n": i}) + "\n" for i in range(2100)))
    ok(project_dir, "status")
    rows = metrics(project_dir)
    assert len(rows) == 1000
    assert rows[0]["n"] == 2100 - 999 and rows[-1]["command"] == "status" and "n" not in rows[-1]
    for _ in range(3):
        ok(project_dir, "list")
    assert len(metrics(project_dir)) == 1003  # appended again, not rewritten


def test_a_metric_that_cannot_be_written_does_not_fail_the_command(project_dir: Path) -> None:
    (project_dir / ".milestones" / "performance" / "metrics.jsonl").mkdir(parents=True)
    assert "milestone-001" in ok(project_dir, "plan", "Alpha").output


def test_latency_reads_successful_commands_on_this_backend(project_dir: Path) -> None:
    root = project_dir / ".milestones"
    (root / "performance").mkdir()
    rows = ([{"command": "status", "ms": 900.0, "backend": "file", "ok": True}] * 30
            + [{"command": "storage migrate", "ms": 9000.0, "backend": "file", "ok": True}]
            + [{"command": "list", "ms": 9000.0, "backend": "database", "ok": True}]
            + [{"command": "show", "ms": 9000.0, "backend": "file", "ok": False}])
    (root / activity.METRICS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert activity.read_latencies(root, "file") == [900.0] * 30
    data = json.loads(ok(project_dir, "storage", "status", "--json").output)
    assert data["signals"]["latency"]["triggered"] is True
    assert data["recommendation"]["change"] is True
    assert data["signals"]["latency"]["samples"] == 30


# -------------------------------------------------------------------- team


def at(days_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("backend", ["file", "database", "hybrid", "memory"])
def test_distinct_actors_over_30_days(tmp_path: Path, backend: str) -> None:
    # No `init` event: that one would be stamped now, ahead of the older ones below.
    store = (MemoryStore(tmp_path / ".milestones") if backend == "memory"
             else open_store(tmp_path / ".milestones", backend))
    store.initialize()
    for who, days in [("first@example.com", 45), ("old@example.com", 31),
                      ("ann@example.com", 20), ("bob@example.com", 2), ("ann@example.com", 1),
                      ("agent:claude-1", 0.5)]:
        p = Project(store, cwd=tmp_path, actor=who, session_id="s")
        p.clock = lambda days=days: at(days)  # type: ignore[misc]
        p.plan(f"By {who}")
    since = activity.since_iso()
    found = activity.recent_activity(store, since)
    assert set(found.actors) == {"ann@example.com", "bob@example.com", "agent:claude-1"}
    assert at(2) < found.actors["ann@example.com"] <= at(0)  # last seen: the latest event
    assert activity.recent_activity(store, since, enough=2).actors.keys() <= set(found.actors)
    members = activity.team_members({"team": {"members": [
        {"name": "Ann", "email": "ann@example.com"}, {"name": "Dee"}, "eve"]}})
    assert scale.team_size(members, found.actors) == 5  # ann, dee, eve + bob, the agent


def test_agent_events_and_feature_files(project_dir: Path) -> None:
    root = project_dir / ".milestones"
    assert activity.features_in_use(root) == frozenset()
    (root / "agents").mkdir()
    (root / "web-dashboard").mkdir()
    (root / "config" / "encryption.key").write_text("k")
    assert activity.features_in_use(root) == {"agents", "dashboard", "encryption"}
    assert "agents" in activity.features_in_use(project_dir, agent_events=1)


def test_rotated_archives_count_in_status_but_not_after_a_write(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path, actor="old-timer@example.com", session_id="s")
    configure(tmp_path, "logs:\n  rotate_bytes: 2000\n")
    p = Project.open(tmp_path, actor="old-timer@example.com", session_id="s")
    for i in range(4):
        p.plan(f"Early {i}")
    archive = p.root / "logs" / "archive"
    if not any(archive.glob("*.gz")):
        pytest.skip("the log did not rotate")
    p = Project.open(tmp_path, actor="new@example.com", session_id="s")
    p.plan("Late")
    full = activity.recent_activity(p.store, activity.since_iso())
    quick = activity.recent_activity(p.store, activity.since_iso(), archives=False)
    assert set(full.actors) == {"old-timer@example.com", "new@example.com"}
    assert set(quick.actors) <= set(full.actors)


# ----------------------------------------------------------- storage status


def test_storage_status_json(tmp_path: Path) -> None:
    p = big(tmp_path, 3)
    p.start_task("1/1")
    data = json.loads(ok(tmp_path, "storage", "status", "--json").output)
    assert data["schema"] == 1 and data["backend"] == "file" and data["policy"] == "suggest"
    assert data["counts"] == {"milestones": 3, "tasks": 3, "events": p.state().last_event_id}
    sig = data["signals"]
    assert set(sig) == {"milestones", "team", "writes", "latency", "features"}
    assert sig["milestones"]["value"] == 3
    assert sig["milestones"]["thresholds"] == {"file": 25, "hybrid": 100}
    assert sig["writes"]["value"] > 0 and sig["writes"]["threshold"] == 600
    assert sig["team"]["thresholds"] == {"file": 5, "hybrid": 20, "database": 50}
    assert sig["team"]["recent_actors"] == ["ann@example.com"] and sig["team"]["value"] == 1
    assert sig["latency"]["threshold_ms"] == 500 and sig["latency"]["window"] == 200
    assert sig["features"]["agents"] is False
    assert all(s["tier"] == "file" for s in sig.values())
    rec = data["recommendation"]
    assert rec["backend"] == "file" and rec["change"] is False and rec["command"] is None
    assert data["migrations"] == [] and data["problems"] == []
    migrate(p.root, "database", actor="ann@example.com")
    data = json.loads(ok(tmp_path, "storage", "status", "--json").output)
    assert data["backend"] == "database"
    assert data["migrations"][0]["event"] == "migration_completed"
    assert (data["migrations"][0]["from"], data["migrations"][0]["to"]) == ("file", "database")
    text = ok(tmp_path, "storage", "status").output
    assert "Backend: database" in text and "file → database" in text


def test_storage_status_reports_config_problems(project_dir: Path) -> None:
    configure(project_dir, "scale:\n  policy: always\n")
    data = json.loads(ok(project_dir, "storage", "status", "--json").output)
    assert data["policy"] == "suggest" and "scale.policy" in data["problems"][0]


# ------------------------------------------------------------------- policy


def test_suggest_prints_the_note_once_a_day(tmp_path: Path) -> None:
    big(tmp_path, 100)
    first = ok(tmp_path, "plan", "One more")
    assert first.stderr == (
        "milestone: note: this project has 101 milestones; the database backend would serve "
        "it better — run `milestone storage migrate --to database`\n")
    assert ok(tmp_path, "plan", "And another").stderr == ""
    assert ok(tmp_path, "status").stderr == ""  # reads never speak
    memo = tmp_path / ".milestones" / activity.MEMO
    memo.write_text(json.dumps({"noted_on": "2000-01-01"}))
    assert "database backend would serve" in ok(tmp_path, "task", "start", "1/1").stderr
    assert open_store(tmp_path / ".milestones").backend == "file"  # only a suggestion


def test_team_and_latency_are_measured_once_an_hour(tmp_path: Path) -> None:
    big(tmp_path, 3)
    assert ok(tmp_path, "plan", "One more").stderr == ""
    memo_path = tmp_path / ".milestones" / activity.MEMO
    memo = json.loads(memo_path.read_text())
    assert memo["measured"]["team"] == 2 and memo["measured"]["backend"] == "file"  # ann, tester
    memo["measured"]["team"] = 50  # as if measured a moment ago
    memo_path.write_text(json.dumps(memo))
    assert "this project's team has 50 people" in ok(tmp_path, "plan", "Two more").stderr
    memo = json.loads(memo_path.read_text())
    memo["measured"]["at"] -= activity.MEASURE_EVERY
    memo["noted_on"] = "2000-01-01"
    memo_path.write_text(json.dumps(memo))
    assert ok(tmp_path, "plan", "Three more").stderr == ""  # measured again: a team of 2
    assert json.loads(memo_path.read_text())["measured"]["team"] == 2


def test_suggest_waits_for_hybrid_when_it_is_not_built(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale, "BACKENDS", NO_HYBRID)
    big(tmp_path, 30)
    assert ok(tmp_path, "plan", "One more").stderr == ""
    data = json.loads(ok(tmp_path, "storage", "status", "--json").output)
    assert data["recommendation"]["pending"] == "hybrid"
    assert "hybrid would be recommended once available" in data["recommendation"]["summary"]


def test_off_stays_quiet(tmp_path: Path) -> None:
    big(tmp_path, 100)
    configure(tmp_path, "scale:\n  policy: off\n")
    assert ok(tmp_path, "plan", "One more").stderr == ""
    assert not (tmp_path / ".milestones" / activity.MEMO).exists()
    assert open_store(tmp_path / ".milestones").backend == "file"


def test_auto_migrates_and_keeps_the_data(tmp_path: Path) -> None:
    p = big(tmp_path, 6)
    p.start_task("2/1")
    configure(tmp_path, "scale:\n  policy: auto\n  file_below_milestones: 3\n"
                        "  hybrid_below_milestones: 5\n")
    result = ok(tmp_path, "task", "done", "2/1")
    assert result.stderr.startswith("milestone: note: this project has 6 milestones; moved it "
                                    "to the database backend (scale.policy auto; backup: ")
    assert result.stderr.count("\n") == 1
    root = tmp_path / ".milestones"
    store = open_store(root)
    assert store.backend == "database"
    before = FileStore(root)
    assert checksums(store.load()) == checksums(before.load())
    events = list(store.events())
    assert events == list(before.events()) and ev.verify_chain(events) is None
    assert store.load().milestones["milestone-002"]["status"] == "completed"
    assert "milestone-003" in ok(tmp_path, "show", "3").output
    ok(tmp_path, "task", "start", "3/1")
    assert ok(tmp_path, "storage", "status").stderr == ""
    # A rollback is respected: afterwards auto only suggests.
    ok(tmp_path, "storage", "rollback")
    (root / activity.MEMO).unlink()
    again = ok(tmp_path, "task", "done", "3/1")
    assert "would serve it better" in again.stderr
    assert open_store(root).backend == "file"


def test_a_migration_that_lost_the_race_stops_without_harm(tmp_path: Path) -> None:
    p = big(tmp_path, 2)

    def other_process_first(step: str) -> None:
        if step == "lock":
            migrate(p.root, "database", actor="bob@example.com")
            Project.open(tmp_path, actor="bob@example.com", session_id="b").plan("After")

    with pytest.raises(InvalidInput, match="moved to the database backend meanwhile"):
        migrate(p.root, "database", actor="ann@example.com", on_step=other_process_first)
    store = open_store(p.root)
    assert store.backend == "database" and len(store.load().milestones) == 3
    assert [m["event"] for m in scale.migrations(p.root)] == ["migration_completed"]


def test_auto_is_quiet_when_another_command_moved_the_project_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import milestones.ops.migrate as mig

    p = big(tmp_path, 6)
    configure(tmp_path, "scale:\n  policy: auto\n  file_below_milestones: 3\n"
                        "  hybrid_below_milestones: 5\n")

    def lost_the_race(root: Path, to: str, **_: Any) -> dict[str, Any]:
        mig.write_marker(root, to)
        raise InvalidInput(f"the project already uses the {to} backend")

    monkeypatch.setattr(mig, "migrate", lost_the_race)
    project = Project.open(tmp_path)
    assert scale.status(project)["recommendation"]["backend"] == "database"
    assert scale.after_write(project) is None
    memo = json.loads((p.root / activity.MEMO).read_text())
    assert "noted_on" not in memo and "failed" not in memo


def test_auto_says_so_when_the_migration_fails(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import milestones.ops.migrate as mig
    from milestones.errors import StorageError

    big(tmp_path, 6)
    configure(tmp_path, "scale:\n  policy: auto\n  file_below_milestones: 3\n"
                        "  hybrid_below_milestones: 5\n")

    def broken(root: Path, to: str, **_: Any) -> dict[str, Any]:
        raise StorageError("disk full")

    monkeypatch.setattr(mig, "migrate", broken)
    result = ok(tmp_path, "plan", "One more")
    assert result.stderr.startswith("milestone: warning: the automatic move to the database "
                                    "backend failed (disk full)")
    assert ok(tmp_path, "plan", "And another").stderr == ""  # tried again tomorrow


@pytest.mark.parametrize("backend", ["file", "database"])
def test_registered_agents_are_not_counted_as_people(tmp_path: Path, backend: str) -> None:
    """`milestone execute` acts as a dozen agents: the team is still one person."""
    p, _ = Project.init(tmp_path, backend=backend, actor="ann@example.com", session_id="s1")
    p.plan("Work", tasks=[{"title": f"t{i}"} for i in range(8)])
    for i in range(8):
        Agents(p).register(f"bot-{i}")
        assert Agents(p).claim(f"bot-{i}")["ref"] is not None
    actors = {e.get("actor") for e in p.store.events()}
    assert {f"bot-{i}" for i in range(8)} <= actors  # they did act
    signals, _ = scale.gather(p)
    assert signals.team == 1
    assert "agents" in signals.features


def test_a_database_project_beyond_its_bounds_is_told_of_postgres_never_moved(
        tmp_path: Path) -> None:
    """postgres needs a server and its URL: the team or the write rate asks for it (never
    the number of milestones, nor slow commands); ``auto`` suggests it, and does not
    migrate."""
    assert scale.recommend(scale.Signals(milestones=25_000), "database").backend == "database"
    assert scale.recommend(scale.Signals(milestones=50, team=60), "database").backend == (
        "postgres")
    assert scale.recommend(scale.Signals(milestones=50, writes_per_minute=700),
                           "database").backend == "postgres"
    assert scale.recommend(scale.Signals(milestones=50, writes_per_minute=599),
                           "database").backend == "database"
    slow = scale.Signals(milestones=50, p95_ms=900.0, samples=50)
    assert scale.recommend(slow, "database").backend == "database"
    assert scale.recommend(slow, "file").backend == "hybrid"
    big(tmp_path, 4, backend="database")
    configure(tmp_path, "scale:\n  policy: auto\n  database_below_writes_per_minute: 0.01\n")
    result = ok(tmp_path, "plan", "One more")
    assert "postgres" in result.stderr and "would serve it better" in result.stderr
    assert "writes a minute" in result.stderr
    assert open_store(tmp_path / ".milestones").backend == "database"

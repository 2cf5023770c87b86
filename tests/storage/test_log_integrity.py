"""The event log is evidence: an event that does not verify is never applied, damage
is reported (exit 8, naming the file and line) and never repaired by re-hashing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from milestones.cli import cli
from milestones.model import events as ev
from milestones.project import Project

LOG = "progress-events.jsonl"
YAML_BACKENDS = ["file", "hybrid"]


class Cli:
    """The real CLI in a directory, stderr apart from stdout (a traceback raises)."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.runner = CliRunner(mix_stderr=False)

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(cli, ["-C", str(self.cwd), *args], catch_exceptions=False)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)


def _project(tmp_path: Path, backend: str) -> Cli:
    Project.init(tmp_path, backend=backend, actor="tester@example.com", session_id="s")
    run = Cli(tmp_path)
    run.ok("plan", "Launch", "--task", "a", "--task", "b")
    run.ok("task", "start", "1/1")
    run.ok("task", "done", "1/1")
    return run


def _log(tmp_path: Path) -> Path:
    return tmp_path / ".milestones" / "logs" / LOG


def _lines(tmp_path: Path) -> list[bytes]:
    return _log(tmp_path).read_bytes().splitlines(keepends=True)


def _title(run: Cli) -> str:
    return str(run.json("show", "1")["milestone"]["title"])


def _forge(tmp_path: Path, *, hash_: str | None = None) -> int:
    """Append an event that claims to follow the last one (made-up hash unless given);
    returns its line number."""
    lines = _lines(tmp_path)
    last = json.loads(lines[-1])
    forged = dict(last, event_id=last["event_id"] + 1, prev_hash=last["hash"],
                  event_type="milestone_updated", data={"set": {"title": "FORGED"}})
    forged["hash"] = hash_ if hash_ is not None else "f" * 64
    with _log(tmp_path).open("ab") as f:
        f.write((ev.canonical(forged) + "\n").encode())
    return len(lines) + 1


def _refused(result: Result) -> None:
    assert result.exit_code == 8, (result.stdout, result.stderr)
    assert "doctor --repair" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- forged events


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_forged_appended_event_is_never_applied(tmp_path: Path, backend: str) -> None:
    run = _project(tmp_path, backend)
    state_before = (tmp_path / ".milestones" / "logs" / "state.json").read_bytes()
    line = _forge(tmp_path)

    shown = run.ok("show", "1", "--json")
    assert json.loads(shown.stdout)["milestone"]["title"] == "Launch"
    warnings = shown.stderr.strip().splitlines()
    assert len(warnings) == 1, shown.stderr  # once per command
    assert f"{LOG}:{line}" in warnings[0] and "milestone doctor" in warnings[0]
    applied = json.loads((tmp_path / ".milestones" / "logs" / "state.json").read_bytes())
    assert applied["applied_event_id"] == json.loads(state_before)["applied_event_id"]

    # A write would chain on the forged event: refused, nothing changed.
    log_before = _log(tmp_path).read_bytes()
    _refused(run("task", "start", "1/2"))
    assert _log(tmp_path).read_bytes() == log_before

    doctor = run("doctor")
    assert doctor.exit_code == 8
    assert f"{LOG}:{line}" in doctor.stdout


@pytest.mark.parametrize("backend", YAML_BACKENDS)
@pytest.mark.parametrize("damage", ["forged", "not-json"])
def test_log_shows_only_the_history_that_verifies(tmp_path: Path, backend: str,
                                                  damage: str) -> None:
    """`milestone log` is a read like any other: one warning naming the line, and only
    the events that verify, never the forged one (nor a crash on a line that is not
    JSON)."""
    run = _project(tmp_path, backend)
    verified = run.json("log")["events"]
    if damage == "forged":
        line = _forge(tmp_path)
    else:
        line = len(_lines(tmp_path)) + 1
        with _log(tmp_path).open("ab") as f:
            f.write(b'{"event_id": 99, "not json\n')
    for args in (("log", "--json"), ("log", "--json", "--limit", "2")):
        shown = run.ok(*args)
        events = json.loads(shown.stdout)["events"]
        assert events == verified[-len(events):] and events, shown.stdout
        assert "FORGED" not in shown.stdout
        assert f"{LOG}:{line}" in shown.stderr and "milestone doctor" in shown.stderr
        assert shown.stderr.count("\n") == 1


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_valid_hash_with_a_wrong_prev_hash_is_not_applied(tmp_path: Path, backend: str) -> None:
    run = _project(tmp_path, backend)
    lines = _lines(tmp_path)
    last = json.loads(lines[-1])
    forged = dict(last, event_id=last["event_id"] + 1, prev_hash="a" * 64,
                  data={"set": {"title": "FORGED"}})
    ev.seal(forged, forged["event_id"], "a" * 64)  # its own hash is right
    with _log(tmp_path).open("ab") as f:
        f.write((ev.canonical(forged) + "\n").encode())
    assert _title(run) == "Launch"
    doctor = run("doctor")
    assert doctor.exit_code == 8 and f"{LOG}:{len(lines) + 1}: prev_hash" in doctor.stdout


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_repair_quarantines_a_forged_event_and_never_rehashes_it(
    tmp_path: Path, backend: str
) -> None:
    run = _project(tmp_path, backend)
    _forge(tmp_path)
    forged_line = _lines(tmp_path)[-1]

    report = run("doctor", "--repair", "--json")
    assert report.exit_code == 0, (report.stdout, report.stderr)
    data = json.loads(report.stdout)
    assert data["healthy"] and any("quarantine" in r for r in data["repairs"])
    quarantine = list((tmp_path / ".milestones" / "logs" / "quarantine").glob("*.jsonl"))
    assert len(quarantine) == 1 and quarantine[0].read_bytes() == forged_line
    events = [json.loads(x) for x in _lines(tmp_path)]
    assert "f" * 64 not in {e["hash"] for e in events}  # not re-signed either
    assert events[-1]["event_type"] == "log_quarantined"
    assert ev.verify_chain(events) is None
    assert _title(run) == "Launch"
    run.ok("task", "start", "1/2")  # writes work again
    run.ok("doctor")


# ---------------------------------------------------------- lines changed, cut


def _rewrite_title(tmp_path: Path, lineno: int, new: str) -> None:
    lines = _lines(tmp_path)
    assert b'"Launch"' in lines[lineno - 1]
    lines[lineno - 1] = lines[lineno - 1].replace(b'"Launch"', f'"{new}"'.encode())
    _log(tmp_path).write_bytes(b"".join(lines))


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_old_line_rewritten_with_another_length_does_not_crash(
    tmp_path: Path, backend: str
) -> None:
    run = _project(tmp_path, backend)
    _rewrite_title(tmp_path, 2, "Launch, but rewritten much longer")
    log_before = _log(tmp_path).read_bytes()

    shown = run("show", "1", "--json")  # today: JSONDecodeError
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["milestone"]["title"] == "Launch"
    assert f"{LOG}:2" in shown.stderr
    run.ok("list")
    _refused(run("task", "start", "1/2"))
    doctor = run("doctor")
    assert doctor.exit_code == 8 and f"{LOG}:2: hash does not match" in doctor.stdout
    assert _log(tmp_path).read_bytes() == log_before


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_old_line_rewritten_shorter_with_no_state_json_replays_only_what_verifies(
    tmp_path: Path, backend: str
) -> None:
    run = _project(tmp_path, backend)
    _rewrite_title(tmp_path, 2, "L")
    (tmp_path / ".milestones" / "logs" / "state.json").unlink()
    result = run("list", "--json")
    assert result.exit_code == 0 and f"{LOG}:2" in result.stderr
    assert "Launch" not in result.stdout and "\"L\"" not in result.stdout
    assert run("doctor").exit_code == 8


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_repair_quarantines_a_rewritten_line_and_all_after_it(
    tmp_path: Path, backend: str
) -> None:
    run = _project(tmp_path, backend)
    lines = _lines(tmp_path)
    _rewrite_title(tmp_path, 2, "Tampered")
    data = json.loads(run("doctor", "--repair", "--json").stdout)
    assert data["healthy"], data
    quarantined = list((tmp_path / ".milestones" / "logs" / "quarantine").glob("*.jsonl"))
    assert len(quarantined) == 1
    assert len(quarantined[0].read_bytes().splitlines()) == len(lines) - 1
    kept = list((tmp_path / ".milestones" / "logs" / "quarantine").glob("*/active/*.yaml"))
    assert [p.name for p in kept] == ["milestone-001.yaml"]  # the files as they were
    events = [json.loads(x) for x in _lines(tmp_path)]
    assert [e["event_type"] for e in events] == ["project_initialized", "log_quarantined"]
    assert "Tampered" not in _log(tmp_path).read_text()
    run.ok("doctor")


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_lines_cut_from_the_middle_are_reported_not_truncated(
    tmp_path: Path, backend: str
) -> None:
    run = _project(tmp_path, backend)
    lines = _lines(tmp_path)
    del lines[2:4]
    _log(tmp_path).write_bytes(b"".join(lines))
    log_before = _log(tmp_path).read_bytes()

    shown = run("show", "1", "--json")
    assert shown.exit_code == 0 and f"{LOG}:3" in shown.stderr
    _refused(run("task", "start", "1/2"))
    doctor = run("doctor")
    assert doctor.exit_code == 8
    assert f"{LOG}:3: event_id" in doctor.stdout and "missing" in doctor.stdout
    assert _log(tmp_path).read_bytes() == log_before  # nothing truncated away


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_whole_lines_cut_from_the_end_are_missing_events(tmp_path: Path, backend: str) -> None:
    run = _project(tmp_path, backend)
    lines = _lines(tmp_path)
    _log(tmp_path).write_bytes(b"".join(lines[:-2]))
    log_before = _log(tmp_path).read_bytes()
    assert _title(run) == "Launch"
    _refused(run("task", "start", "1/2"))
    doctor = run("doctor")
    assert doctor.exit_code == 8 and "missing" in doctor.stdout
    assert _log(tmp_path).read_bytes() == log_before


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_torn_last_line_is_still_truncated(tmp_path: Path, backend: str) -> None:
    run = _project(tmp_path, backend)
    whole = _log(tmp_path).read_bytes()
    with _log(tmp_path).open("ab") as f:
        f.write(b'{"event_id": 99, "half')
    run.ok("task", "start", "1/2")
    assert _log(tmp_path).read_bytes().startswith(whole)
    run.ok("doctor")


# ------------------------------------------------------------------ deleted log


@pytest.mark.parametrize("backend", YAML_BACKENDS)
@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_deleted_log_refuses_writes_until_repaired(
    tmp_path: Path, backend: str, how: str
) -> None:
    run = _project(tmp_path, backend)
    old = [json.loads(x) for x in _lines(tmp_path)]
    if how == "deleted":
        _log(tmp_path).unlink()
    else:
        _log(tmp_path).write_bytes(b"")

    assert _title(run) == "Launch"  # reads go on from the state last verified
    _refused(run("task", "start", "1/2"))
    assert not _log(tmp_path).exists() or _log(tmp_path).read_bytes() == b""
    doctor = run("doctor")
    assert doctor.exit_code == 8 and "missing" in doctor.stdout

    data = json.loads(run("doctor", "--repair", "--json").stdout)
    assert data["healthy"], data
    assert any("new event log" in r for r in data["repairs"])
    events = [json.loads(x) for x in _lines(tmp_path)]
    assert ev.verify_chain(events) is None
    first = events[0]
    assert first["event_type"] == "log_restarted"
    assert first["data"]["previous_head"] == {"event_id": old[-1]["event_id"],
                                              "hash": old[-1]["hash"]}
    replayed = ev.replay(events)
    assert replayed.milestones["milestone-001"]["title"] == "Launch"
    assert replayed.current == "milestone-001"

    run.ok("task", "start", "1/2")
    assert run.json("show", "1")["milestone"]["tasks"][1]["status"] == "in_progress"
    run.ok("doctor")


def test_new_event_types_are_listed() -> None:
    out = json.loads(Cli(Path.cwd())("event-types").stdout)
    assert {"log_restarted", "log_quarantined"} <= set(out)


# ------------------------------------------------------------- database backend

DAMAGE = [
    "DELETE FROM events",
    "DELETE FROM events WHERE event_id = 3",
    "DELETE FROM milestones",
    "DELETE FROM tasks",
    "UPDATE milestones SET data = json_set(data, '$.title', 'Edited')",
    "UPDATE milestones SET data = '{not json'",
    "UPDATE tasks SET data = '[1, 2]'",
    "UPDATE events SET body = json_set(body, '$.data', json('{}')) WHERE event_id = 2",
    "DROP TABLE events",
]


@pytest.mark.parametrize("sql", DAMAGE)
def test_database_damage_is_a_failed_doctor_check(tmp_path: Path, sql: str) -> None:
    run = _project(tmp_path, "database")
    run.ok("doctor")
    db = tmp_path / ".milestones" / "database" / "milestones.db"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql)
    conn.close()
    for args in (("doctor",), ("doctor", "--repair")):
        result = run(*args)  # a Python exception would raise here
        assert result.exit_code == 8, (sql, result.stdout, result.stderr)
        assert "[FAIL]" in result.stdout
        assert "Traceback" not in result.stderr
    data = json.loads(run("doctor", "--json").stdout)
    assert not data["healthy"]
    assert all(c["detail"] for c in data["checks"] if not c["ok"])


@pytest.mark.parametrize("to", ["database", "hybrid"])
def test_migration_refuses_a_log_that_does_not_verify(tmp_path: Path, to: str) -> None:
    run = _project(tmp_path, "file")
    _forge(tmp_path)
    result = run("storage", "migrate", "--to", to)
    assert result.exit_code == 8 and "not migrated" in result.stderr, result.stderr
    marker = tmp_path / ".milestones" / "config" / "storage-backend.txt"
    assert marker.read_text().strip() == "file"


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_forged_event_after_a_rotation_is_not_applied(tmp_path: Path, backend: str) -> None:
    run = _project(tmp_path, backend)
    config = tmp_path / ".milestones" / "config" / "config.yaml"
    config.write_text("logs:\n  rotate_bytes: 200\n", encoding="utf-8")
    run.ok("task", "start", "1/2")  # the write that goes over the limit rotates
    archive = tmp_path / ".milestones" / "logs" / "archive"
    assert list(archive.glob("*.jsonl.gz")) and _log(tmp_path).read_bytes() == b""
    head = json.loads((tmp_path / ".milestones" / "logs" / "state.json").read_bytes())
    forged = {"event_id": head["applied_event_id"] + 1, "prev_hash": head["applied_hash"],
              "hash": "f" * 64, "milestone_id": "milestone-001", "event_type": "x",
              "data": {"set": {"title": "FORGED"}}}
    _log(tmp_path).write_bytes((ev.canonical(forged) + "\n").encode())
    shown = run("show", "1", "--json")
    assert json.loads(shown.stdout)["milestone"]["title"] == "Launch"
    assert f"{LOG}:1" in shown.stderr
    _refused(run("task", "stop", "1/2"))
    doctor = run("doctor")
    assert doctor.exit_code == 8 and f"{LOG}:1" in doctor.stdout


def test_events_after_an_id_equal_a_whole_read_of_a_long_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``events(after)`` finds where to start in the live log by a binary search (a
    read of the last events parses only them): the same events as reading it all,
    for every ``after``; a line that is not an event is reported at its line."""
    from milestones.errors import MilestoneError
    from milestones.storage.logfiles import LogFiles

    monkeypatch.setattr(LogFiles, "SKIP_SPAN", 256)  # many probes on a small log
    p, _ = Project.init(tmp_path, backend="file", actor="tester@example.com")
    for i in range(40):
        p.plan(f"Milestone {i}", tasks=["a", "b"])
    log = p.root / "logs" / "progress-events.jsonl"
    every = [json.loads(line) for line in log.read_bytes().splitlines() if line.strip()]
    files = LogFiles(log)
    last = every[-1]["event_id"]
    for after in (0, 1, 2, last // 3, last // 2, last - 5, last - 1, last, last + 3):
        assert list(files.events(after)) == [e for e in every if e["event_id"] > after], after
    whole = log.read_bytes()
    lines = whole.split(b"\n")  # the last one empty: the log ends with a newline
    at = len(lines) - 3  # a line after the id asked from: reported at its line
    log.write_bytes(b"\n".join([*lines[:at], b"not an event", *lines[at + 1:]]))
    with pytest.raises(MilestoneError, match=f":{at + 1}:"):
        list(files.events(last - 5))
    # Damage before it: not among the events asked for, which are all there.
    log.write_bytes(b"\n".join([*lines[:10], b"not an event", *lines[11:]]))
    assert list(files.events(last - 5)) == [e for e in every if e["event_id"] > last - 5]

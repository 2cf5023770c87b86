"""Event log rotation: gzipped archives in logs/archive/, read as one log, crash-safe."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from durability.helpers import assert_consistent
from milestones.cli import cli
from milestones.errors import StorageError
from milestones.model import events as ev
from milestones.ops.migrate import migrate
from milestones.project import Project
from milestones.storage import logfiles, logrotation
from milestones.storage.file import FileStore

ACTOR = "tester@example.com"
LIVE = ".milestones/logs/progress-events.jsonl"


def set_rotate(proj: Path, limit: int) -> None:
    path = proj / ".milestones" / "config" / "config.yaml"
    path.write_text(f"logs:\n  rotate_bytes: {limit}\n", encoding="utf-8")


def opened(proj: Path) -> Project:
    return Project.open(proj, actor=ACTOR, session_id="s1")


def churn(p: Project, rounds: int, start: int = 0) -> None:
    """Five or six events a round, across several milestones and event types."""
    for i in range(start, start + rounds):
        mid = p.plan(f"M{i}", tasks=["one", "two"]).id
        p.start_task(f"{mid}/task-1")
        p.set_progress(f"{mid}/task-1", 50)
        p.note(f"note {i}")
        p.complete_task(f"{mid}/task-1")


@pytest.fixture(params=["file", "hybrid"])
def proj(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A project with a 2 KB rotation threshold and several archives, on each backend
    that keeps its log in files."""
    Project.init(tmp_path, backend=request.param, actor=ACTOR, session_id="s1")
    set_rotate(tmp_path, 2048)
    churn(opened(tmp_path), 8)
    return tmp_path


def root_of(proj: Path) -> Path:
    return proj / ".milestones"


def archive_dir(proj: Path) -> Path:
    return root_of(proj) / "logs" / "archive"


def archives(proj: Path) -> list[Path]:
    return sorted(archive_dir(proj).glob("progress-events-*.jsonl.gz"))


def index(proj: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((archive_dir(proj) / "index.json").read_bytes())[
        "archives"
    ]
    return rows


def all_events(proj: Path) -> list[dict[str, Any]]:
    return list(FileStore(root_of(proj)).events())


def assert_once_in_order(events: list[dict[str, Any]]) -> None:
    ids = [e["event_id"] for e in events]
    assert ids == list(range(1, len(ids) + 1)), ids
    assert ev.verify_chain(events) is None, ev.verify_chain(events)


def run_cli(proj: Path, *args: str) -> Any:
    result = CliRunner().invoke(cli, ["-C", str(proj), *args], catch_exceptions=False)
    return result


def cli_json(proj: Path, *args: str) -> Any:
    result = run_cli(proj, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def decompressed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the archives read (decompressed), in order."""
    seen: list[str] = []
    lines, whole = logrotation.gzip_lines, logrotation.read_gzip

    def counting_lines(path: Path) -> Iterator[bytes]:
        seen.append(path.name)
        return lines(path)

    def counting_whole(path: Path) -> bytes:
        seen.append(path.name)
        return whole(path)

    for module in (logfiles, logrotation):  # patched where each is looked up
        monkeypatch.setattr(module, "gzip_lines", counting_lines)
        monkeypatch.setattr(module, "read_gzip", counting_whole)
    return seen


# --------------------------------------------------------------------- reading


def test_many_changes_make_several_archives_read_as_one_log(proj: Path) -> None:
    files = archives(proj)
    assert len(files) >= 4
    assert [f.name for f in files] == [logfiles.archive_name(n) for n in range(1, len(files) + 1)]
    rows = index(proj)
    assert [r["file"] for r in rows] == [f.name for f in files]
    events = all_events(proj)
    assert_once_in_order(events)
    assert events[-1]["event_id"] == opened(proj).state().last_event_id
    # Each archive is a whole number of events, the chain running on across files.
    prev_hash, prev_id = ev.GENESIS_HASH, 0
    for f, row in zip(files, rows, strict=True):
        raw = gzip.decompress(f.read_bytes())
        assert len(raw) > 2048 and raw.endswith(b"\n")
        lines = [json.loads(x) for x in raw.splitlines()]
        assert row["first_id"] == lines[0]["event_id"] == prev_id + 1
        assert row["first_prev_hash"] == lines[0]["prev_hash"] == prev_hash
        assert row["last_id"] == lines[-1]["event_id"]
        assert row["last_hash"] == lines[-1]["hash"]
        assert row["events"] == len(lines) and row["sha256"] == ev.sha256_hex(raw)
        prev_hash, prev_id = row["last_hash"], row["last_id"]
    live = [e for e in events if e["event_id"] > prev_id]
    live_raw = (proj / LIVE).read_bytes()
    assert [json.loads(x) for x in live_raw.splitlines()] == live
    # events(after) is the same log from any point.
    for after in (0, 1, rows[1]["last_id"], rows[1]["last_id"] + 1, len(events) - 1, len(events)):
        assert list(FileStore(root_of(proj)).events(after)) == events[after:]
    # Replaying every file gives the snapshots, state.json and the YAML files.
    view = assert_consistent(root_of(proj))
    assert len(view.replayed.milestones) == 8


def test_events_after_and_log_limit_read_only_the_newest_archives(
    proj: Path, decompressed: list[str]
) -> None:
    store = FileStore(root_of(proj))
    head = store.load().last_event_id
    names = [f.name for f in archives(proj)]
    last_archived = index(proj)[-1]["last_id"]
    assert [e["event_id"] for e in store.events(after=last_archived)] == list(
        range(last_archived + 1, head + 1)
    )
    assert decompressed == []  # every archive is at or before `after`: none read
    assert len(list(store.events(after=last_archived - 1))) == head - last_archived + 1
    assert decompressed == [names[-1]]

    decompressed.clear()
    every = list(store.events())
    assert decompressed == names
    decompressed.clear()
    data = cli_json(proj, "log", "--limit", "5")
    assert data["events"] == every[-5:]
    assert names[0] not in decompressed and len(decompressed) <= 2

    decompressed.clear()
    data = cli_json(proj, "log", "--limit", "20")
    assert data["events"] == every[-20:]
    assert names[0] not in decompressed


def test_log_filters_work_across_archives(proj: Path) -> None:
    every = all_events(proj)
    done = [e for e in every if e["event_type"] == "task_completed"]
    assert len(done) == 8
    assert cli_json(proj, "log", "--type", "task_completed")["events"] == done
    assert cli_json(proj, "log", "--type", "task_completed", "--limit", "3")["events"] == done[-3:]
    m1 = [e for e in every if e["milestone_id"] == "milestone-001"]
    assert m1[0]["event_id"] <= index(proj)[0]["last_id"]  # its history starts in archive 1
    assert cli_json(proj, "log", "--milestone", "1")["events"] == m1
    assert cli_json(proj, "log", "--milestone", "1", "--limit", "2")["events"] == m1[-2:]
    both = [e for e in m1 if e["event_type"] in ("milestone_created", "task_completed")]
    got = cli_json(proj, "log", "-m", "1", "-t", "milestone_created", "-t", "task_completed")
    assert got["events"] == both
    assert cli_json(proj, "log", "--limit", "0")["events"] == []
    assert len(cli_json(proj, "log", "--limit", "100000")["events"]) == len(every)


def test_doctor_is_healthy_across_archives(proj: Path) -> None:
    data = cli_json(proj, "doctor")
    assert data["healthy"], data
    checks = {c["name"]: c for c in data["checks"]}
    n = len(archives(proj))
    assert checks["log archives"] == {"name": "log archives", "ok": True,
                                      "detail": f"{n} archives, indexed"}
    total = len(all_events(proj))
    assert checks["hash chain"]["detail"] == f"valid through event #{total}"
    assert checks["event log readable"]["detail"] == f"{total} events in {n + 1} files"


def _rewrite_archive_line(path: Path, lineno: int, new: bytes) -> None:
    lines = gzip.decompress(path.read_bytes()).split(b"\n")
    lines[lineno - 1] = new
    path.write_bytes(gzip.compress(b"\n".join(lines)))


def test_doctor_names_a_corrupt_archive_line(proj: Path) -> None:
    target = archives(proj)[2]
    rel = f".milestones/logs/archive/{target.name}"
    _rewrite_archive_line(target, 2, b'{"event_id": 1, "oops')
    result = run_cli(proj, "doctor", "--json")
    assert result.exit_code == 8
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert not checks["event log readable"]["ok"]
    assert checks["event log readable"]["detail"] == f"{rel}:2: not a JSON event"
    with pytest.raises(StorageError, match=rf"{target.name}:2: the event log has a corrupt line"):
        all_events(proj)


def test_doctor_names_a_tampered_archive_event(proj: Path) -> None:
    target = archives(proj)[1]
    rel = f".milestones/logs/archive/{target.name}"
    event = json.loads(gzip.decompress(target.read_bytes()).split(b"\n")[2])
    event["actor"] = "mallory@example.com"
    _rewrite_archive_line(target, 3, ev.canonical(event).encode())
    plain = run_cli(proj, "doctor")
    assert plain.exit_code == 8
    assert f"{rel}:3: hash does not match the event's content" in plain.output
    checks = {c["name"]: c for c in cli_json_any(proj, "doctor")["checks"]}
    assert not checks["hash chain"]["ok"]
    assert checks["log archives"]["detail"].startswith(f"{rel}: index.json has another")


def test_doctor_reports_a_truncated_archive(proj: Path) -> None:
    target = archives(proj)[0]
    target.write_bytes(target.read_bytes()[:-30])
    checks = {c["name"]: c for c in cli_json_any(proj, "doctor")["checks"]}
    detail = checks["event log readable"]["detail"]
    assert detail.startswith(f".milestones/logs/archive/{target.name}: cannot read"), detail


def cli_json_any(proj: Path, *args: str) -> Any:
    """--json output whatever the exit code (doctor exits 8 when unhealthy)."""
    return json.loads(run_cli(proj, *args, "--json").output)


def test_lost_state_json_is_rebuilt_from_every_file(proj: Path) -> None:
    set_rotate(proj, 1)  # the next write leaves the live log empty
    opened(proj).note("rotate now")
    assert (proj / LIVE).read_bytes() == b""
    before = opened(proj).state()
    (root_of(proj) / "logs" / "state.json").unlink()
    after = opened(proj).state()
    assert after.milestones == before.milestones
    assert after.last_event_id == before.last_event_id
    assert_consistent(root_of(proj))


def test_a_reader_racing_a_rotation_sees_every_event_once(
    proj: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader opens the live log, then a rotation completes, then it lists archives:
    the new archive repeats the live file it holds open, and is skipped by id."""
    set_rotate(proj, 1)
    opened(proj).note("fill the live log")  # rotated: live log empty
    opened(proj).note("one event in the live log")  # rotated again
    set_rotate(proj, 10**9)
    opened(proj).note("pending in the live log")
    set_rotate(proj, 1)
    expected = [*all_events(proj)]
    real = logfiles.LogFiles.archives
    fired: list[bool] = []

    def archives_after_a_rotation(self: logfiles.LogFiles) -> list[tuple[int, Path]]:
        if not fired:
            fired.append(True)
            opened(proj).note("written while reading")
        return real(self)

    reader = FileStore(root_of(proj))
    monkeypatch.setattr(logfiles.LogFiles, "archives", archives_after_a_rotation)
    got = list(reader.events())
    assert fired
    assert got[: len(expected)] == expected  # the reader's old live file, nothing twice
    assert_once_in_order(got)
    fired.clear()
    ids = [e["event_id"] for e in reader.events_tail(4, lambda e: True)]
    assert fired
    assert ids == list(range(ids[0], ids[0] + 4)), ids  # once each, in order, no gap
    assert ids[-1] >= expected[-1]["event_id"]
    monkeypatch.undo()
    assert_once_in_order(all_events(proj))


def test_rotate_bytes_config(tmp_path: Path) -> None:
    Project.init(tmp_path, actor=ACTOR, session_id="s1")
    root = root_of(tmp_path)
    assert logfiles.rotate_bytes(root) == 10 * 1024 * 1024  # the default config file
    set_rotate(tmp_path, 0)
    churn(opened(tmp_path), 3)
    assert logfiles.rotate_bytes(root) == 0 and archives(tmp_path) == []  # 0: never
    (root / "config" / "config.yaml").write_text("logs:\n  rotate_bytes: big\n")
    assert logfiles.rotate_bytes(root) == 10 * 1024 * 1024
    (root / "config" / "config.yaml").write_text("logs: [\n")  # broken: the default
    assert logfiles.rotate_bytes(root) == 10 * 1024 * 1024


def test_migration_round_trip_keeps_the_log_once(proj: Path) -> None:
    root = root_of(proj)
    before = all_events(proj)
    migrate(root, "database")
    assert list(Project.open(proj).store.events()) == before
    churn(opened(proj), 1, start=100)  # the file backend's archives stay behind, unused
    after = list(Project.open(proj).store.events())
    migrate(root, "file")
    got = all_events(proj)
    assert got == after
    assert_once_in_order(got)
    assert archives(proj) == []  # the copy starts a fresh live log
    churn(opened(proj), 1, start=200)
    assert_once_in_order(all_events(proj))
    assert cli_json(proj, "doctor")["healthy"]


# ---------------------------------------------------------------------- crashes

CRASH = """
import os, sys
from milestones.storage import logrotation
from milestones.cli import cli

step = sys.argv[1]

def die_at(name):
    if name == step:
        os._exit(99)

logrotation._after_step = die_at
cli.main(args=["-C", *sys.argv[2:]], prog_name="milestone")
"""


def crash_at(step: str, proj: Path, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, step, str(proj), *args],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 99, (proc.returncode, proc.stdout, proc.stderr)


def state_json(proj: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root_of(proj) / "logs" / "state.json").read_bytes())
    return data


def assert_rotation_finished(proj: Path) -> list[dict[str, Any]]:
    events = all_events(proj)
    assert_once_in_order(events)
    assert_consistent(root_of(proj))
    assert "rotating" not in state_json(proj)
    names = [f.name for f in archives(proj)]
    rows = index(proj)
    assert [r["file"] for r in rows] == names
    live = [json.loads(x) for x in (proj / LIVE).read_bytes().splitlines()]
    if live:
        assert live[0]["event_id"] == rows[-1]["last_id"] + 1
    leftovers = [p.name for p in archive_dir(proj).iterdir() if p.name.startswith(".")]
    leftovers += [p.name for p in (root_of(proj) / "logs").iterdir() if ".tmp-" in p.name]
    assert leftovers == []
    return events


@pytest.mark.parametrize("finisher", ["read", "write", "doctor"])
@pytest.mark.parametrize("step", logfiles.ROTATION_STEPS)
def test_crash_at_each_rotation_step_is_finished_by_the_next_command(
    proj: Path, step: str, finisher: str
) -> None:
    before = all_events(proj)
    n_archives = len(archives(proj))
    set_rotate(proj, 1)  # the crashing command's write rotates
    crash_at(step, proj, "note", "the crashing write")

    # The note itself was committed before the rotation started; whatever the
    # step, reading the log now gives every event exactly once.
    events = all_events(proj)
    assert events[:-1] == before and events[-1]["event_type"] == "note_added"
    assert_once_in_order(events)
    store = FileStore(root_of(proj))
    assert store.events_tail(3, lambda e: True) == events[-3:]
    assert list(store.events(after=len(events) - 2)) == events[-2:]
    assert store.needs_sync()  # the marker: the next command finishes the rotation
    assert state_json(proj)["rotating"] == {"seq": n_archives + 1}
    new_archive = archive_dir(proj) / logfiles.archive_name(n_archives + 1)
    live_raw = (proj / LIVE).read_bytes()
    indexed = [r["seq"] for r in index(proj)]
    if step in ("marked", "compressed"):
        assert not new_archive.exists() and live_raw
        temps = [p for p in archive_dir(proj).iterdir() if p.name.startswith(".")]
        assert len(temps) == (step == "compressed")
    else:
        archived = gzip.decompress(new_archive.read_bytes())
        assert (n_archives + 1 in indexed) == (step != "archived")
        assert live_raw == (b"" if step == "emptied" else archived)

    if finisher == "doctor":
        plain = cli_json_any(proj, "doctor")
        checks = {c["name"]: c for c in plain["checks"]}
        assert checks["hash chain"]["ok"] and checks["snapshots match the log"]["ok"]
        # Whatever the step, plain doctor names the rotation left half done.
        assert not plain["healthy"]
        assert not checks["log rotation"]["ok"]
        assert "doctor --repair" in checks["log rotation"]["detail"]
        if step == "archived":
            assert "is not in index.json" in checks["log archives"]["detail"]
        if step == "indexed":
            assert checks["log archives"]["detail"].startswith(f"{LIVE}:1: repeats events")
        report = cli_json(proj, "doctor", "--repair")
        assert report["healthy"], report
        assert any("rotation" in r for r in report["repairs"]), report["repairs"]
    elif finisher == "read":
        cli_json(proj, "status")
    else:
        cli_json(proj, "note", "the next write")

    events = assert_rotation_finished(proj)
    assert events[: len(before)] == before
    assert len(events) == len(before) + (2 if finisher == "write" else 1)
    if step in ("marked", "compressed") and finisher != "write":
        assert len(archives(proj)) == n_archives  # undone: the live log kept everything
    else:
        assert len(archives(proj)) >= n_archives + 1
    assert cli_json(proj, "doctor")["healthy"]
    # Writing goes on normally, rotating again.
    churn(opened(proj), 1, start=50)
    assert_rotation_finished(proj)


def test_crash_with_state_json_lost_mid_rotation(proj: Path) -> None:
    """No marker to go by: the repeated events are found by id and hash alone."""
    set_rotate(proj, 1)
    crash_at("indexed", proj, "note", "the crashing write")
    (root_of(proj) / "logs" / "state.json").unlink()
    assert_once_in_order(all_events(proj))
    report = cli_json(proj, "doctor", "--repair")
    assert report["healthy"], report
    assert any("finished an interrupted log rotation" in r for r in report["repairs"])
    assert_rotation_finished(proj)

"""Crashes: SIGKILL at random moments, deterministic crashes inside a write, torn lines."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from milestones.model import events as ev
from milestones.project import Project
from milestones.storage.file import FileStore

from .helpers import (
    LOG_REL,
    assert_consistent,
    backend_of,
    check_raw_readable,
    cli,
    cli_json,
    log_events,
    worker,
)

KILLS = int(os.environ.get("DURABILITY_KILLS") or 40)  # per backend


def _doctor_repair(proj: Path) -> dict[str, Any]:
    proc = cli(proj, "doctor", "--repair", "--json", check=False)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    data: dict[str, Any] = json.loads(proc.stdout)
    assert data["healthy"], data
    return data


def test_sigkill_at_random_points_never_loses_data(any_proj: Path, tmp_path: Path) -> None:
    """SIGKILL a process changing the project at random moments, on every backend; many of
    the kills land inside a commit (the test checks it did), none loses or half-applies."""
    proj = any_proj
    seed = int(os.environ.get("DURABILITY_SEED") or time.time_ns() % 1_000_000)
    print(f"DURABILITY_SEED={seed}", flush=True)  # first, so a failing run can be replayed
    rng = random.Random(seed)
    root = proj / ".milestones"
    backend = backend_of(root)
    marker = tmp_path / "inside-commit"
    cli(proj, "plan", "First", "--task", "a", "--task", "b")
    stats = {"torn": 0, "repaired": 0, "events": 0, "inside_commit": 0}
    started = time.monotonic()
    i = 0

    def enough() -> bool:  # the writers got work done, and kills landed mid-commit
        return stats["events"] >= KILLS // 2 and stats["inside_commit"] >= KILLS // 10

    # KILLS kills; on a loaded machine (the worker slower than the kills) more, each
    # giving the worker longer, until both happened (at most 3 x KILLS).
    while i < KILLS or (i < 3 * KILLS and not enough()):
        slower = 1.0 if i < KILLS else 2.0 + (i - KILLS) / 10
        i += 1
        where = f"DURABILITY_SEED={seed}, {backend}, kill {i}"
        n_before = len(log_events(root))
        p = worker(
            "churn", str(proj), str(seed * 1000 + i), str(marker),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready", (where, p.communicate())
        time.sleep(rng.uniform(0.005, 0.080 if backend not in ("database", "postgres")
                               else 0.200) * slower)
        p.send_signal(signal.SIGKILL)
        _, err = p.communicate(timeout=30)
        assert p.returncode == -signal.SIGKILL, (where, p.returncode, err)
        if marker.exists():
            stats["inside_commit"] += 1
            marker.unlink()

        if backend not in ("database", "postgres"):
            # Nothing unreadable: YAML files, state.json, the log up to a torn last line.
            stats["torn"] += check_raw_readable(root)
        # doctor --repair brings it back to exactly what the log says.
        report = _doctor_repair(proj)
        stats["repaired"] += bool(report["repairs"])
        view = assert_consistent(root)
        stats["events"] += len(view.events) - n_before
        assert not any(e["event_type"] == "manual_edit_detected" for e in view.events), (
            where,
            "the tool's own interrupted write was taken for a hand edit",
        )
    print(f"DURABILITY_SEED={seed} {backend}: {stats} in {i} kills, "
          f"{time.monotonic() - started:.1f}s")
    assert stats["events"] >= KILLS // 2, stats  # the writers got work done between kills
    # The kills really landed mid-write, not only between writes.
    assert stats["inside_commit"] >= KILLS // 10, stats
    # A normal command works afterwards and plain doctor is happy.
    cli(proj, "note", "after the storm")
    assert cli(proj, "doctor").returncode == 0


def _crash(proj: Path, point: str, *args: str) -> None:
    p = worker("crash", point, str(proj), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 99, (out, err)


def _task(root: Path, ref: str) -> dict[str, Any]:
    mid, tid = ref.split("/")
    store = FileStore(root)
    [(_rel, snap, err)] = [c for c in store.check_files() if c[0].endswith(f"{mid}.yaml")]
    assert err is None and snap is not None
    return next(t for t in snap["tasks"] if t["id"] == tid)


@pytest.mark.parametrize("point", ["after-append", "after-snapshot"])
@pytest.mark.parametrize("finisher", ["next-command", "doctor"])
def test_crash_inside_a_write_is_finished_from_the_log(
    yaml_proj: Path, point: str, finisher: str
) -> None:
    proj = yaml_proj
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "one", "--task", "two")
    n_before = len(log_events(root))
    state_before = json.loads((root / "logs" / "state.json").read_bytes())

    _crash(proj, point, "task", "start", "milestone-001/task-1")

    events = log_events(root)
    assert len(events) == n_before + 2  # task_started + milestone_started, both whole
    assert [e["event_type"] for e in events[-2:]] == ["task_started", "milestone_started"]
    assert check_raw_readable(root) is False
    state = json.loads((root / "logs" / "state.json").read_bytes())
    assert state["applied_event_id"] == state_before["applied_event_id"]  # not yet applied
    # after-append: no file written yet; after-snapshot: the file is, state.json is not.
    expected_on_disk = "todo" if point == "after-append" else "in_progress"
    assert _task(root, "milestone-001/task-1")["status"] == expected_on_disk

    if finisher == "doctor":
        plain = cli(proj, "doctor", "--json", check=False)
        assert plain.returncode == 8, plain.stdout  # plain doctor reports, changes nothing
        checks = {c["name"]: c for c in json.loads(plain.stdout)["checks"]}
        assert not checks["snapshots match the log"]["ok"], checks
        assert _task(root, "milestone-001/task-1")["status"] == expected_on_disk
        report = _doctor_repair(proj)
        first = events[-2]["event_id"]
        assert (
            f"finished an interrupted write: applied events {first}..{first + 1}"
            in report["repairs"]
        ), report
    else:
        data = cli_json(proj, "task", "start", "1/2")
        assert data["task"]["status"] == "in_progress"

    view = assert_consistent(root)
    assert _task(root, "milestone-001/task-1")["status"] == "in_progress"
    assert view.files["milestone-001"]["status"] == "in_progress"
    types = [e["event_type"] for e in view.events[n_before:]]
    assert "manual_edit_detected" not in types
    assert types[:2] == ["task_started", "milestone_started"]
    assert len(types) == (2 if finisher == "doctor" else 3)


def test_crash_inside_a_database_write_leaves_no_trace(tmp_path: Path) -> None:
    """On the database the commit point is SQLite's COMMIT: a process killed after its
    events and rows went into the transaction leaves the project as it was."""
    proj = tmp_path
    Project.init(proj, backend="database")
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "one", "--task", "two")
    before = log_events(root)
    shown = cli_json(proj, "show", "1")
    _crash(proj, "db-before-commit", "task", "start", "milestone-001/task-1")
    assert log_events(root) == before
    assert cli_json(proj, "show", "1") == shown
    assert cli(proj, "doctor").returncode == 0
    data = cli_json(proj, "task", "start", "1/1")  # and the retry is a plain write
    assert data["task"]["status"] == "in_progress"
    assert [e["event_type"] for e in log_events(root)[len(before):]] == [
        "task_started", "milestone_started"]
    assert_consistent(root)


def test_crash_while_moving_a_file_to_completed(yaml_proj: Path) -> None:
    """archive writes completed/X.yaml, then removes active/X.yaml: die in between."""
    proj = yaml_proj
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "one")
    cli(proj, "task", "done", "1/1")
    _crash(proj, "before-remove", "archive", "1")
    assert (root / "active" / "milestone-001.yaml").exists()
    assert (root / "completed" / "milestone-001.yaml").exists()
    # The next command must not trip over the milestone being there twice.
    listing = cli_json(proj, "list", "--all")
    assert [m["status"] for m in listing["milestones"]] == ["archived"]
    assert not (root / "active" / "milestone-001.yaml").exists()
    assert_consistent(root)
    assert cli(proj, "doctor").returncode == 0


def test_torn_last_line_is_reported_then_truncated(yaml_proj: Path) -> None:
    proj = yaml_proj
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "one")
    log = root / "logs" / "progress-events.jsonl"
    good = log.read_bytes()
    lines = good.count(b"\n")

    _crash(proj, "torn-append", "note", "half written")
    raw = log.read_bytes()
    assert raw.startswith(good) and not raw.endswith(b"\n") and len(raw) > len(good)
    assert check_raw_readable(root) is True

    plain = cli(proj, "doctor", check=False)
    assert plain.returncode == 8, (plain.stdout, plain.stderr)
    assert f"{LOG_REL}:{lines + 1}: torn last line" in plain.stdout
    report = json.loads(cli(proj, "doctor", "--json", check=False).stdout)
    complete = next(c for c in report["checks"] if c["name"] == "event log complete")
    assert not complete["ok"] and f":{lines + 1}:" in complete["detail"]

    repaired = _doctor_repair(proj)
    assert (
        f"truncated a torn last line at byte {len(good)} of progress-events.jsonl"
        in (repaired["repairs"])
    )
    assert log.read_bytes() == good  # the half-written event is gone, nothing else
    view = assert_consistent(root)
    assert not view.replayed.notes
    assert cli(proj, "doctor").returncode == 0


def test_torn_last_line_is_truncated_by_the_next_command(yaml_proj: Path) -> None:
    proj = yaml_proj
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "one")
    good = (root / "logs" / "progress-events.jsonl").read_bytes()
    _crash(proj, "torn-append", "task", "start", "1/1")
    cli(proj, "note", "next")
    events = log_events(root)
    assert (root / "logs" / "progress-events.jsonl").read_bytes().startswith(good)
    assert [e["event_type"] for e in events[-1:]] == ["note_added"]
    assert "task_started" not in [e["event_type"] for e in events]
    assert_consistent(root)


@pytest.mark.parametrize(
    "where",
    [
        "after-file-write",  # _write returned: active/milestone-001.yaml replaced
        "file-replaced",  # inside atomic_write: renamed into place, directory not yet synced
        "state-replaced",  # inside atomic_write of state.json, after its rename
        "after-state-write",  # _write_state returned
    ],
)
def test_interrupt_inside_a_write_takes_it_back(
    yaml_proj: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Ctrl-C (KeyboardInterrupt) anywhere in the snapshot write: the command leaves no
    trace, and the next command does not mistake the half-done write for a hand edit."""
    proj = yaml_proj
    from milestones.storage import fsutil

    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "one")
    log_before = (root / "logs" / "progress-events.jsonl").read_bytes()
    file_before = (root / "active" / "milestone-001.yaml").read_bytes()
    calls = {"n": 0}

    def interrupt_after(real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = real(*args, **kwargs)
            if calls["n"] == 0:
                calls["n"] += 1
                raise KeyboardInterrupt
            return out

        return wrapper

    if where == "after-file-write":
        monkeypatch.setattr(FileStore, "_write", interrupt_after(FileStore._write))
    elif where == "after-state-write":
        monkeypatch.setattr(FileStore, "_write_state", interrupt_after(FileStore._write_state))
    elif where == "state-replaced":  # state.json is derived: written without fsyncs
        real_replace = os.replace

        def replace(src: Any, dst: Any) -> None:
            real_replace(src, dst)
            if Path(dst).name == "state.json" and calls["n"] == 0:
                calls["n"] += 1
                raise KeyboardInterrupt

        monkeypatch.setattr(os, "replace", replace)
    else:
        target = root / ("active" if where == "file-replaced" else "logs")
        real_sync = fsutil.fsync_dir

        def sync(path: Path) -> None:
            real_sync(path)
            if Path(path) == target and calls["n"] == 0:
                calls["n"] += 1
                raise KeyboardInterrupt

        monkeypatch.setattr(fsutil, "fsync_dir", sync)
    project = Project.open(proj)
    with pytest.raises(KeyboardInterrupt):
        project.set_progress("1/1", 40)
    monkeypatch.undo()
    assert calls["n"] == 1
    assert (root / "logs" / "progress-events.jsonl").read_bytes() == log_before
    assert (root / "active" / "milestone-001.yaml").read_bytes() == file_before
    cli(proj, "status", "--json")
    events = log_events(root)
    assert "manual_edit_detected" not in [e["event_type"] for e in events], (
        "the tool's own interrupted write was recorded as a hand edit"
    )
    assert_consistent(root)
    assert ev.replay(events).milestones["milestone-001"]["tasks"][0]["progress"] == 0

"""Many writer processes on one project: no lost update, one chain, readers never see a tear."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from milestones.model import events as ev

from .helpers import assert_consistent, cli, log_events, worker
from .worker import change_args

WORKERS = 8
CHANGES = 50


def _setup_shared_milestone(proj: Path, workers: int) -> None:
    """milestone-001 with one in-progress task per worker, so that `task progress`,
    `task add` and `note` each produce exactly one event (no derived status moves)."""
    cli(proj, "plan", "Shared", *[a for i in range(workers) for a in ("--task", f"w{i}")])
    for i in range(workers):
        cli(proj, "task", "start", f"1/{i + 1}")


def _run_workers(proj: Path, workers: int, changes: int, tmp: Path) -> None:
    go = tmp / "go"
    procs = [
        worker(
            "changes",
            str(proj),
            str(i),
            str(changes),
            str(go),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(workers)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp / f"ready-{i}").exists() for i in range(workers)):
        assert time.monotonic() < deadline, "workers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()  # all start together: maximum contention
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, (i, out, err)


def test_eight_processes_fifty_changes_each(any_proj: Path, tmp_path: Path) -> None:
    proj = any_proj
    _setup_shared_milestone(proj, WORKERS)
    root = proj / ".milestones"
    before = log_events(root)
    start_id = before[-1]["event_id"]

    _run_workers(proj, WORKERS, CHANGES, tmp_path)

    events = log_events(root)
    assert ev.verify_chain(events) is None, ev.verify_chain(events)
    new = events[len(before) :]
    assert events[: len(before)] == before, "earlier events were rewritten"
    assert len(new) == WORKERS * CHANGES, f"expected {WORKERS * CHANGES} events, got {len(new)}"
    assert [e["event_id"] for e in new] == list(range(start_id + 1, start_id + 1 + len(new)))

    # Every change is in the log, exactly once, in each worker's own order.
    def key(e: dict[str, object]) -> tuple[object, ...]:
        d = e["details"]
        assert isinstance(d, dict)
        data = e["data"]
        assert isinstance(data, dict)
        if e["event_type"] == "note_added":
            return ("note", data["note"])
        if e["event_type"] == "task_added":
            return ("add", d["title"])
        if e["event_type"] == "task_progress":
            return ("progress", d["task_id"], d["task_progress"])
        raise AssertionError(f"unexpected event {e['event_type']}")

    def expected(i: int, j: int) -> tuple[object, ...]:
        args = change_args(i, j)
        if args[0] == "note":
            return ("note", args[1])
        if args[1] == "add":
            return ("add", args[3])
        return ("progress", f"task-{i + 1}", int(args[3]))

    seen = [key(e) for e in new]
    assert len(set(seen)) == len(seen)
    for i in range(WORKERS):
        mine = [expected(i, j) for j in range(CHANGES)]
        assert [k for k in seen if k in set(mine)] == mine, f"worker {i}'s changes"

    # ... and in the final state, on disk, as the log says.
    view = assert_consistent(root)
    shared = view.files["milestone-001"]
    titles = [t["title"] for t in shared["tasks"]]
    assert len(titles) == len(set(titles)) == WORKERS + WORKERS * ((CHANGES + 1) // 3)
    notes = {n["text"] for n in view.replayed.notes}
    by_id = {t["id"]: t for t in shared["tasks"]}
    for i in range(WORKERS):
        for j in range(CHANGES):
            args = change_args(i, j)
            if args[0] == "note":
                assert args[1] in notes
            elif args[1] == "add":
                assert args[3] in titles
        last_progress = max(int(change_args(i, j)[3]) for j in range(0, CHANGES, 3))
        assert by_id[f"task-{i + 1}"]["progress"] == last_progress
    assert cli(proj, "doctor").returncode == 0


def test_real_cli_processes_interleave(any_proj: Path) -> None:
    proj = any_proj
    """The same guarantee through `python -m milestones` itself (fewer, slower processes)."""
    workers, changes = 4, 6
    _setup_shared_milestone(proj, workers)
    root = proj / ".milestones"
    n_before = len(log_events(root))

    def loop(i: int, failures: list[str]) -> None:
        for j in range(changes):
            proc = cli(proj, *change_args(i, j), check=False)
            if proc.returncode != 0:
                failures.append(f"{i}/{j}: {proc.stderr}")

    failures: list[str] = []
    threads = [threading.Thread(target=loop, args=(i, failures)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    events = log_events(root)
    assert len(events) - n_before == workers * changes
    assert ev.verify_chain(events) is None
    view = assert_consistent(root)
    titles = {t["title"] for t in view.files["milestone-001"]["tasks"]}
    notes = {n["text"] for n in view.replayed.notes}
    for i in range(workers):
        for j in range(changes):
            args = change_args(i, j)
            if args[0] == "note":
                assert args[1] in notes
            elif args[1] == "add":
                assert args[3] in titles


def test_readers_never_see_a_partial_file(any_proj: Path, tmp_path: Path) -> None:
    proj = any_proj
    writers, changes = 3, 40
    _setup_shared_milestone(proj, writers)
    stop = tmp_path / "stop"
    readers = [
        worker("reader", str(proj), str(stop), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    # A third reader: fresh `python -m milestones status --json` processes in a loop.
    cli_reads: list[str] = []
    cli_errors: list[str] = []

    def cli_reader() -> None:
        while not stop.exists():
            proc = cli(proj, "status", "--all", "--json", check=False)
            try:
                assert proc.returncode == 0, proc.stderr
                json.loads(proc.stdout)
                cli_reads.append("ok")
            except (AssertionError, ValueError) as exc:
                cli_errors.append(repr(exc))

    thread = threading.Thread(target=cli_reader)
    thread.start()
    try:
        _run_workers(proj, writers, changes, tmp_path)
    finally:
        stop.touch()
        thread.join()
    reports = []
    for r in readers:
        out, err = r.communicate(timeout=60)
        assert r.returncode == 0, err
        reports.append(json.loads(out))
    for rep in reports:
        assert rep["error_count"] == 0, rep["errors"]
        assert rep["reads"] > 5, rep
    assert not cli_errors, cli_errors
    assert cli_reads
    assert len(log_events(proj / ".milestones")) >= writers * changes
    assert_consistent(proj / ".milestones")

"""Shared helpers for the durability tests: run the real CLI, read what is on disk."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from milestones.model import events as ev
from milestones.storage import open_store, yamlio
from milestones.storage.file import FileStore

WORKER = Path(__file__).with_name("worker.py")
LOG_REL = ".milestones/logs/progress-events.jsonl"


def cli(
    cwd: Path, *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m milestones -C cwd ARGS`` as a real process."""
    proc = subprocess.run(
        [sys.executable, "-m", "milestones", "-C", str(cwd), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def cli_json(cwd: Path, *args: str) -> Any:
    return json.loads(cli(cwd, *args, "--json").stdout)


def worker(*args: str, **kw: Any) -> subprocess.Popen[str]:
    """Start ``tests/durability/worker.py ARGS`` as a separate process."""
    return subprocess.Popen([sys.executable, str(WORKER), *args], text=True, **kw)


def backend_of(root: Path) -> str:
    """The backend a project uses (``config/storage-backend.txt``)."""
    try:
        return (root / "config" / "storage-backend.txt").read_text("utf-8").strip() or "file"
    except FileNotFoundError:
        return "file"


def log_events(root: Path) -> list[dict[str, Any]]:
    """Every whole event in the project's log, on any backend (raises on a corrupt line)."""
    store = open_store(root)
    try:
        return list(store.events())
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


@dataclass
class DiskView:
    """What each layer on disk says the project is."""

    replayed: ev.ReplayState
    state: dict[str, Any]  # logs/state.json with its checkpoint and journal
    state_milestones: dict[str, Any]
    files: dict[str, Any]  # parsed, canonical milestone files by id
    marker: str | None  # active/current.txt
    events: list[dict[str, Any]]


def disk_view(root: Path) -> DiskView:
    store = FileStore(root)
    events = list(store.events())
    state = store.read_stored()  # the head, its checkpoint and the journal it covers
    assert state is not None, "logs/state.json (with its checkpoint) does not read"
    files: dict[str, Any] = {}
    for rel, snap, err in store.check_files():
        assert err is None, f"{rel}: {err}"
        assert snap is not None
        assert snap["id"] not in files, f"{snap['id']} exists twice"
        files[snap["id"]] = snap
    try:
        marker = (root / "active" / "current.txt").read_text("utf-8").strip() or None
    except FileNotFoundError:
        marker = None
    return DiskView(
        replayed=ev.replay(events),
        state=state,
        state_milestones={mid: e["state"] for mid, e in state["milestones"].items()},
        files=files,
        marker=marker,
        events=events,
    )


def assert_consistent(root: Path) -> DiskView:
    """The log's replay equals what the backend holds, exactly: state.json and the
    milestone files on the YAML backends (and the index on hybrid), the rows of the
    database backend."""
    backend = backend_of(root)
    if backend in ("database", "postgres"):
        return _assert_database_consistent(root)
    view = disk_view(root)
    assert ev.verify_chain(view.events) is None, ev.verify_chain(view.events)
    rp = view.replayed
    assert rp.milestones == view.state_milestones, "state.json differs from the log's replay"
    assert rp.milestones == view.files, "the milestone files differ from the log's replay"
    assert rp.current == view.state["current"] == view.marker
    assert view.state["applied_event_id"] == rp.last_id
    assert view.state["applied_hash"] == rp.last_hash
    assert view.state["log_size"] == (root / "logs" / "progress-events.jsonl").stat().st_size
    # The bookkeeping is exact too: the next command sees nothing to record.
    for mid, entry in view.state["milestones"].items():
        path = root / entry["path"]
        assert path.is_file(), f"{mid}: {entry['path']} is missing"
    assert not FileStore(root).needs_sync(), "state.json does not describe the files on disk"
    if backend == "hybrid":
        _assert_index_consistent(root, rp)
    return view


def _assert_index_consistent(root: Path, rp: ev.ReplayState) -> None:
    """The hybrid index is derived: once caught up, it answers exactly what the log says."""
    from milestones.storage.base import MilestoneQuery
    from milestones.storage.hybrid import HybridStore

    store = HybridStore(root)
    listed = store.query_milestones(MilestoneQuery(include_archived=True))
    assert listed is not None
    assert {s["id"]: s for s in listed} == rp.milestones, "the hybrid index differs from the log"


def _assert_database_consistent(root: Path) -> DiskView:
    store = open_store(root)
    try:
        events = list(store.events())
        state = store.load()
        milestones = dict(state.milestones)
    finally:
        store.close()  # type: ignore[attr-defined]
    assert ev.verify_chain(events) is None, ev.verify_chain(events)
    rp = ev.replay(events)
    assert rp.milestones == milestones, "the database rows differ from the log's replay"
    assert rp.current == state.current
    assert (state.last_event_id, state.last_hash) == (rp.last_id, rp.last_hash)
    return DiskView(replayed=rp, state={}, state_milestones=milestones, files=milestones,
                    marker=state.current, events=events)


def check_raw_readable(root: Path) -> bool:
    """Nothing on disk is unreadable: every YAML file and state.json parse, and the
    log is whole lines of valid, chained events except at most a torn last line.
    Returns whether the log ends in a torn line."""
    for folder in ("active", "completed"):
        for path in sorted((root / folder).glob("milestone-*.yaml")):
            data = yamlio.load_bytes(path.read_bytes(), str(path))
            assert isinstance(data, dict) and data.get("id") == path.stem, path
    state_path = root / "logs" / "state.json"
    if state_path.exists():
        json.loads(state_path.read_bytes())
    raw = (root / "logs" / "progress-events.jsonl").read_bytes()
    lines = raw.split(b"\n")
    torn = lines[-1] != b""
    parsed = [json.loads(line) for line in lines[:-1] if line.strip()]
    assert ev.verify_chain(parsed) is None, ev.verify_chain(parsed)
    return torn

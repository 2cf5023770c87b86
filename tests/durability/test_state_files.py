"""The YAML backends' state files: ``logs/state.json`` (the head, written last on every
write), the checkpoint ``state-<token>.json`` it names and the journal
``state-<token>.jsonl`` of entries changed since (the bytes the head covers). A write
appends the entries it touches; the checkpoint is rewritten only when the journal has
grown past a share of it. Whatever happens to these files (a crash between any two of
them, damage, a hostile edit, an older version's one state.json), the next command
gets the log's truth, quietly, without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from milestones.storage.file import FileStore

from .helpers import assert_consistent, cli, cli_json, log_events


def root_of(proj: Path) -> Path:
    return proj / ".milestones"


def head(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "logs" / "state.json").read_bytes())
    return data


def state_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "logs").glob("state-*"))


def planned(proj: Path, n: int = 3) -> Path:
    for i in range(1, n + 1):
        cli(proj, "plan", f"M{i}", "--task", "a", "--task", "b", "--task", "c")
    return root_of(proj)


def test_a_write_appends_the_entries_it_touches(yaml_proj: Path) -> None:
    root = planned(yaml_proj)
    token = head(root)["checkpoint"]["token"]
    checkpoint = root / "logs" / f"state-{token}.json"
    before = checkpoint.stat()
    journal = root / "logs" / f"state-{token}.jsonl"
    size = journal.stat().st_size if journal.exists() else 0
    cli(yaml_proj, "task", "done", "2/1")
    after = head(root)
    assert after["checkpoint"]["token"] == token  # the checkpoint is not rewritten
    assert (checkpoint.stat().st_ino, checkpoint.stat().st_mtime_ns) == (
        before.st_ino, before.st_mtime_ns)
    line = journal.read_bytes()[size:]
    assert line.count(b"\n") == 1
    assert list(json.loads(line)["milestones"]) == ["milestone-002"]
    assert after["checkpoint"]["journal"] == journal.stat().st_size
    assert_consistent(root)
    assert not FileStore(root).needs_sync()  # the fast path: nothing to re-read


def test_the_journal_is_folded_into_a_new_checkpoint(
        yaml_proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from milestones.project import Project
    from milestones.storage import file_state

    root = planned(yaml_proj, 2)
    monkeypatch.setattr(file_state, "JOURNAL_MIN", 1)  # past 1 byte: a new checkpoint
    monkeypatch.setattr(file_state, "JOURNAL_SHARE", 10 ** 9)
    tokens = set()
    p = Project.open(yaml_proj)
    for ref in ("1/1", "1/2", "1/3", "2/1", "2/2"):
        p.complete_task(ref)
        tokens.add(head(root)["checkpoint"]["token"])
    assert len(tokens) >= 2
    token = head(root)["checkpoint"]["token"]
    # Only the head's checkpoint (and its journal, if any) are left.
    assert set(state_files(root)) <= {f"state-{token}.json", f"state-{token}.jsonl"}
    assert_consistent(root)


def old_state_json(root: Path) -> bytes:
    """The project's state as an older version wrote it: one state.json, every entry."""
    state = FileStore(root).read_stored()
    assert state is not None
    state.pop("checkpoint")
    state["version"] = 1
    return json.dumps(state).encode()


def test_an_older_versions_state_json_is_read_then_converted(yaml_proj: Path) -> None:
    root = planned(yaml_proj)
    old = old_state_json(root)
    for name in state_files(root):
        (root / "logs" / name).unlink()
    (root / "logs" / "state.json").write_bytes(old)
    n = len(log_events(root))
    assert not FileStore(root).needs_sync()  # read as it is: no YAML file re-read
    assert cli_json(yaml_proj, "status", "--json")["current"] == "milestone-001"
    assert (root / "logs" / "state.json").read_bytes() == old  # a read does not convert
    cli(yaml_proj, "task", "done", "3/3")
    assert head(root)["version"] == 2 and "milestones" not in head(root)
    assert len(state_files(root)) == 1  # a fresh checkpoint, no journal yet
    new = [e["event_type"] for e in log_events(root)[n:]]
    assert new and not [t for t in new if "edit" in t], new  # no hand edit recorded
    assert_consistent(root)
    assert cli(yaml_proj, "doctor").returncode == 0
    if (root / "database").exists():
        cli(yaml_proj, "storage", "reindex")
        assert_consistent(root)


def _damage(root: Path, how: str) -> None:
    logs = root / "logs"
    h = head(root)
    token = h["checkpoint"]["token"]
    checkpoint, journal = logs / f"state-{token}.json", logs / f"state-{token}.jsonl"
    if how == "checkpoint-missing":
        checkpoint.unlink()
    elif how == "checkpoint-garbled":
        checkpoint.write_bytes(b'{"token": "' + token.encode() + b'", "milestones": [')
    elif how == "checkpoint-other-token":
        data = json.loads(checkpoint.read_bytes())
        data["token"] = "0" * 16
        checkpoint.write_text(json.dumps(data))
    elif how == "checkpoint-path-mismatch":  # an entry naming another milestone's file
        state = FileStore(root).read_stored()
        assert state is not None
        entry = dict(state["milestones"]["milestone-001"], path="active/milestone-002.yaml")
        data = json.loads(checkpoint.read_bytes())
        data["milestones"]["milestone-001"] = entry
        checkpoint.write_text(json.dumps(data))
    elif how == "journal-short":
        journal.write_bytes(journal.read_bytes()[:-5])
    elif how == "journal-garbage":
        journal.write_bytes(b"x" * journal.stat().st_size)
    elif how == "journal-hostile":  # a line that is JSON, of the wrong shape
        line = json.dumps({"token": token, "milestones": {"milestone-001": {"path": 1}}})
        data = journal.read_bytes() + line.encode() + b"\n"
        journal.write_bytes(data)
        h["checkpoint"]["journal"] = len(data)
        (logs / "state.json").write_text(json.dumps(h))
    elif how == "head-token":  # a token that would name a file elsewhere
        h["checkpoint"]["token"] = "../../active/x"
        (logs / "state.json").write_text(json.dumps(h))
    elif how == "head-types":
        h["checkpoint"] = {"token": token, "journal": "12", "size": True}
        (logs / "state.json").write_text(json.dumps(h))
    else:
        raise AssertionError(how)


DAMAGE = ["checkpoint-missing", "checkpoint-garbled", "checkpoint-other-token",
          "checkpoint-path-mismatch", "journal-short", "journal-garbage", "journal-hostile",
          "head-token", "head-types"]


@pytest.mark.parametrize("how", DAMAGE)
def test_damaged_state_files_are_rebuilt_from_the_log(proj: Path, how: str) -> None:
    root = planned(proj)
    cli(proj, "task", "done", "1/1")
    cli(proj, "task", "start", "2/2")  # a journal with lines in it
    expected = assert_consistent(root)
    n = len(log_events(root))
    _damage(root, how)
    proc = cli(proj, "status", "--json")
    assert "Traceback" not in proc.stderr
    assert len(log_events(root)) == n, "the damage was recorded as a change"
    cli(proj, "task", "done", "3/1")
    view = assert_consistent(root)
    assert view.files["milestone-001"] == expected.files["milestone-001"]
    assert cli(proj, "doctor").returncode == 0


def test_a_journal_line_the_head_does_not_cover_is_ignored(yaml_proj: Path) -> None:
    """A write cut short after its journal line and before the head: the line is not
    part of the state; the next write goes where it was."""
    root = planned(yaml_proj)
    token = head(root)["checkpoint"]["token"]
    journal = root / "logs" / f"state-{token}.jsonl"
    with journal.open("ab") as f:
        f.write(b'{"token": "' + token.encode() + b'", "milestones": {"milestone-001": null}}\n')
        f.write(b'{"half a line')
    assert cli_json(yaml_proj, "show", "1", "--json")["milestone"]["title"] == "M1"
    cli(yaml_proj, "task", "done", "1/1")
    assert journal.stat().st_size == head(root)["checkpoint"]["journal"]
    assert_consistent(root)


CRASH = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from milestones.project import Project
    from milestones.storage import file_state, fsutil
    point, proj = sys.argv[1], sys.argv[2]
    if point.startswith("checkpoint"):
        file_state.JOURNAL_MIN = 0  # every write starts a new checkpoint
        file_state.JOURNAL_SHARE = 10 ** 9
    real = fsutil.atomic_write
    def write(path, data, **kw):
        name = Path(path).name
        if point.endswith("before-head") and name == "state.json":
            os._exit(99)
        real(path, data, **kw)
        if point.endswith("after-head") and name == "state.json":
            os._exit(99)  # before the old checkpoint is removed
    fsutil.atomic_write = write
    Project.open(Path(proj)).complete_task(sys.argv[3])
""")


@pytest.mark.parametrize("point", ["journal-before-head", "checkpoint-before-head",
                                   "checkpoint-after-head"])
def test_a_crash_between_the_state_files_recovers_to_the_log(yaml_proj: Path,
                                                            point: str) -> None:
    root = planned(yaml_proj)
    cli(yaml_proj, "task", "done", "1/1")
    proc = subprocess.run([sys.executable, "-c", CRASH, point, str(yaml_proj), "2/1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 99, proc.stderr
    assert "task_completed" in [e["event_type"] for e in log_events(root)[-2:]]  # committed
    cli(yaml_proj, "status", "--json")
    view = assert_consistent(root)
    task = view.files["milestone-002"]["tasks"][0]
    assert task["status"] == "done"
    cli(yaml_proj, "task", "done", "3/1")  # writes go on from there
    assert_consistent(root)
    token = head(root)["checkpoint"]["token"]
    cli(yaml_proj, "doctor")
    if point == "checkpoint-after-head":
        assert any(name.startswith(f"state-{token}") for name in state_files(root))


def test_a_writer_reads_only_the_journal_lines_written_since_it_read(
        yaml_proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that read the state (a read, or before waiting for the lock) brings it
    up to date under the lock from the journal alone, and gets what a full read gets."""
    from milestones.project import Project

    root = planned(yaml_proj)
    one, two = Project.open(yaml_proj), Project.open(yaml_proj)
    one.state()
    two.complete_task("1/1")
    two.start_task("2/1")
    full_reads: list[int] = []
    real = FileStore._read_state

    def counted(self: Any) -> Any:
        full_reads.append(1)
        return real(self)

    monkeypatch.setattr(FileStore, "_read_state", counted)
    one.complete_task("3/1")
    assert full_reads == []
    monkeypatch.undo()
    state = FileStore(root).read_stored()
    assert state is not None
    assert one.store._state["milestones"] == state["milestones"]  # type: ignore[attr-defined]
    assert_consistent(root)


def test_catching_up_refuses_a_journal_line_that_was_replaced(yaml_proj: Path) -> None:
    """The line a state ends with was taken back (an interrupted write's undo) and
    another written in its place: the store reads the state whole, not the tail."""
    import os

    from milestones.project import Project

    root = planned(yaml_proj)
    keep = [root / "logs" / "state.json", root / "logs" / "progress-events.jsonl",
            root / "active" / "milestone-001.yaml"]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in keep]
    token = head(root)["checkpoint"]["token"]
    cli(yaml_proj, "task", "done", "1/1")  # the write that will be taken back
    one = Project.open(yaml_proj)
    one.state()  # ends with that write's journal line
    for p, (data, mtime) in zip(keep, before, strict=True):  # its undo
        p.write_bytes(data)
        os.utime(p, ns=(mtime, mtime))
    cli(yaml_proj, "task", "done", "2/1")  # another line where it was
    assert head(root)["checkpoint"]["token"] == token
    full_reads: list[int] = []
    real = FileStore._read_state

    def counted(self: Any) -> Any:
        full_reads.append(1)
        return real(self)

    FileStore._read_state = counted
    try:
        one.complete_task("3/1")
    finally:
        FileStore._read_state = real
    assert full_reads, "went on from a journal line that was taken back"
    state = FileStore(root).read_stored()
    assert state is not None
    tasks = state["milestones"]["milestone-001"]["state"]["tasks"]
    assert tasks[0]["status"] == "todo"  # the taken-back write is not in the state
    assert_consistent(root)

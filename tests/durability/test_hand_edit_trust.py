"""Hand edits are trusted only as far as the commands they mirror: the same result as
the command, the edit never written over (checked by content, not size and mtime),
and an edit to a file no backend reads is reported, never silently dropped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .helpers import assert_consistent, cli, cli_json, log_events

YAML_BACKENDS = ["file", "hybrid"]


def _project(tmp_path: Path, name: str, backend: str, *plan: str) -> Path:
    d = tmp_path / name
    d.mkdir()
    cli(d, "init")
    if backend != "file":
        cli(d, "storage", "migrate", "--to", backend)
    if plan:
        cli(d, "plan", *plan)
    return d


def _yaml(proj: Path, mid: str = "milestone-001") -> Path:
    return proj / ".milestones" / "active" / f"{mid}.yaml"


def _hand_edit(path: Path, old: str, new: str, *, keep_stat: bool = False) -> None:
    text = path.read_text("utf-8")
    assert old in text, text
    st = path.stat()
    path.write_text(text.replace(old, new), "utf-8")
    if keep_stat:
        assert path.stat().st_size == st.st_size
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _after(proj: Path, event_type: str) -> list[dict[str, Any]]:
    """The events after the last one of ``event_type``."""
    events = log_events(proj / ".milestones")
    last = max(i for i, e in enumerate(events) if e["event_type"] == event_type)
    return events[last + 1:]


def _task_fields(m: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(t["status"], t["progress"], bool(t.get("completed_at")),
             bool(t.get("started_at"))) for t in m["tasks"]]


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_ticking_every_task_done_by_hand_completes_the_milestone(
        tmp_path: Path, backend: str) -> None:
    """As `task done` does: the milestone completes (status, completed_at, the same
    events), and `archive` takes it."""
    plan = ("Alpha", "--task", "One", "--task", "Two")
    by_cmd = _project(tmp_path, "cmd", backend, *plan)
    cli(by_cmd, "task", "done", "1/1")
    cli(by_cmd, "task", "done", "1/2")
    by_hand = _project(tmp_path, "hand", backend, *plan)
    _hand_edit(_yaml(by_hand), "status: todo", "status: done")

    want = cli_json(by_cmd, "show", "1")["milestone"]
    got = cli_json(by_hand, "show", "1")["milestone"]
    assert got["status"] == want["status"] == "completed"
    assert got["completed_at"] and want["completed_at"]
    assert _task_fields(got) == _task_fields(want)
    kinds = [e["event_type"] for e in _after(by_hand, "manual_edit_detected")]
    assert kinds == ["task_completed", "task_completed", "milestone_completed"]
    assert all(e["details"]["hand_edit"] == ".milestones/active/milestone-001.yaml"
               for e in _after(by_hand, "manual_edit_detected")[:2])
    assert cli(by_hand, "archive", "1", check=False).returncode == 0
    assert cli_json(by_hand, "show", "1")["milestone"]["status"] == "archived"
    if backend == "file":
        assert_consistent(by_hand / ".milestones")


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_a_task_started_by_hand_starts_its_milestone(tmp_path: Path, backend: str) -> None:
    proj = _project(tmp_path, "p", backend, "Alpha", "--task", "One", "--task", "Two")
    path = _yaml(proj)
    text = path.read_text("utf-8")
    path.write_text(text.replace("status: todo", "status: in_progress", 1), "utf-8")
    m = cli_json(proj, "show", "1")["milestone"]
    assert m["status"] == "in_progress"
    assert m["tasks"][0]["status"] == "in_progress" and m["tasks"][0]["started_at"]
    kinds = [e["event_type"] for e in _after(proj, "manual_edit_detected")]
    assert kinds == ["task_started", "milestone_started"]  # as `task start` records


def test_progress_set_by_hand_moves_the_task_as_task_progress_does(proj: Path) -> None:
    cli(proj, "plan", "Alpha", "--task", "One")
    path = _yaml(proj)
    path.write_text(path.read_text("utf-8").replace("status: todo",
                                                    "status: todo\n  progress: 40"), "utf-8")
    m = cli_json(proj, "show", "1")["milestone"]
    assert (m["tasks"][0]["status"], m["tasks"][0]["progress"]) == ("in_progress", 40)
    assert m["status"] == "in_progress"
    kinds = [e["event_type"] for e in _after(proj, "manual_edit_detected")]
    assert kinds == ["task_progress", "milestone_started"]


def test_blocked_by_hand_without_a_reason_is_refused(proj: Path) -> None:
    """`task block` needs a reason; a hand edit without one stops commands, names the
    file and task, and records nothing (the file stays as the person left it)."""
    cli(proj, "plan", "Alpha", "--task", "One")
    path = _yaml(proj)
    n = len(log_events(proj / ".milestones"))
    _hand_edit(path, "status: todo", "status: blocked")
    edited = path.read_text("utf-8")
    proc = cli(proj, "note", "hello", check=False)
    assert proc.returncode == 4, proc.stderr
    assert ".milestones/active/milestone-001.yaml" in proc.stderr and "task-1" in proc.stderr
    assert "blockers" in proc.stderr and "Traceback" not in proc.stderr
    assert len(log_events(proj / ".milestones")) == n and path.read_text("utf-8") == edited
    # With a reason it is what `task block` makes.
    path.write_text(edited.replace("status: blocked", "status: blocked\n  blockers: [waiting]"),
                    "utf-8")
    m = cli_json(proj, "show", "1")["milestone"]
    assert m["tasks"][0]["blockers"] == ["waiting"] and m["status"] == "blocked"
    kinds = [e["event_type"] for e in _after(proj, "manual_edit_detected")]
    assert kinds == ["task_blocked", "milestone_status_changed"]


def test_done_by_hand_with_unmet_dependencies_is_recorded_as_forced_and_reported(
        proj: Path) -> None:
    """`task done` refuses unmet dependencies unless --force (recorded). The hand edit is
    kept (never dropped) as a forced completion, and a warning names file and deps."""
    plan = proj / "plan.yaml"
    plan.write_text("title: Alpha\ntasks:\n- One\n- title: Two\n  depends_on: [task-1]\n",
                    "utf-8")
    cli(proj, "plan", "--from-file", str(plan))
    path = _yaml(proj)
    text = path.read_text("utf-8")
    i = text.index("id: task-2")
    path.write_text(text[:i] + text[i:].replace("status: todo", "status: done", 1), "utf-8")
    proc = cli(proj, "status")
    assert "warning" in proc.stderr and ".milestones/active/milestone-001.yaml" in proc.stderr
    assert "milestone-001/task-1" in proc.stderr
    [done] = [e for e in _after(proj, "manual_edit_detected")
              if e["event_type"] == "task_completed"]
    assert done["details"]["task_id"] == "task-2"
    assert done["details"]["forced"] is True
    assert done["details"]["unmet"] == ["milestone-001/task-1"]
    assert cli_json(proj, "show", "1")["milestone"]["tasks"][1]["status"] == "done"


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_same_size_same_mtime_edit_is_never_written_over(tmp_path: Path, backend: str) -> None:
    proj = _project(tmp_path, "p", backend, "Alpha", "--task", "One", "--task", "Two")
    path = _yaml(proj)
    _hand_edit(path, "title: Two", "title: Zwo", keep_stat=True)
    # The next write would replace the file: it finds the edit by content, records it,
    # and stops (exit 7) rather than write over it.
    proc = cli(proj, "task", "start", "1/1", check=False)
    assert proc.returncode == 7, proc.stderr
    assert ".milestones/active/milestone-001.yaml" in proc.stderr
    assert "title: Zwo" in path.read_text("utf-8")
    edits = [e for e in log_events(proj / ".milestones")
             if e["event_type"] == "manual_edit_detected"]
    assert [e["details"]["summary"] for e in edits] == ["task-2 title changed"]
    # Run again: applied on top of the edit, which stays.
    cli(proj, "task", "start", "1/1")
    m = cli_json(proj, "show", "1")["milestone"]
    assert [t["title"] for t in m["tasks"]] == ["One", "Zwo"]
    assert m["tasks"][0]["status"] == "in_progress" and "title: Zwo" in path.read_text("utf-8")
    if backend == "file":
        assert_consistent(proj / ".milestones")


def test_same_size_same_mtime_edit_of_current_txt_is_never_written_over(proj: Path) -> None:
    cli(proj, "plan", "Alpha", "--task", "One")
    cli(proj, "plan", "Beta", "--task", "One")
    marker = proj / ".milestones" / "active" / "current.txt"
    before = marker.read_text("utf-8").strip()
    other = "milestone-002" if before == "milestone-001" else "milestone-001"
    _hand_edit(marker, before, other, keep_stat=True)
    proc = cli(proj, "note", "a write", check=False)
    assert proc.returncode == 7 and "current.txt" in proc.stderr, proc.stderr
    assert marker.read_text("utf-8").strip() == other
    cli(proj, "note", "a write")
    assert marker.read_text("utf-8").strip() == other
    assert cli_json(proj, "status")["current"] == other


@pytest.mark.parametrize("target", ["database", "postgres"])
def test_after_a_move_to_the_database_the_yaml_files_are_marked_and_watched(
        proj: Path, target: str) -> None:
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "One", "--task", "Two")
    cli(proj, "storage", "migrate", "--to", target)
    note = (root / "active" / "NOT-READ.txt").read_text("utf-8")
    assert "NOT READ" in note and target in note
    assert "warning" not in cli(proj, "status").stderr  # nothing edited: nothing said

    # An edit to a file no backend reads: one warning line naming it and the way out.
    path = _yaml(proj)
    _hand_edit(path, "title: Two", "title: Zwo")
    proc = cli(proj, "status")
    [line] = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert ".milestones/active/milestone-001.yaml" in line and "not applied" in line
    assert "storage migrate --to file" in line
    cli(proj, "task", "done", "1/1")  # the database moves on meanwhile

    # Back to files: the edited file is kept aside and named, not written over.
    proc = cli(proj, "storage", "migrate", "--to", "file")
    assert ".milestones/active/milestone-001.yaml" in proc.stderr and "kept aside" in proc.stderr
    [kept] = list((root / "kept-edits").glob("*/active/milestone-001.yaml"))
    assert "title: Zwo" in kept.read_text("utf-8")
    assert not (root / "active" / "NOT-READ.txt").exists()
    m = cli_json(proj, "show", "1")["milestone"]
    assert [t["title"] for t in m["tasks"]] == ["One", "Two"]  # the database's data
    assert m["tasks"][0]["status"] == "done"
    assert "warning" not in cli(proj, "status").stderr
    assert_consistent(root)


def test_cleanup_keeps_an_edited_not_read_file_aside(proj: Path) -> None:
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "One")
    cli(proj, "storage", "migrate", "--to", "database")
    _hand_edit(_yaml(proj), "title: One", "title: Uno", keep_stat=True)
    # The per-command check trusts an unchanged stat; cleanup reads every file.
    report = cli_json(proj, "storage", "cleanup", "--yes")["report"]
    assert report["kept_aside"] == ["active/milestone-001.yaml"]
    assert "active/milestone-001.yaml" not in report["files"]
    [kept] = list((root / "kept-edits").glob("*/active/milestone-001.yaml"))
    assert "title: Uno" in kept.read_text("utf-8")
    assert not list((root / "active").glob("*.yaml"))
    assert not (root / "active" / "NOT-READ.txt").exists()


@pytest.mark.parametrize("backend", YAML_BACKENDS)
def test_a_migration_copies_a_same_size_same_mtime_edit(tmp_path: Path, backend: str) -> None:
    """The migration reads every file by content before it copies: the edit moves with
    the data (and is recorded), instead of being left behind in a file no longer read."""
    proj = _project(tmp_path, "p", backend, "Alpha", "--task", "One", "--task", "Two")
    _hand_edit(_yaml(proj), "title: Two", "title: Zwo", keep_stat=True)
    cli(proj, "storage", "migrate", "--to", "database")
    m = cli_json(proj, "show", "1")["milestone"]
    assert [t["title"] for t in m["tasks"]] == ["One", "Zwo"]
    assert "warning" not in cli(proj, "status").stderr


def test_doctor_repair_records_a_same_size_same_mtime_edit(proj: Path) -> None:
    cli(proj, "plan", "Alpha", "--task", "One", "--task", "Two")
    path = _yaml(proj)
    _hand_edit(path, "title: Two", "title: Zwo", keep_stat=True)
    cli(proj, "doctor", "--repair")
    assert "title: Zwo" in path.read_text("utf-8")
    m = cli_json(proj, "show", "1")["milestone"]
    assert [t["title"] for t in m["tasks"]] == ["One", "Zwo"]
    assert_consistent(proj / ".milestones")


def test_a_move_back_to_files_keeps_an_edit_made_before_there_was_a_record(proj: Path) -> None:
    """A switch made by an older version left no record of the files: a file that is not
    the text the database keeps for it is kept aside all the same."""
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "One")
    cli(proj, "plan", "Beta", "--task", "One")
    cli(proj, "storage", "migrate", "--to", "database")
    (root / "logs" / "not-read.json").unlink()
    (root / "active" / "NOT-READ.txt").unlink()
    _hand_edit(_yaml(proj), "title: One", "title: Uno")
    proc = cli(proj, "storage", "migrate", "--to", "file")
    assert ".milestones/active/milestone-001.yaml" in proc.stderr, proc.stderr
    [kept] = list((root / "kept-edits").glob("*/active/*.yaml"))
    assert kept.name == "milestone-001.yaml" and "title: Uno" in kept.read_text("utf-8")
    assert "title: One" in _yaml(proj).read_text("utf-8")

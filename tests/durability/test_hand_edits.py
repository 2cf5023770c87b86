"""Hand edits: noticed by content hash, recorded as events, and kept by later writes."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .helpers import assert_consistent, cli, cli_json, log_events


def _manual_edits(root: Path) -> list[dict[str, Any]]:
    return [e for e in log_events(root) if e["event_type"] == "manual_edit_detected"]


def _keys(text: str, indent: str = "") -> list[str]:
    """Top-level keys (or a task's keys, with indent "  "/"- ") in file order."""
    return re.findall(rf"^{re.escape(indent)}([a-z_]+):", text, flags=re.M)


def _task_block(text: str, tid: str) -> str:
    """The lines of one task entry in a block-style task list."""
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.search(rf"\bid: {tid}\b", ln))
    while not lines[start].startswith("- "):
        start -= 1
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    return "\n".join(lines[start:end])


HAND_EDITED = """\
# Alpha: the first cut. Edited by hand.
id: milestone-001
status: planned      # derived, leave it
title: Alpha (renamed by hand)
category: feature
tags: [core]
tasks:
# The parser comes first.
- title: One
  id: task-1
  status: done       # finished offline
- id: task-2
  title: Two
  status: todo
- id: task-3
  title: Three
  status: todo
priority: medium
created_at: '{created}'
updated_at: '{updated}'
"""


def test_hand_edit_is_recorded_and_kept_by_later_writes(proj: Path) -> None:
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "One", "--task", "Two", "--task", "Three", "--tag", "core")
    path = root / "active" / "milestone-001.yaml"
    snap = cli_json(proj, "show", "1")["milestone"]
    n_before = len(log_events(root))

    # A person renames the milestone, marks task-1 done, comments and reorders keys.
    edited = HAND_EDITED.format(created=snap["created_at"], updated=snap["updated_at"])
    path.write_text(edited, "utf-8")

    # The next command (a read) notices and records one event summarising the change.
    status = cli_json(proj, "status")
    assert status["milestones"][0]["title"] == "Alpha (renamed by hand)"
    [edit] = _manual_edits(root)
    assert edit["event_id"] == n_before + 1
    assert edit["milestone_id"] == "milestone-001"
    assert edit["details"]["path"] == ".milestones/active/milestone-001.yaml"
    summary = edit["details"]["summary"]
    assert "title changed" in summary and "task-1 status todo → done" in summary, summary
    # What `task done` derives follows, written round-trip (the comments stay).
    assert status["milestones"][0]["status"] == "in_progress"
    assert "# finished offline" in path.read_text("utf-8")

    # A tool write to the same milestone keeps the person's comments and key order.
    started = cli_json(proj, "task", "start", "1/2")
    assert started["task"]["status"] == "in_progress"
    text = path.read_text("utf-8")
    for comment in (
        "# Alpha: the first cut. Edited by hand.",
        "# derived, leave it",
        "# The parser comes first.",
        "# finished offline",
    ):
        assert comment in text, (comment, text)
    assert _keys(text) == _keys(edited)
    assert "tags: [core]" in text  # the person's flow style stays
    assert _keys(_task_block(text, "task-1"), "  ")[:1] == ["id"]  # `- title:` line first
    assert _task_block(text, "task-1").startswith("- title: One")
    task2 = _task_block(text, "task-2")
    assert _keys(task2.replace("- id:", "  id:"), "  ")[:3] == ["id", "title", "status"]
    # ... and writes the new values.
    assert "status: in_progress" in task2 and "started_at:" in task2
    assert re.search(r"^status: in_progress\s+# derived, leave it$", text, flags=re.M), text
    now = cli_json(proj, "show", "1")["milestone"]
    assert re.search(rf"updated_at: ['\"]{now['updated_at']}['\"]", text), text
    assert re.search(rf"started_at: ['\"]{now['tasks'][1]['started_at']}['\"]", task2), task2

    # The tool's own write is not mistaken for a hand edit, now or later.
    cli(proj, "status", "--json")
    assert len(_manual_edits(root)) == 1
    view = assert_consistent(root)
    assert view.files["milestone-001"]["title"] == "Alpha (renamed by hand)"
    assert cli(proj, "doctor").returncode == 0

    # A second hand edit on the round-tripped file is noticed too.
    path.write_text(text.replace("title: Three", "title: Three (edited)"), "utf-8")
    cli(proj, "note", "after the second edit")
    edits = _manual_edits(root)
    assert len(edits) == 2
    assert edits[-1]["details"]["summary"] == "task-3 title changed"
    assert_consistent(root)


def test_hand_edit_with_same_size_and_mtime_is_noticed_by_hash(proj: Path) -> None:
    """A same-size edit that keeps the old mtime is still caught once the file is read."""
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "One")
    path = root / "active" / "milestone-001.yaml"
    old = path.read_text("utf-8")
    st = path.stat()
    path.write_text(old.replace("title: One", "title: Uno"), "utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # a different mtime, same size
    assert path.stat().st_size == st.st_size
    cli(proj, "status", "--json")
    [edit] = _manual_edits(root)
    assert edit["details"]["summary"] == "task-1 title changed"
    assert_consistent(root)


def test_hand_added_milestone_file_is_adopted(proj: Path) -> None:
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "One")
    added = root / "active" / "milestone-005.yaml"
    text = (
        "# Written by hand, not by the tool.\n"
        "id: milestone-005\n"
        "title: Hand made\n"
        "status: planned\n"
        "tasks:\n"
        "- id: task-1\n"
        "  title: First   # keep me\n"
        "  status: todo\n"
    )
    added.write_text(text, "utf-8")

    listing = cli_json(proj, "list")
    assert [m["id"] for m in listing["milestones"]] == ["milestone-001", "milestone-005"]
    [edit] = _manual_edits(root)
    assert edit["milestone_id"] == "milestone-005"
    assert edit["details"]["summary"] == "file added: Hand made"
    assert edit["data"]["create"]["title"] == "Hand made"
    assert added.read_text("utf-8") == text

    # Ids go on from the adopted file; the adopted file keeps its comments on write.
    planned = cli_json(proj, "plan", "Next", "--task", "x")
    assert planned["milestones"][0]["id"] == "milestone-006"
    cli(proj, "task", "start", "5/1")
    after = added.read_text("utf-8")
    assert "# Written by hand, not by the tool." in after
    assert "# keep me" in after
    assert "status: in_progress" in after
    assert len(_manual_edits(root)) == 1
    assert_consistent(root)


def test_ids_written_by_hand_another_way_are_reached_by_short_refs(proj: Path) -> None:
    """A file written by hand as milestone-0007 with task-01: `7`, `7/1` and the ids
    as written all reach them (the canonical spelling would be milestone-007/task-1)."""
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "One")
    (root / "active" / "milestone-0007.yaml").write_text(
        "id: milestone-0007\ntitle: Hand made\nstatus: planned\ntasks:\n"
        "- id: task-01\n  title: First\n  status: todo\n"
        "- id: task-2\n  title: Second\n  status: todo\n", "utf-8")
    assert cli_json(proj, "show", "7")["milestone"]["id"] == "milestone-0007"
    assert cli_json(proj, "show", "milestone-0007")["milestone"]["id"] == "milestone-0007"
    cli(proj, "task", "start", "7/1")
    cli(proj, "task", "done", "milestone-0007/task-01")
    tasks = cli_json(proj, "show", "7")["milestone"]["tasks"]
    assert [(t["id"], t["status"]) for t in tasks] == [("task-01", "done"), ("task-2", "todo")]
    assert_consistent(root)


def test_hand_deleted_milestone_file_is_recorded(proj: Path) -> None:
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "One")
    cli(proj, "plan", "Beta", "--task", "Two")
    cli(proj, "current", "2")
    (root / "active" / "milestone-002.yaml").unlink()

    listing = cli_json(proj, "list", "--all")
    assert [m["id"] for m in listing["milestones"]] == ["milestone-001"]
    [edit] = _manual_edits(root)
    assert edit["milestone_id"] == "milestone-002"
    assert edit["details"]["summary"] == "file removed"
    assert edit["data"] == {"delete": True}
    view = assert_consistent(root)
    assert view.replayed.current is None  # the current milestone went with its file
    # Its id is never reused.
    assert cli_json(proj, "plan", "Gamma")["milestones"][0]["id"] == "milestone-003"
    assert cli(proj, "doctor").returncode == 0


def test_reformatting_without_a_data_change_records_nothing(proj: Path) -> None:
    root = proj / ".milestones"
    cli(proj, "plan", "Alpha", "--task", "One", "--task", "Two", "--tag", "a", "--tag", "b")
    path = root / "active" / "milestone-001.yaml"
    snap = cli_json(proj, "show", "1")["milestone"]
    n_before = len(log_events(root))

    path.write_text(
        "# Same data, other words.\n"
        '{id: milestone-001, title: "Alpha", status: planned, priority: medium,\n'
        " tags: [a, b], category: feature,\n"
        f" created_at: '{snap['created_at']}', updated_at: '{snap['updated_at']}',\n"
        " tasks: [{id: task-1, title: One, status: todo},\n"
        "         {id: task-2, title: 'Two', status: todo, progress: 0}]}\n",
        "utf-8",
    )
    cli(proj, "status", "--json")
    cli(proj, "list", "--json")
    assert len(log_events(root)) == n_before
    assert_consistent(root)
    assert cli(proj, "doctor").returncode == 0

    # Only touching the file (a new mtime) records nothing either.
    os.utime(path)
    cli(proj, "status", "--json")
    assert len(log_events(root)) == n_before

    # The next tool write keeps the reformatted file's comment.
    cli(proj, "task", "start", "1/1")
    assert "# Same data, other words." in path.read_text("utf-8")
    assert not _manual_edits(root)
    assert_consistent(root)

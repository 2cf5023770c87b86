"""Replay: the log alone rebuilds every snapshot exactly."""

from __future__ import annotations

import json
from pathlib import Path

from milestones.model import events as ev
from milestones.storage.file import FileStore

from .helpers import assert_consistent, cli, cli_json, log_events

MIXED = [
    ("plan", "Alpha", "--task", "a", "--task", "b", "--task", "c", "--due", "+2w", "--tag", "x"),
    ("plan", "Beta", "--task", "d", "--task", "e", "--depends-on", "1", "-p", "high"),
    ("task", "add", "1", "a2", "--depends-on", "1", "--estimate", "2", "--skill", "py"),
    ("task", "start", "1/1"),
    ("task", "progress", "1/1", "40"),
    ("task", "stop", "1/1"),
    ("task", "assign", "1/2", "bob@example.com"),
    ("task", "edit", "1/2", "--title", "b renamed", "--estimate", "3"),
    ("task", "block", "1/3", "--reason", "waiting for keys"),
    ("task", "unblock", "1/3"),
    ("task", "skip", "1/3", "--reason", "out of scope"),
    ("note", "halfway through Alpha"),
    ("task", "done", "1/1"),
    ("task", "done", "1/2"),
    ("task", "done", "1/4"),
    ("task", "reopen", "1/4"),
    ("task", "done", "1/4"),
    ("update", "2", "--title", "Beta two", "--add-tag", "y", "--owner", "carol@example.com"),
    ("archive", "1", "--lessons", "estimate reviews separately"),
    ("current", "2"),
    ("plan", "Gamma", "--task", "z"),
    ("delete", "3", "--yes"),
    ("task", "start", "2/1"),
    ("task", "add", "2", "f"),
    ("note", "done for today"),
]


def test_replay_of_the_log_equals_the_snapshots(proj: Path) -> None:
    root = proj / ".milestones"
    for i, args in enumerate(MIXED):
        cli(proj, *args)
        if i == 12:  # a hand edit in the middle is part of the history too
            p = root / "active" / "milestone-002.yaml"
            p.write_text(
                p.read_text("utf-8").replace("title: e", "title: e (by hand)") + "# note\n",
                "utf-8",
            )
    store = FileStore(root)
    replayed = ev.replay(store.events())
    st = store.load()
    view = assert_consistent(root)  # replay == state.json == every parsed file, exactly
    assert replayed.milestones == st.milestones == view.files
    assert replayed.current == st.current == "milestone-002"
    assert set(replayed.milestones) == {"milestone-001", "milestone-002"}
    assert (root / "completed" / "milestone-001.yaml").is_file()
    assert not (root / "active" / "milestone-001.yaml").exists()
    assert not (root / "active" / "milestone-003.yaml").exists()
    assert [n["text"] for n in replayed.notes] == ["halfway through Alpha", "done for today"]
    types = [e["event_type"] for e in view.events]
    for t in (
        "project_initialized",
        "milestone_created",
        "task_added",
        "task_started",
        "task_progress",
        "task_stopped",
        "task_assigned",
        "task_updated",
        "task_blocked",
        "task_unblocked",
        "task_skipped",
        "note_added",
        "task_completed",
        "task_reopened",
        "milestone_completed",
        "milestone_updated",
        "milestone_archived",
        "current_changed",
        "milestone_deleted",
        "manual_edit_detected",
        "milestone_started",
    ):
        assert t in types, t
    # What the CLI shows is the replay too.
    shown = cli_json(proj, "show", "2")["milestone"]
    assert [t["title"] for t in shown["tasks"]] == ["d", "e (by hand)", "f"]
    assert shown["title"] == "Beta two"
    doctor = json.loads(cli(proj, "doctor", "--json").stdout)
    assert doctor["healthy"], doctor


def test_state_json_is_derived_from_the_log(proj: Path) -> None:
    """state.json lost, garbled or stale: the next command rebuilds it from the log,
    quietly (no hand edit recorded), and the snapshots still equal the replay."""
    root = proj / ".milestones"
    state_path = root / "logs" / "state.json"
    for args in MIXED[:8]:
        cli(proj, *args)
    stale = state_path.read_bytes()
    for args in MIXED[8:15]:
        cli(proj, *args)
    expected = assert_consistent(root)
    n_events = len(expected.events)

    for damage in (None, b"{not json", stale):
        if damage is None:
            state_path.unlink()
        else:
            state_path.write_bytes(damage)
        cli(proj, "status", "--json")
        assert len(log_events(root)) == n_events, damage
        view = assert_consistent(root)
        assert view.files == expected.files
        assert view.replayed.current == expected.replayed.current
    doctor = json.loads(cli(proj, "doctor", "--json").stdout)
    assert doctor["healthy"], doctor

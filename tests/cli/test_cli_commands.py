"""Each command through the CLI, checked through the library afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import Runner
from milestones.cli import cli
from milestones.model import MILESTONE_ID_RE
from milestones.project import Project


@pytest.fixture(params=["file", "hybrid", "database", "postgres"])
def project_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Every command behaves alike on each backend (``run`` works in this project)."""
    Project.init(tmp_path, backend=request.param)
    return tmp_path


def lib(run: Runner) -> Project:
    return Project.open(run.cwd)


def test_init_is_idempotent(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["-C", str(tmp_path), "init", "--json"])
    assert first.exit_code == 0 and json.loads(first.output)["created"] is True
    again = runner.invoke(cli, ["-C", str(tmp_path), "init"])
    assert again.exit_code == 0 and "Already initialized" in again.output
    assert (tmp_path / ".milestones" / "config" / "storage-backend.txt").read_text() == "file\n"
    for d in ("active", "completed", "logs", "config"):
        assert (tmp_path / ".milestones" / d).is_dir()


def test_plan_with_every_option(run: Runner) -> None:
    out = run.json("plan", "Beta", "--description", "Ship it", "--start", "2026-11-01",
                   "--due", "2026-12-01", "--priority", "high", "--owner", "ann",
                   "--tag", "web", "--tag", "api", "--task", "One", "--task", "Two",
                   "--criterion", "Users can log in")
    assert out["milestones"][0]["id"] == "milestone-001"
    m = lib(run).milestone("1")
    assert (m.title, m.description, m.start_date, m.due_date, m.priority, m.owner) == (
        "Beta", "Ship it", "2026-11-01", "2026-12-01", "high", "ann")
    assert m.tags == ["web", "api"] and [t.title for t in m.tasks] == ["One", "Two"]
    assert m.success_criteria == ["Users can log in"]
    run.ok("plan", "Gamma", "--depends-on", "1", "--due", "+2w")
    assert lib(run).milestone("2").depends_on == ["milestone-001"]


def test_plan_from_file(run: Runner) -> None:
    plan = run.cwd / "plan.md"
    plan.write_text("# Launch\nDue: 2026-12-24\n\n- [ ] Build (3h)\n- [ ] Test after 1\n")
    assert "Planned milestone-001: Launch (2 tasks)" in run.ok("plan", "--from-file", str(plan))
    m = lib(run).milestone("1")
    assert m.tasks[1].depends_on == ["task-1"] and m.tasks[0].estimate == 3


def test_task_lifecycle(run: Runner) -> None:
    run.ok("plan", "Beta")
    out = run.json("task", "add", "1", "Write", "--estimate", "2", "--skill", "python",
                   "--assignee", "bob")
    assert out["task"]["id"] == "task-1"
    run.ok("task", "add", "1", "Review", "--depends-on", "1")
    run.ok("task", "start", "1")
    run.ok("task", "progress", "1", "40")
    run.ok("task", "stop", "1")
    run.ok("task", "done", "1/1")
    run.ok("task", "block", "2", "--reason", "waiting for review slot")
    assert lib(run).milestone("1").task("task-2").blockers == ["waiting for review slot"]
    run.ok("task", "unblock", "2")
    run.ok("task", "skip", "2", "--reason", "not needed")
    run.ok("task", "reopen", "2")
    run.ok("task", "assign", "2", "carol")
    run.ok("task", "edit", "2", "--title", "Review carefully", "--estimate", "1")
    t = lib(run).milestone("1").task("task-2")
    assert (t.title, t.estimate, t.assignee, t.status) == ("Review carefully", 1, "carol", "todo")
    run.ok("task", "assign", "2", "--none")
    assert lib(run).milestone("1").task("task-2").assignee is None
    types = [e["event_type"] for e in lib(run).store.events()]
    for expected in ("task_added", "task_started", "task_progress", "task_stopped",
                     "task_completed", "task_blocked", "task_unblocked", "task_skipped",
                     "task_reopened", "task_assigned", "task_updated"):
        assert expected in types


def test_force_is_recorded(run: Runner) -> None:
    run.ok("plan", "Beta", "--task", "A", "--task", "B")
    run.ok("task", "edit", "2", "--depends-on", "1")
    result = run("task", "done", "2")
    assert result.exit_code == 5
    run.ok("task", "done", "2", "--force")
    done = [e for e in lib(run).store.events() if e["event_type"] == "task_completed"][-1]
    assert done["details"]["forced"] is True


def test_update_current_archive_delete(run: Runner) -> None:
    run.ok("plan", "One", "--task", "A")
    run.ok("plan", "Two")
    run.ok("update", "2", "--title", "Second", "--add-tag", "x", "--priority", "low")
    assert lib(run).milestone("2").title == "Second"
    assert run.json("current")["current"] == "milestone-001"
    run.ok("current", "2")
    assert "milestone-002" in run.ok("current")
    run.ok("task", "done", "1/1")
    assert "Archived milestone-001" in run.ok("archive", "1", "--lessons", "Keep it small")
    assert lib(run).milestone("1").status == "archived"
    result = run("delete", "2", input="n\n")
    assert result.exit_code == 1 and "milestone-002" in lib(run).state().milestones
    run.ok("delete", "2", "--yes")
    assert "milestone-002" not in lib(run).state().milestones


def test_status_list_show_next_json_contract(run: Runner) -> None:
    run.ok("plan", "One", "--task", "A", "--task", "B", "--priority", "high", "--tag", "web")
    run.ok("plan", "Two", "--task", "C", "--owner", "ann", "--due", "2020-01-01")
    status = run.json("status", "--all")
    assert status["schema"] == 1 and status["current"] == "milestone-001"
    m = status["milestones"][0]
    for key in ("id", "title", "status", "priority", "progress", "health", "counts", "due_date",
                "start_date", "owner", "tags", "in_progress", "blocked", "next",
                "estimate_hours", "time_spent", "overdue"):
        assert key in m
    assert run.json("status")["milestones"][0]["id"] == "milestone-001"
    listed = run.json("list", "--tag", "web")
    assert [r["id"] for r in listed["milestones"]] == ["milestone-001"]
    assert [r["id"] for r in run.json("list", "--overdue")["milestones"]] == ["milestone-002"]
    assert [r["id"] for r in run.json("list", "--owner", "ann")["milestones"]] == [
        "milestone-002"]
    assert run.json("list", "--priority", "low")["milestones"] == []
    assert run.json("list", "--status", "planned")["milestones"]
    shown = run.json("show", "1")
    assert shown["kind"] == "milestone" and len(shown["milestone"]["tasks"]) == 2
    task = run.json("show", "1/2")
    assert task["kind"] == "task" and task["task"]["ref"] == "milestone-001/task-2"
    nxt = run.json("next")
    assert nxt["tasks"][0]["ref"] == "milestone-001/task-1"
    for key in ("ref", "milestone_id", "task_id", "title", "priority", "chain"):
        assert key in nxt["tasks"][0]


def test_text_outputs(run: Runner) -> None:
    run.ok("plan", "One", "--task", "A", "--task", "B")
    run.ok("task", "start", "1")
    assert "milestone-001" in run.ok("status") and "[" in run.ok("status")
    assert "One" in run.ok("list")
    assert "task-1" in run.ok("show", "1")
    assert "milestone-001/task-2" in run.ok("next")
    assert "task_started" in run.ok("log")
    for view in ("status", "list", "next", "log", "resume"):
        assert run.ok(view, "--ui", "rich").strip()
    assert "A" in run.ok("show", "1", "--ui", "rich")


def test_log_filters_and_json(run: Runner) -> None:
    run.ok("plan", "One", "--task", "A")
    run.ok("task", "start", "1")
    events = run.json("log", "--type", "task_started")["events"]
    assert [e["event_type"] for e in events] == ["task_started"]
    assert len(run.json("log", "--limit", "1")["events"]) == 1
    assert run.json("log", "--since", "1h")["events"]
    assert run.json("log", "--actor", "tester@example.com", "--milestone", "1")["events"]
    assert run("log", "--since", "yesterday-ish").exit_code == 4


def test_note_and_resume(run: Runner) -> None:
    run.ok("plan", "One", "--task", "A")
    run.ok("note", "Parser done; next: errors")
    data = run.json("resume")
    assert data["notes"][-1]["text"] == "Parser done; next: errors"
    assert data["next_task"]["ref"] == "milestone-001/task-1"
    assert "Next: milestone-001/task-1" in run.ok("resume")


def test_doctor_healthy(run: Runner) -> None:
    run.ok("plan", "One", "--task", "A")
    data = run.json("doctor")
    assert data["healthy"] is True
    assert all(c["ok"] for c in data["checks"])


def test_demo(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", str(tmp_path / "demo")])
    assert result.exit_code == 0
    assert "Command-line MVP" in result.output
    p = Project.open(tmp_path / "demo")
    assert len(p.state().milestones) == 3
    assert p.milestone("1").status == "in_progress"


def test_files_carry_the_schema_line_and_schema_command(run: Runner) -> None:
    run.ok("plan", "One", "--task", "A")
    printed = json.loads(run.ok("schema"))
    if lib(run).store.backend not in ("database", "postgres"):  # which keeps no milestone files
        text = (run.cwd / ".milestones" / "active" / "milestone-001.yaml").read_text()
        assert text.startswith(
            "# yaml-language-server: $schema=../config/milestone.schema.json\n")
        config = run.cwd / ".milestones" / "config"
        assert json.loads((config / "milestone.schema.json").read_text()) == printed
    props = printed["properties"]
    assert props["status"]["enum"][0] == "planned"
    assert props["id"]["pattern"] == MILESTONE_ID_RE.pattern
    assert printed["$defs"]["task"]["properties"]["progress"]["maximum"] == 100
    assert "title" in printed["required"]


def test_next_text_shows_a_page_and_says_how_many_more(run: Runner) -> None:
    run.ok("plan", "Many", *[a for i in range(25) for a in ("--task", f"t{i}")])
    text = run.ok("next")
    assert len([ln for ln in text.splitlines() if ln.startswith("milestone-001/")]) == 20
    assert "and 5 more ready" in text
    assert len(run.ok("next", "--all").splitlines()) == 25
    data = run.json("next")
    assert len(data["tasks"]) == 25 and data["total"] == 25
    assert run.json("next", "--limit", "3")["total"] == 25


def test_list_pages_walk_every_milestone_once(run: Runner) -> None:
    """`list --limit N` gives a page and `next_after`; `--after` it gives the next,
    until `next_after` is null: every milestone that passes the filters exactly once,
    in id order, on every backend."""
    for i in range(1, 12):
        run.ok("plan", f"M{i}", "--priority", "high" if i % 3 else "low", "--task", "t")
    every = [m["id"] for m in run.json("list")["milestones"]]
    assert len(every) == 11
    seen: list[str] = []
    after: list[str] = []
    while True:
        page = run.json("list", "--limit", "4", *after)
        assert len(page["milestones"]) <= 4
        seen += [m["id"] for m in page["milestones"]]
        if page["next_after"] is None:
            break
        after = ["--after", page["next_after"]]
    assert seen == every
    high = run.json("list", "--priority", "high", "--limit", "3", "--after", "2")
    assert [m["id"] for m in high["milestones"]] == ["milestone-004", "milestone-005",
                                                    "milestone-007"]
    assert high["next_after"] == "milestone-007"
    assert "next_after" not in run.json("list")  # no page asked, no cursor
    assert "--after milestone-002" in run("list", "--limit", "2").output
    bad = run("list", "--after", "nonsense")
    assert bad.exit_code == 4 and "not a milestone reference" in bad.output


def test_a_deleted_milestones_id_is_never_given_again(run: Runner) -> None:
    for title in ("A", "B", "C"):
        run.ok("plan", title)
    run.ok("delete", "3", "--yes")
    run.ok("delete", "2", "--yes")
    assert run.json("plan", "D")["milestone_id"] == "milestone-004"
    assert [m["id"] for m in run.json("list")["milestones"]] == ["milestone-001",
                                                                "milestone-004"]

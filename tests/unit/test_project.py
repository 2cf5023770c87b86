"""The service layer on every backend: transitions, progress, next, archive, delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from milestones.errors import (
    DependencyError,
    InvalidInput,
    InvalidTransition,
    NotFound,
)
from milestones.model import events as ev
from milestones.project import Project


class Clock:
    """A settable clock so time accounting is exact."""

    def __init__(self) -> None:
        self.now = "2026-11-25T10:00:00Z"

    def __call__(self) -> str:
        return self.now


@pytest.fixture
def clock(project: Project) -> Iterator[Clock]:
    c = Clock()
    project.clock = c
    project.today = lambda: "2026-11-25"
    yield c


def types(project: Project) -> list[str]:
    return [e["event_type"] for e in project.store.events()]


def test_plan_creates_zero_padded_ids_and_sets_current(project: Project) -> None:
    m = project.plan("Beta", tasks=["Write", "Ship"], due="2026-12-01", priority="high")
    assert m.id == "milestone-001"
    assert [t.id for t in m.tasks] == ["task-1", "task-2"]
    assert project.current_id() == "milestone-001"
    second = project.plan("Later")
    assert second.id == "milestone-002"
    assert project.current_id() == "milestone-001"  # an existing current stays
    assert types(project)[-2:] == ["milestone_created", "milestone_created"]


def test_deleted_ids_are_never_reused(project: Project) -> None:
    project.plan("One")
    project.plan("Two")
    project.delete("2")
    assert project.plan("Three").id == "milestone-003"


def test_plan_many_numbers_after_every_id_ever_used(project: Project) -> None:
    """plan_many numbers once per write (not a scan of the project per milestone): the
    ids still follow the highest ever used, deleted ones included."""
    project.plan("One")
    project.plan("Two")
    project.plan("Three")
    project.delete("3")
    made = project.plan_many([{"title": f"M{i}"} for i in range(3)])
    assert [m.id for m in made] == ["milestone-004", "milestone-005", "milestone-006"]


def test_plan_many_reports_progress(project: Project) -> None:
    seen: list[tuple[str, int]] = []
    project.plan_many([{"title": f"M{i}", "tasks": ["A", {"title": "B", "depends_on": [
        "task-1"]}]} for i in range(3)], progress=lambda stage, n: seen.append((stage, n)))
    assert seen == [("plan", 1), ("plan", 2), ("plan", 3), ("write", 3)]
    assert project.milestone("3").tasks[1].depends_on == ["task-1"]


def test_plan_many_unknown_own_task_names_the_tasks(project: Project) -> None:
    with pytest.raises(DependencyError) as err:
        project.plan_many([{"title": "M", "tasks": ["A", {"title": "B",
                                                          "depends_on": ["task-9"]}]}])
    assert "depends on milestone-001/task-9, which does not exist" in err.value.message
    assert err.value.hint == "tasks in milestone-001: task-1, task-2"


def test_timer_accumulates_over_start_stop(project: Project, clock: Clock) -> None:
    project.plan("Beta", tasks=["Write"])
    project.start_task("1/1")
    clock.now = "2026-11-25T10:20:00Z"
    assert project.stop_task("1/1").time_spent == 1200
    clock.now = "2026-11-25T11:00:00Z"
    project.start_task("1/1")
    clock.now = "2026-11-25T11:10:00Z"
    t = project.complete_task("1/1")
    assert t.time_spent == 1800
    stopped = next(e for e in project.store.events() if e["event_type"] == "task_stopped")
    assert stopped["details"]["time_spent"] == 1200


def test_done_waits_for_dependencies_unless_forced(project: Project) -> None:
    project.plan("Beta", tasks=["Design", {"title": "Build", "depends_on": ["task-1"]}])
    with pytest.raises(DependencyError, match="waiting on milestone-001/task-1"):
        project.complete_task("1/2")
    with pytest.raises(DependencyError):
        project.start_task("1/2")
    project.complete_task("1/2", force=True)
    forced = next(e for e in project.store.events() if e["event_type"] == "task_completed")
    assert forced["details"]["forced"] is True
    assert forced["details"]["unmet"] == ["milestone-001/task-1"]


def test_milestone_status_follows_tasks(project: Project) -> None:
    project.plan("Beta", tasks=["A", "B"])
    project.start_task("1/1")
    assert project.milestone("1").status == "in_progress"
    project.complete_task("1/1")
    project.skip_task("1/2", reason="not needed")
    m = project.milestone("1")
    assert m.status == "completed" and m.completed_at
    assert types(project)[-2:] == ["task_skipped", "milestone_completed"]
    project.reopen_task("1/2")
    assert project.milestone("1").status == "in_progress"
    assert types(project)[-1] == "milestone_status_changed"


def test_illegal_transitions_are_refused(project: Project) -> None:
    project.plan("Beta", tasks=["A"])
    with pytest.raises(InvalidTransition, match="cannot stop"):
        project.stop_task("1/1")
    with pytest.raises(InvalidTransition, match="cannot reopen"):
        project.reopen_task("1/1")
    project.block_task("1/1", "waiting for keys")
    with pytest.raises(InvalidTransition, match="blocked"):
        project.start_task("1/1")
    with pytest.raises(InvalidTransition):
        project.complete_task("1/1")
    t = project.unblock_task("1/1")
    assert t.status == "todo" and t.blockers == []


def test_block_records_reason_and_blockers(project: Project) -> None:
    project.plan("Beta", tasks=["A"])
    project.start_task("1/1")
    project.block_task("1/1", "API keys missing")
    last = list(project.store.events())[-2]
    assert last["event_type"] == "task_blocked"
    assert last["details"]["blockers"] == ["API keys missing"]
    assert project.milestone("1").status == "blocked"


def test_progress_weighted_by_estimates_with_partial_progress(project: Project) -> None:
    project.plan("Beta", tasks=[{"title": "Big", "estimate": 6}, {"title": "Small", "estimate": 2},
                                {"title": "Unknown"}])
    # Unknown weighs the mean estimate (4): total 12.
    project.complete_task("1/2")  # 2/12
    project.set_progress("1/1", 50)  # +3/12
    assert project.milestone("1").to_dict()["tasks"][0]["status"] == "in_progress"
    view = project.status_view("1")["milestones"][0]
    assert view["progress"] == round(100 * 5 / 12, 1)


def test_progress_by_count_and_skipped_excluded(project: Project) -> None:
    project.plan("Beta", tasks=["A", "B", "C", "D"])
    project.complete_task("1/1")
    project.skip_task("1/4")
    assert project.status_view("1")["milestones"][0]["progress"] == round(100 / 3, 1)


def test_next_orders_by_priority_then_longest_chain(project: Project) -> None:
    project.plan("Low", priority="low", tasks=["L1"])
    project.plan("High", priority="high", tasks=[
        "Leaf", "Root", {"title": "Mid", "depends_on": ["task-2"]},
        {"title": "Top", "depends_on": ["task-3"]}])
    refs = [r["ref"] for r in project.next_view()["tasks"]]
    assert refs == ["milestone-002/task-2", "milestone-002/task-1", "milestone-001/task-1"]
    chains = {r["ref"]: r["chain"] for r in project.next_view()["tasks"]}
    assert chains["milestone-002/task-2"] == 3
    assert [r["ref"] for r in project.next_view("1")["tasks"]] == ["milestone-001/task-1"]


def test_next_respects_milestone_dependencies(project: Project) -> None:
    project.plan("First", tasks=["A"])
    project.plan("Second", depends_on=["1"], tasks=["B"])
    assert [r["ref"] for r in project.next_view()["tasks"]] == ["milestone-001/task-1"]
    project.complete_task("1/1")
    assert [r["ref"] for r in project.next_view()["tasks"]] == ["milestone-002/task-1"]


def test_cross_milestone_dependencies_and_cycles(project: Project) -> None:
    project.plan("One", tasks=["A"])
    project.plan("Two", tasks=["B"])
    _, t = project.add_task("2", "C", depends_on=["1/1"])
    assert t.depends_on == ["milestone-001/task-1"]
    with pytest.raises(DependencyError, match=r"MS203 dependency cycle: 1/1 → 2/2 → 1/1"):
        project.edit_task("1/1", depends_on=["2/2"])
    with pytest.raises(DependencyError, match="itself"):
        project.add_task("1", "E", depends_on=["2"])  # the new task would be task-2
    with pytest.raises(DependencyError, match="does not exist"):
        project.add_task("1", "F", depends_on=["9"])
    assert [t.id for t in project.milestone("1").tasks] == ["task-1"]


def test_milestone_dependency_cycle_refused(project: Project) -> None:
    project.plan("One")
    project.plan("Two", depends_on=["1"])
    with pytest.raises(DependencyError, match="MS204 dependency cycle: 1 → 2 → 1"):
        project.update("1", depends_on=["2"])
    with pytest.raises(DependencyError, match="itself"):
        project.update("1", depends_on=["1"])


def test_archive_writes_completion_record(project: Project, clock: Clock) -> None:
    project.plan("Beta", due="2026-11-30", start="2026-11-20",
                 tasks=[{"title": "A", "estimate": 2}, {"title": "B", "estimate": 1}])
    with pytest.raises(InvalidTransition, match="cannot archive"):
        project.archive("1")
    project.start_task("1/1")
    clock.now = "2026-11-25T12:00:00Z"
    project.complete_task("1/1")
    project.complete_task("1/2")
    m = project.archive("1", lessons=["Estimate reviews"])
    c = m.completion
    assert c is not None
    assert c["estimated_hours"] == 3.0
    assert c["actual_hours"] == 2.0
    assert c["efficiency"] == 1.5
    assert c["on_time"] is True
    assert c["duration_days"] == 5
    assert c["lessons"] == ["Estimate reviews"]
    assert m.status == "archived"
    assert project.current_id() is None
    assert project.list_view()["milestones"] == []
    assert [r["id"] for r in project.list_view(all_=True)["milestones"]] == ["milestone-001"]
    if project.store.backend == "file":
        assert (project.root / "completed" / "milestone-001.yaml").is_file()
        assert not (project.root / "active" / "milestone-001.yaml").exists()


def test_delete_refuses_when_depended_on(project: Project) -> None:
    project.plan("One", tasks=["A"])
    project.plan("Two", tasks=["B"])
    project.add_task("2", "C", depends_on=["1/1"])
    with pytest.raises(DependencyError, match="milestone-002/task-2"):
        project.delete("1")
    project.delete("1", force=True)
    assert list(project.state().milestones) == ["milestone-002"]
    assert types(project)[-1] == "milestone_deleted"
    assert project.log_view(milestone="1")["events"]  # history stays


def test_update_and_nothing_to_change(project: Project) -> None:
    project.plan("Beta")
    m = project.update("1", title="Gamma", due="2026-12-24", add_tags=["x"], priority="low")
    assert (m.title, m.due_date, m.tags, m.priority) == ("Gamma", "2026-12-24", ["x"], "low")
    last = list(project.store.events())[-1]
    assert last["event_type"] == "milestone_updated"
    assert set(last["details"]["fields"]) >= {"title", "due_date", "tags", "priority"}
    n = len(list(project.store.events()))  # the same value again: no change, no event
    assert project.update("1", title="Gamma").title == "Gamma"
    assert len(list(project.store.events())) == n
    with pytest.raises(InvalidInput, match="before it starts"):
        project.update("1", start="2026-12-30")
    project.add_task("1", "x")
    with pytest.raises(InvalidTransition, match="open tasks"):
        project.update("1", status="completed")


def test_references(project: Project) -> None:
    project.plan("Beta", tasks=["Write docs"])
    assert project.show_view("1/1")["task"]["ref"] == "milestone-001/task-1"
    assert project.show_view("milestone-001/task-1")["task"]["title"] == "Write docs"
    assert project.start_task("1").status == "in_progress"  # bare = current milestone
    with pytest.raises(NotFound, match="did you mean milestone-001"):
        project.show_view("2")
    with pytest.raises(NotFound, match="unknown task"):
        project.show_view("1/7")
    with pytest.raises(NotFound, match="did you mean milestone-001"):
        project.show_view("Bet")


def test_set_current_and_current_event(project: Project) -> None:
    project.plan("One")
    project.plan("Two")
    assert project.set_current("2") == "milestone-002"
    assert project.current_id() == "milestone-002"
    assert types(project)[-1] == "current_changed"


def test_log_limit_is_the_tail_of_the_filtered_log(project: Project) -> None:
    """``log --limit N`` (read newest first on the database, a page at a time) is the
    last N of the same filtered log read in full, oldest first, on every backend."""
    project.plan("One", tasks=[f"T{i}" for i in range(12)])
    project.plan("Two", tasks=["B"])
    for i in range(1, 13):
        project.start_task(f"1/{i}")
        if i % 3 == 0:
            project.complete_task(f"1/{i}")
    whole = project.log_view()["events"]
    assert len(whole) >= 19  # (init), 2 plans, 12 starts, 4 completions, 1 milestone start
    for limit in (1, 5, len(whole) - 1, len(whole), len(whole) + 7):
        assert project.log_view(limit=limit)["events"] == whole[-limit:]
    done = project.log_view(types=["task_completed"])["events"]
    assert len(done) == 4
    assert project.log_view(types=["task_completed"], limit=3)["events"] == done[-3:]
    after = whole[10]["event_id"]
    assert project.log_view(after=after, limit=500)["events"] == whole[11:]
    assert project.log_view(limit=0)["events"] == []
    # filters the database asks of its index, with a limit: the same tail
    assert project.log_view(types=["task_failed"], limit=5)["events"] == []
    for kw in ({"milestone": "1"}, {"milestone": "2"}, {"actor": "tester@example.com"},
               {"actor": "nobody"}, {"types": ["task_started", "task_completed"]},
               {"milestone": "1", "types": ["task_completed"]}):
        full = project.log_view(**kw)["events"]  # type: ignore[arg-type]
        assert project.log_view(limit=3, **kw)["events"] == full[-3:], kw  # type: ignore[arg-type]


def test_log_filters(project: Project) -> None:
    project.plan("One", tasks=["A"])
    project.plan("Two", tasks=["B"])
    project.start_task("2/1")
    assert [e["event_type"] for e in project.log_view(milestone="2")["events"]] == [
        "milestone_created", "task_started", "milestone_started"]
    assert len(project.log_view(types=["task_started"])["events"]) == 1
    assert len(project.log_view(limit=2)["events"]) == 2
    assert project.log_view(actor="nobody")["events"] == []
    assert project.log_view(since="2999-01-01")["events"] == []
    with pytest.raises(InvalidInput):
        project.log_view(types=["bogus"])


def test_events_carry_seed_fields_and_chain(project: Project) -> None:
    project.plan("One", tasks=["A"])
    project.start_task("1/1")
    events = list(project.store.events())
    assert ev.verify_chain(events) is None
    e = events[-2]
    assert e["event_type"] == "task_started"
    assert set(e) >= {"milestone_id", "event_type", "timestamp", "details", "session_id",
                      "event_id", "actor", "prev_hash", "hash"}
    assert set(e["details"]) >= {"task_id", "progress_percentage", "time_spent", "blockers"}
    assert e["actor"] == "tester@example.com" and e["session_id"] == "test-session"
    assert e["timestamp"].endswith("Z")


def test_resume_record(project: Project) -> None:
    project.plan("One", tasks=["A", "B"])
    project.start_task("1/1")
    project.block_task("1/2", "no access")
    project.note("halfway there")
    r = project.resume_view()
    assert r["current_milestone"] == "milestone-001"
    assert [t["ref"] for t in r["in_progress"]] == ["milestone-001/task-1"]
    assert r["blockers"][0]["blockers"] == ["no access"]
    assert r["notes"][-1]["text"] == "halfway there"
    assert r["last_event"]["event_type"] == "note_added"
    assert r["session_id"] == "test-session" and r["actor"] == "tester@example.com"
    assert "git" in r and "cwd" in r


def test_resume_every_spaces_the_resume_refreshes_but_never_drops_a_note(
        project: Project) -> None:
    """A long run of writes (milestone execute) refreshes the session-resume record at
    most every ``resume_every`` seconds; a note is written at once."""
    project.plan("One", tasks=["A", "B"])
    assert project.resume_view()["last_event"]["event_type"] == "milestone_created"
    project.resume_every = 3600.0
    project.start_task("1/1")
    project.start_task("1/2")
    record = project.resume_view()
    assert record["last_event"]["event_type"] == "milestone_created"  # it lags
    project.note("stopping here")
    record = project.resume_view()
    assert record["notes"][-1]["text"] == "stopping here"
    assert [t["ref"] for t in record["in_progress"]] == ["milestone-001/task-1",
                                                         "milestone-001/task-2"]
    project.resume_every = 0.0
    project.complete_task("1/1")
    assert [t["ref"] for t in project.resume_view()["in_progress"]] == ["milestone-001/task-2"]


def test_plan_from_files(tmp_path: Path, project: Project) -> None:
    from milestones.plans.planfile import read_plan

    yml = tmp_path / "plan.yaml"
    yml.write_text("milestones:\n  - title: Alpha\n    due: 2026-12-01\n    tasks:\n"
                   "      - Design\n      - {title: Build, depends_on: [task-1], estimate: 3}\n"
                   "  - title: Beta\n    tags: web\n")
    a, b = project.plan_many(read_plan(yml))
    assert a.due_date == "2026-12-01" and a.tasks[1].depends_on == ["task-1"]
    assert b.tags == ["web"]
    md = tmp_path / "plan.md"
    md.write_text("# Gamma\nDue: 2026-12-10\nPriority: high\n\nWhy we do it.\n\n"
                  "- [x] Done already (2h)\n- [ ] Next step after 1\n")
    [g] = project.plan_many(read_plan(md))
    assert (g.priority, g.description, g.due_date) == ("high", "Why we do it.", "2026-12-10")
    assert [t.status for t in g.tasks] == ["done", "todo"]
    assert g.tasks[0].estimate == 2 and g.tasks[1].depends_on == ["task-1"]
    assert project.milestone(g.id).status == "in_progress"


def test_failed_operation_leaves_no_event(project: Project) -> None:
    project.plan("One", tasks=["A"])
    before = list(project.store.events())
    with pytest.raises(InvalidTransition):
        project.stop_task("1/1")
    assert list(project.store.events()) == before

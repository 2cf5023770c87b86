"""Progress math: bounded, 100 exactly when the work is done, monotone in task progress."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from prop_strategies import examples

from milestones import model as md

estimates = st.one_of(
    st.none(),
    st.just(0),
    st.integers(1, 10_000),
    st.floats(0.01, 10_000, allow_nan=False, allow_infinity=False),
)


@st.composite
def tasks(draw: st.DrawFn, n_min: int = 0) -> list[md.Task]:
    out = []
    for i in range(draw(st.integers(n_min, 8))):
        status = draw(st.sampled_from(md.TASK_STATUSES))
        progress = 100 if status == "done" else draw(st.integers(0, 100))
        out.append(
            md.Task(
                id=f"task-{i + 1}",
                title=f"t{i}",
                status=status,
                progress=progress,
                estimate=md.check_estimate(draw(estimates)),
            )
        )
    return out


@st.composite
def milestones_with_tasks(draw: st.DrawFn) -> md.Milestone:
    return md.Milestone(
        id="milestone-001",
        title="m",
        status=draw(st.sampled_from(md.MILESTONE_STATUSES)),
        tasks=draw(tasks()),
    )


@settings(max_examples=examples(400), deadline=None)
@given(milestones_with_tasks())
def test_progress_is_a_percentage(m: md.Milestone) -> None:
    p = md.milestone_progress(m)
    assert 0.0 <= p <= 100.0
    assert p == round(p, 1)


@settings(max_examples=examples(400), deadline=None)
@given(milestones_with_tasks())
def test_progress_is_100_exactly_when_every_counted_task_is_done(m: md.Milestone) -> None:
    counted = [t for t in m.tasks if t.status != "skipped"]
    assume(counted)
    p = md.milestone_progress(m)
    assert (p == 100.0) == all(t.status == "done" for t in counted), (p, m.tasks)


@settings(max_examples=examples(400), deadline=None)
@given(milestones_with_tasks(), st.data())
def test_progress_is_monotone_in_a_tasks_progress(m: md.Milestone, data: st.DataObject) -> None:
    open_tasks = [t for t in m.tasks if not t.finished]
    assume(open_tasks)
    t = data.draw(st.sampled_from(open_tasks))
    before = md.milestone_progress(m)
    t.progress = data.draw(st.integers(t.progress, 100))
    assert md.milestone_progress(m) >= before
    # Finishing it is more progress still.
    mid = md.milestone_progress(m)
    md.complete_task(t, "2026-01-01T00:00:00Z", t.id, [], force=True)
    assert md.milestone_progress(m) >= mid


@settings(max_examples=examples(200), deadline=None)
@given(milestones_with_tasks(), st.data())
def test_skipping_an_unstarted_task_never_lowers_progress(
    m: md.Milestone, data: st.DataObject
) -> None:
    # Without estimates every task weighs 1: dropping a task at 0 % cannot lower the mean.
    # (With estimates the others' mean weight moves, so it can go either way.)
    for t in m.tasks:
        t.estimate = None
    todo = [t for t in m.tasks if t.status == "todo" and t.progress == 0]
    if not todo:
        todo = [m.tasks[0]] if m.tasks else []
        for t in todo:
            t.status, t.progress = "todo", 0
    assume(todo)
    before = md.milestone_progress(m)
    md.skip_task(data.draw(st.sampled_from(todo)), "2026-01-01T00:00:00Z", "x")
    assert md.milestone_progress(m) >= before


def test_a_task_at_100_percent_that_is_not_done_is_not_a_finished_milestone() -> None:
    m = md.Milestone(id="milestone-001", title="m", tasks=[md.Task(id="task-1", title="t")])
    md.set_progress(m.tasks[0], "2026-01-01T00:00:00Z", "task-1", 100)
    assert m.tasks[0].status == "in_progress"
    assert md.milestone_progress(m) < 100.0

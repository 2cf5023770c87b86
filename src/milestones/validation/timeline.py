"""Timeline rules (MS3xx): date order, windows, overdue work, feasibility."""

from __future__ import annotations

from ..errors import DependencyError
from ..model import schedule
from .registry import Context, rule
from .resource import weekly_hours

OPEN = ("planned", "in_progress", "blocked")


@rule(
    "MS301",
    "timeline",
    "error",
    "a milestone is due before it starts",
    "move the due date after the start date",
    on_write=True,
)
def due_before_start(ctx: Context) -> None:
    for mid, m in ctx.scoped():
        start, due = m.get("start_date"), m.get("due_date")
        if start and due and due < start:
            ctx.report(
                f"{mid} is due {due}, before it starts {start}", ref=mid, path=(mid, ("due_date",))
            )


@rule(
    "MS302",
    "timeline",
    "warning",
    "a task was worked outside its milestone's window",
    "widen the milestone's dates, or move the task to the milestone it belongs to",
)
def task_window(ctx: Context) -> None:
    for mid, m in ctx.scoped():
        start, due = m.get("start_date"), m.get("due_date")
        for i, t in enumerate(m.get("tasks", [])):
            began = (t.get("started_at") or "")[:10]
            ended = (t.get("completed_at") or "")[:10]
            if start and began and began < start:
                ctx.report(
                    f"{mid}/{t['id']} started {began}, before {mid} starts {start}",
                    ref=f"{mid}/{t['id']}",
                    path=(mid, ("tasks", i, "started_at")),
                )
            if due and ended and ended > due and t.get("status") == "done":
                ctx.report(
                    f"{mid}/{t['id']} was completed {ended}, after {mid} was due {due}",
                    ref=f"{mid}/{t['id']}",
                    path=(mid, ("tasks", i, "completed_at")),
                )


@rule(
    "MS303",
    "timeline",
    "warning",
    "a milestone is due before one it depends on",
    "move its due date after its dependencies' due dates",
    on_write=True,
)
def due_before_dependency(ctx: Context) -> None:
    for mid, m in ctx.scoped():
        due = m.get("due_date")
        for j, d in enumerate(m.get("depends_on", [])):
            other = ctx.milestones.get(d, {}).get("due_date")
            if due and other and due < other:
                ctx.report(
                    f"{mid} is due {due}, before {d} (which it depends on) is due {other}",
                    ref=mid,
                    path=(mid, ("depends_on", j)),
                )


@rule(
    "MS304",
    "timeline",
    "warning",
    "an open milestone is past its due date",
    "finish it, move the due date (`milestone update REF --due …`), or cancel it",
)
def overdue(ctx: Context) -> None:
    for mid, m in ctx.scoped():
        due = m.get("due_date")
        if due and due < ctx.today and m.get("status") in OPEN:
            ctx.report(
                f"{mid} was due {due} and is {m.get('status')}", ref=mid, path=(mid, ("due_date",))
            )


@rule(
    "MS305",
    "timeline",
    "warning",
    "the projected finish is after the due date (at risk)",
    "cut scope, add capacity (config team), or move the due date",
)
def feasibility(ctx: Context) -> None:
    hours = weekly_hours(ctx)
    try:
        crit_by = schedule.project_critical_hours(ctx.milestones)
    except DependencyError:
        return  # MS203 reports the cycle; no projection through one
    for mid, m in ctx.scoped():
        if m.get("status") not in OPEN or not m.get("due_date"):
            continue
        f = schedule.feasibility(m, crit_by.get(mid, 0.0), ctx.today, hours)
        if f["at_risk"]:
            ctx.report(
                f"{mid} needs {f['remaining_hours']}h ({f['critical_path_hours']}h on "
                f"its critical path): projected to finish "
                f"{f['projected_finish'] or 'after 9999-12-31'}, "
                f"due {m['due_date']}",
                ref=mid,
                path=(mid, ("due_date",)),
            )


@rule(
    "MS306",
    "timeline",
    "info",
    "open tasks have no estimate",
    "add estimates (`milestone task edit REF --estimate H`) for a real projection",
)
def missing_estimates(ctx: Context) -> None:
    for mid, m in ctx.scoped():
        if m.get("status") not in OPEN:
            continue
        missing = [
            t["id"]
            for t in m.get("tasks", [])
            if t.get("status") not in ("done", "skipped") and not t.get("estimate")
        ]
        if missing:
            ctx.report(
                f"{mid}: {len(missing)} open task(s) without an estimate "
                f"({', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}); "
                f"projections count {schedule.DEFAULT_HOURS:g}h each",
                ref=mid,
                path=(mid, ("tasks",)),
            )

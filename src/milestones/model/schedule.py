"""Critical path, slack and feasibility over the task graph. Pure: no I/O, no clock.

Durations are remaining hours: a done or skipped task takes 0, an open task its
estimate times (1 - progress), a task without an estimate ``DEFAULT_HOURS``.
Edges run from a task to the tasks it depends on; cross-milestone edges count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from ..errors import DependencyError
from . import topological_order

DEFAULT_HOURS = 1.0
DEFAULT_WEEKLY_HOURS = 40.0
WORK_DAYS_PER_WEEK = 5


def remaining_hours(task: Mapping[str, Any]) -> float:
    if task.get("status") in ("done", "skipped"):
        return 0.0
    estimate = task.get("estimate")
    hours = float(estimate) if estimate else DEFAULT_HOURS
    return hours * (1.0 - (task.get("progress") or 0) / 100.0)


def team_weekly_hours(config: Mapping[str, Any]) -> list[float]:
    """Each configured team member's weekly hours (``capacity``, default 40)."""
    members = ((config.get("team") or {}).get("members")) or []
    out = []
    for m in members:
        if not isinstance(m, dict):
            continue
        try:
            out.append(float(m.get("capacity", DEFAULT_WEEKLY_HOURS)))
        except (TypeError, ValueError):
            continue
    return out


class Schedule:
    """Earliest/latest start in hours from now, slack, and the critical path. (A plain
    class: a dataclass would import ``inspect`` into every ``status``.)"""

    def __init__(self, earliest_start: dict[str, float] | None = None,
                 earliest_finish: dict[str, float] | None = None,
                 latest_start: dict[str, float] | None = None,
                 slack: dict[str, float] | None = None,
                 critical_path: list[str] | None = None, length: float = 0.0) -> None:
        self.earliest_start = earliest_start or {}
        self.earliest_finish = earliest_finish or {}
        self.latest_start = latest_start or {}
        self.slack = slack or {}
        self.critical_path = critical_path or []
        self.length = length


def schedule(edges: Mapping[str, list[str]], hours: Mapping[str, float]) -> Schedule:
    """Forward and backward pass; the critical path is the longest chain of work."""
    order = topological_order(edges)
    es: dict[str, float] = {}
    ef: dict[str, float] = {}
    for n in order:
        es[n] = max((ef[d] for d in edges.get(n, ())), default=0.0)
        ef[n] = es[n] + hours.get(n, 0.0)
    length = max(ef.values(), default=0.0)
    users: dict[str, list[str]] = {n: [] for n in order}
    for n, deps in edges.items():
        for d in deps:
            users[d].append(n)
    lf: dict[str, float] = {}
    ls: dict[str, float] = {}
    for n in reversed(order):
        lf[n] = min((ls[u] for u in users[n]), default=length)
        ls[n] = lf[n] - hours.get(n, 0.0)
    slack = {n: round(ls[n] - es[n], 6) for n in order}
    path: list[str] = []
    if order:
        # Walk back from the task that finishes last along zero-slack dependencies.
        pos = {n: i for i, n in enumerate(order)}
        end = max(order, key=lambda n: (ef[n], -pos[n]))
        node: str | None = end
        while node is not None:
            path.append(node)
            prev = [
                d
                for d in edges.get(node, ())
                if math.isclose(ef[d], es[node]) and slack[d] <= slack[node] + 1e-9
            ]
            node = max(prev, key=lambda d: ef[d]) if prev else None
        path.reverse()
    return Schedule(es, ef, ls, slack, path, length)


def project_schedule(
    milestones: Mapping[str, Mapping[str, Any]], only: str | None = None
) -> Schedule:
    """The schedule of every open task (or those of milestone ``only`` and what they need)."""
    edges, hours = _task_graph(milestones)
    if only is not None:
        keep: set[str] = set()
        stack = [r for r in edges if r.startswith(only + "/")]
        while stack:
            r = stack.pop()
            if r not in keep:
                keep.add(r)
                stack.extend(edges[r])
        edges = {k: v for k, v in edges.items() if k in keep}
    return schedule(edges, hours)


def _task_graph(
    milestones: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, list[str]], dict[str, float]]:
    """Every task's dependencies (those that exist) and remaining hours, by full ref."""
    edges: dict[str, list[str]] = {}
    hours: dict[str, float] = {}
    for mid, m in milestones.items():
        for t in m.get("tasks", []):
            ref = f"{mid}/{t['id']}"
            edges[ref] = [d if "/" in d else f"{mid}/{d}" for d in t.get("depends_on", [])]
            hours[ref] = remaining_hours(t)
    edges = {k: [d for d in v if d in edges] for k, v in edges.items()}
    return edges, hours


def project_critical_hours(milestones: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """``critical_hours_by_milestone(project_schedule(milestones))`` by the forward pass
    alone (no order to sort, no latest starts, slack or path); DependencyError on a cycle."""
    return graph_critical_hours(*_task_graph(milestones))


def graph_critical_hours(edges: Mapping[str, list[str]], hours: Mapping[str, float]
                         ) -> dict[str, float]:
    """``project_critical_hours`` of a task graph given as every task's dependencies
    (those that exist) and remaining hours, by full ref."""
    ef: dict[str, float] = {}  # earliest finish, each task after all it depends on
    open_: set[str] = set()  # on the depth-first stack: meeting one again is a cycle
    for root in edges:
        if root in ef:
            continue
        stack = [(root, iter(edges[root]))]
        open_.add(root)
        while stack:
            node, deps = stack[-1]
            for d in deps:
                if d not in ef:
                    if d in open_:
                        raise DependencyError(
                            "the task graph has a cycle", hint="run `milestone validate`"
                        )
                    open_.add(d)
                    stack.append((d, iter(edges[d])))
                    break
            else:
                stack.pop()
                open_.discard(node)
                ef[node] = max((ef[d] for d in edges[node]), default=0.0) + hours[node]
    return critical_hours_by_milestone(Schedule(earliest_finish=ef))


def add_work_days(start: date, days: float) -> date | None:
    """``start`` plus ``days`` working days (Monday to Friday), rounded up; None when
    that lies past the calendar's end (9999-12-31)."""
    if not math.isfinite(days):
        return None if days > 0 else start
    whole = math.ceil(days - 1e-9)
    if whole <= 0:
        return start
    # Whole weeks at once (each seven days holds five working days), the rest by day.
    weeks = (whole - 1) // WORK_DAYS_PER_WEEK
    if weeks * 7 > (date.max - start).days:
        return None
    d = start + timedelta(days=weeks * 7)
    whole -= weeks * WORK_DAYS_PER_WEEK
    try:
        while whole > 0:
            d += timedelta(days=1)
            if d.weekday() < WORK_DAYS_PER_WEEK:
                whole -= 1
    except OverflowError:
        return None
    return d


def critical_hours_by_milestone(sched: Schedule) -> dict[str, float]:
    """Per milestone: hours until its last task can finish, upstream work included."""
    out: dict[str, float] = {}
    for ref, finish in sched.earliest_finish.items():
        mid = ref.split("/", 1)[0]
        if finish > out.get(mid, -1.0):
            out[mid] = finish
    return out


def feasibility(
    milestone: Mapping[str, Any], critical_hours: float, today: str, team_weekly_hours: list[float]
) -> dict[str, Any]:
    """Projected finish from the critical path and the team's capacity; ``at_risk`` if late.

    The critical path is worked by one person at a time (one member's daily
    hours); all remaining work is shared by the whole team. The slower of the
    two sets the projected finish, in working days from today (or the start).
    """
    remaining = sum(remaining_hours(t) for t in milestone.get("tasks", []))
    weekly = [h for h in team_weekly_hours if h > 0] or [DEFAULT_WEEKLY_HOURS]
    person_daily = max(weekly) / WORK_DAYS_PER_WEEK
    team_daily = sum(weekly) / WORK_DAYS_PER_WEEK
    days = max(critical_hours / person_daily, remaining / team_daily) if remaining else 0.0
    start = date.fromisoformat(today)
    if milestone.get("start_date") and milestone["start_date"] > today:
        start = date.fromisoformat(milestone["start_date"])
    finish = add_work_days(start, days) if days else start
    due = milestone.get("due_date")
    # Past the calendar's end there is no date to give: null, and late for any due date.
    late = finish is None or bool(due and finish.isoformat() > due)
    return {
        "remaining_hours": round(remaining, 2),
        "critical_path_hours": round(critical_hours, 2),
        "work_days": round(days, 2),
        "projected_finish": finish.isoformat() if finish is not None else None,
        "due_date": due,
        "at_risk": bool(due and late and remaining > 0),
    }

"""Plain rows the views return: summaries, totals, the task graph, what is next.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .. import model as md
from .txn import full_ref


def summary(m: md.Milestone, day: str, feasibility: Mapping[str, Any] | None = None
            ) -> dict[str, Any]:
    c = md.counts(m)
    estimate = sum(t.estimate or 0 for t in m.tasks)
    return {
        "id": m.id,
        "title": m.title,
        "status": m.status,
        "priority": m.priority,
        "owner": m.owner,
        "category": m.category,
        "tags": list(m.tags),
        "start_date": m.start_date,
        "due_date": m.due_date,
        "depends_on": list(m.depends_on),
        "progress": md.milestone_progress(m),
        "health": md.health(
            m, day, feasibility["at_risk"] if feasibility and m.due_date else None),
        "projected_finish": feasibility["projected_finish"] if feasibility else None,
        "overdue": bool(m.due_date and m.due_date < day and m.status not in md.CLOSED_MILESTONE),
        "counts": c,
        "estimate_hours": estimate,
        "time_spent": sum(t.time_spent for t in m.tasks),
        "in_progress": [f"{m.id}/{t.id}" for t in m.tasks if t.status == "in_progress"],
        "blocked": [
            {"ref": f"{m.id}/{t.id}", "title": t.title, "blockers": t.blockers}
            for t in m.tasks
            if t.status == "blocked"
        ],
        "completed_at": m.completed_at,
    }


def active_rows(tasks: Iterable[tuple[str, md.Task]]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The session-resume record's ``in_progress`` and ``blockers`` rows."""
    in_progress, blocked = [], []
    for mid, t in tasks:
        if t.status == "in_progress":
            in_progress.append(
                {
                    "ref": f"{mid}/{t.id}",
                    "title": t.title,
                    "assignee": t.assignee,
                    "started_at": t.started_at,
                    "timer_running": bool(t.timer_started_at),
                    "progress": t.progress,
                }
            )
        elif t.status == "blocked":
            blocked.append({"ref": f"{mid}/{t.id}", "title": t.title, "blockers": t.blockers})
    return in_progress, blocked


def totals(ms: list[md.Milestone]) -> dict[str, Any]:
    by_status = {s: 0 for s in md.MILESTONE_STATUSES}
    tasks = {s: 0 for s in md.TASK_STATUSES}
    for m in ms:
        by_status[m.status] += 1
        for t in m.tasks:
            tasks[t.status] += 1
    return {"milestones": len(ms), "by_status": by_status, "tasks": tasks}


def task_graph(ms: Mapping[str, md.Milestone]) -> dict[str, list[str]]:
    edges: dict[str, list[str]] = {}
    for mid, m in ms.items():
        for t in m.tasks:
            edges[f"{mid}/{t.id}"] = [full_ref(mid, d) for d in t.depends_on]
    return edges


def next_tasks(
    ms: Mapping[str, md.Milestone], *, only: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Tasks that can start now, best first: priority, then longest chain waiting on them."""
    status: dict[str, str] = {}
    for mid, m in ms.items():
        status[mid] = "done" if m.status in ("completed", "archived") else m.status
        for t in m.tasks:
            status[f"{mid}/{t.id}"] = t.status
    open_nodes = {ref for ref, s in status.items() if "/" in ref and s not in md.FINISHED_TASK}
    chain = md.dependents_chain(task_graph(ms), open_nodes)
    rows: list[dict[str, Any]] = []
    for mid, m in ms.items():
        if m.closed or (only and mid != only):
            continue
        if any(status.get(d) != "done" for d in m.depends_on):
            continue
        for t in m.tasks:
            if t.status != "todo":
                continue
            if any(status.get(full_ref(mid, d)) not in md.FINISHED_TASK for d in t.depends_on):
                continue
            ref = f"{mid}/{t.id}"
            rows.append(
                {
                    "ref": ref,
                    "milestone_id": mid,
                    "task_id": t.id,
                    "title": t.title,
                    "priority": m.priority,
                    "chain": chain.get(ref, 1),
                    "estimate": t.estimate,
                    "skills": list(t.skills),
                    "assignee": t.assignee,
                    "milestone_title": m.title,
                }
            )
    rows.sort(
        key=lambda r: (
            md.priority_rank(r["priority"]),
            -r["chain"],
            r["milestone_id"],
            md.task_number(r["task_id"]),
        )
    )
    return rows[:limit] if limit is not None else rows

"""Dependency rules (MS2xx): dangling references, self-dependencies, cycles, odd targets."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any

from .. import model as md
from .registry import Context, rule, short


def _deps(ctx: Context, mid: str, m: Mapping[str, Any]) -> list[tuple[int, int, str, str]]:
    """(task index, dependency index, task id, full dependency ref) for every task edge
    (worked out once a run, in the plan's index)."""
    return ctx.index.edges(mid, m)


@rule(
    "MS201",
    "dependency",
    "error",
    "a task depends on a task that does not exist",
    "fix the reference or remove it (`milestone task edit REF --depends-on …`)",
    on_write=True,
)
def dangling_tasks(ctx: Context) -> None:
    for mid, m in ctx.scoped():
        for i, j, tid, ref in _deps(ctx, mid, m):
            dmid, dtid = ref.split("/", 1)
            if dtid not in ctx.index.task_ids(dmid):
                where = "" if dmid in ctx.milestones else f" ({dmid} does not exist)"
                ctx.report(
                    f"{mid}/{tid} depends on {ref}, which does not exist{where}",
                    ref=f"{mid}/{tid}",
                    path=(mid, ("tasks", i, "depends_on", j)),
                )


@rule(
    "MS202",
    "dependency",
    "error",
    "a milestone depends on a milestone that does not exist",
    "fix the id or remove it (`milestone update REF --depends-on …`)",
    on_write=True,
)
def dangling_milestones(ctx: Context) -> None:
    for mid, m in ctx.scoped():
        for j, d in enumerate(m.get("depends_on", [])):
            if d not in ctx.milestones:
                ctx.report(
                    f"{mid} depends on {d}, which does not exist",
                    ref=mid,
                    path=(mid, ("depends_on", j)),
                )


@rule(
    "MS203",
    "dependency",
    "error",
    "tasks depend on each other in a cycle",
    "remove one dependency of the cycle",
    on_write=True,
)
def task_cycles(ctx: Context) -> None:
    # A cycle through the scope lies within what the scope's tasks reach: on a lazily
    # read plan, read only that (the cycles found are those of the whole plan).
    edges = ctx.index.task_graph(ctx.reached(_task_targets) if ctx.partial else None)
    for cycle in _cycles(edges):
        if not any(ctx.in_scope(r.split("/")[0]) for r in cycle):
            continue
        first_mid, first_tid = cycle[0].split("/", 1)
        index = next(
            (
                i
                for i, t in enumerate(ctx.milestones[first_mid].get("tasks", []))
                if t["id"] == first_tid
            ),
            0,
        )
        ctx.report(
            "dependency cycle: " + " → ".join(short(r) for r in cycle),
            ref=cycle[0],
            path=(first_mid, ("tasks", index, "depends_on")),
        )


def _task_targets(mid: str, m: Mapping[str, Any]) -> set[str]:
    """The milestones ``mid``'s tasks depend on (other than itself)."""
    return {d.split("/", 1)[0] for t in m.get("tasks", []) for d in t.get("depends_on", [])
            if "/" in d}


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Cycles, one per strongly connected group, each as a closed path."""
    found: list[list[str]] = []
    remaining = dict(edges)
    while True:
        cycle = md.find_cycle(remaining)
        if cycle is None:
            return found
        found.append(cycle)
        members = set(cycle)
        remaining = {
            k: [d for d in v if d not in members] for k, v in remaining.items() if k not in members
        }


@rule(
    "MS204",
    "dependency",
    "error",
    "milestones depend on each other in a cycle",
    "remove one dependency of the cycle",
    on_write=True,
)
def milestone_cycles(ctx: Context) -> None:
    milestones = (ctx.reached(lambda mid, m: m.get("depends_on") or []) if ctx.partial
                  else ctx.milestones)
    edges = {
        mid: [d for d in m.get("depends_on", []) if d != mid] for mid, m in milestones.items()
    }
    for cycle in _cycles(edges):
        if any(ctx.in_scope(m) for m in cycle):
            ctx.report(
                "dependency cycle: " + " → ".join(short(m) for m in cycle),
                ref=cycle[0],
                path=(cycle[0], ("depends_on",)),
            )


@rule(
    "MS205",
    "dependency",
    "warning",
    "work depends on a cancelled or archived milestone",
    "depend on the work that replaces it, or drop the dependency",
    on_write=True,
)
def closed_targets(ctx: Context) -> None:
    for mid, m in ctx.scoped():
        if m.get("status") in ("archived", "cancelled"):
            continue
        for j, d in enumerate(m.get("depends_on", [])):
            status = ctx.milestones.get(d, {}).get("status")
            if status == "cancelled":
                ctx.report(
                    f"{mid} depends on {d}, which is cancelled",
                    ref=mid,
                    path=(mid, ("depends_on", j)),
                )
        for i, j, tid, ref in _deps(ctx, mid, m):
            dmid = ref.split("/", 1)[0]
            status = ctx.milestones.get(dmid, {}).get("status")
            if dmid != mid and status == "cancelled":
                ctx.report(
                    f"{mid}/{tid} depends on {ref} in {dmid}, which is {status}",
                    ref=f"{mid}/{tid}",
                    path=(mid, ("tasks", i, "depends_on", j)),
                )


@rule(
    "MS206",
    "dependency",
    "warning",
    "a task waits on a task in a milestone due later",
    "move one of the due dates, or the dependency",
    on_write=True,
)
def later_dependency(ctx: Context) -> None:
    for mid, m in ctx.scoped():
        due = m.get("due_date")
        if not due:
            continue
        for i, j, tid, ref in _deps(ctx, mid, m):
            dmid = ref.split("/", 1)[0]
            other = ctx.milestones.get(dmid, {}).get("due_date")
            if dmid != mid and other and other > due:
                ctx.report(
                    f"{mid}/{tid} (due {due}) depends on {ref}, due later ({other})",
                    ref=f"{mid}/{tid}",
                    path=(mid, ("tasks", i, "depends_on", j)),
                )


@rule(
    "MS207",
    "dependency",
    "error",
    "something depends on itself",
    "remove the dependency on itself",
    on_write=True,
)
def self_dependency(ctx: Context) -> None:
    for mid, m in ctx.scoped():
        for j, d in enumerate(m.get("depends_on", [])):
            if d == mid:
                ctx.report(f"{mid} depends on itself", ref=mid, path=(mid, ("depends_on", j)))
        for i, j, tid, ref in _deps(ctx, mid, m):
            if ref == f"{mid}/{tid}":
                ctx.report(
                    f"{mid}/{tid} depends on itself",
                    ref=ref,
                    path=(mid, ("tasks", i, "depends_on", j)),
                )


@rule(
    "MS208",
    "dependency",
    "error",
    "milestones and tasks wait on each other in a cycle across levels",
    "remove one dependency of the cycle (`milestone update REF --depends-on …` for a "
    "milestone's, `milestone task edit REF --depends-on …` for a task's): as it is, "
    "`milestone next` never offers any task of it",
    on_write=True,
)
def cross_level_cycles(ctx: Context) -> None:
    """One graph of tasks and milestones: a task waits on the tasks it names; a task of
    a milestone that depends on milestone A waits on A, and A waits on each of its
    tasks (A is done when they are). A cycle through both levels (B depends on A,
    a task of A on a task of B) deadlocks: neither MS203 nor MS204 sees it."""
    milestones = (ctx.reached(lambda mid, m: {*(m.get("depends_on") or []),
                                              *_task_targets(mid, m)})
                  if ctx.partial else ctx.milestones)
    edges: dict[str, list[str]] = {}
    # Only a milestone something waits on is a node: no other can be on a cycle.
    waited = {d for mid, m in milestones.items() for d in m.get("depends_on", []) if d != mid}
    if not waited:
        return  # no milestone waits on another: MS203 sees every cycle there is
    tasks_of = ctx.index.task_graph(None if milestones is ctx.milestones else milestones)
    for mid, m in milestones.items():
        tasks = m.get("tasks", [])
        waits = [d for d in m.get("depends_on", []) if d != mid]
        if mid in waited:
            edges[mid] = [f"{mid}/{t['id']}" for t in tasks]
        for t in tasks:
            ref = f"{mid}/{t['id']}"
            edges[ref] = [*tasks_of[ref], *waits] if waits else tasks_of[ref]
    for cycle in _cycles(edges):
        steps = list(pairwise(cycle))
        task_edge = any("/" in a and "/" in b for a, b in steps)
        level_edge = any("/" in a and "/" not in b for a, b in steps)
        if not (task_edge and level_edge):
            continue  # all tasks (MS203) or all milestones (MS204): reported there
        if not any(ctx.in_scope(r.split("/")[0]) for r in cycle):
            continue
        body = cycle[:-1]
        k = next(i for i, r in enumerate(body) if "/" not in r)
        body = body[k:] + body[:k]  # start at a milestone: it reads as "waits on"
        waiter, target = next((a.split("/")[0], b) for a, b in steps
                              if "/" in a and "/" not in b)
        ctx.report(
            "dependency cycle across milestones and tasks: "
            + " → ".join([*body, body[0]])
            + f" ({waiter} depends on {target}, so its tasks wait on every task of {target})",
            ref=waiter,
            path=(waiter, ("depends_on",)),
        )

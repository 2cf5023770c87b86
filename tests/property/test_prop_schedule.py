"""The schedule against brute force on small random DAGs with random durations.

Durations are multiples of 0.25 hours, so sums are exact in binary floating point
and the comparisons below can be exact too.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prop_strategies import examples

from milestones.errors import DependencyError
from milestones.model import schedule

Edges = dict[str, list[str]]
Hours = dict[str, float]

# Names whose sort order has nothing to do with the DAG's hidden rank.
NAMES = ["n7", "a", "task-10", "task-2", "m/1", "zz", "b3", "c", "x", "milestone-001/task-1"]


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 8) -> tuple[Edges, Hours]:
    """A DAG (node i depends only on nodes of lower rank) and a duration per node.

    Some nodes appear only as dependencies (a task outside the milestones looked
    at), and some have no duration (counted as 0 hours).
    """
    n = draw(st.integers(0, max_nodes))
    names = draw(st.permutations(NAMES))[:n]
    edges: Edges = {}
    for i, name in enumerate(names):
        edges[name] = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
    for name in names:
        if not edges[name] and draw(st.booleans()) and any(name in ds for ds in edges.values()):
            del edges[name]
    hours: Hours = {}
    for name in names:
        quarters = draw(st.one_of(st.none(), st.integers(0, 80)))
        if quarters is not None:
            hours[name] = quarters / 4
    return edges, hours


def nodes_of(edges: Mapping[str, Iterable[str]]) -> set[str]:
    out = set(edges)
    for ds in edges.values():
        out.update(ds)
    return out


def all_paths(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Every dependency chain [first, ..., last] (last depends on ...), tried one by one."""
    users: dict[str, list[str]] = {n: [] for n in nodes_of(edges)}
    for n, ds in edges.items():
        for d in ds:
            users[d].append(n)
    paths: list[list[str]] = []

    def extend(path: list[str]) -> None:
        paths.append(path)
        for u in users[path[-1]]:
            extend([*path, u])

    for n in sorted(users):
        extend([n])
    return paths


def cost(path: Iterable[str], hours: Mapping[str, float]) -> float:
    return sum(hours.get(n, 0.0) for n in path)


@settings(max_examples=examples(300), deadline=None)
@given(dags())
def test_length_is_the_longest_path(dag: tuple[Edges, Hours]) -> None:
    edges, hours = dag
    sched = schedule.schedule(edges, hours)
    assert sched.length == max((cost(p, hours) for p in all_paths(edges)), default=0.0)


@settings(max_examples=examples(300), deadline=None)
@given(dags())
def test_slack_is_never_negative_and_matches_brute_force(dag: tuple[Edges, Hours]) -> None:
    edges, hours = dag
    sched = schedule.schedule(edges, hours)
    paths = all_paths(edges)
    assert set(sched.slack) == nodes_of(edges)
    for n, slack in sched.slack.items():
        assert slack >= 0, (n, slack)
        # Slack: how much shorter than the whole the longest chain through n is.
        through = max(cost(p, hours) for p in paths if n in p)
        assert slack == sched.length - through, n
        before = max((cost(p[:-1], hours) for p in paths if p[-1] == n), default=0.0)
        assert sched.earliest_start[n] == before, n


@settings(max_examples=examples(300), deadline=None)
@given(dags())
def test_critical_path_is_a_longest_chain_of_zero_slack(dag: tuple[Edges, Hours]) -> None:
    edges, hours = dag
    sched = schedule.schedule(edges, hours)
    path = sched.critical_path
    if not nodes_of(edges):
        assert path == [] and sched.length == 0.0
        return
    assert path, "a non-empty graph has a critical path"
    for n in path:
        assert sched.slack[n] == 0, (n, sched.slack[n])
    for d, n in itertools.pairwise(path):
        assert d in edges.get(n, []), f"{n} does not depend on {d}"
    assert cost(path, hours) == sched.length
    assert len(set(path)) == len(path)


@settings(max_examples=examples(300), deadline=None)
@given(dags())
def test_topological_order_respects_every_edge(dag: tuple[Edges, Hours]) -> None:
    edges, _hours = dag
    order = schedule.topological_order(edges)
    assert sorted(order) == sorted(nodes_of(edges))
    position = {n: i for i, n in enumerate(order)}
    for n, ds in edges.items():
        for d in ds:
            assert position[d] < position[n], f"{n} comes before its dependency {d}"


@st.composite
def plans(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    """A few milestones whose tasks depend on each other in any way: across
    milestones, on tasks that do not exist, on themselves, in cycles."""
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    refs = [
        (f"milestone-00{m}", f"task-{t}") for m, n in enumerate(sizes, 1) for t in range(1, n + 1)
    ]
    targets = [*refs, ("milestone-009", "task-1"), ("milestone-001", "task-99")]
    out: dict[str, dict[str, Any]] = {}
    for mid, tid in refs:
        deps = draw(st.lists(st.sampled_from(targets), max_size=3, unique=True))
        task = {
            "id": tid,
            "status": draw(st.sampled_from(["todo", "in_progress", "done", "skipped"])),
            "estimate": draw(st.one_of(st.none(), st.integers(0, 40).map(lambda q: q / 4))),
            "progress": draw(st.sampled_from([0, 25, 50])),
            # Same-milestone dependencies both ways: task-2 and milestone-001/task-2.
            "depends_on": [
                f"{dm}/{d}" if dm != mid or draw(st.booleans()) else d for dm, d in deps
            ],
        }
        out.setdefault(mid, {"id": mid, "tasks": []})["tasks"].append(task)
    return out


@settings(max_examples=examples(300), deadline=None)
@given(plans())
def test_project_critical_hours_is_the_full_schedules(plan: dict[str, dict[str, Any]]) -> None:
    try:
        expected = schedule.critical_hours_by_milestone(schedule.project_schedule(plan))
    except DependencyError:
        with pytest.raises(DependencyError):
            schedule.project_critical_hours(plan)
        return
    assert schedule.project_critical_hours(plan) == expected

"""The dependency graph: cycles, topological order, the chain waiting on a task."""

from __future__ import annotations

import contextlib
import importlib
import itertools
from collections.abc import Callable, Iterable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prop_strategies import examples

from milestones import model as md
from milestones.errors import DependencyError

Edges = dict[str, list[str]]

# Names sort in a different order than the DAG's hidden rank, so sorted() is no shortcut.
NAMES = ["n7", "a", "task-10", "task-2", "m/1", "zz", "b3", "c", "x", "milestone-001/task-1"]


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 8) -> Edges:
    """A random DAG: node i may depend only on nodes of lower rank."""
    n = draw(st.integers(0, max_nodes))
    names = draw(st.permutations(NAMES))[:n]
    edges: Edges = {}
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        edges[name] = deps
    # Some nodes only appear as dependencies (a task in a milestone not listed).
    for name in draw(st.lists(st.sampled_from(names), unique=True)) if names else []:
        if not edges[name] and draw(st.booleans()):
            del edges[name]
    return edges


@st.composite
def graphs(draw: st.DrawFn) -> Edges:
    """Any small graph, cycles and self-loops included."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    return {n: draw(st.lists(st.sampled_from(names), unique=True, max_size=3)) for n in names}


def nodes_of(edges: Mapping[str, Iterable[str]]) -> set[str]:
    out = set(edges)
    for ds in edges.values():
        out.update(ds)
    return out


def reaches(edges: Mapping[str, list[str]], start: str, goal: str) -> bool:
    """Is there a path start -> ... -> goal along depends-on edges (length >= 0)?"""
    seen, todo = set(), [start]
    while todo:
        n = todo.pop()
        if n == goal:
            return True
        if n not in seen:
            seen.add(n)
            todo.extend(edges.get(n, []))
    return False


def assert_real_cycle(edges: Mapping[str, list[str]], cycle: list[str]) -> None:
    assert len(cycle) >= 2 and cycle[0] == cycle[-1]
    for a, b in itertools.pairwise(cycle):
        assert b in edges.get(a, []), f"{a} -> {b} is not an edge"
    assert len(set(cycle[:-1])) == len(cycle) - 1, "a simple cycle visits each node once"


@settings(max_examples=examples(200), deadline=None)
@given(dags())
def test_a_dag_has_no_cycle(edges: Edges) -> None:
    assert md.find_cycle(edges) is None


@settings(max_examples=examples(200), deadline=None)
@given(dags(), st.data())
def test_one_back_edge_makes_a_cycle_through_it(edges: Edges, data: st.DataObject) -> None:
    # A back edge a -> b closes a cycle when b already (transitively) depends on a.
    pairs = [
        (a, b) for a in sorted(nodes_of(edges)) for b in sorted(nodes_of(edges))
        if reaches(edges, b, a)
    ]
    if not pairs:
        assert not nodes_of(edges)
        return
    a, b = data.draw(st.sampled_from(pairs))
    with_back = {n: list(ds) for n, ds in edges.items()}
    with_back.setdefault(a, []).append(b)
    cycle = md.find_cycle(with_back)
    assert cycle is not None
    assert_real_cycle(with_back, cycle)
    steps = list(itertools.pairwise(cycle))
    assert (a, b) in steps, "the only cycle must use the back edge"


@settings(max_examples=examples(200), deadline=None)
@given(graphs())
def test_find_cycle_is_right_on_any_graph(edges: Edges) -> None:
    cycle = md.find_cycle(edges)
    has_cycle = any(reaches(edges, d, n) for n, ds in edges.items() for d in ds)
    assert (cycle is not None) == has_cycle
    if cycle is not None:
        assert_real_cycle(edges, cycle)


def _topo_impls() -> list[Callable[[Mapping[str, list[str]]], list[str]]]:
    impls: list[Callable[[Mapping[str, list[str]]], list[str]]] = [md.topological_order]
    # The scheduler has its own; hold it to the same contract when present.
    with contextlib.suppress(ImportError, AttributeError):
        impls.append(importlib.import_module("milestones.model.schedule").topological_order)
    return impls


@pytest.mark.parametrize("topo", _topo_impls(), ids=lambda f: f.__module__)
@settings(max_examples=examples(150), deadline=None)
@given(edges=graphs())
def test_topological_order_respects_every_edge(
    topo: Callable[[Mapping[str, list[str]]], list[str]], edges: Edges
) -> None:
    if md.find_cycle(edges) is not None:
        with pytest.raises(DependencyError):
            topo(edges)
        return
    order = topo(edges)
    assert sorted(order) == sorted(nodes_of(edges))
    position = {n: i for i, n in enumerate(order)}
    for n, ds in edges.items():
        for d in ds:
            assert position[d] < position[n], f"{n} comes before its dependency {d}"


@settings(max_examples=examples(150), deadline=None)
@given(dags())
def test_topological_order_of_a_dag(edges: Edges) -> None:
    order = md.topological_order(edges)
    assert order == md.topological_order(dict(reversed(list(edges.items()))))  # stable
    position = {n: i for i, n in enumerate(order)}
    assert all(position[d] < position[n] for n, ds in edges.items() for d in ds)


def test_topological_order_is_iterative() -> None:
    chain = {f"n{i}": [f"n{i - 1}"] for i in range(1, 20_000)}
    order = md.topological_order(chain)
    assert order[0] == "n0" and order[-1] == "n19999"
    chain["n0"] = ["n19999"]
    with pytest.raises(DependencyError):
        md.topological_order(chain)


def brute_chain(edges: Mapping[str, list[str]], open_nodes: set[str]) -> dict[str, int]:
    """Longest path of open nodes over 'waits on' edges, by trying every path."""
    waiting: dict[str, list[str]] = {}
    for n, ds in edges.items():
        for d in ds:
            waiting.setdefault(d, []).append(n)

    def best(n: str) -> int:
        here = 1 if n in open_nodes else 0
        return here + max((best(k) for k in waiting.get(n, [])), default=0)

    return {n: best(n) for n in nodes_of(edges)}


@settings(max_examples=examples(200), deadline=None)
@given(dags(), st.data())
def test_dependents_chain_is_the_longest_open_path(edges: Edges, data: st.DataObject) -> None:
    nodes = sorted(nodes_of(edges))
    open_nodes = set(data.draw(st.lists(st.sampled_from(nodes), unique=True))) if nodes else set()
    assert md.dependents_chain(edges, open_nodes) == brute_chain(edges, open_nodes)


@settings(max_examples=examples(150), deadline=None)
@given(graphs(), st.data())
def test_dependents_chain_survives_cycles(edges: Edges, data: st.DataObject) -> None:
    nodes = sorted(nodes_of(edges))
    open_nodes = set(data.draw(st.lists(st.sampled_from(nodes), unique=True)))
    chain = md.dependents_chain(edges, open_nodes)
    assert set(chain) == set(nodes)
    for n, v in chain.items():
        assert 0 <= v <= len(open_nodes)
        assert v >= (1 if n in open_nodes else 0)


def test_dependents_chain_on_a_deep_chain() -> None:
    chain = {f"n{i}": [f"n{i - 1}"] for i in range(1, 5000)}
    out = md.dependents_chain(chain, set(chain) | {"n0"})
    assert out["n0"] == 5000 and out["n4999"] == 1

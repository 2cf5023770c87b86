"""The dependency graph: cycles, topological order, what depends on what.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..errors import DependencyError
from .checks import PRIORITIES, PRIORITY_RANK

# ------------------------------------------------------------ dependency graph


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one cycle as a path ``[a, b, ..., a]``, or None. Iterative DFS."""
    white, grey, black = 0, 1, 2
    color: dict[str, int] = {}
    for root in sorted(edges):
        if color.get(root, white) != white:
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(edges.get(root, ())))]
        path = [root]
        color[root] = grey
        while stack:
            node, todo = stack[-1]
            if todo:
                nxt = todo.pop(0)
                c = color.get(nxt, white)
                if c == grey:
                    return [*path[path.index(nxt) :], nxt]
                if c == white:
                    color[nxt] = grey
                    path.append(nxt)
                    stack.append((nxt, sorted(edges.get(nxt, ()))))
            else:
                color[node] = black
                path.pop()
                stack.pop()
    return None


def topological_order(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """Every node (dependencies too) once, each after all it depends on.

    ``edges`` maps a node to the nodes it depends on. Kahn's algorithm, ties by
    name, so the order is stable; DependencyError names a cycle if there is one.
    """
    import heapq

    deps = {n: set(ds) for n, ds in edges.items()}
    for ds in list(deps.values()):
        for d in ds:
            deps.setdefault(d, set())
    waiting: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in ds:
            waiting[d].append(n)
    left = {n: len(ds) for n, ds in deps.items()}
    ready = [n for n, k in left.items() if k == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for u in waiting[n]:
            left[u] -= 1
            if left[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(deps):
        cycle = find_cycle(deps) or sorted(n for n, k in left.items() if k)
        raise DependencyError(
            f"dependency cycle: {' → '.join(cycle)}", hint="remove one of those dependencies"
        )
    return order


def dependents_chain(edges: Mapping[str, Iterable[str]], open_nodes: set[str]) -> dict[str, int]:
    """For every node, the length of the longest chain of open nodes waiting on it.

    ``edges`` maps a node to the nodes it depends on. The result counts the node
    itself when it is open, so a leaf with nothing waiting has chain 1.

    One pass from the nodes nothing waits on back to those everything waits on
    (each node once all its waiters are known: Kahn's order, no recursion); the
    nodes a cycle (a hand edit) leaves unresolved get a depth-first pass that
    cuts the cycle where it meets it.
    """
    waiting: dict[str, list[str]] = {}
    for node, deps in edges.items():
        for d in deps:
            if d in waiting:
                waiting[d].append(node)
            else:
                waiting[d] = [node]
    left = {n: len(w) for n, w in waiting.items()}  # waiters not resolved yet
    memo: dict[str, int] = {}
    ready = [n for n in edges if n not in left]
    while ready:
        node = ready.pop()
        kids = waiting.get(node)
        memo[node] = (max(memo[k] for k in kids) if kids else 0) + (node in open_nodes)
        for d in edges.get(node, ()):
            n = left[d] - 1
            left[d] = n
            if n == 0:
                ready.append(d)
    if len(memo) < len(left.keys() | edges.keys()):
        _chain_through_cycles(waiting, open_nodes, memo, left.keys() | edges.keys())
    return memo


def _chain_through_cycles(waiting: Mapping[str, list[str]], open_nodes: set[str],
                          memo: dict[str, int], nodes: Iterable[str]) -> None:
    """``dependents_chain`` for the nodes on or behind a cycle: depth first, the
    cycle cut where the walk meets a node it entered and has not finished."""
    entered: set[str] = set()
    for root in nodes:
        if root in memo:
            continue
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node in memo:
                continue
            kids = waiting.get(node, [])
            if expanded:
                best = max((memo.get(k, 0) for k in kids), default=0)
                memo[node] = best + (1 if node in open_nodes else 0)
                continue
            if node in entered:
                continue
            entered.add(node)
            stack.append((node, True))
            stack.extend((k, False) for k in kids if k not in memo and k not in entered)


def priority_rank(priority: str) -> int:
    return PRIORITY_RANK.get(priority, len(PRIORITIES))

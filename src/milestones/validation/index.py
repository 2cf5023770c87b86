"""The plan as the rules read it, worked out once a run and shared by every rule.

A rule asks ``ctx.index`` (made by the engine at the start of a run) instead of
walking the plan again: the sorted milestone ids, each milestone's task edges and
task ids, the graph of tasks, the event log read and checked once (MS501) and
replayed from those same events (MS502), the stored state. Each part is worked out
on first use and kept to the end of the run; nothing in it changes meanwhile.

On a plan read on demand (a write's check on a large store, ``ctx.partial``) only
the per-milestone parts are asked for, for the milestones the rules reach: the
whole-plan parts would read every milestone.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

# (task index, dependency index, task id, full dependency ref) of one task edge
Edge = tuple[int, int, str, str]


class PlanIndex:
    """Read-only views of one run's plan, each computed once (see the module doc)."""

    def __init__(self, milestones: Mapping[str, Mapping[str, Any]], store: Any = None,
                 state: Any = None) -> None:
        self.milestones = milestones
        self.store = store
        self.state = state
        self._edges: dict[str, list[Edge]] = {}
        self._task_ids: dict[str, set[str]] = {}
        self._log_replay: Any = None

    # ------------------------------------------------------------- the plan

    @cached_property
    def ids(self) -> list[str]:
        """Every milestone id, sorted (not on a plan read on demand)."""
        return sorted(self.milestones)

    def edges(self, mid: str, m: Mapping[str, Any]) -> list[Edge]:
        """``mid``'s task edges, dependencies written in full (``milestone-003/task-2``)."""
        found = self._edges.get(mid)
        if found is None:
            found = self._edges[mid] = [
                (i, j, t["id"], d if "/" in d else f"{mid}/{d}")
                for i, t in enumerate(m.get("tasks", []))
                for j, d in enumerate(t.get("depends_on", []))
            ]
        return found

    def task_ids(self, mid: str) -> set[str]:
        """The ids of ``mid``'s tasks (none when there is no such milestone)."""
        found = self._task_ids.get(mid)
        if found is None:
            m = self.milestones.get(mid, {})
            found = self._task_ids[mid] = {t["id"] for t in m.get("tasks", [])}
        return found

    def task_graph(self, milestones: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> dict[str, list[str]]:
        """Each task's dependencies by full ref, a task's own id left out, over
        ``milestones`` (default: the whole plan, worked out once)."""
        if milestones is None:
            return self.whole_task_graph
        return _task_graph(milestones)

    @cached_property
    def whole_task_graph(self) -> dict[str, list[str]]:
        return _task_graph(self.milestones)

    # -------------------------------------------------------------- the store

    @cached_property
    def stored(self) -> Any:
        """The store's state (snapshots as recorded), as the run was given it."""
        return self.state if self.state is not None else self.store.load()

    @cached_property
    def log(self) -> list[dict[str, Any]]:
        """The event log read and checked line by line (its checks); the events are
        replayed as they are read, for ``replayed``; none is kept."""
        from ..model import events as ev
        from ..storage.logcheck import check_log

        replay = ev.ReplayState(fresh=True)  # each event parsed for this alone
        checks, _none = check_log(self.store, sink=replay.feed)
        self._log_replay = replay
        return checks

    def replayed(self) -> Any:
        """What the log makes of the project (``events.ReplayState``): replayed from the
        events ``log`` read when every check of it passed (the log read once), else
        from the store's events (also when MS501 did not read the log: checking every
        hash is its work, not MS502's)."""
        from ..model import events as ev

        if "log" in self.__dict__ and all(c["ok"] for c in self.log):
            return self._log_replay
        return ev.replay(self.store.events())


def _task_graph(milestones: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    edges: dict[str, list[str]] = {}
    for mid, m in milestones.items():
        for t in m.get("tasks", []):
            tid = t["id"]
            edges[f"{mid}/{tid}"] = [d if "/" in d else f"{mid}/{d}"
                                     for d in t.get("depends_on", []) if d != tid]
    return edges

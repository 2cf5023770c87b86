"""Feasibility, the critical path and validation of the plan.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import (
    DependencyError,
    MilestoneError,
)
from ..model import events as ev
from ..model import refs
from ..storage import State, fsutil
from ..storage.base import is_lazy
from .constants import DIRNAME, SCHEMA
from .reviews import Reviews

if TYPE_CHECKING:
    from .txn import Txn

# Feasibility for at most this many milestones is computed from what they depend on
# (read through the index); beyond, from the whole plan, once per log head.
CLOSURE_LIMIT = 200
# A batch of a list whose upstream holds more than this many milestones per row reads
# the whole plan's task graph instead (once): long chains across milestones.
UPSTREAM_RATIO = 4
UPSTREAM_READ = 2000  # ... or once a list has read this many milestones upstream of its rows
OPEN = ("planned", "in_progress", "blocked")  # the milestones a projection is made for
# Events that never add a task dependency: a plan known to have no dependency cycle
# keeps none across them (see Project._acyclic).
EDGE_KEEPING = frozenset(ev.EVENT_TYPES) - {"milestone_created", "task_added",
                                             "task_updated", "manual_edit_detected"}
# Events that change no milestone (a list made before them holds the same rows).
ROWLESS = frozenset({"note_added", "current_changed", "message_sent", "message_acked",
                     "agent_registered"})
# Events that may change more than the milestone they name (or none): a list made
# before them is made again whole.
NOT_ONE_MILESTONE = frozenset({"log_restarted", "log_quarantined"})


class Checks(Reviews):
    """What the schedule allows, and the validation rules over the plan."""

    # ------------------------------------------------ what agents' steps read

    def scope(self, snaps: Mapping[str, Any], only: str | None,
              statuses: Sequence[str]) -> list[str]:
        """The milestones a step must look at. In memory (the file backends), every
        one. On an indexed store (the database), those the index says hold a task in
        ``statuses`` (with ``only``: that milestone and those waiting on it, for the
        chains), plus those this write changed, read in one batch: a claim on a
        project of 10,000 milestones reads the few with open work, not all."""
        if not is_lazy(snaps):
            return list(snaps)
        store = self.store
        found = ([only, *sorted(store.dependents([only]) or ())] if only is not None
                 else store.milestones_with_tasks(statuses))
        if found is None:
            return list(snaps)
        mids = list(dict.fromkeys([*found, *getattr(snaps, "changed", ())]))
        base = getattr(snaps, "base", snaps)
        if hasattr(base, "prefetch"):
            base.prefetch(mids)
        return [mid for mid in mids if mid in snaps]

    def held_tasks(self, snaps: Mapping[str, Any], agent: str | None = None
                   ) -> list[tuple[str, dict[str, Any]]]:
        """(milestone id, task snapshot) of every task in progress an agent holds (or
        ``agent``), by milestone and position: from the store's index when ``snaps``
        are the store's as committed, else from the milestones with work in progress."""
        got = None
        if is_lazy(snaps) and not getattr(snaps, "changed", None) and not getattr(
                snaps, "removed", None):
            got = self.store.held_tasks()
        if got is None:
            got = [(mid, t) for mid in self.scope(snaps, None, ("in_progress",))
                   for t in snaps[mid].get("tasks", ())
                   if t.get("status") == "in_progress"
                   and (t.get("execution") or {}).get("agent")]
        return [(mid, t) for mid, t in got
                if agent is None or t["execution"]["agent"] == agent]

    def ready_index(self, snaps: Mapping[str, Any], only: str | None,
                    limit: int | None = None, *, pick: bool = False, kept: bool = False
                    ) -> tuple[list[dict[str, Any]], list[tuple[str, list[str]]]] | None:
        """Ready tasks best first (``next``'s rows with ``paths``), at most ``limit``,
        and the paths of the tasks agents hold, from the store's index, when ``snaps``
        are the store's as committed (a write that changed nothing yet); else None.
        ``pick``: the rows locked for this write, those another holds passed over
        (``Store.pick_ready``; None where the store has no row locks). ``kept``: a read
        of every ready task may take them from the query cache (``_every_ready``)."""
        if not is_lazy(snaps) or getattr(snaps, "changed", None) or getattr(
                snaps, "removed", None):
            return None
        if kept and not pick and only is None and limit is None:
            return self._every_ready()  # a read's, never a write's (its rows may move)
        return self._ready_of_index(only, limit, pick=pick)

    def _ready_of_index(self, only: str | None, limit: int | None, *, pick: bool = False
                        ) -> tuple[list[dict[str, Any]], list[tuple[str, list[str]]]] | None:
        if pick:
            rows = self.store.pick_ready(only, limit)
        else:
            got = self.store.ready_tasks(only, limit)
            rows = got[0] if got is not None else None
        held = self.store.held_tasks() if rows is not None else None
        if rows is None or held is None:
            return None
        paths = [(f"{mid}/{t['id']}", list(t["paths"])) for mid, t in held if t.get("paths")]
        return rows, paths

    def _every_ready(self) -> tuple[list[dict[str, Any]], list[tuple[str, list[str]]]] | None:
        """Every ready task and the held paths (``ready --json``: 30,000 rows at 100,000
        tasks), from the query cache at this log head, or at an earlier one when the
        events since changed no milestone (ROWLESS); else from the index, kept."""
        head = self.store.head()
        if head is None:
            return self._ready_of_index(None, None)
        at, key = f"{head[0]}:{head[1]}", "ready:every"
        hit = self.store.cache_get(key, at)
        if hit is None:
            old = self.store.cache_peek(key)
            events = None if old is None else self._events_since(head, old[0], 200)
            if old is not None and events is not None and all(
                    e["event_type"] in ROWLESS for e in events):
                hit = old[1]
                self.store.cache_put(key, at, hit)
        if isinstance(hit, list) and len(hit) == 2:
            return hit[0], [(ref, paths) for ref, paths in hit[1]]
        got = self._ready_of_index(None, None)
        if got is not None:
            self.store.cache_put(key, at, [got[0], [list(p) for p in got[1]]])
        return got

    def writer_lock(self, tx: Txn | None = None) -> None:
        """Inside ``transaction(late=True)``: take the writer lock now; with ``tx``, its
        state is read again when the lock was not held yet (``Txn.reread``)."""
        if self.store.take_lock() and tx is not None:
            tx.reread()

    def reserve_task(self, mid: str, tid: str) -> bool:
        """Inside a write: hold task ``mid/tid`` for it; False when another write holds
        it (a claim in flight on postgres: pass it over)."""
        return self.store.reserve_task(mid, tid)

    def _upstream(self, st: State, mids: Sequence[str],
                  known: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
        """``mids`` and every milestone their tasks depend on, directly or not: all a
        schedule of ``mids`` reads (walked even when the whole plan is in memory: a
        milestone's schedule costs what it depends on, not the plan's size). ``known``:
        snapshots already at hand, not read again."""
        milestones = st.milestones
        known = known or {}
        found: dict[str, Any] = {}
        frontier = [m for m in mids if m in known or m in milestones]
        while frontier:
            prefetch = getattr(milestones, "prefetch", None)
            if prefetch is not None:
                prefetch([m for m in frontier if m not in known])
            nxt: set[str] = set()
            for mid in frontier:
                if mid in found or (mid not in known and mid not in milestones):
                    continue
                snap = found[mid] = known[mid] if mid in known else milestones[mid]
                for t in snap.get("tasks", []):
                    nxt.update(d.split("/", 1)[0] for d in t.get("depends_on", []) if "/" in d)
            frontier = sorted(nxt - found.keys())
        return found

    def _downstream(self, mids: Sequence[str]) -> set[str] | None:
        """``mids`` and every milestone that waits on them, directly or not (None when
        the store has no index to ask)."""
        found = set(mids)
        frontier = set(mids)
        while frontier:
            users = self.store.dependents(frontier)
            if users is None:
                return None
            frontier = users - found
            found |= frontier
        return found

    def _feasibilities(self, st: State, mids: Sequence[str] = (),
                       snaps: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """The feasibility projection of open milestones (at least those of ``mids``,
        whose snapshots ``snaps`` may hold), from the schedule of everything they
        depend on.

        The whole plan's is computed once per log head (and day and team capacity) and
        kept in the store's query cache; a few milestones on an indexed store are
        computed from what they depend on alone, once the plan is known to hold no
        dependency cycle (a cycle anywhere leaves every projection out)."""
        head = self._head_key(st)
        cached = self.store.cache_get("feasibility", head)
        if isinstance(cached, dict):
            return cached
        if is_lazy(st.milestones) and len(mids) <= CLOSURE_LIMIT and self._acyclic(st):
            crit = self._critical_hours(self._upstream(st, mids))
            if crit is not None:
                return self._feasibility_of(st.milestones, crit, mids)
        milestones = st.milestones
        graph = self.store.schedule_graph() if is_lazy(milestones) else None
        if graph is not None:  # the graph from the index; the milestones' own rows as read
            crit = self._critical_hours(graph)
            if crit is None:
                return {}
            if snaps is None:
                snaps = milestones
                prefetch = getattr(milestones, "prefetch", None)
                if prefetch is not None:
                    prefetch(list(mids))
            return self._feasibility_of(snaps, crit, mids)
        everything = getattr(milestones, "everything", None)
        if everything is not None:
            milestones = everything()
        crit = self._critical_hours(milestones)
        result = {} if crit is None else self._feasibility_of(milestones, crit, milestones)
        self.store.cache_put("feasibility", head, result)
        self.store.cache_put("acyclic", self._head_key(st, dated=False), crit is not None)
        return result

    def _projections(self, st: State, snaps: Mapping[str, Any], whole: dict[str, Any]
                     ) -> dict[str, dict[str, Any]]:
        """The feasibility projections of a batch of open milestones on an indexed store
        (``snaps``, in hand), from what they depend on: a list's cost follows its rows.
        Once a batch's upstream outgrows it (long chains across milestones), or the
        list's upstream reads add up (memory), from the whole plan's task graph, read
        from the index once and kept in ``whole`` for the batches after."""
        snaps = {mid: snap for mid, snap in snaps.items() if snap.get("status") in OPEN}
        if not snaps:
            return {}  # only open milestones are projected
        if "crit" not in whole:
            if not self._acyclic(st):
                return {}  # a cycle anywhere leaves every projection out
            closure = self._upstream(st, list(snaps), snaps)
            # the upstream milestones read stay in memory (the store's lazy mapping)
            whole["read"] = whole.get("read", 0) + len(closure) - len(snaps)
            graph = (self.store.schedule_graph()
                     if len(closure) > UPSTREAM_RATIO * len(snaps)
                     or whole["read"] > UPSTREAM_READ else None)
            if graph is None:
                crit = self._critical_hours(closure)
                return {} if crit is None else self._feasibility_of(snaps, crit, snaps)
            whole["crit"] = self._critical_hours(graph)
        crit = whole["crit"]
        return {} if crit is None else self._feasibility_of(snaps, crit, snaps)

    def _acyclic(self, st: State) -> bool:
        """True when the plan at this log head holds no task dependency cycle: known from
        an earlier head on the same chain when no event since can have added a dependency
        (task done, start, status changes ...), else checked over the index's edges."""
        head = self._head_key(st, dated=False)
        hit = self.store.cache_peek("acyclic")
        if hit is not None and hit[0] == head:
            return hit[1] is True
        if hit is None or hit[1] is not True or not self._carries(st, hit[0]):
            # Ask the index for the dependencies alone (far less than every snapshot).
            edges = self.store.task_edges()
            if edges is None:
                return False
            acyclic = md.find_cycle(edges) is None
            self.store.cache_put("acyclic", head, acyclic)
            return acyclic
        self.store.cache_put("acyclic", head, True)
        return True

    def _carries(self, st: State, since: str) -> bool:
        """True when every event from log head ``since`` to ``st``'s head (on the same
        chain, at most 100 of them) keeps the task dependencies as they were."""
        tail = self._events_since((st.last_event_id, st.last_hash), since)
        return bool(tail) and all(e["event_type"] in EDGE_KEEPING for e in tail or ())

    def _events_since(self, head: tuple[int, str], since: str, most: int = 100
                      ) -> list[dict[str, Any]] | None:
        """The events after log head ``since`` (``_head_key``'s text, dated or not) up to
        ``head`` (last event id, hash), when they are on the same chain and at most
        ``most``; else None."""
        try:
            before, rest = since.split(":", 1)
            since_hash = rest.split(":", 1)[0]
            after = int(before)
        except ValueError:
            return None
        count = head[0] - after
        if not 0 <= count <= most:
            return None
        if count == 0:
            return [] if since_hash == head[1] else None
        events = self.store.events(after=after)
        try:
            tail = [e for _, e in zip(range(count), events, strict=False)]
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        if (len(tail) == count and tail[0]["prev_hash"] == since_hash
                and tail[-1]["hash"] == head[1]):
            return tail
        return None

    def _critical_hours(self, plan: Mapping[str, Any] | tuple[Any, Any]
                        ) -> dict[str, float] | None:
        """Per milestone, hours until its last task can finish (None on a cycle), of the
        milestones or of the task graph (``Store.schedule_graph``) given."""
        from ..model import schedule

        try:
            if isinstance(plan, tuple):
                return schedule.graph_critical_hours(*plan)
            return schedule.project_critical_hours(plan)  # the forward pass is enough
        except DependencyError:
            return None

    def _feasibility_of(self, milestones: Mapping[str, Any], crit: Mapping[str, float],
                        mids: Any) -> dict[str, dict[str, Any]]:
        from ..model import schedule

        hours = schedule.team_weekly_hours(self.config())  # not the rules' engine: reads skip it
        out = {}
        for mid in mids:
            one = self._feasibility_one(milestones[mid], crit, hours)
            if one is not None:
                out[mid] = one
        return out

    def _feasibility_one(self, snap: Mapping[str, Any], crit: Mapping[str, float] | None,
                         hours: list[float]) -> dict[str, Any] | None:
        """The feasibility projection of one open milestone, the team's weekly ``hours``
        given (None when it is not open, or ``crit`` is None: a dependency cycle leaves
        every projection out)."""
        from ..model import schedule

        if crit is None or snap.get("status") not in OPEN:
            return None
        return schedule.feasibility(snap, crit.get(snap["id"], 0.0), self.today(), hours)

    def _schedule(self, milestones: Mapping[str, Any], mid: str) -> dict[str, Any]:
        """Critical path, per-task slack and the feasibility projection of ``mid``."""
        from ..model import schedule

        try:
            sched = schedule.project_schedule(milestones, only=mid)
        except DependencyError:
            return {"critical_path": [], "feasibility": None, "tasks": {}}
        hours = schedule.team_weekly_hours(self.config())
        crit = schedule.critical_hours_by_milestone(sched).get(mid, 0.0)
        on_path = set(sched.critical_path)
        tasks = {
            ref: {"slack": round(sched.slack[ref], 2),
                  "earliest_start": round(sched.earliest_start[ref], 2),
                  "earliest_finish": round(sched.earliest_finish[ref], 2),
                  "critical": ref in on_path}
            for ref in sched.slack
        }
        return {"critical_path": sched.critical_path,
                "feasibility": schedule.feasibility(milestones[mid], crit, self.today(), hours),
                "tasks": tasks}

    def validate(self, ref: str | None = None, types: Sequence[str] = ("standard",), *,
                 severities: Collection[str] | None = None) -> dict[str, Any]:
        """Run the rules of ``types`` over the plan as it is on disk now; with
        ``severities``, report only findings of those (no time spent placing the
        others in their files)."""
        from ..validation import engine

        with engine.collector_paused():  # a plan's worth of objects, no garbage cycles
            return self._validate(ref, types, severities)

    def _validate(self, ref: str | None, types: Sequence[str],
                  severities: Collection[str] | None) -> dict[str, Any]:
        from ..storage import yamlio
        from ..validation import engine

        st = self.store.load()
        milestones = dict(st.milestones)
        scope = None
        if ref is not None:
            scope = {refs.resolve_milestone(ref, milestones)}
        raw: dict[str, tuple[str, Any, str | None]] = {}
        sources: dict[str, engine.Source] = {}
        files = getattr(self.store, "milestone_files", None)  # the file backends'

        def entries() -> Mapping[str, Any]:
            state_entries = getattr(self.store, "state_entries", None)
            return state_entries() if state_entries is not None else {}

        def wrote(entry: Any, rel: str, stat: os.stat_result) -> bool:
            """The tool wrote this file and nobody touched it since: its content is
            the snapshot as written, no need to parse it."""
            return bool(entry and entry.get("path") == rel and not entry.get("roundtrip")
                        and entry.get("mtime_ns") == stat.st_mtime_ns
                        and entry.get("size") == stat.st_size)

        known, reread = entries(), False
        if files is not None:
            for mid, found in files().items():
                if scope is not None and mid not in scope:
                    continue
                for rel, stat in found:
                    shown = f"{DIRNAME}/{rel}"
                    entry = known.get(mid) if len(found) == 1 else None
                    if entry and not wrote(entry, rel, stat) and not reread:
                        # A write may have landed since the state was read (a long-lived
                        # reader: milestone execute's validator): read it again, once.
                        reread = True
                        getattr(self.store, "invalidate", lambda: None)()
                        st = self.store.load()
                        known = entries()
                        entry = known.get(mid)
                    written = entry if entry is not None and wrote(entry, rel, stat) else None
                    try:
                        blob = fsutil.read_bytes(self.root / rel, yamlio.MAX_FILE_BYTES)
                        text = yamlio.decode(blob, shown)
                        if written is not None:
                            data = yamlio.prune(written["state"])
                        else:
                            data = yamlio.load_text(text, shown)
                    except MilestoneError as exc:
                        raw[shown] = ("", None, str(exc))
                        continue
                    raw[shown] = (text, data, None)
                    sources[mid] = engine.Source(shown, text)
                    if written is not None:
                        # The file is the snapshot as written: loading it gives the
                        # snapshot back (a file that does not is marked `roundtrip`).
                        milestones[mid] = written["state"]
                        continue
                    with contextlib.suppress(MilestoneError):  # what is on disk counts
                        # window=False: a due date before the start is MS301's to report
                        milestones[mid] = md.Milestone.from_dict(data, window=False).to_dict()
        ctx = engine.Context(milestones, self.today(), self.config(), root=self.root,
                             sources=sources, raw=raw, store=self.store, state=st, scope=scope,
                             severities=frozenset(severities) if severities else None)
        findings = engine.run(ctx, types)
        count = {sev: sum(1 for f in findings if f.severity == sev)
                 for sev in engine.SEVERITIES}
        return {"schema": SCHEMA, "types": list(types), "ok": count["error"] == 0,
                "counts": count, "findings": [f.to_dict() for f in findings]}

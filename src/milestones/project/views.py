"""The views (the ``--json`` contract): status, list, show, next, log, resume.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .. import model as md
from ..errors import (
    InvalidInput,
    MilestoneError,
    NotFound,
)
from ..model import events as ev
from ..model import refs
from ..storage import State
from ..storage.base import is_lazy
from .checks import CLOSURE_LIMIT, EDGE_KEEPING, NOT_ONE_MILESTONE, ROWLESS, Checks
from .constants import SCHEMA
from .rows import active_rows, next_tasks, summary, totals
from .txn import Txn

# A list made at an earlier log head is brought up to date (the rows of what changed
# made again) across at most this many events, and this many rows made again.
LIST_SINCE_EVENTS = 200
LIST_SINCE_ROWS = 2000


class Views(Checks):
    """Read-only views; plain data the doors render."""

    def status_view(self, ref: str | None = None, *, all_: bool = False) -> dict[str, Any]:
        with self.reading() as st:
            return dict(self._cached(st, f"view:status:{ref}:{all_}",
                                     lambda: self._status(st, ref, all_)))

    def _status(self, st: State, ref: str | None, all_: bool) -> dict[str, Any]:
        from ..storage.base import MilestoneQuery

        day = self.today()
        if ref is not None:
            chosen: list[str] | None = [refs.resolve_milestone(ref, st.milestones)]
        elif all_ or st.current is None:
            chosen = None  # every milestone but the archived ones
        else:
            chosen = [st.current]
        # In memory (the YAML backends) every milestone is made once, for the summaries,
        # the next rows and the totals alike (it was three times, every task each time).
        built: dict[str, md.Milestone] = (
            {} if is_lazy(st.milestones) else
            {mid: md.Milestone.from_snapshot(s) for mid, s in st.milestones.items()})
        if chosen is None and is_lazy(st.milestones):  # as `list` sums them up, streamed
            out = self._list(st, MilestoneQuery())["milestones"]
        else:
            if chosen is None:
                chosen = [mid for mid, s in sorted(st.milestones.items())
                          if s["status"] != "archived"]
            feas = self._feasibilities(st, chosen)
            out = [summary(built[mid] if mid in built
                           else md.Milestone.from_snapshot(st.milestones[mid]), day,
                           feas.get(mid))
                   for mid in chosen]
        only = out[0]["id"] if len(out) == 1 else None
        indexed = self._indexed_ready(only, 3 if only is not None else None)
        ready = (indexed[0] if indexed is not None
                 else self._next_rows(st, only=only, built=built))
        best: dict[str, list[dict[str, Any]]] = {}  # each milestone's best three
        for row in ready:
            rows = best.setdefault(row["milestone_id"], [])
            if len(rows) < 3:
                rows.append(row)
        for s in out:
            s["next"] = best.get(s["id"], [])
        return {
            "schema": SCHEMA,
            "current": st.current,
            "today": day,
            "milestones": out,
            # every milestone, archived ones too (by_status says how many of them)
            "totals": {**self._totals(st, built), "includes_archived": True},
        }

    def _totals(self, st: State, built: Mapping[str, md.Milestone] | None = None
                ) -> dict[str, Any]:
        """Milestones by status and tasks by status; ``built``: Milestones already made
        from these snapshots, used instead of making them again."""
        counted = self.store.totals() if is_lazy(st.milestones) else None
        if counted is None:
            known = built or {}
            return totals([known[mid] if mid in known else md.Milestone.from_snapshot(s)
                           for mid, s in st.milestones.items()])
        by_status = {s: 0 for s in md.MILESTONE_STATUSES}
        tasks = {s: 0 for s in md.TASK_STATUSES}
        for status, n in counted["by_status"].items():
            by_status[status] += n
        for status, n in counted["tasks"].items():
            tasks[status] += n
        return {"milestones": sum(by_status.values()), "by_status": by_status, "tasks": tasks}

    def list_view(
        self,
        *,
        status: Sequence[str] = (),
        tags: Sequence[str] = (),
        owner: str | None = None,
        priority: Sequence[str] = (),
        overdue: bool = False,
        all_: bool = False,
        limit: int | None = None,
        after: str | None = None,
    ) -> dict[str, Any]:
        """The milestones that pass the filters, by id; a page of ``limit`` after the
        id ``after`` (then ``next_after`` names the id to go on from, null at the end)."""
        from ..storage.base import MilestoneQuery

        if after is not None:
            after = refs.parse_milestone(after)
        with self.reading() as st:
            day = self.today()
            q = MilestoneQuery(
                statuses=tuple(status), tags=tuple(tags), owner=owner,
                priorities=tuple(priority), overdue_before=day if overdue else None,
                include_archived=all_, after=after,
                # one more than asked: whether another page follows
                limit=limit + 1 if limit is not None else None)
            key = "view:list:" + ev.canonical(list(q))
            return dict(self._cached(st, key, lambda: self._list(st, q),
                                     since=lambda head, old: self._list_since(st, q, head, old)))

    def _list_since(self, st: State, q: Any, since: str, old: Any) -> dict[str, Any] | None:
        """``list``'s answer from its answer ``old`` at the earlier log head ``since``:
        the rows of the milestones the events since then name, and of those waiting on
        them (a projection follows what its milestone waits on), made again from the
        store; the other rows kept as they were. None (make it all) for a page, another
        day or team capacity, more than LIST_SINCE_EVENTS events, an event that may add
        a dependency (a cycle anywhere drops every projection) or that changes milestones
        without naming one, or more than LIST_SINCE_ROWS rows to make again."""
        if q.limit is not None or not isinstance(old, dict) or not isinstance(
                old.get("milestones"), list):
            return None
        if since.split(":", 2)[2:] != self._head_key(st).split(":", 2)[2:]:
            return None  # another day or team capacity: every projection may move
        events = self._events_since((st.last_event_id, st.last_hash), since,
                                    LIST_SINCE_EVENTS)
        if events is None:
            return None
        named: set[str] = set()
        for e in events:
            kind, mid = e["event_type"], e.get("milestone_id")
            if kind in ROWLESS:
                continue
            if mid is None or kind not in EDGE_KEEPING or kind in NOT_ONE_MILESTONE:
                return None
            named.add(mid)
        redo = self._downstream(sorted(named)) if named else set()
        if redo is None or len(redo) > LIST_SINCE_ROWS:
            return None
        rows = [r for r in old["milestones"] if r["id"] not in redo]
        if redo:
            rows += self._list(st, q, sorted(redo))["milestones"]
            rows.sort(key=lambda r: r["id"])  # the index's order (bytes of UTF-8: code points)
        return {"schema": SCHEMA, "current": st.current, "today": self.today(),
                "milestones": rows}

    def _list(self, st: State, q: Any, only: Sequence[str] | None = None) -> dict[str, Any]:
        """``list``'s answer; ``only``: of these milestones alone (those that exist and
        pass the filters), read in batches."""
        day = self.today()
        # An indexed store answers the filters in SQL and hands the snapshots out in
        # batches; ``passes`` re-checks them, so both paths give the same rows.
        indexed = self.store.query_milestones(q) if only is None else None
        source: Iterable[Any]
        if only is not None:
            source = snapshots_of(st, only)
        elif indexed is None:
            ids = sorted(mid for mid in st.milestones if q.after is None or mid > q.after)
            source = (st.milestones[mid] for mid in ids)
        else:
            source = indexed
        held: dict[str, tuple[md.Milestone, Any]] = {}  # rows waiting for feasibility
        out: list[dict[str, Any]] = []
        lazy = is_lazy(st.milestones)
        whole: dict[str, Any] = {}  # the plan's critical hours, once read (_projections)

        def flush() -> None:
            # On an indexed store a batch at a time, its snapshots let go after; in
            # memory, all at once (the whole plan's schedule, kept per log head).
            snaps = {mid: snap for mid, (_, snap) in held.items()}
            feas = (self._projections(st, snaps, whole) if lazy
                    else self._feasibilities(st, list(held), snaps))
            out.extend(summary(m, day, feas.get(mid)) for mid, (m, _) in held.items())
            held.clear()

        for snap in source:
            if q.limit is not None and len(held) + len(out) == q.limit:
                break
            m = md.Milestone.from_snapshot(snap)
            if not passes(m, q, day):
                continue
            held[m.id] = (m, snap)
            if lazy and len(held) == CLOSURE_LIMIT:
                flush()
        if held:
            flush()
        page: dict[str, Any] = {}
        if q.limit is not None:  # asked for one more than the page holds
            more = len(out) == q.limit
            out = out[:q.limit - 1]
            page = {"next_after": out[-1]["id"] if more and out else None}
        return {"schema": SCHEMA, "current": st.current, "today": day, "milestones": out,
                **page}

    def show_view(self, ref: str) -> dict[str, Any]:
        with self.reading() as st:
            return self._show(st, ref)

    def _show(self, st: State, ref: str) -> dict[str, Any]:
        day = self.today()
        if "/" in ref:
            mid, tid = refs.resolve_task(ref, st.milestones, st.current)
            m = md.Milestone.from_snapshot(st.milestones[mid])
            t = m.task(tid)
            tx = Txn(self, st)
            data = t.to_dict() | {
                "ref": f"{mid}/{tid}",
                "milestone_id": mid,
                "milestone_title": m.title,
                "ready": not t.finished and t.status != "blocked" and not tx.unmet(m, t),
                "waiting_on": tx.unmet(m, t),
            }
            return {"schema": SCHEMA, "kind": "task", "task": data}
        mid = refs.resolve_milestone(ref, st.milestones)
        m = md.Milestone.from_snapshot(st.milestones[mid])
        plan = self._schedule(self._upstream(st, [mid]), mid)
        data = m.to_dict() | summary(m, day, plan["feasibility"])
        data["critical_path"] = plan["critical_path"]
        data["feasibility"] = plan["feasibility"]
        data["tasks"] = [
            t.to_dict() | {"ref": f"{mid}/{t.id}"} | plan["tasks"].get(f"{mid}/{t.id}", {})
            for t in m.tasks
        ]
        return {"schema": SCHEMA, "kind": "milestone", "milestone": data}

    def next_view(self, ref: str | None = None, *, limit: int | None = None) -> dict[str, Any]:
        with self.reading() as st:
            only = refs.resolve_milestone(ref, st.milestones) if ref is not None else None
            indexed = self._indexed_ready(only, limit)
            if indexed is not None:  # the best `limit` straight from the rows
                rows, total = indexed
            elif only is None and is_lazy(st.milestones):
                if limit is None:
                    rows = self._cached(st, "view:next", lambda: self._next_rows(st),
                                        dated=False)
                    total = len(rows)
                else:  # a page of its own in the cache: reading it back stays small
                    def page() -> dict[str, Any]:
                        every = self._next_rows(st)
                        return {"rows": every[:limit], "total": len(every)}

                    cached = self._cached(st, f"view:next:{limit}", page, dated=False)
                    rows, total = cached["rows"], cached["total"]
            else:
                rows = self._next_rows(st, only=only)
                total = len(rows)
                rows = rows[:limit] if limit is not None else rows
            return {"schema": SCHEMA, "tasks": rows, "total": total}

    def _indexed_ready(self, only: str | None, limit: int | None
                       ) -> tuple[list[dict[str, Any]], int] | None:
        """``next``'s rows and their total from the store's index (None without one)."""
        got = self.store.ready_tasks(only, limit)
        if got is None:
            return None
        rows, total = got
        for row in rows:
            del row["paths"]
        return rows, total

    def _next_rows(self, st: State, *, only: str | None = None, limit: int | None = None,
                   built: Mapping[str, md.Milestone] | None = None) -> list[dict[str, Any]]:
        """``next_tasks`` of the plan; for one milestone on an indexed store, from that
        milestone, what it waits on and everything that waits on it (the chains).
        ``built``: Milestones already made from these snapshots, not made again."""
        milestones: Mapping[str, Any] = st.milestones
        scope = (self._downstream([only]) if only is not None and is_lazy(milestones)
                 else None)
        if scope is None:
            everything = getattr(milestones, "everything", None)
            if everything is not None:
                milestones = everything()
        else:
            snap = milestones[only]  # type: ignore[index]
            scope |= set(snap.get("depends_on") or [])
            scope |= {d.split("/", 1)[0] for t in snap.get("tasks", [])
                      for d in t.get("depends_on", []) if "/" in d}
            prefetch = getattr(milestones, "prefetch", None)
            if prefetch is not None:
                prefetch(sorted(scope))
            milestones = {mid: milestones[mid] for mid in sorted(scope) if mid in milestones}
        known = built or {}
        ms = {mid: known[mid] if mid in known else md.Milestone.from_snapshot(s)
              for mid, s in milestones.items()}
        return next_tasks(ms, only=only, limit=limit)

    def wait_for_events(self, after: int, timeout: float = 5.0) -> bool:
        """Wait (at most ``timeout`` seconds) until an event past event id ``after`` may
        have been appended (``log --follow``): the store's way (a poll, or PostgreSQL's
        NOTIFY)."""
        return self.store.wait_for_events(after, timeout)

    def log_view(
        self,
        *,
        milestone: str | None = None,
        types: Sequence[str] = (),
        actor: str | None = None,
        since: str | None = None,
        limit: int | None = None,
        after: int = 0,
        first: int | None = None,
    ) -> dict[str, Any]:
        """Events after the id ``after`` that pass the filters, oldest first: the last
        ``limit`` of them, or (``first``) the first ``first``, read no further (a page
        of the dashboard's ``/api/events``)."""
        mid = None
        if milestone:
            st = self.state()
            try:
                mid = refs.resolve_milestone(milestone, st.milestones)
            except NotFound:
                mid = refs.parse_milestone(milestone)  # deleted milestones keep their history
        for t in types:
            if t not in ev.EVENT_TYPES:
                raise InvalidInput(
                    f"unknown event type {t!r}", hint="see `milestone log --help` for the list"
                )

        def keep(e: dict[str, Any]) -> bool:
            return not (
                (mid and e.get("milestone_id") != mid)
                or (types and e.get("event_type") not in types)
                or (actor and e.get("actor") != actor)
                or (since and str(e.get("timestamp", "")) < since)
            )

        with self.reading() as st:  # a log that does not verify is told here (one warning)
            last = st.last_event_id  # the head only: the database reads no milestone
        if getattr(self.store, "damage", None):
            # Only the events that verify are history: up to the last applied one,
            # never past the line that does not verify (the warning names it).
            rows = []
            try:
                for e in self.store.events(after=after):
                    if int(e.get("event_id") or 0) > last:
                        break
                    if keep(e):
                        rows.append(e)
            except MilestoneError:
                pass  # the damaged line itself: the warning said where
            if limit is not None:
                rows = rows[-limit:] if limit > 0 else []
            return {"schema": SCHEMA, "events": rows}
        tail = getattr(self.store, "events_tail", None)  # rotated logs: newest files only
        if first is not None:
            rows = []
            for e in self.store.events(after=after):
                if len(rows) >= first:
                    break
                if keep(e):
                    rows.append(e)
        elif limit is not None and tail is not None:
            rows = tail(limit, keep, after, types=tuple(types), milestone=mid, actor=actor)
        else:
            rows = [e for e in self.store.events(after=after) if keep(e)]
            if limit is not None:
                rows = rows[-limit:] if limit > 0 else []
        return {"schema": SCHEMA, "events": rows}

    def resume_view(self) -> dict[str, Any]:
        with self.reading() as st:
            record = dict(self.store.read_resume() or {
                "session_id": None,
                "actor": None,
                "current_milestone": st.current,
                "in_progress": [],
                "blockers": [],
                "last_event": None,
                "notes": [],
            })
            if record.get("in_progress") is None:  # left to the read by an indexed store
                indexed = self.store.active_tasks() if is_lazy(st.milestones) else None
                if indexed is None:
                    active = [(m.id, t) for m in (md.Milestone.from_snapshot(s)
                                                  for s in st.milestones.values())
                              for t in m.tasks]
                else:
                    active = [(mid, md.Task.from_dict(t)) for mid, t in indexed]
                record["in_progress"], record["blockers"] = active_rows(active)
            ready = self.next_view(limit=1)["tasks"]
            record["next_task"] = ready[0] if ready else None
            record["schema"] = SCHEMA
            return record


def snapshots_of(st: State, mids: Sequence[str]) -> Iterable[Any]:
    """The snapshots of ``mids`` that exist, in order, read 500 at a time."""
    prefetch = getattr(st.milestones, "prefetch", None)
    for start in range(0, len(mids), 500):
        chunk = mids[start:start + 500]
        if prefetch is not None:
            prefetch(chunk)
        yield from (st.milestones[mid] for mid in chunk if mid in st.milestones)


def passes(m: md.Milestone, q: Any, day: str) -> bool:
    """Does ``m`` pass the filters of ``list`` (a ``MilestoneQuery``)?"""
    if q.after is not None and m.id <= q.after:
        return False
    if not q.include_archived and not q.statuses and m.status == "archived":
        return False
    if q.statuses and m.status not in q.statuses:
        return False
    if q.tags and not set(q.tags) & set(m.tags):
        return False
    if q.owner and m.owner != q.owner:
        return False
    if q.priorities and m.priority not in q.priorities:
        return False
    return not (q.overdue_before is not None and not (
        m.due_date and m.due_date < day
        and m.status not in ("completed", "archived", "cancelled")))

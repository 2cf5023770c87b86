"""What the dashboard reads and writes, through the ``Project`` layer only.

A store object is not shared across threads: each worker thread gets a Project of
its own (``Project.another()``) and keeps it, so its L1 cache (keyed by the log head)
serves repeated reads; on postgres its store borrows a connection of the server's
pool (``project.pooling``) for each call and gives it back (``call``). Whole
answers are kept too, keyed by the log head: fifty clients asking for the overview
between two writes cost one view.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInput, NotFound

TASK_STATUSES = ("todo", "in_progress", "blocked", "done", "skipped")
DONE_EVENTS = {"task_completed": 1, "task_skipped": 1, "task_reopened": -1}
EVENTS_PAGE = 200  # the default and the most /api/events hands out at once
EVENTS_MAX = 1000
# Answers kept (per URL and per view), the least recently used let go first.
ANSWERS = 4096
# failures and escalations, for the agents page
TROUBLE = ("task_failed", "task_requeued", "blocker_detected")


class Reader:
    """The API's data, from one project, safe to call from any thread."""

    def __init__(self, project: Any, pooled: Any = None) -> None:
        self.base = project
        self.root = project.root
        self.pooled = pooled  # project.pooling.Pooled: the threads' stores borrow from it
        self._local = threading.local()
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[tuple[int, str], Any]] = {}

    def project(self) -> Any:
        """This thread's Project (opened once per thread)."""
        p = getattr(self._local, "project", None)
        if p is None:
            with self._lock:
                p = self.pooled.another() if self.pooled is not None else self.base.another()
            self._local.project = p
        return p

    def call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """``fn(*args, **kw)`` on this thread, then its connection given back (pool)."""
        try:
            return fn(*args, **kw)
        finally:
            self.give_back()

    def give_back(self) -> None:
        """This thread's borrowed connection back to the pool, if it holds one."""
        p = getattr(self._local, "project", None)
        if p is not None and self.pooled is not None:
            self.pooled.give_back(p)

    def head(self) -> tuple[int, str]:
        """The log head, as cheaply as the store can tell it (on the database, no
        milestone is read); a pending hand edit is recorded first, as on any read."""
        with self.project().reading() as st:
            return (st.last_event_id, st.last_hash)

    def peek(self, key: str) -> Any:
        """What ``kept`` holds under ``key`` at this log head, else None."""
        got = self._answers.get(key)
        if got is None or got[0] != self.call(self.head):
            return None
        self._touch(key)
        return got[1]

    def _touch(self, key: str) -> None:
        """``key`` was just used: last to be let go."""
        with self._lock:
            got = self._answers.pop(key, None)
            if got is not None:
                self._answers[key] = got

    def kept(self, key: str, compute: Callable[[Any], Any], *, reveal: bool = True) -> Any:
        """``compute(project)`` (protected values opened unless not ``reveal``), or
        what it gave at this log head under ``key``: kept until the next event."""
        p = self.project()
        head = self.head()
        got = self._answers.get(key)
        if got is not None and got[0] == head:
            self._touch(key)
            return got[1]
        value = compute(p)
        if reveal:
            value = p.reveal(value)
        with self._lock:  # the least recently used answers go first, one at a time
            self._answers.pop(key, None)
            self._answers[key] = (head, value)
            while len(self._answers) > ANSWERS:
                del self._answers[next(iter(self._answers))]
        return value


    # ------------------------------------------------------------- reads

    def status(self) -> dict[str, Any]:
        return dict(self.kept("status", lambda p: p.status_view(all_=True)))

    def milestones(self) -> dict[str, Any]:
        return dict(self.kept("list", lambda p: p.list_view(all_=True)))

    def milestone(self, ref: str) -> dict[str, Any]:
        mid = ref.strip()
        if "/" in mid or not mid:
            raise NotFound(f"no milestone {ref!r}")
        return dict(self.kept(f"show:{mid}", lambda p: p.show_view(mid)))

    def task(self, ref: str) -> dict[str, Any]:
        return dict(self.kept(f"task:{ref}", lambda p: p.show_view(ref)))

    def tasks(self, status: str | None = None, assignee: str | None = None,
              q: str | None = None) -> dict[str, Any]:
        if status and status not in TASK_STATUSES:
            raise InvalidInput(f"unknown task status {status!r}",
                               hint="one of " + ", ".join(TASK_STATUSES))
        rows: list[dict[str, Any]] = self.kept("tasks", _all_tasks)
        needle = (q or "").lower()
        out = [r for r in rows
               if (not status or r["status"] == status)
               and (not assignee or r["assignee"] == assignee)
               and (not needle or needle in str(r["title"]).lower()
                    or needle in r["ref"])]
        return {"schema": 1, "tasks": out, "total": len(out)}

    def events(self, after: int = 0, limit: int = EVENTS_PAGE, milestone: str | None = None,
               actor: str | None = None, types: tuple[str, ...] = ()) -> dict[str, Any]:
        """Events after the id ``after``, oldest first, at most ``limit``;
        ``next_after``: the id to ask after for the next page (null at the end)."""
        p = self.project()
        got = p.log_view(after=after, milestone=milestone, actor=actor, types=types,
                         first=limit + 1)  # one more than the page: whether more follow
        rows = got["events"]
        page = rows[:limit]
        more = len(rows) > limit
        return {"schema": 1, "events": p.reveal(page),
                "next_after": page[-1]["event_id"] if more and page else None}

    def recent(self, limit: int, milestone: str | None = None, actor: str | None = None,
               types: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The newest ``limit`` events (the activity page), newest first."""
        p = self.project()
        rows = p.log_view(limit=limit, milestone=milestone, actor=actor, types=types)["events"]
        return list(reversed(p.reveal(rows)))

    def agents(self) -> dict[str, Any]:
        def compute(p: Any) -> dict[str, Any]:
            from ..agents.coord import Agents

            roster = Agents(p).roster()
            trouble = p.log_view(types=TROUBLE, limit=50)["events"]
            return {"schema": 1, "agents": roster, "today": p.today(),
                    "failures": list(reversed(trouble))}

        return dict(self.kept("agents", compute))

    def analytics(self, ref: str | None, since: str | None) -> dict[str, Any]:
        """``milestone analytics [REF] --since`` (``ops.analytics.report``), kept per head."""
        def compute(p: Any) -> dict[str, Any]:
            from ..ops import analytics

            return {"schema": 1, **analytics.report(p, ref, since)}

        return dict(self.kept(f"analytics:{ref}:{since}", compute))

    def burn(self, mid: str) -> list[tuple[str, int]]:
        """(day, tasks finished by the end of that day) from the milestone's events."""
        def compute(p: Any) -> list[tuple[str, int]]:
            done = 0
            days: dict[str, int] = {}
            for e in p.log_view(milestone=mid)["events"]:
                day = str(e.get("timestamp", ""))[:10]
                if not days:
                    days[day] = 0  # from its first event
                step = DONE_EVENTS.get(e.get("event_type", ""), 0)
                if step:
                    done = max(0, done + step)
                    days[day] = done
            if days:
                days.setdefault(p.today(), done)  # up to today
            return sorted(days.items())

        return list(self.kept(f"burn:{mid}", compute))

    # ------------------------------------------------------------ writes

    def write(self, action: str, ref: str, body: dict[str, Any]) -> dict[str, Any]:
        """One write on a task, through the same Project method as the CLI."""
        p = self.project()
        if action == "start":
            p.start_task(ref, force=bool(body.get("force", False)))
        elif action == "done":
            p.complete_task(ref, force=bool(body.get("force", False)))
        elif action == "block":
            p.block_task(ref, body["reason"])
        elif action == "assign":
            p.assign_task(ref, body.get("assignee"))
        elif action == "comment":
            full = p.show_view(ref)["task"]["ref"]  # the task must exist
            p.note(f"{full}: {body['text']}")
        else:
            raise NotFound(f"no task action {action!r}",
                           hint="start, done, block, assign or comment")
        return dict(p.reveal(p.show_view(ref)))


def _all_tasks(p: Any) -> list[dict[str, Any]]:
    rows = []
    for mid, snap in sorted(p.state().milestones.items()):
        for t in snap.get("tasks", ()):
            rows.append({
                "ref": f"{mid}/{t['id']}", "milestone_id": mid,
                "milestone_title": snap.get("title"), "id": t["id"], "title": t.get("title"),
                "status": t.get("status"), "assignee": t.get("assignee"),
                "estimate": t.get("estimate"), "depends_on": list(t.get("depends_on", ())),
            })
    return rows

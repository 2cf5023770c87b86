"""Tasks: add, edit, and every status transition (start, done, block, ...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from .. import model as md
from ..errors import (
    InvalidInput,
    InvalidTransition,
)
from ..model import refs
from .plans import Milestones, opt, tag, unique
from .txn import Txn


class Tasks(Milestones):
    """Adding, editing and moving tasks."""

    # ------------------------------------------------------------ tasks

    def add_task(
        self,
        milestone_ref: str,
        title: str,
        *,
        depends_on: Sequence[str] = (),
        estimate: float | None = None,
        skills: Sequence[str] = (),
        assignee: str | None = None,
        description: str = "",
        run: str | None = None,
        paths: Sequence[str] = (),
    ) -> tuple[str, md.Task]:
        with self.transaction() as tx:
            mid = refs.resolve_milestone(milestone_ref, tx.snaps)
            m = tx.milestone(mid)
            if m.status in ("archived", "cancelled"):
                raise InvalidTransition(
                    f"cannot add a task to {mid}: it is {m.status}",
                    hint="plan a new milestone instead",
                )
            before = m.to_dict()
            t = self._new_task(
                m,
                {
                    "title": title,
                    "description": description,
                    "estimate": estimate,
                    "skills": list(skills),
                    "assignee": assignee,
                    "run": run,
                    "paths": list(paths),
                },
                m.next_task_id(),
            )
            m.tasks.append(t)
            t.depends_on = unique([self._dep_ref(tx, m, d, t.id) for d in depends_on])
            self.touch_and_check(tx, m)
            tx.record("task_added", m, before, task=t, title=t.title)
            tx.follow_status(m)
            return mid, t

    @contextlib.contextmanager
    def _with_task(self, ref: str) -> Iterator[tuple[Txn, md.Milestone, md.Task, dict[str, Any]]]:
        with self.transaction() as tx:
            mid, tid = refs.resolve_task(ref, tx.snaps, tx.current)
            m = tx.milestone(mid)
            if m.status == "archived":
                raise InvalidTransition(f"{mid} is archived", hint="archived milestones are final")
            self.last_task = (mid, tid)
            yield tx, m, m.task(tid), m.to_dict()

    def start_task(self, ref: str, *, force: bool = False) -> md.Task:
        with self._with_task(ref) as (tx, m, t, before):
            unmet = tx.unmet(m, t)
            md.start_task(t, tx.now, f"{m.id}/{t.id}", unmet, force)
            tx.touch(m)
            tx.record(
                "task_started",
                m,
                before,
                task=t,
                forced=bool(force and unmet) or None,
                unmet=unmet if force and unmet else None,
            )
            tx.follow_status(m)
            return t

    def stop_task(self, ref: str) -> md.Task:
        with self._with_task(ref) as (tx, m, t, before):
            spent = md.stop_task(t, tx.now, f"{m.id}/{t.id}")
            tx.touch(m)
            tx.record("task_stopped", m, before, task=t, time_spent=spent)
            return t

    def complete_task(self, ref: str, *, force: bool = False) -> md.Task:
        with self._with_task(ref) as (tx, m, t, before):
            unmet = tx.unmet(m, t)
            spent = md.complete_task(t, tx.now, f"{m.id}/{t.id}", unmet, force)
            tx.touch(m)
            tx.record(
                "task_completed",
                m,
                before,
                task=t,
                time_spent=spent,
                forced=bool(force and unmet) or None,
                unmet=unmet if force and unmet else None,
            )
            tx.follow_status(m)
            return t

    def block_task(self, ref: str, reason: str) -> md.Task:
        with self._with_task(ref) as (tx, m, t, before):
            if t.status == "blocked" and reason.strip() in t.blockers:
                return t  # blocked for that reason already: no event
            spent = md.block_task(t, tx.now, f"{m.id}/{t.id}", reason)
            tx.touch(m)
            tx.record("task_blocked", m, before, task=t, time_spent=spent, reason=reason.strip())
            tx.follow_status(m)
            return t

    def unblock_task(self, ref: str) -> md.Task:
        with self._with_task(ref) as (tx, m, t, before):
            cleared = list(t.blockers)
            md.unblock_task(t, f"{m.id}/{t.id}")
            tx.touch(m)
            tx.record("task_unblocked", m, before, task=t, cleared=cleared)
            tx.follow_status(m)
            return t

    def skip_task(self, ref: str, *, reason: str | None = None) -> md.Task:
        with self._with_task(ref) as (tx, m, t, before):
            spent = md.skip_task(t, tx.now, f"{m.id}/{t.id}")
            tx.touch(m)
            tx.record("task_skipped", m, before, task=t, time_spent=spent, reason=reason)
            tx.follow_status(m)
            return t

    def reopen_task(self, ref: str) -> md.Task:
        with self._with_task(ref) as (tx, m, t, before):
            md.reopen_task(t, f"{m.id}/{t.id}")
            tx.touch(m)
            tx.record("task_reopened", m, before, task=t)
            tx.follow_status(m)
            return t

    def set_progress(self, ref: str, value: int) -> md.Task:
        with self._with_task(ref) as (tx, m, t, before):
            old = t.to_dict()
            md.set_progress(t, tx.now, f"{m.id}/{t.id}", value)
            if t.to_dict() == old:
                return t  # no change, no event
            tx.touch(m)
            tx.record("task_progress", m, before, task=t, task_progress=value)
            tx.follow_status(m)
            return t

    def assign_task(self, ref: str, assignee: str | None) -> md.Task:
        with self._with_task(ref) as (tx, m, t, before):
            who = opt(assignee, "assignee")
            if who == t.assignee:
                return t  # already assigned so: no event
            t.assignee = who
            tx.touch(m)
            tx.record("task_assigned", m, before, task=t, assignee=t.assignee)
            return t

    def edit_task(
        self,
        ref: str,
        *,
        title: str | None = None,
        description: str | None = None,
        estimate: float | None = None,
        skills: Sequence[str] | None = None,
        depends_on: Sequence[str] | None = None,
        run: str | None = None,
        assignee: str | None = None,
        paths: Sequence[str] | None = None,
    ) -> md.Task:
        with self._with_task(ref) as (tx, m, t, before):
            if title is not None:
                t.title = md.check_title(title, "task title")
            if description is not None:
                t.description = md.check_text(description, "task description")
            if estimate is not None:
                t.estimate = md.check_estimate(estimate)
            if skills is not None:
                t.skills = unique([tag(s, "skill") for s in skills])
            if run is not None:
                t.run = self._set_run(opt(run, "run command", limit=5000))
            if assignee is not None:
                t.assignee = opt(assignee, "assignee")
            if paths is not None:
                t.paths = [
                    md.check_text(p, "path", required=True, single_line=True, limit=500)
                    for p in paths
                ]
            if depends_on is not None:
                t.depends_on = unique([self._dep_ref(tx, m, d, t.id) for d in depends_on])
            if all(v is None for v in (title, description, estimate, skills, depends_on, run,
                                       assignee, paths)):
                raise InvalidInput(
                    f"nothing to change in {m.id}/{t.id}",
                    hint="give at least one option, see `milestone task edit --help`",
                )
            if m.to_dict() == before:
                return t  # already as asked: no event (the door says "nothing changed")
            self.touch_and_check(tx, m)
            old = {x["id"]: x for x in before["tasks"]}[t.id]
            changed = sorted(k for k, v in t.to_dict().items() if old.get(k) != v)
            tx.record("task_updated", m, before, task=t, fields=changed)
            return t

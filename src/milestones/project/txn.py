"""One write in the making: the state it changes and the events it appends.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..model import events as ev
from ..storage import State
from ..storage.base import Overlay, is_lazy

if TYPE_CHECKING:
    from .core import ProjectCore


class Txn:
    """One write: the milestones it touches and the events it will append."""

    def __init__(self, project: ProjectCore, state: State) -> None:
        self.project = project
        self.state = state
        # On an indexed store only the milestones the write reads are fetched.
        self.snaps: MutableMapping[str, dict[str, Any]] = (
            Overlay(state.milestones) if is_lazy(state.milestones) else dict(state.milestones))
        self.current = state.current
        self.max_number = state.max_number
        self.events: list[dict[str, Any]] = []
        self.now = project.clock()
        self.note: str | None = None  # a session note for the resume record
        self.actor: str | None = None  # who the events name, when not the project's actor
        self.identity: str | None = None  # whose role the write needs, when not the actor's
        # False for steps that only move tasks through the model's own transitions
        # (agent claims and reports, milestones.agents.coord): the plan's structure does not
        # change, so the write rules cannot find anything new.
        self.check = True
        # edit(): the milestone object built for a snapshot, while that snapshot stands.
        self._built: dict[str, tuple[md.Milestone, dict[str, Any]]] = {}
        self.flushed: list[dict[str, Any]] = []  # events written before the end (flush)

    def flush(self) -> bool:
        """Write this write's events so far through the store now, inside its
        transaction (nothing is committed before the write ends), so that what it
        reads next comes from the store's index again: an agent's complete, then its
        next claim, reads a page of ready rows, not every open milestone. Only where
        the store's commit is not the write's end (``Store.flushes``: the database
        backends) and for steps the write rules need not see (``check`` off);
        elsewhere nothing is done (False)."""
        store = self.project.store
        if not self.events or self.check or not getattr(store, "flushes", False):
            return False
        self.project.check_write(self)  # type: ignore[attr-defined]
        self.flushed += store.commit(self.events)
        self.events = []
        self.reread()
        return True

    def reread(self) -> None:
        """Read the state again from the store, forgetting the milestones read so far:
        after ``flush``, and once the writer lock is taken late (what was read before
        it may be a moment old). Nothing of this write may be pending."""
        if self.events:
            raise RuntimeError("a write's state re-read with events pending")
        self.state = self.project.store.view()
        self.snaps = (Overlay(self.state.milestones) if is_lazy(self.state.milestones)
                      else dict(self.state.milestones))
        self.current, self.max_number = self.state.current, self.state.max_number
        self._built.clear()

    def milestone(self, mid: str) -> md.Milestone:
        return md.Milestone.from_snapshot(self.snaps[mid])

    def edit(self, mid: str) -> tuple[md.Milestone, dict[str, Any]]:
        """The milestone to change and its snapshot as it stands (the event's
        ``before``: no ``to_dict``). Within one write the same object comes back
        while its snapshot is the one its last ``record`` left, so a step that
        changes a milestone twice (complete, then claim the next) builds it once.
        The caller changes it, then ``record``s it, or drops it (``forget``)."""
        snap = self.snaps[mid]
        held = self._built.get(mid)
        if held is not None and held[1] is snap:
            return held[0], snap
        m = md.Milestone.from_snapshot(snap)
        self._built[mid] = (m, snap)
        return m, snap

    def forget(self) -> None:
        """Drop the objects ``edit`` handed out (a step failed half-way)."""
        self._built.clear()

    def status_of(self, ref: str) -> str | None:
        """Status of a task (``milestone-003/task-2``) or milestone (``milestone-003``)."""
        if "/" in ref:
            mid, tid = ref.split("/", 1)
            for t in self.snaps.get(mid, {}).get("tasks", []):
                if t["id"] == tid:
                    return str(t["status"])
            return None
        snap = self.snaps.get(ref)
        if snap is None:
            return None
        # A milestone dependency is met once that milestone is completed.
        return "done" if snap["status"] in ("completed", "archived") else str(snap["status"])

    def unmet(self, m: md.Milestone, t: md.Task) -> list[str]:
        refs_ = [full_ref(m.id, d) for d in t.depends_on] + list(m.depends_on)
        return [r for r in refs_ if self.status_of(r) not in md.FINISHED_TASK]

    def record(
        self,
        event_type: str,
        m: md.Milestone | None,
        before: dict[str, Any] | None,
        *,
        mid: str | None = None,
        task: md.Task | None = None,
        time_spent: int = 0,
        data: dict[str, Any] | None = None,
        only: md.Task | None = None,
        same_tasks: bool = False,
        as_dict: dict[str, Any] | None = None,
        **details: Any,
    ) -> None:
        """Append an event taking milestone ``before`` (a snapshot) to ``m``.

        ``only``: of ``m``'s tasks only this one changed since ``before``;
        ``same_tasks``: none did. Either way the new snapshot shares the untouched
        task records with ``before`` instead of rebuilding every one (a claim on a
        milestone of 1,000 tasks serialises one task, not 1,000). ``as_dict``: ``m.to_dict()``
        as the caller just made it (and changed nothing since), not made again."""
        if m is None:
            after = None
        elif as_dict is not None:
            after = as_dict
        elif before is not None and same_tasks:
            after = m.to_dict(tasks=before["tasks"])
        elif before is not None and only is not None:
            mine = only.to_dict()
            after = m.to_dict(tasks=[mine if x["id"] == only.id else x
                                     for x in before["tasks"]])
        else:
            after = m.to_dict()
        target = m.id if m is not None else mid
        crypt = self.project.crypt()
        if crypt is not None and after is not None and target:
            after = crypt.seal_snapshot(after, target)  # before the patch: tokens only
        patch = ev.diff(before, after) if (before is not None or after is not None) else {}
        if data:
            patch.update(data)
        if target and after is not None:
            self.snaps[target] = after
            if m is not None:
                self._built[target] = (m, after)
        elif target and before is not None and after is None:
            self.snaps.pop(target, None)
        progress = md.milestone_progress(m) if m is not None else None
        blockers = (
            list(task.blockers)
            if task is not None
            else ([b for t in m.tasks for b in t.blockers] if m is not None else [])
        )
        event = ev.make_event(
            event_type,
            target,
            timestamp=self.now,
            actor=self.actor or self.project.actor,
            session_id=self.project.session_id,
            data=patch,
            task_id=task.id if task is not None else details.pop("task_id", None),
            progress=progress,
            time_spent=time_spent,
            blockers=blockers,
            **details,
        )
        if crypt is not None:
            crypt.seal_event(event)
        self.events.append(event)

    def touch(self, m: md.Milestone) -> None:
        m.updated_at = self.now

    def follow_status(self, m: md.Milestone) -> None:
        """Move the milestone's status where its tasks put it, as its own event."""
        old = m.status
        new = md.derive_status(m)
        if new == old:
            return
        held = self._built.get(m.id)
        # Just recorded (the usual case): its snapshot is its state, tasks and all.
        before = held[1] if held and held[0] is m and self.snaps.get(m.id) is held[1] \
            else m.to_dict()
        m.status = new
        m.completed_at = self.now if new == "completed" else None
        if new == "completed":
            self.record("milestone_completed", m, before, same_tasks=True)
        elif new == "in_progress" and old == "planned":
            self.record("milestone_started", m, before, same_tasks=True)
        else:
            self.record("milestone_status_changed", m, before, same_tasks=True,
                        from_status=old, to_status=new)


def full_ref(home: str, dep: str) -> str:
    mid, tid = md.split_task_ref(dep, home)
    return f"{mid}/{tid}"

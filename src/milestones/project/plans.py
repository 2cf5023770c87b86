"""Milestones: plan, update, archive, delete (the milestone family of operations).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from .. import model as md
from ..errors import (
    DependencyError,
    InvalidInput,
    InvalidTransition,
    NotFound,
)
from ..model import refs
from ..storage.base import is_lazy
from .txn import Txn
from .unit import UnitOfWork


class Milestones(UnitOfWork):
    """Planning and changing milestones."""

    # ------------------------------------------------------- milestones

    def plan(
        self,
        title: str,
        *,
        description: str = "",
        start: str | None = None,
        due: str | None = None,
        priority: str = "medium",
        owner: str | None = None,
        tags: Sequence[str] = (),
        depends_on: Sequence[str] = (),
        category: str = "feature",
        tasks: Sequence[str | Mapping[str, Any]] = (),
        assignees: Sequence[str] = (),
        success_criteria: Sequence[str] = (),
        deliverables: Sequence[Mapping[str, Any]] = (),
        risks: Sequence[Mapping[str, Any]] = (),
    ) -> md.Milestone:
        """Create a milestone (and its tasks); it becomes current if none is."""
        return self.plan_many(
            [
                dict(
                    title=title,
                    description=description,
                    start_date=start,
                    due_date=due,
                    priority=priority,
                    owner=owner,
                    tags=list(tags),
                    depends_on=list(depends_on),
                    category=category,
                    tasks=list(tasks),
                    assignees=list(assignees),
                    success_criteria=list(success_criteria),
                    deliverables=list(deliverables),
                    risks=list(risks),
                )
            ]
        )[0]

    def plan_many(self, specs: Sequence[Mapping[str, Any]], *,
                  progress: Callable[[str, int], None] | None = None) -> list[md.Milestone]:
        """Create several milestones in one write (``plan --from-file``).

        ``progress``, if given, is told ``("plan", n)`` after the n-th milestone is built
        and ``("write", n)`` once all are, before the write (validation, the commit)."""
        created: list[md.Milestone] = []
        with self.transaction() as tx:
            # Ids are never reused, not even those of deleted milestones. An indexed store
            # keeps the highest number given in its meta row with every commit; in memory
            # (the YAML backends, where a file may be added by hand) the ids are looked
            # at: once per write, not once per milestone.
            known = getattr(tx.snaps, "changed", ()) if is_lazy(tx.snaps) else tx.snaps
            tx.max_number = max(tx.max_number, *(md.milestone_number(k) for k in known), 0)
            for spec in specs:
                created.append(self._create(tx, spec))
                if progress is not None:
                    progress("plan", len(created))
            if progress is not None:
                progress("write", len(created))
        return created

    def _create(self, tx: Txn, spec: Mapping[str, Any]) -> md.Milestone:
        number = tx.max_number + 1  # plan_many made it at least every number in use
        tx.max_number = number
        mid = md.milestone_id(number)
        title = md.check_title(str(spec.get("title") or ""), "milestone title")
        start = md.check_date(spec.get("start_date"), "start date")
        due = md.check_date(spec.get("due_date"), "due date")
        md.check_window(start, due, f"milestone {title!r}")
        deps = [_milestone_dep(d, tx.snaps, mid) for d in spec.get("depends_on") or []]
        m = md.Milestone(
            id=mid,
            title=title,
            description=md.check_text(str(spec.get("description") or ""), "description"),
            priority=md.check_choice(spec.get("priority") or "medium", md.PRIORITIES, "priority"),
            owner=opt(spec.get("owner"), "owner"),
            assignees=[
                md.check_text(a, "assignee", required=True, single_line=True, limit=200)
                for a in spec.get("assignees") or []
            ],
            start_date=start,
            due_date=due,
            depends_on=unique(deps),
            tags=unique([tag(t) for t in spec.get("tags") or []]),
            category=_category(spec.get("category") or "feature"),
            success_criteria=[
                md.check_text(s, "success criterion", required=True, single_line=True, limit=1000)
                for s in spec.get("success_criteria") or []
            ],
            deliverables=[dict(d) for d in spec.get("deliverables") or []],
            risks=[dict(r) for r in spec.get("risks") or []],
            created_at=tx.now,
            updated_at=tx.now,
            workflow=opt(spec.get("workflow"), "workflow"),
            template=dict(spec["template"]) if spec.get("template") else None,
            kiro=dict(spec["kiro"]) if spec.get("kiro") else None,
        )
        raw_tasks = list(spec.get("tasks") or [])
        for i, raw in enumerate(raw_tasks, 1):
            m.tasks.append(
                self._new_task(m, raw if isinstance(raw, Mapping) else {"title": raw}, f"task-{i}")
            )
        own = {t.id for t in m.tasks}
        for t in m.tasks:
            t.depends_on = [self._dep_ref(tx, m, d, t.id, own) for d in t.depends_on]
        _check_done_on_arrival(tx, m)
        made = m.to_dict()
        _check_made(made)  # full structural check before anything is written
        data: dict[str, Any] = {}
        if tx.current is None or tx.current not in tx.snaps:
            tx.current = mid
            data["current"] = mid
        tx.record("milestone_created", m, None, data=data, title=m.title, as_dict=made)
        tx.follow_status(m)  # a plan may list tasks already done
        return m

    def _new_task(self, m: md.Milestone, raw: Mapping[str, Any], tid: str) -> md.Task:
        where = f"task {tid}"
        status = md.check_choice(raw.get("status") or "todo", ("todo", "done"), f"{where} status")
        deps = raw.get("depends_on") or []
        t = md.Task(
            id=tid,
            title=md.check_title(str(raw.get("title") or ""), "task title"),
            description=md.check_text(str(raw.get("description") or ""), f"{where} description"),
            depends_on=[str(d) for d in ([deps] if isinstance(deps, (str, int)) else deps)],
            estimate=md.check_estimate(raw.get("estimate")),
            assignee=opt(raw.get("assignee"), "assignee"),
            skills=unique([tag(s, "skill") for s in raw.get("skills") or []]),
            run=self._set_run(opt(raw.get("run"), "run command", limit=5000)),
            paths=[
                md.check_text(p, "path", required=True, single_line=True, limit=500)
                for p in raw.get("paths") or []
            ],
            requirements=[md.check_text(str(r), "requirement id", required=True,
                                        single_line=True, limit=50)
                          for r in raw.get("requirements") or []],
            phase=opt(raw.get("phase"), "phase", limit=100),
            spec_ref=opt(raw.get("spec_ref"), "spec_ref", limit=50),
        )
        if status == "done":
            t.status, t.progress = "done", 100
            t.started_at = t.completed_at = self.clock()
        return t

    def _dep_ref(self, tx: Txn, m: md.Milestone, dep: str, tid: str,
                 own: Collection[str] | None = None) -> str:
        """Normalise a task dependency: same milestone -> task-N, else milestone-NNN/task-N.
        ``own``: the ids of ``m``'s tasks, when the caller has them as a set."""
        raw = str(dep).strip()
        if "/" in raw:
            mpart, tpart = raw.split("/", 1)
        else:
            mpart, tpart = m.id, raw
        try:
            dmid = refs.parse_milestone(mpart)
            dtid = refs.parse_task(tpart)
        except InvalidInput:
            raise DependencyError(
                f"{m.id}/{tid}: unknown dependency {raw!r}",
                hint="use TASK or MILESTONE/TASK, e.g. 2 or 3/2",
            ) from None
        if dmid == m.id:
            ids = [t.id for t in m.tasks] if own is None else own
        else:
            if dmid not in tx.snaps:
                _milestone_dep(mpart, tx.snaps, f"{m.id}/{tid}")
            ids = [t["id"] for t in tx.snaps[dmid].get("tasks", [])]
        if dtid not in ids:
            listed = [t.id for t in m.tasks] if ids is own else ids
            raise DependencyError(
                f"{m.id}/{tid} depends on {dmid}/{dtid}, which does not exist",
                hint=f"tasks in {dmid}: {', '.join(listed) or 'none'}",
            )
        if dmid == m.id and dtid == tid:
            raise DependencyError(
                f"{m.id}/{tid} cannot depend on itself", hint="remove that dependency"
            )
        return dtid if dmid == m.id else f"{dmid}/{dtid}"

    def update(self, ref: str, **changes: Any) -> md.Milestone:
        """Edit milestone fields (``None`` leaves a field as it is)."""
        with self.transaction() as tx:
            mid = refs.resolve_milestone(ref, tx.snaps)
            m = tx.milestone(mid)
            if m.status == "archived":
                raise InvalidTransition(
                    f"cannot update {mid}: it is archived, and archived milestones are final",
                    hint="plan a new milestone for more work (`milestone plan`)")
            before = m.to_dict()
            self._apply_milestone_changes(tx, m, changes)
            if not any(v not in (None, (), []) for v in changes.values()):
                raise InvalidInput(
                    f"nothing to change in {mid}",
                    hint="give at least one option, see `milestone update --help`",
                )
            if m.to_dict() == before:
                return m  # already as asked: no event (the door says "nothing changed")
            self.touch_and_check(tx, m)
            changed = sorted(
                k for k in m.to_dict() if m.to_dict()[k] != before.get(k) and k != "updated_at"
            )
            tx.record("milestone_updated", m, before, fields=changed)
            return m

    def touch_and_check(self, tx: Txn, m: md.Milestone) -> None:
        """Stamp the change and check the milestone's structure (rules run at commit)."""
        tx.touch(m)
        md.Milestone.from_dict(m.to_dict())

    def _apply_milestone_changes(self, tx: Txn, m: md.Milestone, c: Mapping[str, Any]) -> None:
        if c.get("title") is not None:
            m.title = md.check_title(c["title"], "milestone title")
        if c.get("description") is not None:
            m.description = md.check_text(c["description"], "description")
        if c.get("priority") is not None:
            m.priority = md.check_choice(c["priority"], md.PRIORITIES, "priority")
        if c.get("owner") is not None:
            m.owner = opt(c["owner"], "owner")
        if c.get("category") is not None:
            m.category = _category(c["category"])
        if c.get("start") is not None:
            m.start_date = md.check_date(c["start"], "start date")
        if c.get("due") is not None:
            m.due_date = md.check_date(c["due"], "due date")
        md.check_window(m.start_date, m.due_date, m.id)
        if c.get("tags") is not None:
            m.tags = unique([tag(t) for t in c["tags"]])
        for t in c.get("add_tags") or ():
            m.tags = unique([*m.tags, tag(t)])
        for t in c.get("remove_tags") or ():
            m.tags = [x for x in m.tags if x != t]
        if c.get("assignees") is not None:
            m.assignees = unique(
                [
                    md.check_text(a, "assignee", required=True, single_line=True, limit=200)
                    for a in c["assignees"]
                ]
            )
        if c.get("success_criteria") is not None:
            m.success_criteria = [
                md.check_text(s, "success criterion", required=True, single_line=True)
                for s in c["success_criteria"]
            ]
        if c.get("depends_on") is not None:
            deps = [_milestone_dep(d, tx.snaps, m.id) for d in c["depends_on"]]
            if m.id in deps:
                raise DependencyError(f"{m.id} cannot depend on itself", hint="remove it")
            m.depends_on = unique(deps)
        status = c.get("status")
        if status is not None:
            md.check_choice(
                status, ("planned", "in_progress", "blocked", "cancelled", "completed"), "status"
            )
            if status == "completed" and not (m.tasks and all(t.finished for t in m.tasks)):
                raise InvalidTransition(
                    f"cannot mark {m.id} completed: it has open tasks",
                    hint="finish or skip them (`task done`, `task skip`)",
                )
            if m.status == "archived":
                raise InvalidTransition(f"{m.id} is archived", hint="archived milestones are final")
            waiting = [d for d in m.depends_on if tx.status_of(d) not in md.FINISHED_TASK]
            if status in ("in_progress", "completed") and status != m.status and waiting:
                # The door `task start` and `task done` keep: no work past what it waits on.
                raise DependencyError(
                    f"cannot mark {m.id} {status.replace('_', ' ')}: it waits on "
                    f"{', '.join(waiting)}", hint="complete those first")
            if status != m.status:  # the same status again keeps its completed_at
                m.status = status
                m.completed_at = tx.now if status == "completed" else None

    def set_current(self, ref: str) -> str:
        with self.transaction() as tx:
            mid = refs.resolve_milestone(ref, tx.snaps)
            if tx.current == mid:
                return mid
            tx.current = mid
            tx.record("current_changed", None, None, mid=mid, data={"current": mid})
            return mid

    def archive(self, ref: str, *, lessons: Sequence[str] = ()) -> md.Milestone:
        with self.transaction() as tx:
            mid = refs.resolve_milestone(ref, tx.snaps)
            m = tx.milestone(mid)
            if m.status not in ("completed", "cancelled"):
                raise InvalidTransition(
                    f"cannot archive {mid}: it is {m.status}",
                    hint="archive completed or cancelled milestones only",
                )
            before = m.to_dict()
            m.completion = completion_record(
                m,
                tx.now,
                [md.check_text(x, "lesson", required=True, single_line=True) for x in lessons],
            )
            m.status = "archived"
            tx.touch(m)
            data = {"current": None} if tx.current == mid else None
            tx.record(
                "milestone_archived",
                m,
                before,
                data=data,
                **{k: m.completion[k] for k in ("estimated_hours", "actual_hours", "on_time")},
            )
            return m

    def delete(self, ref: str, *, force: bool = False) -> str:
        with self.transaction() as tx:
            mid = refs.resolve_milestone(ref, tx.snaps)
            users = sorted(
                {f"{o}" for o, s in tx.snaps.items() if mid in (s.get("depends_on") or [])}
                | {
                    f"{o}/{t['id']}"
                    for o, s in tx.snaps.items()
                    if o != mid
                    for t in s.get("tasks", [])
                    if any(d.startswith(mid + "/") for d in t.get("depends_on", []))
                }
            )
            if users and not force:
                raise DependencyError(
                    f"cannot delete {mid}: {', '.join(users)} depend on it",
                    hint="remove those dependencies first, or pass --force",
                )
            before = tx.snaps[mid]
            tx.record("milestone_deleted", None, before, mid=mid, title=before.get("title"))
            return mid


# --------------------------------------------------------------- helpers


def _check_done_on_arrival(tx: Txn, m: md.Milestone) -> None:
    """A task planned as done (a plan file's ``[x]``, a Kiro box ticked, ``status:
    done``) passes the rule ``task done`` applies: every dependency finished."""
    mine = {t.id: t.status for t in m.tasks}
    for t in m.tasks:
        if t.status != "done":
            continue
        unmet = [d for d in t.depends_on
                 if (mine.get(d) if "/" not in d else tx.status_of(d)) not in md.FINISHED_TASK]
        unmet += [d for d in m.depends_on if tx.status_of(d) not in md.FINISHED_TASK]
        if unmet:
            raise DependencyError(
                f"cannot plan {t.id} ({t.title!r}) of {m.title!r} as done: it waits on "
                f"{', '.join(unmet)}, not done",
                hint="mark those done too, or leave it open (`- [ ]`, status: todo)")


def _check_made(made: Mapping[str, Any]) -> None:
    """What ``md.Milestone.from_dict(made)`` refuses of a milestone ``_create`` made,
    refused with the same line, without reading its tasks back one by one (at 100,000
    Kiro checkboxes, that was a fifth of the import).

    ``_new_task`` and ``_dep_ref`` already put every task field through the checks
    ``Task.from_dict`` makes, each as strict or stricter (ids task-1..N, statuses todo
    or done, titles and texts by the same ``check_*``, the same or shorter limits,
    dependencies as ids): only the milestone's own fields are read back, in
    from_dict's order. tests/unit/test_plan_check.py compares the two."""
    md.Milestone.from_dict({**made, "tasks": []})


def opt(value: Any, what: str, limit: int = 200) -> str | None:
    if value is None:
        return None
    text = md.check_text(str(value), what, single_line=True, limit=limit)
    return text or None


def tag(value: Any, what: str = "tag") -> str:
    return md.check_text(str(value), what, required=True, single_line=True, limit=100)


def _category(value: Any) -> str:
    return md.check_text(str(value), "category", required=True, single_line=True, limit=50)


def _milestone_dep(ref: str, snaps: Mapping[str, Any], who: str) -> str:
    """Resolve a milestone dependency; an unknown one is a missing dependency (exit 5)."""
    try:
        return refs.resolve_milestone(ref, snaps)
    except NotFound as exc:
        raise DependencyError(f"{who} depends on {exc.message}", hint=exc.hint) from None


def unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def completion_record(m: md.Milestone, now: str, lessons: list[str]) -> dict[str, Any]:
    from datetime import date

    estimated = float(sum(t.estimate or 0 for t in m.tasks))
    actual = round(sum(t.time_spent for t in m.tasks) / 3600.0, 2)
    finished = (m.completed_at or now)[:10]
    begun = m.start_date or (m.created_at or now)[:10]
    duration = (date.fromisoformat(finished) - date.fromisoformat(begun)).days
    return {
        "archived_at": now,
        "estimated_hours": estimated,
        "actual_hours": actual,
        "efficiency": round(estimated / actual, 2) if actual > 0 else None,
        "duration_days": max(duration, 0),
        "on_time": (finished <= m.due_date) if m.due_date else None,
        "lessons": lessons,
        "tasks_done": sum(1 for t in m.tasks if t.status == "done"),
        "tasks_skipped": sum(1 for t in m.tasks if t.status == "skipped"),
    }

"""The service layer: the only way data changes.

Every operation takes the writer lock, finishes any interrupted write, records
hand edits, checks the change against the model, then commits its events (the
write-ahead record) and the new snapshots as one unit, and refreshes the
session-resume record. Reads are served without the lock. Views return plain
data (the ``--json`` contract); the doors render it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import (
    Conflict,
    DependencyError,
    InvalidInput,
    InvalidTransition,
    MilestoneError,
    NotFound,
    StorageError,
    ValidationFailed,
)
from ..model import events as ev
from ..model import refs
from ..storage import BACKENDS as BACKENDS  # the doors' choice of backends (storage migrate --to)
from ..storage import State, Store, fsutil, open_store
from ..storage.base import Overlay, is_lazy
from .session import git_position, resolve_actor, resolve_session, today, utc_now

DIRNAME = ".milestones"
SCHEMA = 1
# Feasibility for at most this many milestones is computed from what they depend on
# (read through the index); beyond, from the whole plan, once per log head.
CLOSURE_LIMIT = 200
# Events that never add a task dependency: a plan known to have no dependency cycle
# keeps none across them (see Project._acyclic).
_EDGE_KEEPING = frozenset(ev.EVENT_TYPES) - {"milestone_created", "task_added",
                                             "task_updated", "manual_edit_detected"}


def find_root(start: Path | None = None) -> Path:
    """The nearest ``.milestones/`` at or above ``start`` (or $MILESTONE_DIR)."""
    env = os.environ.get("MILESTONE_DIR")
    if env:
        p = Path(env)
        p = p if p.name == DIRNAME else p / DIRNAME
        if p.is_dir():
            return p
        raise NotFound(f"no milestone project at {p}", hint="run `milestone init` there first")
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / DIRNAME).is_dir():
            return d / DIRNAME
    raise NotFound(
        f"no {DIRNAME}/ here or in any parent of {here}",
        hint="run `milestone init` to start a project",
    )


class Txn:
    """One write: the milestones it touches and the events it will append."""

    def __init__(self, project: Project, state: State) -> None:
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
        # False for steps that only move tasks through the model's own transitions
        # (agent claims and reports, milestones.agents.coord): the plan's structure does not
        # change, so the write rules cannot find anything new.
        self.check = True
        # edit(): the milestone object built for a snapshot, while that snapshot stands.
        self._built: dict[str, tuple[md.Milestone, dict[str, Any]]] = {}

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
        **details: Any,
    ) -> None:
        """Append an event taking milestone ``before`` (a snapshot) to ``m``.

        ``only``: of ``m``'s tasks only this one changed since ``before``;
        ``same_tasks``: none did. Either way the new snapshot shares the untouched
        task records with ``before`` instead of rebuilding every one (a claim on a
        milestone of 1,000 tasks serialises one task, not 1,000)."""
        if m is None:
            after = None
        elif before is not None and same_tasks:
            after = m.to_dict(tasks=before["tasks"])
        elif before is not None and only is not None:
            mine = only.to_dict()
            after = m.to_dict(tasks=[mine if x["id"] == only.id else x
                                     for x in before["tasks"]])
        else:
            after = m.to_dict()
        target = m.id if m is not None else mid
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
        self.events.append(
            ev.make_event(
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
        )

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


class Project:
    """A milestone project on disk (or in memory): every read and write goes here."""

    def __init__(
        self,
        store: Store,
        *,
        cwd: Path | None = None,
        actor: str | None = None,
        session_id: str | None = None,
    ) -> None:
        self.store = store
        self.root = store.root
        self.cwd = cwd or Path.cwd()
        self._actor = actor
        self._session = session_id
        self.clock = utc_now
        self.today = today
        self.warnings: list[Any] = []  # validation warnings raised by this object's writes
        self.commits = 0  # writes committed through this object (the CLI's scale check reads it)
        self.last_task: tuple[str, str] | None = None  # (milestone, task) of the last task write
        # `run` commands this object's writes set: the person's own, approved (approvals.py)
        self.approved_runs: set[str] = set()
        self._new_runs: list[str] = []
        self._trust_runs = True  # an import's commands are not the person's: see import_kiro
        # Seconds between refreshes of the session-resume record (0: after every
        # write). A long run of writes (milestone execute) sets it: the record then
        # lags the log by at most that, and a write with a note refreshes it at once.
        self.resume_every = 0.0
        self._resumed_at = -math.inf
        self._config: dict[str, Any] | None = None
        # L1: the last state() result, keyed by the store and its log head (see state()).
        self._l1: tuple[Store, tuple[int, str], State] | None = None
        self._l1_hits = 0
        self._l1_misses = 0
        self._warned = False  # the event log's damage was told (once per command)

    # ---------------------------------------------------------- opening

    @classmethod
    def open(cls, start: Path | None = None, **kw: Any) -> Project:
        root = find_root(start)
        # A backup killed mid-way left its staging copy: remove it (one listdir).
        fsutil.remove_dead_temps(root, fsutil.BACKUP_STAGE_RE)
        return cls(open_store(root), cwd=start, **kw)

    @classmethod
    def init(cls, directory: Path, *, backend: str | None = None,
             **kw: Any) -> tuple[Project, bool]:
        """Create ``.milestones/`` in ``directory``; returns (project, created)."""
        root = Path(directory) / DIRNAME
        store = open_store(root, backend)
        created = not store.exists()
        store.initialize()
        config = root / "config" / "config.yaml"
        if not config.exists():
            from ..storage.config import DEFAULT_CONFIG_TEXT
            from ..storage.fsutil import atomic_write

            atomic_write(config, DEFAULT_CONFIG_TEXT.encode("utf-8"))
        project = cls(store, cwd=Path(directory), **kw)
        if created:
            with project.transaction(scheduled_backup=False) as tx:
                tx.record("project_initialized", None, None, data={"backend": store.backend})
        return project, created

    @property
    def actor(self) -> str:
        if self._actor is None:
            self._actor = resolve_actor(self.cwd)
        return self._actor

    def another(self) -> Project:
        """A Project of the same root, actor and session over a store of its own: for
        another thread, since a store object is not shared across threads."""
        return Project(open_store(self.root), cwd=self.cwd, actor=self.actor,
                       session_id=self.session_id)

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

    @property
    def session_id(self) -> str:
        if self._session is None:
            self._session = resolve_session(self.actor, self.store.read_resume(), self.clock())
        return self._session

    # ------------------------------------------------------------ reads

    def follow_backend(self) -> bool:
        """Re-open the store when a migration switched the backend; True if it did."""
        try:
            marker = (self.root / "config" / "storage-backend.txt").read_text("utf-8").strip()
        except (FileNotFoundError, NotADirectoryError):
            return False
        if marker and marker != self.store.backend and self.store.backend != "memory":
            self.store = open_store(self.root)  # the old one closes when its lock is let go
            return True
        return False

    def state(self) -> State:
        """Current state; records pending hand edits first when the lock is free.

        L1 cache, for long-lived objects (dashboard, agents): a state stays valid for
        as long as the store's log head (last event id and hash, read cheaply, after
        the usual check for changes on disk) stays put, so repeated reads skip the
        load. Another process's write moves the head; a state that could not be
        brought up to date (the lock was busy) is never kept. Snapshots are shared
        with the cache: read them, never change them.
        """
        self.follow_backend()
        store = self.store
        in_step = True
        if store.needs_sync():
            with store.try_lock() as got:
                if got:
                    self.sync()
                in_step = got
        head = store.head() if in_step else None
        cached = self._l1
        if head is not None and cached is not None and cached[0] is store and cached[1] == head:
            self._l1_hits += 1
            st = cached[2]
            everything = getattr(st.milestones, "everything", None)
            if everything is not None:  # kept by view(): read the rest now
                st = dataclasses.replace(st, milestones=everything())
                self._l1 = (store, head, st)
        else:
            self._l1_misses += 1
            st = store.load()
            key = (st.last_event_id, st.last_hash)
            # Keyed by the loaded state's own head: a write landing between head() and
            # load() makes the next read miss, never hit on an older state.
            self._l1 = (store, key, st) if head is not None and not st.stale else None
        return dataclasses.replace(st, milestones=dict(st.milestones))

    def view(self) -> State:
        """Like ``state()``, but on a store with an index the milestones are read when
        asked (``LazyMilestones``): call it inside ``store.reading()``."""
        self.follow_backend()
        store = self.store
        if type(store).view is Store.view or store.needs_sync():
            return self.state()
        head = store.head()
        cached = self._l1
        if head is not None and cached is not None and cached[0] is store and cached[1] == head:
            self._l1_hits += 1  # and the snapshots read since are read again for free
            return cached[2]
        self._l1_misses += 1
        st = store.view()
        self._l1 = (store, (st.last_event_id, st.last_hash), st)
        return st

    @contextlib.contextmanager
    def _reading(self) -> Iterator[State]:
        """The state for one read view, from one consistent snapshot of the store."""
        self.follow_backend()
        with self.store.reading():
            yield self.view()

    def _cached(self, st: State, key: str, compute: Any, *, dated: bool = True) -> Any:
        """A view's result from the store's query cache, keyed by the log head (and the
        day and the team's capacity, which feasibility reads), else ``compute()``."""
        head = self._head_key(st, dated=dated)
        if not is_lazy(st.milestones):
            return compute()  # everything is in memory already: nothing to save
        hit = self.store.cache_get(key, head)
        if hit is not None:
            return hit
        value = compute()
        self.store.cache_put(key, head, value)
        return value

    def _head_key(self, st: State, *, dated: bool = True) -> str:
        head = f"{st.last_event_id}:{st.last_hash}"
        if not dated:
            return head
        from ..model import schedule

        hours = schedule.team_weekly_hours(self.config())
        return f"{head}:{self.today()}:{','.join(map(str, hours))}"

    def cache_stats(self) -> dict[str, Any]:
        """Hits and misses of the caches this object has used: L1 (``state()`` in this
        process) and L2 (the store's query cache, ``database/cache.db``; None without)."""
        l2 = getattr(self.store, "cache", None)
        return {
            "l1": {"hits": self._l1_hits, "misses": self._l1_misses},
            "l2": None if l2 is None else {"hits": int(l2.hits), "misses": int(l2.misses)},
        }

    def sync(self) -> list[dict[str, Any]]:
        """Finish interrupted writes and record hand edits as events; returns the events
        recorded. Call it under the writer lock (``doctor``, ``migrate`` and every write do)."""
        self.store.recover()
        damage = getattr(self.store, "damage", None)
        if damage:  # the log does not verify: record nothing on top of it
            if not self._warned:
                self._warned = True
                print(f"milestone: warning: {damage}; the event log does not verify — run "
                      "`milestone doctor`", file=sys.stderr, flush=True)
            return []
        edits = self.store.scan_edits()
        if not edits:
            return []
        events: list[dict[str, Any]] = []
        adopt: list[str] = []
        now = self.clock()
        for e in edits:
            if e.current:
                events.append(
                    ev.make_event(
                        "current_changed",
                        e.milestone_id or None,
                        timestamp=now,
                        actor=self.actor,
                        session_id=self.session_id,
                        data={"current": e.milestone_id or None},
                        summary="active/current.txt edited by hand",
                    )
                )
                continue
            summary = summarize_edit(e.before, e.after)
            data = {"create": e.after} if e.after is not None else {"delete": True}
            progress = md.milestone_progress(md.Milestone.from_dict(e.after)) if e.after else None
            events.append(
                ev.make_event(
                    "manual_edit_detected",
                    e.milestone_id,
                    timestamp=now,
                    actor=self.actor,
                    session_id=self.session_id,
                    data=data,
                    progress=progress,
                    summary=summary,
                    path=f"{DIRNAME}/{e.path}",
                )
            )
            adopt.append(e.milestone_id)
            if e.after is not None:
                self._warn_unknown_keys(e.before, e.after, e.path)
        edited = [e for e in edits if not e.current and e.after is not None]
        for e in edited:
            _check_hand_edit(e)  # before anything is recorded: refuse what no command makes
        sealed = self.store.commit(events, adopt=adopt)
        if edited:
            sealed += self._follow_hand_edits(edited)
        return sealed

    def _follow_hand_edits(self, edits: Sequence[Any]) -> list[dict[str, Any]]:
        """After hand edits are recorded: derive what the commands they mirror derive (a
        task ticked done gets its completed_at, its milestone completes), as the events
        those commands emit, each marked ``hand_edit`` with the file."""
        from ..validation.engine import Finding

        tx = Txn(self, self.store.view())
        for e in edits:
            path = f"{DIRNAME}/{e.path}"
            m = tx.milestone(e.milestone_id)
            if m.status == "archived":
                continue
            old = {t["id"]: t for t in (e.before or {}).get("tasks", [])}
            moved = set(old) != {t.id for t in m.tasks}
            for t in m.tasks:
                prev = old.get(t.id)
                if prev is not None and all(prev.get(f) == getattr(t, f) for f in _HAND_KEYS):
                    continue
                moved = True
                ref = f"{m.id}/{t.id}"
                unmet = tx.unmet(m, t) if t.status in ("done", "in_progress") else []
                before = m.to_dict()
                step = _hand_step(t, prev, tx.now, ref, unmet)
                if step is None:
                    continue
                kind, spent = step
                tx.touch(m)
                tx.record(kind, m, before, task=t, time_spent=spent, hand_edit=path,
                          forced=bool(unmet) or None, unmet=unmet or None)
                if unmet:
                    self.warnings.append(Finding(
                        "hand-edit", "storage", "warning",
                        f"{ref} was set {t.status} by hand while it waits on "
                        f"{', '.join(unmet)}; recorded as forced (as `task "
                        f"{'done' if t.status == 'done' else 'start'} --force` is)",
                        f"finish {', '.join(unmet)} too, or set it back to todo",
                        ref=ref, file=path))
            if moved:
                tx.follow_status(m)
        return self.store.commit(tx.events) if tx.events else []

    def _warn_unknown_keys(self, before: Any, after: Any, path: str) -> None:
        """A hand edit's new unknown fields (``prioirty:``) as MS106 warnings, each with
        the nearest known field (``validate`` reports them while they stay)."""
        from ..validation import structure

        found = structure.new_unknown_keys(before, after)
        if not found:
            return
        from ..storage.yamlio import key_line
        from ..validation.engine import Finding

        try:
            text = (self.root / path).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
        for at, message, hint in found:
            self.warnings.append(Finding(
                "MS106", "structure", "warning", message,
                hint or "check the spelling; unknown fields are kept but not used",
                file=f"{DIRNAME}/{path}", line=key_line(text, at) if text else None))

    def milestones(self) -> dict[str, md.Milestone]:
        return {
            mid: md.Milestone.from_snapshot(s)
            for mid, s in sorted(self.state().milestones.items())
        }

    def milestone(self, ref: str) -> md.Milestone:
        st = self.state()
        return md.Milestone.from_snapshot(
            st.milestones[refs.resolve_milestone(ref, st.milestones)]
        )

    def current_id(self) -> str | None:
        return self.state().current

    # ----------------------------------------------------------- writes

    @contextlib.contextmanager
    def transaction(self, *, scheduled_backup: bool = True) -> Iterator[Txn]:
        """One write, as a unit: the writer lock, hand edits recorded, the changes and
        their events appended, validated and committed on exit (rolled back on error)."""
        if (self.root / ".restore").exists():  # a restore was interrupted: finish it first
            from ..storage.backup import recover_restore

            recover_restore(self.root)
        self.follow_backend()
        store = self.store
        if not store.exists():
            raise NotFound(f"no project at {self.root}", hint="run `milestone init` first")
        while True:
            held = contextlib.ExitStack()
            held.enter_context(store.lock())
            if not self.follow_backend():
                break
            # A migration switched backends while we waited for the lock: let it go
            # and write to the new backend, under its lock (checked again there).
            held.close()
            store = self.store
        with held:
            self._warned = True  # a refused write says so once, as its error
            self.sync()
            damage = getattr(store, "damage", None)
            if damage:
                raise StorageError(f"{damage}; writes are refused until the event log is "
                                   "repaired",
                                   hint="restore a backup, or run `milestone doctor --repair`")
            tx = Txn(self, store.view())
            self._new_runs = []
            yield tx
            if tx.events:
                if tx.check:
                    self._check_write(tx)
                try:
                    sealed = store.commit(tx.events)
                except Conflict as exc:
                    if getattr(exc, "hand_edit", False):
                        self.sync()  # record the edit the write found (the lock is held)
                    raise
                self.commits += 1
                if self._new_runs:
                    self._approve_runs()
                now = time.monotonic()
                if tx.note or now - self._resumed_at >= self.resume_every:
                    self._resumed_at = now
                    try:  # past the commit point (file, hybrid): a warning, not a failure
                        fsutil.fault("resume")
                        self._refresh_resume(sealed[-1], note=tx.note, tx=tx)
                    except Exception as exc:
                        store.warn(f"the session-resume record was not updated: {exc}")
        for line in store.take_warnings():  # the write is committed: warnings only
            self._warn(line)
        if tx.events and scheduled_backup and store.backend == "database":
            self._scheduled_backup()  # after the lock: the backup takes it itself

    def _set_run(self, command: str | None) -> str | None:
        """A `run` command this write sets: approved once the write commits."""
        if command and self._trust_runs:
            self._new_runs.append(command)
        return command

    def _approve_runs(self) -> None:
        from .approvals import approve

        runs, self._new_runs = self._new_runs, []
        self.approved_runs.update(runs)
        approve(self.root, runs)

    def _warn(self, line: str) -> None:
        """Trouble after a write's commit point: one warning line; the write stands."""
        print(f"milestone: warning: {line}", file=sys.stderr, flush=True)

    def _scheduled_backup(self) -> None:
        """After a write on the database backend: a ``scheduled`` backup when the newest
        automatic one is ``backup.every_hours`` old (see ``backup.scheduled_backup``).

        The write is done: a backup that fails is one warning line, never an error."""
        from ..storage.backup import scheduled_backup

        try:
            fsutil.fault("backup")
            scheduled_backup(self.root, actor=self.actor, began=self._began)
        except Exception as exc:  # whatever it is, the write stands
            print(f"milestone: warning: the scheduled backup failed: {exc}", file=sys.stderr,
                  flush=True)

    def _began(self) -> datetime | None:
        """When the project's data began: its first event's time (None without one)."""
        events = self.store.events()
        try:
            first = next(iter(events), None)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # a database cursor left open would pin a read transaction
        try:
            stamp = str((first or {})["timestamp"])
            return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except (KeyError, ValueError):
            return None

    def _check_write(self, tx: Txn) -> None:
        """Run the write rules on what the change touched; new errors refuse it.

        Only findings the change introduces count: a problem that was already there
        (say, from a hand edit) does not block unrelated work. New warnings are
        kept on the last event (``details.warnings``) and in ``self.warnings``.
        """
        from ..validation import engine

        touched = {e["milestone_id"] for e in tx.events
                   if e.get("milestone_id") and e["milestone_id"] in tx.snaps}
        if not touched:
            return
        config = self.config()
        day = self.today()
        after = engine.run(engine.Context(tx.snaps, day, config, scope=touched), ("all",),
                           write_only=True)
        if not after:
            return
        before_ctx = engine.Context(tx.state.milestones, day, config, scope=touched)
        known = {f.key for f in engine.run(before_ctx, ("all",), write_only=True)}
        new = [f for f in after if f.key not in known]
        errors = [f for f in new if f.severity == "error"]
        if errors:
            first = errors[0]
            more = f" (and {len(errors) - 1} more; see `milestone validate`)" if errors[1:] else ""
            cls = DependencyError if first.family == "dependency" else ValidationFailed
            raise cls(f"{first.code} {first.message}", hint=first.hint + more)
        warnings = [f for f in new if f.severity == "warning"]
        if warnings:
            tx.events[-1]["details"]["warnings"] = [f"{w.code} {w.message}" for w in warnings]
            self.warnings.extend(warnings)

    def config(self) -> dict[str, Any]:
        """The project's configuration (the defaults when the file is the default one)."""
        if self._config is None:
            from ..storage.config import load_config

            self._config = load_config(self.root)
        return self._config

    def _refresh_resume(self, last: Mapping[str, Any], note: str | None = None,
                        tx: Txn | None = None) -> None:
        """Rewrite the session-resume record after a write, from the state the write
        left (the Txn's). The next task is worked out when the record is read
        (``resume_view``), never on a write; so are the tasks in progress and
        blocked when the store is indexed (its state is read on demand, and a
        write stays O(what it touched))."""
        if tx is not None:
            snaps, current = tx.snaps, tx.current
        else:
            st = self.store.view()
            snaps, current = st.milestones, st.current
        record = self.store.read_resume()
        sessions = dict(record.get("sessions") or {})
        sessions[self.actor] = {"id": self.session_id, "last_active": last["timestamp"]}
        notes = list(record.get("notes") or [])
        if note:
            notes.append(
                {
                    "text": note,
                    "actor": self.actor,
                    "timestamp": last["timestamp"],
                    "session_id": self.session_id,
                }
            )
        in_progress: list[dict[str, Any]] | None = None
        blocked: list[dict[str, Any]] | None = None
        if not is_lazy(snaps):
            in_progress, blocked = [], []
            for mid, snap in snaps.items():
                for t in snap.get("tasks", ()):
                    if t["status"] == "in_progress":
                        in_progress.append(
                            {
                                "ref": f"{mid}/{t['id']}",
                                "title": t["title"],
                                "assignee": t.get("assignee"),
                                "started_at": t.get("started_at"),
                                "timer_running": bool(t.get("timer_started_at")),
                                "progress": t.get("progress", 0),
                            }
                        )
                    elif t["status"] == "blocked":
                        blocked.append(
                            {"ref": f"{mid}/{t['id']}", "title": t["title"],
                             "blockers": list(t.get("blockers") or [])}
                        )
        record.pop("next_task", None)
        record.update(
            {
                "schema": SCHEMA,
                "session_id": self.session_id,
                "actor": self.actor,
                "cwd": str(self.cwd),
                "git": git_position(self.cwd),
                "current_milestone": current,
                "in_progress": in_progress,
                "blockers": blocked,
                "last_event": {
                    k: last.get(k)
                    for k in ("event_id", "event_type", "milestone_id", "timestamp", "actor")
                }
                | {"task_id": last.get("details", {}).get("task_id")},
                "notes": notes[-20:],
                "sessions": sessions,
                "updated_at": last["timestamp"],
            }
        )
        self.store.write_resume(record)

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

    def plan_many(self, specs: Sequence[Mapping[str, Any]]) -> list[md.Milestone]:
        """Create several milestones in one write (``plan --from-file``)."""
        created: list[md.Milestone] = []
        with self.transaction() as tx:
            for spec in specs:
                created.append(self._create(tx, spec))
        return created

    def _create(self, tx: Txn, spec: Mapping[str, Any]) -> md.Milestone:
        # Ids are never reused, not even those of deleted milestones.
        number = max(tx.max_number, *(md.milestone_number(k) for k in tx.snaps), 0) + 1
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
            owner=_opt(spec.get("owner"), "owner"),
            assignees=[
                md.check_text(a, "assignee", required=True, single_line=True, limit=200)
                for a in spec.get("assignees") or []
            ],
            start_date=start,
            due_date=due,
            depends_on=_unique(deps),
            tags=_unique([_tag(t) for t in spec.get("tags") or []]),
            category=_category(spec.get("category") or "feature"),
            success_criteria=[
                md.check_text(s, "success criterion", required=True, single_line=True, limit=1000)
                for s in spec.get("success_criteria") or []
            ],
            deliverables=[dict(d) for d in spec.get("deliverables") or []],
            risks=[dict(r) for r in spec.get("risks") or []],
            created_at=tx.now,
            updated_at=tx.now,
            workflow=_opt(spec.get("workflow"), "workflow"),
            template=dict(spec["template"]) if spec.get("template") else None,
            kiro=dict(spec["kiro"]) if spec.get("kiro") else None,
        )
        raw_tasks = list(spec.get("tasks") or [])
        for i, raw in enumerate(raw_tasks, 1):
            m.tasks.append(
                self._new_task(m, raw if isinstance(raw, Mapping) else {"title": raw}, f"task-{i}")
            )
        for t in m.tasks:
            t.depends_on = [self._dep_ref(tx, m, d, t.id) for d in t.depends_on]
        _check_done_on_arrival(tx, m)
        md.Milestone.from_dict(m.to_dict())  # full structural check before anything is written
        data: dict[str, Any] = {}
        if tx.current is None or tx.current not in tx.snaps:
            tx.current = mid
            data["current"] = mid
        tx.record("milestone_created", m, None, data=data, title=m.title)
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
            assignee=_opt(raw.get("assignee"), "assignee"),
            skills=_unique([_tag(s, "skill") for s in raw.get("skills") or []]),
            run=self._set_run(_opt(raw.get("run"), "run command", limit=5000)),
            paths=[
                md.check_text(p, "path", required=True, single_line=True, limit=500)
                for p in raw.get("paths") or []
            ],
            requirements=[md.check_text(str(r), "requirement id", required=True,
                                        single_line=True, limit=50)
                          for r in raw.get("requirements") or []],
            phase=_opt(raw.get("phase"), "phase", limit=100),
            spec_ref=_opt(raw.get("spec_ref"), "spec_ref", limit=50),
        )
        if status == "done":
            t.status, t.progress = "done", 100
            t.started_at = t.completed_at = self.clock()
        return t

    def _dep_ref(self, tx: Txn, m: md.Milestone, dep: str, tid: str) -> str:
        """Normalise a task dependency: same milestone -> task-N, else milestone-NNN/task-N."""
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
            ids = [t.id for t in m.tasks]
        else:
            if dmid not in tx.snaps:
                _milestone_dep(mpart, tx.snaps, f"{m.id}/{tid}")
            ids = [t["id"] for t in tx.snaps[dmid].get("tasks", [])]
        if dtid not in ids:
            raise DependencyError(
                f"{m.id}/{tid} depends on {dmid}/{dtid}, which does not exist",
                hint=f"tasks in {dmid}: {', '.join(ids) or 'none'}",
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
            m.owner = _opt(c["owner"], "owner")
        if c.get("category") is not None:
            m.category = _category(c["category"])
        if c.get("start") is not None:
            m.start_date = md.check_date(c["start"], "start date")
        if c.get("due") is not None:
            m.due_date = md.check_date(c["due"], "due date")
        md.check_window(m.start_date, m.due_date, m.id)
        if c.get("tags") is not None:
            m.tags = _unique([_tag(t) for t in c["tags"]])
        for t in c.get("add_tags") or ():
            m.tags = _unique([*m.tags, _tag(t)])
        for t in c.get("remove_tags") or ():
            m.tags = [x for x in m.tags if x != t]
        if c.get("assignees") is not None:
            m.assignees = _unique(
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
            m.depends_on = _unique(deps)
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
            t.depends_on = _unique([self._dep_ref(tx, m, d, t.id) for d in depends_on])
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
            who = _opt(assignee, "assignee")
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
                t.skills = _unique([_tag(s, "skill") for s in skills])
            if run is not None:
                t.run = self._set_run(_opt(run, "run command", limit=5000))
            if assignee is not None:
                t.assignee = _opt(assignee, "assignee")
            if paths is not None:
                t.paths = [
                    md.check_text(p, "path", required=True, single_line=True, limit=500)
                    for p in paths
                ]
            if depends_on is not None:
                t.depends_on = _unique([self._dep_ref(tx, m, d, t.id) for d in depends_on])
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

    # ------------------------------------------------------ notes, views

    # --------------------------------------------------------- templates

    def plan_from_template(self, name: str, *, title: str | None = None,
                           variables: Mapping[str, Any] | None = None,
                           start: str | None = None, **overrides: Any) -> md.Milestone:
        """A milestone from a built-in or user template, through the validated write."""
        from ..plans import templates

        template = templates.get_template(self.root, name)
        spec = templates.render(template, title=title, variables=variables,
                                start=start or self.today())
        spec.update({k: v for k, v in overrides.items() if v is not None})
        return self.plan_many([spec])[0]

    # ------------------------------------------------------------- kiro

    def role_of(self, actor: str | None = None) -> str | None:
        """The actor's team role; with no team configured everyone is an owner."""
        who = actor or self.actor
        members = [m for m in (self.config().get("team") or {}).get("members") or []
                   if isinstance(m, Mapping)]
        if not members:
            return "owner"
        for m in members:
            names = {str(m.get(k)) for k in ("name", "email", "id") if m.get(k)}
            if who in names | {str(a) for a in m.get("aliases") or []}:
                return str(m.get("role") or "contributor")
        return None

    def import_kiro(self, path: Path, *, title: str | None = None, policy: str | None = None,
                    enforcement: str | None = None, priority: str = "medium",
                    due: str | None = None) -> md.Milestone:
        """A milestone with ``workflow: kiro`` from a spec directory (or its tasks.md)."""
        from ..plans import kiro

        spec = kiro.read_spec(Path(path))
        tasks = kiro.tasks_to_specs(spec.tasks)
        for t in tasks:
            t.pop("optional", None)
        repo = self.root.parent.resolve()
        try:
            where = str(spec.directory.resolve().relative_to(repo))
        except ValueError:
            where = str(spec.directory.resolve())
        settings = md.kiro_settings(self.config().get("kiro"),
                                    {"policy": policy, "enforcement": enforcement})
        story = next((r.story for r in spec.requirements if r.story), None)
        self._trust_runs = False  # commands in an imported spec wait for a person's approval
        try:
            return self._import_kiro_plan(spec, tasks, title, priority, due, settings, story,
                                          where)
        finally:
            self._trust_runs = True

    def _import_kiro_plan(self, spec: Any, tasks: list[dict[str, Any]], title: str | None,
                          priority: str, due: str | None, settings: dict[str, Any],
                          story: str | None, where: str) -> md.Milestone:
        return self.plan_many([{
            "title": title or spec.name.replace("-", " ").replace("_", " ").capitalize(),
            "description": story or f"Kiro spec {spec.name}",
            "priority": priority, "due_date": due, "tasks": tasks, "workflow": "kiro",
            "tags": ["kiro"],
            "kiro": settings | {
                "spec": spec.name, "path": where, "tasks_source": spec.tasks_md, "reviews": [],
                # boxes ticked in Kiro before the import: not work started past a gate
                "imported_done": [f"task-{i}" for i, t in enumerate(tasks, 1)
                                  if t["status"] == "done"]},
        }])[0]

    def export_kiro(self, ref: str, dest: Path | None = None) -> str:
        """The milestone as a Kiro tasks.md (the imported text, with boxes brought up to
        date); with ``dest``, also written there (atomically)."""
        from ..plans import kiro

        m = self.milestone(ref)
        source = (m.kiro or {}).get("tasks_source") if m.workflow == "kiro" else None
        text = kiro.export_tasks_md(m.to_dict(), source)
        if dest is not None:
            from ..storage.yamlio import check_writable

            data = text.encode("utf-8")
            check_writable(len(data), str(dest))  # `import kiro` could not read it back
            fsutil.atomic_write(dest, data)
        return text

    def export_yaml(self, dest: Path | None = None) -> dict[str, Any]:
        """Write every milestone as the file backend would: ``DEST/active/milestone-NNN.yaml``
        (``DEST/completed/`` when archived), as the text it was last written as when that
        still says the same (comments kept), else a fresh ``dump_fast``: what a migration
        to the file backend writes. Default DEST: ``.milestones/export/``. Milestone files
        left in DEST by an earlier export that are no longer there are removed."""
        from ..storage import fsutil, yamlio
        from ..storage.file import FILE_RE, FileStore

        folder = (Path(dest) if dest is not None else self.root / "export").absolute()
        base = self.root.resolve()
        where = folder.resolve()
        for d in ("", "active", "completed", "config", "logs", "database"):
            inside = base / d if d else base
            if where == inside or (d and inside in where.parents):
                raise InvalidInput(f"{folder} is the project's own data ({DIRNAME}/{d})",
                                   hint=f"export elsewhere (default: {DIRNAME}/export/)")
        st = self.state()
        sources = self.store.sources()
        render = FileStore(folder)  # renders only: the file backend's rules for the text
        written: list[str] = []
        removed: list[str] = []
        files = []
        for mid, snap in sorted(st.milestones.items()):
            rel = f"{'completed' if snap.get('status') == 'archived' else 'active'}/{mid}.yaml"
            data = render.file_text(snap, sources.get(mid)).encode("utf-8")
            yamlio.check_writable(len(data), str(folder / rel))  # before any is written
            files.append((rel, data))
        try:
            for rel, data in files:
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                fsutil.atomic_write(folder / rel, data)
                written.append(rel)
            for sub in ("active", "completed"):
                if (folder / sub).is_dir():
                    for entry in sorted((folder / sub).iterdir()):
                        rel = f"{sub}/{entry.name}"
                        if FILE_RE.match(entry.name) and rel not in written:
                            entry.unlink()
                            removed.append(rel)
        except OSError as exc:
            raise fsutil.storage_error(exc, folder, "export to") from None
        return {"schema": SCHEMA, "path": str(folder), "backend": self.store.backend,
                "milestones": len(written), "files": written, "removed": removed}

    def reindex(self) -> int:
        """Rebuild the hybrid backend's index (``database/index.db``) from the snapshots,
        under the writer lock, hand edits recorded first; returns the milestones indexed."""
        self.follow_backend()
        store = self.store
        rebuild = getattr(store, "reindex", None)
        if store.backend != "hybrid" or rebuild is None:
            raise InvalidInput(
                f"only the hybrid backend has an index; this project uses the "
                f"{store.backend} backend",
                hint="nothing to rebuild: `milestone storage migrate --to hybrid` adds one"
                if store.backend == "file" else
                "nothing to rebuild: its tables are its data (`milestone doctor` checks them)",
            )
        if not store.exists():
            raise NotFound(f"no project at {self.root}", hint="run `milestone init` first")
        with store.lock():
            if self.follow_backend():
                raise InvalidInput(f"the project moved to the {self.store.backend} backend "
                                   f"meanwhile", hint="see `milestone storage status`")
            self.sync()
            return int(rebuild())

    def review(self, ref: str, phase: str, decision: str,
               comment: str | None = None) -> dict[str, Any]:
        """Record a gate decision on a Kiro milestone's phase; returns the gate's state."""
        md.check_choice(phase, md.KIRO_GATED, "phase")
        md.check_choice(decision, md.KIRO_DECISIONS, "decision")
        note = md.check_text(comment or "", "comment", limit=5000) or None
        with self.transaction() as tx:
            mid = refs.resolve_milestone(ref, tx.snaps)
            m = tx.milestone(mid)
            if m.workflow != "kiro" or m.kiro is None:
                raise InvalidInput(f"{mid} does not use the Kiro workflow",
                                   hint="import a spec with `milestone import kiro PATH`")
            kiro = dict(m.kiro)
            for earlier in md.KIRO_GATED[: md.KIRO_GATED.index(phase)]:
                if md.gate_state(kiro, earlier)["status"] != "approved":
                    raise InvalidTransition(f"cannot review {phase} of {mid}: the {earlier} "
                                            "gate is not approved yet",
                                            hint=f"review {earlier} first")
            role = self.role_of()
            gate = md.gate_state(kiro, phase)
            if role not in gate["required"]:
                from ..errors import PermissionDenied

                raise PermissionDenied(
                    f"{self.actor} ({role or 'not a team member'}) cannot review the {phase} "
                    f"gate of {mid}", hint=f"it needs: {', '.join(gate['required'])}")
            if decision == "approve" and gate["status"] == "approved":
                raise InvalidTransition(f"the {phase} gate of {mid} is already approved",
                                        hint="nothing to do")
            before = m.to_dict()
            kiro["reviews"] = [*(kiro.get("reviews") or []), {
                "phase": phase, "decision": decision, "actor": self.actor, "role": role,
                "comment": note, "timestamp": tx.now}]
            m.kiro = kiro
            tx.touch(m)
            after = md.gate_state(kiro, phase)
            tx.record("review_recorded", m, before, phase=phase, decision=decision, role=role,
                      comment=note, gate=after["status"])
            if after["status"] == "approved":
                opened = m.to_dict()
                tx.record("gate_opened", m, opened, phase=phase,
                          next_phase=md.kiro_phase(m))
            return after

    def pending_reviews(self) -> dict[str, Any]:
        """Gates that wait for the caller's role, phase by phase."""
        role = self.role_of()
        rows = []
        for mid, snap in sorted(self.state().milestones.items()):
            m = md.Milestone.from_snapshot(snap)
            if m.workflow != "kiro" or m.kiro is None or m.status in md.CLOSED_MILESTONE:
                continue
            phase = md.kiro_phase(m)
            if phase == "execute":
                continue
            gate = md.gate_state(m.kiro, phase)
            if role in gate["waiting_for"]:
                rows.append({"ref": mid, "title": m.title, "spec": m.kiro.get("spec")} | gate)
        return {"schema": SCHEMA, "role": role, "actor": self.actor, "pending": rows}

    def note(self, text: str) -> None:
        text = md.check_text(text, "note", required=True, limit=5000)
        with self.transaction() as tx:
            tx.record("note_added", None, None, mid=tx.current, data={"note": text})
            tx.note = text

    def status_view(self, ref: str | None = None, *, all_: bool = False) -> dict[str, Any]:
        with self._reading() as st:
            return dict(self._cached(st, f"view:status:{ref}:{all_}",
                                     lambda: self._status(st, ref, all_)))

    def _status(self, st: State, ref: str | None, all_: bool) -> dict[str, Any]:
        day = self.today()
        if ref is not None:
            chosen = [refs.resolve_milestone(ref, st.milestones)]
        elif all_ or st.current is None:
            chosen = [mid for mid, s in sorted(st.milestones.items())
                      if s["status"] != "archived"]
        else:
            chosen = [st.current]
        feas = self._feasibilities(st, chosen)
        only = chosen[0] if len(chosen) == 1 else None
        ready = self._next_rows(st, only=only)  # rows we show
        out = []
        for mid in chosen:
            s = summary(md.Milestone.from_snapshot(st.milestones[mid]), day, feas.get(mid))
            s["next"] = [r for r in ready if r["milestone_id"] == mid][:3]
            out.append(s)
        return {
            "schema": SCHEMA,
            "current": st.current,
            "today": day,
            "milestones": out,
            # every milestone, archived ones too (by_status says how many of them)
            "totals": {**self._totals(st), "includes_archived": True},
        }

    def _totals(self, st: State) -> dict[str, Any]:
        counted = self.store.totals() if is_lazy(st.milestones) else None
        if counted is None:
            return totals([md.Milestone.from_snapshot(s) for s in st.milestones.values()])
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
    ) -> dict[str, Any]:
        from ..storage.base import MilestoneQuery

        with self._reading() as st:
            day = self.today()
            q = MilestoneQuery(
                statuses=tuple(status), tags=tuple(tags), owner=owner,
                priorities=tuple(priority), overdue_before=day if overdue else None,
                include_archived=all_)
            key = "view:list:" + ev.canonical(list(q))
            return dict(self._cached(st, key, lambda: self._list(st, q)))

    def _list(self, st: State, q: Any) -> dict[str, Any]:
        day = self.today()
        status, tags, owner, priority = q.statuses, q.tags, q.owner, q.priorities
        overdue, all_ = q.overdue_before is not None, q.include_archived
        # An indexed store answers the filters in SQL; the loop below re-checks them,
        # so both paths give the same rows.
        indexed = self.store.query_milestones(q)
        snaps: Mapping[str, Any] = (
            {s["id"]: s for s in indexed} if indexed is not None else st.milestones)
        candidates = sorted(snaps)
        rows = []
        for mid in candidates:
            m = md.Milestone.from_snapshot(snaps[mid])
            if not all_ and not status and m.status == "archived":
                continue
            if status and m.status not in status:
                continue
            if tags and not set(tags) & set(m.tags):
                continue
            if owner and m.owner != owner:
                continue
            if priority and m.priority not in priority:
                continue
            if overdue and not (
                m.due_date
                and m.due_date < day
                and m.status not in ("completed", "archived", "cancelled")
            ):
                continue
            rows.append(m)
        feas = self._feasibilities(st, [m.id for m in rows])
        return {"schema": SCHEMA, "current": st.current, "today": day,
                "milestones": [summary(m, day, feas.get(m.id)) for m in rows]}

    def show_view(self, ref: str) -> dict[str, Any]:
        with self._reading() as st:
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

    def _upstream(self, st: State, mids: Sequence[str]) -> Mapping[str, Any]:
        """``mids`` and every milestone their tasks depend on, directly or not: all a
        schedule of ``mids`` reads (the whole plan when it is in memory anyway)."""
        milestones = st.milestones
        if not is_lazy(milestones):
            return milestones
        found: dict[str, Any] = {}
        frontier = [m for m in mids if m in milestones]
        while frontier:
            prefetch = getattr(milestones, "prefetch", None)
            if prefetch is not None:
                prefetch(frontier)
            nxt: set[str] = set()
            for mid in frontier:
                if mid in found or mid not in milestones:
                    continue
                snap = found[mid] = milestones[mid]
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

    def _feasibilities(self, st: State, mids: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        """The feasibility projection of open milestones (at least those of ``mids``),
        from the schedule of everything they depend on.

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
        everything = getattr(milestones, "everything", None)
        if everything is not None:
            milestones = everything()
        crit = self._critical_hours(milestones)
        result = {} if crit is None else self._feasibility_of(milestones, crit, milestones)
        self.store.cache_put("feasibility", head, result)
        self.store.cache_put("acyclic", self._head_key(st, dated=False), crit is not None)
        return result

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
        try:
            before, since_hash = since.split(":", 1)
            after = int(before)
        except ValueError:
            return False
        if not 0 <= st.last_event_id - after <= 100:
            return False
        events = self.store.events(after=after)
        try:
            tail = [e for _, e in zip(range(st.last_event_id - after), events, strict=False)]
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        return (bool(tail) and len(tail) == st.last_event_id - after
                and tail[0]["prev_hash"] == since_hash and tail[-1]["hash"] == st.last_hash
                and all(e["event_type"] in _EDGE_KEEPING for e in tail))

    def _critical_hours(self, milestones: Mapping[str, Any]) -> dict[str, float] | None:
        """Per milestone, hours until its last task can finish (None on a cycle)."""
        from ..model import schedule

        try:
            return schedule.project_critical_hours(milestones)  # the forward pass is enough
        except DependencyError:
            return None

    def _feasibility_of(self, milestones: Mapping[str, Any], crit: Mapping[str, float],
                        mids: Any) -> dict[str, dict[str, Any]]:
        from ..model import schedule

        hours = schedule.team_weekly_hours(self.config())  # not the rules' engine: reads skip it
        day = self.today()
        out = {}
        for mid in mids:
            m = milestones[mid]
            if m.get("status") in ("planned", "in_progress", "blocked"):
                out[mid] = schedule.feasibility(m, crit.get(mid, 0.0), day, hours)
        return out

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
                        self.store.load()
                        known = entries()
                        entry = known.get(mid)
                    try:
                        blob = fsutil.read_bytes(self.root / rel, yamlio.MAX_FILE_BYTES)
                        text = yamlio.decode(blob, shown)
                        if entry is not None and wrote(entry, rel, stat):
                            data = yamlio.prune(entry["state"])
                        else:
                            data = yamlio.load_text(text, shown)
                    except MilestoneError as exc:
                        raw[shown] = ("", None, str(exc))
                        continue
                    raw[shown] = (text, data, None)
                    sources[mid] = engine.Source(shown, text)
                    with contextlib.suppress(MilestoneError):  # what is on disk counts
                        # window=False: a due date before the start is MS301's to report
                        milestones[mid] = md.Milestone.from_dict(data, window=False).to_dict()
        ctx = engine.Context(milestones, self.today(), self.config(), root=self.root,
                             sources=sources, raw=raw, store=self.store, scope=scope,
                             severities=frozenset(severities) if severities else None)
        findings = engine.run(ctx, types)
        count = {sev: sum(1 for f in findings if f.severity == sev)
                 for sev in engine.SEVERITIES}
        return {"schema": SCHEMA, "types": list(types), "ok": count["error"] == 0,
                "counts": count, "findings": [f.to_dict() for f in findings]}

    def next_view(self, ref: str | None = None, *, limit: int | None = None) -> dict[str, Any]:
        with self._reading() as st:
            only = refs.resolve_milestone(ref, st.milestones) if ref is not None else None
            if only is None and is_lazy(st.milestones):
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

    def _next_rows(self, st: State, *, only: str | None = None,
                   limit: int | None = None) -> list[dict[str, Any]]:
        """``next_tasks`` of the plan; for one milestone on an indexed store, from that
        milestone, what it waits on and everything that waits on it (the chains)."""
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
        ms = {mid: md.Milestone.from_snapshot(s) for mid, s in milestones.items()}
        return next_tasks(ms, only=only, limit=limit)

    def log_view(
        self,
        *,
        milestone: str | None = None,
        types: Sequence[str] = (),
        actor: str | None = None,
        since: str | None = None,
        limit: int | None = None,
        after: int = 0,
    ) -> dict[str, Any]:
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

        st = self.state()  # a log that does not verify is told here (one warning)
        if getattr(self.store, "damage", None):
            # Only the events that verify are history: up to the last applied one,
            # never past the line that does not verify (the warning names it).
            rows = []
            try:
                for e in self.store.events(after=after):
                    if int(e.get("event_id") or 0) > st.last_event_id:
                        break
                    if keep(e):
                        rows.append(e)
            except MilestoneError:
                pass  # the damaged line itself: the warning said where
            if limit is not None:
                rows = rows[-limit:] if limit > 0 else []
            return {"schema": SCHEMA, "events": rows}
        tail = getattr(self.store, "events_tail", None)  # rotated logs: newest files only
        if limit is not None and tail is not None:
            rows = tail(limit, keep, after)
        else:
            rows = [e for e in self.store.events(after=after) if keep(e)]
            if limit is not None:
                rows = rows[-limit:] if limit > 0 else []
        return {"schema": SCHEMA, "events": rows}

    def resume_view(self) -> dict[str, Any]:
        with self._reading() as st:
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


def _opt(value: Any, what: str, limit: int = 200) -> str | None:
    if value is None:
        return None
    text = md.check_text(str(value), what, single_line=True, limit=limit)
    return text or None


def _tag(value: Any, what: str = "tag") -> str:
    return md.check_text(str(value), what, required=True, single_line=True, limit=100)


def _category(value: Any) -> str:
    return md.check_text(str(value), "category", required=True, single_line=True, limit=50)


def _milestone_dep(ref: str, snaps: Mapping[str, Any], who: str) -> str:
    """Resolve a milestone dependency; an unknown one is a missing dependency (exit 5)."""
    try:
        return refs.resolve_milestone(ref, snaps)
    except NotFound as exc:
        raise DependencyError(f"{who} depends on {exc.message}", hint=exc.hint) from None


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


# What a task command derives and a person may leave out of a hand edit.
_HAND_KEYS = ("status", "progress", "started_at", "completed_at", "timer_started_at",
              "time_spent", "blockers")


def _check_hand_edit(e: Any) -> None:
    """Refuse a hand edit no command could make (so nothing is recorded, nothing lost:
    the file stays as the person left it, and commands stop until it is fixed)."""
    old = {t["id"]: t for t in (e.before or {}).get("tasks", [])}
    for t in e.after.get("tasks", []):
        prev = old.get(t["id"])
        if t["status"] == "blocked" and not t.get("blockers") \
                and (prev is None or prev.get("status") != "blocked"):
            raise InvalidInput(
                f"{DIRNAME}/{e.path}: {t['id']} is set blocked by hand but gives no reason",
                hint=f"add `blockers: [the reason]` to {t['id']} (as `task block REF "
                     f"REASON` does), or set another status")


def _hand_step(t: md.Task, prev: Mapping[str, Any] | None, now: str, ref: str,
               unmet: list[str]) -> tuple[str, int] | None:
    """Give ``t``, as a person left it (``prev``: as it was), what the task command its
    change mirrors would derive; returns (event type, seconds added) or None.

    The command's own transition (``model``) runs on the task as it was, then each
    derived field the person did not set takes the command's value. Unmet
    dependencies are passed as forced (the caller records and reports them)."""
    base = dict(prev) if prev is not None else md.Task(id=t.id, title=t.title).to_dict()
    trial = md.Task.from_dict(base)
    was, want = trial.status, t.status
    spent = 0
    try:
        if want == was:
            if want in md.FINISHED_TASK or t.progress == trial.progress:
                return None
            md.set_progress(trial, now, ref, t.progress)
            kind = "task_progress"
        elif want == "done":
            if was in md.FINISHED_TASK:
                md.reopen_task(trial, ref)
            spent, kind = md.complete_task(trial, now, ref, unmet, True), "task_completed"
        elif want == "skipped":
            if was in md.FINISHED_TASK:
                md.reopen_task(trial, ref)
            spent, kind = md.skip_task(trial, now, ref), "task_skipped"
        elif want == "in_progress":
            if was in md.FINISHED_TASK:
                md.reopen_task(trial, ref)
            md.start_task(trial, now, ref, unmet, True)
            kind = "task_started"
        elif want == "blocked":
            spent = md.block_task(trial, now, ref, (t.blockers or ["blocked"])[0])
            kind = "task_blocked"
        elif was in md.FINISHED_TASK:  # todo
            md.reopen_task(trial, ref)
            kind = "task_reopened"
        else:  # in_progress or blocked -> todo: the timer stops
            spent = md.stop_task(trial, now, ref) if trial.timer_started_at else 0
            trial.status, trial.blockers = "todo", []
            kind = "task_stopped"
    except MilestoneError:
        return None  # a change no transition makes: the person's values stand
    for key in _HAND_KEYS:
        if getattr(t, key) == base.get(key):  # not set by the person: derived
            setattr(t, key, getattr(trial, key))
    return kind, spent


def summarize_edit(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    if before is None:
        return f"file added: {after.get('title') if after else ''}"
    if after is None:
        return "file removed"
    parts = [f"{k} changed" for k in after if k != "tasks" and before.get(k) != after.get(k)]
    old = {t["id"]: t for t in before.get("tasks", [])}
    new = {t["id"]: t for t in after.get("tasks", [])}
    parts += [f"{tid} added" for tid in new if tid not in old]
    parts += [f"{tid} removed" for tid in old if tid not in new]
    for tid, t in new.items():
        if tid in old and old[tid] != t:
            fields = [k for k in t if old[tid].get(k) != t.get(k)]
            if "status" in fields:
                parts.append(f"{tid} status {old[tid].get('status')} → {t.get('status')}")
                fields.remove("status")
            if fields:
                parts.append(f"{tid} {', '.join(fields)} changed")
    return "; ".join(parts) or "reformatted"


def summary(m: md.Milestone, day: str, feasibility: Mapping[str, Any] | None = None
            ) -> dict[str, Any]:
    c = md.counts(m)
    estimate = sum(t.estimate or 0 for t in m.tasks)
    return {
        "id": m.id,
        "title": m.title,
        "status": m.status,
        "priority": m.priority,
        "owner": m.owner,
        "category": m.category,
        "tags": list(m.tags),
        "start_date": m.start_date,
        "due_date": m.due_date,
        "depends_on": list(m.depends_on),
        "progress": md.milestone_progress(m),
        "health": md.health(
            m, day, feasibility["at_risk"] if feasibility and m.due_date else None),
        "projected_finish": feasibility["projected_finish"] if feasibility else None,
        "overdue": bool(m.due_date and m.due_date < day and m.status not in md.CLOSED_MILESTONE),
        "counts": c,
        "estimate_hours": estimate,
        "time_spent": sum(t.time_spent for t in m.tasks),
        "in_progress": [f"{m.id}/{t.id}" for t in m.tasks if t.status == "in_progress"],
        "blocked": [
            {"ref": f"{m.id}/{t.id}", "title": t.title, "blockers": t.blockers}
            for t in m.tasks
            if t.status == "blocked"
        ],
        "completed_at": m.completed_at,
    }


def active_rows(tasks: Iterable[tuple[str, md.Task]]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The session-resume record's ``in_progress`` and ``blockers`` rows."""
    in_progress, blocked = [], []
    for mid, t in tasks:
        if t.status == "in_progress":
            in_progress.append(
                {
                    "ref": f"{mid}/{t.id}",
                    "title": t.title,
                    "assignee": t.assignee,
                    "started_at": t.started_at,
                    "timer_running": bool(t.timer_started_at),
                    "progress": t.progress,
                }
            )
        elif t.status == "blocked":
            blocked.append({"ref": f"{mid}/{t.id}", "title": t.title, "blockers": t.blockers})
    return in_progress, blocked


def totals(ms: list[md.Milestone]) -> dict[str, Any]:
    by_status = {s: 0 for s in md.MILESTONE_STATUSES}
    tasks = {s: 0 for s in md.TASK_STATUSES}
    for m in ms:
        by_status[m.status] += 1
        for t in m.tasks:
            tasks[t.status] += 1
    return {"milestones": len(ms), "by_status": by_status, "tasks": tasks}


def task_graph(ms: Mapping[str, md.Milestone]) -> dict[str, list[str]]:
    edges: dict[str, list[str]] = {}
    for mid, m in ms.items():
        for t in m.tasks:
            edges[f"{mid}/{t.id}"] = [full_ref(mid, d) for d in t.depends_on]
    return edges


def next_tasks(
    ms: Mapping[str, md.Milestone], *, only: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Tasks that can start now, best first: priority, then longest chain waiting on them."""
    status: dict[str, str] = {}
    for mid, m in ms.items():
        status[mid] = "done" if m.status in ("completed", "archived") else m.status
        for t in m.tasks:
            status[f"{mid}/{t.id}"] = t.status
    open_nodes = {ref for ref, s in status.items() if "/" in ref and s not in md.FINISHED_TASK}
    chain = md.dependents_chain(task_graph(ms), open_nodes)
    rows: list[dict[str, Any]] = []
    for mid, m in ms.items():
        if m.closed or (only and mid != only):
            continue
        if any(status.get(d) != "done" for d in m.depends_on):
            continue
        for t in m.tasks:
            if t.status != "todo":
                continue
            if any(status.get(full_ref(mid, d)) not in md.FINISHED_TASK for d in t.depends_on):
                continue
            ref = f"{mid}/{t.id}"
            rows.append(
                {
                    "ref": ref,
                    "milestone_id": mid,
                    "task_id": t.id,
                    "title": t.title,
                    "priority": m.priority,
                    "chain": chain.get(ref, 1),
                    "estimate": t.estimate,
                    "skills": list(t.skills),
                    "assignee": t.assignee,
                    "milestone_title": m.title,
                }
            )
    rows.sort(
        key=lambda r: (
            md.priority_rank(r["priority"]),
            -r["chain"],
            r["milestone_id"],
            md.task_number(r["task_id"]),
        )
    )
    return rows[:limit] if limit is not None else rows


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


# ----------------------------------------------------------- the doors' API
# A door (cli/, later web/ and mcp/) imports the service layer, ui and errors only
# (the "doors" contract in pyproject.toml). What else a door needs from below, the
# vocabulary of choices and the readers of outside documents, it gets here: the
# constants now (model is loaded with the project anyway), the readers on first use,
# so a command that needs none of them pays nothing for them at start-up.
from ..model import (  # noqa: E402
    CATEGORIES,
    KIRO_GATED,
    MILESTONE_STATUSES,
    PRIORITIES,
    Task,
    add_days,
    utc_stamp,
)
from ..model.events import EVENT_TYPES  # noqa: E402
from ..model.refs import parse_milestone  # noqa: E402

_ON_FIRST_USE = {  # name -> the module that defines it
    "milestone_schema": "..model.schema",
    "all_rules": "..validation",
    "read_plan": "..plans.planfile",
    "detect_project": "..plans.detect",
    "list_templates": "..plans.templates",
    "get_template": "..plans.templates",
    "load_config": "..storage.config",
}

if TYPE_CHECKING:
    from ..model.schema import milestone_schema
    from ..plans.detect import detect_project
    from ..plans.planfile import read_plan
    from ..plans.templates import get_template, list_templates
    from ..storage.config import load_config
    from ..validation import all_rules


def __getattr__(name: str) -> Any:
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "CATEGORIES",
    "EVENT_TYPES",
    "KIRO_GATED",
    "MILESTONE_STATUSES",
    "PRIORITIES",
    "Project",
    "Task",
    "ValidationFailed",
    "add_days",
    "all_rules",
    "detect_project",
    "find_root",
    "get_template",
    "list_templates",
    "load_config",
    "milestone_schema",
    "parse_milestone",
    "read_plan",
    "utc_stamp",
]

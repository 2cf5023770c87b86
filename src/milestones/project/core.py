"""The service layer's base: opening a project, its store, the state and its caches.

``ProjectCore`` holds what every family of operations needs (see ``milestones.project``).
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from .. import model as md
from ..errors import (
    NotFound,
)
from ..model import events as ev
from ..model import refs
from ..storage import State, Store, fsutil, open_store
from ..storage.base import is_lazy
from .constants import DIRNAME
from .handedits import HAND_KEYS, check_hand_edit, hand_step, summarize_edit
from .session import resolve_actor, resolve_session, today, utc_now
from .txn import Txn


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


def recover_swap(root: Path) -> None:
    """Finish (or undo) a restore or an ``encrypt`` swap that was killed, before a read
    sees half of it; when the lock is busy, the one holding it is doing so already."""
    from ..storage.archive import LOCK_NAME
    from ..storage.swap import recover_locked

    with fsutil.try_writer_lock(root / LOCK_NAME) as got:
        if got:
            recover_locked(root)


class ProjectCore:
    """The unit of work's base: opening a project, its store and backend, the
    state and its caches, hand edits found on reading, the configuration."""

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
        self._marker_seen: tuple[int, int, int] | None = None  # follow_backend's last look
        self._warned = False  # the event log's damage was told (once per command)
        self._ops: list[tuple[str, str]] = []  # the operations declared (acting), outermost first
        self._crypt: Any = False  # encryption at rest (crypto.Crypt), None: off; False: not read

    # ---------------------------------------------------------- opening

    @classmethod
    def open(cls, start: Path | None = None, **kw: Any) -> Self:
        root = find_root(start)
        # A backup killed mid-way left its staging copy: remove it (one listdir).
        fsutil.remove_dead_temps(root, fsutil.BACKUP_STAGE_RE)
        if os.path.lexists(root / ".restore"):  # a swap (restore, encrypt) was cut short
            recover_swap(root)
        return cls(open_store(root), cwd=start, **kw)

    @property
    def actor(self) -> str:
        if self._actor is None:
            self._actor = resolve_actor(self.cwd)
        return self._actor

    def another(self) -> Self:
        """A Project of the same root, actor and session over a store of its own: for
        another thread, since a store object is not shared across threads."""
        return type(self)(open_store(self.root), cwd=self.cwd, actor=self.actor,
                       session_id=self.session_id)

    @property
    def session_id(self) -> str:
        if self._session is None:
            self._session = resolve_session(self.actor, self.store.read_resume(), self.clock())
        return self._session

    # ------------------------------------------------------------ reads

    def follow_backend(self) -> bool:
        """Re-open the store when a migration switched the backend; True if it did."""
        path = self.root / "config" / "storage-backend.txt"
        try:
            seen = os.stat(path)
            # The marker is replaced whole (a new inode) when a migration switches: the
            # same file as last time names the same backend, no need to read it again.
            key = (seen.st_ino, seen.st_mtime_ns, seen.st_size)
            if key == self._marker_seen:
                return False
            marker = path.read_text("utf-8").strip()
        except (FileNotFoundError, NotADirectoryError):
            return False
        if marker and marker != self.store.backend and self.store.backend != "memory":
            self.store = open_store(self.root)  # the old one closes when its lock is let go
            self._marker_seen = None
            return True
        self._marker_seen = key
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
                st = st.replace(milestones=everything())
                self._l1 = (store, head, st)
        else:
            self._l1_misses += 1
            st = store.load()
            key = (st.last_event_id, st.last_hash)
            # Keyed by the loaded state's own head: a write landing between head() and
            # load() makes the next read miss, never hit on an older state.
            self._l1 = (store, key, st) if head is not None and not st.stale else None
        return st.replace(milestones=dict(st.milestones))

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
    def reading(self) -> Iterator[State]:
        """The state for one read view, from one consistent snapshot of the store."""
        self.follow_backend()
        with self.store.reading():
            yield self.view()

    def _cached(self, st: State, key: str, compute: Any, *, dated: bool = True,
                since: Any = None) -> Any:
        """A view's result from the store's query cache, keyed by the log head (and the
        day and the team's capacity, which feasibility reads), else ``compute()``.
        ``since(head, value)``: the result made from the entry kept at an earlier head
        (the few rows a write changed made again), or None to ``compute()`` it all."""
        head = self._head_key(st, dated=dated)
        if not is_lazy(st.milestones):
            return compute()  # everything is in memory already: nothing to save
        hit = self.store.cache_get(key, head)
        if hit is not None:
            return hit
        value = None
        if since is not None:
            old = self.store.cache_peek(key)
            if old is not None:
                value = since(*old)
        if value is None:
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
        reseal: list[str] = []  # files holding plain text typed into a protected field
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
            crypt = self.crypt()
            if crypt is not None and e.after is not None and crypt.cipher() is not None:
                typed = e.after
                e.after = crypt.seal_snapshot(typed, e.milestone_id)  # typed in plain text
                if e.after is not typed:
                    reseal.append(e.milestone_id)
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
                    os_user=e.extra.get("os_user"),
                )
            )
            adopt.append(e.milestone_id)
            if e.after is not None:
                self._warn_unknown_keys(e.before, e.after, e.path)
        edited = [e for e in edits if not e.current and e.after is not None]
        for e in edited:
            check_hand_edit(e)  # before anything is recorded: refuse what no command makes
        sealed = self.store.commit(events, adopt=adopt)
        if reseal:  # the file is written again from its sealed snapshot
            sealed += self.store.commit([ev.make_event(
                "milestone_updated", mid, timestamp=now, actor=self.actor,
                session_id=self.session_id, summary="protected fields typed by hand sealed",
                data={"set": {"title": e.after["title"]}})
                for mid, e in ((x.milestone_id, x) for x in edits) if mid in reseal
                and e.after is not None])
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
                if prev is not None and all(prev.get(f) == getattr(t, f) for f in HAND_KEYS):
                    continue
                moved = True
                ref = f"{m.id}/{t.id}"
                unmet = tx.unmet(m, t) if t.status in ("done", "in_progress") else []
                before = m.to_dict()
                step = hand_step(t, prev, tx.now, ref, unmet)
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

    def crypt(self) -> Any:
        """The project's encryption at rest (``crypto.Crypt``), None when it has none:
        one ``lstat`` of ``config/encryption.json``; nothing is imported without it."""
        if self._crypt is False:
            self._crypt = None
            if os.path.lexists(self.root / "config" / "encryption.json"):
                from .crypto import Crypt

                self._crypt = Crypt.open(self.root, self.config())
        return self._crypt

    def reveal(self, data: Any) -> Any:
        """Plain data on its way out to a door, protected values opened: their text with
        the key, ``[encrypted]`` without it (``crypto.Crypt.reveal``)."""
        crypt = self.crypt()
        return data if crypt is None else crypt.reveal(data)

    def config(self) -> dict[str, Any]:
        """The project's configuration (the defaults when the file is the default one)."""
        if self._config is None:
            from ..storage.config import load_config

            self._config = load_config(self.root)
        return self._config

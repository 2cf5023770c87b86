"""The unit of work: one write under the lock, validated, committed, its resume record
refreshed, a scheduled backup after it.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from ..errors import (
    Conflict,
    DependencyError,
    NotFound,
    StorageError,
    ValidationFailed,
)
from ..model import parse_utc_stamp
from ..storage import fsutil, open_store
from ..storage.base import is_lazy
from .constants import DIRNAME, SCHEMA
from .core import ProjectCore
from .session import git_position
from .txn import Txn


class UnitOfWork(ProjectCore):
    """Writes as one unit (``transaction``)."""

    @classmethod
    def init(cls, directory: Path, *, backend: str | None = None,
             **kw: Any) -> tuple[Self, bool]:
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

    # ----------------------------------------------------------- writes

    @contextlib.contextmanager
    def transaction(self, *, scheduled_backup: bool = True, late: bool = False
                    ) -> Iterator[Txn]:
        """One write, as a unit: the writer lock, hand edits recorded, the changes and
        their events appended, validated and committed on exit (rolled back on error).
        ``late``: on a store whose writer lock can be taken late (postgres), it is taken
        by ``writer_lock`` or the commit, not here: what the write reads before it may be
        a moment old (an agent's claim picks its row first, ``Store.pick_ready``)."""
        if (self.root / ".restore").exists():  # a restore was interrupted: finish it first
            from ..storage.restore import recover_restore

            recover_restore(self.root)
        self.follow_backend()
        store = self.store
        if not store.exists():
            raise NotFound(f"no project at {self.root}", hint="run `milestone init` first")
        while True:
            held = contextlib.ExitStack()
            held.enter_context(store.lock_late() if late else store.lock())
            if not self.follow_backend():
                break
            # A migration switched backends while we waited for the lock: let it go
            # and write to the new backend, under its lock (checked again there).
            held.close()
            store = self.store
        with held:
            self._warned = True  # a refused write says so once, as its error
            crypt = self.crypt()
            if crypt is not None:
                crypt.cipher()  # a wrong key: refused before anything is written
            self.sync()
            damage = getattr(store, "damage", None)
            if damage:
                raise StorageError(f"{damage}; writes are refused until the event log is "
                                   "repaired",
                                   hint="restore a backup, or run `milestone doctor --repair`")
            tx = Txn(self, store.view())
            self._new_runs = []
            yield tx
            if tx.events or tx.flushed:
                sealed = list(tx.flushed)  # (Txn.flush: written already)
                if tx.events:
                    self.check_write(tx)
                    if tx.check:
                        self._check_write(tx)
                    try:
                        sealed += store.commit(tx.events)
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
        if (tx.events or tx.flushed) and scheduled_backup and store.backend == "database":
            self._scheduled_backup()  # after the lock: the backup takes it itself

    # ----------------------------------------------------------- access (access.py)

    @contextlib.contextmanager
    def acting(self, operation: str, needs: str, *, target: str | None = None,
               identity: str | None = None) -> Iterator[None]:
        """Declare the operation the writes inside belong to (``needs``: its class,
        read, create, update, delete or admin): checked now by the best role the
        identity has, then per milestone touched when the write commits. Inside
        another declared operation it adds nothing: the outer one stands."""
        if self._ops:
            yield
            return
        self.require(needs, operation=operation, target=target, identity=identity, best=True)
        self._ops.append((operation, needs))
        try:
            yield
        finally:
            self._ops.pop()

    def require(self, needs: str, *, operation: str, target: str | None = None,
                identity: str | None = None, best: bool = False) -> None:
        """Refuse (``PermissionDenied``, exit 6, an ``access_denied`` record) unless
        ``identity`` (default: the actor) may do ``needs`` (on milestone ``target``):
        what the ops (migrate, restore, ``doctor --repair``, key rotation) call."""
        from . import access

        if needs == "read":
            return
        team = access.team_of(self.config())
        if not team.enforced:
            return
        mids = [target] if target and target.startswith("milestone-") else []
        access.check(self.root, team, identity or self.actor, needs, operation, mids,
                     best=best and not mids, ref=target)

    def access_role(self, identity: str | None = None, milestone: str | None = None) -> str:
        """The role ``identity`` (default: the actor) has (on ``milestone``)."""
        from . import access

        team = access.team_of(self.config())
        if not team.enforced:
            return "owner"
        return team.role(identity or self.actor, milestone)[0]

    def require_no_higher(self, identity: str, *, operation: str) -> None:
        """Refuse acting as ``identity`` when its role is above the actor's (an agent
        registered to work as someone else)."""
        from . import access

        team = access.team_of(self.config())
        if not team.enforced:
            return
        mine, known = team.role(self.actor)
        theirs = team.best(identity)
        if access.ROLES.index(theirs) > access.ROLES.index(mine):
            raise access.denied(self.root, self.actor, mine, known, "admin", operation,
                                identity)

    def check_write(self, tx: Txn) -> None:
        """The backstop before a write commits: its declared operation (none: it needs
        admin) against the role of its identity on every milestone it touches."""
        from . import access

        operation, needs = self._ops[0] if self._ops else ("transaction", "admin")
        team = access.team_of(self.config())
        if not team.enforced:
            return
        touched = {e["milestone_id"] for e in tx.events if e.get("milestone_id")}
        access.check(self.root, team, tx.identity or self.actor, needs, operation, touched)

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
        from ..storage import backup_due

        try:
            fsutil.fault("backup")
            if backup_due.due(self.root, began=self._began):  # else nothing to import
                from ..storage.backup import scheduled_backup

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
            return parse_utc_stamp(stamp)
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
        crypt = self.crypt()
        if crypt is not None:
            note = crypt.seal_note(note)  # the record is a file too
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

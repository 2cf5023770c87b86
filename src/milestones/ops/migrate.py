"""Moving a project between storage backends, with no downtime and rollback on failure.

Steps, each logged: take the writer lock → back up → copy → verify (milestone
and task counts, a SHA-256 per milestone over its canonical JSON, the event
count and the chain head) → switch (``config/storage-backend.txt`` replaced in
one rename) → log to ``performance/migration-log.jsonl`` → release the lock.
Anything that fails before the switch removes the half-made copy, leaves the
old backend as it was and in use, and logs the rollback.

Readers keep reading the old backend until the switch and the new one after it;
writers wait on the lock, then see the new backend named in the marker and
write there (``Project`` re-opens its store when the marker changes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

from ..agents.coord import RECORDS
from ..errors import InvalidInput, MilestoneError, StorageError
from ..model import events as ev
from ..storage import BACKENDS, State, Store, fsutil, open_store

STEPS = ("lock", "backup", "copy", "verify", "switch", "log")
MIGRATION_LOCK_TIMEOUT = 120.0
BATCH = 1000  # milestones a batch of the copy (events: ten times as many)

# progress(what, done, total): "events" or "milestones" copied so far, of how many.
Progress = Callable[[str, int, int], None]


def store_for(root: Path, backend: str) -> Store:
    """A store object for ``backend`` at ``root``, whatever the marker says."""
    from ..storage import store_for as make

    store = make(root, backend)
    if store is None:
        raise InvalidInput(f"unknown backend {backend!r}",
                           hint=f"use one of: {', '.join(BACKENDS)}")
    return store


def shares_files(a: str, b: str) -> bool:
    """file and hybrid read the same YAML files and log (hybrid adds an index)."""
    return {a, b} == {"file", "hybrid"}


def _discard(store: Store, *, shared: bool) -> None:
    """Remove what a migration made for ``store``; never files another backend reads."""
    if shared:
        index = getattr(store, "index", None)
        if index is not None:
            index.discard()
        return
    discard = getattr(store, "discard", None)
    if discard is not None:
        discard()


def checksums(state: State) -> dict[str, str]:
    """A SHA-256 per milestone over its canonical JSON."""
    return {mid: hashlib.sha256(ev.canonical(snap).encode("utf-8")).hexdigest()
            for mid, snap in sorted(state.milestones.items())}


class Tally:
    """What a copy (or a verification) read, batch by batch: the counts, a SHA-256 per
    milestone over its canonical JSON, and the last event. Holds no snapshot."""

    def __init__(self, progress: Progress | None = None, totals: tuple[int, int] = (0, 0)
                 ) -> None:
        self.milestones = self.tasks = self.events = 0
        self.sums: dict[str, str] = {}
        self.progress = progress
        self.totals = {"events": totals[0], "milestones": totals[1]}

    def _advance(self, what: str, done: int) -> None:
        if self.progress is not None:
            self.progress(what, done, self.totals[what])

    def snapshot_batches(self, batches: Iterable[Sequence[dict[str, Any]]]
                         ) -> Iterator[Sequence[dict[str, Any]]]:
        for batch in batches:
            for snap in batch:
                self.sums[snap["id"]] = hashlib.sha256(
                    ev.canonical(snap).encode("utf-8")).hexdigest()
                self.tasks += len(snap.get("tasks", []))
            self.milestones += len(batch)
            self._advance("milestones", self.milestones)
            yield batch

    def event_batches(self, events: Iterable[dict[str, Any]], size: int
                      ) -> Iterator[list[dict[str, Any]]]:
        it = iter(events)
        while batch := list(islice(it, size)):
            self.events += len(batch)
            self._advance("events", self.events)
            yield batch

    def counted(self, events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for e in events:
            self.events += 1
            yield e

    def read(self, store: Store, batch: int) -> None:
        """Go through every snapshot and event of ``store`` (a dry run, a shared copy)."""
        for _ in self.snapshot_batches(store.snapshot_batches(batch)):
            pass
        for _ in self.counted(store.events()):
            pass

    def summary(self, head: State) -> dict[str, Any]:
        return {
            "milestones": self.milestones,
            "tasks": self.tasks,
            "events": self.events,
            "head": {"event_id": head.last_event_id, "hash": head.last_hash},
            "current": head.current,
        }


class SourceTexts(Mapping[str, str]):
    """A store's ``sources()``, each text read when asked (not all of them at once)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __getitem__(self, mid: str) -> str:
        return self.store.source_texts([mid])[mid]

    def __iter__(self) -> Iterator[str]:
        return iter(self.store.sources())

    def __len__(self) -> int:
        return len(self.store.sources())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _log(root: Path, record: dict[str, Any]) -> None:
    path = root / "performance" / "migration-log.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.append_durable(path, (json.dumps(record, ensure_ascii=False) + "\n").encode())


def read_marker(root: Path, default: str = "file") -> str:
    """The backend ``config/storage-backend.txt`` names (``default`` if it names none)."""
    from ..storage import read_backend

    return read_backend(root) or default


def write_marker(root: Path, backend: str) -> None:
    fsutil.atomic_write(root / "config" / "storage-backend.txt", f"{backend}\n".encode())


def migrate(root: Path, to: str, *, dry_run: bool = False, actor: str = "unknown",
            on_step: Callable[[str], None] | None = None, progress: Progress | None = None,
            batch: int = BATCH, automatic: bool = False) -> dict[str, Any]:
    """Move the project at ``root`` (a .milestones dir) to backend ``to``.

    ``on_step`` is called with each step's name before it runs (tests inject
    faults there); ``progress`` as the copy goes (see ``Progress``). The copy
    streams ``batch`` milestones (and ten times as many events) at a time from the
    old store into the new one, each batch written in one go, and the verification
    reads the new store back the same way: neither holds the whole project.
    Returns a report; raises StorageError after a rollback. An admin operation
    (owners only) unless a dry run, or ``automatic`` (the scale policy an owner set).
    """
    if not (dry_run or automatic):
        from ..project.access import require_at

        require_at(root, "admin", operation="storage.migrate", actor=actor)
    if to not in BACKENDS:
        raise InvalidInput(f"unknown backend {to!r}", hint=f"use one of: {', '.join(BACKENDS)}")
    old = open_store(root)
    if old.backend == to:
        raise InvalidInput(f"the project already uses the {to} backend",
                           hint="see `milestone storage status`")
    started = time.monotonic()
    report: dict[str, Any] = {"schema": 1, "from": old.backend, "to": to, "dry_run": dry_run,
                              "started_at": _now(), "steps": []}
    step = "lock"

    def enter(name: str) -> None:
        nonlocal step
        step = name
        report["steps"].append(name)
        if on_step is not None:
            on_step(name)

    new: Store | None = None
    superseded = False
    try:
        enter("lock")
        with old.lock(timeout=MIGRATION_LOCK_TIMEOUT):
            moved = read_marker(root, old.backend)
            if moved != old.backend:
                # Another migration switched while this one waited for the lock (two
                # `auto` policies at once): copying the old backend now would lose the
                # writes made since, so this one stops, and logs nothing.
                superseded = True
                raise InvalidInput(f"the project moved to the {moved} backend meanwhile",
                                   hint="see `milestone storage status`")
            # Bring the old store fully up to date first (interrupted writes, hand edits).
            from ..project import Project

            distrust = getattr(old, "distrust", None)
            if distrust is not None:
                distrust()  # a same-size, same-mtime hand edit is copied too
            Project(old, actor=actor, session_id="migration").sync()
            damage = getattr(old, "damage", None)
            if damage:  # copying a log that does not verify would bless it
                raise StorageError(f"{damage}; not migrated",
                                   hint="restore a backup, or run `milestone doctor --repair`")
            head = old.head_state()
            source = Tally(progress, (head.last_event_id, len(old.view().milestones)))
            report["source"] = None  # filled as the copy goes (kept here: the key order)
            back_to_files = to in ("file", "hybrid") and not shares_files(old.backend, to)
            if back_to_files:  # YAML edited while not read: kept aside, never written over
                from . import inactive

                report["kept_aside"] = inactive.edited(root, deep=True, sources=SourceTexts(old))
            if dry_run:
                source.progress = None
                source.read(old, batch)
                report["source"] = source.summary(head)
                report["ok"] = True
                return report
            enter("backup")
            from ..storage.backup import create_backup

            # A whole archive (manifest, SHA-256 per member, databases through SQLite's
            # online backup API) that `milestone restore` takes back, read through the
            # store whose lock this migration holds.
            report["backup"] = str(create_backup(root, reason="pre-migration", actor=actor,
                                                 held=old).path)
            enter("copy")
            new = store_for(root, to)
            if shares_files(old.backend, to):
                # file and hybrid keep the same YAML and log: only the index changes.
                if to == "hybrid":
                    new.initialize()
                    new.reindex()  # type: ignore[attr-defined]
                source.read(old, batch)
            else:
                if back_to_files and report["kept_aside"]:
                    folder = inactive.keep_aside(root, report["kept_aside"])
                    report["kept_folder"] = str(folder)
                _discard(new, shared=False)  # leftovers of an earlier attempt
                new.import_stream(source.event_batches(old.events(), batch * 10),
                                  source.snapshot_batches(old.snapshot_batches(batch)), head,
                                  old.read_resume(), old.source_texts)
                for name in RECORDS:  # agents and their messages (milestones.agents.coord)
                    if record := old.read_record(name):
                        new.write_record(name, record)
            report["source"] = source.summary(head)
            enter("verify")
            report["target"] = verify_copy(source, head, new, batch)
            enter("switch")
            write_marker(root, to)
            enter("log")
            from . import inactive

            with contextlib.suppress(OSError):  # the switch is made: a note cannot undo it
                if to in ("database", "postgres") and old.backend in ("file", "hybrid"):
                    inactive.mark(root, to)  # the YAML files stay, marked as not read
                elif back_to_files:
                    inactive.unmark(root)
            report["ok"] = True
            report["seconds"] = round(time.monotonic() - started, 3)
            _log(root, {"timestamp": _now(), "event": "migration_completed", "actor": actor,
                        **{k: report[k] for k in ("from", "to", "backup", "seconds", "target")}})
            close = getattr(new, "close", None)
            if close is not None:
                close()
            return report
    except BaseException as exc:
        switched = "switch" in report["steps"] and step in ("log",)
        if not switched and not superseded:
            if new is not None:
                with contextlib.suppress(Exception):
                    _discard(new, shared=shares_files(old.backend, to))
            with contextlib.suppress(Exception):
                _log(root, {"timestamp": _now(), "event": "migration_rolled_back",
                            "actor": actor, "from": old.backend, "to": to, "step": step,
                            "error": str(exc)})
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        if isinstance(exc, MilestoneError) and step == "lock":
            raise
        raise StorageError(f"migration to {to} failed at the {step} step ({exc}); the project "
                           f"still uses the {old.backend} backend, unchanged",
                           hint="fix the cause and run the migration again") from None


def verify_copy(source: Tally, head: State, new: Store, batch: int = BATCH) -> dict[str, Any]:
    """``verify``, reading the new store back in batches: the counts, each milestone's
    checksum against the one taken as it was copied, the event count, the chain head
    and the whole hash chain. Returns the new store's summary."""
    got = Tally()
    for _ in got.snapshot_batches(new.snapshot_batches(batch)):
        pass
    events = got.counted(new.events())
    bad = ev.verify_chain(events)
    for _ in events:  # past a bad event: counted all the same
        pass
    want, have = source.summary(head), got.summary(new.head_state())
    for key in ("milestones", "tasks", "events", "head", "current"):
        if want[key] != have[key]:
            raise StorageError(f"verification failed: {key} {have[key]} != {want[key]}")
    for mid, digest in source.sums.items():
        if digest != got.sums.get(mid):
            raise StorageError(f"verification failed: {mid}'s checksum differs")
    if bad is not None:
        raise StorageError(f"verification failed: event #{bad[0] + 1}: {bad[1]}")
    return have


def previous_backend(root: Path) -> str | None:
    """The backend before the last completed migration, from the migration log."""
    path = root / "performance" / "migration-log.jsonl"
    try:
        lines = fsutil.read_bytes(path).decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("event") == "migration_completed":
            return str(rec["from"])
    return None


def leftovers(root: Path) -> tuple[str, list[Path]]:
    """The backend in use, and the data files of the others: what migrations left
    where it was (nothing reads them). Never a file the backend in use reads."""
    current = open_store(root)
    keep = set(current.data_files())
    found: set[Path] = set()
    for backend in BACKENDS:
        if backend == current.backend:
            continue
        other = store_for(root, backend)
        if shares_files(backend, current.backend):
            index = getattr(other, "index", None)  # hybrid's own: its index
            found.update(index.data_files() if index is not None else ())
        else:
            found.update(other.data_files())
    if current.backend not in ("file", "hybrid"):
        from . import inactive

        found.update(inactive.marks(root))  # the not-read note goes with the files
    return current.backend, sorted(found - keep)


def cleanup(root: Path, *, dry_run: bool = False, actor: str = "unknown") -> dict[str, Any]:
    """Remove what ``leftovers`` finds, under the writer lock (so not while a
    migration runs); logs ``storage_cleaned``. The backups stay. Owners only."""
    if not dry_run:
        from ..project.access import require_at

        require_at(root, "admin", operation="storage.cleanup", actor=actor)
    store = open_store(root)
    with store.lock(timeout=MIGRATION_LOCK_TIMEOUT):
        backend, files = leftovers(root)
        if backend != store.backend:  # a migration switched while we waited
            raise InvalidInput(f"the project moved to the {backend} backend meanwhile",
                               hint="run `milestone storage cleanup` again")
        from . import inactive

        # An edited not-read file is kept aside, never removed.
        edited = inactive.edited(root, deep=True) if backend not in ("file", "hybrid") else []
        files = [p for p in files if p.relative_to(root).as_posix() not in edited]
        size = sum(p.stat().st_size for p in files)
        rel = [p.relative_to(root).as_posix() for p in files]
        kept = None
        if not dry_run:
            kept = inactive.keep_aside(root, edited)
            for path in files:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if files:
                _log(root, {"timestamp": _now(), "event": "storage_cleaned", "actor": actor,
                            "backend": backend, "removed": rel, "bytes": size})
    return {"schema": 1, "backend": backend, "dry_run": dry_run, "files": rel, "bytes": size,
            "kept_aside": edited, "kept_folder": str(kept) if kept else None}

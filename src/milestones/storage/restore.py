"""Restore: stage and check an archive, back up the current state, then swap the
archive in (``storage.swap``); ``recover_restore`` finishes or undoes one a crash
interrupted.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from pathlib import Path

from ..errors import StorageError
from . import Store, fsutil, open_store
from .archive import (
    DAMAGED,
    DATA_DIRS,
    DB_DIR,
    LOCK_NAME,
    MARKER,
    RESTORE_DIR,
    BackupInfo,
    Manifest,
    RestoreInfo,
    close_quietly,
    project_root,
    record_system_event,
    require_file,
)
from .archive_files import POSTGRES_COPY, connect_existing, live_databases, read_archive
from .backup import auto_prune, remove_backup_temps
from .swap import Plan, apply_restore, read_marker, recover_locked

# ------------------------------------------------------------------ restore


def restore_backup(root: Path, path: Path, *, actor: str | None = None) -> RestoreInfo:
    """Replace the project's data at ``root`` with the archive at ``path``.

    Nothing changes until the whole archive is extracted and checked; then a
    ``pre-restore`` backup of the current state is written, and the data is
    swapped in under the writer lock. Stores opened before this must be reopened.
    """
    root = project_root(root)
    path = Path(path).absolute()
    require_file(path)
    remove_backup_temps(root)
    work = root / RESTORE_DIR
    with fsutil.writer_lock(root / LOCK_NAME):
        repairs = recover_locked(root)
        store = open_store(root)
        previous = store.backend
        try:
            manifest, plan = _stage_restore(root, path, work)
            info = apply_restore(root, store, work, manifest, plan, actor)
        finally:
            close_quietly(store)
        record_system_event(root, "backup_restored", path, manifest, actor,
                {"previous_backend": previous, "pre_restore_backup": str(info.path),
                 **({"repairs": repairs} if repairs else {})})
        pruned = auto_prune(root, info.path, "pre-restore")
    pre = BackupInfo(info.path, info.manifest, info.archive_size, pruned)
    return RestoreInfo(path, manifest, previous, pre, tuple(repairs))


def recover_restore(root: Path) -> list[str]:
    """Finish (or undo) a restore that was interrupted; describe what was done."""
    root = project_root(root)
    if not (root / RESTORE_DIR).exists():
        return []
    with fsutil.writer_lock(root / LOCK_NAME):
        return recover_locked(root)

# ----------------------------------------------------------- restore: staging





def _stage_restore(root: Path, archive: Path, work: Path) -> tuple[Manifest, Plan]:
    """Extract and check the archive in ``.restore/new``; plan the swap. Changes nothing."""
    new = work / "new"
    fsutil.refuse_links(work)  # a planted .restore link would take the unpacking outside
    try:
        shutil.rmtree(work, ignore_errors=True)
        new.mkdir(parents=True)
        manifest = read_archive(archive, new)
        marker = _check_staged(archive, new, manifest)
        # The live marker stays until the very end (a command starting mid-swap
        # must still find its backend), so the archive's is written from the plan.
        with contextlib.suppress(FileNotFoundError):
            (new / MARKER).unlink()
    except OSError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise fsutil.storage_error(exc, work, "stage the restore in") from None
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    tops = {d.split("/")[0] for d in manifest.dirs}
    tops |= {m.path.split("/")[0] for m in manifest.members}
    staged_dbs = sorted(m.path.split("/")[1] for m in manifest.members  # not a postgres
                        if m.path.startswith(f"{DB_DIR}/")        # copy: rows, not a file
                        and m.path != f"{DB_DIR}/{POSTGRES_COPY}")
    live_dbs = [p.name for p in live_databases(root)]
    plan = Plan(
        dirs_in=[d for d in DATA_DIRS if d in tops and d != "config"],
        dirs_out=[d for d in DATA_DIRS if d not in tops and d != "config"
                  and (root / d).exists()],
        config_files=sorted(m.path for m in manifest.members
                            if m.path.startswith("config/") and m.path != MARKER),
        config_dirs=sorted(d for d in manifest.dirs if d.split("/")[0] == "config"),
        db_copy=[n for n in staged_dbs if n in live_dbs],
        db_rename=[n for n in staged_dbs if n not in live_dbs],
        db_drop=[n for n in live_dbs if n not in staged_dbs],
        marker=marker,
        old_marker=read_marker(root),
    )
    return manifest, plan





def _check_staged(archive: Path, new: Path, manifest: Manifest) -> str | None:
    """The staged data opens, agrees with the manifest, and its databases are whole."""
    try:
        marker: str | None = fsutil.read_bytes(new / MARKER, 4096).decode("utf-8")
    except FileNotFoundError:
        marker = None
    except (OSError, UnicodeDecodeError):
        raise StorageError(f"{archive}: {MARKER} is unreadable", hint=DAMAGED) from None
    named = (marker or "").strip() or "file"
    if named != manifest.backend:
        raise StorageError(f"{archive}: {MARKER} names {named!r} but the manifest says "
                           f"{manifest.backend!r}", hint=DAMAGED)
    for m in manifest.members:
        if m.path.startswith(f"{DB_DIR}/"):
            _check_sqlite(archive, new / m.path, m.path)
    if manifest.backend == "postgres" and not (new / DB_DIR / POSTGRES_COPY).is_file():
        raise StorageError(f"{archive}: a postgres backup without {DB_DIR}/{POSTGRES_COPY}",
                           hint=DAMAGED)
    if manifest.last_event_id is not None:
        store = staged_store(new, manifest.backend)
        try:
            state = store.load()
        except Exception as exc:  # untrusted data: whatever breaks, the archive is bad
            raise StorageError(f"{archive}: its data cannot be read: {exc}",
                               hint=DAMAGED) from None
        finally:
            close_quietly(store)
        if (state.last_event_id, state.last_hash) != (manifest.last_event_id, manifest.last_hash):
            raise StorageError(
                f"{archive}: its data ends at event {state.last_event_id}, but the manifest "
                f"says {manifest.last_event_id}", hint=DAMAGED)
    return marker


def staged_store(new: Path, backend: str) -> Store:
    """A store over the staged data: a postgres archive's rows are its SQLite copy."""
    if backend == "postgres":
        from .sqlite import DatabaseStore

        return DatabaseStore(new, new / DB_DIR / POSTGRES_COPY)
    return open_store(new)


def _check_sqlite(archive: Path, path: Path, rel: str) -> None:
    try:
        conn = connect_existing(path)
        try:
            ok = conn.execute("PRAGMA quick_check").fetchall()
            orphans = conn.execute("PRAGMA foreign_key_check").fetchall()
            virtual = conn.execute("SELECT name FROM sqlite_master WHERE sql LIKE "
                                   "'CREATE VIRTUAL TABLE%'").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(f"{archive}: member {rel} is not a usable database ({exc})",
                           hint=DAMAGED) from None
    if ok != [("ok",)]:
        raise StorageError(f"{archive}: member {rel} fails SQLite's check: {ok[0][0]}",
                           hint=DAMAGED)
    if orphans:
        raise StorageError(f"{archive}: member {rel} has rows whose foreign keys point nowhere "
                           f"(table {orphans[0][0]})", hint=DAMAGED)
    if virtual:
        raise StorageError(f"{archive}: member {rel} has a virtual table ({virtual[0][0]}), "
                           f"which restore cannot copy", hint="restore it by hand")

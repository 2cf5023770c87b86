"""Backup and restore: one self-checking archive of a project's data.

An archive is a gzip'd tar (``database/backup/backup-<UTC time>-<reason>.tar.gz``
unless told otherwise) holding:

``manifest.json`` (always the first member)
    the format and its version, the backend, the milestone version, when and why
    it was made, the event count and chain head (last event id and hash), the
    data directories (so empty ones come back too), and for every other member
    its path, size, SHA-256, mode and mtime (ns).
every data file, at its path under ``.milestones/``
    ``active/``, ``completed/``, ``config/``, ``logs/`` (with ``archive/``) as
    they are, and each ``database/*.db`` as a consistent copy made through
    SQLite's online backup API. Never the lock file, temp files
    (``.*.tmp-*``), WAL side files or ``database/backup/`` itself.

Only regular files with safe relative names are accepted back: an archive with a
missing, extra, resized or altered member, a name with ``..`` or a leading ``/``,
a link or a device, or one that is cut short, is refused whole.

Restore stages the archive in ``.milestones/.restore/`` (and checks it again
while extracting: hashes, the data's chain head against the manifest's, SQLite's
quick_check), takes a ``pre-restore`` backup, then, under the writer lock, swaps
each directory in with renames (``config/`` file by file, so the backend marker
never disappears), replaces a live database's contents inside its own writer
transaction (never a file operation on a database that may be open), and writes
``config/storage-backend.txt`` last. A journal in ``.restore/`` makes the swap
finish (or, after an error, undo) as one unit: ``recover_restore`` (run first by
every backup and restore) completes a restore a crash interrupted.
``logs/system-events.jsonl`` is this installation's audit trail of backups and
restores: a restore keeps the live one rather than the archive's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ..errors import InvalidInput, MilestoneError
from . import Store, backup_due, fsutil, open_store
from .archive import (
    DEFAULT_RETENTION,
    LOCK_NAME,
    SCHEDULED,
    BackupInfo,
    Manifest,
    check_reason,
    cleanup,
    close_quietly,
    default_dir,
    destination,
    project_root,
    record_system_event,
    store_lock,
)
from .archive_files import read_archive, stage_project, write_archive

# re-exported: the schedule's check lives apart (backup_due), its names stay here too
from .backup_due import (  # noqa: F401
    BACKUP_DIR,
    DEFAULT_EVERY_HOURS,
    MANUAL,
    NAME_RE,
    every_hours,
    newest_automatic_backup,
)
from .swap import recover_locked

# ------------------------------------------------------------------- backup

_ARCHIVE_LEFT = re.compile(r"^\.backup-.+\.tar\.gz\.tmp-([0-9]+)-")


def create_backup(root: Path, dest: Path | None = None, *, reason: str = MANUAL,
                  actor: str | None = None, held: Store | None = None) -> BackupInfo:
    """Write one archive of the project at ``root`` (``.milestones/``) and return it.

    ``dest`` is a file or an existing directory (default: ``database/backup/``).
    Backups whose reason is not ``manual`` are automatic: after writing one into
    the default directory, the oldest beyond ``backup.retention`` are removed.

    ``held``: the caller already holds this store's writer lock (a migration's
    ``pre-migration`` backup). The backup then reads through that store and takes no
    lock of the store's own: on the database backend the lock is a transaction on
    the store's connection, which a second one would wait for forever. The
    databases are still copied from connections of the backup's own (SQLite's
    online backup API; in WAL mode a reader never waits for the writer).
    """
    root = project_root(root)
    check_reason(reason)
    target = destination(root, dest, reason)
    remove_backup_temps(root, target.parent)
    with fsutil.writer_lock(root / LOCK_NAME):
        if held is not None:
            staged = stage_project(root, held, root, reason)
            repairs: list[str] = []
        else:
            repairs = recover_locked(root)
            store = open_store(root)
            try:
                with store_lock(store):
                    staged = stage_project(root, store, root, reason)
            finally:
                close_quietly(store)
    # Compression runs after the lock is released: the staged copy is ours alone.
    with cleanup(staged.directory):
        info = write_archive(staged, target)
    pruned = auto_prune(root, target, reason)
    record_system_event(root, "backup_created", info.path, info.manifest, actor,
            {"reason": reason, **({"repairs": repairs} if repairs else {})})
    return BackupInfo(info.path, info.manifest, info.archive_size, pruned)




def remove_backup_temps(root: Path, folder: Path | None = None) -> list[str]:
    """Remove what a killed backup left: its staging folder in ``.milestones/``
    (``.backup.tmp-<pid>-*``) and its half-written archive in ``folder``
    (``.backup-*.tar.gz.tmp-<pid>-*``), when that process is gone."""
    removed = fsutil.remove_dead_temps(root, fsutil.BACKUP_STAGE_RE)
    for where in {default_dir(root), *([folder] if folder is not None else [])}:
        removed += fsutil.remove_dead_temps(where, _ARCHIVE_LEFT)
    return removed


def verify_backup(path: Path) -> Manifest:
    """Re-hash every member of the archive at ``path``; raise StorageError on the first bad one."""
    return read_archive(Path(path), None)


def prune_backups(root: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` automatic backups in ``database/backup/``.

    Manual backups, and files that are not backups, are never touched.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise InvalidInput(f"cannot keep {keep!r} backups", hint="give a whole number, 0 or more")
    folder = Path(root) / BACKUP_DIR
    names = fsutil.list_existing(folder)
    automatic = [n for n in names if (m := NAME_RE.match(n)) and m.group(2) != MANUAL]
    doomed = automatic[: max(0, len(automatic) - keep)]
    removed = []
    for name in doomed:
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise fsutil.storage_error(exc, folder / name, "remove") from None
        removed.append(folder / name)
    if removed:
        fsutil.fsync_dir(folder)
    return removed


def retention(root: Path) -> int:
    """``backup.retention`` from config/config.yaml (default 10): automatic backups to keep."""
    from .config import load_config, where

    section = load_config(Path(root)).get("backup") or {}
    value = section.get("retention", DEFAULT_RETENTION) if isinstance(section, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(
            f"{where(Path(root), ('backup', 'retention'))}: backup.retention must be a whole "
            f"number of at "
            f"least 1, not {value!r}",
            hint=f"set `backup: {{retention: {DEFAULT_RETENTION}}}`",
        )
    return value


def scheduled_backup(root: Path, *, actor: str | None = None, now: datetime | None = None,
                     began: Callable[[], datetime | None] | None = None) -> BackupInfo | None:
    """Take a ``scheduled`` backup (pruned to ``backup.retention``) when the newest
    automatic one is ``backup.every_hours`` old or more; None when none was due.

    ``began`` tells when the project's data began (its first event): with no automatic
    backup yet, the first is due a period after that, not on a new project's first
    write. The check and the backup happen under ``.lock``, so processes that write
    at the same moment take one backup between them; one under way counts.
    """
    root = project_root(root)

    def due() -> bool:
        return backup_due.due(root, now=now, began=began)

    if not due():
        return None  # the common case: no lock taken
    with fsutil.try_writer_lock(root / LOCK_NAME) as got:
        if not got or not due():
            return None  # another process is backing up (or restoring) right now
        return create_backup(root, reason=SCHEDULED, actor=actor)

def auto_prune(root: Path, written: Path, reason: str) -> tuple[Path, ...]:
    """After an automatic backup in the default directory: keep ``backup.retention``."""
    if reason == MANUAL or written.parent.resolve() != default_dir(root).resolve():
        return ()
    try:
        keep = retention(root)
    except MilestoneError:
        return ()  # a broken config keeps every backup: safer than guessing
    return tuple(prune_backups(root, keep))

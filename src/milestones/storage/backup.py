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

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeGuard
from urllib.parse import quote

from .. import __version__
from ..errors import Conflict, InvalidInput, MilestoneError, NotFound, StorageError
from . import BACKENDS, Store, fsutil, open_store
from .sqlite import copy_database

FORMAT = "milestone-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DATA_DIRS = ("active", "completed", "config", "logs", "agents")  # agents: coord records
DB_DIR = "database"
BACKUP_DIR = "database/backup"
MARKER = "config/storage-backend.txt"
SYSTEM_LOG = "logs/system-events.jsonl"
RESTORE_DIR = ".restore"
LOCK_NAME = ".lock"
DEFAULT_RETENTION = 10
DEFAULT_EVERY_HOURS = 24
SCHEDULED = "scheduled"
MANUAL = "manual"
ATTACH_AS = "restore_src"

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_MEMBER_BYTES = 1024 * 1024 * 1024  # per member; 4x for all (see restore_limit)
MAX_PATH = 1024
CHUNK = 1024 * 1024

_REASON_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_NAME_RE = re.compile(r"^backup-([0-9]{8}T[0-9]{6}\.[0-9]{6}Z)-([a-z0-9][a-z0-9-]*)\.tar\.gz$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TEMP_RE = re.compile(r"^\..+\.tmp-")
_DAMAGED = "the archive is damaged or was altered; use another backup"


# ------------------------------------------------------------------ records


@dataclass(frozen=True)
class Member:
    """One data file in an archive."""

    path: str
    size: int
    sha256: str
    mode: int = 0o644
    mtime_ns: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256,
                "mode": self.mode, "mtime_ns": self.mtime_ns}


@dataclass(frozen=True)
class Manifest:
    """What an archive holds and the project state it captures."""

    backend: str
    created_at: str
    reason: str
    milestone_version: str
    event_count: int | None
    last_event_id: int | None
    last_hash: str | None
    dirs: tuple[str, ...]
    members: tuple[Member, ...]
    format_version: int = FORMAT_VERSION
    warning: str | None = None  # the state could not be read when the backup was made

    def to_dict(self) -> dict[str, Any]:
        head = (None if self.last_event_id is None
                else {"event_id": self.last_event_id, "hash": self.last_hash})
        out: dict[str, Any] = {
            "format": FORMAT,
            "format_version": self.format_version,
            "created_at": self.created_at,
            "reason": self.reason,
            "backend": self.backend,
            "milestone_version": self.milestone_version,
            "event_count": self.event_count,
            "head": head,
            "dirs": list(self.dirs),
            "members": [m.to_dict() for m in self.members],
        }
        if self.warning:
            out["warning"] = self.warning
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False).encode("utf-8") + b"\n"

    @property
    def size(self) -> int:
        """Total bytes of the data members."""
        return sum(m.size for m in self.members)


@dataclass(frozen=True)
class BackupInfo:
    """A backup just written."""

    path: Path
    manifest: Manifest
    archive_size: int
    pruned: tuple[Path, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": str(self.path),
            "archive_size": self.archive_size,
            "backend": m.backend,
            "reason": m.reason,
            "created_at": m.created_at,
            "members": len(m.members),
            "event_count": m.event_count,
            "head": {"event_id": m.last_event_id, "hash": m.last_hash},
            "milestone_version": m.milestone_version,
            "pruned": [str(p) for p in self.pruned],
            **({"warning": m.warning} if m.warning else {}),
        }


@dataclass(frozen=True)
class RestoreInfo:
    """A restore just finished."""

    path: Path
    manifest: Manifest
    previous_backend: str
    pre_restore: BackupInfo
    repairs: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "path": str(self.path),
            "backend": m.backend,
            "previous_backend": self.previous_backend,
            "created_at": m.created_at,
            "members": len(m.members),
            "event_count": m.event_count,
            "head": {"event_id": m.last_event_id, "hash": m.last_hash},
            "pre_restore_backup": str(self.pre_restore.path),
            "repairs": list(self.repairs),
        }


# ------------------------------------------------------------------- backup


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
    root = _project_root(root)
    _check_reason(reason)
    target = _destination(root, dest, reason)
    remove_backup_temps(root, target.parent)
    with fsutil.writer_lock(root / LOCK_NAME):
        if held is not None:
            staged = _stage_project(root, held, root, reason)
            repairs: list[str] = []
        else:
            repairs = _recover_locked(root)
            store = open_store(root)
            try:
                with _store_lock(store):
                    staged = _stage_project(root, store, root, reason)
            finally:
                _close(store)
    # Compression runs after the lock is released: the staged copy is ours alone.
    with _cleanup(staged.directory):
        info = _write_archive(staged, target)
    pruned = _auto_prune(root, target, reason)
    _record(root, "backup_created", info.path, info.manifest, actor,
            {"reason": reason, **({"repairs": repairs} if repairs else {})})
    return BackupInfo(info.path, info.manifest, info.archive_size, pruned)


STAGE_PREFIX = ".backup.tmp-"
_ARCHIVE_LEFT = re.compile(r"^\.backup-.+\.tar\.gz\.tmp-([0-9]+)-")


def remove_backup_temps(root: Path, folder: Path | None = None) -> list[str]:
    """Remove what a killed backup left: its staging folder in ``.milestones/``
    (``.backup.tmp-<pid>-*``) and its half-written archive in ``folder``
    (``.backup-*.tar.gz.tmp-<pid>-*``), when that process is gone."""
    removed = fsutil.remove_dead_temps(root, fsutil.BACKUP_STAGE_RE)
    for where in {_default_dir(root), *([folder] if folder is not None else [])}:
        removed += fsutil.remove_dead_temps(where, _ARCHIVE_LEFT)
    return removed


def verify_backup(path: Path) -> Manifest:
    """Re-hash every member of the archive at ``path``; raise StorageError on the first bad one."""
    return _read_archive(Path(path), None)


def prune_backups(root: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` automatic backups in ``database/backup/``.

    Manual backups, and files that are not backups, are never touched.
    """
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise InvalidInput(f"cannot keep {keep!r} backups", hint="give a whole number, 0 or more")
    folder = Path(root) / BACKUP_DIR
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise fsutil.storage_error(exc, folder, "list") from None
    automatic = [n for n in names if (m := _NAME_RE.match(n)) and m.group(2) != MANUAL]
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


def every_hours(root: Path) -> float:
    """``backup.every_hours`` from config/config.yaml (default 24; 0 turns it off): how
    old the newest automatic backup may get before a write on the database backend
    takes a ``scheduled`` one."""
    from .config import load_config, where

    section = load_config(Path(root)).get("backup") or {}
    value = (section.get("every_hours", DEFAULT_EVERY_HOURS) if isinstance(section, dict)
             else None)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e6:
        raise InvalidInput(
            f"{where(Path(root), ('backup', 'every_hours'))}: backup.every_hours must be a "
            f"number of hours, "
            f"0 or more (0: no scheduled backups), not {value!r}",
            hint=f"set `backup: {{every_hours: {DEFAULT_EVERY_HOURS}}}`",
        )
    return float(value)


def newest_automatic_backup(root: Path) -> datetime | None:
    """When the newest automatic backup in ``database/backup/`` was made (from its name)."""
    try:
        names = os.listdir(Path(root) / BACKUP_DIR)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise fsutil.storage_error(exc, Path(root) / BACKUP_DIR, "list") from None
    stamps = [m.group(1) for n in names if (m := _NAME_RE.match(n)) and m.group(2) != MANUAL]
    if not stamps:
        return None
    return datetime.strptime(max(stamps), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


def scheduled_backup(root: Path, *, actor: str | None = None, now: datetime | None = None,
                     began: Callable[[], datetime | None] | None = None) -> BackupInfo | None:
    """Take a ``scheduled`` backup (pruned to ``backup.retention``) when the newest
    automatic one is ``backup.every_hours`` old or more; None when none was due.

    ``began`` tells when the project's data began (its first event): with no automatic
    backup yet, the first is due a period after that, not on a new project's first
    write. The check and the backup happen under ``.lock``, so processes that write
    at the same moment take one backup between them; one under way counts.
    """
    root = _project_root(root)
    hours = every_hours(root)
    if not hours:
        return None

    def due() -> bool:
        newest = newest_automatic_backup(root)
        if newest is None and began is not None:
            newest = began()
        moment = now or datetime.now(UTC)
        return newest is None or moment - newest >= timedelta(hours=hours)

    if not due():
        return None  # the common case: no lock taken
    with fsutil.try_writer_lock(root / LOCK_NAME) as got:
        if not got or not due():
            return None  # another process is backing up (or restoring) right now
        return create_backup(root, reason=SCHEDULED, actor=actor)


# ------------------------------------------------------------------ restore


def restore_backup(root: Path, path: Path, *, actor: str | None = None) -> RestoreInfo:
    """Replace the project's data at ``root`` with the archive at ``path``.

    Nothing changes until the whole archive is extracted and checked; then a
    ``pre-restore`` backup of the current state is written, and the data is
    swapped in under the writer lock. Stores opened before this must be reopened.
    """
    root = _project_root(root)
    path = Path(path).absolute()
    _require_file(path)
    remove_backup_temps(root)
    work = root / RESTORE_DIR
    with fsutil.writer_lock(root / LOCK_NAME):
        repairs = _recover_locked(root)
        store = open_store(root)
        previous = store.backend
        try:
            manifest, plan = _stage_restore(root, path, work)
            info = _apply_restore(root, store, work, manifest, plan, actor)
        finally:
            _close(store)
        _record(root, "backup_restored", path, manifest, actor,
                {"previous_backend": previous, "pre_restore_backup": str(info.path),
                 **({"repairs": repairs} if repairs else {})})
        pruned = _auto_prune(root, info.path, "pre-restore")
    pre = BackupInfo(info.path, info.manifest, info.archive_size, pruned)
    return RestoreInfo(path, manifest, previous, pre, tuple(repairs))


def recover_restore(root: Path) -> list[str]:
    """Finish (or undo) a restore that was interrupted; describe what was done."""
    root = _project_root(root)
    if not (root / RESTORE_DIR).exists():
        return []
    with fsutil.writer_lock(root / LOCK_NAME):
        return _recover_locked(root)


# ----------------------------------------------------------- backup: staging


@dataclass(frozen=True)
class _Staged:
    directory: Path
    manifest: Manifest


@dataclass(frozen=True)
class _Written:
    path: Path
    manifest: Manifest
    archive_size: int


def _stage_project(root: Path, store: Store, parent: Path, reason: str) -> _Staged:
    """Copy every data file into a temp directory under ``parent`` (under the lock)."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fsutil.refuse_links(parent)
        stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise fsutil.storage_error(exc, parent, "create a backup in") from None
    try:
        warning = None
        try:
            state = store.load()
            last_id: int | None = state.last_event_id
            last_hash: str | None = state.last_hash
        except (MilestoneError, sqlite3.Error, ValueError, KeyError, TypeError) as exc:
            # A damaged project is exactly what one wants a copy of before repairs.
            last_id = last_hash = None
            warning = f"the project's state could not be read: {exc}"
        dirs: list[str] = []
        members: list[Member] = []
        for top in DATA_DIRS:
            fsutil.refuse_links(root / top)
            if (root / top).is_dir():
                _stage_tree(root, top, stage, dirs, members)
        for db in _live_databases(root):
            fsutil.refuse_links(db)
            rel = f"{DB_DIR}/{db.name}"
            dest = stage / rel
            dest.parent.mkdir(exist_ok=True)
            _sqlite_copy(db, dest)
            members.append(_hash_member(dest, rel))
        manifest = Manifest(
            backend=store.backend,
            created_at=_utc_now(),
            reason=reason,
            milestone_version=__version__,
            # Event ids run 1, 2, 3 ... without gaps (the chain checks it), so the
            # head's id is the count, with no need to read the whole log.
            event_count=last_id,
            last_event_id=last_id,
            last_hash=last_hash,
            dirs=tuple(dirs),
            members=tuple(members),
            warning=warning,
        )
        return _Staged(stage, manifest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _stage_tree(root: Path, top: str, stage: Path, dirs: list[str],
                members: list[Member]) -> None:
    for dirpath, dirnames, filenames in os.walk(root / top):
        dirnames[:] = sorted(d for d in dirnames if not _TEMP_RE.match(d))
        for d in dirnames:  # os.walk lists a linked folder but does not enter it
            if os.path.islink(os.path.join(dirpath, d)):
                raise fsutil.link_refused(os.path.join(dirpath, d))
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        dirs.append(rel_dir)
        (stage / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            if _TEMP_RE.match(name):
                continue
            rel = f"{rel_dir}/{name}"
            src = root / rel
            try:
                st = src.lstat()
            except FileNotFoundError:
                continue  # gone since the listing
            except OSError as exc:
                raise fsutil.storage_error(exc, src, "read") from None
            if stat.S_ISLNK(st.st_mode):  # never copy in a file from outside the project
                raise fsutil.link_refused(src)
            if not stat.S_ISREG(st.st_mode):
                continue
            members.append(_copy_member(src, stage / rel, rel, st))


def _copy_member(src: Path, dest: Path, rel: str, st: os.stat_result) -> Member:
    digest = hashlib.sha256()
    size = 0
    try:
        with fsutil.open_read(src) as fin, dest.open("xb") as fout:
            while chunk := fin.read(CHUNK):
                digest.update(chunk)
                fout.write(chunk)
                size += len(chunk)
    except OSError as exc:
        raise fsutil.storage_error(exc, src, "back up") from None
    return Member(rel, size, digest.hexdigest(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)


def _hash_member(path: Path, rel: str) -> Member:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    st = path.stat()
    return Member(rel, st.st_size, digest.hexdigest(), 0o644, st.st_mtime_ns)


def _live_databases(root: Path) -> list[Path]:
    folder = root / DB_DIR
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise fsutil.storage_error(exc, folder, "list") from None
    return [folder / n for n in names
            if n.endswith(".db") and not n.startswith(".") and (folder / n).is_file()]


def _connect_existing(path: Path) -> sqlite3.Connection:
    """Open a database that must already exist (``mode=rw`` never creates one)."""
    from .sqlite import refuse_db_links

    refuse_db_links(path)
    uri = f"file:{quote(str(path.resolve()))}?mode=rw"
    conn = sqlite3.connect(uri, uri=True, timeout=fsutil.lock_timeout(),
                           isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(fsutil.lock_timeout() * 1000)}")
    return conn


def _sqlite_copy(src: Path, dest: Path) -> None:
    """A consistent copy of a live database through SQLite's online backup API.

    Always from a connection of our own: backing up from the one that holds the
    writer transaction would wait for itself forever. One step (``pages=-1``)
    copies under one read transaction, so the copy is one committed state.
    """
    if not src.exists():
        raise StorageError(f"cannot back up {src}: it does not exist",
                           hint="run `milestone doctor`")
    try:
        copy_database(src, dest)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot back up {src}: {exc}",
                           hint="run `milestone doctor`, or check the file's permissions"
                           ) from None


# ----------------------------------------------------------- backup: writing


def _write_archive(staged: _Staged, dest: Path) -> _Written:
    """Write the staged files as ``dest``: temp file, fsync, rename."""
    manifest = staged.manifest
    tmp: Path | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = fsutil.create_temp(dest)  # a random name, O_EXCL: nothing planted there
        with os.fdopen(fd, "wb") as raw:
            # GzipFile by hand: tarfile's "w:gz" would write the temp name into the header.
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6) as gz, \
                    tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                data = manifest.to_json()
                tar.addfile(_tarinfo(MANIFEST_NAME, len(data), 0o644, time.time_ns()),
                            io.BytesIO(data))
                for m in manifest.members:
                    with (staged.directory / m.path).open("rb") as f:
                        tar.addfile(_tarinfo(m.path, m.size, m.mode, m.mtime_ns), f)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise fsutil.storage_error(exc, dest, "write") from None
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    fsutil.fsync_dir(dest.parent)
    return _Written(dest, manifest, dest.stat().st_size)


def _tarinfo(name: str, size: int, mode: int, mtime_ns: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode & 0o777
    info.mtime = mtime_ns // 1_000_000_000
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# ----------------------------------------------------------- reading archives


def _read_archive(path: Path, into: Path | None) -> Manifest:
    """Check every member against the manifest; with ``into``, extract them there too."""
    _require_file(path)
    try:
        with _open_archive(path) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            return _read_members(path, tar, into)
    except StorageError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, UnicodeError) as exc:
        raise StorageError(f"{path}: not a readable backup archive ({exc or 'cut short'})",
                           hint=_DAMAGED) from None
    except OSError as exc:
        raise fsutil.storage_error(exc, path, "read") from None


def _read_members(path: Path, tar: tarfile.TarFile, into: Path | None) -> Manifest:
    # One pass, in order: in stream mode a member can be read only as it goes by.
    members = iter(tar)
    first = next(members, None)
    if first is None:
        raise StorageError(f"{path}: the archive is empty", hint=_DAMAGED)
    if first.name != MANIFEST_NAME or first.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise StorageError(f"{path}: the first member is {first.name!r}, not {MANIFEST_NAME}",
                           hint="this is not a milestone backup, or it was altered")
    if first.size > MAX_MANIFEST_BYTES:
        raise StorageError(f"{path}: {MANIFEST_NAME} is {first.size:,} bytes, too large",
                           hint=_DAMAGED)
    handle = tar.extractfile(first)
    assert handle is not None  # a regular file always has one
    manifest = _parse_manifest(path, handle.read())
    _check_bounds(path, manifest, into)
    expected = {m.path: m for m in manifest.members}
    if into is not None:
        for d in manifest.dirs:
            _mkdir(into / d)
    seen: set[str] = set()
    for info in members:
        name = info.name
        problem = _bad_path(name)
        if problem:
            raise StorageError(f"{path}: member {name!r} {problem}", hint=_DAMAGED)
        if name in seen or name == MANIFEST_NAME:
            raise StorageError(f"{path}: member {name} appears twice", hint=_DAMAGED)
        seen.add(name)
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise StorageError(f"{path}: member {name} is not a regular file", hint=_DAMAGED)
        want = expected.get(name)
        if want is None:
            raise StorageError(f"{path}: member {name} is not in the manifest", hint=_DAMAGED)
        if info.size != want.size:
            raise StorageError(f"{path}: member {name} is {info.size} bytes; the manifest "
                               f"says {want.size}", hint=_DAMAGED)
        data = tar.extractfile(info)
        assert data is not None
        _check_member(path, want, data, into)
    missing = [m.path for m in manifest.members if m.path not in seen]
    if missing:
        raise StorageError(f"{path}: member {missing[0]} is missing"
                           + (f" (and {len(missing) - 1} more)" if missing[1:] else ""),
                           hint=_DAMAGED)
    return manifest


def _check_member(path: Path, want: Member, data: IO[bytes], into: Path | None) -> None:
    digest = hashlib.sha256()
    size = 0
    target = into / want.path if into is not None else None
    out = _open_target(target) if target is not None else None
    try:
        while chunk := data.read(CHUNK):
            size += len(chunk)
            if size > want.size:  # never write more than the manifest declared
                break
            digest.update(chunk)
            if out is not None:
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise fsutil.storage_error(exc, target or path, "write") from None
    finally:
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()
    if size != want.size or digest.hexdigest() != want.sha256:
        raise StorageError(f"{path}: member {want.path} does not match its SHA-256 in the "
                           f"manifest", hint=_DAMAGED)
    if target is not None:
        try:
            os.chmod(target, (want.mode & 0o777) | 0o600)
            if want.mtime_ns:
                # The file backend's state.json knows each file by size and mtime:
                # give them back so the restored project reads as unchanged.
                os.utime(target, ns=(want.mtime_ns, want.mtime_ns))
        except OSError as exc:
            raise fsutil.storage_error(exc, target, "write") from None


def _open_target(target: Path) -> IO[bytes]:
    try:
        _mkdir(target.parent)
        # O_EXCL: two members never share a file; no link followed on the way.
        fd = fsutil.open_nofollow(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        return os.fdopen(fd, "wb")
    except OSError as exc:
        raise fsutil.storage_error(exc, target, "extract") from None


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fsutil.storage_error(exc, path, "extract") from None


def _bad_path(name: str) -> str | None:
    """Why ``name`` may not be a data member's path (None when it may)."""
    if not name or len(name) > MAX_PATH:
        return "has an empty or over-long name"
    if name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has a '..', '.' or empty path component"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return "has a control character in its name"
    if parts[0] in DATA_DIRS and len(parts) >= 2:
        return None
    if parts[0] == DB_DIR and len(parts) == 2 and parts[1].endswith(".db") \
            and not parts[1].startswith("."):
        return None
    return "is outside the data directories (active, completed, config, logs, database/*.db)"


def _parse_manifest(path: Path, raw: bytes) -> Manifest:
    def bad(what: str) -> StorageError:
        return StorageError(f"{path}: {MANIFEST_NAME}: {what}", hint=_DAMAGED)

    try:
        data = fsutil.loads_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("not valid JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(f"not a {FORMAT} manifest")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise bad("format_version is missing")
    if version > FORMAT_VERSION:
        raise StorageError(
            f"{path}: made by a newer milestone ({data.get('milestone_version')}, archive format "
            f"{version})", hint="upgrade milestone to restore it")
    backend = data.get("backend")
    if backend not in BACKENDS:
        raise bad(f"unknown backend {backend!r}")
    strings = {k: data.get(k) for k in ("created_at", "reason", "milestone_version")}
    for key, value in strings.items():
        if not isinstance(value, str):
            raise bad(f"{key} is missing")
    head = data.get("head")
    last_id: int | None = None
    last_hash: str | None = None
    if head is not None:
        if not isinstance(head, dict) or not _is_count(head.get("event_id")) \
                or not isinstance(head.get("hash"), str) or not _HEX64.match(head["hash"]):
            raise bad("head must hold an event_id and a SHA-256 hash")
        last_id, last_hash = head["event_id"], head["hash"]
    count = data.get("event_count")
    if count is not None and not _is_count(count):
        raise bad("event_count must be a whole number")
    dirs = data.get("dirs")
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise bad("dirs must be a list of paths")
    for d in dirs:
        if d not in DATA_DIRS and _bad_path(d):
            raise bad(f"directory {d!r} {_bad_path(d)}")
    raw_members = data.get("members")
    if not isinstance(raw_members, list):
        raise bad("members must be a list")
    members = []
    paths: set[str] = set()
    for item in raw_members:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise bad("a member has no path")
        name = item["path"]
        problem = _bad_path(name)
        if problem:
            raise StorageError(f"{path}: member {name!r} {problem}", hint=_DAMAGED)
        if name in paths:
            raise bad(f"member {name} is listed twice")
        paths.add(name)
        size, digest = item.get("size"), item.get("sha256")
        mode, mtime = item.get("mode", 0o644), item.get("mtime_ns", 0)
        if not _is_count(size) or not isinstance(digest, str) or not _HEX64.match(digest) \
                or not _is_count(mode) or not _is_count(mtime):
            raise bad(f"member {name} needs a size, a SHA-256, a mode and an mtime_ns")
        members.append(Member(name, size, digest, mode, mtime))
    warning = data.get("warning")
    return Manifest(
        backend=backend,
        created_at=str(strings["created_at"]),
        reason=str(strings["reason"]),
        milestone_version=str(strings["milestone_version"]),
        event_count=count,
        last_event_id=last_id,
        last_hash=last_hash,
        dirs=tuple(dirs),
        members=tuple(members),
        format_version=version,
        warning=warning if isinstance(warning, str) else None,
    )


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# ----------------------------------------------------------- restore: staging


@dataclass
class _Plan:
    """What a restore swaps; written to the journal so a crash can finish it."""

    dirs_in: list[str]  # top-level data dirs (not config/) the archive has
    dirs_out: list[str]  # live top-level data dirs (not config/) the archive has not
    config_files: list[str]  # the archive's config files, but the backend marker
    config_dirs: list[str]  # the archive's config directories
    db_copy: list[str]  # databases whose live contents are replaced in a transaction
    db_rename: list[str]  # databases the project has not got: renamed into place
    db_drop: list[str]  # live databases the archive has not got
    marker: str | None  # the archive's storage-backend.txt, written last (None: remove)
    old_marker: str | None  # the live one, for an undo
    state: str = "swapping"  # or "rolling-back"

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=2).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> _Plan:
        data = json.loads(raw)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def _stage_restore(root: Path, archive: Path, work: Path) -> tuple[Manifest, _Plan]:
    """Extract and check the archive in ``.restore/new``; plan the swap. Changes nothing."""
    new = work / "new"
    fsutil.refuse_links(work)  # a planted .restore link would take the unpacking outside
    try:
        shutil.rmtree(work, ignore_errors=True)
        new.mkdir(parents=True)
        manifest = _read_archive(archive, new)
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
    staged_dbs = sorted(m.path.split("/")[1] for m in manifest.members
                        if m.path.startswith(f"{DB_DIR}/"))
    live_dbs = [p.name for p in _live_databases(root)]
    plan = _Plan(
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
        old_marker=_read_marker(root),
    )
    return manifest, plan


def _read_marker(root: Path) -> str | None:
    try:
        return fsutil.read_bytes(root / MARKER, 4096).decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"cannot read {root / MARKER}: {exc}",
                           hint="check the file's permissions") from None


def _write_marker(root: Path, text: str | None) -> None:
    if text is None:
        with contextlib.suppress(FileNotFoundError):
            (root / MARKER).unlink()
    else:
        _atomic(root / MARKER, text.encode("utf-8"))


def _check_staged(archive: Path, new: Path, manifest: Manifest) -> str | None:
    """The staged data opens, agrees with the manifest, and its databases are whole."""
    try:
        marker: str | None = fsutil.read_bytes(new / MARKER, 4096).decode("utf-8")
    except FileNotFoundError:
        marker = None
    except (OSError, UnicodeDecodeError):
        raise StorageError(f"{archive}: {MARKER} is unreadable", hint=_DAMAGED) from None
    named = (marker or "").strip() or "file"
    if named != manifest.backend:
        raise StorageError(f"{archive}: {MARKER} names {named!r} but the manifest says "
                           f"{manifest.backend!r}", hint=_DAMAGED)
    for m in manifest.members:
        if m.path.startswith(f"{DB_DIR}/"):
            _check_sqlite(archive, new / m.path, m.path)
    if manifest.last_event_id is not None:
        store = open_store(new)
        try:
            state = store.load()
        except Exception as exc:  # untrusted data: whatever breaks, the archive is bad
            raise StorageError(f"{archive}: its data cannot be read: {exc}",
                               hint=_DAMAGED) from None
        finally:
            _close(store)
        if (state.last_event_id, state.last_hash) != (manifest.last_event_id, manifest.last_hash):
            raise StorageError(
                f"{archive}: its data ends at event {state.last_event_id}, but the manifest "
                f"says {manifest.last_event_id}", hint=_DAMAGED)
    return marker


def _check_sqlite(archive: Path, path: Path, rel: str) -> None:
    try:
        conn = _connect_existing(path)
        try:
            ok = conn.execute("PRAGMA quick_check").fetchall()
            orphans = conn.execute("PRAGMA foreign_key_check").fetchall()
            virtual = conn.execute("SELECT name FROM sqlite_master WHERE sql LIKE "
                                   "'CREATE VIRTUAL TABLE%'").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StorageError(f"{archive}: member {rel} is not a usable database ({exc})",
                           hint=_DAMAGED) from None
    if ok != [("ok",)]:
        raise StorageError(f"{archive}: member {rel} fails SQLite's check: {ok[0][0]}",
                           hint=_DAMAGED)
    if orphans:
        raise StorageError(f"{archive}: member {rel} has rows whose foreign keys point nowhere "
                           f"(table {orphans[0][0]})", hint=_DAMAGED)
    if virtual:
        raise StorageError(f"{archive}: member {rel} has a virtual table ({virtual[0][0]}), "
                           f"which restore cannot copy", hint="restore it by hand")


# ------------------------------------------------------------ restore: swap


def _apply_restore(root: Path, store: Store, work: Path, manifest: Manifest, plan: _Plan,
                   actor: str | None) -> _Written:
    """Pre-restore backup, then the swap, under the writer lock (the caller holds .lock)."""
    from .sqlite import DatabaseStore

    new = work / "new"
    conn: sqlite3.Connection | None = None
    main_db = None
    if isinstance(store, DatabaseStore) and store.db_path.name in plan.db_copy:
        # The store's own connection replaces its database's contents inside its
        # writer transaction: other connections see the old data or the new,
        # whole. ATTACH and the foreign-keys switch cannot happen inside it.
        main_db = store.db_path.name
        try:
            conn = store.connect()
            conn.execute(f"ATTACH DATABASE ? AS {ATTACH_AS}", (str(new / DB_DIR / main_db),))
            conn.execute("PRAGMA foreign_keys=OFF")
        except sqlite3.Error as exc:
            _discard(work)
            raise StorageError(f"cannot open the staged database: {exc}",
                               hint="check free space and permissions") from None
    journal = work / "journal.json"
    journaled = False
    try:
        with _store_lock(store):
            staged = _stage_project(root, store, _default_dir(root), "pre-restore")
            with _cleanup(staged.directory):
                pre = _write_archive(staged, _destination(root, None, "pre-restore"))
            _record(root, "backup_created", pre.path, pre.manifest, actor,
                    {"reason": "pre-restore"})
            _carry_over(root, new)
            _atomic(journal, plan.to_json())
            journaled = True
            _roll_forward(root, work, plan, stop_before_copy=True)
            if conn is not None:
                _replace_contents(conn, ATTACH_AS)
            # Still under the lock: a writer that waited for it re-reads the marker
            # once it has it (Project.follow_backend), so it writes where the data is.
            _write_marker(root, plan.marker)
        # Committed: for the database backend, when the lock above was released.
    except BaseException as exc:
        if journaled:
            try:
                plan.state = "rolling-back"
                _atomic(journal, plan.to_json())
                _roll_back(root, work, plan)
            except (OSError, MilestoneError) as undo:
                raise StorageError(
                    f"the restore failed ({exc}) and could not be undone ({undo}); the previous "
                    f"data is in {work / 'old'}", hint="run `milestone restore` again to undo it"
                ) from exc
        _discard(work)
        raise
    finally:
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"DETACH DATABASE {ATTACH_AS}")
                conn.execute("PRAGMA foreign_keys=ON")
    _close(store)
    if main_db is not None:
        plan.db_copy = [n for n in plan.db_copy if n != main_db]
    try:
        _roll_forward(root, work, plan)
    except MilestoneError as exc:
        raise StorageError(f"the restore did not finish: {exc.message}",
                           hint="run any `milestone backup` or `restore` to finish it") from None
    return pre


def _roll_forward(root: Path, work: Path, plan: _Plan, stop_before_copy: bool = False) -> None:
    """Do (or finish) each step of the swap; every step may be repeated safely."""
    new, old = work / "new", work / "old"
    try:
        old.mkdir(exist_ok=True)
        _swap_config(root, new, old, plan)
        for d in plan.dirs_in:
            _swap_dir(root / d, new / d, old / d)
        for d in plan.dirs_out:
            if (root / d).exists():
                _rename(root / d, old / d)
        if plan.db_rename:
            (root / DB_DIR).mkdir(exist_ok=True)
        for n in plan.db_rename:
            if (new / DB_DIR / n).exists() and not (root / DB_DIR / n).exists():
                _rename(new / DB_DIR / n, root / DB_DIR / n)
        if stop_before_copy:
            return
        for n in plan.db_copy:
            if (new / DB_DIR / n).exists():
                _copy_into(root / DB_DIR / n, new / DB_DIR / n)
        _write_marker(root, plan.marker)
        # The marker names the archive's backend now: no new command opens a
        # database the archive has not got, so it (and its WAL) can go.
        for n in plan.db_drop:
            for suffix in ("", "-wal", "-shm", "-journal"):
                src = root / DB_DIR / f"{n}{suffix}"
                if src.exists():
                    (old / DB_DIR).mkdir(exist_ok=True)
                    _rename(src, old / DB_DIR / f"{n}{suffix}")
    except OSError as exc:
        raise fsutil.storage_error(exc, root, "restore into") from None
    _discard(work)


def _swap_config(root: Path, new: Path, old: Path, plan: _Plan) -> None:
    """File by file, so config/ and its backend marker never disappear, even briefly."""
    keep = {*plan.config_files, MARKER}
    for rel in _files_under(root, "config"):
        if rel not in keep:
            (old / rel).parent.mkdir(parents=True, exist_ok=True)
            _rename(root / rel, old / rel)
    (root / "config").mkdir(exist_ok=True)
    for d in plan.config_dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for rel in plan.config_files:
        if not (new / rel).exists():
            continue  # replaced already
        if (root / rel).exists() and not (old / rel).exists():
            (old / rel).parent.mkdir(parents=True, exist_ok=True)
            fsutil.refuse_links(root / rel)
            shutil.copy2(root / rel, old / rel)  # for an undo; the live file stays put
        os.replace(new / rel, root / rel)
    fsutil.fsync_dir(root / "config")


def _swap_dir(live: Path, staged: Path, aside: Path) -> None:
    if not staged.exists():
        return  # swapped already
    if live.exists():
        if aside.exists():
            raise StorageError(f"cannot finish the interrupted restore: {live}, {staged} and "
                               f"{aside} all exist", hint="move the right one into place by hand")
        os.rename(live, aside)
    os.rename(staged, live)  # no fsync between the two: the gap stays microseconds
    for d in {live.parent, aside.parent, staged.parent}:
        fsutil.fsync_dir(d)


def _roll_back(root: Path, work: Path, plan: _Plan) -> None:
    """Undo the renames of a swap that failed before its database transaction committed.

    Each step may be repeated: what is staged goes back to ``new/``, what was
    moved aside comes back from ``old/``.
    """
    new, old = work / "new", work / "old"
    _write_marker(root, plan.old_marker)
    for n in plan.db_rename:
        if (root / DB_DIR / n).exists() and not (new / DB_DIR / n).exists():
            _rename(root / DB_DIR / n, new / DB_DIR / n)
    for d in plan.dirs_out:
        if (old / d).exists() and not (root / d).exists():
            _rename(old / d, root / d)
    for d in reversed(plan.dirs_in):
        if (root / d).exists() and not (new / d).exists():
            _rename(root / d, new / d)
        if (old / d).exists() and not (root / d).exists():
            _rename(old / d, root / d)
    for rel in plan.config_files:
        if (new / rel).exists():
            continue  # never replaced
        if (root / rel).exists():
            _rename(root / rel, new / rel)
        if (old / rel).exists():
            _rename(old / rel, root / rel)
    for rel in _files_under(old, "config"):
        if rel not in plan.config_files and not (root / rel).exists():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            _rename(old / rel, root / rel)


def _files_under(base: Path, top: str) -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(base / top):
        rel_dir = Path(dirpath).relative_to(base).as_posix()
        out += [f"{rel_dir}/{f}" for f in files]
    return sorted(out)


def _recover_locked(root: Path) -> list[str]:
    """Under .lock: finish a restore a crash interrupted, or undo one that failed."""
    work = root / RESTORE_DIR
    if not work.exists():
        return []
    try:
        raw = fsutil.read_bytes(work / "journal.json", MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        _discard(work)  # staging never finished: the project was not touched
        return ["removed the staging of an interrupted restore (nothing had changed)"]
    except OSError as exc:
        raise fsutil.storage_error(exc, work / "journal.json", "read") from None
    try:
        plan = _Plan.from_json(raw)
    except (ValueError, KeyError, TypeError):
        raise StorageError(f"{work / 'journal.json'} is unreadable",
                           hint="finish the restore by hand from .milestones/.restore/") from None
    if plan.state == "rolling-back":
        try:
            _roll_back(root, work, plan)
        except OSError as exc:
            raise fsutil.storage_error(exc, root, "undo the failed restore in") from None
        _discard(work)
        return ["undid a restore that had failed part-way"]
    _roll_forward(root, work, plan)
    return ["finished a restore that was interrupted"]


def _replace_contents(conn: sqlite3.Connection, src: str) -> None:
    """Make ``main`` hold exactly the schema and rows of the attached ``src``.

    Runs inside the caller's write transaction (DDL is transactional in SQLite),
    with foreign keys off; the rows were checked by ``foreign_key_check`` when
    the archive was staged, and are checked again here before the commit.
    """
    q = _quote
    for kind, name in conn.execute(
            "SELECT type, name FROM main.sqlite_master WHERE type IN ('view', 'trigger') "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").fetchall():
        conn.execute(f"DROP {kind.upper()} IF EXISTS main.{q(name)}")
    for (name,) in conn.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").fetchall():
        conn.execute(f"DROP TABLE IF EXISTS main.{q(name)}")
    objects = conn.execute(
        f"SELECT type, name, sql FROM {src}.sqlite_master WHERE sql IS NOT NULL "
        f"AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid").fetchall()
    tables = [(n, s) for t, n, s in objects if t == "table"]
    for _name, sql in tables:
        conn.execute(sql)  # unqualified: created in main
    for name, _sql in tables:
        cols = [r[1] for r in conn.execute(f"PRAGMA {src}.table_xinfo({q(name)})") if r[6] == 0]
        try:
            conn.execute(f"SELECT rowid FROM {src}.{q(name)} LIMIT 0")
            cols = ["rowid", *cols] if "rowid" not in cols else cols
        except sqlite3.OperationalError:
            pass  # WITHOUT ROWID
        names = ", ".join(c if c == "rowid" else q(c) for c in cols)
        conn.execute(f"INSERT INTO main.{q(name)} ({names}) SELECT {names} FROM {src}.{q(name)}")
    has_seq = conn.execute(f"SELECT 1 FROM {src}.sqlite_master WHERE name = 'sqlite_sequence'"
                           ).fetchone()
    if has_seq and conn.execute("SELECT 1 FROM main.sqlite_master WHERE name = "
                                "'sqlite_sequence'").fetchone():
        conn.execute("DELETE FROM main.sqlite_sequence")
        conn.execute(f"INSERT INTO main.sqlite_sequence SELECT * FROM {src}.sqlite_sequence")
    for kind, _name, sql in objects:
        if kind != "table":
            conn.execute(sql)
    for pragma in ("user_version", "application_id"):
        value = int(conn.execute(f"PRAGMA {src}.{pragma}").fetchone()[0])
        conn.execute(f"PRAGMA main.{pragma} = {value}")
    orphans = conn.execute("PRAGMA main.foreign_key_check").fetchall()
    if orphans:
        raise StorageError(f"the restored database has rows whose foreign keys point nowhere "
                           f"(table {orphans[0][0]})", hint=_DAMAGED)


def _copy_into(live: Path, staged: Path) -> None:
    """Replace a live database's contents with a staged one's, in one transaction."""
    try:
        conn = _connect_existing(live)
        try:
            conn.execute(f"ATTACH DATABASE ? AS {ATTACH_AS}", (str(staged),))
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("BEGIN IMMEDIATE")
            try:
                _replace_contents(conn, ATTACH_AS)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute(f"DETACH DATABASE {ATTACH_AS}")
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise Conflict(f"{live} stayed busy for over {fsutil.lock_timeout():g}s",
                           hint="retry, or raise MILESTONE_LOCK_TIMEOUT") from None
        raise StorageError(f"cannot restore {live}: {exc}", hint="run `milestone doctor`"
                           ) from None
    except sqlite3.Error as exc:
        raise StorageError(f"cannot restore {live}: {exc}", hint="run `milestone doctor`"
                           ) from None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _carry_over(root: Path, new: Path) -> None:
    """Keep the live audit trail of backups and restores rather than the archive's."""
    live = root / SYSTEM_LOG
    if live.is_file():
        (new / SYSTEM_LOG).parent.mkdir(parents=True, exist_ok=True)
        fsutil.refuse_links(live)
        shutil.copy2(live, new / SYSTEM_LOG)


# ------------------------------------------------------------------ helpers


def _project_root(root: Path) -> Path:
    root = Path(root).absolute()
    if not root.is_dir():
        raise NotFound(f"no milestone project at {root}", hint="run `milestone init` first")
    return root


def _require_file(path: Path) -> None:
    if not path.exists():
        raise InvalidInput(f"no backup at {path}", hint="check the path (`ls .milestones/"
                                                     "database/backup/` lists the backups)")
    try:
        fsutil.check_input(path, what=str(path))  # a FIFO or a device: refused at once
    except OSError as exc:
        raise fsutil.storage_error(exc, path, "read") from None


def _open_archive(path: Path) -> IO[bytes]:
    """The archive opened for reading; a regular file (checked on the open file)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise fsutil.not_regular(path, mode, str(path))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def restore_limit() -> int:
    """The largest member a restore unpacks (``MILESTONE_RESTORE_MAX_BYTES``, default
    1 GiB); all members together may be four times that."""
    raw = os.environ.get("MILESTONE_RESTORE_MAX_BYTES", "")
    return int(raw) if raw.isascii() and raw.isdigit() and int(raw) > 0 else MAX_MEMBER_BYTES


def _check_bounds(path: Path, manifest: Manifest, into: Path | None) -> None:
    """Refuse, before a byte is unpacked, an archive whose declared sizes are out of
    bounds: a member over ``restore_limit()`` (a milestone file over the 10 MB any
    read refuses), all of them over four times that, or more than the free space
    where they would be unpacked. Members are then checked against these declared
    sizes as they stream, so a gzip bomb never reaches the disk."""
    from .yamlio import MAX_FILE_BYTES

    limit = restore_limit()
    hint = ("it may be a decompression bomb; if the backup is genuine, raise "
            "MILESTONE_RESTORE_MAX_BYTES")
    for m in manifest.members:
        cap = MAX_FILE_BYTES if m.path.split("/")[0] in ("active", "completed") else limit
        if m.size > cap:
            raise InvalidInput(f"{path}: member {m.path} declares {m.size:,} bytes, over the "
                               f"{cap:,} bytes a restore unpacks", hint=hint)
    total = sum(m.size for m in manifest.members)
    if total > 4 * limit:
        raise InvalidInput(f"{path}: its members declare {total:,} bytes in all, over the "
                           f"{4 * limit:,} bytes a restore unpacks", hint=hint)
    if into is not None:
        try:
            free = shutil.disk_usage(into).free
        except OSError:
            return
        if total > free:
            raise StorageError(f"{path}: its members need {total:,} bytes; {into} has "
                               f"{free:,} free", hint="free some space and retry")


def _check_reason(reason: str) -> None:
    if not _REASON_RE.match(reason):
        raise InvalidInput(f"backup reason {reason!r} is not allowed",
                           hint="use lower-case letters, digits and '-' (e.g. pre-migrate)")


def _default_dir(root: Path) -> Path:
    return root / BACKUP_DIR


def _destination(root: Path, dest: Path | None, reason: str) -> Path:
    """The archive's path: a new name in the default directory or ``dest``'s."""
    if dest is not None:
        dest = Path(dest).absolute()
        if not dest.is_dir():
            if dest.exists() or dest.is_symlink():
                raise InvalidInput(f"{dest} already exists",
                                   hint="give a new file name, or a directory to put it in")
            _refuse_inside_data(root, dest)
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise fsutil.storage_error(exc, dest.parent, "create") from None
            return dest
        folder = dest
    else:
        folder = _default_dir(root)
    _refuse_inside_data(root, folder / "x")
    now = datetime.now(UTC)
    while True:
        candidate = folder / f"backup-{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{reason}.tar.gz"
        if not candidate.exists():
            return candidate
        now += timedelta(microseconds=1)


def _refuse_inside_data(root: Path, dest: Path) -> None:
    where = dest.parent.resolve()
    base = root.resolve()
    for d in DATA_DIRS:
        if where == base / d or (base / d) in where.parents:
            raise InvalidInput(f"{dest} is inside the project's data ({d}/)",
                               hint="put backups elsewhere (default: .milestones/database/backup/)")


def _auto_prune(root: Path, written: Path, reason: str) -> tuple[Path, ...]:
    """After an automatic backup in the default directory: keep ``backup.retention``."""
    if reason == MANUAL or written.parent.resolve() != _default_dir(root).resolve():
        return ()
    try:
        keep = retention(root)
    except MilestoneError:
        return ()  # a broken config keeps every backup: safer than guessing
    return tuple(prune_backups(root, keep))


@contextlib.contextmanager
def _store_lock(store: Store) -> Iterator[None]:
    """The store's writer lock, when it is not the .lock the caller already holds."""
    from .file import FileStore

    if isinstance(store, FileStore) or not store.exists():
        # A FileStore's lock is .lock (flock would wait for our own descriptor);
        # a database that is not there has no writers to keep out.
        yield
        return
    with store.lock():
        yield


def _close(store: Store) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


@contextlib.contextmanager
def _cleanup(path: Path) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _discard(work: Path) -> None:
    """Remove ``.restore/``: the journal first, so a crash here is no restore to finish."""
    with contextlib.suppress(FileNotFoundError):
        (work / "journal.json").unlink()
        fsutil.fsync_dir(work)
    shutil.rmtree(work, ignore_errors=True)
    fsutil.fsync_dir(work.parent)


def _rename(src: Path, dest: Path) -> None:
    os.rename(src, dest)
    fsutil.fsync_dir(dest.parent)
    if src.parent != dest.parent:
        fsutil.fsync_dir(src.parent)


def _atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(path, data)


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record(root: Path, event: str, path: Path, manifest: Manifest, actor: str | None,
            extra: dict[str, Any]) -> None:
    """Append one line to logs/system-events.jsonl (never to the progress event log).
    ``actor`` is who the caller says it is (``milestones.ops.backup`` resolves it for a
    door); None is recorded as null."""
    line = {
        "timestamp": _utc_now(),
        "event": event,
        "path": str(path),
        "backend": manifest.backend,
        "members": len(manifest.members),
        "actor": actor,
        "event_count": manifest.event_count,
        **extra,
    }
    log = root / SYSTEM_LOG
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fsutil.storage_error(exc, log.parent, "create") from None
    fsutil.append_durable(log, (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))

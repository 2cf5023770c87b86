"""The backup archive's records and limits (Member, Manifest, BackupInfo, RestoreInfo),
and the helpers backup and restore share: paths, locks, atomic renames, the
system-events record.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidInput, NotFound, StorageError
from . import Store, fsutil
from .backup_due import BACKUP_DIR

STAGE_PREFIX = ".backup.tmp-"
FORMAT = "milestone-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DATA_DIRS = ("active", "completed", "config", "logs", "agents")  # agents: coord records
DB_DIR = "database"
MARKER = "config/storage-backend.txt"
SYSTEM_LOG = "logs/system-events.jsonl"
RESTORE_DIR = ".restore"
LOCK_NAME = ".lock"
DEFAULT_RETENTION = 10
SCHEDULED = "scheduled"
ATTACH_AS = "restore_src"

MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_MEMBER_BYTES = 1024 * 1024 * 1024  # per member; 4x for all (see restore_limit)
MAX_PATH = 1024
CHUNK = 1024 * 1024

_REASON_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
TEMP_RE = re.compile(r"^\..+\.tmp-")
DAMAGED = "the archive is damaged or was altered; use another backup"


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

# ------------------------------------------------------------------ helpers


def project_root(root: Path) -> Path:
    root = Path(root).absolute()
    if not root.is_dir():
        raise NotFound(f"no milestone project at {root}", hint="run `milestone init` first")
    return root


def require_file(path: Path) -> None:
    if not path.exists():
        raise InvalidInput(f"no backup at {path}", hint="check the path (`ls .milestones/"
                                                     "database/backup/` lists the backups)")
    try:
        fsutil.check_input(path, what=str(path))  # a FIFO or a device: refused at once
    except OSError as exc:
        raise fsutil.storage_error(exc, path, "read") from None


def open_archive(path: Path) -> IO[bytes]:
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


def check_bounds(path: Path, manifest: Manifest, into: Path | None) -> None:
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


def check_reason(reason: str) -> None:
    if not _REASON_RE.match(reason):
        raise InvalidInput(f"backup reason {reason!r} is not allowed",
                           hint="use lower-case letters, digits and '-' (e.g. pre-migrate)")


def default_dir(root: Path) -> Path:
    return root / BACKUP_DIR


def destination(root: Path, dest: Path | None, reason: str) -> Path:
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
        folder = default_dir(root)
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



@contextlib.contextmanager
def store_lock(store: Store) -> Iterator[None]:
    """The store's writer lock, when it is not the .lock the caller already holds."""
    from .file import FileStore

    if isinstance(store, FileStore) or not store.exists():
        # A FileStore's lock is .lock (flock would wait for our own descriptor);
        # a database that is not there has no writers to keep out.
        yield
        return
    with store.lock():
        yield


def close_quietly(store: Store) -> None:
    close = getattr(store, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


@contextlib.contextmanager
def cleanup(path: Path) -> Iterator[None]:
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


def discard(work: Path) -> None:
    """Remove ``.restore/``: the journal first, so a crash here is no restore to finish."""
    with contextlib.suppress(FileNotFoundError):
        (work / "journal.json").unlink()
        fsutil.fsync_dir(work)
    shutil.rmtree(work, ignore_errors=True)
    fsutil.fsync_dir(work.parent)


def rename_durably(src: Path, dest: Path) -> None:
    os.rename(src, dest)
    fsutil.fsync_dir(dest.parent)
    if src.parent != dest.parent:
        fsutil.fsync_dir(src.parent)


def atomic_target(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(path, data)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_system_event(root: Path, event: str, path: Path, manifest: Manifest, actor: str | None,
            extra: dict[str, Any]) -> None:
    """Append one line to logs/system-events.jsonl (never to the progress event log).
    ``actor`` is who the caller says it is (``milestones.ops.backup`` resolves it for a
    door); None is recorded as null."""
    line = {
        "timestamp": utc_now(),
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

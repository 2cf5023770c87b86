"""Making and reading archives: staging a project's files (databases through SQLite's
online backup), writing the tar with its manifest, reading one back and checking
every member.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import re
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeGuard
from urllib.parse import quote

from .. import __version__
from ..errors import MilestoneError, StorageError
from . import BACKENDS, Store, fsutil
from .archive import (
    CHUNK,
    DAMAGED,
    DATA_DIRS,
    DB_DIR,
    FORMAT,
    FORMAT_VERSION,
    HEX64,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    MAX_PATH,
    STAGE_PREFIX,
    TEMP_RE,
    Manifest,
    Member,
    check_bounds,
    open_archive,
    require_file,
    utc_now,
)
from .sqlite import copy_database

# ----------------------------------------------------------- backup: staging


@dataclass(frozen=True)
class _Staged:
    directory: Path
    manifest: Manifest


@dataclass(frozen=True)
class Written:
    path: Path
    manifest: Manifest
    archive_size: int


KEY_FILE = "encryption.key"  # config/encryption.key* (milestones.project.crypto)


def stage_project(root: Path, store: Store, parent: Path, reason: str) -> _Staged:
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
            state = store.head_state()  # the head only: not every snapshot in memory
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
        for db in live_databases(root):
            fsutil.refuse_links(db)
            rel = f"{DB_DIR}/{db.name}"
            dest = stage / rel
            dest.parent.mkdir(exist_ok=True)
            _sqlite_copy(db, dest)
            members.append(_hash_member(dest, rel))
        if store.backend == "postgres":  # its rows, as a SQLite database (storage.postgres)
            rel = f"{DB_DIR}/{POSTGRES_COPY}"
            store.backup(stage / rel)
            members.append(_hash_member(stage / rel, rel))
        manifest = Manifest(
            backend=store.backend,
            created_at=utc_now(),
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
        dirnames[:] = sorted(d for d in dirnames if not TEMP_RE.match(d))
        for d in dirnames:  # os.walk lists a linked folder but does not enter it
            if os.path.islink(os.path.join(dirpath, d)):
                raise fsutil.link_refused(os.path.join(dirpath, d))
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        dirs.append(rel_dir)
        (stage / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            if TEMP_RE.match(name) or (rel_dir == "config" and name.startswith(KEY_FILE)):
                continue  # the encryption key never travels with the data it protects
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


POSTGRES_COPY = "postgres-copy.db"  # a postgres project's rows in its backup archives


def live_databases(root: Path) -> list[Path]:
    folder = root / DB_DIR
    return [folder / n for n in fsutil.list_existing(folder)
            if n.endswith(".db") and not n.startswith(".") and n != POSTGRES_COPY
            and (folder / n).is_file()]


def connect_existing(path: Path) -> sqlite3.Connection:
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


def write_archive(staged: _Staged, dest: Path) -> Written:
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
    return Written(dest, manifest, dest.stat().st_size)


def _tarinfo(name: str, size: int, mode: int, mtime_ns: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode & 0o777
    info.mtime = mtime_ns // 1_000_000_000
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


# ----------------------------------------------------------- reading archives


def read_archive(path: Path, into: Path | None) -> Manifest:
    """Check every member against the manifest; with ``into``, extract them there too."""
    require_file(path)
    try:
        with open_archive(path) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            return _read_members(path, tar, into)
    except StorageError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, UnicodeError) as exc:
        raise StorageError(f"{path}: not a readable backup archive ({exc or 'cut short'})",
                           hint=DAMAGED) from None
    except OSError as exc:
        raise fsutil.storage_error(exc, path, "read") from None


def _read_members(path: Path, tar: tarfile.TarFile, into: Path | None) -> Manifest:
    # One pass, in order: in stream mode a member can be read only as it goes by.
    members = iter(tar)
    first = next(members, None)
    if first is None:
        raise StorageError(f"{path}: the archive is empty", hint=DAMAGED)
    if first.name != MANIFEST_NAME or first.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise StorageError(f"{path}: the first member is {first.name!r}, not {MANIFEST_NAME}",
                           hint="this is not a milestone backup, or it was altered")
    if first.size > MAX_MANIFEST_BYTES:
        raise StorageError(f"{path}: {MANIFEST_NAME} is {first.size:,} bytes, too large",
                           hint=DAMAGED)
    handle = tar.extractfile(first)
    assert handle is not None  # a regular file always has one
    manifest = _parse_manifest(path, handle.read())
    check_bounds(path, manifest, into)
    expected = {m.path: m for m in manifest.members}
    if into is not None:
        for d in manifest.dirs:
            _mkdir(into / d)
    seen: set[str] = set()
    for info in members:
        name = info.name
        problem = _bad_path(name)
        if problem:
            raise StorageError(f"{path}: member {name!r} {problem}", hint=DAMAGED)
        if name in seen or name == MANIFEST_NAME:
            raise StorageError(f"{path}: member {name} appears twice", hint=DAMAGED)
        seen.add(name)
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise StorageError(f"{path}: member {name} is not a regular file", hint=DAMAGED)
        want = expected.get(name)
        if want is None:
            raise StorageError(f"{path}: member {name} is not in the manifest", hint=DAMAGED)
        if info.size != want.size:
            raise StorageError(f"{path}: member {name} is {info.size} bytes; the manifest "
                               f"says {want.size}", hint=DAMAGED)
        data = tar.extractfile(info)
        assert data is not None
        _check_member(path, want, data, into)
    missing = [m.path for m in manifest.members if m.path not in seen]
    if missing:
        raise StorageError(f"{path}: member {missing[0]} is missing"
                           + (f" (and {len(missing) - 1} more)" if missing[1:] else ""),
                           hint=DAMAGED)
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
                           f"manifest", hint=DAMAGED)
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
        return StorageError(f"{path}: {MANIFEST_NAME}: {what}", hint=DAMAGED)

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
                or not isinstance(head.get("hash"), str) or not HEX64.match(head["hash"]):
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
            raise StorageError(f"{path}: member {name!r} {problem}", hint=DAMAGED)
        if name in paths:
            raise bad(f"member {name} is listed twice")
        paths.add(name)
        size, digest = item.get("size"), item.get("sha256")
        mode, mtime = item.get("mode", 0o644), item.get("mtime_ns", 0)
        if not _is_count(size) or not isinstance(digest, str) or not HEX64.match(digest) \
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

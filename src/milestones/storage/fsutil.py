"""Durable file primitives: atomic replace, fsync'd append, the writer lock."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import Conflict, StorageError

DEFAULT_LOCK_TIMEOUT = 10.0


def loads_json(data: str | bytes) -> Any:
    """``json.loads``, with JSON nested past Python's recursion limit failing as any
    malformed JSON does (a ValueError), not as a RecursionError no reader expects."""
    import json

    try:
        return json.loads(data)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None


def storage_error(exc: OSError, path: Path | str, action: str) -> StorageError:
    """Turn an OSError into one clear line naming the path and a fix."""
    reason = exc.strerror or str(exc)
    hints = {
        errno.EACCES: "check the directory's permissions (it must be writable)",
        errno.EPERM: "check the directory's permissions (it must be writable)",
        errno.EROFS: "the file system is read-only; work on a writable copy",
        errno.ENOSPC: "the disk is full; free some space and retry",
        errno.EDQUOT: "the disk quota is exceeded; free some space and retry",
    }
    return StorageError(
        f"cannot {action} {path}: {reason}",
        hint=hints.get(exc.errno or 0, "check the path and retry"),
    )


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync the directory.

    ``sync=False`` leaves out both fsyncs: for a bulk copy that is not in use yet and
    ends with one ``sync_everything()`` (a migration's thousands of files), and for
    derived files the store can rebuild (a reader sees the old or the new content;
    after a power cut the file may be old or empty, which its reader handles)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise storage_error(exc, path, "write") from None
    if sync:
        fsync_dir(path.parent)


def sync_everything() -> None:
    """Flush every file written so far to disk (one ``sync()`` for a bulk copy)."""
    os.sync()


def append_durable(path: Path, data: bytes) -> int:
    """Append ``data`` and fsync; return the file's size before the append."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise storage_error(exc, path, "append to") from None
    try:
        before = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        except OSError as exc:
            # Leave no partial record behind: the append is all or nothing.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)
                os.fsync(fd)
            raise storage_error(exc, path, "append to") from None
        return before
    finally:
        os.close(fd)


def truncate_durable(path: Path, size: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def lock_timeout() -> float:
    raw = os.environ.get("MILESTONE_LOCK_TIMEOUT")
    try:
        return float(raw) if raw else DEFAULT_LOCK_TIMEOUT
    except ValueError:
        return DEFAULT_LOCK_TIMEOUT


def _open_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM) and path.exists():
            # flock works on a read-only descriptor; the write itself will fail
            # later with a clear storage error.
            return os.open(path, os.O_RDONLY)
        raise storage_error(exc, path, "open the lock file") from None


_HELD: dict[tuple[str, int], int] = {}  # (lock path, thread) -> depth: re-entrant per thread


@contextlib.contextmanager
def writer_lock(path: Path, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive flock on ``path``, waiting at most ``timeout`` seconds.

    Re-entrant within a thread (a migration holding the lock may take a backup),
    exclusive between threads and processes.
    """
    key = (os.path.abspath(path), threading.get_ident())  # one lock, however named
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    import fcntl  # here, not at the top: a read that finds nothing to sync takes no lock

    limit = lock_timeout() if timeout is None else timeout
    fd = _open_lock(path)
    try:
        deadline = time.monotonic() + limit
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Conflict(
                        f"the project is busy: another milestone command has held "
                        f"{path.name} for over {limit:g}s",
                        hint="retry, or raise MILESTONE_LOCK_TIMEOUT",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
        _HELD[key] = 1
        try:
            yield
        finally:
            _HELD.pop(key, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def try_writer_lock(path: Path) -> Iterator[bool]:
    """Take the lock only if it is free now; yield whether it was taken."""
    key = (os.path.abspath(path), threading.get_ident())  # one lock, however named
    if _HELD.get(key):
        yield True
        return
    import fcntl

    try:
        fd = _open_lock(path)
    except StorageError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        _HELD[key] = 1
        try:
            yield True
        finally:
            _HELD.pop(key, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

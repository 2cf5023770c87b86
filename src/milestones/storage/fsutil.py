"""Durable file primitives: atomic replace, fsync'd append, the writer lock.

Every file inside ``.milestones/`` is opened here, and none through a symbolic
link: the last component with ``O_NOFOLLOW``, the folders between ``.milestones``
and it (``.milestones`` included) by ``lstat``. A link is refused with
``InvalidInput`` naming it, so a link planted in the project (a hand edit, a git
pull) can neither redirect a write out of the project nor copy a file from
outside into a backup. Reads refuse anything but a regular file (a FIFO would
block, ``/dev/zero`` never ends) before reading a byte, and files over a limit
before reading them. Temp files get random names created with ``O_EXCL``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import Conflict, InvalidInput, StorageError

DEFAULT_LOCK_TIMEOUT = 10.0
PROJECT_DIR = ".milestones"
_MARK = os.sep + PROJECT_DIR
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
# A backup's staging folder in .milestones/ (group 1: the backup's process id).
BACKUP_STAGE_RE = re.compile(r"^\.backup\.tmp-([0-9]+)-")


def shown(path: Path | str) -> str:
    """``path`` as the user knows it: from ``.milestones/`` on when it is inside one."""
    parts = Path(path).parts
    if PROJECT_DIR in parts:
        i = len(parts) - 1 - parts[::-1].index(PROJECT_DIR)
        return "/".join(parts[i:])
    return str(path)


def link_refused(path: Path | str) -> InvalidInput:
    return InvalidInput(
        f"{shown(path)} is a symbolic link — milestone does not follow links inside "
        f"{PROJECT_DIR}/",
        hint="replace it with the file (or folder) itself",
    )


def refuse_links(path: Path | str, *, last: bool = True) -> None:
    """Raise ``InvalidInput`` if ``path``, or a folder between ``.milestones`` and it
    (``.milestones`` itself included), is a symbolic link; ``last=False`` leaves out
    ``path`` itself (opened with ``O_NOFOLLOW`` by the caller). Paths outside a
    project are not checked. A component that does not exist ends the walk."""
    text = os.fspath(path)
    cut = len(text)
    while True:  # the last ".milestones" that is a whole component
        cut = text.rfind(_MARK, 0, cut)
        if cut < 0 or text[cut + len(_MARK):cut + len(_MARK) + 1] in ("", os.sep):
            break
    if cut < 0:
        if not text.startswith(PROJECT_DIR) or text[len(PROJECT_DIR):][:1] not in ("", os.sep):
            return
        cut = -1
    ends = []
    pos = cut + len(_MARK)
    while pos != -1:
        ends.append(pos)
        pos = text.find(os.sep, pos + 1)
    if last:
        ends.append(len(text))
    for end in dict.fromkeys(ends):  # each folder once, in order
        here = text[:end]
        if not here or here.endswith(os.sep):
            continue
        try:
            st = os.lstat(here)
        except OSError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise link_refused(here)


def open_nofollow(path: Path | str, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that follows no link inside ``.milestones/`` (see the module doc)."""
    refuse_links(path, last=False)
    try:
        return os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
            raise link_refused(path) from None
        raise


def not_regular(path: Path | str, mode: int, what: str | None = None) -> InvalidInput:
    kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return InvalidInput(f"{what or shown(path)} is {kind}, not a regular file",
                        hint="give the path of a regular file")


def too_big(path: Path | str, size: int, limit: int, what: str | None = None) -> InvalidInput:
    mib = f"{limit / 1024 / 1024:g} MB " if limit >= 1024 * 1024 else ""
    return InvalidInput(
        f"{what or shown(path)} is {size:,} bytes, over the {mib}({limit:,} bytes) limit",
        hint="split it into smaller files",
    )


def _read_fd(fd: int, path: Path | str, limit: int | None, what: str | None) -> bytes:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(path, st.st_mode, what)
    if limit is not None and st.st_size > limit:
        raise too_big(path, st.st_size, limit, what)
    chunks = []
    total = 0
    # The size fstat gave is read (one read for most files); a file reporting 0
    # (some special file systems) is read to its end, within the limit.
    while (st.st_size == 0 or total < st.st_size) and (
            chunk := os.read(fd, max(65536, min(st.st_size - total, 1 << 24)))):
        total += len(chunk)
        if limit is not None and total > limit:
            raise too_big(path, total, limit, what)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_bytes(path: Path | str, limit: int | None = None) -> bytes:
    """The bytes of a file inside the project: no link followed, a regular file only,
    at most ``limit`` bytes (checked before reading). OSErrors (FileNotFoundError...)
    pass through for the caller to word."""
    fd = open_nofollow(path, os.O_RDONLY | _NONBLOCK)
    try:
        return _read_fd(fd, path, limit, None)
    finally:
        os.close(fd)


def list_existing(folder: Path) -> list[str]:
    """The names in ``folder``, sorted; none when it is not there; any other OSError a
    ``StorageError`` naming the folder."""
    try:
        return sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise storage_error(exc, folder, "list") from None


def owner_name(uid: int) -> str:
    """The OS user owning a file (``st_uid``): the account name, else the number as text."""
    try:
        import pwd
    except ImportError:  # pragma: no cover  (Windows: no owner names)
        return str(uid)
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def read_existing(path: Path) -> bytes | None:
    """``read_bytes`` of a file that may not be there (None then); any other OSError a
    ``StorageError`` naming the file."""
    try:
        return read_bytes(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise storage_error(exc, path, "read") from None


def open_read(path: Path | str) -> BinaryIO:
    """A file inside the project opened for reading (binary), as ``read_bytes`` checks it."""
    fd = open_nofollow(path, os.O_RDONLY | _NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(path, st.st_mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_input(path: Path | str, limit: int, what: str | None = None) -> bytes:
    """The bytes of a file the user named (a plan, a spec, a template): links are fine
    there, but it must be a regular file of at most ``limit`` bytes, both checked before
    a byte is read, so a FIFO or ``/dev/zero`` is refused at once (``InvalidInput``).
    One inside ``.milestones/`` (a project template) follows no link, as any file there."""
    refuse_links(path)
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC)  # a FIFO must not block the open
    try:
        return _read_fd(fd, path, limit, what)
    finally:
        os.close(fd)


def check_input(path: Path | str, limit: int | None = None, what: str | None = None) -> int:
    """Check a file the user named as ``read_input`` does, without reading it; its size."""
    refuse_links(path)
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(path, st.st_mode, what)
    if limit is not None and st.st_size > limit:
        raise too_big(path, st.st_size, limit, what)
    return st.st_size


def temp_name(path: Path) -> Path:
    """An unpredictable temp name beside ``path`` (``.NAME.tmp-PID-RANDOM``)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{_token()}")


def _token() -> str:
    return os.urandom(8).hex()  # (not ``secrets``: its import costs start-up time)


def create_temp(path: Path, mode: int = 0o644, *, checked: bool = False) -> tuple[Path, int]:
    """Create a new temp file beside ``path`` exclusively (``O_EXCL``, no link
    followed, so a file planted at the name cannot receive the data); (name, fd).
    ``checked``: the caller has refused links in ``path``'s folders already."""
    if not checked:
        refuse_links(path.parent)
    for _ in range(100):
        tmp = temp_name(path)
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
                                | _CLOEXEC, mode)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp name", str(path))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's: alive
    return True


def remove_dead_temps(folder: Path, pattern: re.Pattern[str]) -> list[str]:
    """Remove what a killed process left in ``folder``: the entries ``pattern`` matches
    (its group 1 is the process id) whose process is gone; their names. A live
    process's are kept. One ``listdir``: cheap enough for every command."""
    try:
        refuse_links(folder)  # nothing is removed through a link either
        names = os.listdir(folder)
    except (InvalidInput, OSError):
        return []
    removed = []
    for name in names:
        m = pattern.match(name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        path = folder / name
        try:
            if stat.S_ISDIR(os.lstat(path).st_mode):
                import shutil

                shutil.rmtree(path)
            else:
                os.unlink(path)
            removed.append(name)
        except OSError:
            continue
    return removed


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


_disk_full = False  # fault(): a step ending in "+" fired; every later write fails


def fault(step: str, *, space: bool = True) -> None:
    """Fault injection for the tests: raise ENOSPC at ``step`` when ``$MILESTONE_FAULT``
    (comma-separated step names) names it. ``STEP+`` is a disk that fills up at STEP:
    that step and every later one that needs space (``space``) fail. Steps: ``log-append``,
    ``log-fsync``, ``log-undo``, ``write:<file name>``, ``index``, ``db-insert``,
    ``db-commit``, ``resume``, ``rotate:<step>``, ``backup``, ``metrics``, ``scale``."""
    spec = os.environ.get("MILESTONE_FAULT")
    if not spec:
        return
    global _disk_full
    hit = False
    for item in spec.split(","):
        if item == step:
            hit = True
        elif item.endswith("+") and item[:-1] == step:
            hit = _disk_full = True
    if hit or (_disk_full and space):
        raise OSError(errno.ENOSPC, f"No space left on device (injected at {step})")


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


def atomic_write(path: Path, data: bytes, *, sync: bool = True, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, fsync the directory;
    ``mode``: the new file's (0o600 for a secret).

    ``sync=False`` leaves out both fsyncs: for a bulk copy that is not in use yet and
    ends with one ``sync_everything()`` (a migration's thousands of files), and for
    derived files the store can rebuild (a reader sees the old or the new content;
    after a power cut the file may be old or empty, which its reader handles)."""
    refuse_links(path)  # replacing a link is no follow, but one there is a plant
    tmp: Path | None = None
    try:
        tmp, fd = create_temp(path, mode, checked=True)
        try:
            fault(f"write:{path.name}")
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
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise storage_error(exc, path, "write") from None
    except BaseException:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    if sync:
        fsync_dir(path.parent)


def sync_everything() -> None:
    """Flush every file written so far to disk (one ``sync()`` for a bulk copy)."""
    os.sync()


def append_durable(path: Path, data: bytes) -> int:
    """Append ``data`` and fsync; return the file's size before the append."""
    try:
        fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NONBLOCK)
    except OSError as exc:
        raise storage_error(exc, path, "append to") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_regular(path, mode)
    try:
        before = os.fstat(fd).st_size
        try:
            fault("log-append")
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            fault("log-fsync")
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
    fault("log-undo", space=False)  # a shrink needs no space: only named, it fails
    fd = open_nofollow(path, os.O_WRONLY)
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
        return open_nofollow(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM) and path.exists():
            # flock works on a read-only descriptor; the write itself will fail
            # later with a clear storage error.
            return open_nofollow(path, os.O_RDONLY)
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

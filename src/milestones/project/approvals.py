"""Which shell commands from task data this machine's user has approved.

``milestone execute`` runs commands taken from the plan: each task's ``run`` and
the config's ``blockers.test_command``. A command set through the tool (``task add
--run``, ``task edit --run``, ``plan --from-file``, the Python API) is the person's
own act and approved as it is written. One that arrived any other way (a hand
edit, a ``git pull``, a restored backup, an import) is not run until a person
approves it: ``execute`` lists it and asks, or, with no terminal to ask on,
refuses and names ``--approve-commands``.

The record of approvals must not be forgeable by the files it guards, and
everything in the working tree can arrive by a pull. So each approval is an
HMAC of the command under a key that never leaves this machine
(``$XDG_STATE_HOME/milestone/approval.key``, default
``~/.local/state/milestone/approval.key``, made on first use), kept one a line
in ``.milestones/performance/approved-commands`` (git-ignored, per machine). A
pulled or hand-written line matches nothing without the key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from ..errors import MilestoneError
from ..storage import fsutil

STORE = "performance/approved-commands"
KEY_NAME = "approval.key"


def _key_path() -> Path | None:
    base = os.environ.get("XDG_STATE_HOME") or ""
    try:
        root = Path(base) if base and Path(base).is_absolute() else \
            Path.home() / ".local" / "state"
    except (RuntimeError, KeyError):  # no home directory to be found
        return None
    return root / "milestone" / KEY_NAME


def _key(create: bool) -> bytes | None:
    """This machine's key; made (atomically, mode 0600) when ``create``. None when
    there is none and none can be made (no home, a read-only one)."""
    path = _key_path()
    if path is None:
        return None
    with contextlib.suppress(OSError):
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    if not create:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{KEY_NAME}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process made one first: theirs
            os.link(tmp, path)
        os.unlink(tmp)
        data = path.read_bytes()
    except OSError:
        return None
    return data if len(data) >= 32 else None


def _mac(key: bytes, command: str) -> str:
    return hmac.new(key, command.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def _stored(root: Path) -> set[str]:
    try:
        return set(fsutil.read_bytes(root / STORE).decode("ascii", "replace").split())
    except (OSError, MilestoneError):
        return set()


def unapproved(root: Path, commands: Iterable[str]) -> list[str]:
    """The commands (in order, once each) this machine's user has not approved."""
    wanted = list(dict.fromkeys(c for c in commands if c and c.strip()))
    if not wanted:
        return []
    key = _key(create=False)
    if key is None:
        return wanted
    seen = _stored(root)
    return [c for c in wanted if _mac(key, c) not in seen]


def approve(root: Path, commands: Iterable[str]) -> bool:
    """Record the commands as approved here: one append. False when they could not
    be recorded (no key, no writable project); the caller may still run them once."""
    wanted = [c for c in dict.fromkeys(commands) if c and c.strip()]
    if not wanted or not root.is_dir():
        return bool(not wanted)
    key = _key(create=True)
    if key is None:
        return False
    seen = _stored(root)
    lines = [m for m in dict.fromkeys(_mac(key, c) for c in wanted) if m not in seen]
    if not lines:
        return True
    path = root / STORE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, ("\n".join(lines) + "\n").encode("ascii"))
        finally:
            os.close(fd)
        _ignore(path.parent)
    except OSError:
        return False
    return True


def _ignore(folder: Path) -> None:
    """Keep the record out of git (performance/.gitignore, shared with the metrics)."""
    gi = folder / ".gitignore"
    with contextlib.suppress(OSError):
        if not gi.exists():  # the same first lines the CLI's metrics write (cli/__init__.py)
            gi.write_text("# per machine: command timings, the scale policy's memo\n"
                          "metrics.jsonl\nscale-state.json\n", "utf-8")
        text = gi.read_text("utf-8")
        if "approved-commands" not in text.split():
            with gi.open("a", encoding="utf-8") as f:
                f.write(("" if not text or text.endswith("\n") else "\n")
                        + "approved-commands\n")


__all__ = ["approve", "unapproved"]

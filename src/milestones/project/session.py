"""Who acts, in which work session, and where in git: read without subprocesses."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SESSION_IDLE_SECONDS = 30 * 60


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def today() -> str:
    return datetime.now(UTC).date().isoformat()


GIT_FILE_LIMIT = 4 * 1024 * 1024  # a config, HEAD, a ref, packed-refs


def _text(path: Path) -> str | None:
    """A git file's text, or None when it is missing or unreadable. Read as an input
    file: a regular file of bounded size, checked before a byte is read, so a FIFO or
    a device planted as .git/HEAD or ~/.gitconfig never hangs a command."""
    from ..errors import MilestoneError
    from ..storage.fsutil import read_input

    try:
        return read_input(path, GIT_FILE_LIMIT).decode("utf-8", errors="replace")
    except (OSError, MilestoneError):
        return None


def find_git_dir(start: Path) -> Path | None:
    for d in (start, *start.parents):
        g = d / ".git"
        if g.is_dir():
            return g
        if g.is_file():  # a worktree: "gitdir: /path"
            text = (_text(g) or "").strip()
            if text.startswith("gitdir:"):
                return (d / text.split(":", 1)[1].strip()).resolve()
    return None


_SECTION = re.compile(r"^\s*\[\s*([^\]\s]+)[^\]]*\]\s*$")
_EMAIL = re.compile(r"^\s*email\s*=\s*(.+?)\s*$", re.IGNORECASE)


def _git_config_email(path: Path) -> str | None:
    text = _text(path)
    if text is None:
        return None
    lines = text.splitlines()
    section = ""
    email = None
    for line in lines:
        if m := _SECTION.match(line):
            section = m.group(1).lower()
        elif section == "user" and (m := _EMAIL.match(line)):
            email = m.group(1).strip('"')
    return email


def git_email(cwd: Path) -> str | None:
    """user.email from the repository, then the global config files (last wins as git does)."""
    candidates: list[Path] = []
    home = Path.home()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    candidates += [xdg / "git" / "config", home / ".gitconfig"]
    gd = find_git_dir(cwd)
    if gd is not None:
        common = _text(gd / "commondir")
        if common is not None:
            gd = (gd / common.strip()).resolve()
        candidates.append(gd / "config")
    email = None
    for path in candidates:
        email = _git_config_email(path) or email
    return email


def resolve_actor(cwd: Path) -> str:
    """MILESTONE_USER, else git's user.email, else the OS user."""
    env = os.environ.get("MILESTONE_USER", "").strip()
    if env:
        return env
    email = git_email(cwd)
    if email:
        return email
    import getpass  # on first use: most actors come from the environment or git

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def git_position(cwd: Path) -> dict[str, Any]:
    """The branch and commit checked out, read from .git directly."""
    gd = find_git_dir(cwd)
    if gd is None:
        return {"branch": None, "commit": None}
    head = (_text(gd / "HEAD") or "").strip()
    if not head:
        return {"branch": None, "commit": None}
    if not head.startswith("ref:"):
        return {"branch": None, "commit": head}
    ref = head.split(":", 1)[1].strip()
    if not ref.startswith("refs/") or ".." in ref.split("/"):
        return {"branch": None, "commit": None}  # not a ref git would write: no path from it
    branch = ref.removeprefix("refs/heads/")
    common = gd
    commondir = _text(gd / "commondir")
    if commondir is not None:
        common = (gd / commondir.strip()).resolve()
    for base in (gd, common):
        commit = _text(base / ref)
        if commit is not None:
            return {"branch": branch, "commit": commit.strip()}
    for line in (_text(common / "packed-refs") or "").splitlines():
        if line.endswith(" " + ref) and line.split():
            return {"branch": branch, "commit": line.split()[0]}
    return {"branch": branch, "commit": None}


def new_session_id(now: str) -> str:
    stamp = now.replace("-", "").replace(":", "").replace("T", "-").rstrip("Z")
    import secrets  # on first use: it loads hashlib (OpenSSL), ~5 ms at start-up

    return f"s-{stamp}-{secrets.token_hex(2)}"


def resolve_session(actor: str, resume: dict[str, Any], now: str) -> str:
    """MILESTONE_SESSION_ID, else the actor's session unless idle for 30 minutes."""
    env = os.environ.get("MILESTONE_SESSION_ID", "").strip()
    if env:
        return env
    known = (resume.get("sessions") or {}).get(actor) or {}
    last = known.get("last_active")
    if known.get("id") and last:
        try:
            idle = (
                datetime.fromisoformat(now.replace("Z", "+00:00"))
                - datetime.fromisoformat(last.replace("Z", "+00:00"))
            ).total_seconds()
        except ValueError:
            idle = SESSION_IDLE_SECONDS + 1
        if idle <= SESSION_IDLE_SECONDS:
            return str(known["id"])
    return new_session_id(now)

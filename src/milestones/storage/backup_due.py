"""Whether a ``scheduled`` backup is due: the check every write on the database backend
makes, kept apart from the backup machinery (``backup``, ``archive``: tarfile, gzip,
hashlib, ~40 ms of imports) so a write that finds none due imports none of it."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..errors import InvalidInput
from . import fsutil

BACKUP_DIR = "database/backup"
DEFAULT_EVERY_HOURS = 24
MANUAL = "manual"
NAME_RE = re.compile(r"^backup-([0-9]{8}T[0-9]{6}\.[0-9]{6}Z)-([a-z0-9][a-z0-9-]*)\.tar\.gz$")


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
    stamps = [m.group(1) for n in names if (m := NAME_RE.match(n)) and m.group(2) != MANUAL]
    if not stamps:
        return None
    return datetime.fromisoformat(max(stamps))  # basic ISO 8601, ...Z: aware, UTC


def due(root: Path, *, now: datetime | None = None,
        began: Callable[[], datetime | None] | None = None) -> bool:
    """Is a ``scheduled`` backup due: the newest automatic one ``backup.every_hours``
    old or more (``began``, when the project's data began, stands in for it before
    the first)? Never, with ``every_hours`` 0."""
    hours = every_hours(root)
    if not hours:
        return False
    newest = newest_automatic_backup(root)
    if newest is None and began is not None:
        newest = began()
    moment = now or datetime.now(UTC)
    return newest is None or moment - newest >= timedelta(hours=hours)

"""Backup and restore as a person or agent runs them: who acts, then the archive.

The archive itself (its format, checks, the crash-safe swap and its recovery) is
the storage layer's (``milestones.storage.backup``): the service layer takes
scheduled backups and finishes an interrupted restore before a write, so it
lives below it. This module is what a door calls: it names the actor the way
every command does (``milestones.project.session``) and hands over.
"""

from __future__ import annotations

from pathlib import Path

from ..project.session import resolve_actor
from ..storage.archive import BackupInfo, Manifest, RestoreInfo
from ..storage.backup import create_backup, verify_backup
from ..storage.restore import restore_backup

__all__ = ["BackupInfo", "Manifest", "RestoreInfo", "backup", "restore", "verify_backup"]


def backup(root: Path, dest: Path | None = None, *, actor: str | None = None) -> BackupInfo:
    """A manual backup of the project at ``root`` (``dest``: a file or a directory)."""
    return create_backup(root, dest, actor=actor or resolve_actor(Path.cwd()))


def may_restore(root: Path, actor: str) -> None:
    """Refuse (exit 6, recorded) unless ``actor`` may restore: an admin operation, only
    an owner restores (``access``). The CLI asks before its prompt, too."""
    from ..project.access import require_at

    require_at(root, "admin", operation="restore", actor=actor, target=None)


def restore(root: Path, archive: Path, *, actor: str | None = None) -> RestoreInfo:
    """Replace the project's data at ``root`` with ``archive`` (checked whole first)."""
    who = actor or resolve_actor(Path.cwd())
    may_restore(root, who)
    return restore_backup(root, archive, actor=who)

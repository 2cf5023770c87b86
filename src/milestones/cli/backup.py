"""Backup commands: backup, restore."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..ui import plural
from .group import State, cli, say


def _where() -> tuple[Path, str]:
    """The project's .milestones/ and who acts, without opening its store.

    restore must work on a project whose data is damaged, so it needs no more
    than the directory.
    """
    from ..project import find_root
    from ..project.session import resolve_actor

    start = click.get_current_context().find_object(State).directory  # type: ignore[union-attr]
    return find_root(start), resolve_actor(start or Path.cwd())


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            break
    return f"{size:.1f} {unit}"


@cli.command()
@click.option("--to", "dest", type=click.Path(), default=None,
              help="A new file to write, or a directory to put it in (a trailing / makes "
                   "one); default: .milestones/database/backup/.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def backup(dest: str | None, as_json: bool) -> None:
    """Write one archive of the project's data, with a SHA-256 for every file.

    A database is copied through SQLite's online backup API, so the copy is
    consistent even while other commands write. Backups in the default
    directory are named backup-<UTC time>-<reason>.tar.gz; manual ones are
    never pruned.

    \b
    Examples:
      milestone backup
      milestone backup --to ~/backups/
      milestone backup --to /mnt/usb/plan-before-release.tar.gz --json
    """
    from ..ops.backup import backup as create_backup

    root, actor = _where()
    target = Path(dest).expanduser() if dest else None
    if dest and target and dest.endswith(("/", os.sep)):
        target.mkdir(parents=True, exist_ok=True)
    info = create_backup(root, target, actor=actor)
    m = info.manifest
    if m.warning and not as_json:
        from ..ui import inert

        click.echo(inert(f"milestone: warning: {m.warning}"), err=True)
    say(f"Backed up {root} ({m.backend} backend, {plural(m.event_count or 0, 'event')}, "
        f"{plural(len(m.members), 'file')}) to {info.path} ({_size(info.archive_size)})",
        {"backup": info.to_dict()}, as_json)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def restore(path: Path, yes: bool, as_json: bool) -> None:
    """Replace the project's data with the backup at PATH (asks first unless --yes).

    Every file's SHA-256 is checked first: a damaged archive is refused and
    nothing changes. The current state is saved as a pre-restore backup in
    .milestones/database/backup/ before anything is replaced.

    \b
    Examples:
      milestone restore .milestones/database/backup/backup-20250301T101502.123456Z-manual.tar.gz
      milestone restore ~/backups/plan.tar.gz --yes --json
    """
    from ..ops.backup import may_restore, verify_backup
    from ..ops.backup import restore as restore_backup

    root, actor = _where()
    manifest = verify_backup(path)
    if not yes:
        may_restore(root, actor)  # refused before the question, not after it
        click.confirm(
            f"Restore {path} ({manifest.backend} backend, "
            f"{plural(manifest.event_count or 0, 'event')}, "
            f"made {manifest.created_at}) over {root}? The current state is backed up first.",
            abort=True, err=True)
    info = restore_backup(root, path, actor=actor)
    head = (info.manifest.last_hash or "")[:12]
    say(f"Restored {info.path}: {info.manifest.backend} backend, "
        f"{plural(info.manifest.event_count or 0, 'event')}" + (f" (head {head})" if head else "")
        + f". The previous state is in {info.pre_restore.path}",
        {"restore": info.to_dict()}, as_json)

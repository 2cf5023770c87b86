"""Storage commands: storage migrate, storage rollback, storage status."""

from __future__ import annotations

import json

import click

from ..storage import BACKENDS
from . import cli, get_project, say


@cli.group()
def storage() -> None:
    """Inspect and move the project's storage backend.

    \b
    Examples:
      milestone storage status
      milestone storage migrate --to database
      milestone storage rollback
    """


@storage.command("migrate")
@click.option("--to", "to", type=click.Choice(BACKENDS), required=True,
              help="The backend to move to.")
@click.option("--dry-run", is_flag=True, help="Say what would be copied; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def storage_migrate(to: str, dry_run: bool, as_json: bool) -> None:
    """Move the project to another backend with no downtime; roll back on any failure.

    Steps: lock, backup, copy, verify (counts, a checksum per milestone, the event
    count and chain head), switch, log. Commands run by others meanwhile wait for
    the lock and then use the new backend.

    \b
    Examples:
      milestone storage migrate --to database --dry-run
      milestone storage migrate --to database
    """
    from ..migrate import migrate

    project = get_project()
    report = migrate(project.root, to, dry_run=dry_run, actor=project.actor)
    src = report["source"]
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif dry_run:
        click.echo(f"Would migrate {report['from']} → {to}: {src['milestones']} milestones, "
                   f"{src['tasks']} tasks, {src['events']} events")
    else:
        click.echo(f"Migrated {report['from']} → {to} in {report['seconds']}s: "
                   f"{src['milestones']} milestones, {src['tasks']} tasks, {src['events']} "
                   f"events verified (backup: {report['backup']})")


@storage.command("rollback")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def storage_rollback(as_json: bool) -> None:
    """Go back to the backend used before the last migration, keeping every change since.

    \b
    Example:
      milestone storage rollback
    """
    from ..errors import InvalidInput
    from ..migrate import migrate, previous_backend

    project = get_project()
    previous = previous_backend(project.root)
    if previous is None:
        raise InvalidInput("there is no migration to roll back",
                           hint="see `milestone storage status`")
    report = migrate(project.root, previous, actor=project.actor)
    say(f"Rolled back {report['from']} → {previous}", {"report": report}, as_json)

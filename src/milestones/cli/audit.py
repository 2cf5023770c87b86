"""``milestone audit``: the event log verified end to end, and who changed what."""

from __future__ import annotations

import click

from .activity import since_arg
from .group import cli, emit, get_project, output_options


@cli.command()
@click.option("--since", help="Only summarise events since: 30m, 2h, 3d, 1w, or an ISO "
                              "date/time (the whole chain is verified regardless).")
@click.option("--actor", help="Only summarise this actor's events and access denials.")
@output_options
def audit(since: str | None, actor: str | None, as_json: bool, ui: str | None) -> None:
    """Verify the event log's hash chain end to end, then say who changed what.

    Reads the rotated archives and the live log (the events table on the database
    backend) as a stream. The first tampered, missing or reordered event is named
    FILE:LINE with its event id, and the command exits 8. Otherwise it lists, per
    actor, the events by type with the first and last time, the hand edits (with
    the OS user that owned the edited file) and the access_denied records of
    logs/security-events.jsonl. Changes nothing.

    \b
    Examples:
      milestone audit
      milestone audit --since 1w --actor bob@example.com
      milestone audit --json
    """
    from ..ops import audit as au

    data = au.run(get_project(), since=since_arg(since), actor=actor)
    emit(data, "audit", as_json, ui if ui else "simple")

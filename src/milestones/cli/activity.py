"""Read commands: status, list, show, next, log, resume; and note."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import click

from ..errors import InvalidInput
from ..project import EVENT_TYPES, MILESTONE_STATUSES, PRIORITIES, utc_stamp
from . import reads
from .group import cli, emit, get_project, output_options, say

_AGO = re.compile(r"^([0-9]+)([mhdw])$")


def since_arg(value: str | None) -> str | None:
    """30m, 2h, 3d, 1w, or an ISO date/time -> ISO UTC timestamp prefix for comparison."""
    if value is None:
        return None
    text = value.strip()
    m = _AGO.match(text)
    try:
        if m:
            unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
            digits = m.group(1)  # int() of thousands of digits raises; 12 leave the calendar
            ago = int(digits) if len(digits) <= 12 else 10**12
            return utc_stamp(datetime.now(UTC) - timedelta(**{unit: ago}))
        return utc_stamp(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise InvalidInput(
            f"--since {value!r} is not a time",
            hint="use 30m, 2h, 3d, 1w, or a date like 2026-11-01",
        ) from None
    except OverflowError:  # 99999999999d; 0001-01-01T00:00+14:00 is before year 1 in UTC
        raise InvalidInput(
            f"--since {value!r} is outside the calendar (years 1 to 9999)",
            hint="give a shorter span, or a date like 2026-11-01",
        ) from None


@cli.command()
@click.argument("ref", required=False)
@click.option("--all", "-a", "all_", is_flag=True, help="Every milestone, not only the current.")
@output_options
def status(ref: str | None, all_: bool, as_json: bool, ui: str | None) -> None:
    """Progress of the current milestone (or REF, or --all).

    \b
    Examples:
      milestone status
      milestone status 3 --ui rich
      milestone status --all --json
    """
    reads.status(get_project, ref, all_, as_json, ui)


@cli.command("list")
@click.option(
    "--status",
    "-s",
    "statuses",
    multiple=True,
    type=click.Choice(MILESTONE_STATUSES),
    help="Only these statuses (repeatable).",
)
@click.option("--tag", "tags", multiple=True, help="Only milestones with this tag (repeatable).")
@click.option("--owner", help="Only this owner's milestones.")
@click.option("--priority", "-p", "priorities", multiple=True, type=click.Choice(PRIORITIES))
@click.option("--overdue", is_flag=True, help="Only milestones past their due date.")
@click.option("--all", "-a", "all_", is_flag=True, help="Include archived milestones.")
@click.option("--limit", "-n", type=click.IntRange(min=1), default=None,
              help="A page of at most N milestones (JSON: next_after names the next page).")
@click.option("--after", metavar="ID", default=None,
              help="Only milestones after this id (the page after --limit's last).")
@output_options
def list_(
    statuses: tuple[str, ...],
    tags: tuple[str, ...],
    owner: str | None,
    priorities: tuple[str, ...],
    overdue: bool,
    all_: bool,
    limit: int | None,
    after: str | None,
    as_json: bool,
    ui: str | None,
) -> None:
    """List milestones (archived ones only with --all), by id.

    \b
    Examples:
      milestone list --status in_progress --tag backend
      milestone list --overdue --json
      milestone list --limit 50 --after milestone-050
    """
    reads.list_(get_project, statuses, tags, owner, priorities, overdue, all_, limit, after,
                as_json, ui)


@cli.command()
@click.argument("ref")
@click.option("--critical-path", "critical", is_flag=True,
              help="Also show the critical path, each task's slack and the projected finish.")
@output_options
def show(ref: str, critical: bool, as_json: bool, ui: str | None) -> None:
    """Everything about a milestone (3) or a task (3/2).

    The JSON of a milestone always carries critical_path, feasibility and, per
    task, slack (hours it can slip without delaying the milestone).

    \b
    Examples:
      milestone show 3
      milestone show 3 --critical-path
      milestone show 3/2 --json
    """
    reads.show(get_project, ref, critical, as_json, ui)


@cli.command("next")
@click.argument("ref", required=False)
@click.option("--limit", "-n", type=click.IntRange(min=1),
              help=f"At most this many tasks (text: {reads.NEXT_PAGE} unless --all).")
@click.option("--all", "-a", "all_", is_flag=True, help="Every ready task (text output).")
@output_options
def next_(ref: str | None, limit: int | None, all_: bool, as_json: bool,
          ui: str | None) -> None:
    """Tasks that can start now: dependencies met, by priority then longest chain waiting.

    \b
    Text shows the best 20 and how many more are ready; --json lists every one
    (with "total") unless --limit is given.

    \b
    Examples:
      milestone next
      milestone next --all
      milestone next 3 --limit 1 --json
    """
    reads.next_(get_project, ref, limit, all_, as_json, ui)


@cli.command()
@click.option("--milestone", "-m", help="Only events of this milestone.")
@click.option(
    "--type",
    "-t",
    "types",
    multiple=True,
    metavar="TYPE",
    help=f"Only this event type (repeatable): {', '.join(EVENT_TYPES)}.",
)
@click.option("--actor", help="Only events by this actor.")
@click.option("--since", help="Only events since: 30m, 2h, 3d, 1w, or an ISO date/time.")
@click.option("--limit", "-n", type=click.IntRange(min=0), help="Only the last N events.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events (Ctrl-C stops).")
@output_options
def log(
    milestone: str | None,
    types: tuple[str, ...],
    actor: str | None,
    since: str | None,
    limit: int | None,
    follow: bool,
    as_json: bool,
    ui: str | None,
) -> None:
    """The event log: every change, who made it and when.

    With --follow --json, events stream as one JSON object per line.

    \b
    Examples:
      milestone log --limit 20
      milestone log --milestone 3 --type task_completed --since 1w
      milestone log --follow --json
    """
    project = get_project()
    cutoff = since_arg(since)
    data = project.log_view(
        milestone=milestone, types=types, actor=actor, since=cutoff, limit=limit
    )
    if not follow:
        emit(data, "log", as_json, ui)
        return
    from ..ui import inert_data
    from ..ui.simple import event_line

    last = 0
    for e in project.reveal(data["events"]):
        click.echo(json.dumps(e, ensure_ascii=False) if as_json
                           else event_line(inert_data(e)))
    head = project.state().last_event_id
    last = max([e["event_id"] for e in data["events"]] or [head])
    while True:  # until Ctrl-C or SIGTERM: exit 130, like every command stopped so
        project.wait_for_events(head)  # polls, or waits for PostgreSQL's NOTIFY
        head = project.state().last_event_id
        fresh = project.log_view(
            milestone=milestone, types=types, actor=actor, since=cutoff, after=last
        )["events"]
        for e in project.reveal(fresh):
            click.echo(json.dumps(e, ensure_ascii=False) if as_json
                       else event_line(inert_data(e)))
            last = max(last, e["event_id"])
        if hasattr(project.store, "invalidate"):
            project.store.invalidate()


@cli.command()
@output_options
def resume(as_json: bool, ui: str | None) -> None:
    """Where the last session stopped: what is in progress, blocked, and next.

    \b
    Example:
      milestone resume
    """
    emit(get_project().resume_view(), "resume", as_json, ui)


@cli.command()
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def note(text: str, as_json: bool) -> None:
    """Leave a note for whoever resumes the work (shown by `milestone resume`).

    \b
    Example:
      milestone note "Parser done; next: error messages"
    """
    project = get_project()
    project.note(text)
    mid = project.state().current if as_json else None  # the milestone the note is filed under
    say("Noted.", {"note": text}, as_json, ref=mid, milestone_id=mid)

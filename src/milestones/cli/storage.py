"""Storage commands: storage migrate, storage rollback, storage cleanup, storage status,
storage reindex.

Scale detection (``milestones.ops.scale``) reads the ``scale`` section of
``config/config.yaml``; every key is optional (the defaults are shown):

\b
    scale:
      policy: suggest              # after a command that wrote, when the project has
                                   # outgrown its backend: suggest (one note on
                                   # stderr, at most once a day), auto (migrate and
                                   # say so in one line), off (nothing)
      file_below_milestones: 25    # file while below 25 milestones and a team below 5
      file_below_team: 5
      hybrid_below_milestones: 100 # hybrid while below 100 and 20
      hybrid_below_team: 20        # team: members plus distinct actors, 30 days
      database_below_team: 50      # database beyond; postgres (suggested, never
      database_below_writes_per_minute: 600  # automatic) from a team of 50 or 600
                                   # writes a minute over the last hour
      latency_p95_ms: 500          # p95 of the last 200 successful commands on this
      latency_min_samples: 20      # backend at or above 500 ms (over at least 20
                                   # of them): the next built backend up

A bad value is reported by ``storage status`` and replaced by its default. Each
command's wall time is appended to ``performance/metrics.jsonl``; the last note or
automatic migration is remembered in ``performance/scale-state.json``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..project import BACKENDS
from ..ui import plural
from .group import cli, get_project, say


@cli.group()
def storage() -> None:
    """Inspect and move the project's storage backend.

    \b
    Examples:
      milestone storage status
      milestone storage migrate --to database
      milestone storage rollback
      milestone storage cleanup --dry-run
      milestone storage reindex
    """


@storage.command("migrate")
@click.option("--to", "to", type=click.Choice(BACKENDS), required=True,
              help="The backend to move to.")
@click.option("--url", default=None, metavar="URL",
              help="The PostgreSQL URL (postgresql://...) for --to postgres; kept in "
                   "~/.config/milestone/database-url (0600) for later commands.")
@click.option("--dry-run", is_flag=True, help="Say what would be copied; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def storage_migrate(to: str, url: str | None, dry_run: bool, as_json: bool) -> None:
    """Move the project to another backend with no downtime; roll back on any failure.

    Steps: lock, backup, copy, verify (counts, a checksum per milestone, the event
    count and chain head), switch, log. Commands run by others meanwhile wait for
    the lock and then use the new backend.

    \b
    Examples:
      milestone storage migrate --to database --dry-run
      milestone storage migrate --to database
      milestone storage migrate --to postgres --url postgresql://me@db.example/plans
    """
    from ..ops.migrate import migrate
    from ..ui.progress import copy_progress

    project = get_project()
    if url is not None:
        from ..project import use_database_url

        use_database_url(url)
    with copy_progress(_bar_wanted(as_json) and not dry_run) as progress:
        report = migrate(project.root, to, dry_run=dry_run, actor=project.actor,
                         progress=progress)
    _kept_aside(report)
    src = report["source"]
    if as_json:
        click.echo(json.dumps({"schema": 1, "ref": None, "milestone_id": None, **report},
                              indent=2))
    elif dry_run:
        click.echo(f"Would migrate {report['from']} → {to}: "
                   f"{plural(src['milestones'], 'milestone')}, {plural(src['tasks'], 'task')}, "
                   f"{plural(src['events'], 'event')}")
    else:
        click.echo(f"Migrated {report['from']} → {to} in {report['seconds']}s: "
                   f"{plural(src['milestones'], 'milestone')}, {plural(src['tasks'], 'task')}, "
                   f"{plural(src['events'], 'event')} verified (backup: {report['backup']})")


def _bar_wanted(as_json: bool) -> bool:
    """The copy's progress bar: on a terminal only (never on a pipe, nor with --json)."""
    return not as_json and sys.stderr.isatty()


@storage.command("rollback")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def storage_rollback(as_json: bool) -> None:
    """Go back to the backend used before the last migration, keeping every change since.

    \b
    Example:
      milestone storage rollback
    """
    from ..errors import InvalidInput
    from ..ops.migrate import migrate, previous_backend
    from ..ui.progress import copy_progress

    project = get_project()
    previous = previous_backend(project.root)
    if previous is None:
        raise InvalidInput("there is no migration to roll back",
                           hint="see `milestone storage status`")
    with copy_progress(_bar_wanted(as_json)) as progress:
        report = migrate(project.root, previous, actor=project.actor, progress=progress)
    _kept_aside(report)
    say(f"Rolled back {report['from']} → {previous}", {"report": report}, as_json)


@storage.command("cleanup")
@click.option("--dry-run", is_flag=True, help="List what would be removed; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def storage_cleanup(dry_run: bool, yes: bool, as_json: bool) -> None:
    """Remove the data files of the backends the project no longer uses.

    A migration leaves the previous backend's files where they were, as they were
    at the switch; nothing reads them again (`storage rollback` copies from the
    backend in use). This removes them, under the writer lock. Backups stay. A YAML
    file edited after a move to the database is not removed: it is kept aside in
    .milestones/kept-edits/ and named.

    \b
    Examples:
      milestone storage cleanup --dry-run
      milestone storage cleanup --yes
    """
    from ..ops.migrate import cleanup, leftovers

    project = get_project()
    backend, files = leftovers(project.root)
    if files and not dry_run and not yes:
        click.confirm(f"Remove {plural(len(files), 'file')} of other backends, no longer read "
                      f"(the project uses {backend})?", abort=True, err=True)
    report = cleanup(project.root, dry_run=dry_run, actor=project.actor)
    _kept_aside(report)
    if not report["files"]:
        say(f"Nothing to remove: only the {report['backend']} backend's files are here",
            {"report": report}, as_json)
        return
    listing = "\n".join(f"  {f}" for f in report["files"])
    verb = "Would remove" if dry_run else "Removed"
    say(f"{verb} {plural(len(report['files']), 'file')}, {report['bytes']:,} bytes, that the "
        f"{backend} backend does not read:\n{listing}", {"report": report}, as_json)


@storage.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def storage_status(as_json: bool) -> None:
    """Show the backend, what it holds, each scale signal against its thresholds, the
    recommendation and why, and the last migrations.

    Thresholds and the policy (suggest, auto, off) are the `scale` keys of
    config/config.yaml.

    \b
    Examples:
      milestone storage status
      milestone storage status --json
    """
    from ..ops.scale import status

    data = status(get_project())
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    from ..ui import inert_data

    click.echo(render_status(inert_data(data)))


@storage.command("reindex")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def storage_reindex(as_json: bool) -> None:
    """Rebuild the hybrid backend's index (database/index.db) from the YAML snapshots.

    Under the writer lock, after recording any hand edits. Safe at any time: the
    index holds nothing the YAML files and the log do not. Use it when the index
    was deleted, damaged or copied from elsewhere.

    \b
    Example:
      milestone storage reindex
    """
    count = get_project().reindex()
    say(f"Indexed {plural(count, 'milestone')} (database/index.db)", {"indexed": count}, as_json)


def _kept_aside(report: dict[str, Any]) -> None:
    """One line on stderr per YAML file edited while no backend read it: named, with
    where it now is (or would go) and how to apply it."""
    folder = report.get("kept_folder")
    for rel in report.get("kept_aside") or ():
        where = f"kept aside as {folder}/{rel}" if folder else "would be kept aside"
        click.echo(f"milestone: warning: .milestones/{rel} was edited while the project did "
                   f"not read it; not applied, {where} — copy it back over .milestones/{rel} "
                   f"(on the file backend) to apply it as a hand edit", err=True)


def render_status(data: dict[str, Any]) -> str:
    """The text form of `storage status`."""
    c, sig, rec = data["counts"], data["signals"], data["recommendation"]
    lat, team, feats = sig["latency"], sig["team"], sig["features"]

    def limits(name: str) -> str:
        return ", ".join(f"{t} below {n}" for t, n in sig[name]["thresholds"].items())

    used = [f for f, on in feats.items() if on is True]
    p95 = "n/a" if lat["p95_ms"] is None else f"{lat['p95_ms']:.0f} ms"
    rows = [
        ("milestones", str(sig["milestones"]["value"]), limits("milestones"),
         sig["milestones"]["tier"]),
        ("team", str(team["value"]), limits("team"), team["tier"]),
        ("latency p95", p95, f"move up at {lat['threshold_ms']:g} ms (over >= "
         f"{lat['min_samples']} commands; {lat['samples']} recorded)", lat["tier"]),
        ("features", ", ".join(used) or "none", "agents, dashboard: hybrid or above",
         feats["tier"]),
    ]
    lines = [
        f"Backend: {data['backend']} (built: {', '.join(data['available'])})",
        f"Holds: {plural(c['milestones'], 'milestone')}, {plural(c['tasks'], 'task')}, "
        f"{plural(c['events'], 'event')}",
        f"Policy: {data['policy']}",
        "",
        f"{'signal':<12} {'value':<10} {'thresholds':<52} fits",
    ]
    lines += [f"{a:<12} {b:<10} {t:<52} {d}" for a, b, t, d in rows]
    lines.append(f"  (team: {team['members']} members in config, {len(team['recent_actors'])} "
                 f"actors in the last {team['window_days']} days)")
    lines += ["", f"Recommendation: {rec['summary']}"]
    lines += [f"Config problem: {p}" for p in data["problems"]]
    lines += ["", "Last migrations:" if data["migrations"] else "No migrations yet."]
    for m in data["migrations"]:
        what = (f"completed in {m.get('seconds')}s" if m.get("event") == "migration_completed"
                else f"rolled back at the {m.get('step')} step: {m.get('error')}")
        lines.append(f"  {m.get('timestamp')}  {m.get('from')} → {m.get('to')}  {what}")
    return "\n".join(lines)

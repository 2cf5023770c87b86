"""``milestone analytics``: throughput, cycle time, estimates, blockers, forecast."""

from __future__ import annotations

import click

from .activity import since_arg
from .group import cli, emit, get_project, output_options


@cli.command()
@click.argument("ref", required=False)
@click.option("--since", help="Only events since: 30m, 2h, 3d, 1w, or an ISO date/time.")
@click.option("--rebuild", is_flag=True,
              help="Rebuild database/analytics.db from the whole event log first.")
@output_options
def analytics(ref: str | None, since: str | None, rebuild: bool, as_json: bool,
              ui: str | None) -> None:
    """Throughput, cycle and lead time, estimate accuracy, blockers, WIP and a forecast.

    Figures come from the event log, through rollups kept in
    .milestones/database/analytics.db (updated from the last event they saw;
    rebuilt when the log was re-chained, or with --rebuild; deleting it loses
    nothing). REF narrows to one milestone. The forecast per milestone is a
    Monte Carlo over the project's weekly throughput (p50, p85, p95 dates), or
    says the history is too short.

    \b
    Examples:
      milestone analytics
      milestone analytics 3 --since 4w
      milestone analytics --json --rebuild
    """
    from ..ops import analytics as an

    cutoff = since_arg(since)
    data = an.report(get_project(), ref, cutoff, rebuild=rebuild)
    emit({"schema": an.SCHEMA, **data}, "analytics", as_json, ui if ui else "simple")

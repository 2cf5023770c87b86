"""Project commands: init, demo, doctor, completion."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .group import State, cli, emit, get_project, output_options, say


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def init(ctx: click.Context, directory: Path | None, as_json: bool) -> None:
    """Start tracking a project: create .milestones/ in DIRECTORY (default: here).

    \b
    Example:
      milestone init
    """
    from ..project import Project

    base = directory or ctx.find_object(State).directory or Path.cwd()  # type: ignore[union-attr]
    project, created = Project.init(base)
    root = project.root
    say(
        f"{'Initialized' if created else 'Already initialized:'} {root}"
        + ('\nNext: milestone plan "First milestone" --task "First task"' if created else ""),
        {"root": str(root), "created": created, "backend": project.store.backend},
        as_json,
    )


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--ui", type=click.Choice(("simple", "rich")), default=None)
def demo(directory: Path | None, ui: str | None) -> None:
    """Create a sample project (in a temporary directory unless given one) and show it.

    \b
    Examples:
      milestone demo
      milestone demo /tmp/try-milestone
    """
    from ..ops.demo import build_demo

    project = build_demo(directory)
    click.echo(f"Sample project created in {project.root.parent}\n")
    emit(project.status_view(all_=True), "status", False, ui)
    click.echo(
        f"\nTry:\n  cd {project.root.parent}\n  milestone next\n  milestone show 1\n"
        f"  milestone task start 1/4\n  milestone log --limit 5\n  milestone resume"
    )


@cli.command()
@click.option("--repair", is_flag=True, help="Fix what can be fixed without guessing.")
@output_options
def doctor(repair: bool, as_json: bool, ui: str | None) -> None:
    """Check the event log's hash chain, the snapshots and the files; --repair fixes.

    Repairs: truncate a torn last log line, finish an interrupted write from the
    log's tail, record hand edits, rewrite snapshots the log disagrees with,
    move log lines that do not verify to logs/quarantine/ (never re-hashed), and
    start a new log from the current state when the old one was deleted.
    Exits 8 when problems remain.

    \b
    Examples:
      milestone doctor
      milestone doctor --repair --json
    """
    from ..ops import doctor as doc

    data = doc.run(get_project(), repair=repair)
    emit(data, "doctor", as_json, ui if ui else "simple")
    if not data["healthy"]:
        sys.exit(8)


@cli.command()
@click.argument("shell", type=click.Choice(("bash", "zsh", "fish")), required=False)
def completion(shell: str | None) -> None:
    """Print the shell completion script.

    \b
    Examples:
      eval "$(milestone completion bash)"      # in ~/.bashrc
      milestone completion fish > ~/.config/fish/completions/milestone.fish
    """
    import os

    from click.shell_completion import get_completion_class

    name = shell or Path(os.environ.get("SHELL", "bash")).name
    comp_cls = get_completion_class(name if name in ("bash", "zsh", "fish") else "bash")
    assert comp_cls is not None
    comp = comp_cls(cli, {}, "milestone", "_MILESTONE_COMPLETE")
    click.echo(comp.source())


@cli.command("event-types", hidden=True)
def event_types() -> None:
    """Print the event types as JSON."""
    from ..project import EVENT_TYPES

    click.echo(json.dumps(EVENT_TYPES, indent=2))

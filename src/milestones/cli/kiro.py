"""Kiro spec workflow commands: import kiro, export kiro, review; and export yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..project import KIRO_GATED
from ..ui import plural
from .group import cli, emit, get_project, output_options, say
from .options import date_arg, json_flag


@cli.group("import")
def import_() -> None:
    """Create milestones from other tools' files.

    \b
    Example:
      milestone import kiro .kiro/specs/user-auth
    """


@import_.command("kiro")
@click.argument("path", type=click.Path(path_type=Path))  # a missing one: InvalidInput (4)
@click.option("--title", help="Milestone title (default: from the spec's name).")
@click.option("--policy", type=click.Choice(("optional", "mandatory")),
              help="optional: spec findings are advice; mandatory: they are enforced.")
@click.option("--enforcement", type=click.Choice(("flexible", "strict")),
              help="flexible: warn; strict: refuse changes that break the workflow.")
@click.option("--due", help="Due date: YYYY-MM-DD, +2w, …")
@json_flag
def import_kiro(path: Path, title: str | None, policy: str | None, enforcement: str | None,
                due: str | None, as_json: bool) -> None:
    """Import a Kiro spec (its directory, or its tasks.md) as a `workflow: kiro` milestone.

    Each checkbox of tasks.md becomes a task (in order: the N-th is task-N), with
    its Kiro number, requirement ids and details; a parent task depends on its
    subtasks.

    \b
    Example:
      milestone import kiro .kiro/specs/user-auth --policy mandatory --enforcement strict
    """
    m = get_project().import_kiro(path, title=title, policy=policy, enforcement=enforcement,
                                  due=date_arg(due, "due date"))
    say(f"Imported {m.id}: {m.title} ({plural(len(m.tasks), 'task')}, Kiro spec "
        f"{(m.kiro or {}).get('spec')})", {"milestone": m.to_dict()} if as_json else None,
        as_json, ref=m.id, milestone_id=m.id)


@cli.group("export")
def export() -> None:
    """Write milestones out in other tools' formats, or as readable YAML.

    \b
    Examples:
      milestone export kiro 3 --to .kiro/specs/user-auth/tasks.md
      milestone export yaml --to review/
    """


@export.command("yaml")
@click.option("--to", "dest", type=click.Path(file_okay=False, path_type=Path),
              help="The directory to write (default: .milestones/export/).")
@json_flag
def export_yaml(dest: Path | None, as_json: bool) -> None:
    """Every milestone as the file backend's YAML, on any backend.

    Writes DIR/active/milestone-NNN.yaml (DIR/completed/ when archived), exactly
    what a migration to the file backend would write: the text a milestone was
    last written as, comments and all, while it still says the same, else a fresh
    dump. Milestone files an earlier export left in DIR are replaced or removed.

    \b
    Examples:
      milestone export yaml
      milestone export yaml --to /tmp/milestones-review
    """
    report = get_project().export_yaml(dest)
    say(f"Exported {plural(report['milestones'], 'milestone')} to {report['path']}",
        {"export": report}, as_json)


@export.command("kiro")
@click.argument("ref")
@click.option("--to", "dest", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of standard output.")
def export_kiro(ref: str, dest: Path | None) -> None:
    """A milestone as a Kiro tasks.md: the imported file with its boxes brought up to date.

    A round trip keeps the file's content: only the boxes of tasks whose status
    changed flip, and tasks added since are appended.

    \b
    Example:
      milestone export kiro 3 --to .kiro/specs/user-auth/tasks.md
    """
    text = get_project().reveal(get_project().export_kiro(ref, dest))
    if dest is None:
        if sys.stdout.isatty():  # a file or pipe gets the exact text; a terminal, inert text
            from ..ui import inert

            text = inert(text, keep_newlines=True)
        click.echo(text, nl=False)
        return
    click.echo(f"Wrote {dest}", err=True)


@cli.command()
@click.argument("ref", required=False)
@click.option("--approve", "approve", metavar="PHASE", type=click.Choice(KIRO_GATED))
@click.option("--reject", "reject", metavar="PHASE", type=click.Choice(KIRO_GATED))
@click.option("--request-changes", "changes", metavar="PHASE", type=click.Choice(KIRO_GATED))
@click.option("--comment", "-m", help="Feedback that goes with the decision.")
@click.option("--pending", is_flag=True, help="List the gates waiting for your role.")
@output_options
def review(ref: str | None, approve: str | None, reject: str | None, changes: str | None,
           comment: str | None, pending: bool, as_json: bool, ui: str | None) -> None:
    """Decide a Kiro gate (requirements, design, tasks), or list what waits for you.

    A gate opens when every role it requires (kiro.approvers) has approved since
    the last rejection; a rejection or change request blocks it with its feedback.

    \b
    Examples:
      milestone review 3 --approve requirements -m "Clear and testable"
      milestone review 3 --request-changes design -m "Say how sessions expire"
      milestone review --pending
    """
    project = get_project()
    if pending:
        emit(project.pending_reviews(), "pending", as_json, ui)
        return
    chosen = [(p, d) for p, d in ((approve, "approve"), (reject, "reject"),
                                  (changes, "request_changes")) if p]
    if ref is None or len(chosen) != 1:
        raise click.UsageError("give REF and exactly one of --approve, --reject, "
                               "--request-changes PHASE (or --pending)")
    phase, decision = chosen[0]
    gate = project.review(ref, phase, decision, comment)
    from ..project import parse_milestone

    mid = parse_milestone(ref)
    say(f"Recorded {decision.replace('_', ' ')} of {phase}: gate {gate['status']}"
        + (f", waiting for {', '.join(gate['waiting_for'])}" if gate["waiting_for"] else ""),
        {"gate": gate}, as_json, ref=mid, milestone_id=mid)

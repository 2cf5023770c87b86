"""Milestone commands: plan, update, current, archive, delete."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidInput
from ..project import CATEGORIES, PRIORITIES
from ..ui import inert, plural
from .group import cli, get_project, say, wrote
from .options import date_arg, json_flag, parse_vars


@cli.command()
@click.argument("title", required=False)
@click.option("--description", "-d", default="", help="What the milestone is for.")
@click.option("--start", help="Start date: YYYY-MM-DD, today, tomorrow, +3d, +2w.")
@click.option("--due", help="Due date, same forms as --start.")
@click.option(
    "--priority", "-p", type=click.Choice(PRIORITIES), default="medium", show_default=True
)
@click.option("--owner", help="Who is accountable.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option(
    "--depends-on", "depends_on", multiple=True, help="A milestone this one waits for (repeatable)."
)
@click.option(
    "--category", default="feature", show_default=True, help=f"e.g. {', '.join(CATEGORIES[:4])}."
)
@click.option("--assignee", "assignees", multiple=True, help="A person working on it (repeatable).")
@click.option("--criterion", "criteria", multiple=True, help="A success criterion (repeatable).")
@click.option("--task", "-t", "tasks", multiple=True, help="A task title (repeatable, in order).")
@click.option(
    "--from-file",
    "from_file",
    type=click.Path(path_type=Path),  # missing or a directory: InvalidInput (4), as restore
    help="Create milestones from a plan.yaml or plan.md file instead.",
)
@click.option("--template", "template_name", help="Start from a template (`template list`).")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A template variable (repeatable).")
@json_flag
def plan(
    title: str | None,
    description: str,
    start: str | None,
    due: str | None,
    priority: str,
    owner: str | None,
    tags: tuple[str, ...],
    depends_on: tuple[str, ...],
    category: str,
    assignees: tuple[str, ...],
    criteria: tuple[str, ...],
    tasks: tuple[str, ...],
    from_file: Path | None,
    template_name: str | None,
    variables: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a milestone with its tasks (it becomes current if none is).

    \b
    Examples:
      milestone plan "Public beta" --due +2w --priority high \\
          --task "Freeze API" --task "Write docs" --task "Ship"
      milestone plan --from-file plan.yaml
      milestone plan --template bugfix --var bug="Login loop" --start today
    """
    project = get_project()
    if from_file is not None:
        if title:
            raise InvalidInput(
                "give either a TITLE or --from-file, not both",
                hint="drop the title; the file names its milestones",
            )
        created = _plan_file(project, from_file, as_json)
    elif template_name is not None:
        created = [project.plan_from_template(
            template_name, title=title, variables=parse_vars(variables),
            start=date_arg(start, "start date"),
            due_date=date_arg(due, "due date"), priority=priority if priority != "medium" else None,
            owner=owner, description=description or None)]
    else:
        if not title:
            raise InvalidInput("missing TITLE", hint='e.g. milestone plan "Public beta"')
        created = [
            project.plan(
                title,
                description=description,
                start=date_arg(start, "start date"),
                due=date_arg(due, "due date"),
                priority=priority,
                owner=owner,
                tags=tags,
                depends_on=depends_on,
                category=category,
                tasks=tasks,
                assignees=assignees,
                success_criteria=criteria,
            )
        ]
    lines = [f"Planned {m.id}: {inert(m.title)} ({plural(len(m.tasks), 'task')})"
             for m in created]
    ids = [m.id for m in created]
    say("\n".join(lines),
        {"milestones": [m.to_dict() for m in created], "refs": ids} if as_json else None,
        as_json, ref=ids[0] if ids else None, milestone_id=ids[0] if ids else None)


PROGRESS_FROM_BYTES = 64 * 1024  # a plan file this big (some 300 milestones) shows a bar


def show_progress(path: Path, as_json: bool) -> bool:
    """A progress bar for ``plan --from-file``: on a terminal (stderr), never with
    --json, and only for a file big enough to take a while."""
    if as_json or not sys.stderr.isatty():
        return False
    try:
        return path.stat().st_size >= PROGRESS_FROM_BYTES
    except OSError:
        return False  # read_plan says what is wrong with it


def _plan_file(project: Any, path: Path, as_json: bool) -> list[Any]:
    """The milestones of a plan file, planned in one write; with a bar on stderr
    (reading, then milestone by milestone with the rate and the time left, then
    writing) when ``show_progress`` says so."""
    from ..project import read_plan

    if not show_progress(path, as_json):
        return list(project.plan_many(read_plan(path)))
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Count(ProgressColumn):
        """``1,804/10,000 1,940/s``: for a stage with a size; blank while reading, writing."""

        def render(self, task: Task) -> Text:
            if task.total is None:
                return Text("")
            rate = f" {task.speed:,.0f}/s" if task.speed else ""
            return Text(f"{task.completed:,.0f}/{task.total:,.0f}{rate}",
                        style="progress.download", no_wrap=True)

    class Left(TimeRemainingColumn):
        def render(self, task: Task) -> Text:
            return Text("") if task.total is None else Text.assemble("eta ", super().render(task))

    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20),
                   Count(), TimeElapsedColumn(), Left(), console=Console(stderr=True),
                   transient=True)
    with bar:
        job = bar.add_task(f"Reading {inert(path.name)}", total=None)
        specs = read_plan(path)
        bar.update(job, description="Planning", total=len(specs), completed=0)

        def step(stage: str, done: int) -> None:
            if stage == "plan":
                bar.update(job, completed=done)
            else:  # validation and the commit: no steps to count
                bar.update(job, visible=False)
                bar.add_task(f"Writing {plural(done, 'milestone')}", total=None)

        return list(project.plan_many(specs, progress=step))


@cli.command()
@click.argument("ref")
@click.option("--title")
@click.option("--description", "-d")
@click.option("--start", help="YYYY-MM-DD, today, tomorrow, +3d, +2w.")
@click.option("--due", help="YYYY-MM-DD, today, tomorrow, +3d, +2w.")
@click.option("--priority", "-p", type=click.Choice(PRIORITIES))
@click.option("--owner")
@click.option("--category")
@click.option(
    "--status", type=click.Choice(("planned", "in_progress", "blocked", "cancelled", "completed"))
)
@click.option("--tag", "tags", multiple=True, help="Replace the tags (repeatable).")
@click.option("--add-tag", "add_tags", multiple=True, help="Add a tag (repeatable).")
@click.option("--remove-tag", "remove_tags", multiple=True, help="Remove a tag (repeatable).")
@click.option("--assignee", "assignees", multiple=True, help="Replace the assignees.")
@click.option("--depends-on", "depends_on", multiple=True, help="Replace milestone dependencies.")
@click.option("--criterion", "criteria", multiple=True, help="Replace the success criteria.")
@json_flag
def update(
    ref: str,
    title: str | None,
    description: str | None,
    start: str | None,
    due: str | None,
    priority: str | None,
    owner: str | None,
    category: str | None,
    status: str | None,
    tags: tuple[str, ...],
    add_tags: tuple[str, ...],
    remove_tags: tuple[str, ...],
    assignees: tuple[str, ...],
    depends_on: tuple[str, ...],
    criteria: tuple[str, ...],
    as_json: bool,
) -> None:
    """Edit a milestone's fields.

    \b
    Examples:
      milestone update 3 --due 2026-12-20 --priority critical
      milestone update 3 --add-tag backend --status cancelled
    """
    m = get_project().update(
        ref,
        title=title,
        description=description,
        start=date_arg(start, "start date"),
        due=date_arg(due, "due date"),
        priority=priority,
        owner=owner,
        category=category,
        status=status,
        tags=list(tags) or None,
        add_tags=add_tags,
        remove_tags=remove_tags,
        assignees=list(assignees) or None,
        depends_on=list(depends_on) or None,
        success_criteria=list(criteria) or None,
    )
    changed = wrote()
    say(f"{'Updated ' if changed else ''}{m.id}: {inert(m.title)}", {"milestone": m.to_dict()},
        as_json, ref=m.id, milestone_id=m.id, changed=changed)


@cli.command()
@click.argument("ref", required=False)
@json_flag
def current(ref: str | None, as_json: bool) -> None:
    """Show the current milestone, or make REF current.

    \b
    Examples:
      milestone current        # which one is current
      milestone current 4      # make milestone-004 current
    """
    project = get_project()
    if ref is not None:
        mid = project.set_current(ref)
        say(f"Current milestone: {mid}", {"current": mid}, as_json, ref=mid, milestone_id=mid,
            changed=wrote())
        return
    st = project.state()
    mid = st.current
    if as_json:
        title = st.milestones[mid]["title"] if mid in st.milestones else None
        say("", {"current": mid, "title": title}, True, ref=mid, milestone_id=mid)
    elif mid is None:
        click.echo("No current milestone. Set one with: milestone current REF")
    else:
        click.echo(f"{mid}  {inert(st.milestones[mid]['title'])}")


@cli.command()
@click.argument("ref")
@click.option("--lessons", "lessons", multiple=True, help="A lesson learned (repeatable).")
@json_flag
def archive(ref: str, lessons: tuple[str, ...], as_json: bool) -> None:
    """Move a completed milestone to completed/ with its completion record.

    The record holds estimated against actual hours, the efficiency ratio
    (estimated / actual), the duration, whether it was on time, and lessons.

    \b
    Example:
      milestone archive 3 --lessons "Estimate reviews separately"
    """
    m = get_project().archive(ref, lessons=lessons)
    c = m.completion or {}
    say(
        f"Archived {m.id}: estimated {c.get('estimated_hours')}h, actual "
        f"{c.get('actual_hours')}h, "
        + (
            "on time"
            if c.get("on_time")
            else "late"
            if c.get("on_time") is False
            else "no due date"
        ),
        {"milestone": m.to_dict()},
        as_json,
        ref=m.id,
        milestone_id=m.id,
    )


@cli.command()
@click.argument("ref")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Delete even if other work depends on it.")
@json_flag
def delete(ref: str, yes: bool, force: bool, as_json: bool) -> None:
    """Delete a milestone (asks first unless --yes). Its history stays in the log.

    \b
    Example:
      milestone delete 7 --yes
    """
    project = get_project()
    m = project.milestone(ref)
    if not yes:
        click.confirm(f"Delete {m.id} ({inert(m.title)}) and its "
                      f"{plural(len(m.tasks), 'task')}?",
                      abort=True, err=True)  # stderr, as restore's: stdout stays the result
    mid = project.delete(m.id, force=force)
    say(f"Deleted {mid}", {"deleted": mid}, as_json, ref=mid, milestone_id=mid)

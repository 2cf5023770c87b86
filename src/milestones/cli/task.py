"""Task commands: add, edit, start, stop, done, block, unblock, skip, reopen, progress, assign."""

from __future__ import annotations

from typing import Any

import click

from ..project import Task
from . import steps
from .group import cli, get_project
from .options import json_flag

TASK_HELP = "TASK is 3/2 (milestone-003/task-2), or 2 for task-2 of the current milestone."


@cli.group()
def task() -> None:
    """Add and move tasks. TASK is 3/2, milestone-003/task-2, or 2 (current milestone).

    \b
    Examples:
      milestone task add 3 "Write the parser" --estimate 4 --skill python
      milestone task start 3/1
      milestone task done 1          # task-1 of the current milestone
    """


def _out(verb: str, t: Task, as_json: bool, ref: str | None = None,
         mid: str | None = None) -> None:
    steps.task_moved(get_project, verb, t, as_json, ref, mid)


@task.command("add")
@click.argument("milestone")
@click.argument("title")
@click.option(
    "--depends-on",
    "depends_on",
    multiple=True,
    help="A task it waits for: 2, task-2, or 4/1 in another milestone (repeatable).",
)
@click.option("--estimate", "-e", type=float, help="Estimated hours.")
@click.option("--skill", "skills", multiple=True, help="A skill it needs (repeatable).")
@click.option("--assignee", "-a")
@click.option("--description", "-d", default="")
@click.option("--run", help="A command an agent runs to do the task.")
@click.option("--path", "paths", multiple=True, help="A path (glob) the task touches.")
@json_flag
def task_add(
    milestone: str,
    title: str,
    depends_on: tuple[str, ...],
    estimate: float | None,
    skills: tuple[str, ...],
    assignee: str | None,
    description: str,
    run: str | None,
    paths: tuple[str, ...],
    as_json: bool,
) -> None:
    """Add a task to MILESTONE.

    \b
    Example:
      milestone task add 3 "Write docs" --depends-on 1 --estimate 2 --skill writing
    """
    mid, t = get_project().add_task(
        milestone,
        title,
        depends_on=depends_on,
        estimate=estimate,
        skills=skills,
        assignee=assignee,
        description=description,
        run=run,
        paths=paths,
    )
    _out("Added", t, as_json, f"{mid}/{t.id}", mid)


@task.command("edit")
@click.argument("ref", metavar="TASK")
@click.option("--title")
@click.option("--description", "-d")
@click.option("--estimate", "-e", type=float)
@click.option("--skill", "skills", multiple=True, help="Replace the skills (repeatable).")
@click.option("--depends-on", "depends_on", multiple=True, help="Replace the dependencies.")
@click.option("--no-depends", is_flag=True, help="Remove every dependency.")
@click.option("--run")
@click.option("--assignee", "-a")
@click.option("--path", "paths", multiple=True, help="Replace the paths it touches.")
@json_flag
def task_edit(
    ref: str,
    title: str | None,
    description: str | None,
    estimate: float | None,
    skills: tuple[str, ...],
    depends_on: tuple[str, ...],
    no_depends: bool,
    run: str | None,
    assignee: str | None,
    paths: tuple[str, ...],
    as_json: bool,
) -> None:
    """Edit a task's fields.

    \b
    Example:
      milestone task edit 3/2 --title "Write the user guide" --estimate 3
    """
    deps: list[str] | None = list(depends_on) if depends_on else ([] if no_depends else None)
    t = get_project().edit_task(
        ref,
        title=title,
        description=description,
        estimate=estimate,
        skills=list(skills) or None,
        depends_on=deps,
        run=run,
        assignee=assignee,
        paths=list(paths) or None,
    )
    _out("Edited", t, as_json)


def _simple(name: str, verb: str, method: str, doc: str, force: bool = False) -> None:
    def command(ref: str, as_json: bool, **kw: Any) -> None:
        steps.task_move(get_project, verb, method, ref, as_json, **kw)

    command.__doc__ = doc
    command = json_flag(command)
    if force:
        command = click.option(
            "--force", is_flag=True, help="Ignore unmet dependencies (recorded in the event)."
        )(command)
    command = click.argument("ref", metavar="TASK")(command)
    task.command(name)(command)


_simple(
    "start",
    "Started",
    "start_task",
    f"Start work on TASK (its timer runs until stop, done, block or skip).\n\n"
    f"{TASK_HELP}\n\n\b\nExample:\n  milestone task start 3/2",
    force=True,
)
_simple(
    "stop",
    "Stopped",
    "stop_task",
    "Pause work on TASK: the time since start is added to time_spent.\n\n"
    "\b\nExample:\n  milestone task stop 3/2",
)
_simple(
    "done",
    "Completed",
    "complete_task",
    "Mark TASK done. Its dependencies must be done or skipped (or --force).\n\n"
    "\b\nExample:\n  milestone task done 3/2",
    force=True,
)
_simple(
    "unblock",
    "Unblocked",
    "unblock_task",
    "Clear TASK's blockers.\n\n\b\nExample:\n  milestone task unblock 3/2",
)
_simple(
    "reopen",
    "Reopened",
    "reopen_task",
    "Reopen a done or skipped TASK.\n\n\b\nExample:\n  milestone task reopen 3/2",
)


@task.command("block")
@click.argument("ref", metavar="TASK")
@click.option("--reason", "-r", required=True, help="Why it cannot go on.")
@json_flag
def task_block(ref: str, reason: str, as_json: bool) -> None:
    """Mark TASK blocked, with the reason.

    \b
    Example:
      milestone task block 3/2 --reason "waiting for API keys"
    """
    _out("Blocked", get_project().block_task(ref, reason), as_json, ref)


@task.command("skip")
@click.argument("ref", metavar="TASK")
@click.option("--reason", "-r", help="Why it is skipped.")
@json_flag
def task_skip(ref: str, reason: str | None, as_json: bool) -> None:
    """Skip TASK: it counts as finished for dependencies and is left out of progress.

    \b
    Example:
      milestone task skip 3/4 --reason "out of scope"
    """
    _out("Skipped", get_project().skip_task(ref, reason=reason), as_json, ref)


@task.command("progress")
@click.argument("ref", metavar="TASK")
@click.argument("percent", type=click.IntRange(0, 100))
@json_flag
def task_progress(ref: str, percent: int, as_json: bool) -> None:
    """Record partial progress on TASK (0-100); it counts towards the milestone.

    \b
    Example:
      milestone task progress 3/2 60
    """
    _out("Progress", get_project().set_progress(ref, percent), as_json, ref)


@task.command("assign")
@click.argument("ref", metavar="TASK")
@click.argument("who", required=False)
@click.option("--none", "unassign", is_flag=True, help="Remove the assignee.")
@json_flag
def task_assign(ref: str, who: str | None, unassign: bool, as_json: bool) -> None:
    """Assign TASK to WHO (or --none to unassign).

    \b
    Example:
      milestone task assign 3/2 alice@example.com
    """
    if who is None and not unassign:
        raise click.UsageError("give WHO, or --none to remove the assignee")
    t = get_project().assign_task(ref, None if unassign else who)
    _out("Assigned", t, as_json, ref)

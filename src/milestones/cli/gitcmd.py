"""`milestone git ...`: commits linked to tasks."""

from __future__ import annotations

import json
from typing import Any

import click

from ..ui import plural
from .group import cli, get_project


@cli.group(name="git")
def git_group() -> None:
    """Git integration: link commits to the tasks they name.

    \b
    A commit names a task by trailers (what `milestone execute --git` writes):
      feat(milestone-003): Add the login form
      <blank line>
      Task: task-2
      Milestone: milestone-003
    or by `[milestone-003/task-2]` anywhere in its message. `Closes
    milestone-003/task-2` (the keyword is the config's git.close_keyword)
    also completes the task when `task done` would (dependencies done, not
    blocked); else it stays open, with a warning and a note on the task.

    \b
    Example:
      milestone git link && milestone show 3/2
    """


def _text(data: dict[str, Any]) -> str:
    from ..ui import inert_data

    data = inert_data(data)  # commit subjects and refs as they are, never obeyed
    lines = [f"{r['ref']:<24} {r['sha'][:10]} {r['subject']}" for r in data["linked"]]
    tasks = len({r["ref"] for r in data["linked"]})
    lines.append(f"linked {plural(len(data['linked']), 'commit')} to {plural(tasks, 'task')} "
                 f"({plural(data['scanned'], 'commit')} scanned, {data['already_linked']} "
                 f"already linked)")
    if data["completed"]:
        lines.append(f"completed: {', '.join(data['completed'])}")
    if data["unknown"]:
        lines.append(f"no such task: {', '.join(data['unknown'])}")
    if data["skipped_archived"]:
        lines.append(f"archived, left as they are: {', '.join(data['skipped_archived'])}")
    return "\n".join(lines)


@git_group.command(name="link")
@click.option("--since", metavar="REF", default=None,
              help="Only commits not reachable from REF (a tag, branch or sha). "
                   "Default: the whole history of every branch.")
@click.option("--keyword", metavar="WORD", default=None,
              help="The word that completes a task: `WORD milestone-003/task-2` "
                   "(default: git.close_keyword, else Closes).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the versioned JSON contract instead of text.")
def link_command(since: str | None, keyword: str | None, as_json: bool) -> None:
    """Scan the repository's commits and record each on the task it names.

    \b
    `milestone show` lists a task's commits. Running it again adds nothing.

    \b
    Examples:
      milestone git link
      milestone git link --since v1.0 --keyword Fixes --json
    """
    from ..agents.gitlink import link

    data = link(get_project(), since=since, keyword=keyword)
    for r in data["not_closed"]:
        click.echo(f"milestone: warning: {r['ref']} not closed by {r['sha'][:10]}: "
                   f"{r['reason']} — finish that first; `git link` again then closes it "
                   "(noted on the task)", err=True)
    if as_json:
        touched = {"schema": 1, "ref": None, "milestone_id": None}  # several tasks: "linked"
        click.echo(json.dumps({**touched, **data}, indent=2, ensure_ascii=False))
    else:
        click.echo(_text(data))

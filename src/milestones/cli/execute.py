"""`milestone execute`: agents work one milestone in parallel (``milestones.agents.executor``)."""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

import click

from ..ui import inert, inert_data, plural
from .group import CliError, cli, get_project
from .output import UI_LEVELS

_LINE = threading.Lock()


def _fmt_seconds(s: float) -> str:
    n = int(s)
    if n < 3600:
        return f"{n // 60:d}:{n % 60:02d}"
    return f"{n // 3600:d}:{n // 60 % 60:02d}:{n % 60:02d}"


def _change_line(c: Any, started: float) -> str:
    at = c.at - started
    prog = f"  [{c.done}/{c.total}]" if c.kind == "completed" and c.total else ""
    who = inert(c.agent or "")
    return (f"{at:7.1f}s {c.kind:<10} {inert(c.ref or '-'):<24} {who:<24} {inert(c.text)}"
            f"{prog}").rstrip()


def _schedule_text(data: dict[str, Any]) -> str:
    data = inert_data(data)
    lines = [f"{data['milestone']} {data['title']!r}: {plural(data['open'], 'open task')} in "
             f"{plural(len(data['waves']), 'wave')}, widest {data['widest']}, with "
             f"{plural(data['agents'], 'agent')}"]
    for w in data["waves"]:
        lines.append(f"wave {w['wave']} ({plural(len(w['tasks']), 'task')})")
        for t in w["tasks"]:
            status = "" if t["status"] == "todo" else f" [{t['status']}]"
            cmd = f"  $ {t['command']}" if t["command"] else "  (no command)"
            lines.append(f"  {t['ref']:<24} {t['title']}{status}{cmd}")
    if data["critical_path"]:
        hours = data.get("critical_path_hours")
        size = f" ({hours:g}h by estimates)" if hours is not None else ""
        lines.append(f"critical path{size}: {' -> '.join(data['critical_path'])}")
    if data["waiting_on"]:
        lines.append(f"waits on: {', '.join(data['waiting_on'])}")
    for u in data.get("unapproved") or ():
        lines.append(f"not approved here: {u['where']}: $ {u['command']}")
    if data["refuse"]:
        lines.append(f"would not start: {data['refuse']}")
    return "\n".join(lines)


def _summary_text(s: dict[str, Any]) -> str:
    s = inert_data(s)
    head = {"done": "done", "incomplete": "ended with work left", "stopped": "stopped"}
    first = f"{s['milestone']} {head[s['outcome']]}: {s['done']}/{s['tasks_total']} done"
    if s["completed"] or s["failed"]:
        first += (f"; this run: {s['completed']} completed, "
                  f"{plural(s['failed'], 'failed attempt')}, in {s['wall_seconds']:.1f}s with "
                  f"{plural(s['agents'], 'agent')}")
    elif s["outcome"] == "done":
        first += "; nothing ran: every task was finished before this run"
    else:
        first += "; nothing ran this time"
    if s["blocked"]:
        first += f"; {s['blocked']} blocked"
    lines = [first]
    for t in s["tasks"]:
        if t["status"] == "blocked":
            lines.append(f"  blocked {t['ref']}: {'; '.join(t['blockers']) or '?'}"
                         + (f"  (log: {t['log']})" if t["log"] else ""))
    for t in s["tasks"]:
        if t["status"] not in ("done", "skipped", "blocked"):
            lines.append(f"  left    {t['ref']} [{t['status']}] {t['title']}")
    for e in s["errors"]:
        lines.append(f"  error: {e}")
    if s["outcome"] == "stopped":
        lines.append(f"resume with: milestone execute {s['milestone']} --resume")
    return "\n".join(lines)


def _rich_view(ex: Any) -> Any:
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    snap = ex.board.snapshot()
    c = snap["counts"]
    table = Table(expand=False, box=None, pad_edge=False)
    for col in ("agent", "task", "title", "elapsed", "status"):
        table.add_column(col, no_wrap=True, overflow="ellipsis",
                         max_width=40 if col == "title" else None)
    for r in snap["rows"]:
        table.add_row(inert(r["agent"]), inert(r["ref"] or "-"), inert(r["title"] or ""),
                      _fmt_seconds(r["elapsed"]), inert(r["status"]))
    total = max(c["total"], 1)
    bar = ProgressBar(total=total, completed=c["done"], width=40)
    line = Text(f" {c['done']}/{c['total']} done · {c['in_progress']} running · "
                f"{c['blocked']} blocked · {_fmt_seconds(snap['elapsed'])}")
    recent = [Text(_change_line(ch, ex.board.started), overflow="ellipsis", no_wrap=True)
              for ch in snap["recent"]]
    title = Text(f"milestone execute {ex.mid}", style="bold")
    return Group(title, table, Group(bar, line), *recent)


@cli.command()
@click.argument("ref")
@click.option("--agents", "-n", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Task-execution agents working in parallel.")
@click.option("--command", "template", metavar="TEMPLATE", default=None,
              help="Run this shell command for every task instead of the task's own `run`; "
                   "task data is in environment variables, e.g. "
                   "'my-agent --prompt \"$MILESTONE_TASK_PROMPT\"'.")
@click.option("--git", "use_git", is_flag=True,
              help="A branch per milestone, a worktree per running task, a commit per "
                   "completed task, merged back in dependency order.")
@click.option("--dry-run", is_flag=True,
              help="Print the schedule (waves of parallel tasks, the critical path); run "
                   "nothing.")
@click.option("--resume", is_flag=True,
              help="Carry on after a stopped or crashed run: release the claims its agents "
                   "still hold, then continue.")
@click.option("--timeout", type=float, default=None, metavar="S",
              help="Kill a task's command after S seconds and fail the task.")
@click.option("--grace", type=float, default=10.0, show_default=True, metavar="S",
              help="On Ctrl-C or SIGTERM, running tasks get S seconds to finish before "
                   "they are killed.")
@click.option("--approve-commands", "approve", is_flag=True,
              help="Run, and approve on this machine, the plan's commands that arrived by a "
                   "hand edit, a pull, a restore or an import (without it: asked on a "
                   "terminal, refused otherwise).")
@click.option("--json", "as_json", is_flag=True,
              help="No live view; print a JSON summary at the end (the schedule with "
                   "--dry-run).")
@click.option("--ui", type=click.Choice(UI_LEVELS), default=None,
              help="Live view: rich (a table of agents and a progress bar, the default on a "
                   "terminal) or simple (one line per change).")
def execute(ref: str, agents: int, template: str | None, use_git: bool, dry_run: bool,
            resume: bool, timeout: float | None, grace: float, approve: bool, as_json: bool,
            ui: str | None) -> None:
    """Work milestone REF with agents in parallel until every task is done.

    \b
    Validates the milestone, then starts N task-execution agents (each claims a
    ready task, runs its `run` command or --command, completes it on exit 0 or
    fails it: failed tasks are retried, then blocked and escalated), a progress
    monitor, a dependency validator and a blocker detector. A task never runs
    before its dependencies, nor twice at once.

    \b
    The command gets the task only in environment variables, never in its text:
      MILESTONE_TASK_ID  MILESTONE_TASK_TITLE  MILESTONE_TASK_PROMPT
      MILESTONE_MILESTONE_ID  MILESTONE_AGENT_ID  MILESTONE_TASK_TOKEN
      MILESTONE_WORKDIR  MILESTONE_DIR
    Its output goes to .milestones/logs/agents/<milestone>-<task>.log.

    \b
    Ctrl-C (or SIGTERM) stops claiming, lets running tasks finish for --grace
    seconds, then kills them and releases their claims; a second Ctrl-C kills
    at once. --resume carries on.

    \b
    A command from the plan (a task's `run`, blockers.test_command) runs only once
    a person approved it on this machine: one set through milestone (task add/edit
    --run, plan --from-file) is; one that came by a hand edit, a pull, a restore
    or an import is listed and asked about, or, with no terminal, refused (exit 6)
    until --approve-commands.

    \b
    Exit codes: 0 every task is done; 9 tasks are left blocked or failed;
    130 stopped by Ctrl-C or SIGTERM; 4/5/6/7 refused before starting.

    \b
    Examples:
      milestone execute 3 --dry-run
      milestone execute 3 --agents 8 --timeout 900
      milestone execute 3 --git --command 'my-agent "$MILESTONE_TASK_PROMPT"'
      milestone execute 3 --resume --json
    """
    from ..agents.executor import Executor, Options, schedule, stop_on_signals

    project = get_project()
    if dry_run:
        data = schedule(project, ref, agents=agents, command=template)
        if as_json:
            click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            click.echo(_schedule_text(data))
        return
    ex = Executor(project, ref, Options(agents=agents, command=template, git=use_git,
                                       timeout=timeout, grace=grace, resume=resume,
                                       approve_commands=approve))
    waiting = [] if approve else ex.unapproved_commands()
    if waiting and sys.stdin.isatty() and sys.stderr.isatty():
        click.echo("These commands from the plan are not approved on this machine "
                   "(a hand edit, a pull, a restore or an import set them):", err=True)
        for where, cmd in waiting:
            click.echo(f"  {inert(where)}: $ {inert(cmd)}", err=True)
        if not click.confirm("Run them (and approve them for later runs)?", default=False,
                             err=True):
            raise CliError("not approved: nothing was run — approve with "
                           "--approve-commands once you have read them", 1)
        ex.approve([cmd for _where, cmd in waiting])
    ex.check()
    level = ui or os.environ.get("MILESTONE_UI")
    if level not in UI_LEVELS:
        if level and level.strip().lower() != "auto":
            click.echo(f"milestone: warning: MILESTONE_UI={level!r} is not one of "
                       f"{', '.join(UI_LEVELS)}, auto; using the default — set one of those "
                       "or unset it", err=True)
        level = "rich" if sys.stdout.isatty() else "simple"
    if not as_json and level == "simple":
        def show(change: Any) -> None:
            with _LINE:
                click.echo(_change_line(change, ex.board.started))

        ex.board.listen(show)
    with stop_on_signals(ex):
        ex.start()
        if not as_json and level == "rich":
            from rich.live import Live

            from ..ui.rich import console as rich_console

            con = rich_console()
            with Live(get_renderable=lambda: _rich_view(ex), console=con,
                      refresh_per_second=4, transient=False):
                summary = ex.wait()
            if not con.is_terminal:
                click.echo("")  # the last frame ends without a line break
        else:
            summary = ex.wait()
    if as_json:
        touched = {"ref": summary["milestone"], "milestone_id": summary["milestone"]}
        click.echo(json.dumps({**summary, **touched}, indent=2, ensure_ascii=False))
    else:
        click.echo(_summary_text(summary))
    if summary["exit_code"]:
        raise click.exceptions.Exit(summary["exit_code"])

"""The command-line door: parse, call ``Project``, render. No logic lives here.

May import the service layer (``project``, ``agents``, ``ops``), ``ui`` and ``errors``
only (the ``doors`` contract; see ARCHITECTURE.md).

``main`` sends the most run read commands, written in their plain forms, down the fast
path (``fast.py``: no click); every other command line to the click group
(``group.py``, loaded then). Both print through ``output.py``: every
``MilestoneError`` becomes one line on stderr and its documented exit code;
``--debug`` (or MILESTONE_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInput

__all__ = ["COMMAND_HELP", "COMMAND_MODULES", "cli", "load", "main"]

# The module that defines each command. A run imports only the one its command needs
# (about 1 ms of start-up saved); a name missing here imports them all, so a new command
# works before it is listed. `milestone --help` and the shell completion of a command's
# name list the commands from COMMAND_HELP below and import none of them.
COMMAND_MODULES = {
    **dict.fromkeys(("status", "list", "show", "next", "log", "resume", "note"), "activity"),
    **dict.fromkeys(("init", "demo", "doctor", "completion", "event-types"), "admin"),
    **dict.fromkeys(("plan", "update", "current", "archive", "delete"), "plan"),
    **dict.fromkeys(("import", "export", "review"), "kiro"),
    **dict.fromkeys(("backup", "restore"), "backup"),
    "storage": "storage",
    "encrypt": "encrypt",
    "task": "task",
    "team": "team",
    **dict.fromkeys(("agent", "ready"), "agent"),
    "git": "gitcmd",
    "execute": "execute",
    **dict.fromkeys(("template", "quickstart"), "templates"),
    **dict.fromkeys(("validate", "schema"), "validate"),
    "audit": "audit",
    "analytics": "analytics",
}


# The first paragraph of each listed (not hidden) command's help, its words joined by one
# space: what click shortens to the line `milestone --help` shows beside its name. Kept
# equal to the commands' own help by tests/cli/test_startup.py.
COMMAND_HELP = {
    "agent": "Agents working one project in parallel: register, claim, report, message.",
    "analytics": "Throughput, cycle and lead time, estimate accuracy, blockers, WIP and a "
                 "forecast.",
    "archive": "Move a completed milestone to completed/ with its completion record.",
    "audit": "Verify the event log's hash chain end to end, then say who changed what.",
    "backup": "Write one archive of the project's data, with a SHA-256 for every file.",
    "completion": "Print the shell completion script.",
    "current": "Show the current milestone, or make REF current.",
    "delete": "Delete a milestone (asks first unless --yes). Its history stays in the log.",
    "demo": "Create a sample project (in a temporary directory unless given one) and show it.",
    "doctor": "Check the event log's hash chain, the snapshots and the files; --repair fixes.",
    "encrypt": "Encrypt protected fields at rest (AES-256-GCM): init, rotate, off, status.",
    "execute": "Work milestone REF with agents in parallel until every task is done.",
    "export": "Write milestones out in other tools' formats, or as readable YAML.",
    "git": "Git integration: link commits to the tasks they name.",
    "import": "Create milestones from other tools' files.",
    "init": "Start tracking a project: create .milestones/ in DIRECTORY (default: here).",
    "list": "List milestones (archived ones only with --all), by id.",
    "log": "The event log: every change, who made it and when.",
    "next": "Tasks that can start now: dependencies met, by priority then longest chain "
            "waiting.",
    "note": "Leave a note for whoever resumes the work (shown by `milestone resume`).",
    "plan": "Create a milestone with its tasks (it becomes current if none is).",
    "quickstart": "Detect the project type, propose a template, and create the first "
                  "milestone.",
    "ready": "Tasks agents can claim now (of milestone REF, or every milestone), best first.",
    "restore": "Replace the project's data with the backup at PATH (asks first unless --yes).",
    "resume": "Where the last session stopped: what is in progress, blocked, and next.",
    "review": "Decide a Kiro gate (requirements, design, tasks), or list what waits for you.",
    "schema": "Print the JSON Schema of milestone files (editors use it to check as you type).",
    "show": "Everything about a milestone (3) or a task (3/2).",
    "status": "Progress of the current milestone (or REF, or --all).",
    "storage": "Inspect and move the project's storage backend.",
    "task": "Add and move tasks. TASK is 3/2, milestone-003/task-2, or 2 (current milestone).",
    "team": "The team and its roles: owner (everything), contributor (all but delete and "
            "admin), viewer (read only).",
    "template": "Built-in and your own milestone templates (.milestones/templates/*.yaml).",
    "update": "Edit a milestone's fields.",
    "validate": "Check the plan against the rules; exit 5 when errors are found.",
}



def load(argv: list[str] | None = None) -> Callable[[], None]:
    """The command ``argv`` (default: the process's) names, with what it needs imported:
    the fast path's modules, or click and the command group. The console script loads
    with the garbage collector off, then runs (``milestones.console``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    bad = _undecodable(args)
    if bad:
        return lambda: _refuse(bad)
    from . import fast

    command = fast.prepare(args)
    if command is None:
        from . import group

        def command() -> None:
            group.run(argv)

    def guarded() -> None:
        _guard(command, args)

    return guarded


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every error one line and its exit code; Ctrl-C and SIGTERM
    (see ``milestones.console``) exit 130 with one line, never a traceback."""
    load(argv)()


def _guard(command: Callable[[], None], args: list[str]) -> None:
    from ..console import interrupted
    from .output import Interrupted, wants_json

    try:
        command()
    except BrokenPipeError:
        # Output piped into `head` and friends: not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except (KeyboardInterrupt, Interrupted):
        interrupted(as_json=wants_json(args))


def _refuse(line: str) -> None:
    sys.stderr.write(f"milestone: error: {line}\n")
    sys.stderr.flush()
    sys.exit(InvalidInput.exit_code)


def _undecodable(args: list[str]) -> str | None:
    """The error line for the first argument (or MILESTONE_* variable) that is not
    valid UTF-8 (bytes Python kept as surrogate escapes), else None."""
    named = [(f"argument {i}", a) for i, a in enumerate(args, 1)]
    named += [(f"environment variable {k}", v) for k, v in os.environ.items()
              if k.startswith("MILESTONE_")]
    for what, text in named:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            from ..ui import inert

            raw = text.encode("utf-8", "surrogateescape")
            shown = inert(raw.decode("utf-8", "backslashreplace"))
            return (f"{what} ({shown}) is not valid UTF-8 text — give text in UTF-8 "
                    "(check the terminal's or the script's encoding)")
    return None


def __getattr__(name: str) -> Any:
    """``milestones.cli.cli`` (the click group) and the group's other names, loaded on
    first use: ``import milestones.cli`` does not import click. (A submodule's name is
    not looked up here: the import system asks for it before importing it.)"""
    import importlib.util

    if name.startswith("__") or importlib.util.find_spec(f"{__name__}.{name}") is not None:
        raise AttributeError(name)
    group = importlib.import_module(f"{__name__}.group")
    try:
        return getattr(group, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None

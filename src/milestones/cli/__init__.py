"""The command-line door: parse, call ``Project``, render. No logic lives here.

May import the service layer (``project``, ``agents``, ``ops``), ``ui`` and ``errors``
only (the ``doors`` contract; see ARCHITECTURE.md).

Every ``MilestoneError`` becomes one line on stderr and its documented exit
code; ``--debug`` (or MILESTONE_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, MutableMapping
from gettext import gettext as _
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.utils import make_default_short_help

from .. import __version__
from ..errors import InvalidInput, MilestoneError, StorageError
from ..ui import inert, inert_data

if TYPE_CHECKING:
    from pathlib import Path

    from click.shell_completion import CompletionItem

F = TypeVar("F", bound=Callable[..., Any])
UI_LEVELS = ("simple", "rich")


class CliError(click.ClickException):
    """A MilestoneError on its way out: one line, its own exit code.

    With ``as_json`` (the command line had ``--json``) the line is a JSON object on
    stderr instead: ``{"schema": 1, "error": {"code", "kind", "message", "hint"}}``.
    """

    def __init__(self, message: str, exit_code: int, *, hint: str | None = None,
                 as_json: bool = False, kind: str | None = None) -> None:
        super().__init__(f"{message} — {hint}" if hint else message)
        self.exit_code = exit_code
        self.what = message
        self.hint = hint
        self.as_json = as_json
        self.kind = kind

    def show(self, file: Any = None) -> None:
        if self.as_json:
            import json

            from ..errors import error_kind

            error = {"code": self.exit_code, "kind": self.kind or error_kind(self.exit_code),
                     "message": self.what, "hint": self.hint}
            click.echo(json.dumps({"schema": 1, "error": error}, ensure_ascii=False), err=True)
            return
        # Text people wrote (a title, a reference) may be quoted: shown inert, the JSON
        # form above keeps it exact.
        click.echo(f"milestone: error: {inert(self.message)}", err=True)


def _wants_json(words: list[str]) -> bool:
    """The command line asks for --json (before any ``--``)."""
    for word in words:
        if word == "--":
            return False
        if word == "--json":
            return True
    return False


def _from_error(exc: MilestoneError, words: list[str]) -> CliError:
    return CliError(exc.message, exc.exit_code, hint=exc.hint, as_json=_wants_json(words))


def _one_line(exc: click.UsageError, words: list[str] | None = None) -> CliError:
    """click's usage error (usage, a hint, the error: three lines) as one line, with
    where to look; exit code 2 as click's."""
    where = exc.ctx.command_path if exc.ctx is not None else "milestone"
    return CliError(exc.format_message().rstrip("."), exc.exit_code, hint=f"see `{where} -h`",
                    as_json=_wants_json(words or []))


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM on its way to ``main``, past click, which would print
    "Aborted!" and exit 1 instead of 130."""


def _debug() -> bool:
    return os.environ.get("MILESTONE_DEBUG", "") not in ("", "0")


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
    **dict.fromkeys(("agent", "ready"), "agent"),
    "git": "gitcmd",
    "execute": "execute",
    **dict.fromkeys(("template", "quickstart"), "templates"),
    **dict.fromkeys(("validate", "schema"), "validate"),
}


# The first paragraph of each listed (not hidden) command's help, its words joined by one
# space: what click shortens to the line `milestone --help` shows beside its name. Kept
# equal to the commands' own help by tests/cli/test_startup.py.
COMMAND_HELP = {
    "agent": "Agents working one project in parallel: register, claim, report, message.",
    "archive": "Move a completed milestone to completed/ with its completion record.",
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
    "template": "Built-in and your own milestone templates (.milestones/templates/*.yaml).",
    "update": "Edit a milestone's fields.",
    "validate": "Check the plan against the rules; exit 5 when errors are found.",
}


class _Commands(MutableMapping[str, click.Command]):
    """``cli.commands``, filled as it is read: see COMMAND_MODULES."""

    def __init__(self) -> None:
        self._commands: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._commands:
            module = COMMAND_MODULES.get(name)
            if module is not None:
                __import__(f"{__name__}.{module}")
            if name not in self._commands:
                _register()
        return self._commands[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._commands[name] = command

    def __delitem__(self, name: str) -> None:
        del self._commands[name]

    def __iter__(self) -> Iterator[str]:
        _register()
        return iter(self._commands)

    def __len__(self) -> int:
        _register()
        return len(self._commands)


class MilestoneGroup(click.Group):
    """Translates library errors into CLI errors for every nested command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands()

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:  # the top level's own options
            words = list(args[1]) if len(args) > 1 else list(kwargs.get("args") or [])
            raise _one_line(exc, words) from None
        except KeyboardInterrupt:
            raise Interrupted from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The "Commands" section of ``--help``, as click writes it, from COMMAND_HELP:
        listing the commands imports none of their modules (and the project with them)."""
        limit = formatter.width - 6 - max(map(len, COMMAND_HELP))
        rows = [(name, make_default_short_help(text, limit).strip())
                for name, text in sorted(COMMAND_HELP.items())]
        with formatter.section(_("Commands")):
            formatter.write_dl(rows)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        """Shell completion of a command's name (a Tab after ``milestone``), as click
        completes it, from COMMAND_HELP: no command's module is imported; then the options."""
        from click.shell_completion import CompletionItem

        results = [CompletionItem(name, help=make_default_short_help(text, 45).strip())
                   for name, text in sorted(COMMAND_HELP.items()) if name.startswith(incomplete)]
        results.extend(click.Command.shell_complete(self, ctx, incomplete))
        return results

    def invoke(self, ctx: click.Context) -> Any:
        words = [*ctx.protected_args, *ctx.args]  # click consumes them; the metric names them
        started = time.perf_counter()
        ok = False
        try:
            result = super().invoke(ctx)
            ok = True
            _print_warnings(ctx)
            return result
        except click.exceptions.Exit as exc:
            ok = exc.exit_code == 0
            raise
        except click.UsageError as exc:  # a command or option unknown, an argument bad
            raise _one_line(exc, words) from None
        except CliError as exc:
            exc.as_json = exc.as_json or _wants_json(words)
            raise
        except click.ClickException as exc:
            if not _wants_json(words):
                raise
            raise CliError(exc.format_message(), exc.exit_code, as_json=True) from None
        except click.Abort as exc:  # a prompt: Ctrl-C there, or no answer (end of input)
            if isinstance(exc.__context__, KeyboardInterrupt):
                click.echo("", err=True)  # end the prompt's line (it is on stderr)
                raise Interrupted from None
            as_json = _wants_json(words)
            if not sys.stdin.isatty():  # the answer was not echoed: end the prompt's line
                click.echo("", err=True)
            raise CliError("not confirmed (declined, or no answer at the prompt): nothing "
                           "was changed", 1, as_json=as_json, kind="declined",
                           hint="answer y, or pass --yes to go ahead without asking") from None
        except KeyboardInterrupt:
            raise Interrupted from None
        except MilestoneError as exc:
            if _debug():
                raise
            raise _from_error(exc, words) from None
        except BrokenPipeError:
            raise  # the reader of our output went away (`| head`): main() ends quietly
        except PermissionError as exc:
            if _debug():
                raise
            err = StorageError(
                f"cannot write {exc.filename or 'the project'}: {exc.strerror}",
                hint="check the directory's permissions",
            )
            raise _from_error(err, words) from None
        except OSError as exc:
            if _debug():
                raise
            err = StorageError(
                f"{exc.filename or 'disk'}: {exc.strerror or exc}",
                hint="check the path, permissions and free space",
            )
            raise _from_error(err, words) from None
        except Exception as exc:  # a bug: a script asking for --json still gets JSON
            if _debug():
                raise
            damaged = _damaged_database(exc)
            if damaged is not None:
                raise _from_error(damaged, words) from None
            if not _wants_json(words):
                raise
            raise CliError(f"internal error: {exc!r}", 1, as_json=True,
                           hint="please report it, with the --debug output") from exc
        finally:
            try:
                _after_command(ctx, words, (time.perf_counter() - started) * 1000, ok)
            except KeyboardInterrupt:
                raise Interrupted from None


def _damaged_database(exc: BaseException) -> StorageError | None:
    """SQLite's error for a database it cannot read (a damaged or foreign file) as the
    storage error it is; None for anything else. sqlite3 is only looked up, never
    imported: a command that did not open a database cannot have raised its error."""
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is None or not isinstance(exc, sqlite3.DatabaseError):
        return None
    return StorageError(f"the project's database cannot be read: {exc}",
                        hint="run `milestone doctor`, or restore a backup (`milestone restore`)")


def _after_command(ctx: click.Context, words: list[str], ms: float, ok: bool) -> None:
    """After a command: its timing, and after a committed write the scale check.

    Only when the command opened a project, and never failing the command: a metric
    that cannot be written is dropped. See ``milestones.ops.timings``.
    """
    state = ctx.find_object(State)
    project = state._project if state is not None else None
    if project is None:
        return
    from ..ops import timings

    with contextlib.suppress(Exception):  # metrics are best effort
        timings.record(project, _command_name(words), ms, ok)
    commits: int = getattr(project, "commits", 0)
    if ok and commits:
        try:  # the write is committed: whatever goes wrong here is no failure
            line = timings.scale_check(project)
        except Exception as exc:
            line = f"milestone: debug: scale check failed: {exc!r}" if _debug() else None
        if line:
            click.echo(line, err=True)


def _command_name(words: list[str]) -> str:
    """The command's name as the CLI knows it (``task done``), without its arguments."""
    names: list[str] = []
    cmd: click.Command = cli
    for word in words:
        sub = cmd.commands.get(word) if isinstance(cmd, click.Group) else None
        if sub is None:
            break
        names.append(word)
        cmd = sub
    return " ".join(names)


def _print_warnings(ctx: click.Context) -> None:
    """Validation warnings a write raised: one line each on stderr."""
    state = ctx.find_object(State)
    project = state._project if state is not None else None
    for w in getattr(project, "warnings", []) or []:
        click.echo(inert(f"milestone: warning: {w.location}: {w.code} {w.message} — {w.hint}"),
                   err=True)
    if project is not None:
        project.warnings = []
        backend = str(getattr(getattr(project, "store", None), "backend", "file"))
        if backend not in ("file", "hybrid", "memory"):
            from ..ops.inactive import warnings  # the YAML files it does not read, edited

            for line in warnings(project.root, backend):
                click.echo(f"milestone: warning: {line}", err=True)


class State:
    """Per-invocation context: where the project is, and the opened Project."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._project: Any = None

    @property
    def project(self) -> Any:
        if self._project is None:
            from ..project import Project

            self._project = Project.open(self.directory)
        return self._project


def get_project() -> Any:
    return click.get_current_context().find_object(State).project  # type: ignore[union-attr]


def output_options(func: F) -> F:
    """``--json`` and ``--ui`` for every command that prints data."""
    func = click.option(
        "--ui",
        type=click.Choice(UI_LEVELS),
        default=None,
        help="Output level: simple (plain ASCII) or rich (tables, colour, bars). "
        "Default: simple when not a terminal, else by project size.",
    )(func)
    func = click.option(
        "--json", "as_json", is_flag=True, help="Print the versioned JSON contract instead of text."
    )(func)
    return func


def choose_ui(ui: str | None, count: int | None = None) -> str:
    if ui:
        return ui
    env = os.environ.get("MILESTONE_UI")
    if env in UI_LEVELS:
        return env
    if env and env.strip().lower() != "auto":
        click.echo(f"milestone: warning: MILESTONE_UI={env!r} is not one of "
                   f"{', '.join(UI_LEVELS)}, auto; using the default — set one of those "
                   "or unset it", err=True)
    if not sys.stdout.isatty():
        return "simple"
    try:
        cfg = get_project().config()["ui"]
    except MilestoneError:
        cfg = {"default": "auto", "rich_from_milestones": 5}
    if cfg.get("default") in UI_LEVELS:
        return str(cfg["default"])
    if count is None:
        count = len(get_project().state().milestones)
    return "rich" if count >= int(cfg.get("rich_from_milestones", 5)) else "simple"


MULTILINE = frozenset({"description"})  # view keys whose text keeps its line breaks


def emit(data: dict[str, Any], view: str, as_json: bool, ui: str | None) -> None:
    """Print ``data`` as JSON or through the ``render_<view>`` of the chosen level."""
    data = revealed(data)
    if as_json:
        from ..ui import jsontext  # json and orjson: only for --json

        click.echo(jsontext.dumps(data))
        return
    data = inert_data(data, multiline=MULTILINE)  # stored text is shown, never obeyed
    level = choose_ui(ui, len(data["milestones"]) if "milestones" in data else None)
    if level == "rich":
        from ..ui import rich as rich_ui

        getattr(rich_ui, f"render_{view}")(data)
        return
    from ..ui import simple

    click.echo(getattr(simple, f"render_{view}")(data))


def revealed(data: Any) -> Any:
    """``data`` with the project's encrypted values opened (``Project.reveal``): the
    text with the key, ``[encrypted]`` without. Nothing to do before a project opens."""
    state = click.get_current_context().find_object(State)
    project = state._project if state is not None else None
    return data if project is None else project.reveal(data)


def wrote() -> bool:
    """Whether this command's write changed anything (committed an event)."""
    return bool(get_project().commits)


def say(message: str, data: dict[str, Any] | None = None, as_json: bool = False, *,
        ref: str | None = None, milestone_id: str | None = None,
        changed: bool = True) -> None:
    """Confirm a change: one line for people, the changed object for --json, naming what
    it touched: ``ref`` (``milestone-003`` or ``milestone-003/task-2``) and
    ``milestone_id`` (both null for a change to the whole project).

    ``changed=False``: an edit that found everything as asked. It still succeeds (a
    script or an agent may repeat it): "nothing changed", and ``"changed": false``."""
    if not changed:
        message, data = f"nothing changed: {message}", {**(data or {}), "changed": False}
    message, data = revealed((message, data))
    if as_json:
        from ..ui import jsontext

        touched = {"ref": ref, "milestone_id": milestone_id}
        click.echo(jsontext.dumps({"schema": 1, **touched, **(data or {})}))
    else:
        click.echo(inert(message, keep_newlines=True))


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=MilestoneGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="milestone")
@click.option(
    "-C",
    "--directory",
    type=click.Path(file_okay=False),  # a str; made a Path below, once a command runs
    default=None,
    help="Run as if started in this directory.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, directory: str | None, debug: bool) -> None:
    """milestone: plan and track a project's milestones and tasks from the terminal.

    \b
    Data lives in .milestones/ beside your code (YAML you can edit, plus an
    append-only event log). References are short: 3 = milestone-003,
    3/2 = milestone-003/task-2, and in `task` commands 2 = task-2 of the
    current milestone.

    \b
    Start here:
      milestone demo                 a sample project in a temporary directory
      milestone init                 start tracking this directory
      milestone plan "Beta" --task "Write docs" --task "Ship"
      milestone next                 what can start now
    """
    from pathlib import Path  # not before: `--version` and `--help` never need it

    if debug:
        os.environ["MILESTONE_DEBUG"] = "1"
    ctx.obj = State(None if directory is None else Path(directory))


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
            raw = text.encode("utf-8", "surrogateescape")
            shown = inert(raw.decode("utf-8", "backslashreplace"))
            return (f"{what} ({shown}) is not valid UTF-8 text — give text in UTF-8 "
                    "(check the terminal's or the script's encoding)")
    return None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: every error one line and its exit code; Ctrl-C and SIGTERM
    (see ``milestones.console``) exit 130 with one line, never a traceback."""
    from ..console import interrupted

    try:
        bad = _undecodable(sys.argv[1:] if argv is None else argv)
        if bad:
            click.echo(f"milestone: error: {bad}", err=True)
            sys.exit(InvalidInput.exit_code)
        cli.main(args=argv, prog_name="milestone")
    except BrokenPipeError:
        # Output piped into `head` and friends: not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except (KeyboardInterrupt, Interrupted):
        interrupted(as_json=_wants_json(sys.argv[1:] if argv is None else argv))


def _register() -> None:
    from . import (  # noqa: F401  (commands register on import)
        activity,
        admin,
        agent,
        backup,
        encrypt,
        execute,
        gitcmd,
        kiro,
        plan,
        storage,
        task,
        templates,
        validate,
    )


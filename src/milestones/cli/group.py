"""The click side of the command line: the ``milestone`` group, its commands' shared
options and helpers (``get_project``, ``emit``, ``say``), and the translation of every
error into one line and its exit code (``--debug`` or MILESTONE_DEBUG=1 shows the
traceback instead). What is printed, and how a failure reads, is ``cli/output.py``'s,
shared with the fast path of the read commands (``cli/fast.py``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, MutableMapping
from gettext import gettext as _
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.utils import make_default_short_help

from .. import __version__
from . import COMMAND_HELP, COMMAND_MODULES, output
from .output import UI_LEVELS, Failure, Interrupted, wants_json

if TYPE_CHECKING:
    from pathlib import Path

    from click.shell_completion import CompletionItem

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A MilestoneError on its way out: one line, its own exit code.

    With ``as_json`` (the command line had ``--json``) the line is a JSON object on
    stderr instead: ``{"schema": 1, "error": {"code", "kind", "message", "hint"}}``.
    """

    def __init__(self, message: str, exit_code: int, *, hint: str | None = None,
                 as_json: bool = False, kind: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{message} — {hint}" if hint else message)
        self.details = details  # more about the error, for --json (audit: the bad event)
        self.exit_code = exit_code
        self.what = message
        self.hint = hint
        self.as_json = as_json
        self.kind = kind

    def show(self, file: Any = None) -> None:
        failure = Failure(self.what, self.exit_code, self.hint, self.kind, self.details)
        click.echo(failure.text(self.as_json), err=True)


def _from_failure(failure: Failure, words: list[str]) -> CliError:
    return CliError(failure.message, failure.code, hint=failure.hint, kind=failure.kind,
                    as_json=wants_json(words), details=failure.details)


def _one_line(exc: click.UsageError, words: list[str] | None = None) -> CliError:
    """click's usage error (usage, a hint, the error: three lines) as one line, with
    where to look; exit code 2 as click's."""
    where = exc.ctx.command_path if exc.ctx is not None else "milestone"
    return CliError(exc.format_message().rstrip("."), exc.exit_code, hint=f"see `{where} -h`",
                    as_json=wants_json(words or []))


class _Commands(MutableMapping[str, click.Command]):
    """``cli.commands``, filled as it is read: see COMMAND_MODULES."""

    def __init__(self) -> None:
        self._commands: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._commands:
            module = COMMAND_MODULES.get(name)
            if module is not None:
                __import__(f"{__package__}.{module}")
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
            output.print_warnings(_project(ctx))
            return result
        except click.exceptions.Exit as exc:
            ok = exc.exit_code == 0
            raise
        except click.UsageError as exc:  # a command or option unknown, an argument bad
            raise _one_line(exc, words) from None
        except CliError as exc:
            exc.as_json = exc.as_json or wants_json(words)
            raise
        except click.ClickException as exc:
            if not wants_json(words):
                raise
            raise CliError(exc.format_message(), exc.exit_code, as_json=True) from None
        except click.Abort as exc:  # a prompt: Ctrl-C there, or no answer (end of input)
            if isinstance(exc.__context__, KeyboardInterrupt):
                click.echo("", err=True)  # end the prompt's line (it is on stderr)
                raise Interrupted from None
            as_json = wants_json(words)
            if not sys.stdin.isatty():  # the answer was not echoed: end the prompt's line
                click.echo("", err=True)
            raise CliError("not confirmed (declined, or no answer at the prompt): nothing "
                           "was changed", 1, as_json=as_json, kind="declined",
                           hint="answer y, or pass --yes to go ahead without asking") from None
        except KeyboardInterrupt:
            raise Interrupted from None
        except BrokenPipeError:
            raise  # the reader of our output went away (`| head`): main() ends quietly
        except Exception as exc:  # ours one line; a bug a traceback (JSON if asked)
            failure = output.failure(exc, wants_json(words))
            if failure is None:
                raise
            raise _from_failure(failure, words) from None
        finally:
            try:
                output.after_command(_project(ctx), _command_name(words),
                                     (time.perf_counter() - started) * 1000, ok)
            except KeyboardInterrupt:
                raise Interrupted from None


def _project(ctx: click.Context) -> Any:
    """The project this command opened, if it opened one."""
    state = ctx.find_object(State)
    return state._project if state is not None else None


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
    return output.choose_ui(ui, count, get_project)


def emit(data: dict[str, Any], view: str, as_json: bool, ui: str | None) -> None:
    """Print ``data`` as JSON or through the ``render_<view>`` of the chosen level."""
    output.emit(data, view, as_json, ui, get_project, opened_project)


def opened_project() -> Any:
    """The project this command opened, None before it opens one."""
    return _project(click.get_current_context())


def revealed(data: Any) -> Any:
    """``data`` with the opened project's encrypted values opened (output.revealed)."""
    return output.revealed(data, opened_project())


def wrote() -> bool:
    """Whether this command's write changed anything (committed an event)."""
    return bool(get_project().commits)


def say(message: str, data: dict[str, Any] | None = None, as_json: bool = False, *,
        ref: str | None = None, milestone_id: str | None = None,
        changed: bool = True) -> None:
    """Confirm a change (``output.say``), protected text opened."""
    output.say(opened_project(), message, data, as_json, ref=ref, milestone_id=milestone_id,
               changed=changed)


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


def run(argv: list[str] | None) -> None:
    """The command line, by click: every error one line and its exit code."""
    cli.main(args=argv, prog_name="milestone")


def _register() -> None:
    from . import (  # noqa: F401  (commands register on import)
        activity,
        admin,
        agent,
        analytics,
        audit,
        backup,
        dashboard,
        encrypt,
        execute,
        gitcmd,
        kiro,
        plan,
        storage,
        task,
        team,
        templates,
        validate,
    )


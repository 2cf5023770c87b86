"""The command-line door: parse, call ``Project``, render. No logic lives here.

Every ``MilestoneError`` becomes one line on stderr and its documented exit
code; ``--debug`` (or MILESTONE_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import __version__
from ..errors import MilestoneError, StorageError

F = TypeVar("F", bound=Callable[..., Any])
UI_LEVELS = ("simple", "rich")


class CliError(click.ClickException):
    """A MilestoneError on its way out: one line, its own exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"milestone: error: {self.message}", err=True)


def _one_line(exc: click.UsageError) -> CliError:
    """click's usage error (usage, a hint, the error: three lines) as one line, with
    where to look; exit code 2 as click's."""
    where = exc.ctx.command_path if exc.ctx is not None else "milestone"
    return CliError(f"{exc.format_message().rstrip('.')} — see `{where} -h`", exc.exit_code)


def _debug() -> bool:
    return os.environ.get("MILESTONE_DEBUG", "") not in ("", "0")


# The module that defines each command. A run imports only the one its command needs
# (about 1 ms of start-up saved); listing the commands (help, completion) imports them all,
# and so does a name missing here, so a new command works before it is listed.
COMMAND_MODULES = {
    **dict.fromkeys(("status", "list", "show", "next", "log", "resume", "note"), "activity"),
    **dict.fromkeys(("init", "demo", "doctor", "completion", "event-types"), "admin"),
    **dict.fromkeys(("plan", "update", "current", "archive", "delete"), "plan"),
    **dict.fromkeys(("import", "export", "review"), "kiro"),
    **dict.fromkeys(("backup", "restore"), "backup"),
    "storage": "storage",
    "task": "task",
    **dict.fromkeys(("agent", "ready"), "agent"),
    "git": "gitcmd",
    "execute": "execute",
    **dict.fromkeys(("template", "quickstart"), "templates"),
    **dict.fromkeys(("validate", "schema"), "validate"),
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
            raise _one_line(exc) from None

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
            raise _one_line(exc) from None
        except (click.ClickException, click.Abort):
            raise
        except MilestoneError as exc:
            if _debug():
                raise
            raise CliError(str(exc), exc.exit_code) from None
        except PermissionError as exc:
            if _debug():
                raise
            err = StorageError(
                f"cannot write {exc.filename or 'the project'}: {exc.strerror}",
                hint="check the directory's permissions",
            )
            raise CliError(str(err), err.exit_code) from None
        except OSError as exc:
            if _debug():
                raise
            err = StorageError(
                f"{exc.filename or 'disk'}: {exc.strerror or exc}",
                hint="check the path, permissions and free space",
            )
            raise CliError(str(err), err.exit_code) from None
        finally:
            _after_command(ctx, words, (time.perf_counter() - started) * 1000, ok)


METRICS_MAX_LINES = 2000  # metrics.jsonl is cut to its last 1000 lines past about this many


def _after_command(ctx: click.Context, words: list[str], ms: float, ok: bool) -> None:
    """Record the command's wall time; after a write, apply the scale policy.

    Only when the command opened a project, and never failing the command: a metric
    that cannot be written is dropped. See ``milestones.scale``.
    """
    state = ctx.find_object(State)
    project = state._project if state is not None else None
    if project is None:
        return
    with contextlib.suppress(Exception):  # metrics are best effort
        _record_metric(project, words, ms, ok)
    commits: int = getattr(project, "commits", 0)
    if ok and commits:
        try:
            from ..scale import after_write

            line = after_write(project)
        except Exception as exc:
            line = f"milestone: debug: scale check failed: {exc!r}" if _debug() else None
        if line:
            click.echo(line, err=True)


def _record_metric(project: Any, words: list[str], ms: float, ok: bool) -> None:
    """Append one line to performance/metrics.jsonl: one O_APPEND write, no fsync."""
    names: list[str] = []
    cmd: click.Command = cli
    for word in words:
        sub = cmd.commands.get(word) if isinstance(cmd, click.Group) else None
        if sub is None:
            break
        names.append(word)
        cmd = sub
    record = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": " ".join(names), "ms": round(ms, 1),
              "backend": project.store.backend, "ok": ok}
    data = (json.dumps(record) + "\n").encode("utf-8")
    folder = os.path.join(project.root, "performance")
    path = os.path.join(folder, "metrics.jsonl")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        if not os.path.isdir(project.root):
            return
        os.makedirs(folder, exist_ok=True)
        fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size == len(data):  # a new file: keep it (and the policy's memo) out of git
        with contextlib.suppress(OSError), open(os.path.join(folder, ".gitignore"), "x") as f:
            f.write("# per machine: command timings, the scale policy's memo\n"
                    "metrics.jsonl\nscale-state.json\n")
    if size > METRICS_MAX_LINES * len(data):  # lines are of about the same length
        from ..scale import trim_metrics

        trim_metrics(Path(path))


def _print_warnings(ctx: click.Context) -> None:
    """Validation warnings a write raised: one line each on stderr."""
    state = ctx.find_object(State)
    project = state._project if state is not None else None
    for w in getattr(project, "warnings", []) or []:
        click.echo(f"milestone: warning: {w.location}: {w.code} {w.message} — {w.hint}", err=True)
    if project is not None:
        project.warnings = []


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
        from ..config import load_config

        cfg = load_config(get_project().root)["ui"]
    except MilestoneError:
        cfg = {"default": "auto", "rich_from_milestones": 5}
    if cfg.get("default") in UI_LEVELS:
        return str(cfg["default"])
    if count is None:
        count = len(get_project().state().milestones)
    return "rich" if count >= int(cfg.get("rich_from_milestones", 5)) else "simple"


def emit(data: dict[str, Any], view: str, as_json: bool, ui: str | None) -> None:
    """Print ``data`` as JSON or through the ``render_<view>`` of the chosen level."""
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    level = choose_ui(ui, len(data["milestones"]) if "milestones" in data else None)
    if level == "rich":
        from ..ui import rich as rich_ui

        getattr(rich_ui, f"render_{view}")(data)
        return
    from ..ui import simple

    click.echo(getattr(simple, f"render_{view}")(data))


def say(message: str, data: dict[str, Any] | None = None, as_json: bool = False) -> None:
    """Confirm a change: one line for people, the changed object for --json."""
    if as_json:
        click.echo(json.dumps({"schema": 1, **(data or {})}, indent=2, ensure_ascii=False))
    else:
        click.echo(message)


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=MilestoneGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="milestone")
@click.option(
    "-C",
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run as if started in this directory.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, directory: Path | None, debug: bool) -> None:
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
    if debug:
        os.environ["MILESTONE_DEBUG"] = "1"
    ctx.obj = State(directory)


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        cli.main(args=argv, prog_name="milestone")
    except BrokenPipeError:
        # Output piped into `head` and friends: not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


def _register() -> None:
    from . import (  # noqa: F401  (commands register on import)
        activity,
        admin,
        agent,
        backup,
        execute,
        gitcmd,
        kiro,
        plan,
        storage,
        task,
        templates,
        validate,
    )


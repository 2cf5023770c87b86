"""Start-up: a command imports what it uses, and nothing another command needs.

Each run happens in a fresh interpreter, started as the console script starts
(``milestones.console.main``), and reports the modules it loaded. A test fails when
an eager import comes back: the project on ``--version``, every command's module on
``--help``, rich for plain or JSON output, the YAML reader or sqlite3 on a read of the
file backend. The ``--help`` command list, written without importing the commands,
must say what the commands themselves say.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from milestones.cli import COMMAND_HELP, COMMAND_MODULES, cli

# Prints the modules loaded when the run ends (the exit code stays the command's).
RUN = """
import atexit, sys
atexit.register(lambda: sys.__stderr__.write("\\nMODULES " + " ".join(sorted(sys.modules))))
sys.argv = ["milestone", *sys.argv[1:]]
from milestones.console import main
main()
"""

COMMAND_MODULE_NAMES = {f"milestones.cli.{m}" for m in COMMAND_MODULES.values()}


def child_env(**extra: str) -> dict[str, str]:
    """This environment without what would load modules of its own in the child: the
    UI setting, and coverage's start-up in subprocesses (``patch = ["subprocess"]``
    in pyproject.toml imports json, pathlib and more before our code runs)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MILESTONE_UI", "COVERAGE_PROCESS", "COV_CORE"))}
    return {**env, **extra}


def loaded(args: list[str], cwd: Path) -> tuple[str, set[str]]:
    """The stdout of ``milestone ARGS`` run in CWD, and the modules it loaded."""
    env = child_env()
    out = subprocess.run([sys.executable, "-c", RUN, *args], cwd=cwd, env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    _, _, names = out.stderr.rpartition("\nMODULES ")
    return out.stdout, set(names.split())


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A file-backend project made through the CLI: one milestone of three tasks."""
    for args in (["init"], ["plan", "Beta", "--task", "Docs", "--task", "Ship",
                            "--task", "Tell"], ["task", "start", "1"]):
        subprocess.run([sys.executable, "-m", "milestones", *args], cwd=tmp_path,
                       capture_output=True, check=True)
    return tmp_path


def test_version_among_options_loads_no_command_and_no_project(tmp_path: Path) -> None:
    out, modules = loaded(["--debug", "--version"], tmp_path)
    assert out.startswith("milestone, version ")
    assert not modules & COMMAND_MODULE_NAMES
    assert not {"milestones.project", "milestones.storage", "rich", "json", "pathlib"} & modules


def test_help_lists_every_command_without_importing_one(tmp_path: Path) -> None:
    out, modules = loaded(["--help"], tmp_path)
    for name in COMMAND_HELP:
        assert f"\n  {name} " in out
    assert not modules & COMMAND_MODULE_NAMES
    assert not {"milestones.project", "rich"} & modules


@pytest.mark.parametrize("args", [["status", "--json"], ["status"], ["list"], ["show", "1"],
                                  ["next"], ["next", "--json"], ["ready", "--limit", "2"],
                                  ["-C", ".", "list", "--status", "in_progress", "-n", "5"]])
def test_a_plain_read_takes_the_fast_path_no_click_no_rich(built: Path, args: list[str]
                                                         ) -> None:
    _, modules = loaded(args, built)
    assert not modules & (COMMAND_MODULE_NAMES | {"click", "milestones.cli.group"})
    # plain output in a pipe: no rich; the file backend reads no YAML and no database
    assert not {"rich", "ruamel", "ruamel.yaml", "sqlite3"} & modules
    # nor what only large answers need, or a registration
    assert not {"orjson", "socket", "hashlib"} & modules


@pytest.mark.parametrize("args", [["log"], ["--debug", "status"], ["list", "--limit=5"],
                                  ["show", "1", "-h"]])
def test_other_reads_load_their_own_command_only_and_no_rich(built: Path, args: list[str]
                                                             ) -> None:
    _, modules = loaded(args, built)
    assert modules & COMMAND_MODULE_NAMES == {"milestones.cli.activity"}
    assert not {"rich", "ruamel", "ruamel.yaml", "sqlite3"} & modules


@pytest.mark.parametrize("args", [["task", "done", "1"], ["task", "start", "1/2", "--json"],
                                  ["agent", "claim", "--agent", "a1", "--json"]])
def test_the_writes_agents_run_most_take_the_fast_path(built: Path, args: list[str]) -> None:
    """``task start|done`` and ``agent claim`` in their plain forms: no click, no command
    module, no rich (click's import is a fifth of such a write's time)."""
    subprocess.run([sys.executable, "-m", "milestones", "agent", "register", "--name", "a1"],
                   cwd=built, capture_output=True, check=True)
    _, modules = loaded(args, built)
    assert not modules & (COMMAND_MODULE_NAMES | {"click", "milestones.cli.group"})
    assert "rich" not in modules


def test_another_task_command_loads_the_task_commands_only(built: Path) -> None:
    _, modules = loaded(["task", "stop", "1"], built)
    assert modules & COMMAND_MODULE_NAMES == {"milestones.cli.task"}
    assert "rich" not in modules


def first_paragraph(command: click.Command) -> str:
    """What click shortens to a command's line in its group's help."""
    words = (command.help or "").split("\n\n")[0].split()
    return " ".join(words[1:] if words[:1] == ["\b"] else words)


def test_the_help_table_says_what_the_commands_say() -> None:
    listed = {name: first_paragraph(cmd) for name, cmd in cli.commands.items()
              if not cmd.hidden}
    assert listed == COMMAND_HELP, "a command's help changed: copy it to COMMAND_HELP (cli)"
    assert not any(cmd.short_help or cmd.deprecated for cmd in cli.commands.values())


@pytest.mark.parametrize("width", [40, 60, 80, 100, 140])
def test_help_from_the_table_equals_clicks_own(width: int) -> None:
    ctx = click.Context(cli, info_name="milestone")
    ours, clicks = click.HelpFormatter(width=width), click.HelpFormatter(width=width)
    cli.format_commands(ctx, ours)
    click.Group.format_commands(cli, ctx, clicks)
    assert ours.getvalue() == clicks.getvalue()
    assert "Commands:" in ours.getvalue()


@pytest.mark.parametrize("incomplete", ["", "s", "st", "ta", "re", "x", "-", "--"])
def test_completing_a_command_name_equals_clicks_own(incomplete: str) -> None:
    ctx = click.Context(cli, info_name="milestone")
    ours = cli.shell_complete(ctx, incomplete)
    clicks = click.MultiCommand.shell_complete(cli, ctx, incomplete)
    assert [(i.value, i.help, i.type) for i in ours] == [(i.value, i.help, i.type)
                                                         for i in clicks]


def test_completing_a_command_name_imports_no_command(tmp_path: Path) -> None:
    env = {**child_env(), "_MILESTONE_COMPLETE": "zsh_complete", "COMP_WORDS": "milestone ",
           "COMP_CWORD": "1"}
    code = RUN.replace('sys.argv = ["milestone", *sys.argv[1:]]', 'sys.argv = ["milestone"]')
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "plain\nstatus\nProgress of the current milestone (or REF,...\n" in out.stdout
    modules = set(out.stderr.rpartition("\nMODULES ")[2].split())
    assert not modules & COMMAND_MODULE_NAMES


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_alone_is_answered_before_the_cli_loads(tmp_path: Path, flag: str) -> None:
    """The same line click's --version prints, without loading click."""
    out, modules = loaded([flag], tmp_path)
    assert out == CliRunner().invoke(cli, [flag], prog_name="milestone").output
    assert not {"click", "milestones.cli"} & modules


def test_version_with_an_undecodable_variable_still_reports_it(tmp_path: Path) -> None:
    env = child_env(MILESTONE_UI="caf\udce9")
    out = subprocess.run([sys.executable, "-c", RUN, "--version"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 4
    assert "environment variable MILESTONE_UI" in out.stderr
    assert out.stdout == ""

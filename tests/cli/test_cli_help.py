"""Every command documents itself with an example; version and completion work."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from milestones import __version__
from milestones.cli import cli


def all_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, cmd in group.commands.items():
        if cmd.hidden:
            continue
        path = (*prefix, name)
        found.append(path)
        if isinstance(cmd, click.Group):
            found += all_commands(cmd, path)
    return found


COMMANDS = all_commands()


def test_the_issue_commands_exist() -> None:
    names = {" ".join(c) for c in COMMANDS}
    expected = {"init", "plan", "update", "current", "status", "list", "show", "next", "log",
                "resume", "archive", "delete", "demo", "doctor", "note", "completion",
                "task add", "task edit", "task start", "task stop", "task done", "task block",
                "task unblock", "task skip", "task reopen", "task progress", "task assign"}
    assert expected <= names


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p))
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output, f"`milestone {' '.join(path)} --help` lacks an example"
    assert "milestone " in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "milestones", "--version"], capture_output=True,
                         text=True, check=True)
    assert __version__ in out.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0
    assert "_MILESTONE_COMPLETE" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner(mix_stderr=False).invoke(cli, ["frobnicate"], prog_name="milestone")
    assert result.exit_code == 2
    assert result.stderr == "milestone: error: No such command 'frobnicate' — see `milestone -h`\n"
    result = CliRunner(mix_stderr=False).invoke(cli, ["--frobnicate"], prog_name="milestone")
    assert result.stderr == "milestone: error: No such option: --frobnicate — see `milestone -h`\n"


def test_every_command_is_in_the_lazy_map() -> None:
    from milestones.cli import COMMAND_MODULES

    top = {name for name, cmd in cli.commands.items()}
    assert top <= set(COMMAND_MODULES), top - set(COMMAND_MODULES)
    for name, module in COMMAND_MODULES.items():
        assert cli.commands[name].callback.__module__ == f"milestones.cli.{module}"


@pytest.mark.parametrize("name", ["backup", "restore", "quickstart", "template", "storage"])
def test_lazily_loaded_commands_run_in_a_real_process(name: str) -> None:
    out = subprocess.run([sys.executable, "-m", "milestones", name, "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Example" in out.stdout

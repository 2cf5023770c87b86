"""The fast path (``cli/fast.py``: the reads, ``task start|done`` and ``agent claim``)
answers exactly as the click command does: the same stdout, stderr and exit code for
every command line it takes, errors included, and for a write the same change; and it
takes no command line click would read another way."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ConsoleMain
from milestones.cli import cli, fast


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three milestones: one in progress (a task done, one started, one blocked by a
    dependency), one planned with tags and a due date, one with a title people wrote."""
    root = tmp_path_factory.mktemp("fast")
    runner = CliRunner()
    steps = [
        ["init"],
        ["plan", "Beta", "--task", "Docs", "--task", "Ship", "--tag", "web"],
        ["task", "add", "1", "Tell", "--depends-on", "2"],
        ["task", "start", "1/1"], ["task", "done", "1/1"], ["task", "start", "1/2"],
        ["plan", "Later", "--task", "One", "--priority", "high", "--due", "2030-01-02",
         "--tag", "backend"],
        ["plan", "Say \"hi\" <b>", "--task", "Ünïcode ✓"],
    ]
    for args in steps:
        result = runner.invoke(cli, ["-C", str(root), *args], catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
    return root


TAKEN = [
    ["status"], ["status", "--json"], ["status", "2"], ["status", "--all"],
    ["status", "-a", "--json"], ["status", "--ui", "simple"], ["status", "9"],
    ["status", "9", "--json"],
    ["next"], ["next", "--json"], ["next", "--all"], ["next", "-n", "1"],
    ["next", "1", "--limit", "1", "--json"], ["next", "nosuch"],
    ["ready"], ["ready", "--json"], ["ready", "1", "--json"], ["ready", "--limit", "1"],
    ["ready", "-n", "2", "--json"], ["ready", "7", "--json"],
    ["list"], ["list", "--json"], ["list", "--status", "in_progress"],
    ["list", "-s", "planned", "-s", "in_progress", "--tag", "backend"],
    ["list", "--priority", "high", "-p", "medium", "--json"], ["list", "--overdue"],
    ["list", "--all", "--owner", "nobody"], ["list", "--limit", "1"],
    ["list", "--limit", "1", "--after", "milestone-001", "--json"],
    ["list", "--after", "zzz"],
    ["show", "1"], ["show", "1", "--json"], ["show", "1/2"], ["show", "3", "--critical-path"],
    ["show", "1/9"], ["show", "nosuch", "--json"],
]


@pytest.mark.parametrize("args", TAKEN, ids=" ".join)
def test_the_fast_path_answers_as_click_does(planned: Path, args: list[str]) -> None:
    argv = ["-C", str(planned), *args]
    assert fast.parse(argv) is not None, "the fast path should take this command line"
    runner = CliRunner(mix_stderr=False)
    ours = runner.invoke(ConsoleMain(), argv)  # type: ignore[arg-type]
    clicks = runner.invoke(cli, argv)
    assert ours.exception is None or isinstance(ours.exception, SystemExit), ours.exception
    assert (ours.exit_code, ours.stdout, ours.stderr) == (
        clicks.exit_code, clicks.stdout, clicks.stderr)
    if "--json" in args and ours.exit_code == 0:
        assert json.loads(ours.stdout)


DECLINED = [
    [], ["--debug", "status"], ["status", "--help"], ["status", "-h"], ["status", "1", "2"],
    ["status", "--ui", "fancy"], ["status", "--ui=rich"], ["status", "-"], ["status", ""],
    ["status", "--", "1"], ["next", "--limit", "0"], ["next", "--limit", "-1"],
    ["next", "--limit=5"], ["next", "-n5"], ["next", "--limit", "5_0"], ["next", "--limit"],
    ["next", "--limit", "1", "--limit", "2"], ["ready", "--all"], ["ready", "--ui", "rich"],
    ["list", "1"], ["list", "--status", "bogus"], ["list", "--priority", "HIGH"],
    ["list", "--after", ""], ["list", "--tag", "--json"], ["show"], ["show", "--json"],
    ["log"], ["-C"], ["-C", "a", "-C", "b", "status"],
    ["--directory=a", "status"], ["statuss"],
    ["task"], ["task", "done"], ["task", "done", "1", "2"], ["task", "done", "1", "--force=1"],
    ["task", "stop", "1"], ["task", "--help"],
    ["task", "done", "--help"], ["task", "skip", "1"], ["agent", "claim", "1", "2"],
    ["agent", "claim", "--lease", "0"], ["agent", "claim", "--lease", "-5"],
    ["agent", "claim", "--lease", "1e3"], ["agent", "claim", "--agent"],
    ["agent", "claim", "--agent", "a", "--agent", "b"], ["agent", "complete"], ["agent"],
]


@pytest.mark.parametrize("args", DECLINED, ids=" ".join)
def test_what_click_should_judge_goes_to_click(args: list[str]) -> None:
    assert fast.parse(args) is None


def test_a_directory_that_is_a_file_goes_to_click(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert fast.parse(["-C", str(tmp_path / "f"), "status"]) is None
    assert fast.parse(["-C", str(tmp_path), "status"]) is not None


def test_a_fast_read_records_its_metric(planned: Path) -> None:
    metrics = planned / ".milestones" / "performance" / "metrics.jsonl"
    before = metrics.read_text().splitlines() if metrics.exists() else []
    result = CliRunner().invoke(ConsoleMain(), ["-C", str(planned), "ready", "--json"])  # type: ignore[arg-type]
    assert result.exit_code == 0
    lines = metrics.read_text().splitlines()
    assert len(lines) == len(before) + 1
    assert json.loads(lines[-1])["command"] == "ready"


WRITES = [
    ["task", "start", "2/1"], ["task", "start", "2/1", "--json"], ["task", "done", "1/2"],
    ["task", "done", "1/2", "--json"], ["task", "done", "1/3"],
    ["task", "done", "1/3", "--force", "--json"], ["task", "start", "9/9", "--json"],
    ["task", "done", "1/1"], ["task", "start", "1/2"], ["task", "done", "3/1", "--force"],
    ["agent", "claim", "--agent", "a1", "--json"], ["agent", "claim", "2", "--agent", "a1"],
    ["agent", "claim", "--agent", "nobody", "--json"],
    ["agent", "claim", "--lease", "900", "--agent", "a1", "--json"],
    ["agent", "claim", "7", "--agent", "a1"],
]
_VARYING = re.compile(r'[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z|"(hash|prev_hash)": "[0-9a-f]+"'
                      r'|"time_spent": [0-9]+|"session_id": "[^"]*"')


def _same(text: str) -> str:
    """Output with what differs between two runs a moment apart (times, hashes) masked."""
    return _VARYING.sub("~", text)


@pytest.mark.parametrize("args", WRITES, ids=" ".join)
def test_a_fast_write_answers_and_changes_as_click_does(
        planned: Path, tmp_path: Path, args: list[str]) -> None:
    base = tmp_path / "base"
    shutil.copytree(planned, base)
    runner = CliRunner(mix_stderr=False)
    assert runner.invoke(cli, ["-C", str(base), "agent", "register", "--name", "a1"]
                         ).exit_code == 0
    ways = {}
    for way, entry in (("fast", ConsoleMain()), ("click", cli)):
        copy = tmp_path / way
        shutil.copytree(base, copy)
        argv = ["-C", str(copy), *args]
        assert fast.parse(argv) is not None, "the fast path should take this command line"
        got = runner.invoke(entry, argv)  # type: ignore[arg-type]
        assert got.exception is None or isinstance(got.exception, SystemExit), got.exception
        log = runner.invoke(cli, ["-C", str(copy), "log", "--json"]).stdout
        ways[way] = (got.exit_code, _same(got.stdout), _same(got.stderr), _same(log))
    assert ways["fast"] == ways["click"]

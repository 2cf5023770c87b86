"""What a newcomer meets in the first minutes: the demo, messages that tell the truth."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from milestones.agents.executor import Executor, Options
from milestones.cli import cli
from milestones.project import Project


def run(cwd: Path, *args: str, env: dict[str, str] | None = None,
        input: str | None = None) -> Result:
    return CliRunner(mix_stderr=False).invoke(cli, ["-C", str(cwd), *args], env=env,
                                              input=input)


def milestone(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MILESTONE_UI": "simple"}
    return subprocess.run([sys.executable, "-m", "milestones", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_every_command_the_demo_suggests_works_as_printed(tmp_path: Path) -> None:
    where = tmp_path / "try"
    demo = milestone(tmp_path, "demo", str(where))
    assert demo.returncode == 0, demo.stderr
    suggested = demo.stdout.split("\nTry:\n", 1)[1].strip().splitlines()
    assert suggested[0].strip() == f"cd {where}"
    commands = [shlex.split(line) for line in suggested[1:]]
    assert commands and all(c[0] == "milestone" for c in commands)
    assert json.loads(milestone(where, "next", "--json").stdout)["tasks"]
    for words in commands:
        done = milestone(where, *words[1:])
        assert done.returncode == 0, (words, done.stdout, done.stderr)
        if words[1] == "next":
            assert "milestone-001/task-" in done.stdout, done.stdout  # ready work, not none


def test_a_stale_token_is_called_stale(tmp_path: Path) -> None:
    Project.init(tmp_path)
    assert run(tmp_path, "plan", "Beta", "--task", "A", "--task", "B").exit_code == 0

    def register(name: str) -> str:
        out = run(tmp_path, "agent", "register", "--name", name, "--json").stdout
        return str(json.loads(out)["agent"]["id"])

    a, b = register("a"), register("b")
    assert run(tmp_path, "agent", "claim", "1", "--agent", a).exit_code == 0  # token 1
    assert run(tmp_path, "agent", "release", "1/1", "--agent", a).exit_code == 0
    assert run(tmp_path, "agent", "claim", "1", "--agent", b).exit_code == 0  # token 2
    late = run(tmp_path, "agent", "complete", "1/1", "--token", "1", "--agent", a)
    assert late.exit_code == 7
    assert "claim token 1 is stale: the current token is 2 (held by " + b in late.stderr
    # its own later claim: it names the current token to give
    own = run(tmp_path, "agent", "complete", "1/1", "--token", "1", "--agent", b)
    assert own.exit_code == 7 and "is stale" in own.stderr and "--token 2" in own.stderr
    # a token for a task nobody claimed: stale too, and it says why (not "token None")
    never = run(tmp_path, "agent", "complete", "1/2", "--token", "1", "--agent", a)
    assert never.exit_code == 7 and "is stale" in never.stderr
    assert "never been claimed" in never.stderr and "None" not in never.stderr
    assert Project.open(tmp_path).milestone("1").tasks[0].status == "in_progress"


def test_execute_closing_line_tells_what_ran(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path)
    p.plan("Smoke", tasks=[{"title": "one", "run": "true"}, {"title": "two", "run": "true"}])
    first = run(tmp_path, "execute", "1", "--ui", "simple")
    assert first.exit_code == 0, first.stderr
    last = first.stdout.strip().splitlines()[-1]
    assert last.startswith("milestone-001 done: 2/2 done; this run: 2 completed, "
                           "0 failed attempts"), last
    again = run(tmp_path, "execute", "1", "--ui", "simple")
    assert again.exit_code == 0
    assert again.stdout.strip().splitlines()[-1] == (
        "milestone-001 done: 2/2 done; nothing ran: every task was finished before this run")
    dry = run(tmp_path, "plan", "Next", "--task", "x")
    assert dry.exit_code == 0
    text = run(tmp_path, "execute", "2", "--dry-run", "--agents", "1").stdout
    assert "1 open task in 1 wave, widest 1, with 1 agent" in text


def test_a_stop_after_every_task_finished_reports_done(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path)
    p.plan("Smoke", tasks=[{"title": "one", "run": "true"}])
    ex = Executor(p, "1", Options(agents=1))
    ex.check()
    ex.start()
    summary = ex.wait()
    assert summary["outcome"] == "done"
    ex.stop_reason = "SIGTERM"  # a signal that lands once the work is all done
    again = ex.summary()
    assert (again["outcome"], again["exit_code"]) == ("done", 0)


def test_status_all_totals_say_archived_are_counted(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path)
    for title in ("One", "Two", "Three"):
        p.plan(title, tasks=["a"])
    p.complete_task("1/1")
    p.archive("1")
    data = json.loads(run(tmp_path, "status", "--all", "--json").stdout)
    assert [m["id"] for m in data["milestones"]] == ["milestone-002", "milestone-003"]
    totals = data["totals"]
    assert totals["includes_archived"] is True
    assert totals["milestones"] == 3 and totals["by_status"]["archived"] == 1
    text = run(tmp_path, "status", "--all", "--ui", "simple").stdout
    assert "3 milestones in all, 1 of them archived (not listed above); tasks: 1 done" in text


def test_quickstart_without_a_terminal_creates_nothing(tmp_path: Path) -> None:
    result = run(tmp_path, "quickstart", "--template", "bugfix", "--var", "bug=Crash")
    assert result.exit_code == 2
    assert "--yes" in result.stderr and "not a terminal" in result.stderr
    assert not (tmp_path / ".milestones").exists()
    Project.init(tmp_path)
    assert run(tmp_path, "quickstart").exit_code == 2
    assert Project.open(tmp_path).state().milestones == {}
    assert run(tmp_path, "quickstart", "--yes", "--template", "bugfix", "--var",
               "bug=Crash").exit_code == 0


def test_plurals(tmp_path: Path) -> None:
    Project.init(tmp_path)
    out = run(tmp_path, "plan", "One", "--task", "A").stdout
    assert out.strip() == "Planned milestone-001: One (1 task)"
    out = run(tmp_path, "plan", "Two", "--task", "A", "--task", "B").stdout
    assert "(2 tasks)" in out
    out = run(tmp_path, "plan", "Three").stdout
    assert "(0 tasks)" in out
    status = run(tmp_path, "storage", "status").stdout
    assert "Holds: 3 milestones, 3 tasks," in status
    out = run(tmp_path, "backup", "--to", str(tmp_path / "b.tar.gz")).stdout
    assert " 1 events" not in out and "event(s)" not in out


def test_an_archived_milestone_refuses_update_and_task_writes(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path)
    p.plan("Done", tasks=["a"])
    p.complete_task("1/1")
    p.archive("1")
    path = tmp_path / ".milestones/completed/milestone-001.yaml"
    before = path.read_bytes()
    result = run(tmp_path, "update", "1", "--title", "Again")
    assert result.exit_code == 5
    assert "archived" in result.stderr and "final" in result.stderr
    assert "milestone plan" in result.stderr
    for args in (("task", "add", "1", "More"), ("task", "reopen", "1/1"),
                 ("task", "edit", "1/1", "--title", "x")):
        refused = run(tmp_path, *args)
        assert refused.exit_code == 5 and "archived" in refused.stderr, args
    assert path.read_bytes() == before


@pytest.mark.parametrize("args", [("list",), ("show", "1"), ("next",), ("log",),
                                  ("template", "list"), ("validate", "--list-rules")])
def test_rich_tables_stay_readable_at_60_columns(tmp_path: Path,
                                                  args: tuple[str, ...]) -> None:
    assert run(tmp_path, "demo", str(tmp_path)).exit_code == 0
    result = run(tmp_path, *args, "--ui", "rich", env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 60 for line in lines), result.stdout
    header = next(line for line in lines if line.strip())
    assert all((len(word) >= 2 or word == "#") and "…" not in word
               for word in header.split()), header
    text = result.stdout
    if args[0] in ("list", "log"):
        assert "milestone-001" in text and "milestone-00…" not in text
    if args[0] == "list":
        assert "Command-line MVP" in text and "33.3%" in text
    if args[0] == "show":
        assert "Design the data model" in text  # a task title on one line
    if args[0] == "next":
        assert "milestone-001/task-4" in text and "Write the README" in text


def test_doctor_counts_in_the_singular(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path)
    p.plan("One", tasks=["a"])
    text = run(tmp_path, "doctor", "--ui", "simple").stdout
    assert "1 milestone matches the log" in text and "1 file parses" in text, text
    assert " 1 events" not in text and "(s)" not in text

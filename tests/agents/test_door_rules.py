"""Rules hold at every door: `git link` closes a task only as `task done` would,
and damaged agent records are an error, never an empty default (issue 12)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import Runner
from milestones.cli import cli
from milestones.project import Project

BACKENDS = ["file", "hybrid", "database"]
MID = "milestone-001"


def git(cwd: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, input=input).stdout


def make_repo(path: Path) -> None:
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    git(path, "config", "commit.gpgsign", "false")


def commit(cwd: Path, message: str) -> str:
    p = cwd / "f.txt"
    p.write_text((p.read_text() if p.exists() else "") + message + "\n")
    git(cwd, "add", "f.txt")
    git(cwd, "commit", "-q", "-F", "-", input=message)
    return git(cwd, "rev-parse", "HEAD").strip()


@pytest.fixture(params=BACKENDS)
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Runner:
    Project.init(tmp_path, backend=request.param)
    make_repo(tmp_path)
    return Runner(tmp_path)


def task(run: Runner, ref: str) -> dict[str, Any]:
    return dict(run.json("show", ref)["task"])


def split(run: Runner, *args: str) -> Any:
    """The CLI with stdout and stderr apart (click 8.1 mixes them by default)."""
    return CliRunner(mix_stderr=False).invoke(cli, ["-C", str(run.cwd), *args],
                                              catch_exceptions=False)


def link(run: Runner) -> tuple[dict[str, Any], str]:
    r = split(run, "git", "link", "--json")
    assert r.exit_code == 0, r.output  # the commits are linked: the link itself succeeded
    return json.loads(r.stdout), r.stderr


# ------------------------------------------------------------------ git link


def test_closing_commit_respects_unmet_dependencies(run: Runner, tmp_path: Path) -> None:
    run.ok("plan", "Ship", "--task", "Base", "--task", "Top")
    run.ok("task", "edit", f"{MID}/task-2", "--depends-on", "task-1")
    sha = commit(tmp_path, "Top done\n\nCloses milestone-001/task-2")
    data, err = link(run)
    assert data["completed"] == []
    assert [(r["ref"], r["sha"]) for r in data["not_closed"]] == [(f"{MID}/task-2", sha)]
    assert "warning" in err and f"{MID}/task-2" in err and "task-1" in err and sha[:10] in err
    t = task(run, f"{MID}/task-2")
    assert t["status"] == "todo"  # `task done` would refuse: so does the commit
    rec = t["execution"]["commits"][0]
    assert rec["sha"] == sha and "task-1" in rec["close_refused"]
    events = run.json("log", "--type", "task_close_refused")
    rows = events.get("events", events) if isinstance(events, dict) else events
    assert len(rows) == 1
    assert sha[:10] in run.ok("show", f"{MID}/task-2", "--ui", "simple")

    # again: same warning, nothing new written
    data, err = link(run)
    assert data["not_closed"] and f"{MID}/task-2" in err
    rows2 = run.json("log", "--type", "task_close_refused")
    assert (rows2.get("events", rows2) if isinstance(rows2, dict) else rows2) == rows

    # once the dependency is done, linking again closes it
    run.ok("task", "done", f"{MID}/task-1")
    data, err = link(run)
    assert data["completed"] == [f"{MID}/task-2"] and data["not_closed"] == []
    assert task(run, f"{MID}/task-2")["status"] == "done"


def test_closing_commit_respects_blocked(run: Runner, tmp_path: Path) -> None:
    run.ok("plan", "Ship", "--task", "Only")
    run.ok("task", "block", f"{MID}/task-1", "--reason", "waiting for the vendor")
    sha = commit(tmp_path, "Fixed\n\nCloses milestone-001/task-1")
    data, err = link(run)
    assert data["completed"] == [] and data["not_closed"][0]["sha"] == sha
    assert "blocked" in data["not_closed"][0]["reason"]
    assert f"{MID}/task-1" in err and "blocked" in err
    t = task(run, f"{MID}/task-1")
    assert t["status"] == "blocked" and t["blockers"] == ["waiting for the vendor"]
    assert "blocked" in t["execution"]["commits"][0]["close_refused"]


def test_closing_commit_completes_a_ready_task(run: Runner, tmp_path: Path) -> None:
    run.ok("plan", "Ship", "--task", "Base", "--task", "Top")
    run.ok("task", "edit", f"{MID}/task-2", "--depends-on", "task-1")
    run.ok("task", "done", f"{MID}/task-1")
    sha = commit(tmp_path, "Top\n\nCloses milestone-001/task-2")
    data, err = link(run)
    assert data["completed"] == [f"{MID}/task-2"] and data["not_closed"] == []
    assert "warning" not in err
    t = task(run, f"{MID}/task-2")
    assert t["status"] == "done" and t["execution"]["closed_by"] == sha

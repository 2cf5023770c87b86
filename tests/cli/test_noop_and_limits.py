"""An edit that changes nothing succeeds ("nothing changed", no event), and no write
leaves a file the tool could not read back (the 10 MB limit), on every backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Runner
from milestones.project import Project

BACKENDS = ["file", "hybrid", "database", "postgres"]


@pytest.fixture(params=BACKENDS)
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Runner:
    Project.init(tmp_path, backend=request.param)
    run = Runner(tmp_path)
    run.ok("plan", "Alpha", "--priority", "high", "--tag", "web", "--task", "one",
           "--task", "two")
    run.ok("plan", "Beta")
    run.ok("task", "edit", "1/1", "--estimate", "3", "--skill", "python")
    run.ok("task", "assign", "1/1", "alice")
    run.ok("task", "block", "1/2", "--reason", "waiting")
    return run


def events(run: Runner) -> int:
    return len(run.json("log", "--limit", "100000")["events"])


NO_OPS = [
    ("update", "1", "--title", "Alpha"),
    ("update", "1", "--priority", "high", "--tag", "web"),
    ("update", "1", "--add-tag", "web"),
    ("update", "1", "--remove-tag", "not-there"),
    ("update", "1", "--status", "planned"),
    ("task", "edit", "1/1", "--title", "one", "--estimate", "3"),
    ("task", "edit", "1/1", "--skill", "python"),
    ("task", "edit", "1/2", "--no-depends"),
    ("task", "assign", "1/1", "alice"),
    ("task", "assign", "1/2", "--none"),
    ("task", "progress", "1/2", "0"),
    ("current", "1"),
    ("task", "block", "1/2", "--reason", "waiting"),
]


@pytest.mark.parametrize("args", NO_OPS, ids=[" ".join(a) for a in NO_OPS])
def test_an_edit_that_changes_nothing_succeeds(cli: Runner, args: tuple[str, ...]) -> None:
    n = events(cli)
    result = cli(*args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("nothing changed"), result.output
    data = json.loads(cli.ok(*args, "--json"))
    assert data["changed"] is False
    assert {"milestone", "task", "current"} & set(data)  # the object as usual
    assert events(cli) == n  # no event appended


def test_a_real_edit_still_says_what_it_did(cli: Runner) -> None:
    n = events(cli)
    out = cli.ok("update", "1", "--title", "Alpha 2")
    assert out.startswith("Updated milestone-001"), out
    assert "changed" not in cli.json("task", "assign", "1/1", "bob")
    assert events(cli) == n + 2


def test_update_without_any_option_is_still_a_usage_mistake(cli: Runner) -> None:
    result = cli("update", "1")
    assert result.exit_code == 4, result.output
    assert "nothing to change" in result.output


def _huge_plan(tmp_path: Path, tasks: int) -> Path:
    # 20,000 emoji a description (the longest a text may be) are 80 kB in the plan
    # file and 200 kB in the milestone's YAML (written as \U0001F600 escapes).
    plan = {"title": "Huge", "tasks": [{"title": f"t{i}", "description": "\U0001F600" * 20_000}
                                       for i in range(tasks)]}
    path = tmp_path / "plan.yaml"
    path.write_text(json.dumps(plan, ensure_ascii=False), "utf-8")
    return path


def test_a_write_the_tool_could_not_read_back_is_refused(cli: Runner, tmp_path: Path) -> None:
    root = tmp_path / ".milestones"
    n = events(cli)
    before = sorted(p.name for p in root.rglob("*") if p.is_file())
    result = cli("plan", "--from-file", str(_huge_plan(tmp_path, 60)))
    after = sorted(p.name for p in root.rglob("*") if p.is_file())
    assert [f for f in after if f not in before and "metrics" not in f] == []
    assert result.exit_code == 4, result.output
    assert "milestone-003" in result.output and "10 MB" in result.output, result.output
    assert result.output.count("\n") == 1  # one line
    assert events(cli) == n
    assert [m["id"] for m in cli.json("list")["milestones"]] == ["milestone-001",
                                                                  "milestone-002"]


def test_a_write_that_would_tip_a_milestone_over_the_limit_is_refused(
        cli: Runner, tmp_path: Path) -> None:
    cli.ok("plan", "--from-file", str(_huge_plan(tmp_path, 52)))  # 10.4 MB of YAML
    n = events(cli)
    result = cli("task", "add", "3", "more", "--description", "\U0001F600" * 20_000)
    assert result.exit_code == 4, result.output
    assert "10 MB" in result.output
    assert events(cli) == n
    assert len(cli.json("show", "3")["milestone"]["tasks"]) == 52  # and it reads back

"""A deadlock across levels (milestone B waits on milestone A while a task of A waits
on a task of B) is a cycle of one graph of tasks and milestones (MS208): refused at
write time, reported by `validate` after a hand edit (issue 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from milestones.cli import cli
from milestones.project import Project
from milestones.validation import engine

BACKENDS = ["file", "hybrid", "database", "postgres"]
CYCLE = "milestone-001 → milestone-001/task-1 → milestone-002/task-3 → milestone-001"


class Cli:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, *args: str) -> Any:
        return CliRunner(mix_stderr=False).invoke(cli, ["-C", str(self.cwd), *args],
                                                  catch_exceptions=False)

    def ok(self, *args: str) -> str:
        r = self(*args)
        assert r.exit_code == 0, (args, r.stdout, r.stderr)
        return str(r.stdout)


def plan_two(run: Cli) -> None:
    run.ok("plan", "A", "--task", "a1", "--task", "a2")
    run.ok("plan", "B", "--task", "b1", "--task", "b2", "--task", "b3")


@pytest.fixture(params=BACKENDS)
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    Project.init(tmp_path, backend=request.param)
    return Cli(tmp_path)


def refused(run: Cli, *args: str, cycle: str = CYCLE) -> str:
    before = run.ok("show", "1", "--json") + run.ok("show", "2", "--json")
    r = run(*args)
    assert r.exit_code == 5, (r.stdout, r.stderr)
    err = str(r.stderr)
    assert err.startswith("milestone: error: MS208 ") and cycle in err
    assert "Traceback" not in err
    assert run.ok("show", "1", "--json") + run.ok("show", "2", "--json") == before
    return err


def test_task_dependency_closing_the_loop_is_refused(run: Cli) -> None:
    plan_two(run)
    run.ok("update", "2", "--depends-on", "1")
    refused(run, "task", "edit", "1/1", "--depends-on", "2/3")
    refused(run, "task", "add", "1", "a3", "--depends-on", "2/3",
            cycle=CYCLE.replace("001/task-1", "001/task-3"))


def test_milestone_dependency_closing_the_loop_is_refused(run: Cli) -> None:
    plan_two(run)
    run.ok("task", "edit", "1/1", "--depends-on", "2/3")
    err = refused(run, "update", "2", "--depends-on", "1")
    assert "milestone-002 depends on milestone-001" in err


def test_same_direction_is_no_cycle(run: Cli) -> None:
    plan_two(run)
    run.ok("update", "2", "--depends-on", "1")
    run.ok("task", "edit", "2/3", "--depends-on", "1/1")  # B's task waits on A's: fine
    run.ok("plan", "C", "--depends-on", "2", "--task", "c1")
    r = run("validate")
    assert r.exit_code == 0 and "MS208" not in r.stdout


@pytest.mark.parametrize("backend", ["file", "hybrid"])
def test_hand_edit_is_reported_by_validate(tmp_path: Path, backend: str) -> None:
    Project.init(tmp_path, backend=backend)
    run = Cli(tmp_path)
    plan_two(run)
    run.ok("update", "2", "--depends-on", "1")
    path = tmp_path / ".milestones" / "active" / "milestone-001.yaml"
    text = path.read_text()
    assert "- id: task-1\n" in text
    path.write_text(text.replace("- id: task-1\n",
                                 "- id: task-1\n  depends_on: [milestone-002/task-3]\n"))
    r = run("validate")
    assert r.exit_code == 5, (r.stdout, r.stderr)
    assert "MS208" in r.stdout and CYCLE in r.stdout
    assert "milestone-002.yaml" in r.stdout  # located at the milestone that waits
    assert "MS203" not in r.stdout  # no cycle of tasks alone: only the crossing one
    # `next` offers nothing of the deadlocked tasks (and points at validate); the
    # unrelated work goes on
    run.ok("task", "done", "1/2")
    shown = run.ok("next", "--ui", "simple")
    assert "Nothing is ready" in shown and "milestone validate" in shown


def test_rule_over_snapshots() -> None:
    """The rule itself, without a store: the cycle path and a scope that misses it."""
    def ms(mid: str, deps: list[str], tasks: dict[str, list[str]]) -> dict[str, Any]:
        return {"id": mid, "status": "planned", "depends_on": deps,
                "tasks": [{"id": t, "status": "todo", "depends_on": d}
                          for t, d in tasks.items()]}
    plan = {"milestone-001": ms("milestone-001", [], {"task-1": ["milestone-002/task-3"],
                                                     "task-2": []}),
            "milestone-002": ms("milestone-002", ["milestone-001"],
                                {"task-1": [], "task-2": [], "task-3": []}),
            "milestone-003": ms("milestone-003", [], {"task-1": []})}
    found = [f for f in engine.run(engine.Context(plan, "2026-01-01"), ("standard",))
             if f.code == "MS208"]
    assert len(found) == 1 and CYCLE in found[0].message
    assert found[0].ref == "milestone-002" and found[0].severity == "error"
    scoped = engine.run(engine.Context(plan, "2026-01-01", scope={"milestone-003"}),
                        ("standard",), write_only=True)
    assert not [f for f in scoped if f.code == "MS208"]

from __future__ import annotations

from conftest import Runner


def test_plan_start_done_updates_status(run: Runner) -> None:
    run.ok("plan", "Beta", "--task", "Write", "--task", "Ship")
    run.ok("task", "start", "1/1")
    run.ok("task", "done", "1")
    data = run.json("status")
    assert data["schema"] == 1
    [m] = data["milestones"]
    assert m["id"] == "milestone-001"
    assert m["progress"] == 50.0
    assert m["counts"]["done"] == 1

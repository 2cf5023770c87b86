"""Claims on PostgreSQL: a claim picks the best ready row and locks it (``SELECT ...
FOR UPDATE SKIP LOCKED``) before it takes the writer lock, which it holds only for
its write; a claim in flight never blocks another, which passes over its row, and no
two claims ever take the same task. The fencing, lease and lapse rules are the
behaviour suites' (tests/agents/test_coord.py runs on postgres too).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agents.test_dag import build_dag, check_log, seed_of, start_worker
from milestones.agents.coord import Agents
from milestones.project import Project

TASKS = 300
AGENTS = 8


def agents(root: Path, name: str) -> Agents:
    a = Agents(Project.open(root, actor=name, session_id=f"s-{name}"))
    a.register(name)
    return a


def test_a_claim_in_flight_holds_its_row_and_not_the_writer_lock(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILESTONE_LOCK_TIMEOUT", "3")  # a wait on a lock fails, not hangs
    planner, _ = Project.init(tmp_path, backend="postgres", actor="planner",
                              session_id="plan")
    planner.plan("Part", tasks=["One", "Two", "Three"])
    a, b = agents(tmp_path, "a1"), agents(tmp_path, "b1")
    store = a.p.store
    with store.lock_late():  # a claim of a1's, stopped between its pick and its write
        picked = store.pick_ready(None, 1)
        assert [r["ref"] for r in picked or ()] == ["milestone-001/task-1"]
        # b1 claims meanwhile: the writer lock is free, the held row is passed over,
        # and b1's write (the milestone starts) does not wait on that row either.
        got = b.claim("b1")
        assert got["ref"] == "milestone-001/task-2" and got["token"] == 1
    # The pick let go (rolled back, nothing written): task-1 is the best again.
    assert a.claim("a1")["ref"] == "milestone-001/task-1"
    assert b.claim("b1")["ref"] == "milestone-001/task-3"
    assert a.claim("a1")["ref"] is None
    claimed = [e["details"]["task_id"] for e in planner.store.events()
               if e["event_type"] == "task_claimed"]
    assert claimed == ["task-2", "task-1", "task-3"]


def test_a_pick_another_agent_cannot_take_goes_the_locked_way(
        tmp_path: Path, pg_url: str) -> None:
    """The best row needs a skill the agent lacks: it claims the next one it may take."""
    planner, _ = Project.init(tmp_path, backend="postgres", actor="planner",
                              session_id="plan")
    planner.plan("Part", tasks=[{"title": "Rust work", "skills": ["rust"]}, "Any work"])
    a = agents(tmp_path, "a1")
    got = a.claim("a1")
    assert got["ref"] == "milestone-001/task-2"
    assert a.claim("a1")["ref"] is None  # task-1 needs rust


def test_claims_from_many_processes_take_every_task_once(tmp_path: Path, pg_url: str) -> None:
    seed = seed_of()
    planner, _ = Project.init(tmp_path, backend="postgres", actor="planner",
                              session_id="plan")
    planner.plan_many(build_dag(TASKS, seed))
    t0 = time.monotonic()
    workers = [start_worker(tmp_path, f"w{i + 1}", i, seed + i, lease=None, deadline=240,
                            next_=i % 2 == 1) for i in range(AGENTS)]
    for w in workers:
        w.proc.wait(timeout=300)
    reports = [w.report() for w in workers]
    kinds = check_log(Project.open(tmp_path))  # each task completed once, in order
    print(f"[postgres] {TASKS} tasks, {AGENTS} agents: {time.monotonic() - t0:.1f} s, "
          f"{kinds.get('task_claimed', 0)} claims (seed {seed})")
    assert kinds.get("task_claimed", 0) == TASKS  # nothing lapsed: one claim a task
    assert kinds.get("task_requeued", 0) == 0
    assert sum(r["conflicts"] for r in reports) == 0
    assert sum(r["completed"] for r in reports) == TASKS


def test_what_a_claim_read_before_the_lock_is_read_again_under_it(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another claim commits between a scoped claim's first look at the milestone and
    its writer lock: the claim is built on the milestone as it is then (the milestone
    is started once, not twice)."""
    planner, _ = Project.init(tmp_path, backend="postgres", actor="planner",
                              session_id="plan")
    planner.plan("Part", tasks=["One", "Two", "Three"])
    a, b = agents(tmp_path, "a1"), agents(tmp_path, "b1")
    real = type(a.p).ready_index
    cut_in = []

    def first_b(self: Project, *args: object, **kw: object) -> object:
        if self is a.p and kw.get("pick") and not cut_in:
            cut_in.append(b.claim("b1", "1"))  # commits before a1 picks and locks
        return real(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(type(a.p), "ready_index", first_b)
    got = a.claim("a1", "1")
    assert cut_in[0]["ref"] == "milestone-001/task-1"
    assert got["ref"] == "milestone-001/task-2"
    kinds = [e["event_type"] for e in planner.store.events()]
    assert kinds.count("milestone_started") == 1
    m = Project.open(tmp_path).state().milestones["milestone-001"]
    assert [t["status"] for t in m["tasks"]] == ["in_progress", "in_progress", "todo"]

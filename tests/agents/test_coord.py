"""The coordination core (milestones.agents.coord) on every backend: registry, claims,
leases and fencing tokens, failures and escalation, messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from milestones.agents.coord import Agents, paths_overlap
from milestones.errors import Conflict, InvalidInput, NotFound
from milestones.project import Project

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(project: Project) -> Clock:
    c = Clock()
    project.clock = c
    return c


def events(project: Project, kind: str) -> list[dict[str, Any]]:
    return [e for e in project.store.events() if e["event_type"] == kind]


def count(project: Project) -> int:
    return sum(1 for _ in project.store.events())


def task(project: Project, ref: str) -> dict[str, Any]:
    mid, tid = ref.split("/")
    return next(t for t in project.state().milestones[mid]["tasks"] if t["id"] == tid)


def test_claim_order_dependencies_and_exactly_one_holder(project: Project, clock: Clock) -> None:
    project.plan("Low", priority="low", tasks=[{"title": "low work"}])
    project.plan("High", priority="high", tasks=[
        {"title": "leaf"},
        {"title": "root"},
        {"title": "after root", "depends_on": ["task-2"]},
        {"title": "after that", "depends_on": ["task-3"]},
    ])
    a = Agents(project)
    a.register("w1")
    a.register("w2")
    first = a.claim("w1")
    # High priority first; within it the task with the longest chain waiting on it.
    assert first["ref"] == "milestone-002/task-2"
    assert first["token"] == 1 and first["agent"] == "agent-1"
    assert "root" in first["prompt"] and "Done means" in first["prompt"]
    second = a.claim("w2")
    assert second["ref"] == "milestone-002/task-1"
    third = a.claim("w2")
    assert third["ref"] == "milestone-001/task-1"  # task-3 waits on task-2
    t = task(project, "milestone-002/task-2")
    assert t["status"] == "in_progress" and t["assignee"] == "w1"
    assert t["execution"]["agent"] == "agent-1"
    a.complete("w1", "milestone-002/task-2", token=1, result="root done")
    nxt = a.claim("w1")
    assert nxt["ref"] == "milestone-002/task-3"
    assert "root done" in nxt["prompt"]  # a dependency's result reaches the prompt
    claimed = events(project, "task_claimed")
    assert [e["actor"] for e in claimed] == ["w1", "w2", "w2", "w1"]


def test_nothing_to_claim_says_whether_to_wait_or_stop(project: Project, clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "one"}])
    a = Agents(project)
    a.register("w1")
    a.register("w2")
    a.claim("w1")
    wait = a.claim("w2")
    assert wait["ref"] is None and wait["open"] == 1 and wait["held"] == 1
    a.complete("w1")
    stop = a.claim("w2")
    assert stop["ref"] is None and stop["open"] == 0


def test_complete_and_claim_the_next_in_one_step(project: Project, clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "a"}, {"title": "b", "depends_on": ["task-1"]}])
    a = Agents(project)
    a.register("w")
    c = a.claim("w")
    done = a.complete("w", token=c["token"], result="a done", claim_next=True, scope="1")
    assert done["ref"] == "milestone-001/task-1"
    assert done["next"]["ref"] == "milestone-001/task-2" and "a done" in done["next"]["prompt"]
    last = a.complete("w", token=done["next"]["token"], claim_next=True)
    assert last["next"]["ref"] is None and last["next"]["open"] == 0


def test_skills_and_overlapping_paths_keep_tasks_apart(project: Project, clock: Clock) -> None:
    project.plan("M", tasks=[
        {"title": "api", "paths": ["src/api/**"]},
        {"title": "route", "paths": ["src/api/routes.py"]},
        {"title": "rust", "skills": ["rust"]},
        {"title": "docs", "paths": ["docs/api.md"]},
    ])
    a = Agents(project)
    a.register("py", skills=["python"])
    a.register("rs", skills=["rust", "python"])
    assert a.claim("py")["ref"] == "milestone-001/task-1"
    ready = {r["ref"]: r for r in a.ready()}
    assert not ready["milestone-001/task-2"]["claimable"]
    assert "paths overlap" in ready["milestone-001/task-2"]["reason"]
    assert a.claim("py")["ref"] == "milestone-001/task-4"  # not task-2 (paths), not 3 (skills)
    assert a.claim("rs")["ref"] == "milestone-001/task-3"
    assert a.claim("rs")["ref"] is None
    a.complete("py", "milestone-001/task-1")
    assert a.claim("rs")["ref"] == "milestone-001/task-2"


def test_lapsed_lease_requeues_and_fences_the_late_agent(project: Project, clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "slow"}])
    a = Agents(project)
    a.register("dies", lease=60)
    a.register("lives", lease=60)
    c1 = a.claim("dies")
    clock.advance(30)
    a.heartbeat("lives")
    assert task(project, c1["ref"])["execution"]["agent"] == "agent-1"  # still within lease
    clock.advance(31)  # 61 s since the claim, no heartbeat from "dies"
    c2 = a.claim("lives")
    assert c2["ref"] == c1["ref"] and c2["token"] == c1["token"] + 1
    requeued = events(project, "task_requeued")
    assert len(requeued) == 1 and requeued[0]["details"]["agent"] == "agent-1"
    assert events(project, "agent_expired")[0]["details"]["agent"] == "agent-1"
    with pytest.raises(Conflict, match="stale"):
        a.complete("dies", c1["ref"], token=c1["token"])
    with pytest.raises(Conflict, match="does not hold"):
        a.complete("dies", c1["ref"])
    a.complete("lives", c2["ref"], token=c2["token"])
    assert len(events(project, "task_completed")) == 1
    assert task(project, c1["ref"])["execution"]["lapsed"] == 1


def test_heartbeat_renews_the_lease(project: Project, clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "long"}])
    a = Agents(project)
    a.register("w", lease=60)
    a.register("other", lease=60)
    c = a.claim("w")
    for _ in range(5):
        clock.advance(50)
        assert a.heartbeat("w")["holds"] == [c["ref"]]
    assert a.claim("other")["ref"] is None
    a.complete("w", token=c["token"])


def test_expired_but_unclaimed_task_can_still_be_completed(project: Project,
                                                           clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "t"}])
    a = Agents(project)
    a.register("w", lease=10)
    c = a.claim("w")
    clock.advance(20)
    # Its lease lapsed (the task was re-queued) but nobody claimed it since: the
    # token is still the latest, so the late agent's work counts.
    a.heartbeat("w")
    assert task(project, c["ref"])["status"] == "todo"
    a.complete("w", c["ref"], token=c["token"])
    assert task(project, c["ref"])["status"] == "done"
    assert len(events(project, "task_requeued")) == 1


def test_failures_retry_then_block_and_escalate(project: Project, clock: Clock) -> None:
    project.plan("M", owner="lead@example.com",
                 tasks=[{"title": "flaky"}, {"title": "next", "depends_on": ["task-1"]}])
    a = Agents(project)
    a.register("w")
    for attempt in (1, 2):
        a.claim("w")
        r = a.fail("w", reason=f"exit 1 (try {attempt})")
        assert r == {"ref": "milestone-001/task-1", "attempts": attempt, "status": "todo",
                     "escalated": False}
    a.claim("w")
    r = a.fail("w", reason="exit 1 (try 3)")
    assert r["escalated"] and r["status"] == "blocked"
    t = task(project, "milestone-001/task-1")
    assert t["status"] == "blocked" and "failed 3 times" in t["blockers"][0]
    assert t["execution"]["attempts"] == 3
    detected = events(project, "blocker_detected")
    assert detected[0]["details"]["rule"] == "repeated_failure"
    inbox = a.inbox("lead@example.com")
    assert len(inbox) == 1 and inbox[0]["kind"] == "escalation"
    assert "milestone-001/task-1" in inbox[0]["body"]
    assert a.claim("w")["ref"] is None  # blocked, and task-2 waits on it


def test_release_cleanup_and_restart(project: Project, clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "a"}, {"title": "b"}])
    a = Agents(project)
    first = a.register("w", skills=["python"])
    c = a.claim("w")
    r = a.release("w", token=c["token"])
    assert r["status"] == "todo" and task(project, c["ref"])["execution"].get("agent") is None
    a.claim("w")
    a.claim("w")
    out = a.cleanup("w")
    assert sorted(out["released"]) == ["milestone-001/task-1", "milestone-001/task-2"]
    assert [x["status"] for x in a.roster()] == ["gone"]
    with pytest.raises(Conflict, match="cleaned up"):
        a.claim("w")
    again = a.register("w")
    assert again["id"] == first["id"]
    assert a.claim("w")["ref"] == "milestone-001/task-1"


def test_messages_direct_role_broadcast_and_ack(project: Project, clock: Clock) -> None:
    a = Agents(project)
    for name, kind in (("lead", "monitor"), ("w1", "worker"), ("w2", "worker"),
                       ("gone", "worker")):
        a.register(name, kind=kind)
    a.cleanup("gone")
    a.send("lead", "w1", "hello w1")
    a.send("lead", "role:worker", "to the workers")
    a.send("w1", "*", "to everyone")
    assert [m["body"] for m in a.inbox("w1")] == ["hello w1", "to the workers"]
    assert [m["body"] for m in a.inbox("w2")] == ["to the workers", "to everyone"]
    assert [m["body"] for m in a.inbox("lead")] == ["to everyone"]
    assert a.inbox("gone") == []
    ids = [m["id"] for m in a.inbox("w2")]
    assert a.ack("w2", ids) == ids
    assert a.ack("w2", ids) == []  # twice is harmless
    assert a.inbox("w2") == [] and len(a.inbox("w2", include_acked=True)) == 2
    with pytest.raises(NotFound):
        a.ack("w2", [999])
    with pytest.raises(NotFound, match="role"):
        a.send("lead", "role:nobody", "x")
    assert len(events(project, "message_sent")) == 3
    assert len(events(project, "message_acked")) == 1


def test_report_blocker_releases_blocks_and_is_idempotent(project: Project,
                                                         clock: Clock) -> None:
    project.plan("M", owner="lead", tasks=[{"title": "a"}])
    a = Agents(project)
    a.register("w")
    c = a.claim("w")
    found = a.report_blocker(c["ref"], "merge conflict in: a.py", rule="merge_conflict")
    assert found is not None and found["escalated_to"] == "lead"
    t = task(project, c["ref"])
    assert t["status"] == "blocked" and t["execution"].get("agent") is None
    assert a.report_blocker(c["ref"], "merge conflict in: a.py", rule="merge_conflict") is None
    assert len(events(project, "blocker_detected")) == 1


def test_bad_input_is_one_clear_error_and_changes_nothing(project: Project,
                                                         clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "a"}])
    a = Agents(project)
    before = len(list(project.store.events()))
    with pytest.raises(InvalidInput, match="no agent given"):
        a.claim(None)
    with pytest.raises(NotFound, match="no agent 'ghost'"):
        a.claim("ghost")
    with pytest.raises(InvalidInput, match="agent name"):
        a.register("two words")
    with pytest.raises(InvalidInput, match="lease"):
        a.register("w", lease=0)
    assert len(list(project.store.events())) == before
    a.register("w")
    a.register("v")
    a.claim("w")
    with pytest.raises(InvalidInput, match="fail reason"):
        a.fail("w", reason="  ")
    with pytest.raises(Conflict, match="does not hold"):
        a.complete("v", "milestone-001/task-1")


def test_paths_overlap() -> None:
    assert paths_overlap(["src/api/**"], ["src/api/routes.py"])
    assert paths_overlap(["src/api/routes.py"], ["src/api/routes.py"])
    assert paths_overlap(["src"], ["src/x.py"])
    assert paths_overlap(["src/*.py"], ["src/**"])
    assert not paths_overlap(["src/api/**"], ["docs/api.md"])
    assert not paths_overlap(["src/api.py"], ["src/api.pyc"])
    assert not paths_overlap(["docs/*.md"], ["src/x.md"])


def test_records_move_with_a_migration(tmp_path: Path) -> None:
    from milestones.ops.migrate import migrate

    p, _ = Project.init(tmp_path, actor="tester")
    Agents(p).register("w", skills=["go"])
    Agents(p).send("w", "w", "note to self")
    migrate(tmp_path / ".milestones", "database", actor="tester")
    q = Project.open(tmp_path)
    assert q.store.backend == "database"
    assert [r["name"] for r in Agents(q).roster()] == ["w"]
    assert [m["body"] for m in Agents(q).inbox("w")] == ["note to self"]


@pytest.mark.parametrize("backend", ["file", "database"])
def test_records_are_in_backups(tmp_path: Path, backend: str) -> None:
    from milestones.storage.backup import create_backup
    from milestones.storage.restore import restore_backup

    p, _ = Project.init(tmp_path, backend=backend, actor="tester")
    Agents(p).register("w")
    Agents(p).send("w", "w", "before the backup")
    info = create_backup(tmp_path / ".milestones", tmp_path / "b.tar.gz")
    Agents(p).cleanup("w")
    Agents(p).register("late")
    restore_backup(tmp_path / ".milestones", info.path)
    q = Project.open(tmp_path)
    assert [(r["name"], r["status"]) for r in Agents(q).roster()] == [("w", "live")]
    assert [m["body"] for m in Agents(q).inbox("w")] == ["before the backup"]


def test_a_batch_is_one_write_and_a_refused_step_leaves_the_others(project: Project,
                                                                   clock: Clock) -> None:
    project.plan("Work", tasks=[{"title": f"t{i}"} for i in range(4)])
    a = Agents(project)
    for name in ("w1", "w2", "w3"):
        a.register(name)
    one = a.claim("w1")
    two = a.claim("w2")
    logged = count(project)
    with a.batch():
        done = a.complete("w1", one["ref"], token=one["token"], result="r1", claim_next=True)
        with pytest.raises(Conflict, match="stale"):
            a.complete("w2", two["ref"], token=two["token"] + 1)  # refused: nothing changes
        three = a.claim("w3")
        assert count(project) == logged  # nothing is written before the batch ends
    assert count(project) == logged + 3  # completed, claimed next, claimed
    assert task(project, one["ref"])["status"] == "done"
    assert task(project, one["ref"])["execution"]["result"] == "r1"
    assert task(project, two["ref"])["execution"]["agent"] == "agent-2"  # still w2's
    held = {done["next"]["ref"], three["ref"], two["ref"]}
    assert len(held) == 3 and all(task(project, r)["status"] == "in_progress" for r in held)
    assert [e["actor"] for e in project.store.events()][-3:] == ["w1", "w1", "w3"]


def test_a_batch_that_fails_writes_nothing(project: Project, clock: Clock) -> None:
    project.plan("Work", tasks=[{"title": "t1"}, {"title": "t2"}])
    a = Agents(project)
    a.register("w1")
    logged = count(project)
    with pytest.raises(RuntimeError), a.batch():
        assert a.claim("w1")["ref"] is not None
        raise RuntimeError("the batch's writer died")
    assert count(project) == logged
    assert all(t["status"] == "todo" for t in project.state().milestones["milestone-001"]["tasks"])
    assert a.claim("w1")["token"] == 1  # the undone claim left no trace


def test_database_steps_read_only_the_milestones_they_need(tmp_path: Path) -> None:
    project, _ = Project.init(tmp_path, backend="database", actor="lead", session_id="s")
    project.plan_many([{"title": f"M{i}", "tasks": [{"title": "a"}, {"title": "b"}]}
                       for i in range(1, 41)])
    project.plan("Needs 20", tasks=[{"title": "after", "depends_on": ["milestone-020/task-1"]}])
    step = Project.open(tmp_path, actor="lead", session_id="s")
    read: list[str] = []
    fetch = step.store.snapshots

    def spy(mids: Any) -> Any:
        read.extend(mids)
        return fetch(mids)

    load = step.store.load

    def spy_all() -> Any:
        read.append("everything")
        return load()

    step.store.snapshots = spy  # type: ignore[method-assign]
    step.store.load = spy_all  # type: ignore[method-assign]
    a = Agents(step)
    a.register("w1")
    assert read == []  # nothing held anywhere: the sweep reads no milestone
    got = a.claim("w1", "20")
    assert got["ref"] == "milestone-020/task-1"
    # Only the milestone it changes: the ready rows and their chains come from the
    # index, not from the other 40 milestones' snapshots.
    assert set(read) == {"milestone-020"}
    read.clear()
    a.heartbeat("w1")
    assert read == []  # the sweep: the held tasks' rows from the index, no milestone
    done = a.complete("w1", got["ref"], token=got["token"])
    assert done["status"] == "done"

"""Blocker detection (milestones.agents.blockers): each rule fires past its threshold and not
below it, on every backend, with a controlled clock."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from milestones.agents import blockers
from milestones.agents.blockers import Finding, detect, settings
from milestones.agents.coord import Agents
from milestones.errors import InvalidInput
from milestones.project import Project

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)
MID = "milestone-001"


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


def rules(found: list[Finding], ref: str | None = None) -> list[str]:
    return [f.rule for f in found if ref is None or f.ref == ref]


def report(project: Project, found: list[Finding]) -> None:
    for f in found:
        Agents(project).report_blocker(f.ref, f.reason, rule=f.rule, block=f.block)


def test_over_estimate(project: Project, clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "small", "estimate": 1}, {"title": "open-ended"}])
    project.start_task(f"{MID}/task-1")
    project.start_task(f"{MID}/task-2")
    quiet: dict[str, Any] = {"disabled": ["stale"]}
    clock.advance(1.5 * 3600)
    assert detect(project, MID, conf=quiet) == []
    project.stop_task(f"{MID}/task-1")  # 1.5h spent
    clock.advance(3600)
    project.start_task(f"{MID}/task-1")  # the timer runs again
    clock.advance(0.4 * 3600)
    assert detect(project, MID, conf=quiet) == []  # 1.9h of 2h
    clock.advance(0.2 * 3600)
    found = detect(project, MID, conf=quiet)
    assert found == [Finding(f"{MID}/task-1", "over_estimate",
                             "in progress past 2x its estimate of 1h", True)]
    assert detect(project, MID, conf={**quiet, "over_estimate_factor": 3}) == []
    assert detect(project, "1", conf={**quiet, "disabled": ["stale", "over_estimate"]}) == []
    # once reported the task is blocked: nothing more to say about it
    report(project, found)
    assert project.milestone(MID).task("task-1").status == "blocked"
    assert detect(project, MID, conf=quiet) == []


def test_lease_lapses(project: Project, clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "flaky"}])
    a = Agents(project)
    a.register("w1", lease=60)
    for lapse in (1, 2):
        assert a.claim("w1")["ref"] == f"{MID}/task-1"
        clock.advance(61)
        a.cleanup()  # any step sweeps lapsed claims
        ex = project.milestone(MID).task("task-1").execution or {}
        assert ex["lapsed"] == lapse
        found = detect(project, MID)
        if lapse == 1:
            assert found == []
    assert rules(found) == ["lease_lapses"] and found[0].block
    assert "lapsed 2 times" in found[0].reason
    assert detect(project, MID, conf={"lease_lapses": 3}) == []
    report(project, found)
    t = project.milestone(MID).task("task-1")
    assert t.status == "blocked" and found[0].reason in t.blockers
    assert detect(project, MID) == []


def test_repeated_failure_escalates_without_blocking(project: Project, clock: Clock) -> None:
    project.plan("M", owner="lead@example.com", tasks=[{"title": "breaks"}])
    a = Agents(project)
    a.register("w1")
    a.claim("w1")
    a.fail("w1", reason="exit 1")
    assert detect(project, MID) == []
    a.claim("w1")
    a.fail("w1", reason="exit 2")
    found = detect(project, MID)
    assert found == [Finding(f"{MID}/task-1", "repeated_failure",
                             "failed 2 times; last: exit 2", False)]
    report(project, found)
    assert project.milestone(MID).task("task-1").status == "todo"  # still ready
    assert any("blocker on milestone-001/task-1" in m["body"]
               for m in a.inbox("lead@example.com"))
    assert detect(project, MID) == []  # escalated once, not every few seconds
    a.claim("w1")
    a.fail("w1", reason="exit 3")  # max_attempts: Agents.fail blocks and escalates itself
    assert project.milestone(MID).task("task-1").status == "blocked"
    assert detect(project, MID) == []


def test_stale(project: Project, clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "quiet"}])
    project.start_task(f"{MID}/task-1")
    clock.advance(2 * 3600 - 60)
    assert detect(project, MID) == []
    clock.advance(120)
    found = detect(project, MID)
    assert rules(found) == ["stale"] and "no activity for over 2h" in found[0].reason
    assert detect(project, MID, conf={"stale_hours": 3}) == []
    project.set_progress(f"{MID}/task-1", 40)  # activity: an event about the task
    assert detect(project, MID) == []
    clock.advance(2 * 3600 + 1)
    assert rules(detect(project, MID)) == ["stale"]
    seen = {f"{MID}/task-1": Clock.__call__(clock)}  # the caller saw output just now
    assert detect(project, MID, seen=seen) == []


def test_blocked_dependency_without_cascade(project: Project, clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "base"}, {"title": "middle", "depends_on": ["task-1"]},
                             {"title": "top", "depends_on": ["task-2"]}])
    project.plan("Other", depends_on=[], tasks=[
        {"title": "elsewhere", "depends_on": [f"{MID}/task-1"]}])
    assert detect(project, MID) == []
    project.block_task(f"{MID}/task-1", "waiting for the vendor")
    found = detect(project, MID)
    assert found == [Finding(f"{MID}/task-2", "blocked_dependency",
                             f"dependency {MID}/task-1 is blocked", True)]
    assert rules(detect(project, "milestone-002")) == ["blocked_dependency"]
    report(project, found)
    assert detect(project, MID) == []  # task-3 is not blocked by the cascade


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def conflicted_repo(path: Path) -> Path:
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    (path / "src").mkdir()
    (path / "src" / "api.py").write_text("base\n")
    git(path, "add", "src")
    git(path, "commit", "-qm", "base")
    git(path, "checkout", "-q", "-b", "other")
    (path / "src" / "api.py").write_text("other\n")
    git(path, "commit", "-qam", "other")
    git(path, "checkout", "-q", "main")
    (path / "src" / "api.py").write_text("main\n")
    git(path, "commit", "-qam", "main")
    subprocess.run(["git", "-C", str(path), "merge", "other"], capture_output=True,
                   check=False)
    return path


def test_merge_conflicts(project: Project, clock: Clock, tmp_path: Path) -> None:
    project.plan("M", tasks=[{"title": "api", "paths": ["src/**"]},
                             {"title": "docs", "paths": ["docs/**"]},
                             {"title": "waiting", "paths": ["src/api.py"]}])
    project.start_task(f"{MID}/task-1")
    project.start_task(f"{MID}/task-2")
    repo = conflicted_repo(tmp_path)
    assert detect(project, MID) == []  # no git_root: the rule does not run
    found = detect(project, MID, git_root=repo)
    assert found == [Finding(f"{MID}/task-1", "merge_conflicts",
                             "merge conflicts in src/api.py", True)]
    assert detect(project, MID, git_root=repo, conf={"disabled": ["merge_conflicts"]}) == []
    git(repo, "merge", "--abort")
    assert detect(project, MID, git_root=repo) == []


def test_merge_conflicts_block_every_running_task_when_none_names_paths(
        project: Project, clock: Clock, tmp_path: Path) -> None:
    project.plan("M", tasks=[{"title": "one"}, {"title": "two"}, {"title": "not started"}])
    project.start_task(f"{MID}/task-1")
    project.start_task(f"{MID}/task-2")
    found = detect(project, MID, git_root=conflicted_repo(tmp_path))
    assert [(f.ref, f.rule) for f in found] == [(f"{MID}/task-1", "merge_conflicts"),
                                                (f"{MID}/task-2", "merge_conflicts")]


def test_test_command(project: Project, clock: Clock, tmp_path: Path) -> None:
    project.plan("M", tasks=[{"title": "running"}, {"title": "not started"}])
    assert detect(project, MID, conf={"test_command": "exit 3"}) == []  # nothing running
    project.start_task(f"{MID}/task-1")
    runs = tmp_path / "runs"
    failing = {"test_command": f"echo x >> {runs}; exit 3", "test_interval_seconds": 60}
    found = detect(project, MID, conf=failing)
    assert [(f.ref, f.rule, f.block) for f in found] == [(f"{MID}/task-1", "test_command",
                                                          False)]
    assert found[0].reason.endswith("exits 3")
    assert detect(project, MID, conf=failing) == found  # within the interval: not run again
    assert runs.read_text().count("x") == 1
    report(project, found)
    assert project.milestone(MID).task("task-1").status == "in_progress"
    clock.advance(61)
    assert detect(project, MID, conf=failing) == []  # failed again, escalated already
    assert runs.read_text().count("x") == 2
    assert detect(project, MID, conf={"test_command": "true", "test_interval_seconds": 0}) == []
    slow = {"test_command": "sleep 5", "test_timeout_seconds": 0.2,
            "test_interval_seconds": 0}
    assert "did not finish" in detect(project, MID, conf=slow)[0].reason


def test_unblocking_silences_the_rule_for_that_task(project: Project, clock: Clock) -> None:
    project.plan("M", tasks=[{"title": "long", "estimate": 1}])
    project.start_task(f"{MID}/task-1")
    clock.advance(3 * 3600)
    project.set_progress(f"{MID}/task-1", 10)  # not stale
    found = detect(project, MID)
    assert rules(found) == ["over_estimate"]
    report(project, found)
    project.unblock_task(f"{MID}/task-1")  # a person says: let it run
    project.start_task(f"{MID}/task-1")
    clock.advance(600)
    assert detect(project, MID) == []


def test_events_are_read_incrementally(project: Project, clock: Clock,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    project.plan("M", tasks=[{"title": "a"}])
    project.start_task(f"{MID}/task-1")
    reads: list[int] = []
    real = project.store.events

    def counting(after: int = 0) -> Any:
        reads.append(after)
        return real(after=after)

    def detecting() -> None:
        monkeypatch.setattr(project.store, "events", counting)
        detect(project, MID)
        monkeypatch.setattr(project.store, "events", real)

    detecting()
    head = project.state().last_event_id
    detecting()  # nothing new: the log is not read
    project.set_progress(f"{MID}/task-1", 5)
    detecting()
    assert reads == [0, head]


def test_settings_are_checked() -> None:
    assert settings({})["stale_hours"] == 2.0
    assert settings({"blockers": {"stale_hours": "4"}}, {"lease_lapses": 5})["stale_hours"] == 4
    with pytest.raises(InvalidInput, match=r"blockers\.stale_hours"):
        settings({"blockers": {"stale_hours": "soon"}})
    with pytest.raises(InvalidInput, match=r"blockers\.disabled"):
        settings({}, {"disabled": ["nope"]})
    with pytest.raises(InvalidInput, match=r"blockers\.lease_lapses is negative"):
        settings({}, {"lease_lapses": -1})
    assert set(blockers.DEFAULTS) >= {"over_estimate_factor", "lease_lapses",
                                      "repeated_failures", "stale_hours", "test_command"}

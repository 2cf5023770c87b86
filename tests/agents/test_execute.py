"""`milestone execute` (milestones.agents.executor): agents in threads working a milestone
with shell commands, on the file, hybrid, database and postgres backends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Runner
from milestones.agents.coord import Agents
from milestones.agents.executor import EXIT_LEFT, EXIT_STOPPED, Executor, Options, schedule
from milestones.errors import Conflict, InvalidInput, ValidationFailed
from milestones.project import Project
from milestones.storage.memory import MemoryStore

MID = "milestone-001"
FAST = {"poll": 0.1, "check_every": 0.2, "detect_every": 0.2, "watch_every": 0.1}


def make(tmp_path: Path, backend: str = "file") -> Project:
    if backend == "memory":  # one process, one object: the executor shares it
        store = MemoryStore(tmp_path / ".milestones")
        store.initialize()
        return Project(store, cwd=tmp_path, actor="owner@example.com",
                       session_id="test-session")
    p, _ = Project.init(tmp_path, backend=backend, actor="owner@example.com",
                        session_id="test-session")
    return p


def execute(p: Project, ref: str = MID, **opts: Any) -> dict[str, Any]:
    return Executor(p, ref, Options(**{**FAST, **opts})).run()


def events(p: Project, kind: str) -> list[dict[str, Any]]:
    return [e for e in p.store.events() if e["event_type"] == kind]


def first_json(output: str) -> Any:
    """The JSON document at the start of ``output`` (the runner mixes stderr in, where
    the scale policy may add a note after a write)."""
    return json.JSONDecoder().raw_decode(output)[0]


def tasks(p: Project) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in p.state().milestones[MID]["tasks"]}


DAG = [  # task-N depends on ...
    {"title": "one"},
    {"title": "two"},
    {"title": "three", "depends_on": ["task-1"]},
    {"title": "four", "depends_on": ["task-1", "task-2"]},
    {"title": "five", "depends_on": ["task-3", "task-4"]},
    {"title": "six", "depends_on": ["task-5"]},
    {"title": "seven"},
]


@pytest.mark.parametrize("backend", ["file", "hybrid", "database", "memory", "postgres"])
def test_every_task_once_in_dependency_order(tmp_path: Path, backend: str) -> None:
    p = make(tmp_path, backend)
    run = 'sleep 0.05; echo "$MILESTONE_TASK_ID" >> out.txt; echo "did $MILESTONE_TASK_ID"'
    p.plan("Work", tasks=[dict(t, run=run) for t in DAG])
    summary = execute(p, agents=3)
    assert summary["outcome"] == "done" and summary["exit_code"] == 0
    assert summary["done"] == summary["tasks_total"] == 7 and summary["completed"] == 7
    lines = (tmp_path / "out.txt").read_text().split()
    assert sorted(lines) == sorted(f"{MID}/task-{i}" for i in range(1, 8))  # each once
    pos = {ref.split("/")[1]: i for i, ref in enumerate(lines)}
    for i, spec in enumerate(DAG, 1):
        for dep in spec.get("depends_on", ()):
            assert pos[dep] < pos[f"task-{i}"], (dep, i, lines)
    done = events(p, "task_completed")
    assert sorted(e["details"]["task_id"] for e in done) == sorted(f"task-{i}" for i in range(1, 8))
    t = tasks(p)
    assert all(x["status"] == "done" for x in t.values())
    assert t["task-6"]["execution"]["result"] == f"did {MID}/task-6"  # the last line
    log = tmp_path / ".milestones" / "logs" / "agents" / f"{MID}-task-6.log"
    text = log.read_text()
    assert f"=== {MID}/task-6 attempt 1 by exec-{MID}-" in text and "=== exit 0 after" in text
    roster = {a["name"]: a for a in Agents(p).roster()}
    assert {f"exec-{MID}-{i}" for i in (1, 2, 3)} | {f"watch-{MID}", f"deps-{MID}",
                                                     f"blockers-{MID}"} <= set(roster)
    assert all(a["status"] == "gone" and not a["holds"] for a in roster.values())
    notes = [e["data"]["note"] for e in events(p, "note_added")]
    assert notes == [f"execute {MID} finished: 7 done"]
    assert p.store.read_resume()["notes"][-1]["text"] == notes[0]


def test_task_data_arrives_in_environment_only(tmp_path: Path) -> None:
    p = make(tmp_path)
    nasty = "Quote ' and $(touch pwned) and `touch pwned2`; echo"
    p.plan("Env", description="The milestone's own words.", tasks=[
        {"title": "first", "run": "echo first result"},
        {"title": nasty, "depends_on": ["task-1"], "description": "Write the thing."},
    ])
    tid = "${MILESTONE_TASK_ID#*/}"
    template = (f'printf "%s" "$MILESTONE_TASK_PROMPT" > "prompt-{tid}.txt"; '
                f'env | grep "^MILESTONE_" | grep -v PROMPT | sort > "env-{tid}.txt"; '
                f'printf "%s" "$MILESTONE_TASK_TITLE" > "title-{tid}.txt"')
    summary = execute(p, agents=2, command=template)
    assert summary["exit_code"] == 0
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert (tmp_path / "title-task-2.txt").read_text() == nasty
    prompt = (tmp_path / "prompt-task-2.txt").read_text()
    assert prompt.startswith(f"# Task {MID}/task-2: {nasty}")
    assert "Write the thing." in prompt and "The milestone's own words." in prompt
    assert f"- {MID}/task-1 first [done]: exit 0" in prompt  # its dependency's result
    env = dict(line.split("=", 1) for line in
               (tmp_path / "env-task-2.txt").read_text().splitlines())
    agent = tasks(p)["task-2"]["execution"]["completed_by"]
    assert env["MILESTONE_TASK_ID"] == f"{MID}/task-2"
    assert env["MILESTONE_MILESTONE_ID"] == MID
    assert env["MILESTONE_AGENT_ID"] == agent
    assert env["MILESTONE_TASK_TOKEN"] == "1"
    assert Path(env["MILESTONE_WORKDIR"]).resolve() == tmp_path.resolve()
    assert Path(env["MILESTONE_DIR"]).resolve() == (tmp_path / ".milestones").resolve()


def test_a_simple_command_runs_directly_as_the_shell_would_run_it(tmp_path: Path) -> None:
    """Words only (no quotes, variables, globs, ...), the first a program on PATH and
    not a shell builtin: run without /bin/sh (one process less per task), with the
    same words, working directory, PWD and exit status; anything else goes through
    the shell."""
    env = {"PATH": os.environ["PATH"]}
    assert Executor._argv("expr 2 + 3", env)[1:] == ["2", "+", "3"]  # type: ignore[index]
    for shell in ("exit 3", "echo hi", "true", "cd src", "FOO=1 env", "./run.sh", "a  b",
                  'expr "2"', "expr $X", "ls *.py", "make > log", "no-such-program-xyz",
                  "pytest -k 'a or b'", "expr 2 + 3; expr 4"):
        assert Executor._argv(shell, env) is None, shell
    p = make(tmp_path)
    (tmp_path / "sub").mkdir()
    p.plan("Direct", tasks=[
        {"title": "pwd", "run": "printenv PWD"},
        {"title": "sum", "run": "expr 2 + 3"},
        {"title": "through the shell", "run": "echo \"$MILESTONE_TASK_TITLE\""},
    ])
    summary = execute(p, agents=2)
    assert summary["exit_code"] == 0
    results = {t["title"]: t["execution"]["result"] for t in tasks(p).values()}
    assert Path(results["pwd"]).resolve() == tmp_path.resolve()
    assert results["sum"] == "5"
    assert results["through the shell"] == "through the shell"


@pytest.mark.parametrize("backend", ["file", "database", "postgres"])
def test_failing_command_retried_then_blocked_and_escalated(tmp_path: Path,
                                                            backend: str) -> None:
    p = make(tmp_path, backend)
    p.plan("Fails", owner="owner@example.com", tasks=[
        {"title": "breaks", "run": "echo trying; echo 'it broke' >&2; exit 3"},
        {"title": "after", "depends_on": ["task-1"], "run": "true"},
        {"title": "free", "run": "true"},
    ])
    summary = execute(p, agents=2)
    assert summary["outcome"] == "incomplete" and summary["exit_code"] == EXIT_LEFT
    assert summary["failed"] == 3 and summary["done"] == 1
    t = tasks(p)
    assert t["task-1"]["status"] == "blocked"
    assert t["task-1"]["execution"]["attempts"] == 3
    assert t["task-1"]["execution"]["last_error"] == "exit 3: it broke"
    assert t["task-3"]["status"] == "done" and t["task-2"]["status"] in ("todo", "blocked")
    fails = events(p, "task_failed")
    assert [e["details"]["attempts"] for e in fails] == [1, 2, 3]
    rules = {(e["details"]["task_id"], e["details"]["rule"]) for e in events(p, "blocker_detected")}
    assert ("task-1", "repeated_failure") in rules
    inbox = Agents(p).inbox("owner@example.com")
    assert any(m["about"] == f"{MID}/task-1" and m["kind"] == "escalation" for m in inbox)
    log = (tmp_path / ".milestones" / "logs" / "agents" / f"{MID}-task-1.log").read_text()
    assert log.count("attempt ") == 3 and log.count("=== exit 3 after") == 3
    row = next(x for x in summary["tasks"] if x["ref"] == f"{MID}/task-1")
    assert row["runs"] == 3 and row["status"] == "blocked"


def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    p = make(tmp_path)
    (tmp_path / ".milestones" / "config" / "config.yaml").write_text(
        "agents:\n  max_attempts: 1\n")
    p = Project.open(tmp_path)
    p.plan("Slow", tasks=[{"title": "hangs", "run": "(sleep 30; touch late.txt) & sleep 30"}])
    began = time.monotonic()
    summary = execute(p, agents=1, timeout=0.5)
    assert time.monotonic() - began < 10
    assert summary["exit_code"] == EXIT_LEFT
    t = tasks(p)["task-1"]
    assert t["status"] == "blocked"
    assert t["execution"]["last_error"].startswith("timed out after 0.5s")
    time.sleep(0.2)
    assert not (tmp_path / "late.txt").exists()  # the background child died too


def test_dry_run_prints_waves_and_runs_nothing(tmp_path: Path) -> None:
    p = make(tmp_path)
    p.plan("Plan", tasks=[dict(t, run="true", estimate=2 if t["title"] == "six" else 1)
                          for t in DAG])
    data = schedule(p, MID, agents=3)
    waves = [[t["ref"].split("/")[1] for t in w["tasks"]] for w in data["waves"]]
    assert waves == [["task-1", "task-2", "task-7"], ["task-3", "task-4"], ["task-5"],
                     ["task-6"]]
    assert data["widest"] == 3 and data["open"] == 7 and data["refuse"] is None
    assert data["critical_path"][-1] == f"{MID}/task-6"
    assert data["critical_path_hours"] == 5.0
    run = Runner(tmp_path)
    out = run.json("execute", "1", "--dry-run")
    assert [len(w["tasks"]) for w in out["waves"]] == [3, 2, 1, 1]
    text = run.ok("execute", "1", "--dry-run")
    assert "wave 1 (3 tasks)" in text and "critical path (5h by estimates)" in text
    assert not events(p, "task_claimed") and not (tmp_path / ".milestones/logs/agents").exists()


def test_refuses_what_cannot_run(tmp_path: Path) -> None:
    p = make(tmp_path)
    p.plan("Before", tasks=[{"title": "first", "run": "true"}])
    p.plan("Needs", depends_on=[MID], tasks=[{"title": "no command"}])
    with pytest.raises(InvalidInput, match="milestone-002/task-1 has no run command"):
        Executor(p, "2").check()
    with pytest.raises(ValidationFailed, match=f"waits on work outside it: {MID}"):
        Executor(p, "2", Options(command="true")).check()
    assert "would not start" in Runner(tmp_path).ok("execute", "2", "--dry-run")
    result = Runner(tmp_path)("execute", "2")
    assert result.exit_code == 4 and "has no run command" in result.output


def test_dependency_made_invalid_by_hand_pauses_the_task(tmp_path: Path) -> None:
    p = make(tmp_path)
    edit = tmp_path / "edit.py"
    edit.write_text(
        "import pathlib\n"
        f"f = pathlib.Path('.milestones/active/{MID}.yaml')\n"
        "f.write_text(f.read_text().replace('  - task-2\\n', '  - task-2\\n  - task-99\\n'))\n")
    p.plan("Edited", tasks=[
        {"title": "edits the plan", "run": f"{sys.executable} edit.py"},
        {"title": "middle", "depends_on": ["task-1"], "run": "sleep 0.3"},
        {"title": "last", "depends_on": ["task-2"], "run": "true"},
    ])
    summary = execute(p, agents=2)
    assert summary["exit_code"] == EXIT_LEFT
    t = tasks(p)
    assert t["task-2"]["status"] == "done" and t["task-3"]["status"] == "blocked"
    assert t["task-3"]["blockers"][0].startswith("invalid dependency: MS201")
    rules = [e["details"]["rule"] for e in events(p, "blocker_detected")]
    assert "invalid_dependency" in rules


@pytest.mark.parametrize("backend", ["file", "postgres"])
def test_blocked_dependency_is_reported_by_the_detector(tmp_path: Path, backend: str) -> None:
    p = make(tmp_path, backend)
    p.plan("Chain", tasks=[{"title": "bad", "run": "exit 1"},
                           {"title": "waits", "depends_on": ["task-1"], "run": "true"}])
    execute(p, agents=1)
    t = tasks(p)
    assert t["task-2"]["status"] == "blocked"
    assert t["task-2"]["blockers"] == [f"dependency {MID}/task-1 is blocked"]


def _cli(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, MILESTONE_UI="simple", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "milestones", "-C", str(cwd), "execute",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _wait_for(proc: subprocess.Popen[str], word: str, count: int) -> list[str]:
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while sum(word in x for x in lines) < count:
        assert time.monotonic() < deadline, lines
        line = proc.stdout.readline()
        assert line, lines
        lines.append(line)
    return lines


# The shell's pid is its process group's id (each command runs in a session of its own).
SLOW = ('echo $$ >> pids.txt; if [ ! -f fast ]; then sleep 20; fi; '
        'echo "$MILESTONE_TASK_ID" >> out.txt')


def _wait_started(cwd: Path, count: int) -> None:
    """Until ``count`` SLOW commands have written their pid: a claim is printed before
    its command's shell starts, and on a busy machine the shell may take a while."""
    deadline = time.monotonic() + 30
    pids = cwd / "pids.txt"
    while not (pids.exists() and len(pids.read_text().split()) >= count):
        assert time.monotonic() < deadline, "the commands did not start"
        time.sleep(0.05)


def groups(cwd: Path) -> list[int]:
    """Process groups of the SLOW commands started so far with a live (not zombie)
    member. Linux: read from /proc."""
    wanted = {int(x) for x in (cwd / "pids.txt").read_text().split()}
    alive = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp in wanted and state != "Z":
            alive.add(pgrp)
    return sorted(alive)


@pytest.mark.parametrize("backend", ["file", "postgres"])
def test_ctrl_c_stops_then_resume_completes_the_rest(tmp_path: Path, backend: str) -> None:
    p = make(tmp_path, backend)
    p.plan("Long", tasks=[{"title": "quick", "run": 'echo "$MILESTONE_TASK_ID" >> out.txt'},
                          {"title": "a", "run": SLOW, "depends_on": ["task-1"]},
                          {"title": "b", "run": SLOW, "depends_on": ["task-1"]},
                          {"title": "c", "run": SLOW, "depends_on": ["task-2"]}])
    proc = _cli(tmp_path, "1", "--agents", "2", "--grace", "0.3")
    _wait_for(proc, "claimed", 3)  # task-1, then task-2 and task-3 sleep
    _wait_started(tmp_path, 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == EXIT_STOPPED, (out, err)
    assert "stopped: 1/4 done" in out and "--resume" in out
    t = tasks(p)
    assert [t[f"task-{i}"]["status"] for i in range(1, 5)] == ["done", "todo", "todo", "todo"]
    assert len(events(p, "task_released")) == 2
    assert all(a["status"] == "gone" for a in Agents(p).roster())
    assert p.store.read_resume()["notes"][-1]["text"] == f"execute {MID} stopped: 1 done, 3 left"
    assert groups(tmp_path) == []  # killed after the grace period
    (tmp_path / "fast").write_text("")
    result = Runner(tmp_path)("execute", "1", "--resume", "--json")
    assert result.exit_code == 0, result.output
    assert first_json(result.output)["done"] == 4
    assert sorted((tmp_path / "out.txt").read_text().split()) == [
        f"{MID}/task-{i}" for i in range(1, 5)]


@pytest.mark.parametrize("backend", ["database", "postgres"])
def test_resume_after_a_crash_releases_the_dead_runs_claims(tmp_path: Path,
                                                            backend: str) -> None:
    p = make(tmp_path, backend)
    p.plan("Crash", tasks=[{"title": "a", "run": SLOW}, {"title": "b", "run": SLOW}])
    proc = _cli(tmp_path, "1", "--agents", "2")
    _wait_for(proc, "claimed", 2)
    _wait_started(tmp_path, 2)
    proc.kill()  # SIGKILL: no clean-up at all
    proc.communicate(timeout=10)
    for pgid in groups(tmp_path):  # its commands outlive it (sessions of their own)
        os.killpg(pgid, signal.SIGKILL)
    held = [t for t in tasks(p).values() if t["status"] == "in_progress"]
    assert len(held) == 2  # still claimed, leases of 5 minutes
    with pytest.raises(Conflict, match="an executor is already working"):
        Executor(p, MID).check()
    (tmp_path / "fast").write_text("")
    summary = execute(p, agents=2, resume=True)
    assert summary["exit_code"] == 0 and summary["done"] == 2
    released = events(p, "task_released")
    assert len(released) == 2
    assert sorted((tmp_path / "out.txt").read_text().split()) == [f"{MID}/task-1",
                                                                  f"{MID}/task-2"]
    # The same agent names got the same ids back.
    names = [a["name"] for a in Agents(p).roster()]
    assert len(names) == len(set(names))


def test_cli_json_summary(tmp_path: Path) -> None:
    p = make(tmp_path)
    p.plan("Smoke", tasks=[{"title": "one", "run": "echo hello"},
                           {"title": "two", "run": "echo world", "depends_on": ["task-1"]}])
    run = Runner(tmp_path)
    result = run("execute", "1", "--agents", "2", "--json")
    assert result.exit_code == 0, result.output
    data = first_json(result.output)
    assert data["schema"] == 1 and data["outcome"] == "done" and data["exit_code"] == 0
    assert data["completed"] == 2 and data["failed"] == 0 and data["blocked"] == 0
    assert data["wall_seconds"] > 0
    assert [(t["ref"], t["status"], t["result"]) for t in data["tasks"]] == [
        (f"{MID}/task-1", "done", "hello"), (f"{MID}/task-2", "done", "world")]
    assert data["tasks"][0]["log"] == f".milestones/logs/agents/{MID}-task-1.log"
    text = run.ok("execute", "1", "--ui", "simple")  # nothing left: done at once
    assert f"{MID} done: 2/2 done" in text
    result = run("execute", "1", "--agents", "0")
    assert result.exit_code == 2


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout


def test_git_worktrees_commits_and_merges_in_dependency_order(tmp_path: Path) -> None:
    repo = tmp_path
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "Dev")
    git(repo, "config", "commit.gpgsign", "false")
    (repo / "base.txt").write_text("base\n")
    git(repo, "add", "base.txt")
    git(repo, "commit", "-q", "-m", "first")
    p = make(repo)
    # Each task appends to a file its dependency wrote: only its dependency's merged
    # work in its worktree makes that possible.
    p.plan("Git", tasks=[
        {"title": "Write a", "run": 'echo a > a.txt; pwd > "$MILESTONE_DIR/../where-1"'},
        {"title": "Extend a", "run": "test -f a.txt && echo b >> a.txt",
         "depends_on": ["task-1"]},
        {"title": "Write c", "run": "echo c > c.txt"},
        # Four ready at the start, four agents: these two run side by side, from the
        # same commit, and both rewrite base.txt.
        {"title": "Conflict", "run": "echo other > base.txt; sleep 0.3"},
        {"title": "Also base", "run": "echo mine > base.txt; sleep 0.3"},
    ])
    summary = execute(p, agents=4, git=True)
    branch = f"milestone/{MID}"
    assert summary["branch"] == branch
    assert (repo / "where-1").read_text().strip().endswith(f".milestone-worktrees/{MID}-task-1")
    t = tasks(p)
    assert [t[f"task-{i}"]["status"] for i in (1, 2, 3)] == ["done", "done", "done"]
    # task-4 and task-5 both rewrite base.txt: whichever merges second conflicts.
    statuses = sorted([t["task-4"]["status"], t["task-5"]["status"]])
    assert statuses == ["blocked", "done"]
    loser = "task-4" if t["task-4"]["status"] == "blocked" else "task-5"
    assert t[loser]["blockers"] == ["merge conflict in: base.txt"]
    assert git(repo, "show", f"{branch}:a.txt") == "a\nb\n"
    log = git(repo, "log", branch, "--format=%s%n%b%n--")
    assert f"feat({MID}): Write a" in log and f"feat({MID}): Extend a" in log
    assert "Task: task-2" in log and f"Milestone: {MID}" in log
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert (repo / "base.txt").read_text() == "base\n"  # the user's tree is untouched
    assert not list((repo / ".milestone-worktrees").glob(f"{MID}-task-*"))
    commits = [x["commit"] for x in summary["tasks"] if x["status"] == "done"]
    assert all(commits) and len(set(commits)) == 4

"""Messages between agents (direct, role, broadcast), across restarts and processes, and
the `milestone agent ...` / `milestone ready` commands an external agent uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from milestones.agents.coord import Agents
from milestones.cli import cli
from milestones.project import Project

WORKER = Path(__file__).with_name("worker.py")
MULTI = ["file", "hybrid", "database", "postgres"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)

    def __call__(self) -> str:
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def bodies(project: Project, who: str, **kw: Any) -> list[str]:
    return [m["body"] for m in Agents(project).inbox(who, **kw)]


@pytest.fixture(params=MULTI)
def multi(request: pytest.FixtureRequest, tmp_path: Path) -> Project:
    """A project on a backend other processes can share."""
    p, _ = Project.init(tmp_path, backend=request.param, actor="lead", session_id="msg-test")
    return p


def cli_proc(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run `milestone -C cwd ARGS --json` as its own process; the parsed JSON."""
    proc = subprocess.run([sys.executable, "-m", "milestones", "-C", str(cwd), *args, "--json"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, (args, proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


# ------------------------------------------------------------------ the library


def test_every_addressee_gets_each_message_once(project: Project) -> None:
    a = Agents(project)
    ids = {name: a.register(name, kind=kind)["id"]
           for name, kind in (("lead", "monitor"), ("w1", "worker"), ("w2", "worker"),
                              ("w3", "worker"), ("rev", "reviewer"))}
    a.send("lead", ids["w1"], "by id")
    a.send("lead", "w1", "by name")
    a.send("lead", "role:worker", "to workers")
    a.send("w2", "role:reviewer", "to reviewers")
    a.send("rev", "*", "to all")
    a.send("w1", "w1", "note to self")
    expected = {
        "lead": ["to all"],
        "w1": ["by id", "by name", "to workers", "to all", "note to self"],
        "w2": ["to workers", "to all"],
        "w3": ["to workers", "to all"],
        "rev": ["to reviewers"],  # a broadcast skips its sender
    }
    for name, want in expected.items():
        assert bodies(project, name) == want, name
        assert bodies(project, ids[name]) == want, name  # by id or by name: one inbox
    sent = [e for e in project.store.events() if e["event_type"] == "message_sent"]
    assert len(sent) == 6
    # Each message once, with its own id, to exactly its addressees.
    box = project.store.read_record("messages")["items"]
    assert [m["id"] for m in box] == list(range(1, 7))
    assert all(len(set(m["recipients"])) == len(m["recipients"]) for m in box)
    assert sorted(box[2]["recipients"]) == sorted([ids["w1"], ids["w2"], ids["w3"]])


def test_acks_empty_the_inbox_of_the_acker_only(project: Project) -> None:
    a = Agents(project)
    for name in ("lead", "w1", "w2"):
        a.register(name)
    first = a.send("lead", "*", "one")
    second = a.send("lead", "w1", "two")
    assert bodies(project, "w1") == ["one", "two"]
    assert a.ack("w1", [first["id"]]) == [first["id"]]
    assert bodies(project, "w1") == ["two"]
    assert bodies(project, "w2") == ["one"]  # w2 has not read it yet
    assert a.ack("w1", [first["id"], second["id"]]) == [second["id"]]  # acking twice: no-op
    assert bodies(project, "w1") == []
    assert bodies(project, "w1", include_acked=True) == ["one", "two"]
    a.ack("w2", [first["id"]])
    assert bodies(project, "w2") == []
    acked = [e for e in project.store.events() if e["event_type"] == "message_acked"]
    assert [e["details"]["message_ids"] for e in acked] == [[1], [2], [1]]


def test_broadcast_reaches_live_agents_only(project: Project) -> None:
    clock = Clock()
    project.clock = clock
    a = Agents(project)
    a.register("lead")
    a.register("live")
    a.register("quiet", lease=30)
    a.register("gone")
    a.cleanup("gone")
    a.send("lead", "*", "while all are live")
    clock.advance(60)  # quiet is past its lease: dead at the next step
    a.heartbeat("live")
    a.send("lead", "*", "after quiet died")
    assert bodies(project, "live") == ["while all are live", "after quiet died"]
    assert bodies(project, "quiet") == ["while all are live"]
    assert bodies(project, "gone") == []
    status = {r["name"]: r["status"] for r in a.roster()}
    assert status == {"lead": "live", "live": "live", "quiet": "dead", "gone": "gone"}
    # Back from the dead (a heartbeat) or re-registered: later broadcasts reach it again.
    a.heartbeat("quiet")
    a.register("gone")
    a.send("lead", "*", "welcome back")
    assert bodies(project, "quiet") == ["while all are live", "welcome back"]
    assert bodies(project, "gone") == ["welcome back"]


def test_inbox_survives_a_restart_in_a_new_process(multi: Project) -> None:
    cwd = multi.root.parent
    first = cli_proc(cwd, "agent", "register", "--name", "w1")["agent"]
    Agents(multi).register("lead")
    Agents(multi).send("lead", "w1", "read me after your restart")
    Agents(multi).send("lead", "*", "and this broadcast")
    # The agent's process is gone; a new one registers under the same name.
    again = cli_proc(cwd, "agent", "register", "--name", "w1")["agent"]
    assert again["id"] == first["id"] and again["pid"] != first["pid"]
    inbox = cli_proc(cwd, "agent", "inbox", "--agent", "w1")["messages"]
    assert [m["body"] for m in inbox] == ["read me after your restart", "and this broadcast"]
    acked = cli_proc(cwd, "agent", "ack", *(str(m["id"]) for m in inbox),
                     env={"MILESTONE_AGENT_ID": first["id"]})
    assert acked["acked"] == [m["id"] for m in inbox]
    assert cli_proc(cwd, "agent", "inbox", "--agent", "w1")["messages"] == []
    assert bodies(Project.open(cwd), "w1") == []


def test_concurrent_senders_lose_nothing(multi: Project, tmp_path: Path) -> None:
    """8 processes, registered first, then all at once: 20 direct messages each to the
    others in turn and one broadcast. Every message arrives once, where it should."""
    names = [f"c{i}" for i in range(8)]
    count = 20
    go = tmp_path / "go"
    procs = []
    for name in names:
        peers = ",".join(n for n in names if n != name)
        procs.append(subprocess.Popen(
            [sys.executable, str(WORKER), "chat", str(multi.root.parent), name, str(go), peers,
             str(count)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "MILESTONE_LOCK_TIMEOUT": "120"}))
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.{n}.ready").exists() for n in names):
        assert time.monotonic() < deadline, [p.poll() for p in procs]
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.01)
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, (out, err)
    project = Project.open(multi.root.parent)
    box = project.store.read_record("messages")["items"]
    assert len(box) == len(names) * (count + 1)
    assert sorted(m["id"] for m in box) == list(range(1, len(box) + 1))
    sent = [e for e in project.store.events() if e["event_type"] == "message_sent"]
    assert len(sent) == len(box)
    total = 0
    for name in names:
        got = Counter(bodies(project, name))
        assert all(n == 1 for n in got.values()), (name, got.most_common(3))
        direct = {f"{s}->{name} #{j}" for s in names if s != name for j in range(count)
                  if [n for n in names if n != s][j % (len(names) - 1)] == name}
        broadcasts = {f"{s} to all" for s in names if s != name}
        assert set(got) == direct | broadcasts, name
        total += len(direct)
    assert total == len(names) * count


# ------------------------------------------------------------------ the CLI


class Cli:
    """`milestone` in a project directory, stdout and stderr apart."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.runner = CliRunner(mix_stderr=False)

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(cli, ["-C", str(self.cwd), *args], env=env,
                                  catch_exceptions=False)

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        result = self(*args, "--json", env=env)
        assert result.exit_code == 0, (args, result.exit_code, result.stdout, result.stderr)
        return json.loads(result.stdout)


@pytest.fixture
def mcli(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.delenv("MILESTONE_AGENT_ID", raising=False)
    c = Cli(project_dir)
    c.json("plan", "Agents", "--task", "first", "--task", "second")
    c.json("task", "edit", "1/2", "--depends-on", "1")
    return c


def one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("milestone: error: "), result.stderr
    return lines[0]


def test_cli_register_claim_complete(mcli: Cli) -> None:
    agent = mcli.json("agent", "register", "--name", "w1", "--skills", "python")["agent"]
    assert agent["id"] == "agent-1" and agent["skills"] == ["python"]
    ready = mcli.json("ready")["tasks"]
    assert [r["ref"] for r in ready] == ["milestone-001/task-1"]  # task-2 waits on it
    assert "milestone-001/task-1" in mcli("ready").stdout
    got = mcli.json("agent", "claim", "--agent", "w1")
    assert got["schema"] == 1 and got["ref"] == "milestone-001/task-1"
    assert got["token"] == 1 and got["agent"] == "agent-1" and got["task"]["title"] == "first"
    assert "first" in got["prompt"] and "Done means" in got["prompt"]
    assert mcli.json("ready")["tasks"] == []
    done = mcli.json("agent", "complete", "--agent", "w1", "--token", str(got["token"]),
                     "--result", "wrote the first part")
    assert done["ref"] == "milestone-001/task-1" and done["status"] == "done"
    nxt = mcli.json("agent", "claim", "--agent", "agent-1")  # by id as well as by name
    assert nxt["ref"] == "milestone-001/task-2"
    assert "wrote the first part" in nxt["prompt"]  # the dependency's result
    t = Project.open(mcli.cwd).milestone("1").task("task-1")
    assert t.status == "done" and (t.execution or {})["result"] == "wrote the first part"
    assert (t.execution or {})["completed_by"] == "agent-1"


def test_cli_stale_token_is_refused(mcli: Cli) -> None:
    mcli.json("agent", "register", "--name", "w1")
    mcli.json("agent", "register", "--name", "w2")
    old = mcli.json("agent", "claim", "--agent", "w1")
    mcli.json("agent", "release", "--agent", "w1", "--token", str(old["token"]))
    new = mcli.json("agent", "claim", "--agent", "w2")
    assert new["ref"] == old["ref"] and new["token"] == old["token"] + 1
    line = one_error_line(mcli("agent", "complete", old["ref"], "--agent", "w1", "--token",
                               str(old["token"])), 7)
    assert "stale" in line and old["ref"] in line
    t = Project.open(mcli.cwd).milestone("1").task("task-1")
    assert t.status == "in_progress" and (t.execution or {})["agent"] == "agent-2"
    # Also for fail and release, and for the one who holds it with a wrong token.
    one_error_line(mcli("agent", "fail", old["ref"], "--agent", "w1", "--token",
                        str(old["token"]), "--reason", "x"), 7)
    one_error_line(mcli("agent", "release", old["ref"], "--agent", "w2", "--token",
                        str(old["token"])), 7)
    assert mcli.json("agent", "complete", "--agent", "w2", "--token",
                     str(new["token"]))["status"] == "done"


def test_cli_who_acts(mcli: Cli) -> None:
    line = one_error_line(mcli("agent", "claim"), 4)
    assert "--agent" in line and "MILESTONE_AGENT_ID" in line
    line = one_error_line(mcli("agent", "claim", "--agent", "nobody"), 3)
    assert "nobody" in line
    aid = mcli.json("agent", "register", "--name", "w1")["agent"]["id"]
    got = mcli.json("agent", "claim", env={"MILESTONE_AGENT_ID": aid})
    assert got["agent"] == aid and got["ref"] == "milestone-001/task-1"
    beat = mcli.json("agent", "heartbeat", env={"MILESTONE_AGENT_ID": "w1"})
    assert beat["holds"] == ["milestone-001/task-1"]
    done = mcli.json("agent", "complete", env={"MILESTONE_AGENT_ID": "w1"})  # the one it holds
    assert done["ref"] == "milestone-001/task-1"


def test_cli_claim_with_nothing_ready_says_why(mcli: Cli) -> None:
    mcli.json("agent", "register", "--name", "w1")
    mcli.json("agent", "register", "--name", "w2")
    mcli.json("agent", "claim", "--agent", "w1")
    idle = mcli.json("agent", "claim", "--agent", "w2")  # task-2 waits on the held task-1
    assert idle["ref"] is None and idle["open"] == 2 and idle["held"] == 1
    assert idle["blocked"] == 0
    assert "nothing to claim" in mcli("agent", "claim", "--agent", "w2").stdout
    mcli.json("agent", "complete", "--agent", "w1", "--next")
    mcli.json("agent", "complete", "--agent", "w1")
    assert mcli.json("agent", "claim", "--agent", "w2") == {
        "schema": 1, "ref": None, "milestone_id": None, "agent": "agent-2", "open": 0,
        "held": 0, "blocked": 0}


def test_cli_messages_and_cleanup(mcli: Cli) -> None:
    for name, kind in (("w1", "worker"), ("w2", "worker"), ("lead", "monitor")):
        mcli.json("agent", "register", "--name", name, "--kind", kind)
    m = mcli.json("agent", "send", "--agent", "lead", "--to", "role:worker", "rebase on main")
    assert sorted(m["message"]["recipients"]) == ["agent-1", "agent-2"]
    mcli.json("agent", "cleanup", "--agent", "w2")
    b = mcli.json("agent", "broadcast", "--agent", "lead", "stop merging")
    assert b["message"]["recipients"] == ["agent-1"]  # w2 is gone
    inbox = mcli.json("agent", "inbox", "--agent", "w1")["messages"]
    assert [x["body"] for x in inbox] == ["rebase on main", "stop merging"]
    assert "stop merging" in mcli("agent", "inbox", "--agent", "w1").stdout
    assert mcli.json("agent", "ack", "1", "2", "--agent", "w1")["acked"] == [1, 2]
    assert mcli.json("agent", "inbox", "--agent", "w1")["messages"] == []
    one_error_line(mcli("agent", "ack", "99", "--agent", "w1"), 3)
    one_error_line(mcli("agent", "send", "--agent", "lead", "--to", "role:nobody", "x"), 3)
    roster = {r["name"]: r["status"] for r in mcli.json("agent", "list")["agents"]}
    assert roster == {"w1": "live", "w2": "gone", "lead": "live"}

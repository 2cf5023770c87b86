"""Rules hold at every door: `git link` closes a task only as `task done` would,
and damaged agent records are an error, never an empty default (issue 12)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import Runner
from milestones.cli import cli
from milestones.project import Project

BACKENDS = ["file", "hybrid", "database", "postgres"]
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
    t = task(run, f"{MID}/task-2")
    assert t["status"] == "done" and t["execution"]["closed_by"] == sha
    assert "close_refused" not in t["execution"]["commits"][0]  # the note is answered


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


# ------------------------------------------------------------ damaged records

DAMAGE = {
    "truncated": lambda good: good[: len(good) // 2],
    "a list": lambda good: "[]",
    "wrong types": lambda good: good.replace('"next": ', '"next": "x", "was": ', 1),
    "next reuses an id": None,  # filled per record below
}


def record_text(root: Path, backend: str, name: str) -> str:
    if backend == "postgres":
        import psycopg

        with psycopg.connect(os.environ["MILESTONE_DATABASE_URL"]) as pg:
            got = pg.execute("SELECT data FROM records WHERE name = %s", (name,)).fetchone()
        return str(got[0]) if got else ""
    if backend == "database":
        with sqlite3.connect(root / ".milestones" / "database" / "milestones.db") as conn:
            row = conn.execute("SELECT data FROM records WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else ""
    return (root / ".milestones" / "agents" / f"{name}.json").read_text()


def set_record(root: Path, backend: str, name: str, text: str) -> None:
    if backend == "postgres":
        import psycopg

        with psycopg.connect(os.environ["MILESTONE_DATABASE_URL"]) as pg:
            pg.execute("UPDATE records SET data = %s WHERE name = %s", (text, name))
        return
    if backend == "database":
        with sqlite3.connect(root / ".milestones" / "database" / "milestones.db") as conn:
            conn.execute("UPDATE records SET data = ? WHERE name = ?", (text, name))
        return
    (root / ".milestones" / "agents" / f"{name}.json").write_text(text)


def damage(good: str, how: str, name: str) -> str:
    if how == "next reuses an id":  # valid JSON, sound shape, but would hand an id out again
        data = json.loads(good)
        data["next"] = 1
        return json.dumps(data)
    if how == "wrong types":
        data = json.loads(good)
        if name == "agents":
            data["agents"] = ["agent-1"]
        else:
            data["items"][0]["recipients"] = "agent-2"
        return json.dumps(data)
    fn = DAMAGE[how]
    assert fn is not None
    return str(fn(good))


@pytest.fixture(params=BACKENDS)
def team(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Runner, str]:
    backend = request.param
    Project.init(tmp_path, backend=backend)
    run = Runner(tmp_path)
    run.ok("plan", "Ship", "--task", "One", "--task", "Two", "--task", "Three")
    run.ok("agent", "register", "--name", "w1")
    run.ok("agent", "register", "--name", "w2")
    run.ok("agent", "send", "--agent", "w1", "--to", "w2", "unread hello")
    run.ok("agent", "claim", "--agent", "w2")
    return run, backend


def where(name: str, backend: str) -> str:
    return f"`{name}` record" if backend in ("database", "postgres") else f"{name}.json"


@pytest.mark.parametrize("how", ["truncated", "a list", "wrong types", "next reuses an id"])
def test_damaged_agents_record_is_an_error(team: tuple[Runner, str], how: str) -> None:
    run, backend = team
    root = run.cwd
    bad = damage(record_text(root, backend, "agents"), how, "agents")
    set_record(root, backend, "agents", bad)
    for args in (("agent", "list"), ("agent", "register", "--name", "w3"),
                 ("agent", "claim", "--agent", "w1"), ("agent", "inbox", "--agent", "w2"),
                 ("agent", "heartbeat", "--agent", "w1")):
        r = split(run, *args)
        assert r.exit_code == 8, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("milestone: error: ") and where("agents", backend) in r.stderr
        assert "doctor --repair" in r.stderr and "Traceback" not in r.stderr
        assert record_text(root, backend, "agents") == bad  # never overwritten
    r = split(run, "doctor")
    assert r.exit_code == 8 and "agents record" in r.stdout and where("agents", backend) in r.stdout


@pytest.mark.parametrize("how", ["truncated", "a list", "wrong types", "next reuses an id"])
def test_damaged_messages_record_is_an_error(team: tuple[Runner, str], how: str) -> None:
    run, backend = team
    root = run.cwd
    bad = damage(record_text(root, backend, "messages"), how, "messages")
    set_record(root, backend, "messages", bad)
    for args in (("agent", "inbox", "--agent", "w2"),
                 ("agent", "send", "--agent", "w1", "--to", "w2", "again"),
                 ("agent", "ack", "--agent", "w2", "1")):
        r = split(run, *args)
        assert r.exit_code == 8, (args, r.stdout, r.stderr)
        assert where("messages", backend) in r.stderr and "Traceback" not in r.stderr
        assert record_text(root, backend, "messages") == bad
    r = split(run, "doctor")
    assert r.exit_code == 8 and where("messages", backend) in r.stdout


def test_repair_rebuilds_without_reusing_ids(team: tuple[Runner, str]) -> None:
    run, backend = team
    root = run.cwd
    set_record(root, backend, "agents", record_text(root, backend, "agents")[:40])
    set_record(root, backend, "messages", "{not json")
    r = split(run, "doctor", "--repair")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert "rebuilt" in r.stdout and "damaged" in r.stdout
    if backend not in ("database", "postgres"):  # damaged files kept beside the rebuilt
        kept = sorted(p.name for p in (root / ".milestones" / "agents").iterdir())
        assert any(n.startswith("agents.json.damaged-") for n in kept)
        assert any(n.startswith("messages.json.damaged-") for n in kept)
    assert split(run, "doctor").exit_code == 0
    roster = run.json("agent", "list")
    rows = roster.get("agents", roster) if isinstance(roster, dict) else roster
    assert {a["id"]: a["name"] for a in rows} == {"agent-1": "w1", "agent-2": "w2"}
    # a new agent gets a new id; a known name keeps its own
    assert run.ok("agent", "register", "--name", "w3").strip().endswith("agent-3")
    assert run.ok("agent", "register", "--name", "w1").strip().endswith("agent-1")
    # the unread message is back, with its id; the next message gets a new one
    inbox = run.ok("agent", "inbox", "--agent", "w2")
    assert "#1" in inbox and "unread hello" in inbox
    assert "message 2 " in run.ok("agent", "send", "--agent", "w1", "--to", "w2", "next").lower()


def test_repair_skips_ids_only_the_damaged_record_names(team: tuple[Runner, str]) -> None:
    """An id the log never saw (the record was written, its event lost) is not reused."""
    run, backend = team
    set_record(run.cwd, backend, "agents",
               '{"next": 8, "agents": {"agent-7": {"id": "agent-7", "na')
    assert split(run, "agent", "list").exit_code == 8
    assert split(run, "doctor", "--repair").exit_code == 0
    assert run.ok("agent", "register", "--name", "w9").strip().endswith("agent-8")


# ------------------------------------------------------------------- config


@pytest.mark.parametrize("args", [("status",), ("agent", "register", "--name", "w"),
                                  ("validate",), ("git", "link")])
def test_damaged_config_is_an_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    """A config.yaml that is no mapping at all is named, never read as the defaults."""
    Project.init(tmp_path)
    path = tmp_path / ".milestones" / "config" / "config.yaml"
    path.write_text("- a list\n- of things\n")
    r = split(Runner(tmp_path), *args)
    assert r.exit_code == 4, (r.stdout, r.stderr)
    assert "config.yaml" in r.stderr and "holds a list" in r.stderr
    assert "Traceback" not in r.stderr
    assert path.read_text() == "- a list\n- of things\n"


@pytest.mark.parametrize(("text", "args", "named"), [
    ("agents: [1, 2]\n", ("agent", "register", "--name", "w"), "config.yaml:1: agents must"),
    ("validation: oops\n", ("validate",), "config.yaml:1: validation must"),
    ("git: [Closes]\n", ("validate",), "config.yaml:1: git must"),
])
def test_a_config_section_of_the_wrong_shape_is_named_and_its_defaults_used(
        tmp_path: Path, text: str, args: tuple[str, ...], named: str) -> None:
    """A section that is not a mapping is a bad value: one warning naming its line, and
    the section's defaults (README: Configuration)."""
    Project.init(tmp_path)
    path = tmp_path / ".milestones" / "config" / "config.yaml"
    path.write_text(text)
    r = split(Runner(tmp_path), *args)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert named in r.stderr and "Traceback" not in r.stderr
    assert path.read_text() == text


# ------------------------------------------------- tasks planned as done


@pytest.mark.parametrize(("name", "text"), [
    ("plan.md", "# Ship\n\n- [ ] Base\n- [x] Top after 1\n"),
    ("plan.yaml", "milestones:\n- title: Ship\n  tasks:\n  - title: Base\n  - title: Top\n"
                  "    status: done\n    depends_on: [task-1]\n"),
    ("plan.yaml", "milestones:\n- title: Ship\n  depends_on: [milestone-001]\n  tasks:\n"
                  "  - title: Top\n    status: done\n"),
    ("spec/tasks.md", "# Tasks\n\n- [x] 1. Parent\n  - [ ] 1.1 Child\n"),
])
def test_planned_done_obeys_the_done_rule(tmp_path: Path, name: str, text: str) -> None:
    """A plan file's `[x]`, `status: done` or a ticked Kiro box is the `task done` door:
    a task whose dependencies are not done is refused, and nothing is created."""
    Project.init(tmp_path)
    run = Runner(tmp_path)
    run.ok("plan", "Open", "--task", "Still open")
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text(text)
    args = ("import", "kiro", str(tmp_path / "spec")) if name.startswith("spec") else \
        ("plan", "--from-file", str(tmp_path / name))
    r = split(run, *args)
    assert r.exit_code == 5, (r.stdout, r.stderr)
    assert "as done" in r.stderr and "waits on" in r.stderr
    assert sorted(p.name for p in (tmp_path / ".milestones" / "active").glob("*.yaml")) == \
        ["milestone-001.yaml"]
    # with the dependency done too, it is accepted
    (tmp_path / name).write_text(text.replace("- [ ]", "- [x]").replace(
        "  - title: Base\n", "  - title: Base\n    status: done\n"))
    if "milestone-001" in text:
        run.ok("task", "done", "1/1")
    assert split(run, *args).exit_code == 0


def test_update_status_keeps_the_milestone_dependency_rule(tmp_path: Path) -> None:
    """`update --status` is a door that changes a status: a milestone whose dependencies
    are open cannot be marked started there either (as `task start` refuses its tasks)."""
    status = "in_progress"
    Project.init(tmp_path)
    run = Runner(tmp_path)
    run.ok("plan", "Base", "--task", "a")
    run.ok("plan", "Top", "--task", "b", "--depends-on", "1")
    before = Project.open(tmp_path).milestone("2").status
    r = split(run, "update", "2", "--status", status)
    assert r.exit_code == 5, (r.stdout, r.stderr)
    assert "milestone-001" in r.stderr and "Traceback" not in r.stderr
    assert Project.open(tmp_path).milestone("2").status == before
    run.ok("task", "done", "1/1")
    run.ok("update", "2", "--status", status)
    assert Project.open(tmp_path).milestone("2").status == status

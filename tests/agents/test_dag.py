"""Many agent processes work one random DAG to the end, on every multi-process backend:
every task completed exactly once, never claimed before its dependencies were done;
then again with agents killed by SIGKILL at random moments and replaced.

Real OS processes (``tests/agents/worker.py``), the library's own coordination
(``Agents(project)``), and the event log as the witness: event ids are the order in
which the writer lock let the steps through, so "claimed after every dependency was
completed" is a comparison of ids.

Size: ``MILESTONE_DAG_TASKS`` tasks (2,000) for ``MILESTONE_DAG_AGENTS`` agents (16);
``MILESTONE_DAG_SEED`` replays a run (each test prints its seed);
``MILESTONE_DAG_PROFILE=DIR`` makes agent w1 of each run write a cProfile there.
Every claim and complete is a write under the project lock, so a run's time is the
number of writes times a write's cost on a project of that size; each test prints
its figures (run with ``-s`` to see them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from milestones.agents.coord import Agents
from milestones.model import events as ev
from milestones.project import Project

WORKER = Path(__file__).with_name("worker.py")
BACKENDS = ["file", "hybrid", "database"]
TASKS = int(os.environ.get("MILESTONE_DAG_TASKS") or 2000)
AGENTS = int(os.environ.get("MILESTONE_DAG_AGENTS") or 16)
BACKOFF = int(os.environ.get("MILESTONE_DAG_BACKOFF") or 8)  # see worker.py --backoff
PER_MILESTONE = 100
KILLS = 8
KILL_LEASE = 2  # seconds: killed agents' claims lapse quickly


def build_dag(n_tasks: int, seed: int) -> list[dict[str, Any]]:
    """Milestone specs for ``plan_many``: ``n_tasks`` tasks, 100 a milestone, each task
    depending on up to 3 lower-numbered tasks of its milestone and, one in ten, on a
    task of a lower-numbered milestone: acyclic by construction."""
    rng = random.Random(seed)
    specs: list[dict[str, Any]] = []
    sizes = [PER_MILESTONE] * (n_tasks // PER_MILESTONE)
    if n_tasks % PER_MILESTONE:
        sizes.append(n_tasks % PER_MILESTONE)
    for m, size in enumerate(sizes):
        tasks = []
        for i in range(1, size + 1):
            deps = sorted({f"task-{rng.randint(1, i - 1)}" for _ in range(rng.randint(0, 3))}
                          if i > 1 else set())
            if m and rng.random() < 0.1:
                dm = rng.randint(0, m - 1)
                deps.append(f"milestone-{dm + 1:03d}/task-{rng.randint(1, sizes[dm])}")
            tasks.append({"title": f"task {i} of part {m + 1}", "depends_on": deps})
        specs.append({"title": f"Part {m + 1}", "tasks": tasks})
    return specs


@dataclass
class Run:
    """What the swarm did: worker reports (survivors), kills, wall time."""

    seconds: float = 0.0
    reports: list[dict[str, Any]] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    out: Path  # its stdout and stderr go to files: a full pipe would stall it
    err: Path
    ready: Path  # touched once it has registered

    def report(self) -> dict[str, Any]:
        text = self.out.read_text()
        assert self.proc.returncode == 0, (self.name, self.proc.returncode, text,
                                           self.err.read_text()[-3000:])
        return dict(json.loads(text.strip().splitlines()[-1]))


def start_worker(root: Path, name: str, index: int, seed: int, *, lease: int | None,
                 deadline: float, next_: bool) -> Worker:
    base = root / "swarm" / f"{index}-{name}"
    base.parent.mkdir(exist_ok=True)
    out, err, ready = (base.with_suffix(x) for x in (".out", ".err", ".ready"))
    args = [sys.executable, str(WORKER), "dag", str(root), name, "--pause", "0.005",
            "--deadline", str(deadline), "--seed", str(seed), "--backoff", str(BACKOFF),
            "--ready", str(ready)]
    if lease is not None:
        args += ["--lease", str(lease)]
    if next_:
        args.append("--next")
    profiles = os.environ.get("MILESTONE_DAG_PROFILE")  # a folder: w1 of each run profiles
    if profiles and name == "w1":
        args += ["--profile", str(Path(profiles) / f"{root.name}-w1.prof")]
    # Sixteen processes queue for one lock: a step must wait, never fail. Not measured
    # for coverage (the in-process tests cover this code): tracing would slow every
    # step, and the swarm is the suite's longest test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    env["MILESTONE_LOCK_TIMEOUT"] = str(int(deadline))
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(args, stdout=o, stderr=e, env=env)
    return Worker(name, proc, out, err, ready)


def swarm(root: Path, seed: int, *, agents: int = AGENTS, lease: int | None = None,
          kills: int = 0) -> Run:
    """Run ``agents`` workers to the end; with ``kills``, a supervisor SIGKILLs one
    every 0.5-1 s (once all have registered), at most that many times, each time a
    worker that holds a task if one does, and starts a replacement under a new name
    (the victim's claims must lapse) or, every other time, the same name (it resumes
    its predecessor's claims)."""
    rng = random.Random(seed)
    deadline = max(180.0, TASKS * 0.6)
    run = Run()
    live: dict[str, Worker] = {}
    dead: list[Worker] = []
    done: list[Worker] = []

    def start(name: str) -> None:
        live[name] = start_worker(root, name, len(run.started), rng.randrange(1 << 30),
                                  lease=lease, deadline=deadline,
                                  next_=len(run.started) % 2 == 1)
        run.started.append(name)

    t0 = time.monotonic()
    for i in range(agents):
        start(f"w{i + 1}")
    next_kill: float | None = None
    observer = Project.open(root, actor="supervisor", session_id="dag-supervisor")
    try:
        while live:
            now = time.monotonic()
            assert now - t0 < deadline + 60, "the swarm did not finish"
            for name, w in list(live.items()):
                if w.proc.poll() is not None:
                    done.append(live.pop(name))
            if next_kill is None and all(w.ready.exists() for w in live.values()):
                next_kill = now + rng.uniform(0.5, 1.0)
            if next_kill is not None and now >= next_kill and len(run.killed) < kills:
                holding = {r["name"] for r in Agents(observer).roster() if r["holds"]}
                ready = [n for n, w in live.items() if w.ready.exists()]
                victim = rng.choice([n for n in ready if n in holding] or ready or list(live))
                w = live.pop(victim)
                w.proc.send_signal(signal.SIGKILL)
                w.proc.wait(timeout=30)
                dead.append(w)
                run.killed.append(victim)
                start(f"{victim}-r{len(run.killed)}" if len(run.killed) % 2 else victim)
                next_kill = now + rng.uniform(0.5, 1.0)
            time.sleep(0.02)
    finally:
        for w in [*live.values(), *dead]:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
    run.seconds = time.monotonic() - t0
    run.reports = [w.report() for w in done]
    for w in dead:
        assert w.proc.returncode == -signal.SIGKILL, (w.name, w.proc.returncode)
    return run


def check_log(project: Project) -> dict[str, int]:
    """Every task done, completed exactly once, every claim after all its task's
    dependencies were completed; returns counts of the coordination events."""
    events = list(project.store.events())
    assert ev.verify_chain(events) is None, ev.verify_chain(events)
    st = project.state()
    deps: dict[str, list[str]] = {}
    for mid, snap in st.milestones.items():
        assert snap["status"] == "completed", (mid, snap["status"])
        for t in snap["tasks"]:
            ref = f"{mid}/{t['id']}"
            assert t["status"] == "done", (ref, t["status"])
            deps[ref] = [d if "/" in d else f"{mid}/{d}" for d in t.get("depends_on") or ()]

    def ref_of(e: dict[str, Any]) -> str:
        return f"{e['milestone_id']}/{e['details']['task_id']}"

    kinds = Counter(e["event_type"] for e in events)
    completed = Counter(ref_of(e) for e in events if e["event_type"] == "task_completed")
    twice = {r: n for r, n in completed.items() if n != 1}
    assert not twice, f"completed more than once: {sorted(twice.items())[:10]}"
    assert set(completed) == set(deps), sorted(set(deps) - set(completed))[:10]
    done_at = {ref_of(e): e["event_id"] for e in events if e["event_type"] == "task_completed"}
    early = []
    for e in events:
        if e["event_type"] == "task_claimed":
            ref = ref_of(e)
            early += [(ref, d) for d in deps[ref] if e["event_id"] < done_at[d]]
    assert not early, f"claimed before a dependency was done: {early[:10]}"
    return dict(kinds)


def figures(backend: str, run: Run, kinds: dict[str, int]) -> str:
    writes = kinds.get("task_claimed", 0) + kinds.get("task_completed", 0)
    tail = f", killed {len(run.killed)}" if run.killed else ""
    total = Counter[str]()
    for r in run.reports:
        total.update({k: r[k] for k in ("conflicts", "waits", "steps", "heartbeats")})
    # Survivors' steps only (the killed ones' are lost): a floor on the steps taken.
    return (f"[{backend}] {TASKS} tasks, {len(run.started)} agents{tail}: {run.seconds:.1f} s, "
            f"{kinds.get('task_claimed', 0)} claims, {kinds.get('task_requeued', 0)} requeued, "
            f"{total['conflicts']} stale completes, {total['waits']} empty claims, "
            f"{total['heartbeats']} heartbeats; {total['steps']} locked steps, "
            f"{1000 * run.seconds / max(total['steps'], 1):.1f} ms each; "
            f"{1000 * run.seconds / max(writes, 1):.1f} ms per claim/complete event")


def new_project(tmp_path: Path, backend: str, seed: int) -> Project:
    project, _ = Project.init(tmp_path, backend=backend, actor="planner",
                              session_id="dag-test")
    project.plan_many(build_dag(TASKS, seed))
    return project


def seed_of() -> int:
    """The run's seed, printed first: a failing run shows it (pytest prints what a
    failing test wrote), and MILESTONE_DAG_SEED replays it."""
    seed = int(os.environ.get("MILESTONE_DAG_SEED") or time.time_ns() % 1_000_000)
    print(f"MILESTONE_DAG_SEED={seed}", flush=True)
    return seed


@pytest.mark.parametrize("backend", BACKENDS)
def test_agents_work_a_random_dag_exactly_once_in_order(tmp_path: Path, backend: str) -> None:
    seed = seed_of()
    project = new_project(tmp_path, backend, seed)
    run = swarm(tmp_path, seed)
    kinds = check_log(Project.open(tmp_path))
    print(figures(backend, run, kinds), f"(seed {seed})")
    # Nobody died and leases are the default 5 minutes: nothing lapsed, no token went stale.
    assert kinds.get("task_requeued", 0) == 0
    assert sum(r["conflicts"] for r in run.reports) == 0
    assert sum(r["completed"] for r in run.reports) == TASKS
    assert {r["id"] for r in run.reports} == {a["id"] for a in Agents(project).roster()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_killed_agents_lose_nothing_and_do_nothing_twice(tmp_path: Path, backend: str) -> None:
    seed = seed_of()
    new_project(tmp_path, backend, seed)
    run = swarm(tmp_path, seed, lease=KILL_LEASE, kills=KILLS)
    kinds = check_log(Project.open(tmp_path))
    print(figures(backend, run, kinds), f"(seed {seed})")
    # Kills stop when the work is done: a small DAG (MILESTONE_DAG_TASKS) may end first.
    assert len(run.killed) >= 2, "the DAG was done before two kills: give it more tasks"
    # Agents died holding tasks, under names nobody took up again: their leases lapsed.
    assert kinds.get("task_requeued", 0) >= 1
    assert kinds.get("agent_expired", 0) >= 1

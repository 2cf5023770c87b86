"""Three "machines" share one PostgreSQL project: each a working directory of its own
(its own ``.milestones/`` with the marker and config, no shared file, no lock file) and
its agents in a process group of their own, all on the session's one server.

Sixteen agents work a random DAG of ``MILESTONE_DAG_TASKS`` tasks (2,000) to the end
while a supervisor SIGKILLs agents at random (their claims lapse, or a replacement of
the same name resumes them) and restarts the server once mid-run (``pg_ctl restart``):
commands cut by the restart fail with a StorageError and the agents retry them
(``worker.py --retry-storage``). The event log is the witness, as in ``test_dag.py``:
every task completed exactly once, none claimed before its dependencies were done.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agents.test_dag import TASKS, Run, build_dag, check_log, figures, seed_of
from milestones.agents.coord import Agents
from milestones.errors import MilestoneError
from milestones.project import Project

WORKER = Path(__file__).with_name("worker.py")
AGENTS = 16
MACHINES = 3
KILLS = 8
LEASE = 2  # seconds: a killed agent's claims lapse quickly


def start(machine: Path, name: str, seed: int, deadline: float, out_dir: Path
          ) -> tuple[subprocess.Popen[bytes], Path]:
    out = out_dir / f"{name}-{seed}.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    env["MILESTONE_LOCK_TIMEOUT"] = str(int(deadline))
    with out.open("wb") as o, (out_dir / f"{name}-{seed}.err").open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), "dag", str(machine), name, "--pause", "0.005",
             "--deadline", str(deadline), "--seed", str(seed), "--lease", str(LEASE),
             "--retry-storage"] + (["--next"] if seed % 2 else []),
            stdout=o, stderr=e, env=env, cwd=machine, start_new_session=True)
    return proc, out


def test_three_machines_kills_and_a_server_restart(tmp_path: Path, pg_url: str,
                                                   pg_server: Any) -> None:
    seed = seed_of()
    rng = random.Random(seed)
    machines = [tmp_path / f"machine-{i + 1}" for i in range(MACHINES)]
    machines[0].mkdir()
    planner, _ = Project.init(machines[0], backend="postgres", actor="planner",
                              session_id="plan")
    planner.plan_many(build_dag(TASKS, seed))
    for m in machines[1:]:  # another machine: the project's config, the same URL
        shutil.copytree(machines[0] / ".milestones", m / ".milestones")
    out_dir = tmp_path / "swarm"
    out_dir.mkdir()
    deadline = max(180.0, TASKS * 0.3)
    run = Run()
    live: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    outs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def launch(name: str, machine: Path) -> None:
        live[name] = start(machine, name, rng.randrange(1 << 30), deadline, out_dir)
        outs.append((name, *live[name]))
        run.started.append(name)

    where = {f"w{i + 1}": machines[i % MACHINES] for i in range(AGENTS)}
    t0 = time.monotonic()
    for name, machine in where.items():
        launch(name, machine)
    observer = Project.open(machines[2], actor="supervisor", session_id="supervisor")
    restarted = False
    next_kill = t0 + 3.0
    try:
        while live:
            now = time.monotonic()
            assert now - t0 < deadline + 60, "the run did not finish"
            for name, (proc, _) in list(live.items()):
                if proc.poll() is not None:
                    live.pop(name)
            if not restarted and now - t0 > 8.0:
                pg_server.restart()  # every connection of every machine is cut
                restarted = True
            if now >= next_kill and len(run.killed) < KILLS and live:
                try:
                    holding = {r["name"] for r in Agents(observer).roster() if r["holds"]}
                except MilestoneError:  # the server is restarting
                    holding = set()
                victim = rng.choice([n for n in live if n in holding] or list(live))
                proc, _ = live.pop(victim)
                os.killpg(proc.pid, signal.SIGKILL)  # its whole process group
                proc.wait(timeout=30)
                run.killed.append(victim)
                base = victim.split("-r")[0]
                launch(f"{base}-r{len(run.killed)}" if len(run.killed) % 2 else victim,
                       where[base])
                next_kill = now + rng.uniform(0.5, 1.5)
            time.sleep(0.05)
    finally:
        for _, proc, _ in outs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    run.seconds = time.monotonic() - t0
    for name, proc, out in outs:
        if name in run.killed and proc.returncode == -signal.SIGKILL:
            continue
        assert proc.returncode == 0, (name, proc.returncode, out.read_text()[-2000:],
                                      out.with_suffix(".err").read_text()[-3000:])
        run.reports.append(json.loads(out.read_text().strip().splitlines()[-1]))
    kinds = check_log(Project.open(machines[1]))
    retried = sum(r.get("storage_errors", 0) for r in run.reports)
    print(figures("postgres, 3 machines", run, kinds), f"{retried} steps retried after "
          f"the restart (seed {seed})")
    assert restarted and len(run.killed) >= 2
    assert not any((m / ".milestones" / ".lock").exists() for m in machines)

"""Agents benchmark: claims per second with 1, 4 and 16 agent processes on each backend,
and the executor's overhead beside an ideal schedule.

Run it with ``python bench/agents.py [--quick] [--backends file,hybrid,database]
[--agents 1,4,16] [--tasks 400] [--runs 1] [--exec-tasks 200] [--exec-agents 8]
[--sleep 0.05] [--exec-runs 3] [--skip-claims] [--skip-execute]`` from the project's
virtualenv. The default takes about 6 minutes on 2 vCPUs; ``--quick`` (100 tasks, agents
1 and 4, one executor run a backend) about 2.

1. **claims**: per backend and agent count C, a project of ``--tasks`` ready tasks (400:
   milestones of 100 tasks, no dependencies) and C agent processes (``multiprocessing``,
   spawn), each with its own ``Project``: register, wait on a barrier, then
   ``agents.claim`` → ``agents.complete(token=...)`` until a claim says nothing is
   open (an empty claim while others finish: a 10-50 ms pause, counted apart).
   Every call is timed on its own (``time.perf_counter``). claims/s is the tasks over
   the wall time from the first agent's start to the last one's end (``time.monotonic``,
   one clock for every process on Linux); the table shows it with the p50 and p95 of
   the claims that got a task and of the completes, and "ms/step": the wall time over
   the calls that took the project's lock (claims, empty ones too, and completes). Every
   step is a write under that one lock, so with C > 1 ms/step is the lock's service
   time, and claims/s cannot grow with C beyond what one lock-holder at a time allows.
2. **execute**: a milestone of ``--exec-tasks`` tasks (200), each ``run: sleep 0.05``
   (``--sleep``), in a random DAG (seeded: each task depends on up to 2 of the 24
   before it, so it is wide enough for 8 agents and deep enough to matter), worked by
   ``milestone execute milestone-001 --agents 8 --json`` as a subprocess (the installed
   CLI, start-up included). The ideal is the larger of the critical path (the longest
   dependency chain x the sleep) and the total work over the agents (tasks x sleep /
   agents); the table shows the wall time (measured outside, and the run's own
   ``wall_seconds``), the ideal and their ratio. Target (from the issue): within 1.3x
   the ideal.

With ``--runs R`` (``--exec-runs R``) every cell runs R times and the tables show
medians; the executor's runs take turns over the backends (file, hybrid, database,
file, ...) so that the machine's drift weighs on each alike, and each run is
printed. At the end: claims/s at each C over C = 1 per backend, and each backend's
executor ratio against the 1.3x target.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import queue
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BACKENDS = ("file", "hybrid", "database")
PER_MILESTONE = 100
TARGET = 1.3
BARRIER_TIMEOUT = 600.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None of nothing."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(len(ordered) * q / 100)) - 1]


def median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def close_store(store: Any) -> None:
    """Let go of the parent's SQLite connections before the workers start."""
    for s in (store, getattr(store, "index", None)):
        close = getattr(s, "close", None)
        if close is not None:
            close()


# ------------------------------------------------------------------ claims


def claimer(job: dict[str, Any], barrier: Any, out: Any) -> None:
    """One agent process: claim and complete until nothing is open."""
    from milestones.project import Project

    name = f"bench-{job['idx']}"
    project = Project.open(Path(job["dir"]), actor=name, session_id=f"s-{name}")
    agents = project.agents
    agents.register(name)
    rng = random.Random(job["idx"])
    claims: list[float] = []
    completes: list[float] = []
    empty = 0
    barrier.wait()
    start = time.monotonic()
    while True:
        t0 = time.perf_counter()
        got = agents.claim(name)
        took = time.perf_counter() - t0
        if got["ref"] is None:
            if got["open"] == 0:
                break
            empty += 1
            time.sleep(rng.uniform(0.01, 0.05))
            continue
        claims.append(took)
        t0 = time.perf_counter()
        agents.complete(name, got["ref"], token=got["token"])
        completes.append(time.perf_counter() - t0)
    out.put({"idx": job["idx"], "start": start, "end": time.monotonic(), "claims": claims,
             "completes": completes, "empty": empty + 1})  # the last, "open 0", claim too


def new_project(directory: Path, backend: str, specs: list[dict[str, Any]]) -> None:
    from milestones.project import Project

    project, _ = Project.init(directory, backend=backend, actor="bench@example.com",
                              session_id="s-bench")
    project.plan_many(specs)
    close_store(project.store)


@dataclass
class ClaimCell:
    backend: str
    c: int
    tasks: int
    wall: float
    claim50: float | None
    claim95: float | None
    done50: float | None
    done95: float | None
    steps: int
    empty: int

    @property
    def rate(self) -> float:
        return self.tasks / self.wall if self.wall > 0 else float("nan")

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.wall / self.steps if self.steps else float("nan")


def claim_cell(backend: str, c: int, tasks: int, tmp: Path) -> ClaimCell:
    directory = tmp / f"claims-{backend}-{c}"
    sizes = [PER_MILESTONE] * (tasks // PER_MILESTONE) + (
        [tasks % PER_MILESTONE] if tasks % PER_MILESTONE else [])
    new_project(directory, backend, [
        {"title": f"Ready work {m + 1}", "tasks": [f"task {i + 1}" for i in range(n)]}
        for m, n in enumerate(sizes)])
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(c, timeout=BARRIER_TIMEOUT)
    out = ctx.Queue()
    procs = [ctx.Process(target=claimer, args=({"idx": i, "dir": str(directory)}, barrier, out),
                         daemon=True) for i in range(c)]
    for p in procs:
        p.start()
    results: list[dict[str, Any]] = []
    try:
        while len(results) < c:
            try:
                results.append(out.get(timeout=2.0))
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"an agent process exited {dead[0].exitcode}") from None
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        shutil.rmtree(directory, ignore_errors=True)
    claims = [x * 1000 for r in results for x in r["claims"]]
    dones = [x * 1000 for r in results for x in r["completes"]]
    assert len(claims) == tasks, f"{len(claims)} claims for {tasks} tasks"
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    empty = sum(r["empty"] for r in results)
    return ClaimCell(backend, c, tasks, wall, percentile(claims, 50), percentile(claims, 95),
                     percentile(dones, 50), percentile(dones, 95),
                     len(claims) + len(dones) + empty, empty)


def median_claims(runs: list[ClaimCell]) -> ClaimCell:
    first = runs[0]
    if len(runs) == 1:
        return first

    def med(attr: str) -> Any:
        return median([getattr(r, attr) for r in runs])

    return ClaimCell(first.backend, first.c, first.tasks, med("wall"), med("claim50"),
                     med("claim95"), med("done50"), med("done95"), round(med("steps")),
                     round(med("empty")))


# ------------------------------------------------------------------ execute


def exec_dag(n: int, seed: int, sleep: float) -> tuple[list[dict[str, Any]], int]:
    """The executor's milestone: tasks and the length of the longest chain (tasks)."""
    rng = random.Random(seed)
    depth: list[int] = []
    tasks = []
    for i in range(n):
        deps = sorted({rng.randint(max(0, i - 24), i - 1) for _ in range(rng.randint(0, 2))}
                      if i else set())
        depth.append(1 + max((depth[d] for d in deps), default=0))
        tasks.append({"title": f"step {i + 1}", "run": f"sleep {sleep:g}",
                      "depends_on": [f"task-{d + 1}" for d in deps]})
    return tasks, max(depth)


@dataclass
class ExecCell:
    backend: str
    tasks: int
    agents: int
    chain: int
    sleep: float
    wall: float  # the CLI process, start to end
    inner: float | None  # the run's own wall_seconds
    exit_code: int

    @property
    def ideal(self) -> float:
        return max(self.chain * self.sleep, self.tasks * self.sleep / self.agents)

    @property
    def ratio(self) -> float:
        return self.wall / self.ideal


def exec_cell(backend: str, args: argparse.Namespace, tmp: Path, seed: int) -> ExecCell:
    directory = tmp / f"exec-{backend}-{seed}"
    tasks, chain = exec_dag(args.exec_tasks, seed, args.sleep)
    new_project(directory, backend, [{"title": "Executor overhead", "tasks": tasks}])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("MILESTONE_USER", "bench@example.com")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "milestones", "-C", str(directory), "execute", "milestone-001",
         "--agents", str(args.exec_agents), "--json"],
        capture_output=True, text=True, env=env, timeout=max(600.0, args.exec_tasks * 5))
    wall = time.perf_counter() - t0
    inner = None
    try:
        summary = json.loads(proc.stdout)
        inner = float(summary["wall_seconds"])
    except (ValueError, KeyError, TypeError):
        print(f"  execute on {backend}: exit {proc.returncode}; stderr: "
              f"{proc.stderr.strip()[-500:]}", flush=True)
    if proc.returncode != 0:
        print(f"  execute on {backend} exited {proc.returncode} (0 means every task done): "
              f"{proc.stderr.strip()[-300:]}", flush=True)
    shutil.rmtree(directory, ignore_errors=True)
    return ExecCell(backend, args.exec_tasks, args.exec_agents, chain, args.sleep, wall,
                    inner, proc.returncode)


# ------------------------------------------------------------------ report


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def report_claims(cells: list[ClaimCell], runs: int) -> None:
    print(f"\n== claims: {cells[0].tasks} ready tasks, claim then complete per task; "
          f"latencies in ms; {'medians of ' + str(runs) + ' runs' if runs > 1 else 'one run'}")
    print(f"{'backend':<9} {'C':>3} | {'claims/s':>8} {'wall s':>7} | {'claim p50':>9} "
          f"{'p95':>6} | {'complete p50':>12} {'p95':>6} | {'ms/step':>7} {'empty':>6}")
    for x in cells:
        print(f"{x.backend:<9} {x.c:>3} | {fmt(x.rate, 1):>8} {fmt(x.wall, 1):>7} | "
              f"{fmt(x.claim50):>9} {fmt(x.claim95):>6} | {fmt(x.done50):>12} "
              f"{fmt(x.done95):>6} | {fmt(x.ms_per_step, 1):>7} {x.empty:>6}")
    print("\nclaims/s at C over C = 1:")
    for b in dict.fromkeys(x.backend for x in cells):
        row = {x.c: x.rate for x in cells if x.backend == b}
        one = row.get(1)
        if one:
            print(f"  {b:<9} " + "  ".join(f"C={c}: {r / one:.2f}x" for c, r in row.items()
                                           if c != 1))


def report_exec(cells: list[ExecCell], runs: int) -> None:
    first = cells[0]
    print(f"\n== execute: {first.tasks} tasks of `sleep {first.sleep:g}`, longest chain "
          f"{first.chain} tasks, {first.agents} agents; seconds; "
          f"{'medians of ' + str(runs) + ' runs' if runs > 1 else 'one run'}")
    print(f"{'backend':<9} | {'wall':>6} {'in-run':>6} | {'path':>5} {'work/N':>6} "
          f"{'ideal':>6} | {'ratio':>6} {'in-run':>6} | target <= {TARGET}x")
    for x in cells:
        inner = x.inner / x.ideal if x.inner is not None else None
        verdict = "ok" if x.ratio <= TARGET else "MISSED"
        failed = "" if x.exit_code == 0 else f"  (exit {x.exit_code})"
        print(f"{x.backend:<9} | {x.wall:>6.2f} {fmt(x.inner, 2):>6} | "
              f"{x.chain * x.sleep:>5.2f} {x.tasks * x.sleep / x.agents:>6.2f} "
              f"{x.ideal:>6.2f} | {x.ratio:>5.2f}x {fmt(inner, 2):>5}x | {verdict}{failed}")


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="backends (file,hybrid,database)")
    parser.add_argument("--agents", default="1,4,16", help="agent processes per cell (1,4,16)")
    parser.add_argument("--tasks", type=int, default=400, help="ready tasks per cell (400)")
    parser.add_argument("--runs", type=int, default=1, help="runs per claims cell (1)")
    parser.add_argument("--exec-tasks", type=int, default=200, help="executor tasks (200)")
    parser.add_argument("--exec-agents", type=int, default=8, help="executor agents (8)")
    parser.add_argument("--sleep", type=float, default=0.05, help="each task's sleep (0.05)")
    parser.add_argument("--exec-runs", type=int, default=3, help="runs per executor cell (3)")
    parser.add_argument("--skip-claims", action="store_true")
    parser.add_argument("--skip-execute", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="100 tasks, agents 1 and 4, one executor run")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the DAG (7)")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.agents, args.exec_runs = 100, "1,4", 1
    try:
        conc = sorted({int(x) for x in args.agents.split(",") if x.strip()})
    except ValueError:
        parser.error("--agents takes comma-separated numbers")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or not set(backends) <= set(BACKENDS):
        parser.error(f"--backends: some of {', '.join(BACKENDS)}")
    if min(conc) < 1 or args.tasks < 1 or args.runs < 1 or args.exec_runs < 1 \
            or args.exec_tasks < 1 or args.exec_agents < 1 or args.sleep <= 0:
        parser.error("counts and --sleep must be positive")
    began = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.2f} at start (other work on the machine makes "
          "the numbers noisy)")
    print(f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; backends "
          f"{', '.join(backends)}")
    tmp = Path(tempfile.mkdtemp(prefix="milestone-agents-"))
    claims: list[ClaimCell] = []
    execs: list[ExecCell] = []
    try:
        if not args.skip_claims:
            for b in backends:
                for c in conc:
                    cell = median_claims([claim_cell(b, c, args.tasks, tmp)
                                          for _ in range(args.runs)])
                    claims.append(cell)
                    print(f"  claims {b} C={c}: {cell.rate:.1f}/s, {cell.wall:.1f} s",
                          flush=True)
        if not args.skip_execute:
            # Round-robin over the backends, so that the machine's drift (shared, noisy)
            # weighs on each of them alike.
            runs: dict[str, list[ExecCell]] = {b: [] for b in backends}
            for r in range(args.exec_runs):
                for b in backends:
                    one = exec_cell(b, args, tmp, args.seed)
                    runs[b].append(one)
                    print(f"  execute {b} run {r + 1}: {one.wall:.2f} s, "
                          f"{one.ratio:.2f}x the ideal", flush=True)
            for b in backends:
                first = runs[b][0]
                execs.append(ExecCell(b, first.tasks, first.agents, first.chain, first.sleep,
                                      statistics.median(r.wall for r in runs[b]),
                                      median([r.inner for r in runs[b]]),
                                      max(r.exit_code for r in runs[b])))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if claims:
        report_claims(claims, args.runs)
    if execs:
        report_exec(execs, args.exec_runs)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; total "
          f"{time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load benchmark: N milestones created by C concurrent processes, then mixed reads and
writes; throughput and p50/p95 per backend (the seed's ``simulate_milestone_load``).

Run it with ``python bench/load.py [--quick] [--sizes 100,1000,10000]
[--concurrency 1,4,16] [--backends file,hybrid,database] [--ops 200] [--budget 90]
[--mixed-cap 60] [--runs 1]`` from the project's virtualenv. The default matrix
(3 backends x N = 100, 1,000, 10,000 x C = 1, 4, 16) takes about 25 minutes on 2 vCPUs;
``--quick`` (N = 100, 1,000; C = 1, 4) about 6.

Each cell (backend, N, C) starts C worker processes (``multiprocessing``, spawn) that use
the library the way a long-lived program does: one ``Project`` each, opened on a project
in a temporary directory, with its own actor and session.

1. **create**: the workers wait on a barrier, then together create N milestones of
   ``--tasks`` tasks (3) each through ``Project.plan``, each worker its share (N / C).
2. **mixed**: after a second barrier, ``--ops`` operations in all (200, split between the
   workers): 80 % reads, in equal parts ``status_view()``, ``list_view()`` and
   ``next_view()`` (what ``status``, ``list`` and ``next`` show), and 20 % writes on a
   random task of the worker's own milestones: ``start_task`` when it is todo,
   ``set_progress`` or ``complete_task`` (half each) when in progress, ``note`` when done.

Every operation is timed on its own (``time.perf_counter``); a phase's throughput is the
operations that succeeded divided by the wall time from the first worker's start to the
last one's end (stamps of ``time.monotonic``, one clock for every process on Linux). The
table shows ops/s and the p50 and p95 latency of every operation of the phase (failed
ones included), with the mixed phase's read and write p95 apart, and the errors: a write
that waits longer than the lock timeout (10 s, ``MILESTONE_LOCK_TIMEOUT``) fails with
"the project is busy"; it is counted and never retried. With ``--runs R`` each cell runs
R times and the table shows the medians.

Cells that would take too long are sampled, and say so. Every cell with N >= 1,000 is
probed first: the workers create a sample of S milestones (``--sample``, 32, at least 2
per worker) in an empty project, and S more in a project bulk-seeded with N - S
milestones of the same shape (the tool's own event records, loaded with the backend's
``import_data``: see ``bench/scale.py``). A write's cost grows with the project (each one
loads, checks and rewrites state that grows with N), so the time to create all N is
estimated as N x the mean of the two wall times per milestone created (linear growth;
the notes compare it with the measured time in every cell that also runs in full). When
that estimate is over ``--budget`` seconds (90), the cell is not run in full: its create
figures are the ESTIMATE (marked ``*``; ops/s = N / estimated time) with p50/p95
measured on the sample at size N - S, and its mixed phase runs for real on the seeded
project (N milestones). When every sampled create failed there is no estimate (``n/a``).
A mixed phase stops after ``--mixed-cap`` seconds (60) and says how many of its
operations it ran (``capped``).

There are no targets for this benchmark in the issue; the ratios printed at the end are
throughput at C = 4 and 16 over C = 1, and how the mixed phase's p95 grows with N.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

READ_SHARE = 0.8
READS = ("status", "list", "next")
BACKENDS = ("file", "hybrid", "database")
PROBE_FROM = 1000  # cells with N at least this are probed first
BARRIER_TIMEOUT = 4 * 3600.0


# ------------------------------------------------------------------ the workers


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None of nothing."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * q / 100))
    return ordered[rank - 1]


def worker(job: dict[str, Any], barrier: Any, out: Any) -> None:
    """One process: create its share of milestones, then its share of mixed operations."""
    from milestones.errors import MilestoneError
    from milestones.project import Project

    idx = job["idx"]
    project = Project.open(Path(job["dir"]), actor=f"worker{idx}@example.com",
                           session_id=f"s-load-{idx}")
    rng = random.Random(job["seed"])
    result: dict[str, Any] = {"idx": idx, "created": []}
    lat: list[float] = []
    errors: list[str] = []
    barrier.wait()
    start = time.monotonic()
    for j in range(job["create"]):
        tasks = [{"title": f"Task {k} of worker {idx} milestone {j}: part {k}",
                  "estimate": float(1 + k % 3)} for k in range(1, job["tasks"] + 1)]
        t0 = time.perf_counter()
        try:
            m = project.plan(f"Load milestone {j + 1} of worker {idx}",
                             priority=("low", "medium", "high", "critical")[j % 4],
                             tags=["load", f"w{idx}"], tasks=tasks)
            result["created"].append(m.id)
        except MilestoneError as exc:
            errors.append(f"plan: {exc}")
        lat.append((time.perf_counter() - t0) * 1000)
    result["create"] = {"start": start, "end": time.monotonic(), "lat": lat, "errors": errors}
    if job["ops"]:
        own = [*job["own"], *result["created"]]
        status = {f"{mid}/task-{k}": "todo" for mid in own for k in range(1, job["tasks"] + 1)}
        refs = sorted(status)
        samples: list[tuple[str, float]] = []
        errors = []
        capped = False
        barrier.wait()
        start = time.monotonic()
        deadline = start + job["budget"]
        for j in range(job["ops"]):
            if time.monotonic() > deadline:
                capped = True
                break
            if rng.random() < READ_SHARE:
                kind = rng.choice(READS)
            elif refs:
                ref = rng.choice(refs)
                now = status[ref]
                kind = ("start" if now == "todo" else
                        rng.choice(("progress", "done")) if now == "in_progress" else "note")
            else:
                kind = "note"
            t0 = time.perf_counter()
            try:
                if kind == "status":
                    project.status_view()
                elif kind == "list":
                    project.list_view()
                elif kind == "next":
                    project.next_view()
                elif kind == "start":
                    project.start_task(ref)
                    status[ref] = "in_progress"
                elif kind == "progress":
                    project.set_progress(ref, rng.randrange(10, 95, 5))
                elif kind == "done":
                    project.complete_task(ref)
                    status[ref] = "done"
                else:
                    project.note(f"worker {idx}, operation {j}")
            except MilestoneError as exc:
                errors.append(f"{kind}: {exc}")
            samples.append((kind, (time.perf_counter() - t0) * 1000))
        result["mixed"] = {"start": start, "end": time.monotonic(), "lat": samples,
                           "errors": errors, "capped": capped, "planned": job["ops"]}
    out.put(result)


def run_workers(directory: Path, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start one spawned process per job on ``directory``; their results, by index."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(jobs), timeout=BARRIER_TIMEOUT)
    out = ctx.Queue()
    procs = []
    for job in jobs:
        job["dir"] = str(directory)
        procs.append(ctx.Process(target=worker, args=(job, barrier, out), daemon=True))
    for p in procs:
        p.start()
    results: list[dict[str, Any]] = []
    import queue

    while len(results) < len(jobs):
        try:
            results.append(out.get(timeout=2.0))
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs:
                    if p.is_alive():
                        p.terminate()
                raise RuntimeError(f"worker process exited {dead[0].exitcode}") from None
    for p in procs:
        p.join()
    return sorted(results, key=lambda r: r["idx"])


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def jobs_for(c: int, *, create: int, ops: int, tasks: int, budget: float, seed: int,
             own: list[list[str]] | None = None) -> list[dict[str, Any]]:
    return [{"idx": i, "create": k, "ops": o, "tasks": tasks, "budget": budget,
             "seed": seed * 1000 + i, "own": own[i] if own else []}
            for i, (k, o) in enumerate(zip(split(create, c), split(ops, c), strict=True))]


# ------------------------------------------------------------------ projects


def new_project(directory: Path, backend: str) -> None:
    from milestones.project import Project

    project, _ = Project.init(directory, backend=backend, actor="bench@example.com",
                              session_id="s-bench")
    close_store(project.store)


def close_store(store: Any) -> None:
    """Let go of the parent's SQLite connections before the workers start."""
    for s in (store, getattr(store, "index", None)):
        close = getattr(s, "close", None)
        if close is not None:
            close()


def seed_project(directory: Path, backend: str, n: int, tasks: int) -> float:
    """A project of ``n`` planned milestones of ``tasks`` tasks, bulk-loaded; seconds."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from scale import generate, write_project

    t0 = time.perf_counter()
    events, state = generate(n, tasks, history=False, backend=backend,
                             title="Seeded milestone {i}")
    write_project(directory, backend, events, state)
    return time.perf_counter() - t0


# ------------------------------------------------------------------ cells


@dataclass
class Phase:
    """A phase of a cell, summed up: operations, wall time, latency percentiles (ms)."""

    ops: int = 0
    wall: float = 0.0
    p50: float | None = None
    p95: float | None = None
    read95: float | None = None
    write95: float | None = None
    errors: list[str] = field(default_factory=list)
    failed: int = 0  # operations that raised (in ``errors``)
    capped: bool = False
    planned: int = 0

    @property
    def done(self) -> int:
        return self.ops - self.failed

    @property
    def rate(self) -> float:
        """Operations that succeeded, per second of the phase's wall time."""
        return self.done / self.wall if self.wall > 0 else float("nan")


def gather(results: list[dict[str, Any]], name: str) -> Phase:
    parts = [r[name] for r in results if name in r]
    ph = Phase()
    if not parts:
        return ph
    ph.wall = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    lat: list[float] = []
    reads: list[float] = []
    writes: list[float] = []
    for p in parts:
        ph.errors += p["errors"]
        if name == "create":
            lat += p["lat"]
            continue
        for kind, ms in p["lat"]:
            lat.append(ms)
            (reads if kind in READS else writes).append(ms)
        ph.capped = ph.capped or p["capped"]
        ph.planned += p["planned"]
    ph.ops = len(lat)
    ph.failed = len(ph.errors)
    ph.p50, ph.p95 = percentile(lat, 50), percentile(lat, 95)
    ph.read95, ph.write95 = percentile(reads, 95), percentile(writes, 95)
    return ph


@dataclass
class Cell:
    backend: str
    n: int
    c: int
    create: Phase
    mixed: Phase
    estimate: float | None = None  # probe's estimate of the whole create phase, s
    estimated: bool = False  # the create figures are the estimate
    sample: int = 0
    wall: float = 0.0  # the whole cell, seconds
    seed_s: float = 0.0


def run_cell(backend: str, n: int, c: int, args: argparse.Namespace, tmp: Path,
             seeded: dict[tuple[str, int, int], Path], seed: int) -> Cell:
    began = time.perf_counter()
    cap = args.mixed_cap
    if n < PROBE_FROM:
        return full_cell(backend, n, c, args, tmp, seed, None, 0, began, 0.0)
    s = min(n, -(-max(args.sample, 2 * c) // c) * c)  # a whole number per worker
    lo_dir = tmp / f"{backend}-{n}-{c}-lo"
    new_project(lo_dir, backend)
    lo = gather(run_workers(lo_dir, jobs_for(c, create=s, ops=0, tasks=args.tasks,
                                             budget=cap, seed=seed)), "create")
    shutil.rmtree(lo_dir, ignore_errors=True)
    key = (backend, n - s, args.tasks)
    seed_s = 0.0
    if key not in seeded:
        template = tmp / f"seed-{backend}-{n - s}"
        seed_s = seed_project(template, backend, n - s, args.tasks)
        seeded[key] = template
    hi_dir = tmp / f"{backend}-{n}-{c}-hi"
    shutil.copytree(seeded[key], hi_dir)
    hi = run_workers(hi_dir, jobs_for(c, create=s, ops=0, tasks=args.tasks, budget=cap,
                                      seed=seed + 1))
    create = gather(hi, "create")
    # Wall time per milestone actually created, at both ends; a probe where every create
    # failed (the lock timed out) gives no estimate, and the cell is not run in full.
    estimate = (n * (lo.wall / lo.done + create.wall / create.done) / 2
                if lo.done and create.done else None)
    if estimate is not None and estimate <= args.budget:
        shutil.rmtree(hi_dir, ignore_errors=True)
        return full_cell(backend, n, c, args, tmp, seed, estimate, s, began, seed_s)
    own = [r["created"] for r in hi]
    mixed = gather(run_workers(hi_dir, jobs_for(c, create=0, ops=args.ops, tasks=args.tasks,
                                                budget=cap, seed=seed + 2, own=own)),
                   "mixed")
    shutil.rmtree(hi_dir, ignore_errors=True)
    create.errors += lo.errors
    if estimate is not None:
        create.wall, create.ops, create.failed = estimate, n, 0
    return Cell(backend, n, c, create, mixed, estimate, True, s, time.perf_counter() - began,
                seed_s)


def full_cell(backend: str, n: int, c: int, args: argparse.Namespace, tmp: Path, seed: int,
              estimate: float | None, s: int, began: float, seed_s: float) -> Cell:
    """The cell run in full: N milestones created in an empty project, then the mix."""
    directory = tmp / f"{backend}-{n}-{c}"
    new_project(directory, backend)
    results = run_workers(directory, jobs_for(c, create=n, ops=args.ops, tasks=args.tasks,
                                              budget=args.mixed_cap, seed=seed + 3))
    shutil.rmtree(directory, ignore_errors=True)
    return Cell(backend, n, c, gather(results, "create"), gather(results, "mixed"), estimate,
                False, s, time.perf_counter() - began, seed_s)


def median_cell(runs: list[Cell]) -> Cell:
    """R runs of a cell as one: the median of each figure, every error."""
    if len(runs) == 1:
        return runs[0]

    def med(values: list[Any]) -> Any:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    def merged(phases: list[Phase]) -> Phase:
        return Phase(ops=phases[0].ops, wall=med([p.wall for p in phases]),
                     p50=med([p.p50 for p in phases]), p95=med([p.p95 for p in phases]),
                     read95=med([p.read95 for p in phases]),
                     write95=med([p.write95 for p in phases]),
                     errors=[e for p in phases for e in p.errors],
                     failed=round(med([p.failed for p in phases])),
                     capped=any(p.capped for p in phases), planned=phases[0].planned)

    first = runs[0]
    return Cell(first.backend, first.n, first.c, merged([r.create for r in runs]),
                merged([r.mixed for r in runs]), med([r.estimate for r in runs]),
                first.estimated, first.sample, sum(r.wall for r in runs),
                sum(r.seed_s for r in runs))


# ------------------------------------------------------------------ report


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def report(cells: list[Cell], args: argparse.Namespace) -> None:
    print(f"\n== {args.tasks} tasks per milestone; mixed phase {args.ops} operations, "
          f"{READ_SHARE:.0%} reads; latencies in ms; "
          f"{'medians of ' + str(args.runs) + ' runs' if args.runs > 1 else 'one run each'}")
    head = (f"{'backend':<9} {'N':>6} {'C':>3} | {'create/s':>9} {'p50':>6} {'p95':>6} | "
            f"{'mixed/s':>8} {'p50':>6} {'p95':>6} {'rd p95':>6} {'wr p95':>6} | "
            f"{'errors':>6} {'cell s':>6}  notes")
    print(head)
    print("-" * (len(head) + 30))
    for cell in cells:
        cr, mx = cell.create, cell.mixed
        notes = []
        sampled = 2 * cell.sample
        if cell.estimated and cell.estimate is None:
            notes.append(f"NO create estimate: every sampled create failed ({len(cr.errors)} "
                         f"of {sampled}, see the errors)")
        elif cell.estimated:
            notes.append(f"create est.: {cell.n:,} would take ~{duration(cr.wall)} "
                         f"(sampled {cell.sample} at 0 and at {cell.n - cell.sample:,}; "
                         f"p50/p95 at ~{cell.n:,})")
            if cr.errors:
                notes.append(f"{len(cr.errors)} of {sampled} sampled creates failed")
        elif cell.estimate is not None:
            notes.append(f"probe est. {duration(cell.estimate)}, measured {duration(cr.wall)}")
        if mx.capped:
            notes.append(f"mixed capped at {args.mixed_cap:g} s: {mx.ops} of {mx.planned} ops")
        if cell.seed_s:
            notes.append(f"seeding {cell.seed_s:.0f} s")
        if cell.estimated and cell.estimate is None:
            rate = "n/a"
        else:
            rate = f"{cr.rate:.1f}" + ("*" if cell.estimated else "")
        errors = len(cr.errors) + len(mx.errors)
        print(f"{cell.backend:<9} {cell.n:>6,} {cell.c:>3} | {rate:>9} {ms(cr.p50):>6} "
              f"{ms(cr.p95):>6} | {mx.rate:>8.1f} {ms(mx.p50):>6} {ms(mx.p95):>6} "
              f"{ms(mx.read95):>6} {ms(mx.write95):>6} | {errors:>6} "
              f"{cell.wall:>6.0f}  {'; '.join(notes)}")
    if any(c.estimated for c in cells):
        print("* estimated, not measured: see the notes")
    print("errors column: operations that raised (probes included), never retried; "
          "ops/s counts only the ones that succeeded")
    seen: dict[str, int] = {}
    for c in cells:
        for e in (*c.create.errors, *c.mixed.errors):
            what = f"{c.backend}: {e}"
            seen[what] = seen.get(what, 0) + 1
    for what, count in sorted(seen.items(), key=lambda kv: -kv[1])[:6]:
        print(f"  {count:>4} x {what}")
    by = {(c.backend, c.n, c.c): c for c in cells}
    cs = sorted({c.c for c in cells})
    ns = sorted({c.n for c in cells})
    if len(cs) > 1:
        print("\n== throughput with C processes over C = 1 (x)")
        print(f"{'backend':<9} {'N':>6} " + " ".join(
            f"{f'create C={c}':>12} {f'mixed C={c}':>12}" for c in cs[1:]))
        for b in dict.fromkeys(c.backend for c in cells):
            for n in ns:
                base = by.get((b, n, cs[0]))
                if base is None:
                    continue
                line = f"{b:<9} {n:>6,} "
                for c in cs[1:]:
                    cell = by.get((b, n, c))
                    if cell is None:
                        line += f"{'-':>12} {'-':>12} "
                        continue
                    mark = "*" if cell.estimated or base.estimated else ""
                    line += (f"{cell.create.rate / base.create.rate:>11.2f}{mark or 'x'} "
                             f"{cell.mixed.rate / base.mixed.rate:>11.2f}x ")
                print(line.rstrip())
    if len(ns) > 1:
        print(f"\n== mixed-phase p95 at N over N = {ns[0]:,} (x), per C")
        print(f"{'backend':<9} {'C':>3} " + " ".join(f"{f'N={n:,}':>10}" for n in ns[1:]))
        for b in dict.fromkeys(c.backend for c in cells):
            for c in cs:
                base = by.get((b, ns[0], c))
                p = base.mixed.p95 if base else None
                if not p:
                    continue
                line = f"{b:<9} {c:>3} "
                for n in ns[1:]:
                    cell = by.get((b, n, c))
                    q = cell.mixed.p95 if cell else None
                    line += f"{q / p:>9.1f}x " if q else f"{'-':>10} "
                print(line.rstrip())


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="N values (100,1000,10000)")
    parser.add_argument("--concurrency", default="1,4,16", help="C values (1,4,16)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="backends (file,hybrid,database)")
    parser.add_argument("--quick", action="store_true", help="N = 100,1000 and C = 1,4")
    parser.add_argument("--ops", type=int, default=200,
                        help="mixed-phase operations per cell, all workers together (200)")
    parser.add_argument("--tasks", type=int, default=3, help="tasks per milestone (3)")
    parser.add_argument("--budget", type=float, default=90.0,
                        help="seconds a create phase may take before it is estimated "
                             "instead (90)")
    parser.add_argument("--mixed-cap", type=float, default=60.0,
                        help="seconds a mixed phase runs at most (60)")
    parser.add_argument("--sample", type=int, default=32,
                        help="milestones created per probe (32; at least 2 per worker)")
    parser.add_argument("--runs", type=int, default=1, help="runs per cell; medians (1)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (7)")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.concurrency = "100,1000", "1,4"
    try:
        sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()})
        conc = sorted({int(x) for x in args.concurrency.split(",") if x.strip()})
    except ValueError:
        parser.error("--sizes and --concurrency take comma-separated numbers")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not set(backends) <= set(BACKENDS) or not backends:
        parser.error(f"--backends: some of {', '.join(BACKENDS)}")
    if min(sizes) < 1 or min(conc) < 1 or args.runs < 1 or args.ops < 0 or args.tasks < 1:
        parser.error("sizes, concurrency, --runs and --tasks must be positive")
    began = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.2f} at start (other work on the machine makes "
          "the numbers noisy)")
    print(f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs; backends "
          f"{', '.join(backends)}; N {', '.join(f'{n:,}' for n in sizes)}; "
          f"C {', '.join(map(str, conc))}; create budget {args.budget:g} s, mixed cap "
          f"{args.mixed_cap:g} s")
    tmp = Path(tempfile.mkdtemp(prefix="milestone-load-"))
    cells: list[Cell] = []
    seeded: dict[tuple[str, int, int], Path] = {}
    try:
        for b in backends:
            for n in sizes:
                for c in conc:
                    runs = [run_cell(b, n, c, args, tmp, seeded, args.seed + r * 17)
                            for r in range(args.runs)]
                    cell = median_cell(runs)
                    cells.append(cell)
                    mark = " (create estimated)" if cell.estimated else ""
                    print(f"  {b} N={n:,} C={c}: create {cell.create.rate:.1f}/s, mixed "
                          f"{cell.mixed.rate:.1f}/s, {cell.wall:.0f} s{mark}", flush=True)
            for key in [k for k in seeded if k[0] == b]:
                shutil.rmtree(seeded.pop(key), ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(cells, args)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; total "
          f"{time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

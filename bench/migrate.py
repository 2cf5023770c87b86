"""Migration benchmark: ``milestone storage migrate`` both ways on big projects, timed
from outside, with each migration's peak resident memory.

Run it with ``python bench/migrate.py [--runs N] [--sizes 1000,10000]`` from the project's
virtualenv (a few minutes on 2 vCPUs; ``--quick`` does 1,000 milestones only, 3 runs).
``--project DIR`` times an existing project (a directory holding ``.milestones/`` on the
database backend) instead of building one. ``--baseline SCRIPT`` times another installed
``milestone`` script as well (an older version: a ``git worktree`` of it with its own
virtualenv), on its own copy, the two taking turns to go first run by run, so a change in
the machine's load falls on both; the table then shows both and the ratio new / old.

Projects: N milestones x 10 tasks (about 9 events a milestone), built on the database
backend by ``bench/scale.py``'s ``generate`` and ``write_project`` (through the tool's
own code, see there). Each run copies the project, then times two whole CLI processes of
the installed console script, in the copy: ``milestone storage migrate --to hybrid
--json`` and then ``--to database --json`` (the direction the scale policy recommends;
the second one copies back from the YAML files the first one wrote). Every migration
verifies what it copied (counts, a SHA-256 per milestone, the event count and the hash
chain), as always. stderr is a pipe here, so no progress bar is drawn.

Peak RSS: each migration runs under a small Python wrapper process whose only child it
is, and the wrapper reports ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` (KiB on
Linux): the migration's own peak, not the benchmark's.

Prints, per size and direction, the median wall seconds, the median CPU seconds (user +
system: what the machine's load changes least), the median and largest peak RSS of the
runs, and the load average. Targets (issue 14): at 10,000 milestones each
direction under 30 s; memory bounded by the copy's batch, not by the project: the peak
RSS at the largest size at most 1.5x the one at the smallest (10x the data).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from child import WRAPPER
from scale import child_env, find_script, generate, write_project

TIME_TARGET_S = 30.0  # at 10,000 milestones, each direction
RSS_GROWTH_TARGET = 1.5  # peak RSS at the largest size over the smallest
TARGET_SIZE = 10_000



def run_migration(script: str, env: dict[str, str], cwd: Path, to: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", WRAPPER, script, "storage", "migrate",
                          "--to", to, "--json"], env=env, cwd=cwd, capture_output=True,
                         text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"migrate --to {to} failed (exit {result['rc']}): "
                         f"{str(result['stderr']).strip()}")
    report = json.loads(str(result["stdout"]))
    result["events"] = report["target"]["events"]
    return result


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per size (3)")
    parser.add_argument("--sizes", default="1000,10000", help="milestone counts (1000,10000)")
    parser.add_argument("--tasks", type=int, default=10, help="tasks per milestone (10)")
    parser.add_argument("--quick", action="store_true", help="1,000 milestones only")
    parser.add_argument("--project", type=Path, default=None,
                        help="time this existing project (on the database backend)")
    parser.add_argument("--baseline", default=None,
                        help="another milestone script to time as well (before a change)")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if args.quick:
        sizes = [1000]
    script, env = find_script(), child_env()
    scripts = {"new": script, **({"old": args.baseline} if args.baseline else {})}
    print(f"load average {os.getloadavg()[0]:.2f} at start; script {script}; "
          f"python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    tmp = Path(tempfile.mkdtemp(prefix="milestone-migrate-"))
    rows: list[tuple[str, int, str, list[float], list[int], list[float]]] = []
    try:
        sources: list[tuple[str, int, Path]] = []
        if args.project is not None:
            src = args.project.resolve()
            if not (src / ".milestones").is_dir():
                parser.error(f"{src} holds no .milestones directory")
            sources.append((src.name, 0, src))
        else:
            for n in sizes:
                t0 = time.perf_counter()
                events, state = generate(n, args.tasks)
                root = tmp / f"source-{n}"
                root.mkdir()
                write_project(root, "database", events, state)
                del events, state
                print(f"built {n:,} milestones x {args.tasks} tasks in "
                      f"{time.perf_counter() - t0:.1f} s")
                sources.append((f"{n:,} milestones", n, root))
        for label, n, src in sources:
            times: dict[tuple[str, str], list[float]] = {}
            rss: dict[tuple[str, str], list[int]] = {}
            cpus: dict[tuple[str, str], list[float]] = {}
            events = 0
            for run in range(args.runs):
                order = list(scripts) if run % 2 == 0 else list(reversed(scripts))
                for who in order:
                    work = tmp / f"run-{n}-{run}-{who}"
                    shutil.copytree(src, work, symlinks=True)
                    for to in ("hybrid", "database"):
                        result = run_migration(scripts[who], env, work, to)
                        took = float(result["seconds"])  # type: ignore[arg-type]
                        peak = int(result["maxrss_kib"])  # type: ignore[call-overload]
                        times.setdefault((who, to), []).append(took)
                        rss.setdefault((who, to), []).append(peak)
                        events = int(result["events"])  # type: ignore[call-overload]
                        cpu = float(result["cpu"])  # type: ignore[arg-type]
                        cpus.setdefault((who, to), []).append(cpu)
                        print(f"  {label} run {run + 1} {who}: -> {to:<8} {took:6.1f} s  "
                              f"(CPU {cpu:5.1f} s)  peak RSS {peak / 1024:6.0f} MiB  (load "
                              f"{os.getloadavg()[0]:.2f})", flush=True)
                    shutil.rmtree(work, ignore_errors=True)
            for who in scripts:
                for to in ("hybrid", "database"):
                    direction = "database -> hybrid" if to == "hybrid" else "hybrid -> database"
                    rows.append((f"{label} ({events:,} events)", n, f"{direction} {who}",
                                 times[(who, to)], rss[(who, to)], cpus[(who, to)]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report(rows)


def report(rows: list[tuple[str, int, str, list[float], list[int], list[float]]]) -> int:
    print(f"\n{'project':<36} {'direction':<24} {'median s':>9} {'CPU s':>6} "
          f"{'peak RSS MiB':>13} {'max':>6}  time target")
    ok = True
    medians = {}
    for label, n, direction, times, rss, cpu in rows:
        med = statistics.median(times)
        medians[(label, direction)] = med
        mark = ""
        if n == TARGET_SIZE and direction.endswith("new"):
            passed = med < TIME_TARGET_S
            ok &= passed
            mark = f"{'PASS' if passed else 'FAIL'} (< {TIME_TARGET_S:g} s)"
        print(f"{label:<36} {direction:<24} {med:>9.1f} {statistics.median(cpu):>6.1f} "
              f"{statistics.median(rss) / 1024:>13.0f} {max(rss) / 1024:>6.0f}  {mark}")
    for (label, direction), med in medians.items():
        old = medians.get((label, direction[:-3] + "old"))
        if direction.endswith("new") and old:
            print(f"{label}: {direction[:-4]}: new / old {med / old:.2f}x")
    sizes = sorted({n for _l, n, _d, _t, _r, _c in rows if n})
    if len(sizes) > 1:
        for direction in ("database -> hybrid new", "hybrid -> database new"):
            peak = {n: max(r) for _l, n, d, _t, r, _c in rows if d == direction}
            growth = peak[sizes[-1]] / peak[sizes[0]]
            passed = growth <= RSS_GROWTH_TARGET
            ok &= passed
            print(f"peak RSS {direction[:-4]}: {sizes[-1]:,} vs {sizes[0]:,} milestones "
                  f"{growth:.2f}x  {'PASS' if passed else 'FAIL'} (<= {RSS_GROWTH_TARGET:g}x)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

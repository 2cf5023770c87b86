"""Validation benchmark: ``engine.run(ctx, ("all",))`` on 100, 1,000 and 5,000 milestones,
and ``milestone validate`` through the CLI on 1,000 and 10,000 milestones on every backend.

Run it with ``python bench/validate.py [--runs N] [--sizes 100,1000,5000] [--seed S]
[--no-disk] [--cli-sizes 1000,10000] [--cli-runs N] [--no-cli] [--script PATH]
[--quick]`` from the project's virtualenv (about five minutes; ``--quick``: engine sizes
100 and 1,000, the CLI on 1,000 milestones only, 3 runs each, about a minute).

Each project has 20 tasks per milestone, generated from a fixed seed (the same
project every run): dependencies within a milestone and across milestones (always
to earlier ones, so there is no cycle), milestone dependencies, estimates (a few
missing), milestones completed, in progress, planned and now and then cancelled,
start and due dates on most (some overdue, some at risk), and a team of four in
``team.members`` with skills and capacities, to whom most tasks are assigned (a
few to someone outside it, or needing a skill nobody has).

Two measurements:

* **context**: a ``Context`` built directly from the snapshots, with each file's
  text and parsed data in ``ctx.raw`` (so the structure rules read every file and
  findings are located at file:line:column), timed for
  ``engine.run(ctx, ("all",))``, a fresh Context per run.
* **on disk** (1,000 milestones only): a real project in a temporary directory
  (milestone files written with the tool's own YAML writer, then recorded in the
  event log the way a hand edit is), timed for ``Project.validate(None, ("all",))``:
  reading and parsing every file, the log's hash chain and replay, and the rules;
  with, for scale, the time of reading and parsing the files alone.

* **CLI**: projects of ``--cli-sizes`` milestones x 10 tasks on the ``file``, ``hybrid``
  and ``database`` backends, built fast through the library exactly as
  ``bench/scale.py`` builds them (its ``generate`` and ``write_project``: a history of
  about 9 events a milestone, some done, some in progress, task and milestone
  dependencies, due dates, some overdue), then ``milestone validate --json`` and
  ``milestone validate --type all --json`` timed end to end, each run a fresh child
  process of the installed script (``--script``: another one, e.g. an older version's,
  for a before/after; ``--projects DIR`` keeps the projects there for the next run),
  interleaved round by round, after one warm-up. Printed: the
  median and fastest wall time, the median CPU time of the child (user + system: what
  a busy machine does not inflate), the peak RSS of the child (GNU time's ``%M``: that child
  alone), the number of findings, and the target: 1,000 milestones under 1 s end
  to end on every backend (PASS/FAIL, checked on the median of ``validate``; the
  ``--type all`` rows are shown against it for reference). The load average is printed
  before and after.

Times are CPU seconds of this process (so a busy machine does not skew them;
wall time is shown too), medians of ``--runs`` runs after a warm-up. Targets,
for ``engine.run``: 10x the data costs at most 12x the time (pro rata for other
steps: 5x the data, at most 6x), and the whole of 1,000 milestones well under a
second (here: at most half a second). The slowest rules are listed per size, each
timed alone with the location of its findings, with their own growth ratios, to
find a rule that grows faster than the data.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from milestones import model as md
from milestones.project import DIRNAME, Project
from milestones.storage import yamlio
from milestones.validation import engine

TODAY = "2026-06-01"
TASKS = 20
GROWTH_TARGET = 12.0  # 10x the data, at most 12x the time
WHOLE_TARGET = 1.0  # seconds for 1,000 milestones, "well under"
TEAM = [
    {"name": "ann@example.com", "role": "owner", "skills": ["python", "sql"], "capacity": 40},
    {"name": "bob@example.com", "role": "dev", "skills": ["frontend", "design"], "capacity": 32},
    {"name": "cy@example.com", "role": "dev", "skills": ["ops", "python"], "capacity": 40},
    {"name": "dee@example.com", "role": "qa", "skills": ["testing"], "capacity": 24},
]
SKILLS = ["python", "sql", "frontend", "design", "ops", "testing"]
PEOPLE = [str(m["name"]) for m in TEAM]  # eve@example.com, now and then, is not in the team


def generate(n: int, seed: int) -> dict[str, dict[str, Any]]:
    """``n`` milestone snapshots of ``TASKS`` tasks each, the same for the same seed.

    Milestone k of n is placed k/n along a year that is 30 % over: the first fifth
    is completed, the next tenth in progress, the rest planned. Some noise gives
    every rule something to find now and then (an overdue milestone, a task for
    nobody's skill, someone outside the team, a cancelled dependency, ...).
    """
    rnd = random.Random(seed)
    today = date.fromisoformat(TODAY)
    out: dict[str, dict[str, Any]] = {}
    for k in range(1, n + 1):
        mid = md.milestone_id(k)
        phase = k / n
        status = "completed" if phase < 0.2 else "in_progress" if phase < 0.3 else "planned"
        if rnd.random() < 0.01:
            status = "cancelled"
        m: dict[str, Any] = {"id": mid, "title": f"Milestone {k}", "status": status}
        start = today + timedelta(days=int((phase - 0.3) * 365) + rnd.randint(-10, 10))
        due = start + timedelta(days=rnd.randint(14, 60))
        if rnd.random() < 0.7:
            m["start_date"], m["due_date"] = start.isoformat(), due.isoformat()
        if k > 1 and rnd.random() < 0.3:
            m["depends_on"] = [md.milestone_id(rnd.randint(max(1, k - 5), k - 1))]
        tasks = []
        for j in range(1, TASKS + 1):
            t: dict[str, Any] = {"id": f"task-{j}", "title": f"Task {j} of milestone {k}"}
            deps: list[str] = []
            if j > 1 and rnd.random() < 0.6:
                deps = sorted({f"task-{rnd.randint(max(1, j - 3), j - 1)}" for _ in range(2)})
            if k > 1 and rnd.random() < 0.1:
                other = md.milestone_id(rnd.randint(max(1, k - 5), k - 1))
                deps.append(f"{other}/task-{rnd.randint(1, TASKS)}")
            if deps:
                t["depends_on"] = deps
            if rnd.random() < 0.95:
                t["estimate"] = rnd.choice([0.5, 1, 2, 3, 4, 6, 8])
            if rnd.random() < 0.7:
                t["assignee"] = "eve@example.com" if rnd.random() < 0.02 else rnd.choice(PEOPLE)
            if rnd.random() < 0.5:
                t["skills"] = ["rust"] if rnd.random() < 0.02 else rnd.sample(SKILLS, 1)
            began = f"{start.isoformat()}T09:00:00Z"
            ended = f"{(start + timedelta(days=j % 7)).isoformat()}T17:00:00Z"
            if status == "completed" or (status == "in_progress" and j <= 5):
                t.update(status="done", progress=100, started_at=began, completed_at=ended)
            elif status == "in_progress" and j <= 8:
                t.update(status="in_progress", progress=40, started_at=began)
            tasks.append(t)
        m["tasks"] = tasks
        out[mid] = md.Milestone.from_dict(m).to_dict()
    return out


def config() -> dict[str, Any]:
    return {"team": {"members": TEAM}, "ui": {"default": "auto"}}


def raw_files(snaps: dict[str, dict[str, Any]]) -> dict[str, tuple[str, Any, str | None]]:
    """What ``Project.validate`` reads: each file's text and parsed data."""
    raw: dict[str, tuple[str, Any, str | None]] = {}
    for mid, snap in snaps.items():
        rel = f"{DIRNAME}/active/{mid}.yaml"
        text = yamlio.dump_fast(snap)
        raw[rel] = (text, yamlio.load_text(text, rel), None)
    return raw


def context(snaps: dict[str, dict[str, Any]], raw: dict[str, Any]) -> engine.Context:
    sources = {rel.rsplit("/", 1)[-1][:-5]: engine.Source(rel, text)
               for rel, (text, _data, _err) in raw.items()}
    return engine.Context(snaps, TODAY, config(), sources=sources, raw=raw)


def median_time(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median (CPU seconds, wall seconds) of ``runs`` calls after a warm-up.

    CPU time (of this process) is what the targets are checked on: it does not
    count the time other processes on a busy machine take from this one.
    """
    fn()  # warm-up
    cpu, wall = [], []
    for _ in range(runs):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def per_rule(snaps: dict[str, dict[str, Any]], raw: dict[str, Any]) -> dict[str, float]:
    """CPU seconds each rule takes alone (best of two), locating its findings included."""
    out: dict[str, float] = {}
    for r in engine.all_rules():
        for _ in range(2):
            ctx = context(snaps, raw)
            ctx.current_rule = r
            gc.disable()  # as engine.run does
            t0 = time.process_time()
            r.check(ctx)
            ctx.locate()
            seconds = time.process_time() - t0
            gc.enable()
            out[r.code] = min(out.get(r.code, seconds), seconds)
    return out


def on_disk(snaps: dict[str, dict[str, Any]], runs: int) -> dict[str, float]:
    """Median CPU seconds of ``Project.validate`` on a real project, and of its parts."""
    with tempfile.TemporaryDirectory() as tmp:
        p, _ = Project.init(Path(tmp), actor="bench@example.com", session_id="bench")
        (p.root / "config" / "config.yaml").write_text(json.dumps(config()), "utf-8")
        for mid, snap in snaps.items():
            (p.root / "active" / f"{mid}.yaml").write_text(yamlio.dump_fast(snap), "utf-8")
        p = Project.open(Path(tmp), actor="bench@example.com", session_id="bench")
        p.today = lambda: TODAY
        p.state()  # records the files in the event log, as a hand edit would be
        assert not p.store.needs_sync()
        data: dict[str, Any] = {}
        files = sorted((p.root / "active").glob("milestone-*.yaml"))

        def validate(types: tuple[str, ...] = ("all",)) -> None:
            data.update(p.validate(None, types))

        def parse() -> None:
            for f in files:
                yamlio.load_text(yamlio.decode(f.read_bytes(), f.name), f.name)

        out = {"findings": 0.0}
        out["all"], out["wall"] = median_time(validate, runs)
        out["findings"] = len(data["findings"])
        out["standard"], _ = median_time(lambda: validate(("standard",)), runs)
        out["parse"], _ = median_time(parse, runs)
        return out


# ------------------------------------------------------------------ through the CLI

CLI_TASKS = 10
CLI_TARGET = 1.0  # seconds: `milestone validate` on 1,000 milestones, every backend
BACKENDS = ("file", "hybrid", "database")
CLI_TYPES = (("validate", ()), ("validate --type all", ("--type", "all")))


def find_script() -> str:
    beside = Path(sys.executable).with_name("milestone")
    found = str(beside) if beside.exists() else shutil.which("milestone")
    if found is None:
        sys.exit("validate: no `milestone` script found; run `pip install -e .` first")
    return found


def child_env() -> dict[str, str]:
    """The caller's environment, with bytecode caching back on (as users run it)."""
    env = dict(os.environ)
    for name in ("PYTHONDONTWRITEBYTECODE", "MILESTONE_DEBUG", "MILESTONE_UI", "MILESTONE_DIR"):
        env.pop(name, None)
    return env


def build_projects(base: Path, n: int) -> dict[str, Path]:
    """``n`` milestones x ``CLI_TASKS`` tasks on each backend, as bench/scale.py builds them."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import scale  # bench/scale.py

    out = {}
    for backend in BACKENDS:
        directory = out[backend] = base / f"{backend}-{n}"
        if (directory / ".milestones").is_dir():
            print(f"  {n:,} x {CLI_TASKS} on {backend}: kept in {directory}", flush=True)
            continue  # built by an earlier run (--projects)
        t0 = time.perf_counter()
        events, state = scale.generate(n, CLI_TASKS, backend=backend)
        directory.mkdir(parents=True)
        scale.write_project(directory, backend, events, state)
        print(f"  built {n:,} x {CLI_TASKS} on {backend} in {time.perf_counter() - t0:.1f}s",
              flush=True)
    return out


TIME = "/usr/bin/time"  # GNU time: the peak RSS of its child alone (%M, KiB)


def run_child(argv: list[str], cwd: Path, env: dict[str, str]
              ) -> tuple[float, float, int, int, str]:
    """One fresh child: (wall seconds, CPU seconds, peak RSS in KiB of that child, exit
    code, stdout).

    The child is started by GNU time, itself a small process: a child forked from this
    one (which holds the projects it built) would report this process's RSS as its own
    peak (Linux carries the high-water mark across fork and exec). Without GNU time, the
    child's own rusage from ``os.wait4`` is shown, an upper bound."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        timed = argv
        if Path(TIME).exists():
            timed = [TIME, "-o", str(rss_file), "-f", "%U %S %M", *argv]
        with (Path(tmp) / "out").open("w+b") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(timed, cwd=cwd, env=env, stdout=out, stderr=subprocess.PIPE)
            _pid, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            assert proc.stderr is not None
            err = proc.stderr.read().decode("utf-8", "replace")
            proc.stderr.close()
            out.seek(0)
            text = out.read().decode("utf-8", "replace")
        if rss_file.exists():
            user, system, peak = rss_file.read_text().split()[-3:]
            cpu, rss = float(user) + float(system), int(peak)
        else:
            cpu, rss = usage.ru_utime + usage.ru_stime, usage.ru_maxrss
    if proc.returncode not in (0, 5):  # 5: the plan has errors, still a full run
        raise SystemExit(f"`{' '.join(argv[1:])}` in {cwd} exited {proc.returncode}: "
                         f"{err.strip()[:300]}")
    return wall, cpu, rss, proc.returncode, text


def cli_bench(sizes: Sequence[int], runs: int, script: str, keep: str | None = None) -> bool:
    env = child_env()
    print(f"\n`milestone validate` through the CLI ({script}), {CLI_TASKS} tasks a milestone,"
          f" one fresh child a run, median of {runs} runs after a warm-up")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ok = True
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            projects = build_projects(Path(keep or tmp), n)
            cells = [(backend, label, [script, "validate", *extra, "--json"])
                     for backend in BACKENDS for label, extra in CLI_TYPES]
            samples: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
            found: dict[tuple[str, str], int] = {}
            for round_no in range(runs + 1):  # the first round warms up
                for backend, label, argv in cells:
                    wall, cpu, rss, _code, out = run_child(argv, projects[backend], env)
                    if round_no:
                        samples.setdefault((backend, label), []).append((wall, cpu, rss))
                    found[(backend, label)] = len(json.loads(out)["findings"])
            for backend, label, _argv in cells:
                got = samples[(backend, label)]
                rows.append((n, backend, label, statistics.median(w for w, _, _ in got),
                             min(w for w, _, _ in got), statistics.median(c for _, c, _ in got),
                             max(r for _, _, r in got), found[(backend, label)]))
            if keep is None:
                shutil.rmtree(Path(tmp), ignore_errors=True)
                Path(tmp).mkdir(exist_ok=True)
    print(f"{'milestones':>10} {'backend':>8} {'command':<20} {'median s':>9} {'min s':>7} "
          f"{'cpu s':>6} {'peak RSS':>10} {'findings':>8}  target")
    for n, backend, label, med, fastest, cpu, rss, count in rows:
        verdict = ""
        if n == 1000:
            passed = med < CLI_TARGET
            if label == "validate":
                ok &= passed
                verdict = f"under {CLI_TARGET:g}s: {'PASS' if passed else 'FAIL'}"
            else:
                verdict = f"(reference: {'under' if passed else 'over'} {CLI_TARGET:g}s)"
        print(f"{n:>10,} {backend:>8} {label:<20} {med:>9.3f} {fastest:>7.3f} {cpu:>6.2f} "
              f"{rss / 1024:>6.1f} MiB {count:>8}  {verdict}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--seed", type=int, default=20260601)
    ap.add_argument("--no-disk", action="store_true", help="skip the on-disk 1,000 run")
    ap.add_argument("--cli-sizes", default="1000,10000", help="milestones of the CLI projects")
    ap.add_argument("--cli-runs", type=int, default=5)
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI measurements")
    ap.add_argument("--no-engine", action="store_true", help="only the CLI measurements")
    ap.add_argument("--script", help="the `milestone` script to time (default: this venv's)")
    ap.add_argument("--projects", help="build the CLI projects here and keep them; a later "
                    "run (say with another --script) uses them as they are")
    ap.add_argument("--quick", action="store_true",
                    help="engine on 100 and 1,000, CLI on 1,000 only, 3 runs each")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.cli_sizes, args.runs, args.cli_runs = "100,1000", "1000", 3, 3
    sizes = [int(s) for s in args.sizes.split(",")]
    ok = True
    if not args.no_engine:
        ok &= engine_bench(args, sizes)
    if not args.no_cli:
        ok &= cli_bench([int(s) for s in args.cli_sizes.split(",")], args.cli_runs,
                        args.script or find_script(), args.projects)
    print("\nresult:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def engine_bench(args: argparse.Namespace, sizes: list[int]) -> bool:
    rows: list[tuple[int, float, int]] = []
    rules: dict[int, dict[str, float]] = {}
    ok = True
    print(f"engine.run(ctx, ('all',)), {TASKS} tasks a milestone, median of {args.runs} runs")
    print(f"{'milestones':>10} {'tasks':>7} {'findings':>9} {'cpu s':>7} {'wall s':>7}  growth")
    for n in sizes:
        snaps = generate(n, args.seed)
        raw = raw_files(snaps)
        found: list[engine.Finding] = []

        def run(
            snaps: dict[str, dict[str, Any]] = snaps,
            raw: dict[str, Any] = raw,
            found: list[engine.Finding] = found,
        ) -> None:
            found[:] = engine.run(context(snaps, raw), ("all",))

        cpu, wall = median_time(run, args.runs)
        rules[n] = per_rule(snaps, raw)
        growth = ""
        if rows:
            prev_n, prev_cpu, _ = rows[-1]
            ratio, data = cpu / prev_cpu, n / prev_n
            allowed = data * GROWTH_TARGET / 10  # 12x for 10x, pro rata
            verdict = "PASS" if ratio <= allowed else "FAIL"
            ok &= verdict == "PASS"
            growth = f"{ratio:5.1f}x for {data:g}x the data (at most {allowed:g}x: {verdict})"
        rows.append((n, cpu, len(found)))
        print(f"{n:>10} {n * TASKS:>7} {len(found):>9} {cpu:>7.3f} {wall:>7.3f}  {growth}")
        if n == 1000:
            verdict = "PASS" if cpu <= WHOLE_TARGET / 2 else "FAIL"
            ok &= verdict == "PASS"
            print(f"{'':>10} 1,000 milestones: {cpu:.3f}s "
                  f"(well under {WHOLE_TARGET:g}s, i.e. at most {WHOLE_TARGET / 2:g}s: {verdict})")
            if not args.no_disk:
                d = on_disk(snaps, args.runs)
                over = "" if d["all"] < WHOLE_TARGET else f", over {WHOLE_TARGET:g}s"
                print(f"{'':>10} on disk, Project.validate(None, ('all',)): {d['all']:.3f}s cpu "
                      f"({d['wall']:.3f}s wall), {d['findings']:g} findings{over}")
                print(f"{'':>10}   of which reading and parsing the 1,000 files (yamlio): "
                      f"{d['parse']:.3f}s; --type standard (no log check and replay): "
                      f"{d['standard']:.3f}s")

    print("\nslowest rules alone (cpu seconds, best of 2; growth against the previous size):")
    last = rules[sizes[-1]]
    print(f"{'rule':>6} " + " ".join(f"{n:>14}" for n in sizes))
    for code in sorted(last, key=lambda c: -last[c])[:8]:
        cells = []
        for i, n in enumerate(sizes):
            s, before = rules[n][code], rules[sizes[i - 1]][code] if i else 0.0
            cells.append(f"{s:.4f}" + (f" ({s / before:.0f}x)" if before else ""))
        print(f"{code:>6} " + " ".join(f"{c:>14}" for c in cells))
    return ok


if __name__ == "__main__":
    sys.exit(main())

"""Validation benchmark: ``engine.run(ctx, ("all",))`` on 100, 1,000 and 5,000 milestones.

Run it with ``python bench/validate.py [--runs N] [--sizes 100,1000,5000] [--seed S]
[--no-disk]`` from the project's virtualenv (about a minute).

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
import random
import statistics
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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--seed", type=int, default=20260601)
    ap.add_argument("--no-disk", action="store_true", help="skip the on-disk 1,000 run")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

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
    print("\nresult:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

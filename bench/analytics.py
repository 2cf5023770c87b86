"""Analytics benchmark: ``milestone analytics --json`` on a log of 100,000 events, the
first build of ``database/analytics.db`` and the incremental update after a few writes.

Run it with ``python bench/analytics.py [--events 100000] [--runs 5] [--backend file]``
from the project's virtualenv (``--quick``: 20,000 events, 3 runs).

The project is built fast, through the tool's own code (as ``bench/scale.py`` does):
one ``Txn`` records every change with ``Txn.record`` while the model's transitions
(``start_task``, ``block_task``, ``unblock_task``, ``complete_task``) move the tasks;
the events, spread over the 26 weeks before the last one (an hour ago), are sealed and
bulk-loaded with the backend's ``import_data``. Milestones of 40 tasks (estimates 1-4 h,
tags, three assignees) are worked one after the other, every 5th task blocked for a
while; the last 25 events plan milestones nobody has started, so the forecast has work
left.

Each timed run is one whole CLI process of the installed console script under a small
wrapper that reports the child's peak RSS (``RUSAGE_CHILDREN``):

* first build: ``analytics.db`` deleted before each run;
* incremental: three writes (``task start``, ``task done``, ``task start``: three
  events) before each run, untimed; the run folds in only those.

Prints the median wall time and peak RSS of each, the events each folded in, and the
load average; and ``status --json`` on the same project (the CLI's start and the
project's opening, which every command pays) for scale. Target: incremental under 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from child import WRAPPER
from scale import ACTOR, SESSION, child_env, find_script, write_project

INCREMENTAL_TARGET_MS = 200.0
PER = 40
WEEKS = 26
PLANNED = 25  # milestones nobody started, planned last (one event each)
PEOPLE = ("alice@example.com", "bob@example.com", "ci-agent")



def generate(target: int) -> tuple[list[dict[str, Any]], Any, list[str]]:
    """About ``target`` sealed events, the final state, and refs of planned tasks."""
    from milestones import model as md
    from milestones.model import events as ev
    from milestones.project import Project, Txn
    from milestones.storage.base import State
    from milestones.storage.memory import MemoryStore

    project = Project(MemoryStore(), actor=ACTOR, session_id=SESSION)
    tx = Txn(project, State({}, None, 0, 0, ev.GENESIS_HASH))
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    start = end - timedelta(weeks=WEEKS)
    step = WEEKS * 7 * 86400 / target
    count = 0

    def tick() -> str:
        nonlocal count
        count += 1
        return (start + timedelta(seconds=int(count * step))).strftime("%Y-%m-%dT%H:%M:%SZ")

    def change(kind: str, m: Any, t: Any, move: Any, **kw: Any) -> None:
        tx.now = tick()
        before = m.to_dict()
        spent = move(t)
        m.updated_at = tx.now
        tx.record(kind, m, before, task=t, **({"time_spent": spent} if spent else {}), **kw)
        tx.follow_status(m)

    tx.now = tick()
    tx.record("project_initialized", None, None, data={"backend": "file"})
    i, planned = 0, []
    while len(tx.events) < target:
        i += 1
        mid = md.milestone_id(i)
        tx.now = tick()
        tasks = [md.Task(id=f"task-{k}", title=f"Task {k} of {i}", estimate=float(1 + k % 4),
                         assignee=PEOPLE[k % 3]) for k in range(1, PER + 1)]
        m = md.Milestone(id=mid, title=f"Milestone {i}", tags=[f"area{i % 5}"], tasks=tasks,
                         created_at=tx.now, updated_at=tx.now)
        data = {}
        if tx.current is None:
            tx.current = data["current"] = mid
        tx.record("milestone_created", m, None, data=data, title=m.title)
        if len(tx.events) > target - PLANNED:
            planned.append(mid)
            continue
        for t in m.tasks:
            ref = f"{mid}/{t.id}"
            change("task_started", m, t, lambda t, r=ref: md.start_task(t, tx.now, r, [], False))
            if t.id.endswith(("6", "2")):
                change("task_blocked", m, t,
                       lambda t, r=ref: md.block_task(t, tx.now, r, "waiting on review"),
                       reason="waiting on review")
                change("task_unblocked", m, t, lambda t, r=ref: md.unblock_task(t, r))
            change("task_completed", m, t,
                   lambda t, r=ref: md.complete_task(t, tx.now, r, [], False))
    sealed: list[dict[str, Any]] = []
    last = ev.GENESIS_HASH
    for k, e in enumerate(tx.events, 1):
        sealed.append(ev.seal(json.loads(ev.canonical(e)), k, last))
        last = sealed[-1]["hash"]
    state = State(milestones=tx.snaps, current=tx.current, max_number=i,
                  last_event_id=len(sealed), last_hash=last)
    refs = [f"{mid}/task-{k}" for mid in planned for k in range(1, PER + 1)]
    return sealed, state, refs


def timed(script: str, cwd: Path, env: dict[str, str], *argv: str) -> dict[str, Any]:
    argv = argv or ("analytics", "--json")
    proc = subprocess.run([sys.executable, "-c", WRAPPER, script, *argv],
                          cwd=cwd, env=env, capture_output=True, text=True, check=True)
    got: dict[str, Any] = json.loads(proc.stdout)
    if got["rc"] != 0:
        sys.exit(f"{argv[0]} failed: {got['stderr']}")
    out = json.loads(got.pop("stdout"))
    got["rollups"] = out.get("rollups", {"mode": argv[0], "events": 0})
    return got


def run_cli(script: str, cwd: Path, env: dict[str, str], *args: str) -> None:
    subprocess.run([script, *args], cwd=cwd, env=env, capture_output=True, check=True)


def summary(name: str, rows: list[dict[str, Any]]) -> float:
    ms = statistics.median(r["seconds"] for r in rows) * 1000
    rss = statistics.median(r["maxrss_kib"] for r in rows) / 1024
    folded = statistics.median(r["rollups"]["events"] for r in rows)
    modes = sorted({r["rollups"]["mode"] for r in rows})
    print(f"  {name:<12} median {ms:8.1f} ms   peak RSS {rss:6.1f} MiB   "
          f"events folded {folded:>8.0f}   ({', '.join(modes)}, {len(rows)} runs)")
    return ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--backend", default="file", choices=("file", "hybrid", "database"))
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.events, args.runs = 20_000, 3
    script, env = find_script(), child_env()
    env["MILESTONE_USER"], env["MILESTONE_SESSION_ID"] = ACTOR, SESSION
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as tmp:
        cwd = Path(tmp)
        events, state, refs = generate(args.events)
        root = write_project(cwd, args.backend, events, state)
        print(f"analytics on {len(events):,} events, {args.backend} backend "
              f"(load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
        db = root / "database" / "analytics.db"
        first = []
        for _ in range(args.runs):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            first.append(timed(script, cwd, env))
        incremental = []
        for k in range(args.runs):
            a, b = refs[2 * k], refs[2 * k + 1]
            run_cli(script, cwd, env, "task", "start", a)
            run_cli(script, cwd, env, "task", "done", a)
            run_cli(script, cwd, env, "task", "start", b)
            incremental.append(timed(script, cwd, env))
        baseline = [timed(script, cwd, env, "status", "--json") for _ in range(args.runs)]
        summary("first build", first)
        ms = summary("incremental", incremental)
        summary("status", baseline)  # the same CLI start and project open, for scale
        print(f"  target: incremental under {INCREMENTAL_TARGET_MS:.0f} ms: "
              f"{'met' if ms < INCREMENTAL_TARGET_MS else 'MISSED'}")
        print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

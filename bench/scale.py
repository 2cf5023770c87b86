"""Scale benchmark: the ``milestone`` CLI on projects of 10,000 and 100,000 tasks, beside
Taskwarrior with as many tasks, and the time to migrate the large project.

Run it with ``python bench/scale.py [--runs N] [--sizes 1000,10000]`` from the project's
virtualenv (about ten minutes on 2 vCPUs; ``--quick`` does 1,000 milestones only).

Projects: 1,000 milestones x 10 tasks and 10,000 milestones x 10 tasks (``--sizes`` takes
milestone counts, ``--tasks`` the tasks per milestone), on the ``database`` and ``hybrid``
backends. They are built fast, but through the tool's own code: one ``Txn`` of
``milestones.project`` records every change with ``Txn.record`` (the patch from
``events.diff``, the event from ``events.make_event``) while the model's own transitions
(``model.start_task``, ``model.complete_task``, ``Txn.follow_status``) move the tasks; the
events are then sealed into a hash chain (``events.seal``) and bulk-loaded with
``DatabaseStore.import_data``. The history: the first 30 % of the milestones are
completed (every task started, then done), the next 20 % in progress (3 tasks done, the
4th started), the rest planned; tasks 6-10 wait on tasks 1-5, every 7th milestone's
first task on the previous milestone's last, every 10th milestone on the previous one;
priorities, tags and due dates vary (some overdue). About 9 events per milestone, spread
over the last 7 hours (so no scheduled backup, taken once every 24 h on the database
backend, is due during the run; when one is due, it adds a copy of the whole database
to one write a day). ``milestone doctor`` must accept the smallest size on both backends
(checked, and printed). The hybrid project is the database project migrated with
``milestones.ops.migrate.migrate(root, "hybrid")``; at the end the hybrid one is migrated to
``database`` (the direction the scale policy recommends): both migrations are timed.

Commands, each a whole subprocess of the installed console script (children run with
PYTHONDONTWRITEBYTECODE removed, so bytecode caches are used), in the project directory:

* ``status --json``, ``list --status in_progress``, ``next``: timed in rounds of reads
  only, so, as when someone looks twice, nothing changed since the last command and the
  query cache (``database/cache.db``, keyed by the log head) can answer what it keeps;
* ``task done REF``: a different ready task each run (task 2-5 of a planned milestone
  with no milestone dependency), each followed by ``status --json`` (the row "status
  --json after a write": every cache is behind the log head then), in rounds of their own.

Taskwarrior, with the same number of tasks (same titles, projects, priorities, tags and
statuses: done tasks completed, started ones active), imported with ``task import`` of
one JSON array into a private TASKRC/TASKDATA, is timed in the same rounds for its
nearest commands: ``task count`` (status), ``task active`` (list --status in_progress),
``task next`` (next) and ``task UUID done`` (task done: a different pending task each
run; gc renumbers working ids after a completion, so a UUID names it). Settings as in
``bench/cli_latency.py``: ``confirmation=off``, ``verbose=nothing``, ``hooks=off``,
``color=off``, ``news.version`` set; garbage collection stays ON (the default). The
Taskwarrior tasks carry NO dependencies unless ``--taskwarrior-depends``: Taskwarrior
2.6 checks dependencies in super-linear time (here 1.0 s per command at 10,000 tasks and
7.9 s at 20,000 with half the tasks depending on another), so with them it would be
minutes per command at 100,000 and every "x faster than Taskwarrior" would mean
nothing. Without them it is Taskwarrior's best case, the harder comparison.

Every command runs ``--runs`` times (5) after one warm-up, interleaved round by round
with the others of its group (reads, writes) and size; the tables show medians.
Targets (from the issue), at the largest size (100,000 tasks): each database-backend
command under 150 ms and at least 3x faster than its Taskwarrior counterpart (``task
count`` for both status rows); going from 10,000 to 100,000 tasks at most 1.5x the
time; the migration of 10,000 milestones under a minute.
Hybrid rows get the same verdicts, for reference. A command that fails is printed as
FAILED with its error; a size whose build would take over ``--build-budget`` seconds
(600) is skipped and says so. ``--profile "status --json"`` profiles that command
(cProfile, in a child process) on the largest database project and prints where the
time goes.
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
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ACTOR = "bench@example.com"
SESSION = "s-bench"
WARMUP = 1
LATENCY_TARGET_MS = 150.0
TASKWARRIOR_TARGET = 3.0  # at least this many times faster
GROWTH_TARGET = 1.5  # 10x the tasks, at most this much more time
MIGRATION_TARGET_S = 60.0
HISTORY_HOURS = 6.0  # events spread over the hours before the last one, 1 h ago
READS = ("status --json", "list --status in_progress", "next")
WRITES = ("task done", "status --json after a write")
COMMANDS = (*READS, *WRITES)
TW_COMMANDS = {  # milestone command -> Taskwarrior's nearest (none for the last)
    "status --json": "count",
    "list --status in_progress": "active",
    "next": "next",
    "task done": "UUID done",
}
TW_OF = {**{c: c for c in TW_COMMANDS}, "status --json after a write": "status --json"}


def child_env() -> dict[str, str]:
    """The caller's environment, with bytecode caching back on."""
    env = dict(os.environ)
    for name in ("PYTHONDONTWRITEBYTECODE", "MILESTONE_DEBUG", "MILESTONE_UI",
                 "MILESTONE_DIR"):
        env.pop(name, None)
    return env


def find_script() -> str:
    """The ``milestone`` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("milestone")
    if beside.exists():
        return str(beside)
    found = shutil.which("milestone")
    if found is None:
        sys.exit("scale: no `milestone` script found; run `pip install -e .` first")
    return found


# ------------------------------------------------------------------ the projects


def kind_of(i: int, n: int) -> str:
    """What milestone ``i`` of ``n`` has been through: the oldest are done."""
    share = i / n
    if share <= 0.30:
        return "completed"
    if share <= 0.50:
        return "in_progress"
    return "planned"


def generate(
    n: int, per: int, *, history: bool = True, backend: str = "database",
    title: str = "Milestone {i}: feature area {area}",
) -> tuple[list[dict[str, Any]], Any]:
    """The sealed event log and the final ``State`` of a project of ``n`` milestones of
    ``per`` tasks, recorded by the tool's own ``Txn`` (see the module docstring).

    ``history=False``: every milestone planned, nothing started, no dependencies (what
    ``Project.plan`` of plain task lists makes; ``bench/load.py`` seeds with it)."""
    from milestones import model as md
    from milestones.model import events as ev
    from milestones.project import Project, Txn
    from milestones.storage.base import State
    from milestones.storage.memory import MemoryStore

    project = Project(MemoryStore(), actor=ACTOR, session_id=SESSION)
    tx = Txn(project, State({}, None, 0, 0, ev.GENESIS_HASH))
    upper = 2 + n * (3 + 2 * per)  # events at most, to spread the timestamps
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    start = end - timedelta(hours=HISTORY_HOURS)
    step = HISTORY_HOURS * 3600 / upper
    count = 0

    def tick() -> str:
        nonlocal count
        count += 1
        return (start + timedelta(seconds=int(count * step))).strftime("%Y-%m-%dT%H:%M:%SZ")

    tx.now = tick()
    tx.record("project_initialized", None, None, data={"backend": backend})
    half = max(1, per // 2)
    first_active: str | None = None
    for i in range(1, n + 1):
        kind = kind_of(i, n) if history else "planned"
        prev = kind_of(i - 1, n) if i > 1 and history else "planned"
        linked = history and i > 1 and (prev == "completed" or kind == "planned")
        mid = md.milestone_id(i)
        tx.now = tick()
        tasks = []
        for k in range(1, per + 1):
            deps = [f"task-{k - half}"] if history and k > half else []
            if k == 1 and linked and i % 7 == 0:
                deps.append(f"{md.milestone_id(i - 1)}/task-{per}")
            tasks.append(md.Task(
                id=f"task-{k}", title=f"Task {k} of milestone {i}: implement part {k}",
                description=f"Work item {k} for milestone {i}.", depends_on=deps,
                estimate=float(1 + k % 4)))
        due = (start.date() + timedelta(days=i % 120 - 20)).isoformat()
        m = md.Milestone(
            id=mid, title=title.format(i=i, area=i % 97),
            description=f"Deliver feature area {i}.",
            priority=("low", "medium", "high", "critical")[i % 4],
            tags=[f"area{i % 5}", "bench"], tasks=tasks,
            depends_on=[md.milestone_id(i - 1)] if linked and i % 10 == 0 else [],
            due_date=due if history and i % 3 else None,
            created_at=tx.now, updated_at=tx.now)
        data = {}
        if tx.current is None:
            tx.current = data["current"] = mid
        tx.record("milestone_created", m, None, data=data, title=m.title)
        if kind == "planned":
            continue
        if kind == "in_progress" and first_active is None:
            first_active = mid
        finish = per if kind == "completed" else min(3, per - 1)
        for t in m.tasks[:finish]:
            ref = f"{mid}/{t.id}"
            tx.now = tick()
            before = m.to_dict()
            md.start_task(t, tx.now, ref, [], False)
            m.updated_at = tx.now
            tx.record("task_started", m, before, task=t)
            tx.follow_status(m)
            tx.now = tick()
            before = m.to_dict()
            spent = md.complete_task(t, tx.now, ref, [], False)
            m.updated_at = tx.now
            tx.record("task_completed", m, before, task=t, time_spent=spent)
            tx.follow_status(m)
        if kind == "in_progress":
            t = m.tasks[finish]
            tx.now = tick()
            before = m.to_dict()
            md.start_task(t, tx.now, f"{mid}/{t.id}", [], False)
            m.updated_at = tx.now
            tx.record("task_started", m, before, task=t)
            tx.follow_status(m)
    if first_active is not None:  # work goes on there: make it current, as a user would
        tx.now = tick()
        tx.current = first_active
        tx.record("current_changed", None, None, mid=first_active,
                  data={"current": first_active})
    sealed: list[dict[str, Any]] = []
    last = ev.GENESIS_HASH
    for k, e in enumerate(tx.events, 1):
        sealed.append(ev.seal(json.loads(ev.canonical(e)), k, last))  # as commit() does
        last = sealed[-1]["hash"]
    state = State(milestones=tx.snaps, current=tx.current, max_number=n,
                  last_event_id=len(sealed), last_hash=last)
    return sealed, state


def write_project(directory: Path, backend: str, events: list[dict[str, Any]],
                  state: Any) -> Path:
    """``milestone init`` (layout, config), then every event and snapshot in one bulk
    load; returns the ``.milestones`` root."""
    from milestones.project import Project

    project, _ = Project.init(directory, backend=backend, actor=ACTOR, session_id=SESSION)
    store: Any = project.store
    store.import_data(events, state, {}, {})
    if backend == "hybrid":
        store.reindex()
    close = getattr(store, "close", None) or getattr(getattr(store, "index", None), "close",
                                                     None)
    if close is not None:
        close()
    return project.root


def ready_refs(state: Any, per: int, count: int) -> list[str]:
    """Tasks ``task done`` may complete: 2..half of planned milestones without milestone
    dependencies (they have no task dependency), from the newest milestone down."""
    refs: list[str] = []
    half = max(1, per // 2)
    for mid in sorted(state.milestones, reverse=True):
        snap = state.milestones[mid]
        if snap["status"] != "planned" or snap["depends_on"]:
            continue
        for t in snap["tasks"][1:half]:
            if t["status"] == "todo" and not t["depends_on"]:
                refs.append(f"{mid}/{t['id']}")
        if len(refs) >= count:
            break
    return refs[:count]


# ------------------------------------------------------------------ taskwarrior


def tw_stamp(iso: str | None) -> str | None:
    return iso.replace("-", "").replace(":", "") if iso else None


def build_taskwarrior(directory: Path, state: Any, *, depends: bool
                      ) -> tuple[dict[str, str], list[str], int, float]:
    """A TASKRC/TASKDATA holding the project's tasks; returns the environment, UUIDs of
    pending tasks without dependencies (newest first), the task count and import time."""
    data = directory / "taskdata"
    data.mkdir(parents=True)
    rc = directory / "taskrc"
    version = subprocess.run(["task", "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    rc.write_text("\n".join([f"data.location={data}", "confirmation=off", "verbose=nothing",
                             "hooks=off", f"news.version={version}", "color=off", ""]), "utf-8")
    env = child_env() | {"TASKRC": str(rc), "TASKDATA": str(data)}
    rows: list[dict[str, Any]] = []
    ready: list[str] = []
    prio = {"critical": "H", "high": "H", "medium": "M", "low": "L"}
    for mid, snap in sorted(state.milestones.items()):
        ids = {t["id"]: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{mid}/{t['id']}"))
               for t in snap["tasks"]}
        for t in snap["tasks"]:
            row: dict[str, Any] = {
                "uuid": ids[t["id"]], "description": t["title"],
                "entry": tw_stamp(snap["created_at"]), "project": mid.replace("-", ""),
                "priority": prio[snap["priority"]], "tags": list(snap["tags"]),
                "status": "completed" if t["status"] == "done" else "pending",
            }
            if t["status"] == "done":
                row["end"] = tw_stamp(t["completed_at"])
            if t["status"] == "in_progress":
                row["start"] = tw_stamp(t["started_at"])
            local = [ids[d] for d in t["depends_on"] if "/" not in d]
            if depends and local:
                row["depends"] = local
            if t["status"] == "todo" and (not local or not depends):
                ready.append(row["uuid"])
            rows.append(row)
    path = directory / "import.json"
    path.write_text(json.dumps(rows), "utf-8")
    t0 = time.perf_counter()
    subprocess.run(["task", "import", str(path)], env=env, capture_output=True, check=True)
    took = time.perf_counter() - t0
    path.unlink()
    return env, ready[::-1], len(rows), took


# ------------------------------------------------------------------ timing


class Row:
    def __init__(self, tool: str, label: str, argv: Callable[[], list[str]], *,
                 env: dict[str, str], cwd: Path) -> None:
        self.tool = tool  # "database", "hybrid" or "taskwarrior"
        self.label = label
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.samples: list[float] = []
        self.error: str | None = None

    def run_once(self) -> float | None:
        if self.error is not None:
            return None
        argv = self.argv()
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=self.env, cwd=self.cwd, capture_output=True)
        elapsed = (time.perf_counter() - t0) * 1000
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            self.error = (f"`{' '.join(Path(a).name if i == 0 else a for i, a in enumerate(argv))}`"
                          f" exited {proc.returncode}: {err[0] if err else '(no message)'}")
            return None
        return elapsed

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None


def measure(rows: Sequence[Row], runs: int) -> None:
    for _ in range(WARMUP):
        for row in rows:
            row.run_once()
    for _ in range(runs):  # interleaved, so drift hits every row alike
        for row in rows:
            ms = row.run_once()
            if ms is not None:
                row.samples.append(ms)


# ------------------------------------------------------------------ report


def fmt_ms(v: float | None) -> str:
    return "FAILED" if v is None else f"{v:.1f}"


def size_label(n: int, per: int) -> str:
    return f"{n:,} milestones / {n * per:,} tasks"


def migrate_timed(root: Path, to: str) -> tuple[float | None, str]:
    from milestones.errors import MilestoneError
    from milestones.ops.migrate import migrate

    t0 = time.perf_counter()
    try:
        report = migrate(root, to, actor=ACTOR)
    except MilestoneError as exc:
        return None, str(exc)
    took = time.perf_counter() - t0
    return took, f"{report['target']['events']:,} events, verified"


def doctor(script: str, env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run([script, "doctor", "--json"], env=env, cwd=cwd, capture_output=True,
                          text=True)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        return f"FAILED (exit {proc.returncode}): {proc.stderr.strip()[:200]}"
    bad = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    return "healthy" if report.get("healthy") else "NOT healthy: " + "; ".join(bad)


def profile(script_env: dict[str, str], cwd: Path, command: str, top: int = 30) -> str:
    """cProfile of one CLI command in a child process: the top functions by cumulative
    time (the child's own cost of profiling makes the total larger than a plain run)."""
    code = (
        "import cProfile, io, pstats, sys, contextlib\n"
        f"sys.argv = ['milestone', *{command.split()!r}]\n"
        "from milestones.console import main\n"
        "pr = cProfile.Profile(); pr.enable()\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
        "pr.disable()\n"
        "s = pstats.Stats(pr, stream=sys.stdout); s.sort_stats('cumulative')\n"
        f"s.print_stats({top})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=script_env, cwd=cwd,
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    wrappers = ("click/core.py", "console.py", "cli/__init__.py")  # the CLI's frame
    keep = [ln.replace(str(Path(sys.prefix)), "<venv>") for ln in lines
            if ("function calls" in ln or "ncalls" in ln or "(" in ln)
            and not any(w in ln for w in wrappers)]
    return "\n".join(keep) or proc.stderr


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (5)")
    parser.add_argument("--sizes", default="1000,10000",
                        help="milestone counts, comma-separated (1000,10000)")
    parser.add_argument("--tasks", type=int, default=10, help="tasks per milestone (10)")
    parser.add_argument("--backends", default="database,hybrid",
                        help="backends to time (database,hybrid)")
    parser.add_argument("--quick", action="store_true", help="1,000 milestones only, 3 runs")
    parser.add_argument("--no-taskwarrior", action="store_true",
                        help="skip Taskwarrior even when installed")
    parser.add_argument("--taskwarrior-depends", action="store_true",
                        help="give the Taskwarrior tasks the project's dependencies "
                             "(super-linear in Taskwarrior 2.6: very slow at scale)")
    parser.add_argument("--build-budget", type=float, default=600.0,
                        help="skip a size whose build would take longer, seconds (600)")
    parser.add_argument("--profile", metavar="COMMAND", default=None,
                        help='cProfile this command on the largest database project, '
                             'e.g. "status --json"')
    parser.add_argument("--keep", action="store_true",
                        help="keep the projects (their directory is printed)")
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    runs = args.runs
    if args.quick:
        sizes, runs = [1000], min(runs, 3)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if runs < 1 or not sizes or min(sizes) < 10 or args.tasks < 2:
        parser.error("--runs >= 1, sizes >= 10 milestones, --tasks >= 2")
    if not set(backends) <= {"database", "hybrid"}:
        parser.error("--backends: database and/or hybrid")
    script = find_script()
    env = child_env()
    tw = shutil.which("task") if not args.no_taskwarrior else None
    began = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.2f} at start (other work on the machine makes "
          "the numbers noisy)")
    print(f"script {script}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    if tw:
        version = subprocess.run([tw, "--version"], capture_output=True, text=True).stdout
        print(f"taskwarrior {version.strip()}: private TASKRC/TASKDATA, confirmation=off, "
              f"verbose=nothing, hooks=off, color=off, gc on; dependencies "
              f"{'ON' if args.taskwarrior_depends else 'OFF (see the docstring)'}")
    elif not args.no_taskwarrior:
        print("taskwarrior: not installed (apt-get install taskwarrior), skipped")

    tmp = Path(tempfile.mkdtemp(prefix="milestone-scale-"))
    results: dict[int, dict[tuple[str, str], Row]] = {}
    builds: list[tuple[str, str]] = []  # (what, figure)
    migrations: list[tuple[int, str, float | None, str]] = []
    doctors: list[tuple[str, str]] = []
    skipped: list[str] = []
    profiled = ""
    last_build: tuple[int, float] | None = None
    try:
        for n in sizes:
            label = size_label(n, args.tasks)
            if last_build is not None:
                guess = last_build[1] * n / last_build[0]
                if guess > args.build_budget:
                    msg = (f"{label}: SKIPPED, building it would take about {guess:.0f} s "
                           f"(> --build-budget {args.build_budget:.0f} s; extrapolated "
                           f"linearly from {last_build[0]:,} milestones)")
                    print(msg)
                    skipped.append(msg)
                    continue
            print(f"\n== {label}")
            t0 = time.perf_counter()
            events, state = generate(n, args.tasks)
            gen_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            db_dir = tmp / f"database-{n}"
            db_dir.mkdir()
            db_root = write_project(db_dir, "database", events, state)
            load_s = time.perf_counter() - t0
            build_s = gen_s + load_s
            last_build = (n, build_s)
            builds.append((f"{label}: generate {len(events):,} events",
                           f"{gen_s:.1f} s"))
            builds.append((f"{label}: bulk import_data into the database backend",
                           f"{load_s:.1f} s"))
            print(f"built in {build_s:.1f} s ({len(events):,} events); "
                  f"database {db_root / 'database' / 'milestones.db'}")
            roots = {"database": db_dir}
            if "hybrid" in backends:
                hy_dir = tmp / f"hybrid-{n}"
                shutil.copytree(db_dir, hy_dir)
                took, detail = migrate_timed(hy_dir / ".milestones", "hybrid")
                migrations.append((n, f"{label}: database -> hybrid", took, detail))
                print(f"migrated a copy to hybrid in "
                      f"{'FAILED' if took is None else f'{took:.1f} s'} ({detail})")
                if took is not None:
                    roots["hybrid"] = hy_dir
            if n == sizes[0]:
                for b, d in roots.items():
                    verdict = doctor(script, env, d)
                    doctors.append((f"{label}, {b}", verdict))
                    print(f"milestone doctor ({b}): {verdict}")
            todo = ready_refs(state, args.tasks, WARMUP + runs)
            rows: dict[tuple[str, str], Row] = {}
            for b in backends:
                if b not in roots:
                    continue
                refs = iter(todo)
                for cmd in COMMANDS:
                    words = TW_OF[cmd].split()  # the after-a-write row runs `status --json`
                    a = ((lambda it=refs: [script, "task", "done", next(it)])
                         if cmd == "task done" else (lambda w=words: [script, *w]))
                    rows[(b, cmd)] = Row(b, cmd, a, env=env, cwd=roots[b])
            if tw:
                tw_dir = tmp / f"taskwarrior-{n}"
                tw_env, uuids, count, imp_s = build_taskwarrior(
                    tw_dir, state, depends=args.taskwarrior_depends)
                builds.append((f"{label}: task import of {count:,} tasks", f"{imp_s:.1f} s"))
                print(f"taskwarrior: imported {count:,} tasks in {imp_s:.1f} s")
                pending = iter(uuids)
                for cmd, twc in TW_COMMANDS.items():
                    a = ((lambda it=pending: [tw, next(it), "done"]) if twc == "UUID done"
                         else (lambda c=twc: [tw, c]))
                    rows[("taskwarrior", cmd)] = Row("taskwarrior", twc, a, env=tw_env,
                                                     cwd=tw_dir)
            del events
            t0 = time.perf_counter()
            # Reads in rounds of their own (nothing changes between them, as when one
            # looks twice); then the writes, each `task done` followed by a `status --json`
            # that finds every cache behind the log head.
            measure([r for (_, c), r in rows.items() if c in READS], runs)
            measure([r for (_, c), r in rows.items() if c in WRITES], runs)
            print(f"timed {len(rows)} commands x ({WARMUP} + {runs}) runs in "
                  f"{time.perf_counter() - t0:.0f} s")
            for row in rows.values():
                if row.error:
                    print(f"  FAILED {row.tool} {row.label}: {row.error}")
            results[n] = rows
            if n == sizes[-1] and args.profile and "database" in roots:
                profiled = profile(env, roots["database"], args.profile)
            if n == sizes[-1] and "hybrid" in roots:
                took, detail = migrate_timed(roots["hybrid"] / ".milestones", "database")
                migrations.append((n, f"{label}: hybrid -> database", took, detail))
                print(f"migrated hybrid to database in "
                      f"{'FAILED' if took is None else f'{took:.1f} s'} ({detail})")
            del state
    finally:
        if args.keep:
            print(f"\nprojects kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ok = report(results, sizes, backends, args.tasks, runs, builds, migrations, doctors,
                skipped)
    if profiled:
        print(f"\ncProfile of `milestone {args.profile}` on the database backend, "
              f"{size_label(sizes[-1], args.tasks)} (cumulative time, top entries):")
        print(profiled)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; total "
          f"{time.perf_counter() - began:.0f} s")
    print("all database targets PASS" if ok else "some database targets FAIL")
    return 0 if ok else 1


def verdict(passed: bool | None) -> str:
    return "-" if passed is None else ("PASS" if passed else "FAIL")


def report(results: dict[int, dict[tuple[str, str], Row]], sizes: list[int],
           backends: list[str], per: int, runs: int, builds: list[tuple[str, str]],
           migrations: list[tuple[int, str, float | None, str]],
           doctors: list[tuple[str, str]], skipped: list[str]) -> bool:
    """Print the tables; True when every database-backend target passes."""
    done = [n for n in sizes if n in results]
    print(f"\n== medians of {runs} runs after {WARMUP} warm-up run, ms (children run without "
          "PYTHONDONTWRITEBYTECODE)")
    cols = "".join(f" {f'{n * per:,} tasks':>15}" for n in done)
    header = f"{'tool':<12} {'command':<28}{cols}" + (f" {'growth':>8}" if len(done) > 1 else "")
    print(header)
    print("-" * len(header))
    for tool in [*backends, "taskwarrior"]:
        for cmd in COMMANDS:
            got = [results[n].get((tool, cmd)) for n in done]
            shown = [r for r in got if r is not None]
            if not shown:
                continue
            line = f"{tool:<12} {shown[0].label:<28}"
            for r in got:
                line += f" {('-' if r is None else fmt_ms(r.median)):>15}"
            first, last = got[0], got[-1]
            if len(done) > 1 and first and last and first.median and last.median:
                line += f" {last.median / first.median:>7.2f}x"
            print(line)
    ok = True
    if done:
        big = done[-1]
        small = done[0] if len(done) > 1 else None
        print(f"\n== targets at {size_label(big, per)}: each command < {LATENCY_TARGET_MS:g} ms, "
              f">= {TASKWARRIOR_TARGET:g}x faster than Taskwarrior"
              + (f", growth from {small * per:,} tasks ({big // small}x the tasks) "
                 f"<= {GROWTH_TARGET:g}x" if small else ""))
        head = (f"{'backend':<9} {'command':<28} {'median ms':>10} {'<150ms':>6} "
                f"{'tw ms':>9} {'tw/ms':>7} {'>=3x':>4} {'growth':>7} {'<=1.5x':>6}")
        print(head)
        print("-" * len(head))
        for b in backends:
            for cmd in COMMANDS:
                r = results[big].get((b, cmd))
                if r is None:
                    continue
                med = r.median
                t = results[big].get(("taskwarrior", TW_OF[cmd]))
                tw_med = t.median if t else None
                s = results[small].get((b, cmd)) if small else None
                ratio = tw_med / med if med and tw_med else None
                growth = med / s.median if med and s and s.median else None
                v = [verdict(None if med is None else med < LATENCY_TARGET_MS),
                     verdict(None if ratio is None else ratio >= TASKWARRIOR_TARGET),
                     verdict(None if growth is None else growth <= GROWTH_TARGET)]
                print(f"{b:<9} {cmd:<28} {fmt_ms(med):>10} {v[0]:>6} "
                      f"{('-' if t is None else fmt_ms(tw_med)):>9} "
                      f"{('-' if ratio is None else f'{ratio:.2f}x'):>7} {v[1]:>4} "
                      f"{('-' if growth is None else f'{growth:.2f}x'):>7} {v[2]:>6}"
                      + ("" if b == "database" else "  (reference)"))
                if med is None:
                    print(f"{'':<9} FAILED: {r.error}")
                if b == "database":
                    ok = ok and med is not None and "FAIL" not in v
    print("\n== builds, migrations, doctor")
    for what, fig in builds:
        print(f"{what:<80} {fig:>8}")
    for n, what, took, detail in migrations:
        if took is None:
            print(f"migration {what:<70} FAILED: {detail}")
            ok = False
            continue
        mark = verdict(took < MIGRATION_TARGET_S)
        note = "" if n >= 10_000 else "  (reference: the target is for 10,000)"
        print(f"migration {what:<70} {took:>6.1f} s  {mark} (< {MIGRATION_TARGET_S:g} s)"
              f"{note}; {detail}")
        if n >= 10_000:
            ok = ok and took < MIGRATION_TARGET_S
    for what, result in doctors:
        print(f"milestone doctor on {what:<61} {result}")
        ok = ok and result == "healthy"
    for msg in skipped:
        print(msg)
        ok = False
    return ok


if __name__ == "__main__":
    sys.exit(main())

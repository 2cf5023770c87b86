"""Scale benchmark: the ``milestone`` CLI on projects of 10,000 to 100,000 tasks, in two
shapes (10 and 50 tasks a milestone), beside Taskwarrior with as many tasks: medians,
peak memory, warm and cold reads, and the time and memory to migrate the large project.

Run it with ``python bench/scale.py [--runs N] [--shapes 1000x10,10000x10]`` from the
project's virtualenv. ``--quick`` is 1,000 milestones x 10 tasks only, 3 runs (a minute
or two). The default (``--shapes 1000x10,2000x10,10000x10,200x50,2000x50``, 5 runs,
Taskwarrior at every shape, the hybrid backend at 1000x10 only) took 19 minutes on 2
vCPUs at load average 8 (others' work): half of it the two 100,000-task shapes (build
about a minute each, Taskwarrior 1.5-6 s a command there), 2 minutes the migrations of
10,000 milestones. ``--no-taskwarrior-at-100k`` shortens it (about 3 minutes a shape at
that load), ``--shapes 1000x10,2000x10,10000x10`` leaves out the 50-task shapes, and
``--hybrid-shapes all`` times the hybrid backend everywhere (seconds a command at
100,000 tasks).

Shapes are MILESTONESxTASKS (tasks per milestone): 1,000 x 10 (10,000 tasks), 2,000 x 10
(20,000), 10,000 x 10 (100,000), 200 x 50 (10,000), 2,000 x 50 (100,000). ``--sizes``
(milestone counts) with ``--tasks`` (tasks per milestone) still work and name shapes of
one width. Every shape is built on the ``database`` backend; the ``hybrid`` backend (a
copy migrated with ``milestone storage migrate --to hybrid``) is timed at the shapes of
``--hybrid-shapes`` (1000x10: it reads the whole YAML state for most commands, seconds a
command at 100,000 tasks). The projects are built fast, but through the tool's own code:
one ``Txn`` of ``milestones.project`` records every change with ``Txn.record`` (the patch
from ``events.diff``, the event from ``events.make_event``) while the model's own
transitions (``model.start_task``, ``model.complete_task``, ``Txn.follow_status``) move
the tasks; the events are then sealed into a hash chain (``events.seal``) and bulk-loaded
with ``DatabaseStore.import_data``. The history: the first 30 % of the milestones are
completed (every task started, then done), the next 20 % in progress (3 tasks done, the
4th started), the rest planned; the second half of each milestone's tasks waits on the
first half, every 7th milestone's first task on the previous milestone's last, every 10th
milestone on the previous one; priorities, tags and due dates vary (some overdue). The
events are spread over the last 7 hours (so no scheduled backup, taken once every 24 h on
the database backend, is due during the run). ``milestone doctor`` must accept the first
shape on both backends (checked, and printed).

Commands, each a whole subprocess of the installed console script (children run with
PYTHONDONTWRITEBYTECODE removed, so bytecode caches are used), in the project directory:

* reads: ``status --json``, ``list --status in_progress``, ``next``, ``next --json
  --limit 10``, ``ready --json``, ``ready REF --json`` (REF: the current milestone, in
  progress), ``ready --limit 10 --json``, ``list --json``, ``list --limit 50 --json``;
  each timed twice: WARM, in rounds of reads only (nothing changed since the last round,
  so the query cache, ``database/cache.db`` keyed by the log head, can answer what it
  keeps), and COLD, each run right after an untimed write (``milestone note bench``: the
  log head moves, every cache is behind it);
* writes: ``task done REF`` (a different ready task each run: task 2..half of a planned
  milestone with no milestone dependency) and ``agent claim --agent bench --json`` (the
  agent registered once with ``agent register --name bench``; each claimed task is given
  back untimed with ``agent release REF``, so every run claims from the same project).

Each timed child is started by a small helper process (the benchmark's own process holds
the generated project, hundreds of MB, and a child started from it with vfork inherits
that peak in its ``ru_maxrss``), which times it and takes its ``os.wait4`` rusage: the
peak RSS shown is the child's own ``ru_maxrss`` (KiB on Linux, printed in MB). A child
started by vfork starts from its parent's peak, so the helper's own (about 17 MB: it reads
the children's output in pieces) is the floor of every figure; the table prints it.

Taskwarrior, with the same number of tasks (same titles, projects, priorities, tags and
statuses: done tasks completed, started ones active), imported with ``task import`` of
one JSON array into a private TASKRC/TASKDATA, is timed for its nearest commands:
``count`` (status --json), ``active`` (list --status in_progress), ``next`` (next),
``limit:10 next`` (next --limit 10), ``ready`` (ready), ``project:P ready`` (ready REF),
``limit:10 ready`` (ready --limit 10), ``export`` (list --json and list --limit 50: it
cannot page), ``UUID done`` (task done: a different pending task each run; gc renumbers
working ids, so a UUID names it) and ``UUID start`` (agent claim; stopped untimed after).
It has no query cache: it reads its files whole every time, so its reads are timed once,
in the warm rounds, and the warm and cold rows are both compared with them. Settings as in
``bench/cli_latency.py``: ``confirmation=off``, ``verbose=nothing``, ``hooks=off``,
``color=off``, ``news.version`` set; garbage collection stays ON (the default). The
Taskwarrior tasks carry NO dependencies unless ``--taskwarrior-depends``: Taskwarrior
2.6 checks dependencies in super-linear time (1.0 s per command at 10,000 tasks and
7.9 s at 20,000 with half the tasks depending on another), so with them every "x faster
than Taskwarrior" would mean nothing. Without them it is Taskwarrior's best case, the
harder comparison.

Every command runs ``--runs`` times (5) after one warm-up, interleaved round by round
with the others of its group (warm reads, cold reads, writes); the tables show medians of
the time and of the peak RSS, and the ratio to Taskwarrior of every command on every
backend and shape. Migrations (database -> hybrid, and back) run through the CLI
(``milestone storage migrate --to ...``) in a child, timed with its peak RSS, at every
shape of 10,000 milestones or more (at the last shape when none is that big).

Targets (issue 14), checked on the database backend and printed PASS/FAIL: every read
and ``task done`` under 100 ms at 100,000 tasks, warm and cold; every command at least 3x
faster than its Taskwarrior counterpart at 10,000 and 100,000 tasks; ``ready`` (all
three forms) under 60 ms at 20,000 tasks, warm and cold; the peak RSS of every read
under 150 MB at 100,000 tasks; the migration of 10,000 milestones under a minute (each
way); ``doctor`` healthy. A target whose shapes were not run says so. Growth (time at
100,000 tasks over 10,000, same shape width) is printed for reference. A command that
fails is printed as FAILED with its error; a shape whose build would take over
``--build-budget`` seconds (600) is skipped and says so. ``--profile "status --json"``
profiles that command (cProfile, in a child process) on the last database project and
prints where the time goes.
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
AGENT = "bench"
WARMUP = 1
LATENCY_TARGET_MS = 100.0  # every read and `task done`, at 100,000 tasks
READY_TARGET_MS = 60.0  # ready, at 20,000 tasks
RSS_TARGET_MB = 150.0  # every read, at 100,000 tasks
TASKWARRIOR_TARGET = 3.0  # at least this many times faster, at 10,000 and 100,000 tasks
MIGRATION_TARGET_S = 60.0  # 10,000 milestones
HISTORY_HOURS = 6.0  # events spread over the hours before the last one, 1 h ago
DEFAULT_SHAPES = "1000x10,2000x10,10000x10,200x50,2000x50"
READS = ("status --json", "list --status in_progress", "next", "next --json --limit 10",
         "ready --json", "ready REF --json", "ready --limit 10 --json", "list --json",
         "list --limit 50 --json")
READY = ("ready --json", "ready REF --json", "ready --limit 10 --json")
WRITES = ("task done", "agent claim")
COMMANDS = (*READS, *WRITES)
TW_OF = {  # milestone command -> Taskwarrior's nearest
    "status --json": "count",
    "list --status in_progress": "active",
    "next": "next",
    "next --json --limit 10": "limit:10 next",
    "ready --json": "ready",
    "ready REF --json": "project:P ready",
    "ready --limit 10 --json": "limit:10 ready",
    "list --json": "export",
    "list --limit 50 --json": "export",
    "task done": "UUID done",
    "agent claim": "UUID start",
}
MODES = ("warm", "cold")  # reads; writes are "write", Taskwarrior's reads "-"

Shape = tuple[int, int]  # (milestones, tasks per milestone)


def child_env() -> dict[str, str]:
    """The caller's environment, with bytecode caching back on."""
    env = dict(os.environ)
    for name in ("PYTHONDONTWRITEBYTECODE", "MILESTONE_DEBUG", "MILESTONE_UI",
                 "MILESTONE_DIR", "MILESTONE_AGENT_ID"):
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


def parse_shapes(text: str) -> list[Shape]:
    shapes: list[Shape] = []
    for part in text.split(","):
        if part.strip():
            n, _, per = part.strip().lower().partition("x")
            shapes.append((int(n), int(per)))
    return shapes


def shape_name(shape: Shape) -> str:
    return f"{shape[0]}x{shape[1]}"


def size_label(shape: Shape) -> str:
    n, per = shape
    return f"{n:,} milestones x {per} / {n * per:,} tasks"


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

# The helper that starts every timed child: small, so its children's ru_maxrss is theirs
# (a child started by vfork from a process inherits that process's peak RSS as its
# ru_maxrss floor: the helper reads the children's output in pieces to stay small).
SPAWNER = r"""
import json, os, resource, subprocess, sys, tempfile, time
for line in sys.stdin:
    req = json.loads(line)
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(req["argv"], env=req["env"], cwd=req["cwd"],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err)
        except OSError as exc:
            print(json.dumps({"ms": 0, "rss": 0, "rc": 127, "err": str(exc), "out": "",
                              "self": 0}), flush=True)
            continue
        kept = []
        while chunk := proc.stdout.read(65536):  # in pieces: this process stays small
            if req["keep"]:
                kept.append(chunk)
        _, status, usage = os.wait4(proc.pid, 0)
        ms = (time.perf_counter() - t0) * 1000
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        err.seek(0, 2)
        err.seek(max(0, err.tell() - 2000))
        msg = err.read().decode("utf-8", "replace")
    print(json.dumps({"ms": ms, "rss": usage.ru_maxrss, "rc": proc.returncode, "err": msg,
                      "out": b"".join(kept).decode("utf-8", "replace"),
                      "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}),
          flush=True)
"""


class Spawner:
    """Runs a command in a child of the helper process: its wall time (ms), its own peak
    RSS (KiB, from ``os.wait4``), exit code, stderr and (when asked) stdout."""

    def __init__(self) -> None:
        self.floor_kib = 0  # its own peak RSS: a child started by vfork starts from it
        self.proc = subprocess.Popen([sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=child_env())

    def run(self, argv: list[str], env: dict[str, str], cwd: Path,
            keep: bool = False) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": argv, "env": env, "cwd": str(cwd),
                                          "keep": keep}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("scale: the timing helper process died")
        result: dict[str, Any] = json.loads(line)
        self.floor_kib = max(self.floor_kib, result["self"])
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait()


def command_text(argv: list[str]) -> str:
    return " ".join(Path(a).name if i == 0 else a for i, a in enumerate(argv))


class Row:
    """One command on one tool in one mode; ``before`` (untimed, run first: the write
    that makes a read cold) and ``after`` (untimed, given the command's stdout: the
    release after a claim) keep every run alike."""

    def __init__(self, tool: str, label: str, mode: str, argv: Callable[[], list[str]], *,
                 env: dict[str, str], cwd: Path,
                 before: list[str] | None = None,
                 after: Callable[[str], list[str] | None] | None = None) -> None:
        self.tool = tool  # "database", "hybrid" or "taskwarrior"
        self.label = label
        self.mode = mode  # "warm", "cold", "write" or "-" (Taskwarrior's reads)
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.before = before
        self.after = after
        self.samples: list[float] = []
        self.rss: list[int] = []  # KiB
        self.error: str | None = None

    def untimed(self, argv: list[str]) -> bool:
        proc = subprocess.run(argv, env=self.env, cwd=self.cwd, capture_output=True)
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            self.error = (f"`{command_text(argv)}` (untimed) exited {proc.returncode}: "
                          f"{err[0] if err else '(no message)'}")
        return proc.returncode == 0

    def run_once(self, spawner: Spawner) -> tuple[float, int] | None:
        if self.error is not None:
            return None
        if self.before is not None and not self.untimed(self.before):
            return None
        argv = self.argv()
        got = spawner.run(argv, self.env, self.cwd, keep=self.after is not None)
        if got["rc"] != 0:
            err = got["err"].strip().splitlines()
            self.error = (f"`{command_text(argv)}` exited {got['rc']}: "
                          f"{err[0] if err else '(no message)'}")
            return None
        if self.after is not None:
            then = self.after(got["out"])
            if then is None:
                self.error = f"`{command_text(argv)}`: unexpected output {got['out'][:200]!r}"
                return None
            if not self.untimed(then):
                return None
        return got["ms"], got["rss"]

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def rss_mb(self) -> float | None:
        return statistics.median(self.rss) / 1024 if self.rss else None


def measure(rows: Sequence[Row], runs: int, spawner: Spawner) -> None:
    for _ in range(WARMUP):
        for row in rows:
            row.run_once(spawner)
    for _ in range(runs):  # interleaved, so drift hits every row alike
        for row in rows:
            got = row.run_once(spawner)
            if got is not None:
                row.samples.append(got[0])
                row.rss.append(got[1])


def release_of(script: str) -> Callable[[str], list[str] | None]:
    """After ``agent claim --json``: the command giving the claimed task back."""
    def after(out: str) -> list[str] | None:
        try:
            ref = json.loads(out).get("ref")
        except (ValueError, AttributeError):
            return None
        return [script, "agent", "release", ref, "--agent", AGENT] if ref else None
    return after


def migrate_timed(spawner: Spawner, script: str, env: dict[str, str], cwd: Path,
                  to: str) -> tuple[float | None, float | None, str]:
    """``milestone storage migrate --to TO --json`` in a child: seconds, peak RSS (MB)
    and what it says (or None, None and the error)."""
    got = spawner.run([script, "storage", "migrate", "--to", to, "--json"], env, cwd,
                      keep=True)
    if got["rc"] != 0:
        err = got["err"].strip().splitlines()
        return None, None, f"exit {got['rc']}: {err[-1] if err else '(no message)'}"
    try:
        events = json.loads(got["out"])["target"]["events"]
        detail = f"{events:,} events, verified"
    except (ValueError, KeyError, TypeError):
        detail = "verified"
    return got["ms"] / 1000, got["rss"] / 1024, detail


# ------------------------------------------------------------------ report


def fmt_ms(v: float | None) -> str:
    return "FAILED" if v is None else f"{v:.1f}"


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


def build_rows(shape: Shape, script: str, env: dict[str, str], roots: dict[str, Path],
               backends: list[str], state: Any, runs: int) -> dict[tuple[str, str, str], Row]:
    """The database (and hybrid) rows of one shape."""
    per = shape[1]
    todo = ready_refs(state, per, (WARMUP + runs) * len(backends))
    scope = state.current or sorted(state.milestones)[0]
    rows: dict[tuple[str, str, str], Row] = {}
    refs = iter(todo)
    for b in backends:
        if b not in roots:
            continue
        reg = subprocess.run([script, "agent", "register", "--name", AGENT, "--json"],
                             env=env, cwd=roots[b], capture_output=True, text=True)
        for cmd in COMMANDS:
            words = cmd.replace("REF", scope).split()
            if cmd == "task done":
                rows[(b, cmd, "write")] = Row(
                    b, cmd, "write", lambda it=refs: [script, "task", "done", next(it)],
                    env=env, cwd=roots[b])
            elif cmd == "agent claim":
                row = Row(b, cmd, "write",
                          lambda: [script, "agent", "claim", "--agent", AGENT, "--json"],
                          env=env, cwd=roots[b], after=release_of(script))
                if reg.returncode != 0:
                    row.error = f"agent register exited {reg.returncode}: {reg.stderr[:200]}"
                rows[(b, cmd, "write")] = row
            else:
                for mode in MODES:
                    rows[(b, cmd, mode)] = Row(
                        b, cmd, mode, lambda w=words: [script, *w], env=env, cwd=roots[b],
                        before=[script, "note", "bench"] if mode == "cold" else None)
    return rows


def tw_rows(tw: str, tw_env: dict[str, str], tw_dir: Path, uuids: list[str],
            project: str) -> dict[tuple[str, str, str], Row]:
    """Taskwarrior's rows, keyed by its own command (``TW_OF`` maps ours to it)."""
    rows: dict[tuple[str, str, str], Row] = {}
    pending = iter(uuids)
    started = uuids[-1]  # the oldest pending task; `task done` takes the newest first
    for twc in dict.fromkeys(TW_OF.values()):
        if twc == "UUID done":
            row = Row("taskwarrior", twc, "write", lambda it=pending: [tw, next(it), "done"],
                      env=tw_env, cwd=tw_dir)
        elif twc == "UUID start":
            row = Row("taskwarrior", twc, "write", lambda: [tw, started, "start"],
                      env=tw_env, cwd=tw_dir, after=lambda _out: [tw, started, "stop"])
        else:
            words = twc.replace("P", project).split()
            row = Row("taskwarrior", twc, "-", lambda w=words: [tw, *w], env=tw_env,
                      cwd=tw_dir)
        rows[("taskwarrior", twc, row.mode)] = row
    return rows


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per command (5)")
    parser.add_argument("--shapes", default=None,
                        help=f"MILESTONESxTASKS, comma-separated ({DEFAULT_SHAPES})")
    parser.add_argument("--sizes", default=None,
                        help="milestone counts, comma-separated, of --tasks tasks each "
                             "(instead of --shapes)")
    parser.add_argument("--tasks", type=int, default=10,
                        help="tasks per milestone for --sizes (10)")
    parser.add_argument("--backends", default="database,hybrid",
                        help="backends to time (database,hybrid)")
    parser.add_argument("--hybrid-shapes", default="1000x10",
                        help="shapes where the hybrid backend is timed, or 'all' (1000x10)")
    parser.add_argument("--quick", action="store_true", help="1000x10 only, 3 runs")
    parser.add_argument("--no-taskwarrior", action="store_true",
                        help="skip Taskwarrior even when installed")
    parser.add_argument("--no-taskwarrior-at-100k", action="store_true",
                        help="skip Taskwarrior on the shapes of 100,000 tasks or more "
                             "(its import and commands take the longest there)")
    parser.add_argument("--taskwarrior-depends", action="store_true",
                        help="give the Taskwarrior tasks the project's dependencies "
                             "(super-linear in Taskwarrior 2.6: very slow at scale)")
    parser.add_argument("--build-budget", type=float, default=600.0,
                        help="skip a shape whose build would take longer, seconds (600)")
    parser.add_argument("--profile", metavar="COMMAND", default=None,
                        help='cProfile this command on the last database project, '
                             'e.g. "status --json"')
    parser.add_argument("--keep", action="store_true",
                        help="keep the projects (their directory is printed)")
    args = parser.parse_args(argv)
    try:
        if args.sizes:
            shapes = [(int(s), args.tasks) for s in args.sizes.split(",") if s.strip()]
        else:
            shapes = parse_shapes(args.shapes or DEFAULT_SHAPES)
        hybrid_at = (None if args.hybrid_shapes.strip() == "all"
                     else set(parse_shapes(args.hybrid_shapes)))
    except ValueError:
        parser.error("--shapes/--hybrid-shapes: MILESTONESxTASKS, e.g. 1000x10,200x50")
    shapes = list(dict.fromkeys(shapes))
    runs = args.runs
    if args.quick:
        shapes, runs = [(1000, 10)], min(runs, 3)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if runs < 1 or not shapes or min(n for n, _ in shapes) < 10 or min(
            p for _, p in shapes) < 4:
        parser.error("--runs >= 1, shapes of >= 10 milestones of >= 4 tasks")
    if not set(backends) <= {"database", "hybrid"} or "database" not in backends:
        parser.error("--backends: database, or database,hybrid")
    script = find_script()
    env = child_env()
    tw = shutil.which("task") if not args.no_taskwarrior else None
    spawner = Spawner()  # before anything large is built: see SPAWNER
    began = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.2f} at start (other work on the machine makes "
          "the numbers noisy)")
    print(f"script {script}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
          f"shapes {', '.join(map(shape_name, shapes))}; {runs} runs")
    if tw:
        version = subprocess.run([tw, "--version"], capture_output=True, text=True).stdout
        print(f"taskwarrior {version.strip()}: private TASKRC/TASKDATA, confirmation=off, "
              f"verbose=nothing, hooks=off, color=off, gc on; dependencies "
              f"{'ON' if args.taskwarrior_depends else 'OFF (see the docstring)'}")
    elif not args.no_taskwarrior:
        print("taskwarrior: not installed (apt-get install taskwarrior), skipped")

    tmp = Path(tempfile.mkdtemp(prefix="milestone-scale-"))
    results: dict[Shape, dict[tuple[str, str, str], Row]] = {}
    builds: list[tuple[str, str]] = []  # (what, figure)
    migrations: list[tuple[Shape, str, float | None, float | None, str]] = []
    doctors: list[tuple[str, str]] = []
    skipped: list[str] = []
    profiled = ""
    last_build: tuple[int, float] | None = None
    big_enough = [s for s in shapes if s[0] >= 10_000] or [shapes[-1]]
    try:
        for shape in shapes:
            n, per = shape
            label = size_label(shape)
            if last_build is not None:
                guess = last_build[1] * n * per / last_build[0]
                if guess > args.build_budget:
                    msg = (f"{label}: SKIPPED, building it would take about {guess:.0f} s "
                           f"(> --build-budget {args.build_budget:.0f} s; extrapolated "
                           f"linearly from {last_build[0]:,} tasks)")
                    print(msg)
                    skipped.append(msg)
                    continue
            print(f"\n== {label}", flush=True)
            t0 = time.perf_counter()
            events, state = generate(n, per)
            gen_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            db_dir = tmp / f"database-{shape_name(shape)}"
            db_dir.mkdir()
            db_root = write_project(db_dir, "database", events, state)
            load_s = time.perf_counter() - t0
            last_build = (n * per, gen_s + load_s)
            builds.append((f"{shape_name(shape)}: generate {len(events):,} events",
                           f"{gen_s:.1f} s"))
            builds.append((f"{shape_name(shape)}: bulk import_data into the database backend",
                           f"{load_s:.1f} s"))
            print(f"built in {gen_s + load_s:.1f} s ({len(events):,} events); "
                  f"database {db_root / 'database' / 'milestones.db'}", flush=True)
            del events
            roots = {"database": db_dir}
            timed = ["database"]
            migrate_here = "hybrid" in backends and shape in big_enough
            if "hybrid" in backends and (hybrid_at is None or shape in hybrid_at
                                         or migrate_here):
                hy_dir = tmp / f"hybrid-{shape_name(shape)}"
                shutil.copytree(db_dir, hy_dir)
                took, mb, detail = migrate_timed(spawner, script, env, hy_dir, "hybrid")
                migrations.append((shape, "database -> hybrid", took, mb, detail))
                print(f"migrated a copy to hybrid: "
                      f"{'FAILED' if took is None else f'{took:.1f} s, {mb:.0f} MB'} "
                      f"({detail})", flush=True)
                if took is not None:
                    roots["hybrid"] = hy_dir
                    if hybrid_at is None or shape in hybrid_at:
                        timed.append("hybrid")
            if shape == shapes[0]:
                for b, d in roots.items():
                    verdict = doctor(script, env, d)
                    doctors.append((f"{shape_name(shape)}, {b}", verdict))
                    print(f"milestone doctor ({b}): {verdict}", flush=True)
            rows = build_rows(shape, script, env, roots, timed, state, runs)
            if tw and not (args.no_taskwarrior_at_100k and n * per >= 100_000):
                tw_dir = tmp / f"taskwarrior-{shape_name(shape)}"
                scope = state.current or sorted(state.milestones)[0]
                tw_env, uuids, count, imp_s = build_taskwarrior(
                    tw_dir, state, depends=args.taskwarrior_depends)
                builds.append((f"{shape_name(shape)}: task import of {count:,} tasks",
                               f"{imp_s:.1f} s"))
                print(f"taskwarrior: imported {count:,} tasks in {imp_s:.1f} s", flush=True)
                rows |= tw_rows(tw, tw_env, tw_dir, uuids, scope.replace("-", ""))
            t0 = time.perf_counter()
            # Warm reads in rounds of their own (nothing changes between them, as when one
            # looks twice); cold reads, each after an untimed `note`; then the writes.
            for group in ({"warm", "-"}, {"cold"}, {"write"}):
                measure([r for (_, _, m), r in rows.items() if m in group], runs, spawner)
            print(f"timed {len(rows)} rows x ({WARMUP} + {runs}) runs in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
            for row in rows.values():
                if row.error:
                    print(f"  FAILED {row.tool} {row.label} {row.mode}: {row.error}")
            results[shape] = rows
            if shape == shapes[-1] and args.profile:
                profiled = profile(env, roots["database"], args.profile)
            if migrate_here and "hybrid" in roots:
                took, mb, detail = migrate_timed(spawner, script, env, roots["hybrid"],
                                                 "database")
                migrations.append((shape, "hybrid -> database", took, mb, detail))
                print(f"migrated hybrid back to database: "
                      f"{'FAILED' if took is None else f'{took:.1f} s, {mb:.0f} MB'} "
                      f"({detail})", flush=True)
            del state
            for d in roots.values():  # the disk of a shared machine: one shape at a time
                if not args.keep:
                    shutil.rmtree(d, ignore_errors=True)
    finally:
        spawner.close()
        if args.keep:
            print(f"\nprojects kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ok = report(results, shapes, backends, runs, spawner.floor_kib / 1024)
    ok = report_rest(builds, migrations, doctors, skipped) and ok
    if profiled:
        print(f"\ncProfile of `milestone {args.profile}` on the database backend, "
              f"{size_label(shapes[-1])} (cumulative time, top entries):")
        print(profiled)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; total "
          f"{time.perf_counter() - began:.0f} s")
    print("every database target measured PASSES (- above: not measured)" if ok
          else "some database targets FAIL")
    return 0 if ok else 1


def verdict(passed: bool | None) -> str:
    return "-" if passed is None else ("PASS" if passed else "FAIL")


def row_keys(backends: list[str]) -> list[tuple[str, str, str]]:
    keys = []
    for tool in backends:
        for cmd in COMMANDS:
            for mode in (MODES if cmd in READS else ("write",)):
                keys.append((tool, cmd, mode))
    for twc in dict.fromkeys(TW_OF.values()):
        keys.append(("taskwarrior", twc, "write" if twc.startswith("UUID") else "-"))
    return keys


def tw_row(rows: dict[tuple[str, str, str], Row], cmd: str) -> Row | None:
    twc = TW_OF[cmd]
    return rows.get(("taskwarrior", twc, "write" if twc.startswith("UUID") else "-"))


def report(results: dict[Shape, dict[tuple[str, str, str], Row]], shapes: list[Shape],
           backends: list[str], runs: int, floor_mb: float) -> bool:
    """Print the tables and the targets; True when every database-backend target passes."""
    done = [s for s in shapes if s in results]
    if not done:
        return False
    width = 14
    cols = "".join(f" {shape_name(s):>{width}}" for s in done)
    head = f"{'tool':<11} {'command':<26} {'mode':<5}{cols}"
    # growth: for each width, the largest shape over the smallest
    pairs = {}
    for per in {p for _, p in done}:
        same = sorted(s for s in done if s[1] == per)
        if len(same) > 1:
            pairs[per] = (same[0], same[-1])
    grow = "".join(f" {f'{shape_name(b)}/{a[0]}':>{width}}" for a, b in pairs.values())
    for title, value in (("medians of the wall time, ms", "ms"),
                         ("medians of the peak RSS (ru_maxrss), MB", "mb")):
        extra = ("; growth for reference" if pairs else "") if value == "ms" else (
            f"; floor {floor_mb:.1f} MB, the timing helper's own peak")
        print(f"\n== {title}; {runs} runs after {WARMUP} warm-up; "
              f"columns MILESTONESxTASKS{extra}")
        line = head + (grow if value == "ms" else "")
        print(line)
        print("-" * len(line))
        for key in row_keys(backends):
            got = [results[s].get(key) for s in done]
            if not any(got):
                continue
            text = f"{key[0]:<11} {key[1]:<26} {key[2]:<5}"
            for r in got:
                v = None if r is None else (r.median if value == "ms" else r.rss_mb)
                text += f" {('-' if r is None else fmt_ms(v)):>{width}}"
            if value == "ms":
                for a, b in pairs.values():
                    ra, rb = results[a].get(key), results[b].get(key)
                    g = (rb.median / ra.median if ra and rb and ra.median and rb.median
                         else None)
                    text += f" {('-' if g is None else f'{g:.2f}x'):>{width}}"
            print(text)
    with_tw = [s for s in done if any(k[0] == "taskwarrior" for k in results[s])]
    if with_tw:
        print("\n== x faster than Taskwarrior (its median / ours; its reads are timed once "
              "and compared with our warm and cold ones)")
        line = (f"{'backend':<11} {'command':<26} {'mode':<5} {'taskwarrior':<16}"
                + "".join(f" {shape_name(s):>{width}}" for s in with_tw))
        print(line)
        print("-" * len(line))
        for key in row_keys(backends):
            if key[0] == "taskwarrior":
                continue
            text = f"{key[0]:<11} {key[1]:<26} {key[2]:<5} {TW_OF[key[1]]:<16}"
            cells = []
            for s in with_tw:
                r, t = results[s].get(key), tw_row(results[s], key[1])
                ratio = t.median / r.median if r and t and r.median and t.median else None
                cells.append("-" if ratio is None else f"{ratio:.1f}x")
            if any(c != "-" for c in cells):
                print(text + "".join(f" {c:>{width}}" for c in cells))
    return targets(results, done)


def targets(results: dict[Shape, dict[tuple[str, str, str], Row]],
            done: list[Shape]) -> bool:
    """The issue's targets on the database backend, each PASS/FAIL with its worst case."""
    checks: list[tuple[str, list[tuple[str, float | None, bool]]]] = []

    def db_rows(s: Shape, cmds: Sequence[str]) -> list[tuple[str, Row]]:
        return [(f"{shape_name(s)} {cmd} {mode}", r) for (tool, cmd, mode), r in
                results[s].items() if tool == "database" and cmd in cmds]

    big = [s for s in done if s[0] * s[1] >= 100_000]
    cases = [(name, r.median, r.median is not None and r.median < LATENCY_TARGET_MS)
             for s in big for name, r in db_rows(s, (*READS, "task done"))]
    checks.append((f"every read (warm, cold) and task done < {LATENCY_TARGET_MS:g} ms at "
                   "100,000 tasks", cases))
    cases = []
    for s in done:
        if s[0] * s[1] not in (10_000, 100_000):
            continue
        for name, r in db_rows(s, COMMANDS):
            t = tw_row(results[s], r.label)
            if t is None:
                continue
            ratio = t.median / r.median if r.median and t.median else None
            cases.append((name + f" vs {t.label}", ratio,
                          ratio is not None and ratio >= TASKWARRIOR_TARGET))
    checks.append((f">= {TASKWARRIOR_TARGET:g}x faster than Taskwarrior at 10,000 and "
                   "100,000 tasks", cases))
    cases = [(name, r.median, r.median is not None and r.median < READY_TARGET_MS)
             for s in done if s[0] * s[1] == 20_000 for name, r in db_rows(s, READY)]
    checks.append((f"ready (all three forms, warm, cold) < {READY_TARGET_MS:g} ms at 20,000 "
                   "tasks", cases))
    cases = [(name, r.rss_mb, r.rss_mb is not None and r.rss_mb < RSS_TARGET_MB)
             for s in big for name, r in db_rows(s, READS)]
    checks.append((f"peak RSS of every read < {RSS_TARGET_MB:g} MB at 100,000 tasks", cases))
    print("\n== targets on the database backend (worst case shown; every failure listed)")
    ok = True
    for what, found in checks:
        if not found:
            print(f"{'-':<5} {what}: not measured (no such shape, or no Taskwarrior)")
            continue
        bad = [c for c in found if not c[2]]
        if "faster" in what:
            worst = min(found, key=lambda c: c[1] if c[1] is not None else -1.0)
            fig = "FAILED" if worst[1] is None else f"{worst[1]:.1f}x"
        else:
            worst = max(found, key=lambda c: c[1] if c[1] is not None else float("inf"))
            unit = " MB" if "RSS" in what else " ms"
            fig = "FAILED" if worst[1] is None else f"{worst[1]:.1f}{unit}"
        print(f"{verdict(not bad):<5} {what}: {len(found) - len(bad)}/{len(found)}; worst "
              f"{worst[0]} {fig}")
        for name, value, _ in bad:
            print(f"{'':<7}FAIL {name}: {'FAILED' if value is None else f'{value:.1f}'}")
        ok = ok and not bad
    return ok


def report_rest(builds: list[tuple[str, str]],
                migrations: list[tuple[Shape, str, float | None, float | None, str]],
                doctors: list[tuple[str, str]], skipped: list[str]) -> bool:
    print("\n== builds, migrations (through the CLI, in a child: time, peak RSS), doctor")
    for what, fig in builds:
        print(f"{what:<70} {fig:>8}")
    ok = True
    for shape, what, took, mb, detail in migrations:
        name = f"migration {shape_name(shape)}: {what}"
        if took is None or mb is None:
            print(f"{name:<45} FAILED: {detail}")
            ok = False
            continue
        big = shape[0] >= 10_000
        mark = verdict(took < MIGRATION_TARGET_S)
        note = "" if big else "  (reference: the target is for 10,000 milestones)"
        print(f"{name:<45} {took:>6.1f} s {mb:>6.0f} MB  {mark} (< {MIGRATION_TARGET_S:g} s)"
              f"{note}; {detail}")
        if big:
            ok = ok and took < MIGRATION_TARGET_S
    for what, result in doctors:
        print(f"milestone doctor on {what:<50} {result}")
        ok = ok and result == "healthy"
    for msg in skipped:
        print(msg)
        ok = False
    return ok


if __name__ == "__main__":
    sys.exit(main())

"""`milestone execute`: agents working one milestone in parallel, until it is done.

What runs (``Executor``), all registered in the project's agent registry so
``milestone agent list`` shows them, and cleaned up at the end:

* N task-execution agents ``exec-<milestone>-<i>`` (kind ``executor``): each
  claims a ready task of the milestone, runs its ``run`` command (or the
  ``--command`` template) and completes it (exit 0; the result is the last line
  of output) or fails it (the reason is the exit status and the last line of
  output; ``Agents.fail`` re-queues it, then blocks and escalates it after
  ``agents.max_attempts``). Finishing a task and claiming the next is one store
  write (``complete(claim_next=True)``).
* a watchdog (part of the task agents, not registered): heartbeats every running
  task's agent at a third of its lease, kills a command's process group past
  ``--timeout`` or past the grace period of a stop.
* the progress monitor ``watch-<milestone>``: re-reads the milestone whenever the
  store's log head moves, for the progress bar and for what others changed
  (blocked, re-queued, claimed by an outside agent);
* the dependency validator ``deps-<milestone>``: re-runs the dependency rules when
  the plan changes under it (a hand edit, another person's command) and blocks
  (``invalid_dependency``) the tasks whose dependencies became invalid;
* the blocker detector ``blockers-<milestone>``: ``blockers.detect`` every few
  seconds, each finding reported once with ``Agents.report_blocker``;
* with ``--git``, the task agents share one ``gitops.GitIntegration``: a task runs
  in a worktree of its own, is committed, and merged into the milestone branch
  *before* it is completed. A task is claimable only once its dependencies are
  done, so it starts from a branch holding their work and is merged after them:
  merges follow dependency order. A merge conflict blocks the task
  (``merge_conflict``) with the paths named.

Why threads in one process, not one process per agent: the commands run as
subprocesses anyway (in process groups of their own), so a thread only holds the
GIL for the coordination steps, which the project's writer lock serialises in
any case. Each thread opens a ``Project`` of its own (its own store, database
connection and lock descriptor; nothing of the store is shared between threads),
so the claims are exactly as safe as between processes, and an external agent
may join through ``milestone agent``. Threads share what processes would need
IPC for: a wake-up that hands a waiting agent the turn the moment another
finishes a task (no polling of the store), an in-process gate in front of the
writer lock (threads queue on it instead of polling the lock file), the live
view's board, and the stop flag. A crash of the whole process is what the
leases and ``--resume`` are for.

Task data reaches a command only in environment variables, never pasted into
the shell text: ``MILESTONE_TASK_ID`` (full reference), ``MILESTONE_TASK_TITLE``,
``MILESTONE_TASK_PROMPT`` (the claim's prompt), ``MILESTONE_MILESTONE_ID``,
``MILESTONE_AGENT_ID``, ``MILESTONE_TASK_TOKEN``, ``MILESTONE_WORKDIR`` (where it
runs) and ``MILESTONE_DIR`` (the project, so `milestone` inside a git worktree
still talks to it). Its output (stdout and stderr, interleaved as written) is
appended to ``.milestones/logs/agents/<milestone>-<task>.log``, a header per
attempt.

Stopping (Ctrl-C or SIGTERM: ``stop()``): no new claims; running commands get
``grace`` seconds to finish, then their process groups are killed and their
claims released; the agents are cleaned up and a note records where the run
stopped (every write refreshes the session-resume record). ``--resume`` releases
the claims still held under the executor's agent names (a crashed run) and
carries on; after a clean stop a plain run carries on as well.

Exit codes (``summary()["exit_code"]``): 0 every task of the milestone is done;
9 the run ended with tasks left that nothing here can move (blocked, failed too
often, or waiting on them); 130 stopped by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .. import model as md
from ..errors import Conflict, InvalidInput, MilestoneError, PermissionDenied, ValidationFailed
from ..model import refs
from ..storage import fsutil
from ..ui import plural
from .coord import Agents

if TYPE_CHECKING:
    from ..project import Project
    from .git import GitIntegration

T = TypeVar("T")

EXIT_DONE = 0
EXIT_LEFT = 9
EXIT_STOPPED = 130
DEFAULT_AGENTS = 4
MAX_AGENTS = 64
DEFAULT_GRACE = 10.0
KILL_AFTER = 3.0  # seconds between SIGTERM and SIGKILL of a command's process group
PROMPT_LIMIT = 100_000  # characters: one environment string may hold 128 KiB on Linux
RESULT_LIMIT = 500
TAIL_BYTES = 65536
RESUME_EVERY = 1.0  # seconds: the run refreshes the session-resume record at most this often
SERVICES = {"monitor": ("watch", "monitor"), "validator": ("deps", "dependency-validator"),
            "detector": ("blockers", "blocker-detector")}
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x1f\x7f]")
# A command the shell would only split into words (no quotes, variables, globs,
# redirections, ...) is run directly, as make does: one process less per task.
_SIMPLE = re.compile(r"[A-Za-z0-9_./:=,+@%-]+(?: [A-Za-z0-9_./:=,+@%-]+)*")
_SHELL_WORDS = frozenset([  # builtins and keywords: the shell's own meaning wins
    ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done",
    "echo", "elif", "else", "esac", "eval", "exec", "exit", "export", "false", "fc", "fg",
    "fi", "for", "getopts", "hash", "if", "in", "jobs", "kill", "local", "printf", "pwd",
    "read", "readonly", "return", "set", "shift", "test", "then", "times", "trap", "true",
    "type", "ulimit", "umask", "unalias", "unset", "until", "wait", "while"])


def _stamp(when: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if when is None else when, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def clean_line(text: str, limit: int = RESULT_LIMIT) -> str:
    """One printable line: escape sequences and control characters dropped, cut."""
    line = " ".join(_CONTROL.sub(" ", text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def last_line(path: Path, start: int) -> str:
    """The last non-blank line written to ``path`` since offset ``start``."""
    try:
        with fsutil.open_read(path) as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(start, size - TAIL_BYTES))
            data = f.read()
    except (OSError, MilestoneError):
        return ""
    for raw in reversed(data.decode("utf-8", "replace").splitlines()):
        line = clean_line(raw)
        if line:
            return line
    return ""


# ------------------------------------------------------------------ options, view


@dataclass
class Options:
    """How ``Executor`` runs (the CLI's options)."""

    agents: int = DEFAULT_AGENTS
    command: str | None = None  # a template run for every task instead of its ``run``
    git: bool = False
    timeout: float | None = None  # seconds a command may run
    grace: float = DEFAULT_GRACE  # seconds running commands get after a stop
    resume: bool = False
    lease: int | None = None  # the agents' lease (default: agents.lease_seconds)
    poll: float = 0.5  # a waiting agent looks again at least this often
    check_every: float = 1.0  # the dependency validator's period
    detect_every: float = 3.0  # the blocker detector's period
    watch_every: float = 0.25  # the monitor's period
    blocker_conf: Mapping[str, Any] | None = None  # overrides of the config's ``blockers``
    approve_commands: bool = False  # run (and approve) commands not yet approved here


@dataclass(frozen=True)
class Change:
    """One line of the live view: an agent claimed, completed, failed ... a task."""

    kind: str
    ref: str | None = None
    agent: str | None = None
    text: str = ""
    at: float = field(default_factory=time.monotonic)
    done: int = 0
    total: int = 0


class Board:
    """What the live view shows. Agents post changes and set their rows; the view
    reads ``snapshot()``; listeners (the simple view's printer) hear every change."""

    def __init__(self, names: Sequence[str]) -> None:
        self._lock = threading.RLock()  # a signal handler may print while a row is set
        now = time.monotonic()
        self.started = now
        self.rows: dict[str, dict[str, Any]] = {
            n: {"agent": n, "id": None, "ref": None, "title": "", "status": "starting",
                "since": now} for n in names}
        self.counts = {"total": 0, "done": 0, "blocked": 0, "in_progress": 0}
        self.recent: deque[Change] = deque(maxlen=6)
        self.listeners: list[Callable[[Change], None]] = []

    def listen(self, fn: Callable[[Change], None]) -> None:
        self.listeners.append(fn)

    def row(self, name: str, **values: Any) -> None:
        with self._lock:
            row = self.rows[name]
            if "status" in values and values["status"] != row["status"]:
                row["since"] = time.monotonic()
            row.update(values)

    def set_counts(self, **counts: int) -> None:
        with self._lock:
            self.counts.update(counts)

    def post(self, kind: str, ref: str | None = None, agent: str | None = None,
             text: str = "") -> None:
        with self._lock:
            if kind == "completed":
                self.counts["done"] = min(self.counts["done"] + 1, self.counts["total"])
            change = Change(kind, ref, agent, text, done=self.counts["done"],
                            total=self.counts["total"])
            self.recent.append(change)
            for fn in self.listeners:
                with contextlib.suppress(Exception):  # a view never stops the work
                    fn(change)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            rows = [dict(r, elapsed=now - r["since"]) for r in self.rows.values()]
            return {"rows": rows, "counts": dict(self.counts), "recent": list(self.recent),
                    "elapsed": now - self.started}


class _Queued:
    """An agent step waiting to be written (``Executor._agent_step``)."""

    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[Agents], Any]) -> None:
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


@dataclass
class _Running:
    """A command the watchdog looks after."""

    name: str
    proc: subprocess.Popen[bytes]
    ref: str
    log: Path
    deadline: float | None
    beat_every: float
    next_beat: float
    killed: str | None = None  # "timeout" | "stopped"
    term_at: float = 0.0
    hard: bool = False
    exited: bool = False


# ---------------------------------------------------------------------- schedule


def _full(mid: str, dep: str) -> str:
    return dep if "/" in dep else f"{mid}/{dep}"


def outside_waits(milestones: Mapping[str, Any], mid: str) -> list[str]:
    """Unfinished work outside milestone ``mid`` that its tasks wait on."""
    snap = milestones[mid]
    waits = []
    for d in snap.get("depends_on") or ():
        status = (milestones.get(d) or {}).get("status", "missing")
        if status not in ("completed", "archived"):
            waits.append(f"{d} ({status})")
    status = {f"{m}/{t['id']}": t["status"] for m, s in milestones.items()
              for t in s.get("tasks", ())}
    for t in snap.get("tasks", ()):
        if t["status"] in md.FINISHED_TASK:
            continue
        for d in t.get("depends_on") or ():
            ref = _full(mid, d)
            if not ref.startswith(mid + "/") and status.get(ref) not in md.FINISHED_TASK:
                waits.append(f"{ref} ({status.get(ref, 'missing')})")
    return sorted(set(waits))


def schedule(project: Project, ref: str, *, agents: int = DEFAULT_AGENTS,
             command: str | None = None) -> dict[str, Any]:
    """What ``execute`` would do, without doing it: the open tasks in waves (each
    wave's tasks depend only on earlier waves, so they may run side by side), the
    critical path by estimates, and what would make the run refuse to start."""
    st = project.state()
    mid = refs.resolve_milestone(ref, st.milestones)
    snap = st.milestones[mid]
    tasks = {f"{mid}/{t['id']}": t for t in snap.get("tasks", ())
             if t["status"] not in md.FINISHED_TASK}
    edges = {r: [d for d in (_full(mid, x) for x in t.get("depends_on") or ()) if d in tasks]
             for r, t in tasks.items()}
    level: dict[str, int] = {}
    for r in md.topological_order(edges):  # DependencyError names a cycle
        level[r] = 1 + max((level[d] for d in edges[r]), default=-1)
    waves: list[dict[str, Any]] = []
    for r in sorted(tasks, key=lambda r: (level[r], md.task_number(r.split("/")[1]))):
        t = tasks[r]
        while len(waves) <= level[r]:
            waves.append({"wave": len(waves) + 1, "tasks": []})
        waves[level[r]]["tasks"].append({
            "ref": r, "title": t["title"], "status": t["status"],
            "estimate": t.get("estimate"), "depends_on": edges[r],
            "command": command or t.get("run")})
    view = project.show_view(mid)["milestone"]
    feas = view.get("feasibility") or {}
    waiting: list[tuple[str, str]] = []
    try:
        refuse = None
        ex = Executor(project, mid, Options(agents=agents, command=command))
        waiting = ex.unapproved_commands()
        ex.check(others=False)
    except MilestoneError as exc:
        refuse = str(exc)
    return {"schema": 1, "milestone": mid, "title": snap["title"], "agents": agents,
            "open": len(tasks), "waves": waves,
            "widest": max((len(w["tasks"]) for w in waves), default=0),
            "critical_path": [r for r in view.get("critical_path", ()) if r in tasks],
            "critical_path_hours": feas.get("critical_path_hours"),
            "remaining_hours": feas.get("remaining_hours"),
            "waiting_on": outside_waits(st.milestones, mid), "refuse": refuse,
            "unapproved": [{"where": w, "command": c} for w, c in waiting]}


# ---------------------------------------------------------------------- executor


class Executor:
    """Works milestone ``ref`` of ``project`` with agents in threads: ``check()``,
    ``start()``, ``wait()`` (or ``run()`` for all three); ``stop()`` from a signal
    handler or another thread; ``board`` for a live view."""

    def __init__(self, project: Project, ref: str, options: Options | None = None) -> None:
        self.project = project
        self.opts = options or Options()
        if not 1 <= self.opts.agents <= MAX_AGENTS:
            raise InvalidInput(f"--agents {self.opts.agents} is out of range",
                               hint=f"give 1 to {MAX_AGENTS}")
        # `not 0 < x` also refuses NaN; infinity is no number of seconds either.
        if self.opts.timeout is not None and not 0 < self.opts.timeout < float("inf"):
            raise InvalidInput(f"--timeout {self.opts.timeout:g} is not a positive number "
                               "of seconds", hint="for example --timeout 600")
        if not 0 <= self.opts.grace < float("inf"):
            raise InvalidInput(f"--grace {self.opts.grace:g} is not a number of seconds",
                               hint="give seconds, 0 to kill at once")
        if self.opts.command is not None and not self.opts.command.strip():
            raise InvalidInput("--command is empty",
                               hint="give a shell command, e.g. "
                                    "--command 'make \"$MILESTONE_TASK_ID\"'")
        st = project.state()
        self.mid = refs.resolve_milestone(ref, st.milestones)
        self.root = project.root
        self.workdir = project.root.parent
        self.names = [f"exec-{self.mid}-{i}" for i in range(1, self.opts.agents + 1)]
        self.services = {role: f"{prefix}-{self.mid}" for role, (prefix, _k) in SERVICES.items()}
        self.board = Board(self.names)
        self.ids: dict[str, str] = {}
        self.git: GitIntegration | None = None
        self._shared = project.store.backend == "memory"  # one object: nothing to reopen
        self._gate = threading.Lock()
        self._queue: list[_Queued] = []  # agent steps waiting for the gate (_agent_step)
        self._queue_lock = threading.Lock()
        self._writer_agents: Agents | None = None  # see _writer
        self._wake = threading.Condition()
        self._wakeups = 0
        self._stop = threading.Event()  # no new claims
        self._kill = threading.Event()  # kill running commands now
        self._over = threading.Event()  # done, or nothing left that can move: agents leave
        self._finished = threading.Event()  # the agents left: services end
        self._stop_at = 0.0
        self.stop_reason: str | None = None
        self._stuck = False
        self._running: dict[str, _Running] = {}
        self._run_lock = threading.Lock()
        self._attempts: list[dict[str, Any]] = []
        self._attempts_lock = threading.Lock()
        self.errors: list[str] = []
        self._agent_threads: list[threading.Thread] = []
        self._service_threads: list[threading.Thread] = []
        self._t0 = 0.0
        self._t1 = 0.0
        self._checked: tuple[Any, float] = (None, 0.0)  # the validator's last head, time
        self._paused: set[tuple[str, str]] = set()  # (task, rule code) the validator blocked
        self._reported: set[tuple[str, str]] = set()  # (task, rule) the detector reported
        self._approved: set[str] = set()  # commands known approved (see approvals.py)

    # ------------------------------------------------------------ plumbing

    def _open(self) -> Project:
        """A Project of the calling thread's own (the memory store is the one object)."""
        if self._shared:
            return self.project
        return self.project.another()

    def _step(self, fn: Callable[[], T]) -> T:
        """A write of our own that is not an agent's step: under the gate."""
        with self._gate:
            return fn()

    def _writer(self) -> Agents:
        """Whose store writes a batch: one store object for every batch, whichever
        thread runs it (one at a time, under the gate). It keeps what it wrote last:
        on the YAML backends the state (no re-read of state.json) and the YAML of
        the tasks a write did not change, on the database the milestone's snapshot
        (no decoding of every task row)."""
        if self._writer_agents is None:
            p = self._open()
            p.resume_every = RESUME_EVERY
            self._writer_agents = Agents(p)
        return self._writer_agents

    def _agent_step(self, fn: Callable[[Agents], T]) -> T:
        """An agent's coordination step (claim, complete, heartbeat, ...), written
        together with the steps our other threads queue meanwhile (flat combining):
        the thread that gets the gate runs every queued step as one batch through
        the writer (``_writer``: one lock, one sweep, one commit); the threads
        whose steps it ran find their results. Eight agents finishing tasks at once
        make one write, not eight in a row."""
        item = _Queued(fn)
        with self._queue_lock:
            self._queue.append(item)
        with self._gate:
            if not item.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                writer = self._writer()
                try:
                    with writer.batch():
                        for q in batch:
                            try:
                                q.result = q.fn(writer)
                            except MilestoneError as exc:  # refused: the others stand
                                q.error = exc
                except BaseException as exc:  # the write did not happen: none stands
                    for q in batch:
                        q.error = exc
                finally:
                    for q in batch:
                        q.done = True
        if item.error is not None:
            raise item.error
        return cast(T, item.result)

    def _read(self, fn: Callable[[], T]) -> T:
        if self._shared:
            with self._gate:
                return fn()
        return fn()

    def _wake_one(self) -> None:
        with self._wake:
            self._wakeups = min(self._wakeups + 1, len(self.names))
            self._wake.notify()

    def _wake_all(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _idle(self, rounds: int) -> None:
        """Wait for a wake-up (another of our agents finished or gave back work) or,
        for what others do, the poll: ``poll`` doubled each idle round, to 4x."""
        with self._wake:
            if not self._wakeups and not self._leaving():
                self._wake.wait(self.opts.poll * 2 ** min(rounds, 2))
            if self._wakeups:
                self._wakeups -= 1

    def _leaving(self) -> bool:
        return self._stop.is_set() or self._over.is_set()

    def _error(self, where: str, exc: BaseException) -> None:
        text = clean_line(f"{where}: {exc}", 1000)
        self.errors.append(text)
        self.board.post("error", None, where, text)

    # -------------------------------------------------------------- checks

    def check(self, *, others: bool = True) -> None:
        """Refuse, in one clear line, a run that cannot go well: validation errors, an
        open task with no command, work outside the milestone it waits on, another
        executor on the milestone (``others``; ``--resume`` takes over)."""
        report = self.project.validate(self.mid, severities=("error",))
        errors = [f for f in report["findings"] if f["severity"] == "error"]
        if errors:
            first = errors[0]
            more = f" (and {len(errors) - 1} more)" if errors[1:] else ""
            raise ValidationFailed(
                f"{self.mid} does not validate: {first['location']}: {first['code']} "
                f"{first['message']}{more}",
                hint=f"fix it and run again; `milestone validate {self.mid}` lists everything")
        st = self.project.state()
        snap = st.milestones[self.mid]
        if snap["status"] == "cancelled":
            raise ValidationFailed(f"{self.mid} is cancelled",
                                   hint=f"`milestone update {self.mid} --status planned` first")
        open_tasks = [t for t in snap.get("tasks", ()) if t["status"] not in md.FINISHED_TASK]
        if self.opts.command is None:
            missing = [t["id"] for t in open_tasks if not (t.get("run") or "").strip()]
            if missing:
                n = len(missing) - 1
                more = f" (and {n} more task{'s' if n > 1 else ''})" if n else ""
                raise InvalidInput(
                    f"{self.mid}/{missing[0]} has no run command{more}",
                    hint="give --command TEMPLATE (task data arrives in $MILESTONE_TASK_ID, "
                         "$MILESTONE_TASK_PROMPT, ...), or `milestone task edit "
                         f"{self.mid}/{missing[0]} --run CMD`")
        waits = outside_waits(st.milestones, self.mid)
        if waits:
            more = f" (and {len(waits) - 3} more)" if waits[3:] else ""
            raise ValidationFailed(
                f"{self.mid} waits on work outside it: {', '.join(waits[:3])}{more}",
                hint="finish that first (or `milestone execute` its milestone), then run again")
        waiting = self.unapproved_commands()
        if waiting and not self.opts.approve_commands:
            shown = "; ".join(f"{where}: {cmd!r}" for where, cmd in waiting[:3])
            more = f" (and {len(waiting) - 3} more)" if waiting[3:] else ""
            raise PermissionDenied(
                f"{len(waiting)} command(s) from the plan not approved on this machine "
                f"(set by a hand edit, a pull, a restore or an import): {shown}{more}",
                hint=f"read them (`milestone execute {self.mid} --dry-run` lists every "
                     "command), then run again with --approve-commands")
        if others and not self.opts.resume:
            mine = set(self.services.values())
            for a in Agents(self.project).roster():
                if a["status"] == "live" and (a["name"] in mine or
                                              a["name"].startswith(f"exec-{self.mid}-")):
                    raise Conflict(
                        f"an executor is already working {self.mid}: {a['name']} ({a['id']}) "
                        f"was last seen {a.get('last_seen')}",
                        hint="wait for it to finish; if it crashed, pass --resume")

    def _commands(self) -> list[tuple[str, str]]:
        """(where, command) of every command from the plan this run would execute:
        the open tasks' ``run`` (unless --command) and the config's test command."""
        from . import blockers

        found: list[tuple[str, str]] = []
        if self.opts.command is None:
            snap = self.project.state().milestones[self.mid]
            found += [(f"{self.mid}/{t['id']}", t["run"]) for t in snap.get("tasks", ())
                      if t["status"] not in md.FINISHED_TASK and (t.get("run") or "").strip()]
        conf = self.opts.blocker_conf or {}
        if "test_command" not in conf:  # a caller's own test command is its own act
            cfg = blockers.settings(self.project.config(), conf)
            if cfg["test_command"] and "test_command" not in cfg["disabled"]:
                found.append(("blockers.test_command", cfg["test_command"]))
        return found

    def unapproved_commands(self) -> list[tuple[str, str]]:
        """(where, command) of the commands this run would execute that no person has
        approved on this machine (see ``milestones.project.approvals``)."""
        from ..project.approvals import unapproved

        found = [(w, c) for w, c in self._commands()
                 if c not in self._approved and c not in self.project.approved_runs]
        waiting = set(unapproved(self.root, [c for _w, c in found]))
        self._approved.update(c for _w, c in found if c not in waiting)
        return [(w, c) for w, c in found if c in waiting]

    def approve(self, commands: Sequence[str]) -> None:
        """A person approved these commands: run them now and in later runs."""
        from ..project.approvals import approve

        self._approved.update(commands)
        approve(self.root, commands)

    def _approved_now(self, command: str) -> bool:
        """Is ``command`` (met during the run: the plan may change under it) approved?"""
        if command in self._approved or command in self.project.approved_runs:
            return True
        from ..project.approvals import unapproved

        if unapproved(self.root, [command]):
            return False
        self._approved.add(command)
        return True

    # ----------------------------------------------------------- lifecycle

    def run(self) -> dict[str, Any]:
        """``check()``, ``start()``, ``wait()``: the summary."""
        self.check()
        self.start()
        return self.wait()

    def start(self) -> None:
        """Register the agents and start their threads."""
        self._t0 = time.monotonic()
        self.board.started = self._t0
        if self.opts.approve_commands:
            self.approve([c for _w, c in self.unapproved_commands()])
        ag = self._writer()  # no other thread yet: the gate is not needed
        if self.opts.resume:
            self._take_over(ag)
        if self.opts.git:
            from .git import GitIntegration

            self.git = GitIntegration(self.workdir, self.mid)
            self.git.prepare()
        snap = self.project.state().milestones[self.mid]
        # The executor runs whatever command it is given, so its agents take any task.
        skills = sorted({s for t in snap.get("tasks", ()) for s in t.get("skills") or ()})
        with ag.batch():  # every registration in one write
            for name in self.names:
                entry = ag.register(name, kind="executor", skills=skills,
                                    lease=self.opts.lease)
                self.ids[name] = entry["id"]
                self.board.row(name, id=entry["id"], status="idle")
            for role, name in self.services.items():
                entry = ag.register(name, kind=SERVICES[role][1], lease=self.opts.lease)
                self.ids[name] = entry["id"]
        self._count(snap)
        for t in snap.get("tasks", ()):
            if t["status"] == "in_progress" and not (t.get("execution") or {}).get("agent"):
                self.board.post("waiting", f"{self.mid}/{t['id']}", t.get("assignee"),
                                "in progress without an agent's claim: the run waits for it")
        for name in self.names:
            self._agent_threads.append(self._thread(self._agent, name))
        for fn in (self._watchdog, self._monitor, self._validator, self._detector):
            self._service_threads.append(self._thread(fn, fn.__name__.strip("_")))

    def _thread(self, fn: Callable[[str], None], name: str) -> threading.Thread:
        t = threading.Thread(target=fn, args=(name,), name=name, daemon=True)
        t.start()
        return t

    def _take_over(self, ag: Agents) -> None:
        """``--resume``: the agents of an earlier run are dead; release their claims."""
        mine = set(self.services.values())
        for a in ag.roster():
            if a["status"] != "gone" and (a["name"] in mine
                                          or a["name"].startswith(f"exec-{self.mid}-")):
                for ref in ag.cleanup(a["id"])["released"]:
                    self.board.post("released", ref, a["name"], "claim of the earlier run")

    def stop(self, reason: str = "interrupted") -> None:
        """Stop claiming; running commands get the grace period, then are killed. A
        second call kills them at once. Safe in a signal handler (takes no lock)."""
        if self._stop.is_set():
            self._kill.set()
            return
        self.stop_reason = reason
        self._stop_at = time.monotonic()
        self._stop.set()

    def wait(self) -> dict[str, Any]:
        """Until the agents are done (or stopped); then clean up; the summary."""
        told = False
        try:
            while True:
                alive = [t for t in self._agent_threads if t.is_alive()]
                if not alive:
                    break
                if self._stop.is_set() and not told:
                    told = True
                    running = len(self._running)
                    self.board.post("stopping", None, None,
                                    f"{self.stop_reason}: no new claims; "
                                    f"{plural(running, 'running task')} get "
                                    f"{self.opts.grace:g}s to finish")
                    self._wake_all()
                alive[0].join(0.1)
        finally:
            self._shutdown()
        return self.summary()

    def _shutdown(self) -> None:
        self._t1 = time.monotonic()
        self._over.set()
        self._finished.set()
        self._wake_all()
        for t in self._service_threads:
            t.join(10)
        if not self.stop_reason and (self._stuck or self.errors):
            # One last look, so that the summary names why what is left cannot move
            # (a run that ran out of work may end before the services' next turn).
            for name, last_pass in ((self.services["validator"],
                                     partial(self._validate_pass, force=True)),
                                    (self.services["detector"], self._detect_pass)):
                try:
                    last_pass(self.project)
                except MilestoneError as exc:
                    self._error(name, exc)
        leaving = [n for n in (*self.names, *self.services.values()) if n in self.ids]

        def leave(a: Agents) -> None:  # one write for all: each refused on its own
            for name in leaving:
                try:
                    a.cleanup(name)
                except MilestoneError as exc:
                    self._error(name, exc)

        try:
            self._agent_step(leave)
        except MilestoneError as exc:
            self._error("cleanup", exc)
        if self.git is not None:
            try:
                self.git.finish()
            except MilestoneError as exc:
                self._error("git", exc)
        c = self._final_counts()
        left = c["total"] - c["done"]
        if self.stop_reason:
            note = f"execute {self.mid} stopped: {c['done']} done, {left} left"
        elif left:
            note = (f"execute {self.mid} ended: {c['done']} done, {left} left "
                    f"({c['blocked']} blocked)")
        else:
            note = f"execute {self.mid} finished: {c['done']} done"
        try:
            self._step(lambda: self._writer().p.note(note))
        except MilestoneError as exc:
            self._error("note", exc)

    def _final_counts(self) -> dict[str, int]:
        snap = self._read(self.project.state).milestones[self.mid]
        return self._count(snap)

    def _count(self, snap: Mapping[str, Any]) -> dict[str, int]:
        tasks = snap.get("tasks", ())
        c = {"total": len(tasks),
             "done": sum(t["status"] in md.FINISHED_TASK for t in tasks),
             "blocked": sum(t["status"] == "blocked" for t in tasks),
             "in_progress": sum(t["status"] == "in_progress" for t in tasks)}
        self.board.set_counts(**c)
        return c

    # ---------------------------------------------------------- task agents

    def _claim(self, name: str) -> dict[str, Any]:
        return self._agent_step(lambda a: a.claim(name, self.mid, lease=self.opts.lease))

    def _agent(self, name: str) -> None:
        got: dict[str, Any] | None = None
        rounds = 0  # claims in a row that found nothing
        try:
            while not self._leaving():
                if got is None:
                    got = self._claim(name)
                if got["ref"] is None:
                    if got["open"] == 0:
                        self._over.set()  # every task is done
                        self._wake_all()
                        break
                    if got["held"] == 0:
                        # Nothing held anywhere and nothing claimable: what is left is
                        # blocked or waits on blocked work; only a person can move it.
                        self._stuck = True
                        self._over.set()
                        self._wake_all()
                        break
                    self.board.row(name, ref=None, title="", status="waiting")
                    self._idle(rounds)
                    rounds += 1
                    got = None
                    continue
                rounds = 0
                self._wake_one()  # more may be ready: let a waiting agent look
                got = self._work(name, got)
        except Exception as exc:  # an agent's failure ends that agent, not the run
            self._error(name, exc)
        finally:
            self.board.row(name, ref=None, title="",
                           status="stopped" if self.stop_reason else "finished")

    def _work(self, name: str, got: dict[str, Any]) -> dict[str, Any] | None:
        """Run one claimed task to its end; the next claim when it came with it."""
        ref, token, task = got["ref"], got["token"], got["task"]
        title = task["title"]
        attempt = int((task.get("execution") or {}).get("attempts", 0)) + 1
        self.board.row(name, ref=ref, title=title, status="running")
        self.board.post("claimed", ref, name, title)
        record: dict[str, Any] = {"ref": ref, "title": title, "agent": name, "attempt": attempt,
                                  "token": token}
        cwd = self.workdir
        if self.git is not None:
            try:
                cwd = self.git.worktree(ref)
            except MilestoneError as exc:
                self._fail(name, record, f"git worktree: {exc}", 0.0)
                return None
        command = self.opts.command or task.get("run") or ""
        if self.opts.command is None and not self._approved_now(command):
            # changed under the run (a hand edit, a pull): a person approves it first
            self._fail(name, record, "its run command is not approved on this machine — "
                       f"read it, then `milestone execute {self.mid} --approve-commands`", 0.0)
            return None
        code, killed, seconds, last = self._run(name, got, command, cwd, attempt)
        record.update(exit_code=code, seconds=round(seconds, 3), log=self._log_rel(ref))
        if killed == "stopped":
            self._release(name, record)
            return None
        if killed == "timeout":
            self._fail(name, record, f"timed out after {self.opts.timeout:g}s"
                       + (f"; last output: {last}" if last else ""), seconds)
            return None
        if code != 0:
            why = f"exit {code}" if code >= 0 else f"killed by signal {-code}"
            self._fail(name, record, why + (f": {last}" if last else ""), seconds)
            return None
        if self.git is not None:
            merged = self._merge(name, record, ref, title)
            if not merged:
                return None
        result = last or "exit 0"
        more = not self._leaving()
        self.board.row(name, status="completing")
        try:
            done = self._agent_step(lambda a: a.complete(
                name, ref, token=token, result=result, time_spent=round(seconds),
                claim_next=more, scope=self.mid))
        except Conflict as exc:  # the claim was lost: a blocker, a lapsed lease
            self._lost(name, record, exc)
            return None
        record.update(status="completed", result=result)
        self._note(record)
        extra = f" ({record['commit'][:10]})" if record.get("commit") else ""
        self.board.post("completed", ref, name, f"{seconds:.1f}s: {result}{extra}")
        nxt: dict[str, Any] | None = done.get("next")
        return nxt

    def _fail(self, name: str, record: dict[str, Any], reason: str,
              seconds: float) -> None:
        reason = clean_line(reason, 1000)
        if self.git is not None:
            with contextlib.suppress(MilestoneError):
                self.git.remove_worktree(record["ref"])
        try:
            r = self._agent_step(lambda a: a.fail(name, record["ref"], token=record["token"],
                                           reason=reason))
        except Conflict as exc:
            self._lost(name, record, exc)
            return
        record.update(status="failed", reason=reason, seconds=round(seconds, 3))
        self._note(record)
        tail = "; blocked and escalated" if r["status"] == "blocked" else "; re-queued"
        self.board.post("failed", record["ref"], name,
                        f"attempt {r['attempts']}: {reason}{tail}")
        self._wake_one()  # re-queued: ready again

    def _release(self, name: str, record: dict[str, Any]) -> None:
        if self.git is not None:
            with contextlib.suppress(MilestoneError):
                self.git.remove_worktree(record["ref"])
        try:
            self._agent_step(lambda a: a.release(name, record["ref"], token=record["token"]))
        except Conflict as exc:
            self._lost(name, record, exc)
            return
        record.update(status="released")
        self._note(record)
        self.board.post("released", record["ref"], name, "stopped before it finished")

    def _lost(self, name: str, record: dict[str, Any], exc: MilestoneError) -> None:
        record.update(status="lost", reason=clean_line(exc.message, 1000))
        self._note(record)
        self.board.post("lost", record["ref"], name, clean_line(exc.message))

    def _merge(self, name: str, record: dict[str, Any], ref: str,
               title: str) -> bool:
        """Commit the task's work and merge it into the milestone branch (before the
        task is completed, so that its dependents start from its work)."""
        assert self.git is not None
        try:
            sha = self.git.commit_task(ref, title)
            record["commit"] = sha
            conflicts = self.git.merge(ref) if sha else []
        except MilestoneError as exc:
            self._fail(name, record, f"git: {exc}", record.get("seconds", 0.0))
            return False
        finally:
            with contextlib.suppress(MilestoneError):
                self.git.remove_worktree(ref)
        if not conflicts:
            if sha:
                self.board.post("merged", ref, name, f"{sha[:10]} into {self.git.branch}")
            return True
        reason = clean_line(f"merge conflict in: {', '.join(conflicts)}", 1000)
        record.update(status="conflict", reason=reason)
        self._note(record)
        self._agent_step(lambda a: a.report_blocker(ref, reason, rule="merge_conflict"))
        self.board.post("conflict", ref, name, reason)
        return False

    def _note(self, record: dict[str, Any]) -> None:
        with self._attempts_lock:
            self._attempts.append(dict(record))

    def _log_path(self, ref: str) -> Path:
        return self.root / "logs" / "agents" / f"{ref.replace('/', '-')}.log"

    def _log_rel(self, ref: str) -> str:
        return str(self._log_path(ref).relative_to(self.workdir))

    @staticmethod
    def _argv(command: str, env: Mapping[str, str]) -> list[str] | None:
        """The command as a program and its arguments when the shell would do no
        more than split it into words: the first word a program on PATH (not a
        shell builtin or keyword, not a path, not an assignment). None: run it
        with ``/bin/sh -c``."""
        if not _SIMPLE.fullmatch(command):
            return None
        words = command.split(" ")
        first = words[0]
        if first in _SHELL_WORDS or "/" in first or "=" in first:
            return None
        found = shutil.which(first, path=env.get("PATH", os.defpath))
        return [found, *words[1:]] if found else None

    def _env(self, name: str, got: Mapping[str, Any], cwd: Path) -> dict[str, str]:
        def plain(value: Any) -> str:
            return str(value).replace("\0", "")

        prompt = plain(got.get("prompt") or "")
        if len(prompt) > PROMPT_LIMIT:
            prompt = prompt[:PROMPT_LIMIT] + "\n[… prompt cut: `milestone show` has the rest]"
        env = dict(os.environ)
        env.update({
            "MILESTONE_TASK_ID": plain(got["ref"]),
            "MILESTONE_TASK_TITLE": plain(got["task"]["title"]),
            "MILESTONE_TASK_PROMPT": prompt,
            "MILESTONE_MILESTONE_ID": self.mid,
            "MILESTONE_AGENT_ID": self.ids[name],
            "MILESTONE_TASK_TOKEN": str(got["token"]),
            "MILESTONE_WORKDIR": str(cwd),
            "MILESTONE_DIR": str(self.root),
        })
        return env

    def _run(self, name: str, got: Mapping[str, Any], command: str, cwd: Path,
             attempt: int) -> tuple[int, str | None, float, str]:
        """Run the command (its own process group; output appended to the task's log)
        until it exits or the watchdog kills it: (exit code, why it was killed,
        seconds, last line of output)."""
        ref = str(got["ref"])
        log = self._log_path(ref)
        log.parent.mkdir(parents=True, exist_ok=True)
        header = (f"=== {ref} attempt {attempt} by {name} ({self.ids[name]}) at {_stamp()}\n"
                  f"=== cwd: {cwd}\n=== command: {command}\n")
        fd = fsutil.open_nofollow(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, header.encode("utf-8", "replace"))
            start_at = os.lseek(fd, 0, os.SEEK_END)
            began = time.monotonic()
            env = self._env(name, got, cwd)
            argv = self._argv(command, env)
            if argv is not None:
                env["PWD"] = str(cwd)  # what the shell would have set
            try:
                proc = subprocess.Popen(command if argv is None else argv, shell=argv is None,
                                        cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fd,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as exc:
                os.write(fd, f"=== could not start: {exc}\n".encode())
                return 127, None, 0.0, clean_line(f"could not start: {exc}")
            lease = float(got.get("lease") or 300)
            run = _Running(name, proc, ref, log,
                           began + self.opts.timeout if self.opts.timeout else None,
                           max(lease / 3, 1.0), began + max(lease / 3, 1.0))
            with self._run_lock:
                self._running[name] = run
            try:
                code = proc.wait()
            finally:
                with self._run_lock:
                    run.exited = True
                    self._running.pop(name, None)
            seconds = time.monotonic() - began
            last = last_line(log, start_at)
            end = f"killed ({run.killed})" if run.killed else f"exit {code}"
            os.write(fd, f"=== {end} after {seconds:.2f}s\n".encode())
            return code, run.killed, seconds, last
        finally:
            os.close(fd)

    # ------------------------------------------------------------- watchdog

    def _watchdog(self, _name: str) -> None:
        """Heartbeats for running tasks' agents; kills past --timeout or the grace."""
        while not self._finished.is_set():
            now = time.monotonic()
            stop_by = self._stop_at + self.opts.grace if self._stop.is_set() else None
            beats = []
            with self._run_lock:
                for run in self._running.values():
                    if run.exited:
                        continue
                    why = None
                    if self._kill.is_set() or (stop_by is not None and now >= stop_by):
                        why = "stopped"
                    elif run.deadline is not None and now >= run.deadline:
                        why = "timeout"
                    if why and run.killed is None:
                        run.killed, run.term_at = why, now
                        self._signal(run, signal.SIGTERM)
                    elif run.killed and not run.hard and now - run.term_at >= KILL_AFTER:
                        run.hard = True
                        self._signal(run, signal.SIGKILL)
                    elif run.killed is None and now >= run.next_beat:
                        run.next_beat = now + run.beat_every
                        beats.append(run.name)
            for name in beats:
                try:
                    self._agent_step(partial(Agents.heartbeat, who=name))
                except MilestoneError as exc:
                    self._error(f"heartbeat {name}", exc)
            self._finished.wait(0.05)

    @staticmethod
    def _signal(run: _Running, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.proc.pid, sig)

    # ------------------------------------------------------------- services

    def _service(self, role: str, every: float, body: Callable[[Project], None]) -> None:
        """A service agent's loop: ``body`` every ``every`` seconds, its heartbeat at a
        third of its lease, and whatever goes wrong reported, never raised."""
        name = self.services[role]
        try:
            p = self._open()
        except MilestoneError as exc:
            self._error(name, exc)
            return
        lease = float(self.opts.lease or Agents(p).conf["lease_seconds"])
        next_beat = time.monotonic() + lease / 3
        while True:
            try:
                body(p)
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + lease / 3
                    self._agent_step(lambda a: a.heartbeat(name))
            except MilestoneError as exc:
                self._error(name, exc)
            except Exception as exc:  # a service's failure must not end the run
                self._error(name, exc)
            if self._finished.wait(every):
                break

    def _monitor(self, _name: str) -> None:
        """Progress on every move of the log head, and what others changed."""
        seen: dict[str, tuple[str, int, str | None]] = {}
        last: list[Any] = [None]
        ours = set(self.ids.values())

        def body(p: Project) -> None:
            st = self._read(p.state)
            head = (st.last_event_id, st.last_hash)
            if head == last[0]:
                return
            last[0] = head
            snap = st.milestones.get(self.mid)
            if snap is None:
                return
            self._count(snap)
            for t in snap.get("tasks", ()):
                ref = f"{self.mid}/{t['id']}"
                ex = t.get("execution") or {}
                now = (t["status"], int(ex.get("lapsed", 0)), ex.get("agent"))
                before = seen.get(ref)
                seen[ref] = now
                if before is None or before == now:
                    continue
                if now[0] == "blocked" and before[0] != "blocked":
                    why = (t.get("blockers") or ["?"])[-1]
                    self.board.post("blocked", ref, None, clean_line(why))
                elif before[0] == "blocked" and now[0] != "blocked":
                    self.board.post("unblocked", ref, None, t["title"])
                elif now[1] > before[1]:
                    self.board.post("requeued", ref, before[2], "lease expired")
                elif now[0] == "in_progress" and now[2] and now[2] not in ours \
                        and before[2] != now[2]:
                    self.board.post("claimed", ref, now[2], t["title"])
                elif now[0] == "done" and before[0] != "done" \
                        and ex.get("completed_by") not in ours:
                    self.board.post("completed", ref, ex.get("completed_by"), t["title"])

        self._service("monitor", self.opts.watch_every, body)

    def _validator(self, _name: str) -> None:
        """The dependency rules again whenever the plan moved (and now and then)."""
        self._service("validator", self.opts.check_every, self._validate_pass)

    def _validate_pass(self, p: Project, force: bool = False) -> None:
        """Block (``invalid_dependency``) the open tasks whose dependencies the rules
        now find invalid: dangling or cyclic after a hand edit."""
        st = self._read(p.state)
        head = (st.last_event_id, st.last_hash)
        now = time.monotonic()
        if not force and head == self._checked[0] \
                and now - self._checked[1] < 5 * self.opts.check_every:
            return
        self._checked = (head, now)
        report = self._read(lambda: p.validate(self.mid, severities=("error",)))
        snap = st.milestones.get(self.mid) or {}
        tasks = {f"{self.mid}/{t['id']}": t for t in snap.get("tasks", ())}
        for f in report["findings"]:
            if f["family"] != "dependency" or f["severity"] != "error":
                continue
            ref = f.get("ref") or ""
            if ref == self.mid:  # the milestone's own dependencies: all its open tasks
                targets = [r for r, t in tasks.items() if t["status"] == "todo"]
            elif ref in tasks:
                targets = [ref]
            else:
                continue
            reason = clean_line(f"invalid dependency: {f['code']} {f['message']}", 1000)
            for r in targets:
                if tasks[r]["status"] in (*md.FINISHED_TASK, "blocked") \
                        or (r, f["code"]) in self._paused:
                    continue
                self._paused.add((r, f["code"]))
                self._agent_step(partial(Agents.report_blocker, ref=r, reason=reason,
                                             rule="invalid_dependency"))
                self.board.post("paused", r, self.services["validator"], reason)

    def _detector(self, _name: str) -> None:
        """``blockers.detect`` every few seconds."""
        self._service("detector", self.opts.detect_every, self._detect_pass)

    def _detect_pass(self, p: Project) -> None:
        """Report each finding of ``blockers.detect`` once (per task and rule)."""
        from . import blockers

        seen = {}
        with self._run_lock:
            logs = [(r.ref, r.log) for r in self._running.values()]
        for ref, log in logs:
            with contextlib.suppress(OSError):
                seen[ref] = _stamp(log.stat().st_mtime)  # output is activity
        git_root = self.git.root if self.git is not None else None
        conf = self.opts.blocker_conf
        if not (conf and "test_command" in conf):
            cmd = blockers.settings(p.config(), conf)["test_command"]
            if cmd and not self._approved_now(cmd):  # changed under the run: not run
                conf = {**(conf or {}), "test_command": None}
                if ("blockers.test_command", cmd) not in self._reported:
                    self._reported.add(("blockers.test_command", cmd))
                    self._error("blockers.test_command", PermissionDenied(
                        f"not run: {cmd!r} is not approved on this machine",
                        hint=f"`milestone execute {self.mid} --approve-commands` approves it"))
        found = self._read(lambda: blockers.detect(p, self.mid, conf=conf,
                                                   git_root=git_root, seen=seen))
        for f in found:
            if (f.ref, f.rule) in self._reported:
                continue
            self._reported.add((f.ref, f.rule))
            done = self._agent_step(partial(Agents.report_blocker, ref=f.ref,
                                               reason=f.reason, rule=f.rule, block=f.block))
            if done is not None:
                self.board.post("blocker", f.ref, self.services["detector"],
                                f"{f.rule}: {f.reason}")

    # -------------------------------------------------------------- summary

    def summary(self) -> dict[str, Any]:
        """What the run did: counts, wall time, each task's outcome, the exit code."""
        snap = self._read(self.project.state).milestones[self.mid]
        with self._attempts_lock:
            attempts = list(self._attempts)
        by_ref: dict[str, list[dict[str, Any]]] = {}
        for a in attempts:
            by_ref.setdefault(a["ref"], []).append(a)
        tasks = []
        for t in snap.get("tasks", ()):
            ref = f"{self.mid}/{t['id']}"
            ex = t.get("execution") or {}
            runs = by_ref.get(ref, [])
            commit = next((a["commit"] for a in reversed(runs) if a.get("commit")), None)
            tasks.append({
                "ref": ref, "title": t["title"], "status": t["status"],
                "result": ex.get("result"), "attempts": int(ex.get("attempts", 0)),
                "last_error": ex.get("last_error"), "blockers": list(t.get("blockers") or ()),
                "runs": len(runs), "seconds": round(sum(a.get("seconds") or 0 for a in runs), 3),
                "agent": runs[-1]["agent"] if runs else None, "commit": commit,
                "log": self._log_rel(ref) if runs else None})
        c = self._count(snap)
        left = c["total"] - c["done"]
        if self.stop_reason and left:  # stopped with every task finished: done, truly
            outcome, code = "stopped", EXIT_STOPPED
        elif left:
            outcome, code = "incomplete", EXIT_LEFT
        else:
            outcome, code = "done", EXIT_DONE
        end = self._t1 or time.monotonic()
        return {
            "schema": 1, "milestone": self.mid, "title": snap["title"], "outcome": outcome,
            "exit_code": code, "agents": len(self.names),
            "wall_seconds": round(end - self._t0, 3) if self._t0 else 0.0,
            "tasks_total": c["total"], "done": c["done"], "left": left,
            "blocked": c["blocked"],
            "completed": sum(a.get("status") == "completed" for a in attempts),
            "failed": sum(a.get("status") == "failed" for a in attempts),
            "stop_reason": self.stop_reason, "errors": list(self.errors),
            "branch": self.git.branch if self.git is not None else None,
            "tasks": tasks,
        }


@contextlib.contextmanager
def stop_on_signals(executor: Executor) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the executor (a second one kills running commands)."""
    handlers: dict[signal.Signals, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
        executor.stop("interrupted" if signum == signal.SIGINT else "terminated")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        handlers[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)


__all__ = ["DEFAULT_AGENTS", "EXIT_DONE", "EXIT_LEFT", "EXIT_STOPPED", "Board", "Change",
           "Executor", "Options", "clean_line", "outside_waits", "schedule", "stop_on_signals"]

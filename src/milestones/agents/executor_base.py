"""The executor's base: its state, plumbing (the project each thread opens, the
writer, waking agents) and the checks before a run (``Executor.check``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from .. import model as md
from ..errors import Conflict, InvalidInput, MilestoneError, PermissionDenied, ValidationFailed
from ..model import refs
from ..project.pooling import Pooled
from .coord import Agents

if TYPE_CHECKING:
    from ..project import Project
    from .git import GitIntegration
from .board import (
    MAX_AGENTS,
    POOLED,
    RESUME_EVERY,
    SERVICES,
    Board,
    Options,
    Queued,
    Running,
    T,
    clean_line,
    outside_waits,
)


class ExecutorBase:
    """State and plumbing shared by the task agents, the services and the lifecycle."""

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
        # On postgres the threads that read or write (the writer, the validator, the
        # detector: the agents' steps all go through the one writer) borrow from a
        # pool of as many connections, opened by start(), closed at the end.
        self.connections = Pooled(project, len(POOLED))
        self._gate = threading.Lock()
        self._queue: list[Queued] = []  # agent steps waiting for the gate (_agent_step)
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
        self._running: dict[str, Running] = {}
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

    def _open(self, *, dedicated: bool = False) -> Project:
        """A Project of the calling thread's own (the memory store is the one object),
        borrowing from the pool on postgres unless ``dedicated`` (one that waits on
        NOTIFY keeps its connection)."""
        if self._shared:
            return self.project
        if dedicated:
            return self.project.another()
        return self.connections.another()

    def _give_back(self, p: Project) -> None:
        """The end of ``p``'s step or pass: its connection back to the pool."""
        if not self._shared:
            self.connections.give_back(p)

    def _step(self, fn: Callable[[], T]) -> T:
        """A write of our own that is not an agent's step: under the gate."""
        with self._gate:
            try:
                return fn()
            finally:
                if self._writer_agents is not None:
                    self._give_back(self._writer_agents.p)

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
        item = Queued(fn)
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
                    self._give_back(writer.p)
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

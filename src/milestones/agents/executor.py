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
  (blocked, re-queued, claimed by an outside agent); on postgres a commit from any
  machine wakes it (LISTEN/NOTIFY), on the other backends it looks every
  ``watch_every`` seconds;
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
may join through ``milestone agent``. On postgres the writer's and the services'
stores borrow their connections from one pool for each step (``project.pooling``),
the monitor keeps one of its own for LISTEN. Threads share what processes would need
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
import signal
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import MilestoneError
from ..model import refs
from ..ui import plural
from .board import (
    DEFAULT_AGENTS,
    EXIT_DONE,
    EXIT_LEFT,
    EXIT_STOPPED,
    SERVICES,
    Board,
    Change,
    Options,
    clean_line,
    full_task_ref,
    outside_waits,
)
from .coord import Agents
from .services import Services

if TYPE_CHECKING:
    from ..project import Project


class Executor(Services):
    """Works milestone ``ref`` of ``project`` with agents in threads: ``check()``,
    ``start()``, ``wait()`` (or ``run()`` for all three); ``stop()`` from a signal
    handler or another thread; ``board`` for a live view."""

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
        self.connections.open()  # (postgres: the pool; closed by _shutdown)
        try:
            self._begin()
        except BaseException:
            self.connections.close()
            raise

    def _begin(self) -> None:
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
        self._give_back(ag.p)
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
        try:
            self._wind_up()
        finally:
            self.connections.close()

    def _wind_up(self) -> None:
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
    edges = {r: [d for d in (full_task_ref(mid, x) for x in t.get("depends_on") or ())
                 if d in tasks]
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



__all__ = ["DEFAULT_AGENTS", "EXIT_DONE", "EXIT_LEFT", "EXIT_STOPPED", "Board", "Change",
           "Executor", "Options", "clean_line", "outside_waits", "schedule", "stop_on_signals"]

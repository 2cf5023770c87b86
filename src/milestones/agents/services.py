"""The executor's three services: the monitor, the validator and the blocker detector.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import MilestoneError, PermissionDenied
from .coord import Agents

if TYPE_CHECKING:
    from ..project import Project
from .board import clean_line, stamp
from .task_agents import TaskAgents


class Services(TaskAgents):
    """Monitor, validator and detector, each a thread beside the task agents."""

    # ------------------------------------------------------------- services

    def _service(self, role: str, every: float, body: Callable[[Project], None],
                 wait: Callable[[Project], bool] | None = None) -> None:
        """A service agent's loop: ``body`` every ``every`` seconds (or, with ``wait``,
        whenever ``wait(p)`` says something happened: it waits at most ``every``
        seconds, on a connection of its own), its heartbeat at a third of its lease,
        and whatever goes wrong reported, never raised."""
        name = self.services[role]
        try:
            p = self._open(dedicated=wait is not None)
        except MilestoneError as exc:
            self._error(name, exc)
            return
        lease = float(self.opts.lease or Agents(p).conf["lease_seconds"])
        next_beat = time.monotonic() + lease / 3
        due = True
        while True:
            try:
                if due:
                    body(p)
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + lease / 3
                    self._agent_step(lambda a: a.heartbeat(name))
            except MilestoneError as exc:
                self._error(name, exc)
            except Exception as exc:  # a service's failure must not end the run
                self._error(name, exc)
            finally:
                self._give_back(p)
            if wait is None:
                if self._finished.wait(every):
                    break
                continue
            try:
                due = wait(p)
            except MilestoneError as exc:  # the connection was lost: look again soon
                self._error(name, exc)
                due = not self._finished.wait(every)
            if self._finished.is_set():
                break
        if not self._shared:  # its own store: a connection of its own closed
            with contextlib.suppress(Exception):
                self.connections.let_go(p)

    def _monitor(self, _name: str) -> None:
        """Progress on every move of the log head, and what others changed. On
        postgres it waits on NOTIFY (``wait_for_events``: a commit from any machine
        wakes it) and reads nothing while nothing happens; on the other backends it
        looks at the head every ``watch_every`` seconds."""
        seen: dict[str, tuple[str, int, str | None]] = {}
        last: list[Any] = [None]
        ours = set(self.ids.values())

        def woken(p: Project) -> bool:
            return p.wait_for_events(last[0][0] if last[0] else 0, self.opts.watch_every)

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

        notified = self.project.store.backend == "postgres"
        self._service("monitor", self.opts.watch_every, body, woken if notified else None)

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
                seen[ref] = stamp(log.stat().st_mtime)  # output is activity
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

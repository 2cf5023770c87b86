"""The task agents: claim a ready task, run its command, merge or fail it, and the
watchdog that stops a command past its time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import Conflict, MilestoneError
from ..storage import fsutil
from .board import (
    KILL_AFTER,
    PROMPT_LIMIT,
    SHELL_WORDS,
    SIMPLE,
    Running,
    clean_line,
    last_line,
    stamp,
)
from .coord import Agents
from .executor_base import ExecutorBase


class TaskAgents(ExecutorBase):
    """Each task agent's loop and the command it runs."""

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
        if not SIMPLE.fullmatch(command):
            return None
        words = command.split(" ")
        first = words[0]
        if first in SHELL_WORDS or "/" in first or "=" in first:
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
        header = (f"=== {ref} attempt {attempt} by {name} ({self.ids[name]}) at {stamp()}\n"
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
            run = Running(name, proc, ref, log,
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
    def _signal(run: Running, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.proc.pid, sig)

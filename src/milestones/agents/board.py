"""The executor's plan and its board: options, the schedule of a milestone's tasks
over agents, and what each agent is doing (for ``milestone execute``).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from .. import model as md
from ..errors import MilestoneError
from ..storage import fsutil
from .coord import Agents

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
# The threads whose stores borrow from the connection pool on postgres (the monitor
# keeps its own connection: it waits on NOTIFY).
POOLED = ("writer", "validator", "detector")
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|[\x00-\x1f\x7f]")
# A command the shell would only split into words (no quotes, variables, globs,
# redirections, ...) is run directly, as make does: one process less per task.
SIMPLE = re.compile(r"[A-Za-z0-9_./:=,+@%-]+(?: [A-Za-z0-9_./:=,+@%-]+)*")
SHELL_WORDS = frozenset([  # builtins and keywords: the shell's own meaning wins
    ".", ":", "[", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done",
    "echo", "elif", "else", "esac", "eval", "exec", "exit", "export", "false", "fc", "fg",
    "fi", "for", "getopts", "hash", "if", "in", "jobs", "kill", "local", "printf", "pwd",
    "read", "readonly", "return", "set", "shift", "test", "then", "times", "trap", "true",
    "type", "ulimit", "umask", "unalias", "unset", "until", "wait", "while"])


def stamp(when: float | None = None) -> str:
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
    watch_every: float = 0.25  # the monitor's period (postgres: wakes on NOTIFY instead)
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


class Queued:
    """An agent step waiting to be written (``Executor._agent_step``)."""

    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[Agents], Any]) -> None:
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


@dataclass
class Running:
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


def full_task_ref(mid: str, dep: str) -> str:
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
            ref = full_task_ref(mid, d)
            if not ref.startswith(mid + "/") and status.get(ref) not in md.FINISHED_TASK:
                waits.append(f"{ref} ({status.get(ref, 'missing')})")
    return sorted(set(waits))

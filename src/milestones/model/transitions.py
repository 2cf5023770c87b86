"""Task transitions: which status may follow which, and each move with its timer.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..errors import DependencyError, InvalidInput, InvalidTransition
from .checks import FINISHED_TASK, MAX_TIME_SPENT, check_text
from .records import Task

# --------------------------------------------------------------- transitions

# Documented in the README; ``force`` lifts only the dependency check.
TASK_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "start": ("todo", "blocked", "in_progress"),  # in_progress: resume a stopped timer
    "stop": ("in_progress",),
    "done": ("todo", "in_progress"),
    "block": ("todo", "in_progress", "blocked"),
    "unblock": ("blocked",),
    "skip": ("todo", "in_progress", "blocked"),
    "reopen": ("done", "skipped"),
}


def seconds_between(start: str, end: str) -> int:
    a = datetime.fromisoformat(start.replace("Z", "+00:00"))
    b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    return max(0, int((b - a).total_seconds()))


def _require(t: Task, action: str, ref: str) -> None:
    allowed = TASK_TRANSITIONS[action]
    if t.status not in allowed:
        hints = {
            "done": "it is already finished; `task reopen` it first"
            if t.finished
            else "unblock it first (`task unblock`) or --force",
            "start": "it is already started"
            if t.status == "in_progress"
            else "reopen it first (`task reopen`)",
            "stop": "start it first (`task start`)",
            "unblock": "only a blocked task can be unblocked",
            "reopen": "only a done or skipped task can be reopened",
            "skip": "reopen it first (`task reopen`)",
            "block": "reopen it first (`task reopen`)",
        }
        verb = "complete" if action == "done" else action
        raise InvalidTransition(f"cannot {verb} {ref}: it is {t.status}", hint=hints[action])


def _stop_timer(t: Task, now: str) -> int:
    """Stop a running timer; return the seconds it added."""
    if not t.timer_started_at:
        return 0
    # A timer started long ago (a hand edit: 0001-01-01) adds no more than the file can
    # hold: time_spent past MAX_TIME_SPENT would make the milestone unloadable.
    spent = min(seconds_between(t.timer_started_at, now), max(0, MAX_TIME_SPENT - t.time_spent))
    t.time_spent += spent
    t.timer_started_at = None
    return spent


def unmet_dependencies(t: Task, status_of: Callable[[str], str | None]) -> list[str]:
    """Dependency refs of ``t`` that are neither done nor skipped (unknown counts as unmet)."""
    return [d for d in t.depends_on if status_of(d) not in FINISHED_TASK]


def start_task(t: Task, now: str, ref: str, unmet: list[str], force: bool) -> None:
    _require(t, "start", ref)
    if t.status == "in_progress" and t.timer_started_at:
        raise InvalidTransition(f"cannot start {ref}: it is already started",
                                hint="`task stop` pauses it, `task done` finishes it")
    if t.status == "blocked" and not force:
        raise InvalidTransition(
            f"cannot start {ref}: it is blocked ({'; '.join(t.blockers)})",
            hint="`task unblock` it first",
        )
    if unmet and not force:
        raise DependencyError(
            f"cannot start {ref}: waiting on {', '.join(unmet)}",
            hint="finish those first, or pass --force",
        )
    t.status = "in_progress"
    t.started_at = t.started_at or now
    t.timer_started_at = now
    t.blockers = [] if force else t.blockers


def stop_task(t: Task, now: str, ref: str) -> int:
    _require(t, "stop", ref)
    if not t.timer_started_at:
        raise InvalidTransition(
            f"cannot stop {ref}: its timer is not running", hint="`task start` it to resume work"
        )
    return _stop_timer(t, now)


def complete_task(t: Task, now: str, ref: str, unmet: list[str], force: bool) -> int:
    if t.status == "blocked" and force:
        t.blockers = []
    else:
        _require(t, "done", ref)
    if unmet and not force:
        raise DependencyError(
            f"cannot complete {ref}: waiting on {', '.join(unmet)}",
            hint="finish those first, or pass --force (recorded)",
        )
    spent = _stop_timer(t, now)
    t.status = "done"
    t.progress = 100
    t.started_at = t.started_at or now
    t.completed_at = now
    return spent


def block_task(t: Task, now: str, ref: str, reason: str) -> int:
    _require(t, "block", ref)
    reason = check_text(reason, "block reason", required=True, limit=1000, single_line=True)
    spent = _stop_timer(t, now)
    t.status = "blocked"
    if reason not in t.blockers:
        t.blockers.append(reason)
    return spent


def requeue_task(t: Task, now: str) -> int:
    """An agent let go of a task it held: back to todo, timer stopped, unassigned."""
    spent = _stop_timer(t, now)
    if t.status == "in_progress":
        t.status = "todo"
    t.assignee = None
    return spent


def unblock_task(t: Task, ref: str) -> None:
    _require(t, "unblock", ref)
    t.blockers = []
    t.status = "in_progress" if (t.started_at or t.progress) else "todo"


def skip_task(t: Task, now: str, ref: str) -> int:
    _require(t, "skip", ref)
    spent = _stop_timer(t, now)
    t.status = "skipped"
    t.completed_at = now
    return spent


def reopen_task(t: Task, ref: str) -> None:
    _require(t, "reopen", ref)
    t.status = "todo"
    t.completed_at = None
    if t.progress == 100:
        t.progress = 0


def set_progress(t: Task, now: str, ref: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidInput(f"progress {value!r} for {ref} is out of range", hint="give 0 to 100")
    if t.finished:
        raise InvalidTransition(
            f"cannot set progress of {ref}: it is {t.status}", hint="`task reopen` it first"
        )
    t.progress = value
    if t.status == "todo" and value > 0:
        t.status = "in_progress"
        t.started_at = t.started_at or now

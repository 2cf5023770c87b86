"""Hand edits found on reading: what changed in a milestone file, as events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import model as md
from ..errors import (
    InvalidInput,
    MilestoneError,
)
from .constants import DIRNAME

# What a task command derives and a person may leave out of a hand edit.
HAND_KEYS = ("status", "progress", "started_at", "completed_at", "timer_started_at",
              "time_spent", "blockers")


def check_hand_edit(e: Any) -> None:
    """Refuse a hand edit no command could make (so nothing is recorded, nothing lost:
    the file stays as the person left it, and commands stop until it is fixed)."""
    old = {t["id"]: t for t in (e.before or {}).get("tasks", [])}
    for t in e.after.get("tasks", []):
        prev = old.get(t["id"])
        if t["status"] == "blocked" and not t.get("blockers") \
                and (prev is None or prev.get("status") != "blocked"):
            raise InvalidInput(
                f"{DIRNAME}/{e.path}: {t['id']} is set blocked by hand but gives no reason",
                hint=f"add `blockers: [the reason]` to {t['id']} (as `task block REF "
                     f"REASON` does), or set another status")


def hand_step(t: md.Task, prev: Mapping[str, Any] | None, now: str, ref: str,
               unmet: list[str]) -> tuple[str, int] | None:
    """Give ``t``, as a person left it (``prev``: as it was), what the task command its
    change mirrors would derive; returns (event type, seconds added) or None.

    The command's own transition (``model``) runs on the task as it was, then each
    derived field the person did not set takes the command's value. Unmet
    dependencies are passed as forced (the caller records and reports them)."""
    base = dict(prev) if prev is not None else md.Task(id=t.id, title=t.title).to_dict()
    trial = md.Task.from_dict(base)
    was, want = trial.status, t.status
    spent = 0
    try:
        if want == was:
            if want in md.FINISHED_TASK or t.progress == trial.progress:
                return None
            md.set_progress(trial, now, ref, t.progress)
            kind = "task_progress"
        elif want == "done":
            if was in md.FINISHED_TASK:
                md.reopen_task(trial, ref)
            spent, kind = md.complete_task(trial, now, ref, unmet, True), "task_completed"
        elif want == "skipped":
            if was in md.FINISHED_TASK:
                md.reopen_task(trial, ref)
            spent, kind = md.skip_task(trial, now, ref), "task_skipped"
        elif want == "in_progress":
            if was in md.FINISHED_TASK:
                md.reopen_task(trial, ref)
            md.start_task(trial, now, ref, unmet, True)
            kind = "task_started"
        elif want == "blocked":
            spent = md.block_task(trial, now, ref, (t.blockers or ["blocked"])[0])
            kind = "task_blocked"
        elif was in md.FINISHED_TASK:  # todo
            md.reopen_task(trial, ref)
            kind = "task_reopened"
        else:  # in_progress or blocked -> todo: the timer stops
            spent = md.stop_task(trial, now, ref) if trial.timer_started_at else 0
            trial.status, trial.blockers = "todo", []
            kind = "task_stopped"
    except MilestoneError:
        return None  # a change no transition makes: the person's values stand
    for key in HAND_KEYS:
        if getattr(t, key) == base.get(key):  # not set by the person: derived
            setattr(t, key, getattr(trial, key))
    return kind, spent


def summarize_edit(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    if before is None:
        return f"file added: {after.get('title') if after else ''}"
    if after is None:
        return "file removed"
    parts = [f"{k} changed" for k in after if k != "tasks" and before.get(k) != after.get(k)]
    old = {t["id"]: t for t in before.get("tasks", [])}
    new = {t["id"]: t for t in after.get("tasks", [])}
    parts += [f"{tid} added" for tid in new if tid not in old]
    parts += [f"{tid} removed" for tid in old if tid not in new]
    for tid, t in new.items():
        if tid in old and old[tid] != t:
            fields = [k for k in t if old[tid].get(k) != t.get(k)]
            if "status" in fields:
                parts.append(f"{tid} status {old[tid].get('status')} → {t.get('status')}")
                fields.remove("status")
            if fields:
                parts.append(f"{tid} {', '.join(fields)} changed")
    return "; ".join(parts) or "reformatted"

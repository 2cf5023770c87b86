"""Progress and health: task weights, a milestone's progress, its derived status.
"""

from __future__ import annotations

from datetime import date

from .checks import TASK_STATUSES
from .kiro import KIRO_DEFAULTS, KIRO_GATED, KIRO_PHASES, gate_state
from .records import Milestone, Task

# ------------------------------------------------------------------ progress


def task_weights(tasks: list[Task]) -> dict[str, float]:
    """Weights for progress: estimates when any task has one, else one per task.

    Skipped tasks weigh nothing. A task without an estimate, in a milestone where
    others have one, weighs the mean of the given estimates.
    """
    counted = [t for t in tasks if t.status != "skipped"]
    estimates = [t.estimate for t in counted if t.estimate]
    if not estimates:
        return {t.id: 1.0 for t in counted}
    mean = sum(estimates) / len(estimates)
    return {t.id: float(t.estimate) if t.estimate else mean for t in counted}


def task_fraction(t: Task) -> float:
    return 1.0 if t.status == "done" else t.progress / 100.0


def milestone_progress(m: Milestone) -> float:
    """Percentage done, 0-100, rounded to one decimal (Kiro milestones count their gates)."""
    if m.workflow == "kiro" and m.kiro is not None:
        return kiro_progress(m)
    weights = task_weights(m.tasks)
    total = sum(weights.values())
    if total == 0:
        return 100.0 if m.status in ("completed", "archived") else 0.0
    by_id = {t.id: t for t in m.tasks}
    done = sum(w * task_fraction(by_id[tid]) for tid, w in weights.items())
    pct = round(100.0 * done / total, 1)
    if pct >= 100.0 and any(by_id[tid].status != "done" for tid in weights):
        return 99.9  # a task at 100 % (or rounding) is not every task done
    return pct


def derive_status(m: Milestone) -> str:
    """The status a milestone's tasks imply; closed and manual states stand."""
    if m.status in ("archived", "cancelled"):
        return m.status
    tasks = m.tasks
    if tasks and all(t.finished for t in tasks):
        return "completed"
    open_tasks = [t for t in tasks if not t.finished]
    if open_tasks and all(t.status == "blocked" for t in open_tasks):
        return "blocked"
    started = any(t.status in ("in_progress", "done") or t.started_at or t.progress for t in tasks)
    if started:
        return "in_progress"
    if m.status == "completed":  # reopened or new task before anything started again
        return "in_progress"
    if m.status == "blocked":
        return "planned"
    return m.status


def counts(m: Milestone) -> dict[str, int]:
    c = {s: 0 for s in TASK_STATUSES}
    for t in m.tasks:
        c[t.status] += 1
    c["total"] = len(m.tasks)
    return c


def health(m: Milestone, today: str, projected_late: bool | None = None) -> str:
    """on_track | at_risk | overdue | done | cancelled, from dates, progress and blockers.

    ``projected_late`` is the feasibility projection's verdict when there is one;
    without it, progress lagging the elapsed share of the window by 25 points
    counts as at risk.
    """
    if m.status in ("completed", "archived"):
        return "done"
    if m.status == "cancelled":
        return "cancelled"
    if m.due_date and m.due_date < today:
        return "overdue"
    if m.status == "blocked" or any(t.status == "blocked" for t in m.tasks):
        return "at_risk"
    if projected_late is not None:
        return "at_risk" if projected_late else "on_track"
    if m.start_date and m.due_date and m.start_date <= today:
        span = (date.fromisoformat(m.due_date) - date.fromisoformat(m.start_date)).days + 1
        elapsed = (date.fromisoformat(today) - date.fromisoformat(m.start_date)).days + 1
        expected = 100.0 * min(1.0, elapsed / max(span, 1))
        if milestone_progress(m) + 25.0 < expected:
            return "at_risk"
    return "on_track"


def kiro_progress(m: Milestone) -> float:
    """Approved gates earn their phase's weight; execute earns its weight × task progress."""
    kiro = m.kiro or {}
    weights = {p: float((kiro.get("weights") or KIRO_DEFAULTS["weights"]).get(p, 0))
               for p in KIRO_PHASES}
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    earned = sum(weights[p] for p in KIRO_GATED if gate_state(kiro, p)["status"] == "approved")
    tw = task_weights(m.tasks)
    tsum = sum(tw.values())
    by_id = {t.id: t for t in m.tasks}
    tasks = sum(w * task_fraction(by_id[tid]) for tid, w in tw.items()) / tsum if tsum else 0.0
    return round(100.0 * (earned + weights["execute"] * tasks) / total, 1)

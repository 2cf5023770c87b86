"""Resource rules (MS4xx): the team in config/config.yaml against the work.

    team:
      members:
        - name: ann@example.com
          role: owner
          skills: [python, sql]
          capacity: 32        # hours a week (default 40)

With no members configured these rules stay quiet: there is no team to check.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from ..model import schedule
from .registry import Context, rule

OPEN_TASK = ("todo", "in_progress", "blocked")


def _names(member: dict[str, Any]) -> set[str]:
    names = {str(member.get(k)) for k in ("name", "email", "id") if member.get(k)}
    return names | {str(a) for a in member.get("aliases", []) or []}


def weekly_hours(ctx: Context) -> list[float]:
    return schedule.team_weekly_hours(ctx.config)


@rule(
    "MS401",
    "resource",
    "warning",
    "a task needs a skill nobody on the team has",
    "add the skill to a member in config/config.yaml, or change the task's skills",
)
def missing_skill(ctx: Context) -> None:
    if not ctx.team:
        return
    have = {str(s).lower() for m in ctx.team for s in (m.get("skills") or [])}
    for mid, m in ctx.scoped():
        for i, t in enumerate(m.get("tasks", [])):
            if t.get("status") not in OPEN_TASK:
                continue
            for j, skill in enumerate(t.get("skills", [])):
                if skill.lower() not in have:
                    ctx.report(
                        f"{mid}/{t['id']} needs {skill!r}, which no team member has",
                        ref=f"{mid}/{t['id']}",
                        path=(mid, ("tasks", i, "skills", j)),
                    )


@rule(
    "MS402",
    "resource",
    "warning",
    "someone named on the work is not a team member",
    "add them to team.members in config/config.yaml, or reassign the work",
)
def not_member(ctx: Context) -> None:
    if not ctx.team:
        return
    members = set().union(*(_names(m) for m in ctx.team))
    for mid, m in ctx.scoped():
        if m.get("owner") and m["owner"] not in members:
            ctx.report(
                f"{mid} owner {m['owner']} is not a team member", ref=mid, path=(mid, ("owner",))
            )
        for i, t in enumerate(m.get("tasks", [])):
            who = t.get("assignee")
            if who and who not in members and t.get("status") in OPEN_TASK:
                ctx.report(
                    f"{mid}/{t['id']} is assigned to {who}, who is not a team member",
                    ref=f"{mid}/{t['id']}",
                    path=(mid, ("tasks", i, "assignee")),
                )


def _working_days(a: date, b: date) -> int:
    """Monday-to-Friday days from ``a`` to ``b``, both included (0 when b < a)."""
    if b < a:
        return 0
    weeks, rest = divmod((b - a).days + 1, 7)
    return weeks * 5 + sum(1 for k in range(rest) if (a.weekday() + k) % 7 < 5)


HORIZON_DAYS = 3660  # the weeks over-allocation looks at: ten years ahead


@rule(
    "MS403",
    "resource",
    "warning",
    "a person has more work in a week than their capacity",
    "spread the work, reassign tasks, or move due dates",
)
def over_allocated(ctx: Context) -> None:
    """Each open assigned task's remaining hours are spread evenly over the working
    days left in its milestone's window; a member's load per ISO week is compared
    with their weekly capacity."""
    if not ctx.team:
        return
    capacity: dict[str, float] = {}
    for member in ctx.team:
        for name in _names(member):
            capacity[name] = float(member.get("capacity", schedule.DEFAULT_WEEKLY_HOURS))
    today = date.fromisoformat(ctx.today)
    load: dict[tuple[str, str], float] = defaultdict(float)
    for _mid, m in ctx.milestones.items():
        if not m.get("due_date") or m.get("status") not in ("planned", "in_progress", "blocked"):
            continue
        start = max(today, date.fromisoformat(m["start_date"]) if m.get("start_date") else today)
        due = date.fromisoformat(m["due_date"])
        total = _working_days(start, due)
        # Weeks up to HORIZON_DAYS ahead: a window out to 9999-12-31 would be 400,000 weeks.
        last = min(due, today + timedelta(days=HORIZON_DAYS))
        days = [start + timedelta(days=k) for k in range((last - start).days + 1)]
        days = [d for d in days if d.weekday() < 5] if total else [max(start, due)]
        weeks: dict[str, int] = defaultdict(int)  # working days of the window per ISO week
        for d in days:
            iso = d.isocalendar()
            weeks[f"{iso.year}-W{iso.week:02d}"] += 1
        total = total or 1
        for t in m.get("tasks", []):
            who = t.get("assignee")
            if not who or who not in capacity or t.get("status") not in OPEN_TASK:
                continue
            share = schedule.remaining_hours(t) / total
            for week, count in weeks.items():
                load[(who, week)] += share * count
    for (who, week), hours in sorted(load.items()):
        if hours > capacity[who] + 1e-6:
            ctx.report(
                f"{who} has {hours:.1f}h of work in {week}, over a capacity of {capacity[who]:g}h",
                ref=who,
            )

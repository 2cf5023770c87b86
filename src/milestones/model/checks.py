"""The vocabulary and the checks of input: statuses, priorities, ids and references,
and the one-line checks every value passes before it reaches a milestone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from ..errors import InvalidInput

MILESTONE_STATUSES = ("planned", "in_progress", "blocked", "completed", "archived", "cancelled")
TASK_STATUSES = ("todo", "in_progress", "blocked", "done", "skipped")
PRIORITIES = ("critical", "high", "medium", "low")
PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}
CATEGORIES = (
    "feature",
    "infrastructure",
    "testing",
    "documentation",
    "bugfix",
    "research",
    "release",
    "other",
)
FINISHED_TASK = ("done", "skipped")
CLOSED_MILESTONE = ("completed", "archived", "cancelled")

MAX_TITLE = 200
MAX_TIME_SPENT = 10**9  # seconds on one task (31 years): what a file may hold
MAX_TEXT = 20_000
MILESTONE_ID_RE = re.compile(r"^milestone-([0-9]{3,18})$")  # 18: int() of a huge id raises
TASK_ID_RE = re.compile(r"^task-([0-9]{1,18})$")
TASK_REF_RE = re.compile(r"^(?:milestone-[0-9]{3,}/)?task-[0-9]+$")  # a task's depends_on entry
# C0 and C1 control characters; multi-line text may hold tabs and newlines, one line neither.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_LINE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


# --------------------------------------------------------------------------- ids


def milestone_id(number: int) -> str:
    """``3`` -> ``milestone-003``; numbers past 999 keep growing."""
    return f"milestone-{number:03d}"


def milestone_number(mid: str) -> int:
    m = MILESTONE_ID_RE.match(mid)
    if not m:
        raise InvalidInput(f"invalid milestone id {mid!r}", hint="ids look like milestone-003")
    return int(m.group(1))


def task_number(tid: str) -> int:
    m = TASK_ID_RE.match(tid)
    if not m:
        raise InvalidInput(f"invalid task id {tid!r}", hint="ids look like task-2")
    return int(m.group(1))


def split_task_ref(ref: str, home: str) -> tuple[str, str]:
    """``task-2`` in milestone ``home`` or ``milestone-002/task-4`` -> (milestone, task)."""
    if "/" in ref:
        mid, tid = ref.split("/", 1)
        return mid, tid
    return home, ref


# ------------------------------------------------------------------ validation


def check_text(
    value: str,
    what: str,
    *,
    required: bool = False,
    limit: int = MAX_TEXT,
    single_line: bool = False,
) -> str:
    """Return ``value`` stripped, or raise InvalidInput naming ``what``."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {type(value).__name__}")
    text = value.strip()
    if required and not text:
        raise InvalidInput(f"{what} is empty", hint=f"give the {what.split()[-1]} some text")
    if len(text) > limit and not text.startswith("enc:v1:"):  # sealed: longer than its text
        raise InvalidInput(
            f"{what} is {len(text)} characters long", hint=f"keep it to {limit} or fewer"
        )
    bad = (_CONTROL_LINE_RE if single_line else _CONTROL_RE).search(text)
    if bad:
        raise InvalidInput(
            f"{what} contains the control character {bad.group()!r}",
            hint="remove it" + (" (it must be one plain line)" if single_line else ""),
        )
    return text


def check_title(value: str, what: str = "title") -> str:
    return check_text(value, what, required=True, limit=MAX_TITLE, single_line=True)


def check_date(value: str | None, what: str) -> str | None:
    """Validate an ISO date (YYYY-MM-DD); None and empty mean no date."""
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str) or not _DATE_RE.match(value.strip()):
        raise InvalidInput(
            f"{what} {value!r} is not a date", hint="use YYYY-MM-DD, e.g. 2026-12-01"
        )
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError as exc:
        raise InvalidInput(
            f"{what} {value!r} is not a real date ({exc})",
            hint="use a date that exists, e.g. 2026-02-28",
        ) from None


def add_days(base: date, days: int, what: str = "date") -> date:
    """``base`` plus ``days``; InvalidInput naming ``what`` when that leaves the
    calendar (0001-01-01 to 9999-12-31) instead of an OverflowError."""
    try:
        return base + timedelta(days=days)
    except OverflowError:
        raise InvalidInput(
            f"{what} lands outside the calendar "
            f"({date.min.isoformat()} to {date.max.isoformat()})",
            hint="give a date up to 9999-12-31",
        ) from None


def check_choice(value: str, choices: Iterable[str], what: str) -> str:
    options = tuple(choices)
    if value not in options:
        raise InvalidInput(
            f"{what} {value!r} is not one of {', '.join(options)}",
            hint=f"pick one of: {', '.join(options)}",
        )
    return value


def check_estimate(value: Any, what: str = "estimate") -> float | None:
    if value is None or value == "":
        return None
    try:
        hours = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} {value!r} is not a number of hours", hint="e.g. 1.5") from None
    if not (0 <= hours <= 10_000) or hours != hours:
        raise InvalidInput(f"{what} {value!r} is out of range", hint="give 0 to 10000 hours")
    return int(hours) if hours.is_integer() else hours


def check_window(start: str | None, due: str | None, what: str = "milestone") -> None:
    if start and due and due < start:
        raise InvalidInput(
            f"{what} is due ({due}) before it starts ({start})", hint="move --due after --start"
        )

"""The domain model: milestones, tasks, their legal transitions and progress math.

Pure: no I/O, no clock, no environment. Callers pass ``now`` (an ISO 8601 UTC
string) and ``today`` (an ISO date) in. Every function that changes state works
on the object it is given; the service layer copies first when it needs the
old state (see ``Milestone.copy``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ..errors import DependencyError, InvalidInput, InvalidTransition

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
    if len(text) > limit:
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


# ---------------------------------------------------------------------- model


@dataclass
class Task:
    """One task of a milestone (a docstring also spares dataclass an inspect.signature)."""

    id: str
    title: str
    description: str = ""
    status: str = "todo"
    depends_on: list[str] = field(default_factory=list)
    estimate: float | None = None
    time_spent: int = 0
    progress: int = 0
    assignee: str | None = None
    skills: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    run: str | None = None
    paths: list[str] = field(default_factory=list)
    started_at: str | None = None
    completed_at: str | None = None
    timer_started_at: str | None = None
    requirements: list[str] = field(default_factory=list)
    phase: str | None = None
    spec_ref: str | None = None
    # Work by agents (milestones.agents.coord): holder, fencing token, lease, attempts,
    # result, linked commits. Absent (None) for tasks no agent has touched.
    execution: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "status": self.status,
            "depends_on": list(self.depends_on),
            "estimate": self.estimate,
            "time_spent": self.time_spent,
            "progress": self.progress,
            "assignee": self.assignee,
            "skills": list(self.skills),
            "blockers": list(self.blockers),
            "run": self.run,
            "paths": list(self.paths),
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "timer_started_at": self.timer_started_at,
            "requirements": list(self.requirements),
            "phase": self.phase,
            "spec_ref": self.spec_ref,
        }
        if self.execution is not None:
            d["execution"] = copy_record(self.execution)
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "task") -> Task:
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{where} must be a mapping of fields, not {type(data).__name__}")
        tid = data.get("id")
        if not isinstance(tid, str) or not TASK_ID_RE.match(tid):
            raise InvalidInput(
                f"{where}: id {tid!r} is not a task id", hint="task ids look like task-2"
            )
        where = f"{where} {tid}"
        known = {f for f in TASK_FIELDS}
        t = cls(
            id=tid,
            title=check_title(_str(data.get("title"), f"{where} title"), f"{where} title"),
            description=check_text(
                _str(data.get("description") or "", f"{where} description"), f"{where} description"
            ),
            status=check_choice(data.get("status") or "todo", TASK_STATUSES, f"{where} status"),
            depends_on=_str_list(data.get("depends_on"), f"{where} depends_on"),
            estimate=check_estimate(data.get("estimate"), f"{where} estimate"),
            time_spent=_int(data.get("time_spent") or 0, f"{where} time_spent", 0, MAX_TIME_SPENT),
            progress=_int(data.get("progress") or 0, f"{where} progress", 0, 100),
            assignee=_opt_str(data.get("assignee"), f"{where} assignee"),
            skills=_str_list(data.get("skills"), f"{where} skills"),
            blockers=_str_list(data.get("blockers"), f"{where} blockers"),
            run=_opt_str(data.get("run"), f"{where} run"),
            paths=_str_list(data.get("paths"), f"{where} paths"),
            started_at=_opt_ts(data.get("started_at"), f"{where} started_at"),
            completed_at=_opt_ts(data.get("completed_at"), f"{where} completed_at"),
            timer_started_at=_opt_ts(data.get("timer_started_at"), f"{where} timer_started_at"),
            requirements=_str_list(data.get("requirements"), f"{where} requirements"),
            phase=_opt_str(data.get("phase"), f"{where} phase"),
            spec_ref=_opt_str(data.get("spec_ref"), f"{where} spec_ref"),
            execution=_execution(data.get("execution"), f"{where} execution"),
            extra={k: v for k, v in data.items() if k not in known},
        )
        for dep in t.depends_on:
            if not TASK_REF_RE.match(dep):
                raise InvalidInput(
                    f"{where}: depends_on {dep!r} is not a task reference",
                    hint="use task-2, or milestone-003/task-2 for a task of another milestone",
                )
        return t

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_TASK


TASK_FIELDS = tuple(Task.__dataclass_fields__)


@dataclass
class Milestone:
    """A milestone and its tasks; ``to_dict`` is its snapshot, ``from_dict`` reads one."""

    id: str
    title: str
    description: str = ""
    status: str = "planned"
    priority: str = "medium"
    owner: str | None = None
    assignees: list[str] = field(default_factory=list)
    start_date: str | None = None
    due_date: str | None = None
    depends_on: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    category: str = "feature"
    success_criteria: list[str] = field(default_factory=list)
    deliverables: list[dict[str, Any]] = field(default_factory=list)
    risks: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    created_at: str | None = None
    updated_at: str | None = None
    completed_at: str | None = None
    completion: dict[str, Any] | None = None
    workflow: str | None = None
    template: dict[str, Any] | None = None
    kiro: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, tasks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The snapshot; ``tasks``: the task records to put in it, when the caller
        knows they are the tasks' own (``Txn.record``: most are unchanged)."""
        d: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "status": self.status,
            "priority": self.priority,
            "owner": self.owner,
            "assignees": list(self.assignees),
            "start_date": self.start_date,
            "due_date": self.due_date,
            "depends_on": list(self.depends_on),
            "tags": list(self.tags),
            "category": self.category,
            "success_criteria": list(self.success_criteria),
            "deliverables": [dict(x) for x in self.deliverables],
            "risks": [dict(x) for x in self.risks],
            "tasks": [t.to_dict() for t in self.tasks] if tasks is None else tasks,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "completed_at": self.completed_at,
            "completion": self.completion,
            "workflow": self.workflow,
            "template": self.template,
            "kiro": self.kiro,
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], where: str | None = None, *, window: bool = True
    ) -> Milestone:
        """``window=False`` accepts a due date before the start (validation reports it)."""
        if not isinstance(data, Mapping):
            raise InvalidInput(
                f"{where or 'milestone'} must be a mapping of fields, not {type(data).__name__}"
            )
        mid = data.get("id")
        if not isinstance(mid, str) or not MILESTONE_ID_RE.match(mid):
            raise InvalidInput(
                f"{where or 'milestone'}: id {mid!r} is not a milestone id",
                hint="ids look like milestone-003",
            )
        w = where or mid
        raw_tasks = data.get("tasks") or []
        if not isinstance(raw_tasks, list):
            raise InvalidInput(f"{w}: tasks must be a list")
        tasks = [Task.from_dict(t, f"{w} task #{i + 1}") for i, t in enumerate(raw_tasks)]
        seen: set[str] = set()
        for t in tasks:
            if t.id in seen:
                raise InvalidInput(
                    f"{w}: duplicate task id {t.id}", hint="give each task its own id"
                )
            seen.add(t.id)
        known = set(MILESTONE_FIELDS)
        m = cls(
            id=mid,
            title=check_title(_str(data.get("title"), f"{w} title"), f"{w} title"),
            description=check_text(
                _str(data.get("description") or "", f"{w} description"), f"{w} description"
            ),
            status=check_choice(data.get("status") or "planned", MILESTONE_STATUSES, f"{w} status"),
            priority=check_choice(data.get("priority") or "medium", PRIORITIES, f"{w} priority"),
            owner=_opt_str(data.get("owner"), f"{w} owner"),
            assignees=_str_list(data.get("assignees"), f"{w} assignees"),
            start_date=check_date(data.get("start_date"), f"{w} start_date"),
            due_date=check_date(data.get("due_date"), f"{w} due_date"),
            depends_on=_str_list(data.get("depends_on"), f"{w} depends_on"),
            tags=_str_list(data.get("tags"), f"{w} tags"),
            category=_str(data.get("category") or "feature", f"{w} category"),
            success_criteria=_str_list(data.get("success_criteria"), f"{w} success_criteria"),
            deliverables=_dict_list(data.get("deliverables"), f"{w} deliverables"),
            risks=_dict_list(data.get("risks"), f"{w} risks"),
            tasks=tasks,
            created_at=_opt_ts(data.get("created_at"), f"{w} created_at"),
            updated_at=_opt_ts(data.get("updated_at"), f"{w} updated_at"),
            completed_at=_opt_ts(data.get("completed_at"), f"{w} completed_at"),
            completion=_opt_dict(data.get("completion"), f"{w} completion"),
            workflow=_opt_str(data.get("workflow"), f"{w} workflow"),
            template=_opt_dict(data.get("template"), f"{w} template"),
            kiro=_opt_dict(data.get("kiro"), f"{w} kiro"),
            extra={k: v for k, v in data.items() if k not in known},
        )
        if window:
            check_window(m.start_date, m.due_date, w)
        for dep in m.depends_on:
            if not MILESTONE_ID_RE.match(dep):
                raise InvalidInput(
                    f"{w}: depends_on {dep!r} is not a milestone id",
                    hint="use ids like milestone-002",
                )
        return m

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> Milestone:
        """``from_dict`` of a snapshot the store holds: ``to_dict`` output, checked when it
        was stored. Reads rebuild every milestone on every command, so a snapshot of that
        shape is taken as it is (about 4x faster); anything else goes through ``from_dict``.
        """
        fields = _snapshot_fields(data, _MILESTONE_SHAPE)
        if (
            fields is None
            or fields["status"] not in MILESTONE_STATUSES
            or fields["priority"] not in PRIORITIES
        ):
            return cls.from_dict(data)
        tasks = []
        for raw in fields["tasks"]:
            t = _snapshot_fields(raw, _TASK_SHAPE_RUN if "execution" in raw else _TASK_SHAPE)
            if t is None or t["status"] not in TASK_STATUSES:
                return cls.from_dict(data)
            task = Task.__new__(Task)
            task.__dict__.update(t)  # what Task(**t) does (a plain dataclass), 3x faster
            tasks.append(task)
        fields["tasks"] = tasks
        m = cls.__new__(cls)
        m.__dict__.update(fields)
        return m

    def copy(self) -> Milestone:
        return Milestone.from_dict(self.to_dict())

    def task(self, tid: str) -> Task:
        for t in self.tasks:
            if t.id == tid:
                return t
        raise KeyError(tid)

    def has_task(self, tid: str) -> bool:
        return any(t.id == tid for t in self.tasks)

    def next_task_id(self) -> str:
        numbers = [task_number(t.id) for t in self.tasks]
        return f"task-{max(numbers, default=0) + 1}"

    @property
    def closed(self) -> bool:
        return self.status in CLOSED_MILESTONE


MILESTONE_FIELDS = tuple(Milestone.__dataclass_fields__)

class _Shape:
    """A snapshot's keys (every field but ``extra``, which ``to_dict`` spreads out),
    and how each value that is not a scalar is copied so that the object shares
    nothing with the snapshot, as from_dict's."""

    __slots__ = ("copies", "keys")

    def __init__(self, kinds: Mapping[str, str]) -> None:
        self.keys = frozenset(kinds)
        self.copies = tuple((key, kind) for key, kind in kinds.items() if kind)


_TASK_KINDS = {f: "" for f in TASK_FIELDS if f not in ("extra", "execution")} | dict.fromkeys(
    ("depends_on", "skills", "blockers", "paths", "requirements"), "list"
)
_TASK_SHAPE = _Shape(_TASK_KINDS)
# A task agents worked on also has ``execution`` (to_dict leaves it out when None, and
# the dataclass default answers for a task built without it).
_TASK_SHAPE_RUN = _Shape(_TASK_KINDS | {"execution": "deep"})
_MILESTONE_SHAPE = _Shape(
    {f: "" for f in MILESTONE_FIELDS if f != "extra"}
    | dict.fromkeys(("assignees", "depends_on", "tags", "success_criteria", "tasks"), "list")
    | dict.fromkeys(("deliverables", "risks"), "dicts")
    | dict.fromkeys(("completion", "template", "kiro"), "dict")
)


def copy_record(value: Any) -> Any:
    """A copy of JSON data sharing nothing mutable (``copy.deepcopy``'s result, for
    the flat records tasks carry, several times faster)."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _SCALARS else copy_record(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else copy_record(v) for v in value]
    return copy.deepcopy(value)


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _snapshot_fields(data: Any, shape: _Shape) -> dict[str, Any] | None:
    """The constructor fields of a snapshot of exactly ``shape``, copied; else None."""
    if type(data) is not dict or data.keys() != shape.keys:
        return None
    fields = dict(data)
    for key, kind in shape.copies:
        value = fields[key]
        if kind == "deep":
            if type(value) is not dict:
                return None
            fields[key] = copy_record(value)
        elif kind == "dict":
            if value is not None:
                if type(value) is not dict:
                    return None
                fields[key] = dict(value)
        elif type(value) is not list:
            return None
        elif kind == "dicts":
            if not all(type(x) is dict for x in value):
                return None
            fields[key] = [dict(x) for x in value]
        else:
            fields[key] = value[:]
    fields["extra"] = {}
    return fields


def _str(value: Any, what: str) -> str:
    if value is None:
        raise InvalidInput(f"{what} is missing", hint="add it to the file")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {type(value).__name__}")
    return value


def _opt_str(value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    return check_text(_str(value, what), what, single_line=True, limit=1000)


def utc_stamp(moment: datetime) -> str:
    """``moment`` as our timestamps are written, ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (naive
    means UTC); OverflowError when UTC takes it outside years 1 to 9999. (strftime's
    ``%Y`` writes year 1 as ``1``, which no parser reads back.)"""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0).isoformat() + "Z"


def _opt_ts(value: Any, what: str) -> str | None:
    """A timestamp as we write them: a hand-written one in another zone, without a zone
    (UTC) or with fractions is brought to UTC, so that times compare and subtract."""
    if value is None or value == "":
        return None
    if not isinstance(value, (str, datetime)):
        raise InvalidInput(f"{what} must be an ISO timestamp, not {type(value).__name__}",
                           hint="e.g. 2026-11-25T09:30:00Z")
    try:
        moment = value if isinstance(value, datetime) else \
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        stamp = utc_stamp(moment)
    except ValueError:
        raise InvalidInput(
            f"{what} {value!r} is not an ISO 8601 timestamp", hint="e.g. 2026-11-25T09:30:00Z"
        ) from None
    except OverflowError:
        raise InvalidInput(f"{what} {value!r} is outside the calendar in UTC (years 1 to 9999)",
                           hint="e.g. 2026-11-25T09:30:00Z") from None
    return stamp


def _int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{what} must be a number, not {value!r}", hint=f"use {low} to {high}")
    if not (low <= value <= high):
        raise InvalidInput(f"{what} {value} is out of range", hint=f"use {low} to {high}")
    return int(value)


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInput(f"{what} must be a list, not {type(value).__name__}")
    out = []
    for item in value:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            raise InvalidInput(f"{what} must hold text items, found {type(item).__name__}")
        out.append(check_text(item, what, single_line=True, limit=1000))
    return out


def _dict_list(value: Any, what: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, Mapping) for x in value):
        raise InvalidInput(f"{what} must be a list of mappings")
    return [dict(x) for x in value]


# The numbers of an agent's work record (milestones.agents.coord) and their ranges.
_EXECUTION_NUMBERS = {"token": 2**62, "attempts": 10**6, "lapsed": 10**6, "lease": 7 * 86400}


def _execution(value: Any, what: str) -> dict[str, Any] | None:
    """A task's ``execution`` record: a mapping whose numbers are numbers in range (a
    hand-written ``attempts: .nan`` would reach the agents' arithmetic and the JSON)."""
    ex = _opt_dict(value, what)
    if ex is None:
        return None
    for key, high in _EXECUTION_NUMBERS.items():
        if ex.get(key) is not None:
            _int(ex[key], f"{what} {key}", 0, high)
    for key in [k for k in ex if str(k).endswith("_at") and ex[k] is not None]:
        ex[key] = _opt_ts(ex[key], f"{what} {key}")  # claimed_at: the agents subtract it
    return ex


def _opt_dict(value: Any, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what} must be a mapping")
    return dict(value)


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


# ------------------------------------------------------------ dependency graph


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """Return one cycle as a path ``[a, b, ..., a]``, or None. Iterative DFS."""
    white, grey, black = 0, 1, 2
    color: dict[str, int] = {}
    for root in sorted(edges):
        if color.get(root, white) != white:
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(edges.get(root, ())))]
        path = [root]
        color[root] = grey
        while stack:
            node, todo = stack[-1]
            if todo:
                nxt = todo.pop(0)
                c = color.get(nxt, white)
                if c == grey:
                    return [*path[path.index(nxt) :], nxt]
                if c == white:
                    color[nxt] = grey
                    path.append(nxt)
                    stack.append((nxt, sorted(edges.get(nxt, ()))))
            else:
                color[node] = black
                path.pop()
                stack.pop()
    return None


def topological_order(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """Every node (dependencies too) once, each after all it depends on.

    ``edges`` maps a node to the nodes it depends on. Kahn's algorithm, ties by
    name, so the order is stable; DependencyError names a cycle if there is one.
    """
    import heapq

    deps = {n: set(ds) for n, ds in edges.items()}
    for ds in list(deps.values()):
        for d in ds:
            deps.setdefault(d, set())
    waiting: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in ds:
            waiting[d].append(n)
    left = {n: len(ds) for n, ds in deps.items()}
    ready = [n for n, k in left.items() if k == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        n = heapq.heappop(ready)
        order.append(n)
        for u in waiting[n]:
            left[u] -= 1
            if left[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(deps):
        cycle = find_cycle(deps) or sorted(n for n, k in left.items() if k)
        raise DependencyError(
            f"dependency cycle: {' → '.join(cycle)}", hint="remove one of those dependencies"
        )
    return order


def dependents_chain(edges: Mapping[str, Iterable[str]], open_nodes: set[str]) -> dict[str, int]:
    """For every node, the length of the longest chain of open nodes waiting on it.

    ``edges`` maps a node to the nodes it depends on. The result counts the node
    itself when it is open, so a leaf with nothing waiting has chain 1.

    One pass from the nodes nothing waits on back to those everything waits on
    (each node once all its waiters are known: Kahn's order, no recursion); the
    nodes a cycle (a hand edit) leaves unresolved get a depth-first pass that
    cuts the cycle where it meets it.
    """
    waiting: dict[str, list[str]] = {}
    for node, deps in edges.items():
        for d in deps:
            if d in waiting:
                waiting[d].append(node)
            else:
                waiting[d] = [node]
    left = {n: len(w) for n, w in waiting.items()}  # waiters not resolved yet
    memo: dict[str, int] = {}
    ready = [n for n in edges if n not in left]
    while ready:
        node = ready.pop()
        kids = waiting.get(node)
        memo[node] = (max(memo[k] for k in kids) if kids else 0) + (node in open_nodes)
        for d in edges.get(node, ()):
            n = left[d] - 1
            left[d] = n
            if n == 0:
                ready.append(d)
    if len(memo) < len(left.keys() | edges.keys()):
        _chain_through_cycles(waiting, open_nodes, memo, left.keys() | edges.keys())
    return memo


def _chain_through_cycles(waiting: Mapping[str, list[str]], open_nodes: set[str],
                          memo: dict[str, int], nodes: Iterable[str]) -> None:
    """``dependents_chain`` for the nodes on or behind a cycle: depth first, the
    cycle cut where the walk meets a node it entered and has not finished."""
    entered: set[str] = set()
    for root in nodes:
        if root in memo:
            continue
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node in memo:
                continue
            kids = waiting.get(node, [])
            if expanded:
                best = max((memo.get(k, 0) for k in kids), default=0)
                memo[node] = best + (1 if node in open_nodes else 0)
                continue
            if node in entered:
                continue
            entered.add(node)
            stack.append((node, True))
            stack.extend((k, False) for k in kids if k not in memo and k not in entered)


def priority_rank(priority: str) -> int:
    return PRIORITY_RANK.get(priority, len(PRIORITIES))


# ------------------------------------------------------------ kiro workflow

KIRO_PHASES = ("requirements", "design", "tasks", "execute")
KIRO_GATED = ("requirements", "design", "tasks")
KIRO_DECISIONS = ("approve", "reject", "request_changes")
KIRO_DEFAULTS: dict[str, Any] = {
    "policy": "optional",  # optional: findings are advice; mandatory: they are enforced
    "enforcement": "flexible",  # flexible: warn; strict: refuse
    "weights": {"requirements": 10, "design": 15, "tasks": 10, "execute": 65},
    "approvers": {"requirements": ["owner"], "design": ["owner"], "tasks": ["owner"]},
}


def kiro_settings(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid by each layer in turn (project config, then the milestone)."""
    out: dict[str, Any] = {
        "policy": KIRO_DEFAULTS["policy"], "enforcement": KIRO_DEFAULTS["enforcement"],
        "weights": dict(KIRO_DEFAULTS["weights"]),
        "approvers": {k: list(v) for k, v in KIRO_DEFAULTS["approvers"].items()},
    }
    for layer in layers:
        if not layer:
            continue
        for key in ("policy", "enforcement"):
            if layer.get(key):
                out[key] = layer[key]
        for key in ("weights", "approvers"):
            if isinstance(layer.get(key), Mapping):
                out[key].update(layer[key])
    check_choice(out["policy"], ("optional", "mandatory"), "kiro policy")
    check_choice(out["enforcement"], ("flexible", "strict"), "kiro enforcement")
    return out


def gate_state(kiro: Mapping[str, Any], phase: str) -> dict[str, Any]:
    """A gate's status from the reviews: every required role must approve after the
    last rejection or change request; any rejection blocks it with its feedback."""
    required = list((kiro.get("approvers") or {}).get(phase) or ["owner"])
    approved: set[str] = set()
    status, feedback = "pending", None
    for r in kiro.get("reviews") or []:
        if r.get("phase") != phase:
            continue
        if r.get("decision") == "approve":
            approved.add(str(r.get("role")))
            if status in ("rejected", "changes_requested"):
                status = "pending"
        else:
            approved.clear()
            status = "rejected" if r.get("decision") == "reject" else "changes_requested"
            feedback = r.get("comment")
    waiting = [role for role in required if role not in approved]
    if not waiting and status == "pending":
        status = "approved"
    return {"phase": phase, "status": status, "required": required,
            "approved_by": sorted(approved & set(required)), "waiting_for": waiting,
            "feedback": feedback}


def kiro_phase(m: Milestone) -> str:
    """The phase the spec is in: the first gate not yet approved, else execute."""
    kiro = m.kiro or {}
    for phase in KIRO_GATED:
        if gate_state(kiro, phase)["status"] != "approved":
            return phase
    return "execute"


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
    tasks = sum(w * task_fraction(m.task(tid)) for tid, w in tw.items()) / tsum if tsum else 0.0
    return round(100.0 * (earned + weights["execute"] * tasks) / total, 1)

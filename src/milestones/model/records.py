"""Milestones and tasks as records: the classes, their dict form and snapshots, and
the lenient reading of a stored record.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from ..errors import InvalidInput
from .checks import (
    CLOSED_MILESTONE,
    FINISHED_TASK,
    MAX_TIME_SPENT,
    MILESTONE_ID_RE,
    MILESTONE_STATUSES,
    PRIORITIES,
    TASK_ID_RE,
    TASK_REF_RE,
    TASK_STATUSES,
    check_choice,
    check_date,
    check_estimate,
    check_text,
    check_title,
    check_window,
    task_number,
)

# ---------------------------------------------------------------------- model


class Record:
    """A plain record, as ``@dataclass`` would make it: built by keyword (fields in
    FIELDS, defaults in DEFAULTS, a ``list`` or ``dict`` default made anew for each),
    equal field by field, shown as ``Task(id=..., ...)``. Written out because importing
    ``dataclasses`` imports ``inspect``: several milliseconds of every read's start."""

    FIELDS: ClassVar[tuple[str, ...]] = ()
    DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls) -> None:
        # A default that is a value is a class attribute too, as a dataclass's: a record
        # built from a snapshot without the field (``from_snapshot``) reads it there.
        for name, value in cls.DEFAULTS.items():
            if value is not list and value is not dict:
                setattr(cls, name, value)

    def __init__(self, **values: Any) -> None:
        unknown = values.keys() - set(self.FIELDS)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        for name in self.FIELDS:
            if name in values:
                value = values[name]
            elif name in self.DEFAULTS:
                value = self.DEFAULTS[name]
                if value is list or value is dict:
                    value = value()
            else:
                raise TypeError(f"{type(self).__name__} needs {name!r}")
            setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass with eq

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.FIELDS)
        return f"{type(self).__name__}({shown})"


class Task(Record):
    """One task of a milestone."""

    id: str
    title: str
    description: str
    status: str
    depends_on: list[str]
    estimate: float | None
    time_spent: int
    progress: int
    assignee: str | None
    skills: list[str]
    blockers: list[str]
    run: str | None
    paths: list[str]
    started_at: str | None
    completed_at: str | None
    timer_started_at: str | None
    requirements: list[str]
    phase: str | None
    spec_ref: str | None
    # Work by agents (milestones.agents.coord): holder, fencing token, lease, attempts,
    # result, linked commits. Absent (None) for tasks no agent has touched.
    execution: dict[str, Any] | None
    extra: dict[str, Any]

    FIELDS = (
        "id", "title", "description", "status", "depends_on", "estimate", "time_spent", "progress",
        "assignee", "skills", "blockers", "run", "paths", "started_at", "completed_at",
        "timer_started_at", "requirements", "phase", "spec_ref", "execution", "extra",
    )
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "description": "", "status": "todo", "depends_on": list, "estimate": None, "time_spent": 0,
        "progress": 0, "assignee": None, "skills": list, "blockers": list, "run": None,
        "paths": list, "started_at": None, "completed_at": None, "timer_started_at": None,
        "requirements": list, "phase": None, "spec_ref": None, "execution": None, "extra": dict,
    }

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
            run=_opt_str(data.get("run"), f"{where} run", RUN_LIMIT),
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


TASK_FIELDS = Task.FIELDS


class Milestone(Record):
    """A milestone and its tasks; ``to_dict`` is its snapshot, ``from_dict`` reads one."""

    id: str
    title: str
    description: str
    status: str
    priority: str
    owner: str | None
    assignees: list[str]
    start_date: str | None
    due_date: str | None
    depends_on: list[str]
    tags: list[str]
    category: str
    success_criteria: list[str]
    deliverables: list[dict[str, Any]]
    risks: list[dict[str, Any]]
    tasks: list[Task]
    created_at: str | None
    updated_at: str | None
    completed_at: str | None
    completion: dict[str, Any] | None
    workflow: str | None
    template: dict[str, Any] | None
    kiro: dict[str, Any] | None
    extra: dict[str, Any]

    FIELDS = (
        "id", "title", "description", "status", "priority", "owner", "assignees", "start_date",
        "due_date", "depends_on", "tags", "category", "success_criteria", "deliverables", "risks",
        "tasks", "created_at", "updated_at", "completed_at", "completion", "workflow", "template",
        "kiro", "extra",
    )
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "description": "", "status": "planned", "priority": "medium", "owner": None,
        "assignees": list, "start_date": None, "due_date": None, "depends_on": list, "tags": list,
        "category": "feature", "success_criteria": list, "deliverables": list, "risks": list,
        "tasks": list, "created_at": None, "updated_at": None, "completed_at": None,
        "completion": None, "workflow": None, "template": None, "kiro": None, "extra": dict,
    }

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
            task.__dict__.update(t)  # what Task(**t) does (a plain record), 3x faster
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


MILESTONE_FIELDS = Milestone.FIELDS

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


RUN_LIMIT = 5000  # a task's run command: as `task edit --run` and plan files take it


def _opt_str(value: Any, what: str, limit: int = 1000) -> str | None:
    if value is None or value == "":
        return None
    return check_text(_str(value, what), what, single_line=True, limit=limit)


def utc_stamp(moment: datetime) -> str:
    """``moment`` as our timestamps are written, ``YYYY-MM-DDTHH:MM:SSZ`` in UTC (naive
    means UTC); OverflowError when UTC takes it outside years 1 to 9999. (strftime's
    ``%Y`` writes year 1 as ``1``, which no parser reads back.)"""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0).isoformat() + "Z"


def parse_utc_stamp(stamp: str) -> datetime:
    """The moment (aware, UTC) of a stamp as ``utc_stamp`` writes it; ValueError for any
    other text. (``fromisoformat``, not ``strptime``: that one imports ``locale`` and
    ``calendar``, a few milliseconds of every write's start.)"""
    if len(stamp) != 20 or stamp[10] != "T" or stamp[-1] != "Z":
        raise ValueError(f"{stamp!r} is not a timestamp YYYY-MM-DDTHH:MM:SSZ")
    return datetime.fromisoformat(stamp)


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

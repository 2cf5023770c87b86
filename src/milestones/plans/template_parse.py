"""Template files, parsed and checked: the model of a template and its YAML reading.

The dataclasses (Template, Phase, TemplateTask, Variable, Requirements), the
placeholder grammar, the field checks that name the file and field of an error
(``parse_template``), and the dependency graph of phases. See ``templates``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import model as md
from ..errors import InvalidInput

RESERVED_VARIABLES = ("title", "start", "due")
MAX_DURATION = 3650
MAX_PHASES = 50
MAX_TASKS = 500
MAX_VARIABLES = 50
MAX_VALUE = 200

TEMPLATE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,49}$")
_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,49}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$")
_PLACEHOLDER_RE = re.compile(r"\{\{(.*?)\}\}")

_TOP_KEYS = (
    "name", "description", "title", "milestone_description", "category", "priority", "tags",
    "duration", "variables", "phases", "success_criteria", "requires",
)
_VARIABLE_KEYS = ("name", "description", "default", "required")
_PHASE_KEYS = ("name", "days", "description", "tasks")
_TASK_KEYS = ("title", "key", "description", "estimate", "skills", "depends_on")
_REQUIRES_KEYS = ("phases", "min_tasks", "due_date", "success_criteria", "estimates")


# --------------------------------------------------------------------- model


@dataclass(frozen=True)
class Variable:
    name: str
    description: str = ""
    default: str | None = None
    required: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "default": self.default, "required": self.required}


@dataclass(frozen=True)
class TemplateTask:
    title: str
    key: str | None = None
    description: str = ""
    estimate: float | None = None
    skills: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()  # keys or titles of tasks listed earlier

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "key": self.key, "description": self.description,
                "estimate": self.estimate, "skills": list(self.skills),
                "depends_on": list(self.depends_on)}


@dataclass(frozen=True)
class Phase:
    name: str
    days: int
    tasks: tuple[TemplateTask, ...]
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "days": self.days, "description": self.description,
                "tasks": [t.to_dict() for t in self.tasks]}


@dataclass(frozen=True)
class Requirements:
    """What a milestone made from a template must keep (see ``check_requirements``)."""

    phases: tuple[str, ...] = ()
    min_tasks: int = 0
    due_date: bool = False
    success_criteria: int = 0
    estimates: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"phases": list(self.phases), "min_tasks": self.min_tasks,
                "due_date": self.due_date, "success_criteria": self.success_criteria,
                "estimates": self.estimates}


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    category: str
    duration: int  # days; due date = start + duration
    phases: tuple[Phase, ...]
    variables: tuple[Variable, ...] = ()
    success_criteria: tuple[str, ...] = ()
    requires: Requirements = field(default_factory=Requirements)
    title: str = ""  # the title pattern used when render() gets no title
    milestone_description: str = ""
    priority: str = "medium"
    tags: tuple[str, ...] = ()
    source: str = "built-in"  # or the path of the YAML file it came from

    @property
    def builtin(self) -> bool:
        return self.source == "built-in"

    @property
    def tasks(self) -> list[tuple[Phase, TemplateTask]]:
        """Every task with its phase, in phase order (the order render lists them)."""
        return [(p, t) for p in self.phases for t in p.tasks]

    def variable(self, name: str) -> Variable | None:
        return next((v for v in self.variables if v.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "description": self.description, "title": self.title,
            "milestone_description": self.milestone_description, "category": self.category,
            "priority": self.priority, "tags": list(self.tags), "duration": self.duration,
            "variables": [v.to_dict() for v in self.variables],
            "phases": [p.to_dict() for p in self.phases],
            "success_criteria": list(self.success_criteria),
            "requires": self.requires.to_dict(), "source": self.source,
            "task_count": sum(len(p.tasks) for p in self.phases),
            "estimate_hours": sum(t.estimate or 0 for _, t in self.tasks),
        }


# ------------------------------------------------------------- substitution


def placeholders(text: str, where: str = "text") -> list[str]:
    """The variable names ``text`` uses, in order; malformed placeholders raise."""
    names: list[str] = []
    for m in _PLACEHOLDER_RE.finditer(text):
        name = m.group(1).strip()
        if not _VAR_NAME_RE.match(name):
            raise InvalidInput(
                f"{where}: malformed placeholder {m.group(0)!r}",
                hint="write placeholders as {{ name }}: a letter or _, then letters, digits, _",
            )
        names.append(name)
    rest = _PLACEHOLDER_RE.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise InvalidInput(
            f"{where}: unbalanced braces in {text!r}",
            hint="close every {{ with }} (placeholders look like {{ name }})",
        )
    return names


def substitute(text: str, values: Mapping[str, str], where: str = "text") -> str:
    """Replace each ``{{ name }}`` with ``values[name]`` (one pass; values are literal)."""
    for name in placeholders(text, where):
        if name not in values:
            known = ", ".join(sorted(values)) or "none"
            raise InvalidInput(
                f"{where}: unknown placeholder {{{{ {name} }}}}",
                hint=f"declare {name} under variables; known here: {known}",
            )
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1).strip()], text)


# ------------------------------------------------------------------ parsing


class _Reader:
    """Field checks whose errors name the file (``where``) and the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, problem: str, hint: str | None = None) -> InvalidInput:
        return InvalidInput(f"{self.where}: {path}: {problem}", hint=hint)

    def mapping(self, value: Any, path: str, keys: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a mapping, not {_kind(value)}")
        unknown = [str(k) for k in value if k not in keys]
        if unknown:
            close = difflib.get_close_matches(unknown[0], keys, n=1)
            raise self.fail(
                path, f"unknown field(s) {', '.join(sorted(unknown))}",
                hint=(f"did you mean {close[0]}? " if close else "")
                + f"known fields: {', '.join(keys)}",
            )
        return value

    def text(self, value: Any, path: str, *, required: bool = False, limit: int = 1000,
             single_line: bool = True) -> str:
        if value is None:
            if required:
                raise self.fail(path, "is missing", hint="add it")
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(path, f"must be text, not {_kind(value)}")
        try:
            return md.check_text(str(value), "value", required=required, limit=limit,
                                 single_line=single_line)
        except InvalidInput as exc:
            raise self.fail(path, exc.message.replace("value ", "", 1), exc.hint) from None

    def text_list(self, value: Any, path: str, limit: int = 1000) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, not {_kind(value)}")
        out = [self.text(v, f"{path}[{i}]", required=True, limit=limit)
               for i, v in enumerate(value, 1)]
        return tuple(dict.fromkeys(out))

    def integer(self, value: Any, path: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()):  # also NaN, infinity
            raise self.fail(path, f"{value!r} is not a whole number", hint=f"use {low} to {high}")
        if not low <= value <= high:
            raise self.fail(path, f"{value!r} is out of range", hint=f"use {low} to {high}")
        return int(value)

    def flag(self, value: Any, path: str) -> bool:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.fail(path, f"{value!r} is not true or false")
        return value


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def parse_template(data: Any, where: str, *, name: str | None = None,
                   source: str = "built-in") -> Template:
    """Build a Template from its mapping (YAML or built-in data), checking every field.

    ``name`` is the name the file gives it (its stem); a ``name:`` key must match it.
    """
    r = _Reader(where)
    d = r.mapping(data, "template", _TOP_KEYS)
    given = r.text(d.get("name"), "name", limit=50) or None
    if name is not None and given is not None and given != name:
        raise r.fail("name", f"{given!r} does not match the file name {name!r}",
                     hint=f"rename the file to {given}.yaml, or drop the name field")
    tname = given or name
    if tname is None:
        raise r.fail("name", "is missing", hint="add `name: my-template`")
    if not TEMPLATE_NAME_RE.match(tname):
        raise r.fail("name", f"{tname!r} is not a template name",
                     hint="use lowercase letters, digits, - and _ (up to 50), e.g. my-api")
    description = r.text(d.get("description"), "description", required=True, limit=2000,
                         single_line=False)
    category = r.text(d.get("category") or "feature", "category", limit=50)
    priority = r.text(d.get("priority") or "medium", "priority", limit=20)
    if priority not in md.PRIORITIES:
        raise r.fail("priority", f"{priority!r} is not one of {', '.join(md.PRIORITIES)}")
    if "duration" not in d:
        raise r.fail("duration", "is missing", hint="give the number of days, e.g. duration: 14")
    duration = r.integer(d.get("duration"), "duration", 0, MAX_DURATION)

    variables = _parse_variables(r, d.get("variables"))
    names = [v.name for v in variables]
    phases = _parse_phases(r, d.get("phases"), duration)
    template = Template(
        name=tname,
        description=description,
        category=category,
        duration=duration,
        phases=phases,
        variables=variables,
        success_criteria=r.text_list(d.get("success_criteria"), "success_criteria"),
        requires=_parse_requires(r, d.get("requires"), phases),
        title=r.text(d.get("title"), "title", limit=md.MAX_TITLE),
        milestone_description=r.text(d.get("milestone_description"), "milestone_description",
                                     limit=md.MAX_TEXT, single_line=False),
        priority=priority,
        tags=tuple(r.text(t, f"tags[{i}]", required=True, limit=100)
                   for i, t in enumerate(r.text_list(d.get("tags"), "tags"), 1)),
        source=source,
    )
    dependency_graph(template, r)  # unknown or forward references raise here
    # Every placeholder must name a declared variable (or title/start/due).
    everywhere = {*names, *RESERVED_VARIABLES}
    fields: list[tuple[str, str, set[str]]] = [
        ("title", template.title, everywhere - {"title"}),
        ("milestone_description", template.milestone_description, everywhere),
    ]
    fields += [(f"success_criteria[{i}]", s, everywhere)
               for i, s in enumerate(template.success_criteria, 1)]
    for pi, phase in enumerate(phases, 1):
        for ti, task in enumerate(phase.tasks, 1):
            fields.append((f"phases[{pi}].tasks[{ti}].title", task.title, everywhere))
            fields.append((f"phases[{pi}].tasks[{ti}].description", task.description,
                           everywhere))
    for path, text, allowed in fields:
        for used in placeholders(text, f"{where}: {path}"):
            if used not in allowed:
                why = ("the title cannot use {{ title }}" if used == "title"
                       else f"{used} is not a declared variable")
                close = difflib.get_close_matches(used, sorted(allowed), n=1)
                raise r.fail(path, f"unknown placeholder {{{{ {used} }}}} ({why})",
                             hint=(f"did you mean {close[0]}? " if close else "")
                             + "declare it under variables; usable here: "
                             + ", ".join(sorted(allowed)))
    return template


def _parse_variables(r: _Reader, raw: Any) -> tuple[Variable, ...]:
    if raw is None:
        return ()
    items: list[tuple[str, Any]]
    if isinstance(raw, Mapping):  # name: {description, default, required} (or name: default)
        items = [(f"variables.{k}", {"name": k, **v} if isinstance(v, Mapping)
                  else {"name": k, "default": v}) for k, v in raw.items()]
    elif isinstance(raw, list):
        items = [(f"variables[{i}]", v) for i, v in enumerate(raw, 1)]
    else:
        raise r.fail("variables", f"must be a list or a mapping, not {_kind(raw)}")
    if len(items) > MAX_VARIABLES:
        raise r.fail("variables", f"{len(items)} variables, over the limit of {MAX_VARIABLES}")
    out: list[Variable] = []
    for path, item in items:
        v = r.mapping(item, path, _VARIABLE_KEYS)
        name = r.text(v.get("name"), f"{path}.name", required=True, limit=50)
        if not _VAR_NAME_RE.match(name):
            raise r.fail(f"{path}.name", f"{name!r} is not a variable name",
                         hint="a letter or _, then letters, digits or _, e.g. service_name")
        if name in RESERVED_VARIABLES:
            raise r.fail(f"{path}.name", f"{name!r} is reserved",
                         hint=f"{', '.join(RESERVED_VARIABLES)} are filled in by the tool")
        if any(o.name == name for o in out):
            raise r.fail(f"{path}.name", f"variable {name!r} is declared twice")
        default = v.get("default")
        out.append(Variable(
            name=name,
            description=r.text(v.get("description"), f"{path}.description"),
            default=None if default is None else r.text(default, f"{path}.default",
                                                        limit=MAX_VALUE),
            required=r.flag(v.get("required"), f"{path}.required"),
        ))
    return tuple(out)


def _parse_phases(r: _Reader, raw: Any, duration: int) -> tuple[Phase, ...]:
    if not isinstance(raw, list) or not raw:
        problem = ("must be a non-empty list of phases" if raw is None or isinstance(raw, list)
                   else f"must be a list, not {_kind(raw)}")
        raise r.fail("phases", problem,
                     hint="e.g. phases: [{name: build, tasks: [{title: Do it}]}]")
    if len(raw) > MAX_PHASES:
        raise r.fail("phases", f"{len(raw)} phases, over the limit of {MAX_PHASES}")
    parsed: list[tuple[str, int | None, str, tuple[TemplateTask, ...]]] = []
    seen: set[str] = set()
    total_tasks = 0
    for pi, item in enumerate(raw, 1):
        path = f"phases[{pi}]"
        p = r.mapping(item, path, _PHASE_KEYS)
        name = r.text(p.get("name"), f"{path}.name", required=True, limit=100)
        if name.casefold() in seen:
            raise r.fail(f"{path}.name", f"phase {name!r} is listed twice")
        seen.add(name.casefold())
        days = None if p.get("days") is None else r.integer(p.get("days"), f"{path}.days", 0,
                                                             MAX_DURATION)
        tasks_raw = p.get("tasks")
        if not isinstance(tasks_raw, list) or not tasks_raw:
            raise r.fail(f"{path}.tasks", f"phase {name!r} needs a non-empty list of tasks")
        tasks = tuple(_parse_task(r, t, f"{path}.tasks[{ti}]") for ti, t in
                      enumerate(tasks_raw, 1))
        total_tasks += len(tasks)
        parsed.append((name, days, r.text(p.get("description"), f"{path}.description",
                                          limit=2000, single_line=False), tasks))
    if total_tasks > MAX_TASKS:
        raise r.fail("phases", f"{total_tasks} tasks, over the limit of {MAX_TASKS}")
    given = sum(d for _, d, _, _ in parsed if d is not None)
    if given > duration:
        raise r.fail("phases", f"the phases' days add up to {given}, more than the duration "
                     f"({duration})", hint="shorten the phases or lengthen the duration")
    # Phases without days share the days the others leave, the last taking the remainder.
    open_ = [i for i, (_, d, _, _) in enumerate(parsed) if d is None]
    share, extra = divmod(duration - given, len(open_)) if open_ else (0, 0)
    phases = []
    for i, (name, days, desc, tasks) in enumerate(parsed):
        if days is None:
            days = share + (extra if i == open_[-1] else 0)
        phases.append(Phase(name=name, days=days, tasks=tasks, description=desc))
    return tuple(phases)


def _parse_task(r: _Reader, raw: Any, path: str) -> TemplateTask:
    if isinstance(raw, str):
        raw = {"title": raw}
    t = r.mapping(raw, path, _TASK_KEYS)
    key = r.text(t.get("key"), f"{path}.key", limit=50) or None
    if key is not None and not _KEY_RE.match(key):
        raise r.fail(f"{path}.key", f"{key!r} is not a task key",
                     hint="letters, digits, ., - and _, e.g. api-spec")
    try:
        estimate = md.check_estimate(t.get("estimate"))
    except InvalidInput as exc:
        raise r.fail(f"{path}.estimate", exc.message, exc.hint) from None
    return TemplateTask(
        title=r.text(t.get("title"), f"{path}.title", required=True, limit=md.MAX_TITLE),
        key=key,
        description=r.text(t.get("description"), f"{path}.description", limit=md.MAX_TEXT,
                           single_line=False),
        estimate=None if estimate is None else float(estimate),
        skills=r.text_list(t.get("skills"), f"{path}.skills", limit=100),
        depends_on=r.text_list(t.get("depends_on"), f"{path}.depends_on", limit=md.MAX_TITLE),
    )


def _parse_requires(r: _Reader, raw: Any, phases: Sequence[Phase]) -> Requirements:
    if raw is None:
        return Requirements()
    q = r.mapping(raw, "requires", _REQUIRES_KEYS)
    names = [p.name for p in phases]
    wanted: tuple[str, ...] = ()
    raw_phases = q.get("phases")
    if raw_phases is True:
        wanted = tuple(names)
    elif raw_phases not in (None, False):
        wanted = r.text_list(raw_phases, "requires.phases")
        by_fold = {n.casefold(): n for n in names}
        for i, w in enumerate(wanted, 1):
            if w.casefold() not in by_fold:
                raise r.fail(f"requires.phases[{i}]", f"{w!r} is not a phase of this template",
                             hint=f"phases: {', '.join(names)}")
        wanted = tuple(by_fold[w.casefold()] for w in wanted)
    criteria = q.get("success_criteria")
    count = (1 if criteria is True else 0 if criteria in (None, False)
             else r.integer(criteria, "requires.success_criteria", 0, 1000))
    return Requirements(
        phases=wanted,
        min_tasks=0 if q.get("min_tasks") is None
        else r.integer(q.get("min_tasks"), "requires.min_tasks", 0, MAX_TASKS),
        due_date=r.flag(q.get("due_date"), "requires.due_date"),
        success_criteria=count,
        estimates=r.flag(q.get("estimates"), "requires.estimates"),
    )


def dependency_graph(template: Template, r: _Reader | None = None) -> list[list[int]]:
    """For each task (phase order), the indices of the tasks it depends on.

    Explicit ``depends_on`` names a task listed earlier, by key or by a title no other
    task shares; that keeps the graph acyclic. Tasks without it wait for the previous
    phase's final tasks (those no other task of that phase depends on).
    """
    reader = r or _Reader(f"template {template.name}")
    flat = template.tasks
    keys: dict[str, int] = {}
    titles: dict[str, int] = {}
    shared: set[str] = set()  # titles used by more than one task: not a reference
    deps: list[list[int]] = []
    phase_of: list[int] = []
    for pi, phase in enumerate(template.phases):
        for ti, task in enumerate(phase.tasks):
            i = len(deps)
            path = f"phases[{pi + 1}].tasks[{ti + 1}]"
            mine: list[int] = []
            for ref in task.depends_on:
                target = keys.get(ref, titles.get(ref))
                if target is None:
                    if ref in shared:
                        problem = "a title several tasks share"
                        hint = "give the tasks keys and depend on the key"
                    elif any(ref in (t.key, t.title) for _, t in flat[i:]):
                        problem = "this task or one listed after it"
                        hint = "a task can only depend on tasks listed before it"
                    else:
                        problem = "not the key or title of a task in this template"
                        hint = "depend on tasks listed earlier, by their key or exact title"
                    raise reader.fail(f"{path}.depends_on", f"{ref!r} is {problem}", hint=hint)
                if target not in mine:
                    mine.append(target)
            deps.append(mine)
            phase_of.append(pi)
            if task.key is not None:
                if task.key in keys:
                    raise reader.fail(f"{path}.key", f"key {task.key!r} is used twice",
                                      hint="give every task its own key")
                keys[task.key] = i
            if task.title in titles or task.title in shared:
                titles.pop(task.title, None)
                shared.add(task.title)
            else:
                titles[task.title] = i
    # Phase gates: a task with no explicit depends_on waits for the previous phase.
    finals: list[int] = []
    for pi in range(len(template.phases)):
        members = [i for i, p in enumerate(phase_of) if p == pi]
        for i in members:
            if not deps[i] and finals:
                deps[i] = list(finals)
        inside = {d for i in members for d in deps[i] if phase_of[d] == pi}
        finals = [i for i in members if i not in inside]
    return deps

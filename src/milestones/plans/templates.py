"""Milestone templates: ready-made phases, tasks and success criteria for kinds of work.

Built-in templates are YAML files shipped in the package (``template_data/<name>.yaml``),
read only when a template is needed and checked like any user template. People add
their own as YAML files with the same schema, one template per file, named after
the template (``api.yaml`` holds the ``api`` template):

* ``.milestones/templates/*.yaml``: the project's templates (shared through git);
* ``$XDG_CONFIG_HOME/milestone/templates/*.yaml`` (default
  ``~/.config/milestone/templates``): the user's own.

A project template overrides a user template of the same name, and both override
a built-in. The schema::

    name: api                   # optional; must match the file name when given
    description: What the template is for (shown when listing templates)
    title: "API: {{ service }}"  # the milestone title when none is given
    milestone_description: "..." # the milestone's description (default: description)
    category: feature            # the milestone's category
    priority: medium             # critical | high | medium | low
    tags: [api, backend]
    duration: 21                 # days: due date = start + duration
    variables:                   # a list, or a mapping of name -> fields
      - name: service
        description: The service the API belongs to
        default: Orders          # used when no value is given
        required: false          # true: a value (or default) must exist
    phases:                      # in order; phase tasks carry the phase name
      - name: design
        days: 4                  # optional: phases without days share what is left
        tasks:
          - title: "Draft the {{ service }} OpenAPI spec"
            key: spec            # optional short name for depends_on
            estimate: 6          # hours
            skills: [api-design]
            depends_on: []       # keys or titles of tasks listed earlier
            description: "..."
    success_criteria: ["..."]
    requires:                    # what a milestone made from it must keep
      phases: true               # true (all) or a list of phase names
      min_tasks: 5
      due_date: true
      success_criteria: 1        # true means 1
      estimates: true            # every open task has an estimate

Placeholders are ``{{ name }}``: a declared variable, or ``title`` (the milestone
title; not in the title itself), ``start`` and ``due`` (ISO dates). Substitution is
a single pass of plain text replacement: no expressions, no filters, and values
are never scanned for further placeholders.

Dependencies in a rendered plan: a task that lists ``depends_on`` waits for exactly
those tasks. A task that lists none waits for the previous phase to finish: it
depends on that phase's final tasks, the ones no other task of that phase depends
on. Tasks of the first phase without ``depends_on`` can start at once.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DIRNAME = ".milestones"
TEMPLATE_DIR = "templates"
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


@dataclass(frozen=True)
class Problem:
    """Something a template requires that a milestone lacks."""

    what: str  # a short name: "due_date", "phase design", "tasks", ...
    message: str
    hint: str

    def to_dict(self) -> dict[str, str]:
        return {"what": self.what, "message": self.message, "hint": self.hint}


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


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
    _dependency_graph(template, r)  # unknown or forward references raise here
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


def _dependency_graph(template: Template, r: _Reader | None = None) -> list[list[int]]:
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


# ------------------------------------------------------------------ built-in

# The built-in templates are YAML files shipped as package data (DATA_DIR, one
# <name>.yaml per template, declared in pyproject.toml), read with importlib.resources
# only when a template is needed and checked by the same code as a user template file.
DATA_DIR = "template_data"
BUILTIN_NAMES = ("personal", "team", "api", "frontend", "bugfix", "feature", "release",
                 "research", "kiro-spec", "documentation")
_BUILTINS: dict[str, Template] = {}


def builtin_resource(name: str) -> Traversable:
    """The package resource of one built-in (a file, or a member of a zip)."""
    from importlib.resources import files

    return files(__package__ or "milestones") / DATA_DIR / f"{name}.yaml"


def _data_path(name: str) -> str:
    """A built-in's file as messages name it: ``milestones/plans/template_data/api.yaml``."""
    return f"{(__package__ or 'milestones').replace('.', '/')}/{DATA_DIR}/{name}.yaml"


def _builtin(name: str) -> Template:
    """One built-in template, read from its package file and checked once."""
    if name not in _BUILTINS:
        resource = builtin_resource(name)
        where = f"built-in template {name} ({_data_path(name)})"
        try:
            raw = resource.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read {where}: {exc.strerror or exc}",
                               hint="reinstall milestone") from None
        _BUILTINS[name] = _parse_yaml(raw, where, name=name, source="built-in")
    return _BUILTINS[name]


def builtin_templates() -> dict[str, Template]:
    """The built-in templates, parsed (and so checked) once."""
    return {name: _builtin(name) for name in BUILTIN_NAMES}


# ------------------------------------------------------------ user templates


def user_config_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/milestone/templates``, default ``~/.config/milestone/templates``."""
    environ = os.environ if env is None else env
    base = environ.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "milestone" / TEMPLATE_DIR


def project_template_dir(root: Path) -> Path:
    """``root`` is the ``.milestones`` directory (Project.root) or the directory holding it."""
    root = Path(root)
    base = root if root.name == DIRNAME else root / DIRNAME
    return base / TEMPLATE_DIR


def template_dirs(root: Path | None) -> list[Path]:
    """Where user templates come from, lowest precedence first."""
    dirs = [user_config_dir()]
    if root is not None:
        dirs.append(project_template_dir(root))
    return dirs


def _files(directory: Path, *, strict: bool = True) -> dict[str, Path]:
    """Template name -> file in one directory; a bad file name or a duplicate raises
    (``strict=False`` skips them instead)."""
    try:
        entries = sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        if not strict:
            return {}
        raise InvalidInput(f"cannot read the template directory {directory}: {exc.strerror}",
                           hint="check its permissions") from None
    out: dict[str, Path] = {}
    for path in entries:
        if path.suffix.lower() not in (".yaml", ".yml") or path.name.startswith("."):
            continue
        name = path.stem
        if not strict and (not TEMPLATE_NAME_RE.match(name) or name in out):
            continue
        if not TEMPLATE_NAME_RE.match(name):
            raise InvalidInput(f"{path}: {name!r} is not a template name",
                               hint="name template files in lowercase letters, digits, - and _,"
                               " e.g. my-api.yaml")
        if name in out:
            raise InvalidInput(f"{path}: template {name!r} is also defined in {out[name].name}",
                               hint="keep one of the two files")
        out[name] = path
    return out


def load_template_file(path: Path) -> Template:
    """Read and check one user template file."""
    from ..storage import fsutil, yamlio

    try:
        raw = fsutil.read_input(path, yamlio.MAX_FILE_BYTES, f"template {path}")
    except OSError as exc:
        raise InvalidInput(f"cannot read template {path}: {exc.strerror}") from None
    where = str(path)
    return _parse_yaml(raw, where, name=Path(path).stem, source=where)


def _parse_yaml(raw: bytes, where: str, *, name: str, source: str) -> Template:
    """A template file's bytes, parsed and checked: user files and built-ins alike."""
    from ..storage import yamlio

    data = yamlio.load_bytes(raw, where)
    if data is None:
        raise InvalidInput(f"{where}: the file is empty",
                           hint="give at least description, duration and phases")
    return parse_template(data, where, name=name, source=source)


def list_templates(root: Path | None = None) -> list[Template]:
    """Every template, by name: built-ins, then user ones overriding them by name.

    Every user template file is read and checked, so a broken one raises InvalidInput.
    """
    found = builtin_templates()
    for directory in template_dirs(root):
        for name, path in _files(directory).items():
            found[name] = load_template_file(path)
    return [found[n] for n in sorted(found)]


def get_template(root: Path | None, name: str) -> Template:
    """One template by name (project over user over built-in); unknown -> NotFound."""
    wanted = str(name).strip().lower()
    if TEMPLATE_NAME_RE.match(wanted):
        for directory in reversed(template_dirs(root)):
            paths = [p for p in (directory / f"{wanted}.yaml", directory / f"{wanted}.yml")
                     if p.is_file()]
            if len(paths) > 1:
                raise InvalidInput(f"{paths[1]}: template {wanted!r} is also defined in "
                                   f"{paths[0].name}", hint="keep one of the two files")
            if paths:
                return load_template_file(paths[0])
    if wanted in BUILTIN_NAMES:
        return _builtin(wanted)
    names = set(BUILTIN_NAMES)
    for directory in template_dirs(root):
        names.update(_files(directory, strict=False))
    close = difflib.get_close_matches(wanted, sorted(names), n=3, cutoff=0.5)
    hint = (f"did you mean {' or '.join(close)}? " if close else "") + \
        f"templates: {', '.join(sorted(names))}"
    raise NotFound(f"no template named {name!r}", hint=hint)


# ------------------------------------------------------------------- render


def _as_date(value: date | str, what: str) -> date:
    if isinstance(value, date):
        return value
    iso = md.check_date(value, what)
    if iso is None:
        raise InvalidInput(f"{what} is missing", hint="give a date as YYYY-MM-DD")
    return date.fromisoformat(iso)


def resolve_variables(template: Template,
                      variables: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Each declared variable's value: the given one, else its default, else ``""``.

    A given variable the template does not declare, or a required one with neither
    a value nor a default, raises InvalidInput naming it.
    """
    given = dict(variables or {})
    declared = [v.name for v in template.variables]
    for name in given:
        if name not in declared:
            close = difflib.get_close_matches(str(name), declared, n=1)
            raise InvalidInput(
                f"template {template.name} has no variable {name!r}",
                hint=(f"did you mean {close[0]}? " if close else "")
                + (f"its variables: {', '.join(declared)}" if declared
                   else "it takes no variables"),
            )
    values: dict[str, str] = {}
    for v in template.variables:
        raw = given.get(v.name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            if v.default is None and v.required:
                about = f" ({v.description})" if v.description else ""
                raise InvalidInput(
                    f"template {template.name} needs the variable {v.name!r}{about}",
                    hint=f"give it a value: {v.name}=VALUE",
                )
            values[v.name] = v.default or ""
            continue
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise InvalidInput(f"variable {v.name!r} must be text, not {type(raw).__name__}")
        values[v.name] = md.check_text(str(raw), f"variable {v.name}", limit=MAX_VALUE,
                                       single_line=True)
    return values


def render(template: Template, *, title: str | None = None,
           variables: Mapping[str, Any] | None = None,
           start: date | str) -> dict[str, Any]:
    """A milestone spec for ``Project.plan_many`` made from ``template``.

    ``title`` is used as given (no placeholders); without it the template's title
    pattern is filled in. The due date is ``start + duration`` days. Tasks come in
    phase order, each with its ``phase``; ``depends_on`` uses ``task-N`` by position
    (see the module docstring for the phase rule). ``template`` records the name,
    the variables' values and each phase's planned window.
    """
    start_d = _as_date(start, "start date")
    due_d = md.add_days(start_d, template.duration, f"the due date of template {template.name} "
                        f"({start_d.isoformat()} + {template.duration} days)")
    values = resolve_variables(template, variables)
    ctx = {**values, "start": start_d.isoformat(), "due": due_d.isoformat()}
    where = f"template {template.name}"
    if title is not None and title.strip():
        final_title = title
    else:
        pattern = template.title or template.name.replace("-", " ").replace("_", " ").capitalize()
        final_title = _one_line(substitute(pattern, ctx, f"{where}: title"))
    final_title = md.check_title(final_title, "milestone title")
    ctx["title"] = final_title

    graph = _dependency_graph(template)
    tasks: list[dict[str, Any]] = []
    for i, (phase, task) in enumerate(template.tasks):
        task_title = _one_line(substitute(task.title, ctx, f"{where}: task {task.title!r}"))
        tasks.append({
            "title": md.check_title(task_title, f"{where}: task {task.title!r} title"),
            "description": substitute(task.description, ctx,
                                      f"{where}: task {task.title!r} description").strip(),
            "estimate": task.estimate,
            "skills": list(task.skills),
            "depends_on": [f"task-{d + 1}" for d in graph[i]],
            "phase": phase.name,
        })
    windows = []
    offset = 0
    for phase in template.phases:
        windows.append({"name": phase.name,
                        "start": (start_d + timedelta(days=offset)).isoformat(),
                        "due": (start_d + timedelta(days=offset + phase.days)).isoformat()})
        offset += phase.days
    description = substitute(template.milestone_description or template.description, ctx,
                             f"{where}: milestone_description").strip()
    return {
        "title": final_title,
        "description": description,
        "start_date": start_d.isoformat(),
        "due_date": due_d.isoformat(),
        "priority": template.priority,
        "tags": list(template.tags),
        "category": template.category,
        "success_criteria": [
            _one_line(substitute(s, ctx, f"{where}: success criterion {s!r}"))
            for s in template.success_criteria
        ],
        "tasks": tasks,
        "template": {"name": template.name, "variables": values, "phases": windows},
    }


# ------------------------------------------------------------- requirements


def check_requirements(milestone: Mapping[str, Any], template: Template) -> list[Problem]:
    """What ``template`` requires that ``milestone`` (a Milestone.to_dict()) lacks.

    Skipped tasks do not count: a phase whose tasks were all skipped is missing.
    Only open tasks (todo, in progress, blocked) need estimates.
    """
    req = template.requires
    mid = str(milestone.get("id") or "the milestone")
    name = template.name
    tasks = [t for t in milestone.get("tasks") or [] if isinstance(t, Mapping)]
    live = [t for t in tasks if t.get("status") != "skipped"]
    problems: list[Problem] = []
    have = {_fold(t.get("phase")) for t in live}
    for phase in req.phases:
        if _fold(phase) not in have:
            problems.append(Problem(
                what=f"phase {phase}",
                message=f"{mid} has no {phase} tasks left; the {name} template requires "
                        f"the {phase} phase",
                hint=f"add a task in the {phase} phase, or reopen a skipped one",
            ))
    if req.min_tasks and len(live) < req.min_tasks:
        problems.append(Problem(
            what="tasks",
            message=f"{mid} has {len(live)} task(s) that are not skipped; the {name} template "
                    f"requires at least {req.min_tasks}",
            hint=f"add tasks: `milestone task add {mid} TITLE`",
        ))
    if req.due_date and not milestone.get("due_date"):
        problems.append(Problem(
            what="due_date",
            message=f"{mid} has no due date; the {name} template requires one",
            hint=f"set one: `milestone update {mid} --due YYYY-MM-DD`",
        ))
    criteria = [c for c in milestone.get("success_criteria") or [] if str(c).strip()]
    if req.success_criteria and len(criteria) < req.success_criteria:
        need = req.success_criteria
        problems.append(Problem(
            what="success_criteria",
            message=f"{mid} has {len(criteria)} success criteria; the {name} template requires "
                    + ("one" if need == 1 else f"at least {need}"),
            hint=f"add them: `milestone update {mid} --criterion TEXT`",
        ))
    if req.estimates:
        missing = [str(t.get("id")) for t in live
                   if t.get("status") not in md.FINISHED_TASK and t.get("estimate") is None]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more"
                                              if len(missing) > 5 else "")
            problems.append(Problem(
                what="estimates",
                message=f"{mid}: {shown} ha{'s' if len(missing) == 1 else 've'} no estimate; "
                        f"the {name} template requires estimates",
                hint=f"estimate them: `milestone task edit {mid}/{missing[0]} --estimate HOURS`",
            ))
    return problems


def _fold(value: Any) -> str:
    return str(value or "").strip().casefold()


def template_names(templates: Iterable[Template]) -> list[str]:
    return [t.name for t in templates]

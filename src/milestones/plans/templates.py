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

The model and the checks of a template file live in ``template_parse``; its public
names are importable here.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import InvalidInput, NotFound
from .template_parse import (
    MAX_VALUE,
    TEMPLATE_NAME_RE,
    Phase,
    Requirements,
    Template,
    TemplateTask,
    Variable,
    dependency_graph,
    parse_template,
    placeholders,
    substitute,
)

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "BUILTIN_NAMES", "DATA_DIR", "DIRNAME", "MAX_VALUE", "TEMPLATE_DIR", "TEMPLATE_NAME_RE",
    "Phase", "Problem", "Requirements", "Template", "TemplateTask", "Variable",
    "builtin_resource", "builtin_templates", "check_requirements", "get_template",
    "list_templates", "load_template_file", "parse_template", "placeholders",
    "project_template_dir", "render", "resolve_variables", "substitute", "template_dirs",
    "template_names", "user_config_dir",
]

DIRNAME = ".milestones"
TEMPLATE_DIR = "templates"

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


def _one_line(text: str) -> str:
    return " ".join(text.split())


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

    graph = dependency_graph(template)
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


@dataclass(frozen=True)
class Problem:
    """Something a template requires that a milestone lacks."""

    what: str  # a short name: "due_date", "phase design", "tasks", ...
    message: str
    hint: str

    def to_dict(self) -> dict[str, str]:
        return {"what": self.what, "message": self.message, "hint": self.hint}


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

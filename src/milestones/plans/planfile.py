"""Plan files for ``milestone plan --from-file``: plan.yaml or plan.md.

plan.yaml holds one milestone mapping, or ``milestones: [...]``. Fields are the
milestone's (``start``/``due`` are accepted for ``start_date``/``due_date``);
``tasks`` is a list of titles or mappings (title, estimate, depends_on, skills,
assignee, run, description, paths). Tasks get ids task-1, task-2, ... in order,
so ``depends_on: [task-1]`` refers to the first task.

plan.md::

    # Public beta
    Due: 2026-12-20
    Priority: high
    Tags: release, web

    Free text here becomes the description.

    - [ ] Freeze the API (3h)
    - [ ] Write docs (2h) after 1
    - [ ] Ship after 1, 2

A second ``#`` heading starts another milestone. ``(3h)`` is an estimate and
``after 1, 2`` lists the tasks (by number) it depends on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import model as md
from ..errors import InvalidInput
from ..storage import fsutil, yamlio

_KEY = re.compile(
    r"^(due|start|priority|owner|tags|category|depends on|depends_on)\s*:\s*(.*)$", re.IGNORECASE
)
_ITEM = re.compile(r"^\s*[-*]\s+(?:\[([ xX])\]\s+)?(.+?)\s*$")
_EST = re.compile(r"\s*\(([0-9]+(?:\.[0-9]+)?)\s*h\)")
_AFTER = re.compile(r"\s+after\s+([0-9,\s]+)$", re.IGNORECASE)


def read_plan(path: Path) -> list[dict[str, Any]]:
    try:
        raw = fsutil.read_input(path, yamlio.MAX_FILE_BYTES, f"plan file {path}")
    except FileNotFoundError:
        raise InvalidInput(f"plan file {path} does not exist", hint="check the path") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read plan file {path}: {exc.strerror}",
                           hint="give a plan.yaml or plan.md file") from None
    text = yamlio.decode(raw, str(path))
    if Path(path).suffix.lower() in (".md", ".markdown"):
        specs = parse_markdown(text, str(path))
    else:
        specs = parse_yaml(text, str(path))
    if not specs:
        raise InvalidInput(
            f"{path}: no milestones found",
            hint="give a `title:` (YAML) or a `# Title` heading (Markdown)",
        )
    return specs


_FIELDS = {
    "title",
    "description",
    "start_date",
    "due_date",
    "priority",
    "owner",
    "tags",
    "depends_on",
    "category",
    "tasks",
    "assignees",
    "success_criteria",
    "deliverables",
    "risks",
}


def parse_yaml(text: str, where: str) -> list[dict[str, Any]]:
    data = yamlio.load_text(text, where)
    if isinstance(data, dict) and "milestones" in data:
        items = data["milestones"]
    elif isinstance(data, dict):
        items = [data]
    elif isinstance(data, list):
        items = data
    else:
        raise InvalidInput(
            f"{where}: expected a milestone mapping or a list of them",
            hint="start with `title: ...`",
        )
    if not isinstance(items, list):
        raise InvalidInput(f"{where}: milestones must be a list")
    specs = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise InvalidInput(f"{where}: milestone #{i} must be a mapping of fields")
        spec = dict(item)
        for short, long in (("start", "start_date"), ("due", "due_date")):
            if short in spec:
                spec[long] = spec.pop(short)
        for key in ("tags", "depends_on", "assignees", "success_criteria"):
            if isinstance(spec.get(key), str):
                spec[key] = [spec[key]]
        unknown = set(spec) - _FIELDS
        if unknown:
            import difflib

            close = [m for u in sorted(unknown, key=str)
                     for m in difflib.get_close_matches(str(u), sorted(_FIELDS), n=1)]
            raise InvalidInput(
                f"{where}: milestone #{i} has unknown field(s) {', '.join(sorted(unknown))}",
                hint=(f"did you mean {', '.join(close)}? " if close else "")
                + "see `milestone plan --help` for the fields",
            )
        for long in ("start_date", "due_date"):  # checked here to name the file
            md.check_date(spec.get(long), f"{where}: milestone #{i} {long}")
        tasks = spec.get("tasks") or []
        if not isinstance(tasks, list):
            raise InvalidInput(f"{where}: milestone #{i} tasks must be a list")
        spec["tasks"] = [t if isinstance(t, dict) else {"title": str(t)} for t in tasks]
        for j, t in enumerate(spec["tasks"], 1):
            md.check_estimate(t.get("estimate"), f"{where}: milestone #{i} task #{j} estimate")
        specs.append(spec)
    return specs


def parse_markdown(text: str, where: str) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    spec: dict[str, Any] | None = None
    description: list[str] = []

    def finish() -> None:
        if spec is not None:
            spec["description"] = "\n".join(description).strip()

    for no, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("# "):
            finish()
            spec = {"title": stripped[2:].strip(), "tasks": []}
            description = []
            specs.append(spec)
            continue
        if spec is None:
            if stripped:
                raise InvalidInput(
                    f"{where}:{no}: text before the first `# Title` heading",
                    hint="start the plan with a `# Milestone title` line",
                )
            continue
        key = _KEY.match(stripped)
        if key and not spec["tasks"]:
            name, value = key.group(1).lower().replace(" ", "_"), key.group(2).strip()
            if name in ("tags", "depends_on"):
                spec[name] = [v.strip() for v in value.split(",") if v.strip()]
            else:
                field = {"due": "due_date", "start": "start_date"}.get(name, name)
                if field in ("due_date", "start_date"):
                    md.check_date(value, f"{where}:{no}: {name} date")
                spec[field] = value
            continue
        item = _ITEM.match(line)
        if item and not stripped.startswith("##"):
            title = item.group(2)
            task: dict[str, Any] = {}
            after = _AFTER.search(title)
            if after:
                task["depends_on"] = [f"task-{n}" for n in re.findall(r"[0-9]+", after.group(1))]
                title = title[: after.start()]
            est = _EST.search(title)
            if est:
                task["estimate"] = md.check_estimate(est.group(1), f"{where}:{no}: estimate")
                title = title[: est.start()] + title[est.end() :]
            task["title"] = title.strip()
            if item.group(1) in ("x", "X"):
                task["status"] = "done"
            spec["tasks"].append(task)
            continue
        if stripped.startswith("##"):
            continue
        if not spec["tasks"]:
            description.append(line)
    finish()
    return specs

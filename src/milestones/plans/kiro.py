"""Kiro specs: ``.kiro/specs/<name>/`` holding requirements.md, design.md and tasks.md.

Kiro (AWS's spec-driven IDE) writes requirements as user stories, each with numbered
EARS acceptance criteria (``1. WHEN … THEN the system SHALL …``), and the plan as a
checkbox list::

    - [ ] 1. Set up the store
      - Create the schema
      - _Requirements: 1.1, 2.3_

    - [x] 2. Parent task
      - [x] 2.1 Subtask
      - [ ]* 2.2 Optional subtask

This module reads those files and maps them; it holds no Project or CLI code. The
parts live beside it: ``kiro_tasks`` (tasks.md), ``kiro_requirements`` (requirements.md,
EARS) and ``kiro_export`` (back into tasks.md); their public names are importable here.

Import (``parse_tasks_md`` then ``tasks_to_specs``): one task per checkbox, in file
order, so the N-th checkbox becomes ``task-N`` in ``Project.plan_many``.

* title -> title; one over 200 characters is cut, and the full text opens the description
* ``[x]`` -> ``done``; ``[ ]``, ``[-]`` (Kiro: running) and ``[~]`` (Kiro: queued) -> ``todo``
* number (``1``, ``2.1``) -> ``spec_ref``, the link back to the line in tasks.md
* detail lines under the checkbox (bullets, prose, code; not nested checkboxes and not
  requirement lines), dedented -> description
* ``_Requirements: 1.1, 2.3_`` and ``**Validates: Requirements 1.1**`` -> requirements
  (``1.1-1.3`` is expanded; ``All`` names no id, but the task counts as traced)
* a parent depends on its direct subtasks (``depends_on: [task-3, task-4]``), so it is
  finished after them. Subtasks are found by number (``2.1`` under ``2``), else by
  indentation (an unnumbered nested checkbox)
* ``[ ]*`` / ``[ ]\\*`` / ``2.2*`` (optional) -> ``optional: True``; not a milestone
  field (plan_many ignores it), but ``export_tasks_md`` writes ``*`` for a task dict
  that has it

Export (``export_tasks_md``) with the imported text never rewrites it: a milestone task
matches its checkbox by ``spec_ref`` (else by title); the only edits are checkbox flips
for tasks whose done-ness changed (``[x]`` <-> ``[ ]``; only status ``done`` is done, so
``skipped`` unticks; a ``[-]`` or ``[~]`` box stays while the task is not done) and new
tasks appended after the last task, numbered after the last top-level number. Titles,
details and requirements edited in the tracker, and deleted tasks, leave the file alone.
Without the text it writes a clean tasks.md, nesting tasks by their ``spec_ref``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput
from ..storage import fsutil, yamlio
from .kiro_export import Export, export_tasks, export_tasks_md
from .kiro_requirements import Requirement, is_ears, parse_requirements_md
from .kiro_tasks import DONE_MARKS, MARKS, MAX_DIGITS, KiroTask, parse_tasks_md, tasks_to_specs

__all__ = [
    "DONE_MARKS", "MARKS", "MAX_DIGITS", "SPEC_FILES", "Export", "KiroTask", "Requirement",
    "Spec", "Trace", "export_tasks", "export_tasks_md", "find_specs", "is_ears",
    "parse_requirements_md", "parse_tasks_md", "read_spec", "tasks_to_specs", "trace",
]

SPEC_FILES = ("requirements.md", "design.md", "tasks.md")


# ----------------------------------------------------------------------- types


@dataclass(frozen=True)
class Trace:
    """How tasks and requirements cover each other."""

    uncovered: tuple[str, ...]
    unknown: tuple[str, ...]
    untraced: tuple[KiroTask, ...]

    @property
    def ok(self) -> bool:
        return not (self.uncovered or self.unknown or self.untraced)


@dataclass(frozen=True)
class Spec:
    """A spec directory: the texts that exist and what they parse to."""

    name: str
    directory: Path
    requirements_md: str | None = None
    design_md: str | None = None
    tasks_md: str | None = None
    requirements: tuple[Requirement, ...] = ()
    tasks: tuple[KiroTask, ...] = ()

    @property
    def tasks_path(self) -> Path:
        return self.directory / "tasks.md"


# ------------------------------------------------------------------- trace


def trace(requirements: Sequence[Requirement], tasks: Sequence[KiroTask]) -> Trace:
    """Criteria no task covers, ids no criterion has, and tasks naming no requirement."""
    known = {r.id for r in requirements}
    by_req: dict[str, list[str]] = {}
    for r in requirements:
        by_req.setdefault(r.requirement, []).append(r.id)
    covered: set[str] = set()
    unknown: dict[str, None] = {}  # in order, each once
    for t in tasks:
        for ref in t.requirements:
            if ref in known:
                covered.add(ref)
            elif ref in by_req:  # a whole requirement: "_Requirements: 2_"
                covered.update(by_req[ref])
            else:
                unknown[ref] = None
    position = {t.line: i for i, t in enumerate(tasks)}
    traced = [bool(t.requirements) or t.all_requirements for t in tasks]
    for i in range(len(tasks) - 1, -1, -1):  # subtasks come after their parent
        parent = tasks[i].parent_line
        if traced[i] and parent is not None and parent in position:
            traced[position[parent]] = True
    return Trace(
        uncovered=tuple(r.id for r in requirements if r.id not in covered),
        unknown=tuple(unknown),
        untraced=tuple(t for t, ok in zip(tasks, traced, strict=True) if not ok),
    )


# ------------------------------------------------------------------- files


def read_spec(path: Path | str) -> Spec:
    """Read a spec directory (``.kiro/specs/<name>``) or one of its files, e.g. tasks.md."""
    p = Path(path)
    if p.is_file():
        if p.name not in SPEC_FILES:
            raise InvalidInput(
                f"{p} is not a Kiro spec file", hint="give the spec directory or its tasks.md"
            )
        directory = p.parent
    elif p.is_dir():
        directory = p
    elif p.exists():  # a FIFO or a device: refused at once, never read
        raise fsutil.not_regular(p, p.stat().st_mode, f"Kiro spec {p}")
    else:
        raise InvalidInput(
            f"Kiro spec {p} does not exist", hint="give a directory like .kiro/specs/<name>"
        )
    texts = {name: _read(directory / name) for name in SPEC_FILES}
    if all(v is None for v in texts.values()):
        raise InvalidInput(
            f"{directory} holds no requirements.md, design.md or tasks.md",
            hint="give a directory like .kiro/specs/<name>",
        )
    req_text, tasks_text = texts["requirements.md"], texts["tasks.md"]
    return Spec(
        name=directory.resolve().name,
        directory=directory,
        requirements_md=req_text,
        design_md=texts["design.md"],
        tasks_md=tasks_text,
        requirements=tuple(
            parse_requirements_md(req_text, str(directory / "requirements.md"))
            if req_text is not None
            else ()
        ),
        tasks=tuple(
            parse_tasks_md(tasks_text, str(directory / "tasks.md"))
            if tasks_text is not None
            else ()
        ),
    )


def find_specs(repo_root: Path | str) -> list[Path]:
    """The spec directories under ``<repo_root>/.kiro/specs/``, by name."""
    specs = Path(repo_root) / ".kiro" / "specs"
    if not specs.is_dir():
        return []
    return sorted(
        d
        for d in specs.iterdir()
        if d.is_dir()
        and not d.name.startswith(".")
        and any((d / name).is_file() for name in SPEC_FILES)
    )


# ------------------------------------------------------------------ helpers


def _read(path: Path) -> str | None:
    if not os.path.lexists(path):
        return None
    try:  # a FIFO, a device or a folder by that name is refused, not skipped
        raw = fsutil.read_input(path, yamlio.MAX_FILE_BYTES, str(path))
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    return yamlio.decode(raw, str(path))

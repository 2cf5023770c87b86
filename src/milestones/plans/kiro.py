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

This module reads those files and maps them; it holds no Project or CLI code.

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
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..model import MAX_TITLE
from ..storage import fsutil, yamlio

SPEC_FILES = ("requirements.md", "design.md", "tasks.md")
MARKS = (" ", "x", "X", "-", "~")
DONE_MARKS = ("x", "X")

_CHECKBOX = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+\[(?P<mark>[^\]]?)\](?P<rest>.*)$")
_OPTIONAL = re.compile(r"^(?P<star>\\?\*)?[ \t]*")
_NUMBERED = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)*)\.?(?P<star>\\?\*)?(?:[ \t]+|$)")
_KIRO_NUMBER = re.compile(r"^[0-9]{1,9}(?:\.[0-9]{1,9})*$")  # longer: renumbered
_REQ_LINE = re.compile(
    r"^(?:[-*+][ \t]+)?\\?_[ \t]*Requirements?[ \t]*:(?P<ids>.*?)\\?_[ \t]*$", re.IGNORECASE
)
_VALIDATES = re.compile(
    r"^(?:[-*+][ \t]+)?(?:\*\*|\\?_)[ \t]*Validates[ \t]*:[ \t]*(?:\*\*)?[ \t]*"
    r"(?:Requirements?\b)?(?P<ids>.*?)(?:\*\*|\\?_)?\W*$",
    re.IGNORECASE,
)
_ID = r"[0-9]+(?:\.[0-9]+)*"
_RANGE = re.compile(rf"(?<![\w.])(?P<a>{_ID})[ \t]*[-–—][ \t]*(?P<b>{_ID})(?![\w.])")
_ID_TOKEN = re.compile(rf"(?<![\w.\-])(?P<id>{_ID})(?![\w-]|\.[0-9])")
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})")
_BULLET = re.compile(r"^(?:[-*+]|[0-9]+[.)])(?:[ \t]|$)")

_HEADING = re.compile(r"^ {0,3}(?P<level>#{1,6})(?:[ \t]+(?P<text>.*?))?[ \t#]*$")
_REQ_HEAD = re.compile(r"^Requirement\s+(?P<n>[0-9]+)\b\s*[:：.\-–—]?\s*(?P<title>.*)$", re.I)
_AC_HEAD = re.compile(r"^Acceptance\s+Criteria\b", re.IGNORECASE)
_STORY = re.compile(r"^[*_]*\s*User\s+Story\s*[*_]*\s*:\s*[*_]*\s*(?P<story>.*?)\s*$", re.I)
_CRITERION = re.compile(r"^(?P<indent>[ \t]*)(?:(?P<n>[0-9]+)[.)]|[-*+])[ \t]+(?P<text>\S.*?)\s*$")

_SHALL = r"\bshall\b\s+\S"
_EARS = (
    re.compile(rf"^the\s+\S.*?{_SHALL}", re.IGNORECASE | re.DOTALL),  # ubiquitous
    re.compile(rf"^when\b.+?\bthe\s+\S.*?{_SHALL}", re.IGNORECASE | re.DOTALL),  # event
    re.compile(rf"^when\b.+?\bthen\b.+?{_SHALL}", re.IGNORECASE | re.DOTALL),  # Kiro event
    re.compile(rf"^while\b.+?{_SHALL}", re.IGNORECASE | re.DOTALL),  # state
    re.compile(rf"^if\b.+?\bthen\b.+?{_SHALL}", re.IGNORECASE | re.DOTALL),  # unwanted
    re.compile(rf"^where\b.+?{_SHALL}", re.IGNORECASE | re.DOTALL),  # optional feature
)


# ----------------------------------------------------------------------- types


@dataclass(frozen=True)
class KiroTask:
    """One checkbox of tasks.md."""

    number: str | None
    title: str
    done: bool
    optional: bool = False
    requirements: tuple[str, ...] = ()
    details: tuple[str, ...] = ()
    line: int = 0
    parent: str | None = None
    parent_line: int | None = None
    mark: str = " "
    all_requirements: bool = False
    indent: int = 0
    end_line: int = 0
    column: int = 0  # index of the mark character in its line


@dataclass(frozen=True)
class Requirement:
    """One acceptance criterion: requirement N, criterion M -> id ``N.M``."""

    id: str
    requirement: str
    text: str
    ears: bool
    line: int
    title: str = ""
    story: str | None = None


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


@dataclass(frozen=True)
class Export:
    """An exported tasks.md and the Kiro number each milestone task has in it."""

    text: str
    numbers: dict[str, str] = field(default_factory=dict)
    flipped: tuple[str, ...] = ()
    appended: tuple[str, ...] = ()


@dataclass
class _Item:
    number: str | None
    title: str
    mark: str
    optional: bool
    line: int
    indent: int
    column: int
    parent: _Item | None
    details: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    all_requirements: bool = False
    end_line: int = 0

    def freeze(self) -> KiroTask:
        return KiroTask(
            number=self.number,
            title=self.title,
            done=self.mark in DONE_MARKS,
            optional=self.optional,
            requirements=tuple(_unique(self.requirements)),
            details=tuple(_dedent(self.details)),
            line=self.line,
            parent=self.parent.number if self.parent else None,
            parent_line=self.parent.line if self.parent else None,
            mark=self.mark,
            all_requirements=self.all_requirements,
            indent=self.indent,
            end_line=self.end_line,
            column=self.column,
        )


# ------------------------------------------------------------------ tasks.md


def parse_tasks_md(text: str, where: str = "tasks.md") -> list[KiroTask]:
    """Every checkbox of a tasks.md, in file order; InvalidInput naming ``where:line``."""
    items: list[_Item] = []
    numbers: dict[str, _Item] = {}
    stack: list[_Item] = []
    fence: str | None = None
    fence_owner: _Item | None = None
    for no, (line, offset) in enumerate(_lines(text), 1):
        indent = _width(line)
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            if fence_owner is not None:
                fence_owner.details.append(line)
                fence_owner.end_line = no
            continue
        if not line.strip():
            if stack:
                stack[-1].details.append("")
            continue
        box = _checkbox(line, no, where)
        if box is not None:
            mark, rest, column = box
            while stack and stack[-1].indent >= indent:
                stack.pop()
            item = _new_item(mark, rest, no, indent, column + offset, where)
            item.parent = stack[-1] if stack else None
            if item.number is not None:
                if item.number in numbers:
                    raise InvalidInput(
                        f"{where}:{no}: task {item.number} is numbered twice "
                        f"(first on line {numbers[item.number].line})",
                        hint="give each task its own number",
                    )
                head = item.number.rpartition(".")[0]
                if head in numbers:
                    item.parent = numbers[head]
                numbers[item.number] = item
            items.append(item)
            stack.append(item)
            continue
        while stack and stack[-1].indent >= indent:
            stack.pop()
        owner = stack[-1] if stack else None
        content = line.strip()
        ids = _requirement_ids(content, no, where)
        if ids is not None:
            if owner is None:
                raise InvalidInput(
                    f"{where}:{no}: a requirements line outside any task",
                    hint="indent it under the checkbox of the task it belongs to",
                )
            if ids == ["*"]:
                owner.all_requirements = True
            else:
                owner.requirements.extend(ids)
            if not _VALIDATES.match(content):  # a bold Validates line also stays a detail
                owner.end_line = no
                continue
        opened = _FENCE.match(line)
        if opened:
            fence, fence_owner = opened.group("fence"), owner
        if owner is not None:
            owner.details.append(line)
            owner.end_line = no
    return [item.freeze() for item in items]


def tasks_to_specs(tasks: Sequence[KiroTask]) -> list[dict[str, Any]]:
    """Task dicts for ``Project.plan_many``: the N-th task becomes ``task-N``."""
    position = {t.line: i for i, t in enumerate(tasks)}
    children: dict[int, list[int]] = {}
    for i, t in enumerate(tasks):
        if t.parent_line is not None and t.parent_line in position:
            children.setdefault(position[t.parent_line], []).append(i)
    specs: list[dict[str, Any]] = []
    for i, t in enumerate(tasks):
        title, overflow = _plan_title(t.title)
        description = "\n".join(t.details)
        if overflow:
            description = f"{t.title}\n\n{description}".strip()
        specs.append(
            {
                "title": title,
                "status": "done" if t.done else "todo",
                "description": description,
                "requirements": list(t.requirements),
                "spec_ref": t.number,
                "depends_on": [f"task-{c + 1}" for c in children.get(i, [])],
                "optional": t.optional,
            }
        )
    return specs


def export_tasks_md(
    milestone: Mapping[str, Any], original: str | None = None, *, where: str = "tasks.md"
) -> str:
    """A milestone (``Milestone.to_dict()``) as tasks.md, editing ``original`` in place."""
    return export_tasks(milestone, original, where=where).text


def export_tasks(
    milestone: Mapping[str, Any], original: str | None = None, *, where: str = "tasks.md"
) -> Export:
    """Like ``export_tasks_md``, also telling which Kiro number each task has."""
    tasks = _milestone_tasks(milestone)
    if original is None:
        return _export_clean(tasks)
    return _export_into(tasks, original, where)


# ----------------------------------------------------------- requirements.md


def parse_requirements_md(text: str, where: str = "requirements.md") -> list[Requirement]:
    """Every acceptance criterion, as ``N.M`` ids with its requirement's user story."""
    out: list[Requirement] = []
    seen_reqs: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    req: str | None = None
    req_level = 0
    title = ""
    story: str | None = None
    story_open = False  # the user story may wrap onto the next lines
    in_ac = False
    cur: dict[str, Any] | None = None  # the criterion being read
    cur_indent = 0
    blank = False
    fence: str | None = None
    criteria: list[dict[str, Any]] = []

    def close() -> None:
        nonlocal cur
        if cur is not None:
            criteria.append(cur)
            cur = None

    def flush() -> None:
        close()
        for c in criteria:
            text_ = " ".join(c["text"])
            out.append(
                Requirement(
                    id=c["id"],
                    requirement=c["req"],
                    text=text_,
                    ears=is_ears(text_),
                    line=c["line"],
                    title=c["title"],
                    story=story,
                )
            )
        criteria.clear()

    for no, (line, _) in enumerate(_lines(text), 1):
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        fenced = _FENCE.match(line)
        if fenced:
            close()
            fence = fenced.group("fence")
            continue
        heading = _HEADING.match(line)
        if heading:
            close()
            story_open = False
            level = len(heading.group("level"))
            name = (heading.group("text") or "").strip().strip("*_").strip()
            head = _REQ_HEAD.match(name)
            if head:
                flush()
                n = str(int(_check_number(head.group("n"), no, where)))
                if n in seen_reqs:
                    raise InvalidInput(
                        f"{where}:{no}: requirement {n} appears twice "
                        f"(first on line {seen_reqs[n]})",
                        hint="number each requirement once",
                    )
                seen_reqs[n] = no
                req, req_level, title, story = n, level, head.group("title").strip(), None
                story_open = in_ac = False
            elif _AC_HEAD.match(name):
                if req is None:
                    raise InvalidInput(
                        f"{where}:{no}: acceptance criteria before any `Requirement N` heading",
                        hint="put them under a heading like `### Requirement 1`",
                    )
                in_ac = True
            else:
                in_ac = False
                if req is not None and level <= req_level:
                    flush()
                    req = None
            blank = False
            continue
        if not stripped:
            blank = True
            story_open = story_open and story is None
            continue
        if req is not None and not in_ac:
            found = _STORY.match(stripped)
            if found and story is None:
                story, story_open = found.group("story") or None, True
            elif story_open:
                story = f"{story} {stripped}" if story else stripped
            continue
        if not in_ac or req is None:
            continue
        item = _CRITERION.match(line)
        if item and (cur is None or _width(item.group("indent")) <= cur_indent):
            close()
            if item.group("n") is not None:
                m = str(int(_check_number(item.group("n"), no, where)))
            else:
                m = str(sum(1 for c in criteria if c["req"] == req) + 1)
            cid = f"{req}.{m}"
            if cid in seen_ids:
                raise InvalidInput(
                    f"{where}:{no}: acceptance criterion {cid} appears twice "
                    f"(first on line {seen_ids[cid]})",
                    hint="number the criteria of a requirement 1, 2, 3, …",
                )
            seen_ids[cid] = no
            cur = {"id": cid, "req": req, "text": [item.group("text")], "line": no, "title": title}
            cur_indent = _width(item.group("indent"))
        elif cur is not None and (not blank or _width(line) > cur_indent):
            cur["text"].append(stripped)
        blank = False
    flush()
    return out


def is_ears(text: str) -> bool:
    """True when ``text`` follows an EARS pattern (keywords in any case)."""
    plain = " ".join(text.replace("**", "").replace("__", "").split())
    return any(p.match(plain) for p in _EARS)


def trace(requirements: Sequence[Requirement], tasks: Sequence[KiroTask]) -> Trace:
    """Criteria no task covers, ids no criterion has, and tasks naming no requirement."""
    known = {r.id for r in requirements}
    by_req: dict[str, list[str]] = {}
    for r in requirements:
        by_req.setdefault(r.requirement, []).append(r.id)
    covered: set[str] = set()
    unknown: list[str] = []
    for t in tasks:
        for ref in t.requirements:
            if ref in known:
                covered.add(ref)
            elif ref in by_req:  # a whole requirement: "_Requirements: 2_"
                covered.update(by_req[ref])
            elif ref not in unknown:
                unknown.append(ref)
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


def _lines(text: str) -> Iterable[tuple[str, int]]:
    """Each line without its ``\\n``/``\\r\\n`` (and a leading BOM), with that BOM's width."""
    for i, raw in enumerate(text.split("\n")):
        line = raw[:-1] if raw.endswith("\r") else raw
        if i == 0 and line.startswith("\ufeff"):
            yield line[1:], 1
        else:
            yield line, 0


def _width(line: str) -> int:
    """Indentation in columns, a tab counting as 4."""
    return len(line[: len(line) - len(line.lstrip(" \t"))].expandtabs(4))


def _checkbox(line: str, no: int, where: str) -> tuple[str, str, int] | None:
    m = _CHECKBOX.match(line)
    if not m:
        return None
    mark, rest = m.group("mark"), m.group("rest")
    if rest and rest[0] not in " \t*\\":
        if rest[0].isalnum() and mark in MARKS:
            raise InvalidInput(
                f"{where}:{no}: no space after the checkbox",
                hint="write `- [ ] 1. Title`",
            )
        return None  # a link like [x](url), not a checkbox
    if mark not in MARKS:
        raise InvalidInput(
            f"{where}:{no}: unknown checkbox [{mark}]",
            hint="use [ ] (to do), [x] (done), [-] (in progress) or [~] (queued)",
        )
    return mark, rest, m.start("mark")


MAX_DIGITS = 9  # a task, requirement or criterion number; int() of thousands of digits raises


def _check_number(number: str, no: int, where: str) -> str:
    """``number`` (``3`` or ``1.2.3``) when each part has at most MAX_DIGITS digits."""
    if any(len(part) > MAX_DIGITS for part in number.split(".")):
        raise InvalidInput(
            f"{where}:{no}: the number {number[:20]}{'…' if len(number) > 20 else ''} is too "
            "long", hint=f"number tasks and requirements with up to {MAX_DIGITS} digits")
    return number


def _new_item(mark: str, rest: str, no: int, indent: int, column: int, where: str) -> _Item:
    opt = _OPTIONAL.match(rest)
    assert opt is not None  # the pattern matches the empty string
    optional = opt.group("star") is not None
    body = rest[opt.end() :].strip()
    number: str | None = None
    numbered = _NUMBERED.match(body)
    if numbered:
        number = _check_number(numbered.group("num"), no, where)
        optional = optional or numbered.group("star") is not None
        body = body[numbered.end() :].strip()
    if not body:
        what = f"task {number}" if number else "checkbox"
        raise InvalidInput(f"{where}:{no}: {what} has no title", hint="write `- [ ] 1. Title`")
    return _Item(
        number=number,
        title=body,
        mark=mark,
        optional=optional,
        line=no,
        indent=indent,
        column=column,
        parent=None,
        end_line=no,
    )


def _requirement_ids(content: str, no: int, where: str) -> list[str] | None:
    """The ids on a requirements line, ``["*"]`` for "All", or None for another line."""
    m = _REQ_LINE.match(content) or _VALIDATES.match(content)
    if not m:
        return None
    text = m.group("ids").strip().strip("*").strip()
    if not text:
        raise InvalidInput(
            f"{where}:{no}: a requirements line names no requirement",
            hint="write `_Requirements: 1.1, 2.3_`",
        )
    for number in re.findall(_ID, text):
        _check_number(number, no, where)
    ids: list[str] = []
    for rng in _RANGE.finditer(text):
        ids.extend(_expand(rng.group("a"), rng.group("b")))
    rest = _RANGE.sub(" ", text)
    ids.extend(tok.group("id") for tok in _ID_TOKEN.finditer(rest))
    if not ids and text.lower().startswith("all"):
        return ["*"]
    return ids


def _expand(a: str, b: str) -> list[str]:
    head_a, _, last_a = a.rpartition(".")
    head_b, _, last_b = b.rpartition(".")
    if head_a == head_b and int(last_a) <= int(last_b) and int(last_b) - int(last_a) < 100:
        prefix = f"{head_a}." if head_a else ""
        return [f"{prefix}{n}" for n in range(int(last_a), int(last_b) + 1)]
    return [a, b]


def _dedent(lines: list[str]) -> list[str]:
    out = [line.rstrip().replace("\t", "    ") for line in lines]
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return textwrap.dedent("\n".join(out)).split("\n") if out else []


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _plan_title(title: str) -> tuple[str, bool]:
    """The title ``Project.plan_many`` accepts, and whether it had to be cut."""
    flat = " ".join(title.split())
    if len(flat) <= MAX_TITLE:
        return flat, False
    return flat[: MAX_TITLE - 1].rstrip() + "…", True


def _milestone_tasks(milestone: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if not isinstance(milestone, Mapping):
        raise InvalidInput("a milestone must be a mapping of fields")
    tasks = milestone.get("tasks") or []
    if not isinstance(tasks, list) or not all(isinstance(t, Mapping) for t in tasks):
        raise InvalidInput(f"{milestone.get('id', 'milestone')}: tasks must be a list of mappings")
    for t in tasks:
        if not isinstance(t.get("title"), str) or not t["title"].strip():
            raise InvalidInput(f"{milestone.get('id', 'milestone')}: a task has no title")
    return list(tasks)


def _tid(task: Mapping[str, Any], i: int) -> str:
    return str(task.get("id") or f"task-{i + 1}")


def _is_done(task: Mapping[str, Any]) -> bool:
    return task.get("status") == "done"


def _task_lines(
    task: Mapping[str, Any], number: str, indent: str, unit: str, top: bool
) -> list[str]:
    """A new checkbox with its description bullets and requirements line."""
    box = "[x]" if _is_done(task) else "[ ]"
    star = "*" if task.get("optional") else ""
    title = " ".join(str(task["title"]).split())
    lines = [f"{indent}- {box}{star} {number}{'.' if top else ''} {title}"]
    inner = indent + unit
    for d in str(task.get("description") or "").splitlines():
        if not d.strip():
            continue
        d = d.rstrip()
        lines.append(f"{inner}{d}" if d[0] in " \t" or _BULLET.match(d) else f"{inner}- {d}")
    reqs = [str(r) for r in task.get("requirements") or []]
    if reqs:
        lines.append(f"{inner}- _Requirements: {', '.join(reqs)}_")
    return lines


def _export_into(tasks: list[Mapping[str, Any]], original: str, where: str) -> Export:
    items = parse_tasks_md(original, where)
    by_number = {it.number: i for i, it in enumerate(items) if it.number is not None}
    matched: dict[int, int] = {}  # item index -> task index
    pending: list[int] = []
    for ti, task in enumerate(tasks):
        ref = task.get("spec_ref")
        ii = by_number.get(str(ref)) if ref is not None else None
        if ii is not None and ii not in matched:
            matched[ii] = ti
        else:
            pending.append(ti)
    by_title: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        if i not in matched:
            by_title.setdefault(_plan_title(it.title)[0], []).append(i)
    new: list[int] = []
    for ti in pending:  # then by title, in file order: unnumbered or renumbered tasks
        same = by_title.get(_plan_title(str(tasks[ti]["title"]))[0])
        if same:
            matched[same.pop(0)] = ti
        else:
            new.append(ti)
    lines = original.split("\n")
    numbers: dict[str, str] = {}
    flipped: list[str] = []
    for ii, ti in sorted(matched.items()):
        item, task = items[ii], tasks[ti]
        tid = _tid(task, ti)
        if item.number is not None:
            numbers[tid] = item.number
        if _is_done(task) != item.done:
            row = lines[item.line - 1]
            mark = "x" if _is_done(task) else " "
            lines[item.line - 1] = row[: item.column] + mark + row[item.column + 1 :]
            flipped.append(tid)
    if not new:
        return Export("\n".join(lines), numbers, tuple(flipped))
    crlf = "\r\n" in original
    unit = _indent_unit(items)
    spaced = _blank_separated(items, lines)
    top = max((int(it.number) for it in items if it.number and "." not in it.number), default=0)
    block: list[str] = []
    appended: list[str] = []
    for ti in new:
        top += 1
        tid = _tid(tasks[ti], ti)
        numbers[tid] = str(top)
        appended.append(tid)
        if spaced:
            block.append("")
        block.extend(_task_lines(tasks[ti], str(top), "", unit, True))
    if items:
        at = max(it.end_line for it in items)  # insert after this many lines
    else:
        at = len(lines) - 1 if lines[-1] == "" else len(lines)
        while at > 0 and not lines[at - 1].strip():
            at -= 1
    if block[0] == "" and (at == 0 or not lines[at - 1].strip()):
        block = block[1:]
    eol = "\r" if crlf else ""
    block = [b + eol for b in block]
    if at == len(lines):  # the file ends without a newline: so does the output
        if eol and not lines[-1].endswith(eol):
            lines[-1] += eol
        block[-1] = block[-1].removesuffix(eol) if eol else block[-1]
    lines[at:at] = block
    return Export("\n".join(lines), numbers, tuple(flipped), tuple(appended))


def _indent_unit(items: Sequence[KiroTask]) -> str:
    by_line = {it.line: it for it in items}
    for it in items:
        parent = by_line.get(it.parent_line) if it.parent_line is not None else None
        if parent is not None and it.indent > parent.indent:
            return " " * (it.indent - parent.indent)
    return "  "


def _blank_separated(items: Sequence[KiroTask], lines: list[str]) -> bool:
    tops = [it for it in items if it.parent_line is None]
    if len(tops) < 2:
        return True
    return any(not lines[it.line - 2].strip() for it in tops[1:])


def _export_clean(tasks: list[Mapping[str, Any]]) -> Export:
    refs: dict[int, str] = {}
    used: set[str] = set()
    for ti, task in enumerate(tasks):
        ref = task.get("spec_ref")
        if not isinstance(ref, str) or not _KIRO_NUMBER.match(ref) or ref in used:
            continue
        head = ref.rpartition(".")[0]
        if head and head not in used:
            continue
        refs[ti] = ref
        used.add(ref)
    top = max((int(r) for r in refs.values() if "." not in r), default=0)
    for ti in range(len(tasks)):
        if ti not in refs:
            top += 1
            refs[ti] = str(top)
    children: dict[str, list[int]] = {}
    roots: list[int] = []
    for ti in range(len(tasks)):
        head = refs[ti].rpartition(".")[0]
        if head:
            children.setdefault(head, []).append(ti)
        else:
            roots.append(ti)
    out = ["# Implementation Plan", ""]
    numbers: dict[str, str] = {}

    def emit(ti: int, depth: int, after_parent: bool) -> None:
        ref = refs[ti]
        numbers[_tid(tasks[ti], ti)] = ref
        if not after_parent and out[-1] != "":  # a blank line between tasks
            out.append("")
        out.extend(_task_lines(tasks[ti], ref, "  " * depth, "  ", depth == 0))
        for n, child in enumerate(children.get(ref, [])):
            emit(child, depth + 1, n == 0)

    for ti in roots:
        emit(ti, 0, False)
    return Export("\n".join(out) + "\n", numbers)

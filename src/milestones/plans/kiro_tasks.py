"""Kiro tasks.md, read: each checkbox as a KiroTask, and the tasks it makes in a plan.

The mapping from checkboxes to milestone tasks is described in ``kiro``; the line
helpers here (text_lines, indent_width, check_number, FENCE) serve requirements.md too.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput
from ..model import MAX_TITLE

MARKS = (" ", "x", "X", "-", "~")
DONE_MARKS = ("x", "X")

_CHECKBOX = re.compile(r"^(?P<indent>[ \t]*)[-*+][ \t]+\[(?P<mark>[^\]]?)\](?P<rest>.*)$")
_OPTIONAL = re.compile(r"^(?P<star>\\?\*)?[ \t]*")
_NUMBERED = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)*)\.?(?P<star>\\?\*)?(?:[ \t]+|$)")
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
FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})")


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
    for no, (line, offset) in enumerate(text_lines(text), 1):
        indent = indent_width(line)
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
        opened = FENCE.match(line)
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
        title, overflow = plan_title(t.title)
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


# ------------------------------------------------------------------ helpers


def text_lines(text: str) -> Iterable[tuple[str, int]]:
    """Each line without its ``\\n``/``\\r\\n`` (and a leading BOM), with that BOM's width."""
    for i, raw in enumerate(text.split("\n")):
        line = raw[:-1] if raw.endswith("\r") else raw
        if i == 0 and line.startswith("\ufeff"):
            yield line[1:], 1
        else:
            yield line, 0


def indent_width(line: str) -> int:
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


def check_number(number: str, no: int, where: str) -> str:
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
        number = check_number(numbered.group("num"), no, where)
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
        check_number(number, no, where)
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


def plan_title(title: str) -> tuple[str, bool]:
    """The title ``Project.plan_many`` accepts, and whether it had to be cut."""
    flat = " ".join(title.split())
    if len(flat) <= MAX_TITLE:
        return flat, False
    return flat[: MAX_TITLE - 1].rstrip() + "…", True

"""Kiro tasks.md, written: a milestone's tasks exported back into tasks.md.

With the imported text it only flips checkboxes and appends new tasks; without it
it writes a clean tasks.md (the rules are in ``kiro``).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput
from .kiro_tasks import KiroTask, parse_tasks_md, plan_title

_KIRO_NUMBER = re.compile(r"^[0-9]{1,9}(?:\.[0-9]{1,9})*$")  # longer: renumbered
_BULLET = re.compile(r"^(?:[-*+]|[0-9]+[.)])(?:[ \t]|$)")


@dataclass(frozen=True)
class Export:
    """An exported tasks.md and the Kiro number each milestone task has in it."""

    text: str
    numbers: dict[str, str] = field(default_factory=dict)
    flipped: tuple[str, ...] = ()
    appended: tuple[str, ...] = ()


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
    by_title: dict[str, deque[int]] = {}
    for i, it in enumerate(items):
        if i not in matched:
            by_title.setdefault(plan_title(it.title)[0], deque()).append(i)
    new: list[int] = []
    for ti in pending:  # then by title, in file order: unnumbered or renumbered tasks
        same = by_title.get(plan_title(str(tasks[ti]["title"]))[0])
        if same:
            matched[same.popleft()] = ti
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

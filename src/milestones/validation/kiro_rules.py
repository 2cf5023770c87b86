"""Kiro rules (MS7xx, the `kiro` type): the spec behind a `workflow: kiro` milestone.

Severity follows the milestone's Kiro settings: `enforcement: strict` makes a
finding an error (the write is refused), `flexible` a warning; `policy:
optional` turns everything but MS710 into advice (info).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import model as md
from ..errors import MilestoneError
from .registry import Context, rule


def _kiro_milestones(ctx: Context) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    return [(mid, m, m["kiro"]) for mid, m in ctx.scoped()
            if m.get("workflow") == "kiro" and isinstance(m.get("kiro"), Mapping)
            and m.get("status") not in ("archived", "cancelled")]


def _severity(kiro: Mapping[str, Any], gate_rule: bool = False) -> str:
    if kiro.get("policy", "optional") == "optional" and not gate_rule:
        return "info"
    return "error" if kiro.get("enforcement") == "strict" else "warning"


def _spec_dir(ctx: Context, kiro: Mapping[str, Any]) -> Path | None:
    if not kiro.get("path") or ctx.root is None:
        return None
    p = Path(str(kiro["path"]))
    return p if p.is_absolute() else ctx.root.parent / p


def _read(ctx: Context, kiro: Mapping[str, Any], name: str) -> str | None:
    d = _spec_dir(ctx, kiro)
    if d is None:
        return None
    try:
        return (d / name).read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _requirements(ctx: Context, mid: str, kiro: Mapping[str, Any]) -> list[Any] | None:
    from ..plans import kiro as kiro_mod

    text = _read(ctx, kiro, "requirements.md")
    if not text:
        return None
    try:
        return kiro_mod.parse_requirements_md(text, f"{kiro.get('path')}/requirements.md")
    except MilestoneError:
        return None


@rule("MS701", "kiro", "error", "the milestone's Kiro spec directory is missing",
      "restore .kiro/specs/<name>/ or fix kiro.path in the milestone")
def spec_missing(ctx: Context) -> None:
    for mid, _m, kiro in _kiro_milestones(ctx):
        d = _spec_dir(ctx, kiro)
        if d is not None and not d.is_dir():
            ctx.report(f"{mid}: spec directory {kiro.get('path')} does not exist", ref=mid,
                       path=(mid, ("kiro", "path")), severity=_severity(kiro))


@rule("MS702", "kiro", "error", "requirements.md is missing or has no numbered criteria",
      "write requirements with `#### Acceptance Criteria` and numbered EARS criteria")
def requirements_missing(ctx: Context) -> None:
    from ..plans import kiro as kiro_mod

    for mid, _m, kiro in _kiro_milestones(ctx):
        d = _spec_dir(ctx, kiro)
        if d is None or not d.is_dir():
            continue
        text = _read(ctx, kiro, "requirements.md")
        problem = None
        if not text or not text.strip():
            problem = "requirements.md is missing or empty"
        else:
            try:
                if not kiro_mod.parse_requirements_md(text, "requirements.md"):
                    problem = "requirements.md has no numbered acceptance criteria"
            except MilestoneError as exc:
                problem = str(exc).split(" — ")[0]
        if problem:
            ctx.report(f"{mid}: {problem}", ref=mid, file=f"{kiro.get('path')}/requirements.md",
                       severity=_severity(kiro))


@rule("MS703", "kiro", "warning", "an acceptance criterion is not written in EARS form",
      "write it as WHEN <event> THE SYSTEM SHALL <response> (or WHILE/IF/WHERE …)")
def not_ears(ctx: Context) -> None:
    for mid, _m, kiro in _kiro_milestones(ctx):
        for req in _requirements(ctx, mid, kiro) or []:
            if not req.ears:
                ctx.report(f"{mid}: criterion {req.id} is not EARS: {req.text[:80]}",
                           ref=mid, file=f"{kiro.get('path')}/requirements.md", line=req.line,
                           severity="info" if kiro.get("policy", "optional") == "optional"
                           else "warning")


@rule("MS704", "kiro", "error", "design.md is missing",
      "write the design in .kiro/specs/<name>/design.md")
def design_missing(ctx: Context) -> None:
    for mid, m, kiro in _kiro_milestones(ctx):
        d = _spec_dir(ctx, kiro)
        if d is None or not d.is_dir():
            continue
        phase = md.kiro_phase(md.Milestone.from_dict(m))
        text = _read(ctx, kiro, "design.md")
        if phase != "requirements" and not (text and text.strip()):
            ctx.report(f"{mid}: design.md is missing but the spec is past requirements",
                       ref=mid, file=f"{kiro.get('path')}/design.md", severity=_severity(kiro))


@rule("MS705", "kiro", "warning", "work started before the design was approved",
      "approve the design (`milestone review REF --approve design`)")
def design_unapproved(ctx: Context) -> None:
    for mid, m, kiro in _kiro_milestones(ctx):
        if md.gate_state(kiro, "design")["status"] == "approved":
            continue
        done_at_import = set(kiro.get("imported_done") or [])
        started = [t["id"] for t in m.get("tasks", []) if t.get("status") in
                   ("in_progress", "done") and t["id"] not in done_at_import]
        if started:
            ctx.report(f"{mid}: {', '.join(started[:5])} started but the design gate is "
                       f"{md.gate_state(kiro, 'design')['status']}", ref=mid,
                       severity=_severity(kiro))


def _covered(tasks: list[Mapping[str, Any]], ids: set[str]) -> tuple[set[str], list[str]]:
    """(requirement ids the tasks cover, ids they name that do not exist)."""
    numbers = {i.split(".")[0] for i in ids}
    covered: set[str] = set()
    unknown: list[str] = []
    for t in tasks:
        for r in t.get("requirements", []):
            if r in ids:
                covered.add(r)
            elif r in numbers:
                covered.update(i for i in ids if i.split(".")[0] == r)
            else:
                unknown.append(f"{t['id']}:{r}")
    return covered, unknown


@rule("MS706", "kiro", "warning", "a task does not trace to any requirement",
      "add `_Requirements: 1.2_` to the task in tasks.md (or its requirements field)")
def untraced(ctx: Context) -> None:
    for mid, m, kiro in _kiro_milestones(ctx):
        tasks = m.get("tasks", [])
        traced = {t["id"] for t in tasks if t.get("requirements")}
        changed = True
        while changed:  # a parent traces through its subtasks
            changed = False
            for t in tasks:
                if t["id"] not in traced and any(d in traced for d in t.get("depends_on", [])
                                                 if "/" not in d) and t.get("spec_ref") \
                        and any(str(o.get("spec_ref") or "").startswith(str(t["spec_ref"]) + ".")
                                for o in tasks):
                    traced.add(t["id"])
                    changed = True
        for i, t in enumerate(tasks):
            if t["id"] not in traced:
                ctx.report(f"{mid}/{t['id']} ({t['title'][:60]}) names no requirement",
                           ref=f"{mid}/{t['id']}", path=(mid, ("tasks", i)),
                           severity=_severity(kiro))


@rule("MS707", "kiro", "warning", "a requirement is not covered by any task",
      "add a task for it, or reference it from an existing task's requirements")
def uncovered(ctx: Context) -> None:
    for mid, m, kiro in _kiro_milestones(ctx):
        reqs = _requirements(ctx, mid, kiro)
        if not reqs or not m.get("tasks"):
            continue
        ids = {r.id for r in reqs}
        covered, _unknown = _covered(m["tasks"], ids)
        for r in reqs:
            if r.id not in covered:
                ctx.report(f"{mid}: requirement {r.id} is covered by no task", ref=mid,
                           file=f"{kiro.get('path')}/requirements.md", line=r.line,
                           severity=_severity(kiro))


@rule("MS708", "kiro", "warning", "a task names a requirement that does not exist",
      "fix the id in the task's `_Requirements:` line")
def unknown_requirement(ctx: Context) -> None:
    for mid, m, kiro in _kiro_milestones(ctx):
        reqs = _requirements(ctx, mid, kiro)
        if reqs is None:
            continue
        _covered_ids, unknown = _covered(m.get("tasks", []), {r.id for r in reqs})
        for item in unknown:
            tid, rid = item.split(":", 1)
            ctx.report(f"{mid}/{tid} names requirement {rid}, which requirements.md does not "
                       "have", ref=f"{mid}/{tid}", severity=_severity(kiro))


@rule("MS710", "kiro", "error", "a task started before the tasks gate was approved",
      "approve the tasks phase first (`milestone review REF --approve tasks`)", on_write=True)
def tasks_gate(ctx: Context) -> None:
    for mid, m, kiro in _kiro_milestones(ctx):
        if md.gate_state(kiro, "tasks")["status"] == "approved":
            continue
        imported_done = set(kiro.get("imported_done") or [])
        for i, t in enumerate(m.get("tasks", [])):
            if t.get("status") in ("in_progress", "done") and t["id"] not in imported_done:
                ctx.report(f"{mid}/{t['id']} is {t['status']} but the tasks gate of {mid} is "
                           f"{md.gate_state(kiro, 'tasks')['status']}", ref=f"{mid}/{t['id']}",
                           path=(mid, ("tasks", i, "status")),
                           severity=_severity(kiro, gate_rule=True))

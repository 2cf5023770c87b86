"""Template rules (MS6xx, the `quick` type): a milestone made from a template keeps
what the template requires (its phases, enough tasks, a due date, success
criteria, estimates)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import MilestoneError
from .registry import Context, rule

if TYPE_CHECKING:
    from ..plans.templates import Template

_PATHS = {"due_date": ("due_date",), "success_criteria": ("success_criteria",)}


def _template_of(ctx: Context, name: str) -> Template | None:
    from ..plans import templates

    cache: dict[str, Template | None] = ctx.memo.setdefault("templates", {})
    if name not in cache:
        try:
            cache[name] = templates.get_template(ctx.root, name)
        except MilestoneError:
            cache[name] = None
    return cache[name]


@rule("MS601", "template", "warning", "the template a milestone was made from is gone",
      "restore the template file, or remove `template:` from the milestone")
def template_missing(ctx: Context) -> None:
    for mid, m in ctx.scoped():
        name = (m.get("template") or {}).get("name")
        if name and _template_of(ctx, str(name)) is None:
            ctx.report(f"{mid} was made from template {name!r}, which no longer exists",
                       ref=mid, path=(mid, ("template",)))


@rule("MS602", "template", "error", "a milestone lacks what its template requires",
      "put back what the template requires (see the message)")
def template_requirements(ctx: Context) -> None:
    from ..plans import templates

    for mid, m in ctx.scoped():
        name = (m.get("template") or {}).get("name")
        if not name or m.get("status") in ("archived", "cancelled"):
            continue
        template = _template_of(ctx, str(name))
        if template is None:
            continue
        for problem in templates.check_requirements(m, template):
            ctx.report(f"{mid} ({name} template): {problem.message}", ref=mid,
                       path=(mid, _PATHS.get(problem.what, ("tasks",))), hint=problem.hint)

"""The rule engine: runs the registered rules (``registry.py``) over a context.

``config/config.yaml`` may change a rule's severity or turn it off::

    validation:
      rules:
        MS304: error      # error | warning | info | off
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from .registry import (
    FAMILIES,
    RULES,
    SEVERITIES,
    TYPE_FAMILIES,
    TYPES,
    Context,
    Finding,
    Rule,
    Source,
    rule,
    short,
)

# The registry's names are the engine's too (they were defined here before).
__all__ = ["FAMILIES", "RULES", "SEVERITIES", "TYPES", "TYPE_FAMILIES", "Context", "Finding",
           "Rule", "Source", "all_rules", "families_for", "rule", "run", "short"]

_RANK = {"error": 0, "warning": 1, "info": 2}


def families_for(types: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for t in types:
        if t == "all":
            out.update(FAMILIES)
        else:
            out.update(TYPE_FAMILIES[t])
    return out


def run(
    ctx: Context, types: Iterable[str] = ("standard",), *, write_only: bool = False
) -> list[Finding]:
    """Run the rules of ``types`` (or those marked on_write); findings sorted for display.

    The cyclic garbage collector is paused meanwhile: the rules build many small
    objects that live to the end of the run (findings, file positions, schedules)
    and create no garbage cycles, and each collection would walk the whole plan
    again, a cost that grows with the plan's size times the work done.
    """
    _load_rules()
    wanted = families_for(types)
    ctx.findings = []
    ctx.memo = {}
    ctx.unlocated = []
    with collector_paused():
        try:
            for code in sorted(RULES):
                r = RULES[code]
                if r.family not in wanted or (write_only and not r.on_write):
                    continue
                if ctx.severity_of(r) == "off":
                    continue
                ctx.current_rule = r
                r.check(ctx)
            ctx.locate()
        finally:
            ctx.current_rule = None
            ctx.memo = {}  # the run's index goes with it
    return sorted(ctx.findings, key=_display_order)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off meanwhile (back on after, if it was on): for
    work that makes many objects that live to its end and no garbage cycles, where
    each collection would walk the whole plan again (``run``, reading the plan for
    it)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _display_order(f: Finding) -> tuple[int, str, int, int, str]:
    """Errors first; within a file by line and column as numbers (line 8 before 12)."""
    return (_RANK[f.severity], f.file or f.location, f.line or 0, f.column or 0, f.code)


def _load_rules() -> None:
    from . import (  # noqa: F401  (rules register on import)
        dependency,
        kiro_rules,
        resource,
        storage,
        structure,
        template,
        timeline,
    )


def all_rules() -> list[Rule]:
    _load_rules()
    return [RULES[c] for c in sorted(RULES)]

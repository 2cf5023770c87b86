"""Validation: coded rules over the plan, run by `milestone validate` and before every write.

Owns the rule engine (``engine``, ``registry``) and the rule families (structure,
dependency, timeline, resource, kiro, template, storage). May import ``plans``,
``storage``, ``model`` and ``errors``; never the service layer or above. See
ARCHITECTURE.md.
"""

from __future__ import annotations

from .engine import RULES, Context, Finding, Rule, all_rules, run

__all__ = ["RULES", "Context", "Finding", "Rule", "all_rules", "run"]

"""Validation: coded rules over the plan, run by `milestone validate` and before every write."""

from __future__ import annotations

from .engine import RULES, Context, Finding, Rule, all_rules, run

__all__ = ["RULES", "Context", "Finding", "Rule", "all_rules", "run"]

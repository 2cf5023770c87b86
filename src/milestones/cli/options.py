"""Options and argument parsers the command modules share (they import this, not
each other, so no command module loads another's commands)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import click

from ..errors import InvalidInput
from ..project import add_days

_REL = re.compile(r"^\+([0-9]+)([dw])$")


def date_arg(value: str | None, what: str = "date") -> str | None:
    """Accept YYYY-MM-DD, today, tomorrow, +3d, +2w; the model validates the rest."""
    if value is None:
        return None
    text = value.strip().lower()
    base = date.today()
    if text == "today":
        return base.isoformat()
    if text == "tomorrow":
        return add_days(base, 1, f"{what} {value!r}").isoformat()
    m = _REL.match(text)
    if m:
        digits = m.group(1)  # int() of thousands of digits raises; any 10 leave the calendar
        n = (int(digits) if len(digits) <= 10 else 10**10) * (7 if m.group(2) == "w" else 1)
        return add_days(base, n, f"{what} {value!r}").isoformat()
    return value


def json_flag(func: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)


def parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--var NAME=VALUE`` pairs as a dict (a template's variables)."""
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidInput(f"--var {pair!r} is not NAME=VALUE", hint="e.g. --var service=auth")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out

"""The ``--json`` text: ``json.dumps(obj, indent=2, ensure_ascii=False)``'s layout.

On Python before 3.13, ``json.dumps`` with ``indent`` runs the pure-Python encoder;
views print tens of thousands of rows, and orjson writes the same text (two spaces,
``": "``, UTF-8 as is) about ten times faster. Importing orjson costs more than it
saves on a small answer (it loads ``json``, ``dataclasses`` and ``inspect`` too), so an
object of up to ``SMALL`` values is written by ``json`` and a larger one by orjson.
What orjson does not take (an integer beyond 64 bits, a key that is not a string) goes
to ``json.dumps``; a number that is not finite prints as ``null`` on both paths
(``json.dumps`` would print ``NaN``, which is not JSON).
"""

from __future__ import annotations

import json
from typing import Any

SMALL = 2_000  # values (scalars, lists, dicts) below which json.dumps writes the text


def dumps(obj: Any, *, small: int = SMALL) -> str:
    """The indented JSON text of ``obj``; ``small``: see SMALL (0: orjson always)."""
    if small and _fewer_values(obj, small):
        try:
            return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)
        except ValueError:  # NaN or an infinity: orjson writes it as null
            pass
    import orjson

    try:
        return orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(obj, indent=2, ensure_ascii=False)


def _fewer_values(obj: Any, budget: int) -> bool:
    """Whether ``obj`` holds fewer than ``budget`` values, counted until it is spent."""
    stack = [obj]
    while stack:
        budget -= 1
        if budget <= 0:
            return False
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return True

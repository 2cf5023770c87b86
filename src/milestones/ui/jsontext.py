"""The ``--json`` text: ``json.dumps(obj, indent=2, ensure_ascii=False)``'s layout,
written by orjson.

On Python before 3.13, ``json.dumps`` with ``indent`` runs the pure-Python encoder;
views print tens of thousands of rows, and orjson writes the same text (two spaces,
``": "``, UTF-8 as is) about ten times faster. What orjson does not take (an integer
beyond 64 bits, a key that is not a string) goes to ``json.dumps``; a number that is
not finite prints as ``null`` (``json.dumps`` would print ``NaN``, which is not JSON).
orjson is imported on first use: only commands that print JSON pay for it.
"""

from __future__ import annotations

import json
from typing import Any


def dumps(obj: Any) -> str:
    """The indented JSON text of ``obj``."""
    import orjson

    try:
        return orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode("utf-8")
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(obj, indent=2, ensure_ascii=False)

"""PyYAML's block output for the plain data the store writes, without importing PyYAML.

``yamlio.dump_fast`` writes every milestone file the tool changes with
``yaml.dump(data, Dumper=CSafeDumper, sort_keys=False, allow_unicode=True,
default_flow_style=False, width=100)``. Importing PyYAML costs a write about 9 ms
(its reader compiles a pattern over all of Unicode), more than the rest of the
write. ``dump`` gives the same text for the shapes and scalars milestone files
hold: mappings with plain word keys, sequences of scalars or mappings, ASCII
single-line strings, ints, floats, booleans and null. For anything else it
returns None and the caller asks PyYAML. ``tests/unit/test_yamlfast.py`` checks
the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

WIDTH = 100  # dump_fast's width: a longer line could be folded, so those go to PyYAML

# Strings PyYAML's resolver reads as something else, so it quotes them.
_RESOLVED_WORDS = frozenset([
    "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
    "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL",
])
# A first character some resolver (int, float, timestamp, merge, value, null) keys on.
_RESOLVER_FIRST = frozenset("-+0123456789.<=~")
# PyYAML's implicit resolvers for those first characters (yaml/resolver.py: float, int,
# timestamp, merge, value): a string they match would read back as something else, so
# PyYAML quotes it; any other string is written as any string is ('1.1 b', '2nd').
_RESOLVES = re.compile(r"""^(?:
    [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN)
    |[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+
    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
     (?:[Tt]|[\ \t]+)[0-9][0-9]?
     :[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
     (?:[\ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?
    |<<
    |=
    |~)$""", re.X)
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LEADING_INDICATORS = frozenset("#,[]{}&*!|>'\"%@`")


class Unsupported(Exception):
    """Something only PyYAML should write."""


class Lines(list[str]):
    """Lines already written (a milestone's tasks, by ``yamlio.dump_fast``)."""


def task_lines(task: dict[str, Any]) -> list[str]:
    """A task of a milestone's ``tasks:`` list as PyYAML writes it there."""
    if not task:
        raise Unsupported
    out: list[str] = []
    _mapping(task, 2, "- ", out)
    return out


def dump(data: Mapping[str, Any]) -> str | None:
    """``data`` as PyYAML would write it, or None where this writer does not know how."""
    if not isinstance(data, dict) or not data:
        return None
    out: list[str] = []
    try:
        _mapping(data, 0, "", out)
    except Unsupported:
        return None
    return "\n".join(out) + "\n"


def _mapping(d: dict[Any, Any], indent: int, first: str, out: list[str]) -> None:
    """Write a non-empty mapping; ``first`` prefixes its first line (``- `` in a list)."""
    pad = " " * indent
    lead = first
    for key, value in d.items():
        if type(key) is not str or not _KEY.fullmatch(key) or key in _RESOLVED_WORDS:
            raise Unsupported
        head = f"{lead}{key}:"
        lead = pad
        if type(value) is Lines:
            out.append(head)
            out.extend(value)
        elif type(value) is dict and value:
            out.append(head)
            _mapping(value, indent + 2, " " * (indent + 2), out)
        elif type(value) is list and value:
            out.append(head)
            _sequence(value, indent, out)  # PyYAML does not indent a list in a mapping
        else:
            out.append(_line(head, value))


def _sequence(items: list[Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if type(item) is dict and item:
            _mapping(item, indent + 2, f"{pad}- ", out)
        elif type(item) is list and item:
            raise Unsupported  # a list in a list: nothing the tool writes
        else:
            out.append(_line(f"{pad}-", item))


def _line(head: str, value: Any) -> str:
    line = f"{head} {_scalar(value)}"
    if len(line) > WIDTH:
        raise Unsupported
    return line


def _scalar(value: Any) -> str:
    t = type(value)
    if t is str:
        return _string(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if t is float:
        text = repr(value)
        if "." in text and "e" not in text and "n" not in text:  # not 1e+20, inf or nan
            return text
        raise Unsupported
    if t is dict and not value:
        return "{}"
    if t is list and not value:
        return "[]"
    raise Unsupported


def _string(s: str) -> str:
    if not s or not s.isascii() or not s.isprintable():
        raise Unsupported  # empty, non-ASCII, line breaks, tabs, control characters
    if (s[0] in _RESOLVER_FIRST and _RESOLVES.match(s)) or s in _RESOLVED_WORDS:
        return "'" + s.replace("'", "''") + "'"
    return s if _plain(s) else "'" + s.replace("'", "''") + "'"


def _plain(s: str) -> bool:
    """PyYAML's analysis of a one-line ASCII scalar: may it be written plain in a block?"""
    if s[0] == " " or s[-1] == " " or s.startswith(("---", "...")):
        return False
    first = s[0]
    alone = len(s) == 1 or s[1] == " "  # the first character is followed by whitespace
    if first in _LEADING_INDICATORS or (first in "?:-" and alone):
        return False
    return ": " not in s and not s.endswith(":") and " #" not in s

"""Renderers: ``simple`` (plain ASCII), ``rich`` (terminal), JSON is the view data itself.

Text people and agents wrote reaches a terminal only through ``inert``: control
characters, escape sequences and bidi overrides are shown as visible escapes
(``\\x1b``, ``\\u202e``), so a stored title can neither drive the terminal nor
disguise what is printed. JSON output keeps the exact strings.

Renderers take plain data and never query storage; they import nothing of ours
(a leaf every layer may use). See ARCHITECTURE.md.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

# C0 controls, DEL, C1 controls, the bidi embeddings, overrides and isolates, and lone
# surrogates (no terminal encoding can print them). Compiled on first use: a class that
# reaches past U+00FF costs re about 1 ms to build, and most runs print only printable
# text (``inert``'s fast path), so start-up does not pay for it.
_UNSAFE = "[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
_UNSAFE_KEEP_LINES = "[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    named = _NAMED.get(ch)
    if named:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character, DEL and bidi override as a visible
    escape; line breaks are kept only with ``keep_newlines`` (where the layout
    has room for more than one line)."""
    if text.isprintable():  # the common case, checked in C
        return text
    return _unsafe(keep_newlines).sub(_escape, text)


@cache
def _unsafe(keep_newlines: bool) -> re.Pattern[str]:
    return re.compile(_UNSAFE_KEEP_LINES if keep_newlines else _UNSAFE)


def inert_data(value: Any, *, multiline: frozenset[str] = frozenset()) -> Any:
    """A copy of view data (dicts, lists, strings) for a text renderer: every string
    ``inert``; the values of the keys in ``multiline`` keep their line breaks."""
    if isinstance(value, str):
        return inert(value)
    if isinstance(value, dict):
        return {(inert(k) if isinstance(k, str) else k):
                (inert(v, keep_newlines=True) if k in multiline and isinstance(v, str)
                 else inert_data(v, multiline=multiline))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [inert_data(v, multiline=multiline) for v in value]
    return value


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 task``, ``2 tasks``, ``0 tasks`` (``many`` for an irregular plural)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


__all__ = ["inert", "inert_data", "plural"]

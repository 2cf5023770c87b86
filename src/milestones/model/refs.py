"""Short references: ``3`` = milestone-003, ``3/2`` = milestone-003/task-2, ``2`` = task-2."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import InvalidInput, NotFound
from . import milestone_id

# At most 18 digits: int() refuses strings past 4300 digits, and no id gets that far.
_M = re.compile(r"^(?:milestone-?|m)?0*([0-9]{1,18})$", re.IGNORECASE)
_T = re.compile(r"^(?:task-?|t)?0*([0-9]{1,18})$", re.IGNORECASE)
_ID_NUMBER = re.compile(r"^(milestone|task)-([0-9]{1,18})$")


def parse_milestone(text: str) -> str:
    """Normalise a milestone reference; InvalidInput when it cannot be one."""
    raw = str(text).strip()
    m = _M.match(raw)
    if not m:
        raise InvalidInput(
            f"{raw!r} is not a milestone reference",
            hint="use a number or an id: 3 or milestone-003",
        )
    return milestone_id(int(m.group(1)))


def parse_task(text: str) -> str:
    raw = str(text).strip()
    m = _T.match(raw)
    if not m:
        raise InvalidInput(
            f"{raw!r} is not a task reference",
            hint="use a number or an id: 2 or task-2 (or 3/2 for milestone 3)",
        )
    return f"task-{int(m.group(1))}"


def _suggest(word: str, options: list[str], titles: Mapping[str, str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, options, n=3, cutoff=0.5)
    low = word.lower()
    close += [k for k, t in titles.items() if low and low in t.lower() and k not in close]
    close = close[:3]
    if close:
        return (
            "did you mean "
            + ", ".join(f"{c} ({titles[c]})" if c in titles else c for c in close)
            + "?"
        )
    if options:
        return "known: " + ", ".join(options[:5]) + (" …" if len(options) > 5 else "")
    return "there are none yet; create one with `milestone plan`"


def _written_otherwise(raw: str, canonical: str, ids: Iterable[str]) -> str | None:
    """The id a hand edit wrote another way (``milestone-0003``, ``task-02``) that
    ``raw`` means: ``raw`` itself, else the one id with the canonical id's number."""
    ids = list(ids)
    if raw in ids:
        return raw
    m = _ID_NUMBER.match(canonical)
    if m is None:  # not an id at all (`task-1/x`, a NUL, a newline): nothing to match
        return None
    prefix, number = m.group(1), int(m.group(2))
    hits = [i for i in ids if (n := _ID_NUMBER.match(i)) is not None
            and n.group(1) == prefix and int(n.group(2)) == number]
    return hits[0] if len(hits) == 1 else None


def resolve_milestone(text: str, milestones: Mapping[str, Mapping[str, Any]]) -> str:
    raw = str(text).strip()
    try:
        mid = parse_milestone(raw)
    except InvalidInput:
        titles = {k: str(v.get("title", "")) for k, v in milestones.items()}
        raise NotFound(
            f"unknown milestone {raw!r}", hint=_suggest(raw, sorted(milestones), titles)
        ) from None
    if mid not in milestones:
        other = _written_otherwise(raw, mid, milestones)
        if other is not None:
            return other
        titles = {k: str(v.get("title", "")) for k, v in milestones.items()}
        raise NotFound(
            f"unknown milestone {raw!r} ({mid})", hint=_suggest(mid, sorted(milestones), titles)
        )
    return mid


def resolve_task(
    text: str, milestones: Mapping[str, Mapping[str, Any]], current: str | None
) -> tuple[str, str]:
    """``3/2`` or ``milestone-003/task-2``; a bare ``2`` means the current milestone."""
    raw = str(text).strip()
    if "/" in raw:
        mpart, tpart = raw.split("/", 1)
        try:
            mid = resolve_milestone(mpart, milestones)
        except NotFound as exc:  # name the whole reference: '..' alone says little
            raise NotFound(f"{exc.message} in task reference {raw!r}", hint=exc.hint) from None
    else:
        if current is None or current not in milestones:
            raise NotFound(
                f"task {raw!r} needs a milestone: there is no current milestone",
                hint="write it as MILESTONE/TASK (e.g. 3/2) or set one with `milestone current 3`",
            )
        mid, tpart = current, raw
    tasks = milestones[mid].get("tasks", [])
    ids = [t["id"] for t in tasks]
    try:
        tid = parse_task(tpart)
    except InvalidInput:
        tid = tpart
    if tid not in ids and tid.startswith("task-"):
        tid = _written_otherwise(tpart, tid, ids) or tid
    if tid not in ids:
        titles = {f"{mid}/{t['id']}": str(t.get("title", "")) for t in tasks}
        raise NotFound(
            f"unknown task {raw!r} in {mid}", hint=_suggest(f"{mid}/{tid}", sorted(titles), titles)
        )
    return mid, tid

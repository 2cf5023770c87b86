"""Hypothesis strategies shared by the property tests: text, dates, valid milestones."""

from __future__ import annotations

import os
from datetime import date, datetime
from typing import Any

from hypothesis import strategies as st

from milestones import model as md


def examples(n: int) -> int:
    """``n`` examples, times $PROPERTY_SCALE (e.g. 20 for a long hunt; default 1)."""
    return max(1, int(n * float(os.environ.get("PROPERTY_SCALE", "1"))))


# Strings YAML would happily read as something other than text, plus unicode.
TRICKY_TITLES = (
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "true",
    "False",
    "null",
    "Null",
    "~",
    "1.0",
    "1e3",
    ".inf",
    "-.nan",
    "0x1F",
    "0o17",
    "017",
    "1_000",
    "12:30:45",
    "2026-01-01",
    "2026-01-01T10:00:00Z",
    "2026-1-1",
    "- item",
    "a: b",
    "#comment",
    "key #not a comment",
    "'quoted'",
    '"double"',
    "[list]",
    "{map}",
    "&anchor",
    "*alias",
    "!tag",
    "%directive",
    "@at",
    "`back`",
    "---",
    "...",
    "? question",
    "| literal",
    "> folded",
    "Ünïcødé ✓",
    "日本語のタイトル",
    "emoji 🎉 launch",
    "right-to-left עברית",
    "zero\u200bwidth",
    "line\u2028separator",
    "para\u2029separator",
    "bom\ufeffinside",
    "nbsp\u00a0inside",
    "non\ufffechar",
    "astral \U0001d11e clef",
)

_text_chars = st.characters(exclude_categories=("Cs",))

any_text = st.text(_text_chars, max_size=30)
# Titles that might be valid: tricky ones, arbitrary text, plain words.
titles = st.one_of(
    st.sampled_from(TRICKY_TITLES),
    st.text(_text_chars, min_size=1, max_size=25),
    st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,15}", fullmatch=True),
)
# One plain line, no control characters: text model validation accepts.
single_line = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=25
)


def valid_single_line(s: str) -> bool:
    try:
        md.check_text(s, "x", required=True, single_line=True, limit=200)
    except Exception:
        return False
    return s == s.strip()


valid_titles = (
    st.one_of(st.sampled_from(TRICKY_TITLES), single_line)
    .map(str.strip)
    .map(lambda s: s if valid_single_line(s) else "plain title")
)
valid_text = st.text(
    st.characters(exclude_categories=("Cs", "Cc"), include_characters="\n\t"), max_size=40
).map(str.strip)

dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2199, 12, 31)).map(
    lambda d: d.isoformat()
)
timestamps = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2199, 12, 31), timezones=st.none()
).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))

# JSON values for extra fields, deliverables, risks: no NaN, no infinity.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    valid_text,
    st.sampled_from(TRICKY_TITLES),
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=6,
)
extra_keys = st.one_of(
    st.sampled_from(("x_note", "custom", "1", "yes", "null", "2026-01-01", "$unset", "tasks_")),
    st.text(min_size=1, max_size=8),
)


def _extras(known: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(
        extra_keys.filter(lambda k: k not in known), json_values, max_size=2
    )


str_lists = st.lists(valid_titles, max_size=3)
opt_str = st.one_of(st.none(), valid_titles)
opt_ts = st.one_of(st.none(), timestamps)
opt_dict = st.one_of(st.none(), st.dictionaries(st.text(min_size=1, max_size=6), json_values,
                                                max_size=2))


@st.composite
def task_dicts(draw: st.DrawFn, tid: str, sibling_ids: list[str]) -> dict[str, Any]:
    estimate = draw(
        st.one_of(
            st.none(),
            st.integers(0, 10_000),
            st.floats(0, 10_000, allow_nan=False, allow_infinity=False),
        )
    )
    d: dict[str, Any] = {
        "id": tid,
        "title": draw(valid_titles),
        "description": draw(valid_text),
        "status": draw(st.sampled_from(md.TASK_STATUSES)),
        "depends_on": draw(st.lists(st.sampled_from(sibling_ids), max_size=2, unique=True))
        if sibling_ids
        else [],
        "estimate": estimate,
        "time_spent": draw(st.integers(0, 10**6)),
        "progress": draw(st.integers(0, 100)),
        "assignee": draw(opt_str),
        "skills": draw(str_lists),
        "blockers": draw(str_lists),
        "run": draw(opt_str),
        "paths": draw(str_lists),
        "started_at": draw(opt_ts),
        "completed_at": draw(opt_ts),
        "timer_started_at": draw(opt_ts),
    }
    optional = {
        "requirements": str_lists,
        "phase": opt_str,
        "spec_ref": opt_str,
    }
    for name, strategy in optional.items():
        if name in md.TASK_FIELDS:  # fields other sessions may be adding to the model
            d[name] = draw(strategy)
    d.update(draw(_extras(md.TASK_FIELDS)))
    return d


@st.composite
def milestones(draw: st.DrawFn, mid: str | None = None, task_ids: list[str] | None = None) -> Any:
    """A valid ``Milestone`` (built through ``from_dict``, so canonical)."""
    if mid is None:
        mid = md.milestone_id(draw(st.integers(1, 2000)))
    if task_ids is None:
        numbers = draw(st.lists(st.integers(1, 30), max_size=5, unique=True))
        task_ids = [f"task-{n}" for n in numbers]
    start = draw(st.one_of(st.none(), dates))
    due = draw(st.one_of(st.none(), dates))
    if start and due and due < start:
        start, due = due, start
    d: dict[str, Any] = {
        "id": mid,
        "title": draw(valid_titles),
        "description": draw(valid_text),
        "status": draw(st.sampled_from(md.MILESTONE_STATUSES)),
        "priority": draw(st.sampled_from(md.PRIORITIES)),
        "owner": draw(opt_str),
        "assignees": draw(str_lists),
        "start_date": start,
        "due_date": due,
        "depends_on": draw(
            st.lists(st.integers(1, 50).map(md.milestone_id), max_size=2, unique=True)
        ),
        "tags": draw(str_lists),
        "category": draw(st.one_of(st.sampled_from(md.CATEGORIES), valid_titles)),
        "success_criteria": draw(str_lists),
        "deliverables": draw(
            st.lists(st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=2),
                     max_size=2)
        ),
        "risks": draw(
            st.lists(st.dictionaries(st.text(min_size=1, max_size=6), json_values, max_size=2),
                     max_size=2)
        ),
        "tasks": [draw(task_dicts(tid, [x for x in task_ids if x != tid])) for tid in task_ids],
        "created_at": draw(opt_ts),
        "updated_at": draw(opt_ts),
        "completed_at": draw(opt_ts),
        "completion": draw(opt_dict),
    }
    optional = {"workflow": opt_str, "template": opt_dict, "kiro": opt_dict}
    for name, strategy in optional.items():
        if name in md.MILESTONE_FIELDS:
            d[name] = draw(strategy)
    d.update(draw(_extras(md.MILESTONE_FIELDS)))
    return md.Milestone.from_dict(d)

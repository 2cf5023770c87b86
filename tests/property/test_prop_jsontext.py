"""The --json text is json.dumps(indent=2, ensure_ascii=False)'s: character for
character without floats; with them, the same lines and the same values (orjson may
write 6.1e-05 as 0.000061); a number that is not finite is null (NaN is not JSON).
Each on both paths: json for a small object, orjson for a large one (``small=0``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from milestones.ui import jsontext

BOTH = pytest.mark.parametrize("small", [jsontext.SMALL, 0], ids=["json", "orjson"])


def json_values(scalars: Any, keys: Any) -> Any:
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5)
        | st.lists(inner, max_size=3).map(tuple),
        max_leaves=30)


exact = json_values(st.none() | st.booleans() | st.integers() | st.text(),
                    st.text() | st.integers() | st.booleans() | st.none())
with_floats = json_values(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    st.text() | st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False))


@BOTH
@settings(max_examples=300, deadline=None)
@given(exact)
def test_the_text_is_what_json_prints(small: int, value: Any) -> None:
    assert jsontext.dumps(value, small=small) == json.dumps(value, indent=2, ensure_ascii=False)


@BOTH
@settings(max_examples=300, deadline=None)
@given(with_floats)
def test_with_floats_the_lines_and_values_are_json_s(small: int, value: Any) -> None:
    ours = jsontext.dumps(value, small=small)
    theirs = json.dumps(value, indent=2, ensure_ascii=False)
    assert json.loads(ours) == json.loads(theirs)
    assert len(ours.splitlines()) == len(theirs.splitlines())


@BOTH
def test_a_view_row_with_every_kind_of_value(small: int) -> None:
    row = {"ref": "milestone-001/task-1", "title": 'Say "hi"\n\tthen ✓ \u2028 \x7f \x00',
           "chain": 3, "estimate": 2.5, "spent": 0.25, "assignee": None,
           "claimable": True, "skills": [], "tags": ["a"], "counts": {"todo": 1},
           "empty": {}, "huge": 10**30}
    data = {"schema": 1, "tasks": [row, row], "total": 2}
    assert jsontext.dumps(data, small=small) == json.dumps(data, indent=2, ensure_ascii=False)


@BOTH
def test_not_finite_is_null_and_the_rest_is_refused(small: int) -> None:
    assert json.loads(jsontext.dumps({"x": float("nan")}, small=small)) == {"x": None}
    assert json.loads(jsontext.dumps([float("-inf")], small=small)) == [None]
    with pytest.raises(TypeError):
        jsontext.dumps({"a": object()}, small=small)
    with pytest.raises(TypeError):
        jsontext.dumps({("a", "b"): 1}, small=small)


def test_a_large_answer_is_the_same_text() -> None:
    rows = [{"ref": f"milestone-{i:03d}/task-1", "title": f"T ✓ {i}", "chain": i}
            for i in range(1_000)]
    data = {"schema": 1, "tasks": rows}
    assert not jsontext._fewer_values(data, jsontext.SMALL)
    assert jsontext.dumps(data) == json.dumps(data, indent=2, ensure_ascii=False)

"""Patches: ``apply(a, diff(a, b)) == b`` for milestone dicts built from valid milestones."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prop_strategies import examples, milestones

from milestones.model import events as ev


@st.composite
def milestone_pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two states of one milestone: shared, added, dropped and reordered tasks."""
    mid = draw(st.integers(1, 2000).map(lambda n: f"milestone-{n:03d}"))
    pool = [f"task-{n}" for n in range(1, 8)]
    a_ids = draw(st.lists(st.sampled_from(pool), max_size=5, unique=True))
    b_ids = draw(st.permutations(draw(st.lists(st.sampled_from(pool), max_size=5, unique=True))))
    a = draw(milestones(mid=mid, task_ids=a_ids)).to_dict()
    b = draw(milestones(mid=mid, task_ids=list(b_ids))).to_dict()
    if draw(st.booleans()):
        # Often the second state is the first with a few fields changed, as in real use.
        near = dict(a)
        for k in draw(st.lists(st.sampled_from(sorted(b)), max_size=4)):
            near[k] = b[k]
        b = near
    return a, b


def _same(x: Any, y: Any) -> bool:
    """Equal, and equal as canonical JSON (so 1 vs 1.0 vs True count as different)."""
    return bool(x == y) and ev.canonical(x) == ev.canonical(y)


@settings(max_examples=examples(100), deadline=None)
@given(milestone_pairs())
def test_apply_diff_rebuilds_the_new_state(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    a, b = pair
    patch = ev.diff(a, b)
    assert _same(ev.apply(a, patch), b)
    # The patch survives the log's JSON encoding unchanged in meaning.
    decoded = ev.canonical(patch)
    assert _same(ev.apply(a, json.loads(decoded)), b)


@settings(max_examples=examples(50), deadline=None)
@given(milestones())
def test_create_and_delete_patches(m: Any) -> None:
    d = m.to_dict()
    assert _same(ev.apply(None, ev.diff(None, d)), d)
    assert ev.apply(d, ev.diff(d, None)) is None
    assert ev.diff(d, d) == {}
    assert _same(ev.apply(d, {}), d)


@settings(max_examples=examples(50), deadline=None)
@given(st.lists(milestones(mid="milestone-007"), min_size=1, max_size=5))
def test_chained_patches_replay_to_the_last_state(states: list[Any]) -> None:
    """A run of diffs, fed through ReplayState, ends at the last state."""
    dicts = [s.to_dict() for s in states]
    replay = ev.ReplayState()
    prev: dict[str, Any] | None = None
    for i, d in enumerate(dicts, 1):
        replay.feed({"event_id": i, "milestone_id": d["id"], "data": ev.diff(prev, d)})
        prev = d
    assert _same(replay.milestones["milestone-007"], dicts[-1])

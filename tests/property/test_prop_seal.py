"""The log's fast paths give what the plain ones give: ``seal_line`` the event ``seal``
makes and the ``canonical`` text of it, ``Chain`` fed one event at a time (what
``verify_chain`` now is) the answer ``verify_chain`` gave on the list."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prop_strategies import examples

from milestones.model import events as ev

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=12,
)
EVENT = st.dictionaries(
    st.sampled_from(["event_type", "milestone_id", "data", "actor", "timestamp", "hash",
                     "zeta", "a", "é", "event_id", "Data"]) | st.text(max_size=4),
    JSON, max_size=8)


@settings(max_examples=examples(300), deadline=None)
@given(event=EVENT, event_id=st.integers(1, 10**6), prev=st.text(max_size=64))
def test_seal_line_is_seal_and_canonical(event: dict[str, Any], event_id: int,
                                         prev: str) -> None:
    plain = ev.seal(copy.deepcopy(event), event_id, prev)
    sealed, line = ev.seal_line(copy.deepcopy(event), event_id, prev)
    assert sealed == plain
    assert line == ev.canonical(plain)


def verify_chain_as_it_was(events: list[dict[str, Any]], prev_hash: str = ev.GENESIS_HASH,
                           prev_id: int = 0) -> tuple[int, str] | None:
    for pos, e in enumerate(events):
        if e.get("event_id") != prev_id + 1:
            gap = isinstance(e.get("event_id"), int) and e["event_id"] > prev_id + 1
            return pos, (f"event_id {e.get('event_id')} should be {prev_id + 1}"
                         + (" (events are missing before it)" if gap else ""))
        if e.get("prev_hash") != prev_hash:
            return pos, "prev_hash does not match the previous event's hash"
        if e.get("hash") != ev.event_hash(e):
            return pos, "hash does not match the event's content"
        prev_id, prev_hash = e["event_id"], e["hash"]
    return None


@settings(max_examples=examples(200), deadline=None)
@given(n=st.integers(0, 6), damage=st.sampled_from(["none", "id", "prev", "body", "hash", "gone"]),
       at=st.integers(0, 5))
def test_chain_one_at_a_time_is_verify_chain(n: int, damage: str, at: int) -> None:
    events, prev = [], ev.GENESIS_HASH
    for i in range(1, n + 1):
        e = ev.seal({"event_type": "x", "data": {"i": i}}, i, prev)
        events.append(e)
        prev = e["hash"]
    if events and damage != "none":
        e = events[at % n]
        if damage == "id":
            e["event_id"] += 2
        elif damage == "prev":
            e["prev_hash"] = "0" * 64
        elif damage == "body":
            e["data"] = {"i": -1}
        elif damage == "hash":
            e["hash"] = "f" * 64
        else:
            events.remove(e)
    chain = ev.Chain()
    for e in events:
        chain.add(e)
    assert chain.bad == ev.verify_chain(events) == verify_chain_as_it_was(events)

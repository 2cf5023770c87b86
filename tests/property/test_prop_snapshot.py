"""``Milestone.from_snapshot`` (the read path's fast rebuild) is ``from_dict`` exactly."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from prop_strategies import examples, milestones

from milestones import model as md
from milestones.errors import InvalidInput


@settings(max_examples=examples(300))
@given(milestones())
def test_from_snapshot_equals_from_dict(m: md.Milestone) -> None:
    for snap in (m.to_dict(), json.loads(json.dumps(m.to_dict()))):  # as state.json holds it
        kept = copy.deepcopy(snap)
        fast = md.Milestone.from_snapshot(snap)
        assert fast == md.Milestone.from_dict(snap)
        assert fast.to_dict() == snap
        # It shares nothing mutable with the snapshot, as from_dict's object does not.
        fast.tags.append("x")
        fast.depends_on.append("milestone-999")
        fast.deliverables.append({})
        for d in fast.deliverables:
            d["x"] = 1
        for name in ("completion", "template", "kiro"):
            value = getattr(fast, name)
            if value is not None:
                value["x"] = 1
        for t in fast.tasks:
            t.depends_on.append("task-99")
            t.skills.append("x")
            t.blockers.append("x")
            t.status = "done"
        fast.tasks.append(md.Task(id="task-99", title="x"))
        assert snap == kept


def _snapshot() -> dict[str, Any]:
    m = md.Milestone(id="milestone-001", title="A", tags=["a"])
    m.tasks.append(md.Task(id="task-1", title="B", skills=["s"]))
    return m.to_dict()


@pytest.mark.parametrize(
    "spoil",
    [
        lambda s: s.update(status="bogus"),
        lambda s: s.update(priority="urgent"),
        lambda s: s.update(tags="a"),
        lambda s: s.update(tasks=["task-1"]),
        lambda s: s["tasks"][0].update(status="bogus"),
        lambda s: s["tasks"][0].update(skills=None),
        lambda s: s["tasks"][0].pop("run"),
        lambda s: s.update(extra_field=1),
        lambda s: s.update(deliverables=["x"]),
        lambda s: s.update(kiro=["x"]),
    ],
)
def test_other_shapes_go_through_from_dict(spoil: Any) -> None:
    snap = _snapshot()
    spoil(snap)
    try:
        expected: Any = md.Milestone.from_dict(snap)
    except InvalidInput as exc:
        with pytest.raises(InvalidInput) as got:
            md.Milestone.from_snapshot(snap)
        assert str(got.value) == str(exc)
    else:
        assert md.Milestone.from_snapshot(snap) == expected

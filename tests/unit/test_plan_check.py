"""The structural check of a planned milestone (``plans._check_made``) refuses exactly
what reading the whole milestone back (``Milestone.from_dict(made)``, the check it
replaced) refused, with the same line, and lets the same milestones through."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milestones import model as md
from milestones.errors import MilestoneError
from milestones.project import Project, plans
from milestones.storage.memory import MemoryStore


def _text(*lengths: int) -> st.SearchStrategy[Any]:
    """Mostly fine text; one time in five text at and around the limits the checks
    have, odd characters or non-text (a spec with many bad fields is refused at its
    first, which would hide the others)."""
    return st.integers(0, 4).flatmap(lambda i: _odd(*lengths) if i == 0 else st.just("fine"))


def _odd(*lengths: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([None, "", " ", "ok", "a\tb", "a\nb", "x\x07y", "\x85", "é", 3, 2.5,
                         True]),
        st.sampled_from(lengths).map(lambda n: "r" * n),
        st.text(max_size=8),
    )


TASK = st.fixed_dictionaries({}, optional={
    "title": _text(200, 201),
    "description": _text(20_000, 20_001),
    "status": st.sampled_from([None, "todo", "done", "skipped", "nope"]),
    "estimate": st.sampled_from([None, "", 0, 1.5, 10_000, 10_001, -1, "x", float("nan")]),
    "assignee": _text(200, 201, 1000, 1001),
    "skills": st.lists(_text(100, 101), max_size=2),
    "run": _text(1000, 1001, 5000, 5001),
    "paths": st.lists(_text(500, 501), max_size=2),
    "requirements": st.lists(_text(50, 51), max_size=2),
    "phase": _text(100, 101),
    "spec_ref": _text(50, 51),
    "depends_on": st.sampled_from([[], ["task-1"], ["1"], ["task-99"], ["x/y"], "task-1"]),
})
MILESTONE = st.fixed_dictionaries({"tasks": st.lists(TASK, max_size=3)}, optional={
    "title": _text(200, 201),
    "owner": _text(200, 201, 1001),
    "tags": st.lists(_text(100, 101), max_size=2),
    "category": _text(50, 51),
    "workflow": _text(200, 201, 1001),
    "start_date": st.sampled_from([None, "2026-01-01", "2026-02-30", "x"]),
    "due_date": st.sampled_from([None, "2025-12-01", "2026-03-01"]),
    "success_criteria": st.lists(_text(1000, 1001), max_size=2),
})


def outcome(spec: dict[str, Any], check: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """What planning ``spec`` gives with ``check`` as the structural check: the
    milestone made (timestamps aside), or the error's class, line and hint."""
    monkeypatch.setattr(plans, "_check_made", check)
    with tempfile.TemporaryDirectory() as tmp:
        store = MemoryStore(Path(tmp) / ".milestones")
        store.initialize()
        p = Project(store, cwd=Path(tmp), actor="t@example.com", session_id="s")
        p.clock = lambda: "2026-01-01T00:00:00Z"  # type: ignore[method-assign]
        try:
            made = p.plan_many([spec])[0].to_dict()
        except MilestoneError as exc:
            return type(exc).__name__, exc.message, exc.hint
        except (TypeError, ValueError) as exc:  # what neither check is about
            return type(exc).__name__, str(exc)
    for key in ("created_at", "updated_at"):
        made.pop(key)
    return made


def whole(made: Any) -> None:
    md.Milestone.from_dict(made)  # the check as it was


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=MILESTONE)
def test_same_milestones_and_same_refusals(spec: dict[str, Any],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    real = plans._check_made
    assert outcome(spec, real, monkeypatch) == outcome(spec, whole, monkeypatch)


@pytest.mark.parametrize("run", ["r" * 1000, "r" * 1001, "r" * 5000, "r" * 5001])
def test_a_run_command_has_one_limit_everywhere(run: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """5,000 characters, as `task edit --run` takes it, in a plan file and when the
    milestone is read back (a hand edit): no command longer than one of them."""
    spec = {"title": "M", "tasks": ["A", {"title": "B", "run": run}]}
    got = outcome(spec, plans._check_made, monkeypatch)
    assert got == outcome(spec, whole, monkeypatch)
    if len(run) > 5000:
        assert "5001 characters long" in got[1]
    else:
        assert got["tasks"][1]["run"] == run
        assert md.Task.from_dict(got["tasks"][1]).run == run

"""``milestone analytics``' figures against hand-computed values on a small history
built with a settable clock; incremental rollups equal a rebuild; deleting
analytics.db changes no answer; the forecast against a known throughput."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from milestones.errors import NotFound
from milestones.ops import analytics as an
from milestones.project import Project


class Clock:
    def __init__(self, now: str) -> None:
        self.now = now

    def __call__(self) -> str:
        return self.now


def at(project: Project, stamp: str) -> None:
    project.clock.now = stamp  # type: ignore[attr-defined]


def figures(data: dict[str, Any]) -> dict[str, Any]:
    """The report without how the rollups were brought up to date."""
    return {k: v for k, v in data.items() if k != "rollups"}


@pytest.fixture
def small(tmp_path: Path) -> Project:
    """Week 2026-W45 (Monday 2 November): four tasks; three done, one still blocked.

    A: est 2h, 10:00 -> 12:00 Monday (cycle 2h, lead 3h, spent 2h)
    B: est 4h, bob's, Tue 09:00 -> Wed 09:00 (cycle 24h, lead 48h, spent 24h)
    C: blocked Mon 12:00-18:00, then Thu 09:00 -> 15:00 (cycle 6h, lead 78h, spent 6h)
    D: blocked since Fri 09:00; "now" is Monday 9 November 09:00 (72h open).
    """
    p, _ = Project.init(tmp_path, backend="file", actor="tester@example.com",
                        session_id="test-session")
    p.clock = Clock("2026-11-02T09:00:00Z")
    p.plan("Small", tasks=["A", "B", "C", "D"], tags=["api"])
    p.edit_task("1/1", estimate=2)
    p.edit_task("1/2", estimate=4)
    p.assign_task("1/2", "bob@example.com")
    at(p, "2026-11-02T10:00:00Z")
    p.start_task("1/1")
    at(p, "2026-11-02T12:00:00Z")
    p.complete_task("1/1")
    p.block_task("1/3", "waiting for the API key")
    at(p, "2026-11-02T18:00:00Z")
    p.unblock_task("1/3")
    at(p, "2026-11-03T09:00:00Z")
    p.start_task("1/2")
    at(p, "2026-11-04T09:00:00Z")
    p.complete_task("1/2")
    at(p, "2026-11-05T09:00:00Z")
    p.start_task("1/3")
    at(p, "2026-11-05T15:00:00Z")
    p.complete_task("1/3")
    at(p, "2026-11-06T09:00:00Z")
    p.block_task("1/4", "needs a decision")
    at(p, "2026-11-09T09:00:00Z")
    return p


def test_figures_match_the_hand_computed_ones(small: Project) -> None:
    data = an.report(small)
    assert data["rollups"]["mode"] == "rebuild"
    assert data["throughput"] == {
        "weeks": [{"week": "2026-W45", "start": "2026-11-02", "completed": 3},
                  {"week": "2026-W46", "start": "2026-11-09", "completed": 0}],
        "total": 3, "mean_per_week": 1.5}
    assert data["cycle_time"] == {"tasks": 3, "median_hours": 6.0, "p85_hours": 24.0,
                                  "mean_hours": 10.67}
    assert data["lead_time"] == {"tasks": 3, "median_hours": 48.0, "p85_hours": 78.0,
                                 "mean_hours": 43.0}
    acc = data["estimate_accuracy"]
    assert (acc["tasks"], acc["estimate_hours"], acc["spent_hours"], acc["ratio"]) == (
        2, 6.0, 26.0, 4.33)
    assert [(p["person"], p["ratio"]) for p in acc["by_person"]] == [
        ("bob@example.com", 6.0), ("tester@example.com", 1.0)]
    assert [(t["tag"], t["tasks"], t["ratio"]) for t in acc["by_tag"]] == [("api", 2, 4.33)]
    b = data["blocked"]
    assert (b["intervals"], b["tasks"], b["total_hours"], b["open_count"]) == (2, 2, 78.0, 1)
    assert b["open"] == [{"task": "milestone-001/task-4", "since": "2026-11-06T09:00:00Z",
                          "age_hours": 72.0}]
    days = {d["day"]: d["in_progress"] for d in data["wip"]["days"]}
    assert days == {"2026-11-02": 0, "2026-11-03": 1, "2026-11-04": 0, "2026-11-05": 0,
                    "2026-11-06": 0, "2026-11-07": 0, "2026-11-08": 0, "2026-11-09": 0}
    assert data["wip"]["weeks"][0] == {"week": "2026-W45", "start": "2026-11-02",
                                       "mean": 0.14, "max": 1}
    f = data["forecast"]
    assert f["too_short"] and f["history_weeks"] == [3]
    assert f["milestones"] == [{"milestone": "milestone-001", "remaining": 1,
                                "status": "too_short", "weeks": None, "dates": None,
                                "reason": f["reason"]}]
    assert "too short" in f["reason"]


def test_since_and_ref_narrow_the_figures(small: Project) -> None:
    data = an.report(small, "1", since="2026-11-04T00:00:00Z")
    assert data["milestone"] == "milestone-001"
    assert data["throughput"]["total"] == 2  # B and C
    assert data["cycle_time"]["tasks"] == 2
    assert data["blocked"]["total_hours"] == 72.0  # C's block ended before the cut
    with pytest.raises(NotFound):
        an.report(small, "7")


def test_incremental_equals_rebuild_and_the_file_is_not_needed(small: Project) -> None:
    an.report(small)
    at(small, "2026-11-10T09:00:00Z")
    small.unblock_task("1/4")
    small.start_task("1/4")
    small.add_task("1", "E")
    at(small, "2026-11-10T13:00:00Z")
    small.complete_task("1/4")
    incremental = an.report(small)
    assert incremental["rollups"]["mode"] == "incremental"
    assert incremental["rollups"]["events"] >= 4
    again = an.report(small)
    assert again["rollups"]["mode"] == "current"
    rebuilt = an.report(small, rebuild=True)
    assert rebuilt["rollups"]["mode"] == "rebuild"
    assert figures(incremental) == figures(again) == figures(rebuilt)
    assert incremental["throughput"]["total"] == 4
    assert incremental["blocked"]["open_count"] == 0
    db = small.root / "database" / "analytics.db"
    assert db.exists()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    fresh = an.report(small)
    assert fresh["rollups"] == {"mode": "rebuild", "reason": "first build",
                                "events": fresh["rollups"]["last_event_id"],
                                "last_event_id": fresh["rollups"]["last_event_id"]}
    assert figures(fresh) == figures(rebuilt)


def test_a_log_that_no_longer_holds_the_last_seen_event_rebuilds(small: Project) -> None:
    an.report(small)
    import sqlite3

    db = sqlite3.connect(small.root / "database" / "analytics.db")
    db.execute("UPDATE meta SET value = ? WHERE key = 'last_hash'", ("f" * 64,))
    db.commit()
    db.close()
    at(small, "2026-11-09T10:00:00Z")
    small.add_task("1", "F")  # one new event: the old head's hash is checked on the way
    data = an.report(small)
    assert data["rollups"]["mode"] == "rebuild"
    assert "changed" in data["rollups"]["reason"]


def _steady(project: Project, per_week: list[int], remaining: int) -> None:
    """Milestone 1: per_week[i] tasks done in week i (from Monday 2 November 2026);
    milestone 2: ``remaining`` open tasks; now: the Monday after the last week."""
    project.clock = Clock("2026-11-02T08:00:00Z")
    project.plan("History", tasks=[f"h{i}" for i in range(sum(per_week))])
    project.plan("Next", tasks=[f"n{i}" for i in range(remaining)])
    n = 0
    for week, count in enumerate(per_week):
        for i in range(count):
            n += 1
            at(project, f"2026-11-{2 + 7 * week:02d}T{9 + i:02d}:00:00Z"
               if 2 + 7 * week <= 30 else f"2026-12-{2 + 7 * week - 30:02d}T{9 + i:02d}:00:00Z")
            project.start_task(f"1/{n}")
            project.complete_task(f"1/{n}")
    last = 2 + 7 * len(per_week)
    at(project, f"2026-11-{last:02d}T09:00:00Z" if last <= 30
       else f"2026-12-{last - 30:02d}T09:00:00Z")


def test_forecast_of_a_constant_throughput_is_exact(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path, actor="tester@example.com", session_id="s")
    _steady(p, [5, 5, 5], 20)
    f = an.report(p, "2", seed=7)["forecast"]
    assert f["history_weeks"] == [5, 5, 5] and not f["too_short"]
    (row,) = f["milestones"]
    assert row["status"] == "forecast" and row["remaining"] == 20
    assert row["weeks"] == {"p50": 4, "p85": 4, "p95": 4}
    assert row["dates"]["p50"] == "2026-12-21"  # Monday 23 Nov + 4 weeks


def test_forecast_range_of_a_varying_throughput(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path, actor="tester@example.com", session_id="s")
    _steady(p, [2, 8, 5, 5], 20)  # mean 5 a week
    first = an.report(p, seed=1)["forecast"]
    assert [m["milestone"] for m in first["milestones"]] == ["milestone-002"]  # open work
    assert an.report(p, "1")["forecast"]["milestones"][0]["status"] == "done"
    w = first["milestones"][0]["weeks"]
    assert 3 <= w["p50"] <= 5 and w["p50"] <= w["p85"] <= w["p95"] <= 10
    assert w["p95"] > 3  # 2 a week is in the history: 3 weeks are not sure
    assert an.report(p, seed=1)["forecast"] == first  # seeded: repeatable
    assert an.report(p)["forecast"]["seed"] == an.report(p)["forecast"]["seed"]


def test_too_short_a_history_gives_no_numbers(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path, actor="tester@example.com", session_id="s")
    _steady(p, [4, 0, 6], 10)  # two weeks with completions
    f = an.report(p, "2")["forecast"]
    assert f["too_short"] and "2 week(s)" in f["reason"]
    assert f["milestones"][0]["weeks"] is None and f["milestones"][0]["dates"] is None


def test_every_backend_counts_the_same(project: Project) -> None:
    project.clock = Clock("2026-11-02T09:00:00Z")
    project.plan("Basic", tasks=["one", "two"])
    project.start_task("1/1")
    at(project, "2026-11-02T11:00:00Z")
    project.complete_task("1/1")
    data = an.report(project)
    assert data["throughput"]["total"] == 1
    assert data["cycle_time"]["median_hours"] == 2.0
    assert data["forecast"]["milestones"][0]["remaining"] == 1
    project.start_task("1/2")
    again = an.report(project)
    assert again["wip"]["current"] == 1
    assert figures(an.report(project, rebuild=True)) == figures(again)


def test_a_damaged_analytics_db_is_made_again(small: Project) -> None:
    before = figures(an.report(small))
    db = small.root / "database" / "analytics.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(b"not a database at all" * 100)
    data = an.report(small)
    assert data["rollups"]["mode"] == "rebuild" and figures(data) == before
    assert db.read_bytes().startswith(b"SQLite format 3")


def test_blocked_and_cleared_within_a_second_leaves_no_open_blocker(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path, actor="tester@example.com", session_id="s")
    p.clock = Clock("2026-11-02T09:00:00Z")
    p.plan("Quick", tasks=["A"])
    p.block_task("1/1", "a moment")
    p.unblock_task("1/1")
    b = an.report(p)["blocked"]
    assert (b["intervals"], b["open_count"], b["total_hours"]) == (1, 0, 0.0)


def test_a_deleted_milestone_keeps_its_history_but_not_its_open_work(small: Project) -> None:
    at(small, "2026-11-09T10:00:00Z")
    small.delete("1", force=True)
    data = an.report(small)
    assert data["throughput"]["total"] == 3 and data["cycle_time"]["tasks"] == 3
    assert data["blocked"]["open_count"] == 0 and data["blocked"]["intervals"] == 2
    assert data["forecast"]["milestones"] == []
    assert figures(an.report(small, rebuild=True)) == figures(data)

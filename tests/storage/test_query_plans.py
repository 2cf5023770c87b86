"""Every query the CLI sends to SQLite is parameterized and uses an index at 10,000 milestones."""

from __future__ import annotations

import pytest

from milestones.model import events as ev
from milestones.storage.base import MilestoneQuery, State
from milestones.storage.sqlite import DatabaseStore, milestone_query_sql

N = 10_000


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> DatabaseStore:
    root = tmp_path_factory.mktemp("plans") / ".milestones"
    statuses = ("planned", "in_progress", "blocked", "completed", "archived", "cancelled")
    milestones = {}
    for i in range(1, N + 1):
        mid = f"milestone-{i:03d}"
        milestones[mid] = {
            "id": mid, "title": f"M{i}", "status": statuses[i % 6],
            "priority": ("critical", "high", "medium", "low")[i % 4], "owner": f"o{i % 50}",
            "start_date": "2026-01-01", "due_date": f"2026-{i % 12 + 1:02d}-15",
            "category": "feature", "tags": [f"t{i % 20}"],
            "depends_on": [f"milestone-{i - 1:03d}"] if i > 1 else [],
            "tasks": [{"id": "task-1", "title": "A", "status": "todo", "depends_on": []},
                      {"id": "task-2", "title": "B", "status": "todo",
                       "depends_on": ["task-1"]}],
        }
    store = DatabaseStore(root)
    store.import_data([], State(milestones, None, N, 0, ev.GENESIS_HASH), {}, {})
    store.connect().execute("ANALYZE")
    return store


QUERIES = [
    MilestoneQuery(),
    MilestoneQuery(include_archived=True),
    MilestoneQuery(statuses=("in_progress",)),
    MilestoneQuery(statuses=("in_progress", "blocked"), priorities=("high",)),
    MilestoneQuery(tags=("t3",)),
    MilestoneQuery(owner="o7"),
    MilestoneQuery(priorities=("critical",)),
    MilestoneQuery(overdue_before="2026-06-01"),
]


def plan(store: DatabaseStore, sql: str, args: list[object]) -> str:
    rows = store.connect().execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall()
    return "\n".join(str(r[-1]) for r in rows)


@pytest.mark.parametrize("q", QUERIES, ids=repr)
def test_list_filters_use_an_index(db: DatabaseStore, q: MilestoneQuery) -> None:
    sql, args = milestone_query_sql(q)
    assert "?" in sql or not args  # values are bound, never pasted in
    for value in args:
        assert str(value) not in sql.replace("'planned'", "").replace("'in_progress'", "")
    text = plan(db, sql, args)
    scans = [line for line in text.splitlines() if line.startswith("SCAN")
             and "INDEX" not in line and "PRIMARY KEY" not in line]
    assert not scans, text
    assert len(list(db.query_milestones(q) or [])) > 0


@pytest.mark.parametrize(("sql", "args"), [
    ("SELECT data FROM milestones WHERE id = ?", ["milestone-500"]),
    ("SELECT data FROM tasks WHERE milestone_id = ? ORDER BY position", ["milestone-500"]),
    ("SELECT body FROM events WHERE event_id > ? ORDER BY event_id", [10]),
    ("SELECT milestone_id, task_id FROM task_deps WHERE dep_milestone_id = ? "
     "AND dep_task_id = ?", ["milestone-500", "task-1"]),
    ("SELECT milestone_id FROM milestone_deps WHERE depends_on = ?", ["milestone-500"]),
    ("SELECT body FROM events WHERE milestone_id = ? ORDER BY event_id", ["milestone-500"]),
    ("SELECT body FROM events WHERE event_type = ? ORDER BY event_id", ["task_completed"]),
    # Project's query paths (LazyMilestones, totals, closures, the resume record).
    ("SELECT id, data FROM milestones WHERE id IN (?, ?)", ["milestone-500", "milestone-501"]),
    ("SELECT milestone_id, data FROM tasks WHERE milestone_id IN (?, ?) "
     "ORDER BY milestone_id, position", ["milestone-500", "milestone-501"]),
    ("SELECT DISTINCT milestone_id FROM task_deps WHERE dep_milestone_id IN (?, ?)",
     ["milestone-500", "milestone-501"]),
    ("SELECT milestone_id FROM milestone_deps WHERE depends_on IN (?, ?)",
     ["milestone-500", "milestone-501"]),
    ("SELECT milestone_id, data FROM tasks WHERE status IN ('in_progress', 'blocked') "
     "ORDER BY milestone_id, position", []),
    # What an agent step reads first (Store.milestones_with_tasks).
    ("SELECT DISTINCT milestone_id FROM tasks WHERE status IN (?) ORDER BY milestone_id",
     ["in_progress"]),
    # Whether a snapshot a store kept is still current (DatabaseStore._last_events).
    ("SELECT event_id, hash FROM events WHERE milestone_id = ? ORDER BY event_id DESC "
     "LIMIT 1", ["milestone-500"]),
])
def test_point_queries_use_an_index(db: DatabaseStore, sql: str, args: list[object]) -> None:
    text = plan(db, sql, args)
    assert "USING" in text and not any(
        line.startswith("SCAN") and "INDEX" not in line and "PRIMARY KEY" not in line
        for line in text.splitlines()), text


def test_snapshot_comes_back_exactly(db: DatabaseStore) -> None:
    snap = db.milestone_snapshot("milestone-500")
    assert snap is not None and snap["tasks"][1]["depends_on"] == ["task-1"]
    assert snap["depends_on"] == ["milestone-499"]


@pytest.mark.parametrize("sql", [
    # Whole-plan reads, each along an index: ids for iterating LazyMilestones, and the
    # task edges (when a cycle check over the plan is needed, once per log head).
    "SELECT id FROM milestones ORDER BY id",
    "SELECT milestone_id, task_id, dep_milestone_id, dep_task_id FROM task_deps "
    "ORDER BY milestone_id, task_id",
])
def test_whole_plan_reads_walk_a_covering_index(db: DatabaseStore, sql: str) -> None:
    text = plan(db, sql, [])
    assert "COVERING INDEX" in text and "TEMP B-TREE" not in text, text


def test_query_paths_against_a_large_store(db: DatabaseStore) -> None:
    """The store's query methods answer through those statements at 10,000 milestones."""
    assert db.dependents(["milestone-500"]) == {"milestone-500", "milestone-501"}
    totals = db.totals()
    assert totals is not None and sum(totals["by_status"].values()) == N
    assert sum(totals["tasks"].values()) == 2 * N
    assert set(db.snapshots(["milestone-500", "milestone-999999"])) == {"milestone-500"}
    assert db.active_tasks() == []
    assert db.milestones_with_tasks(["in_progress"]) == []
    assert len(db.milestones_with_tasks(["todo", "in_progress", "blocked"]) or []) == N
    # The one table read whole is the counts the triggers keep: a row per kind and status.
    assert db.connect().execute("SELECT COUNT(*) FROM status_counts").fetchone()[0] <= 11
    edges = db.task_edges()
    assert edges is not None and edges["milestone-500/task-2"] == ["milestone-500/task-1"]

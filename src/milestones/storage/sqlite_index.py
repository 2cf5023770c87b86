"""The database backend's index answers: counts kept by triggers, the tasks agents
hold, the schedule's task graph, ready work (``sqlready``), dependents and edges, the
actors of recent events; the rows alone, no snapshot decoded unless returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from . import sqlready
from .base import Snapshot
from .sqlite_base import DatabaseBase
from .sqlquery import dialect_of


class DatabaseIndex(DatabaseBase):
    """What the indexes answer (see ``Store``'s methods of the same names)."""

    def totals(self) -> dict[str, dict[str, int]] | None:
        out: dict[str, dict[str, int]] = {"milestone": {}, "task": {}}
        # One row per kind and status: a dozen rows, whatever the size of the plan.
        for kind, status, n in self.connect().execute("SELECT kind, status, n FROM status_counts"):
            if n and kind in out:
                out[kind][status] = n
        return {"by_status": out["milestone"], "tasks": out["task"]}

    def held_tasks(self) -> list[tuple[str, Snapshot]] | None:
        conn = self.connect()
        agent = dialect_of(conn).json_field("data", "execution", "agent")
        rows = conn.execute(  # idx_task_status, then the JSON of those rows
            "SELECT milestone_id, data FROM tasks WHERE status = 'in_progress' AND "
            f"{agent} IS NOT NULL ORDER BY milestone_id, position")
        return [(mid, self._row(data, "tasks", mid)) for mid, data in rows]

    def schedule_graph(self) -> tuple[dict[str, list[str]], dict[str, float]] | None:
        from ..model import schedule

        conn = self.connect()
        edges: dict[str, list[str]] = {}
        hours: dict[str, float] = {}
        default = schedule.DEFAULT_HOURS
        with self._read(conn):
            # schedule.remaining_hours of each row, written out (20,000 calls saved)
            for ref, status, estimate, progress in conn.execute(
                    "SELECT milestone_id || '/' || id, status, estimate, progress FROM tasks"):
                edges[ref] = []
                hours[ref] = 0.0 if status in ("done", "skipped") else (
                    (float(estimate) if estimate else default)
                    * (1.0 - (progress or 0) / 100.0))
            for ref, dep in conn.execute(
                    "SELECT milestone_id || '/' || task_id, dep_milestone_id || '/' || "
                    "dep_task_id FROM task_deps ORDER BY milestone_id, task_id"):
                if dep in edges:
                    edges.setdefault(ref, []).append(dep)
        return edges, hours

    def ready_tasks(self, only: str | None = None, limit: int | None = None
                    ) -> tuple[list[dict[str, Any]], int] | None:
        conn = self.connect()
        with self._read(conn):
            rows = sqlready.ready_rows(conn, only, limit)
            total = (len(rows) if limit is None or len(rows) < limit
                     else sqlready.ready_count(conn, only))
        return rows, total

    def dependents(self, mids: Iterable[str]) -> set[str] | None:
        ids = sorted(set(mids))
        if not ids:
            return set()
        conn = self.connect()
        out: set[str] = set()
        with self._read(conn):
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                out.update(mid for (mid,) in conn.execute(
                    f"SELECT DISTINCT milestone_id FROM task_deps WHERE dep_milestone_id "
                    f"IN ({marks})", chunk))
                out.update(mid for (mid,) in conn.execute(
                    f"SELECT milestone_id FROM milestone_deps WHERE depends_on IN ({marks})",
                    chunk))
        return out

    def task_edges(self) -> dict[str, list[str]] | None:
        """Every task dependency as full refs (``milestone-001/task-2``), from the index."""
        edges: dict[str, list[str]] = {}
        for mid, tid, dmid, dtid in self.connect().execute(
                "SELECT milestone_id, task_id, dep_milestone_id, dep_task_id FROM task_deps "
                "ORDER BY milestone_id, task_id"):  # the primary key's index covers it
            edges.setdefault(f"{mid}/{tid}", []).append(f"{dmid}/{dtid}")
        return edges

    def milestones_with_tasks(self, statuses: Sequence[str]) -> list[str] | None:
        marks = ", ".join("?" * len(statuses))
        return [mid for (mid,) in self.connect().execute(  # idx_task_status covers it
            f"SELECT DISTINCT milestone_id FROM tasks WHERE status IN ({marks}) "
            "ORDER BY milestone_id", tuple(statuses))]

    def active_tasks(self) -> list[tuple[str, Snapshot]] | None:
        conn = self.connect()
        rows = conn.execute(
            "SELECT milestone_id, data FROM tasks WHERE status IN ('in_progress', 'blocked') "
            "ORDER BY milestone_id, position").fetchall()
        return [(mid, self._row(data, "tasks", mid)) for mid, data in rows]

    def actors_since(self, since: str) -> list[tuple[str, str, int, int]] | None:
        rows = self.connect().execute(
            "SELECT actor, MAX(timestamp), COUNT(*), "
            "SUM(CASE WHEN event_type LIKE 'agent%' THEN 1 ELSE 0 END) "
            "FROM events WHERE timestamp >= ? GROUP BY actor", (since,))
        return [(str(actor or ""), str(stamp), int(n), int(agent_steps or 0))
                for actor, stamp, n, agent_steps in rows]

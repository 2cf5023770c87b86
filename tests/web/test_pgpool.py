"""The dashboard on postgres: its threads borrow from a connection pool that
replaces the connections a server restart broke, and is closed when it stops."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from milestones.project import Project
from milestones.web.app import WORKERS, create_app


def dashboard_connections(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND application_name = 'milestone'"
                           ).fetchone()
    assert row is not None
    return int(row[0])


def titles(c: TestClient) -> list[str]:
    got = c.get("/api/milestones")
    assert got.status_code == 200, got.text
    return [m["title"] for m in got.json()["milestones"]]


def test_a_server_restart_mid_dashboard_is_survived(tmp_path: Path, pg_server: Any,
                                                    pg_url: str) -> None:
    p, _ = Project.init(tmp_path, backend="postgres")
    p.plan("Alpha", tasks=["a"])
    app = create_app(Project.open(tmp_path))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert titles(c) == ["Alpha"]
        pool = app.app.state.connections.pool
        assert pool.size == WORKERS + 1
        pg_server.restart()  # every connection the pool holds is now broken
        Project.open(tmp_path).plan("Beta")  # a new head: the next answer is read anew
        assert titles(c) == ["Alpha", "Beta"]  # the very next request
        assert c.get("/api/tasks").json()["total"] == 1
        assert c.get("/").status_code == 200


def test_the_pool_holds_the_connections_and_is_closed_when_the_dashboard_stops(
        tmp_path: Path, pg_url: str) -> None:
    p, _ = Project.init(tmp_path, backend="postgres")
    p.plan("Alpha", tasks=["a"])
    before = dashboard_connections(pg_url)  # (this test's own project's)
    app = create_app(Project.open(tmp_path))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        for _ in range(3):
            assert titles(c) == ["Alpha"]
        pool = app.app.state.connections.pool
        assert pool.stats()["requests_num"] > 0  # the requests borrowed
        # the pool's (a worker's each, and the loop's) and the watcher's own (LISTEN)
        assert dashboard_connections(pg_url) == before + WORKERS + 1 + 1
    assert pool.closed
    deadline = time.monotonic() + 5
    while dashboard_connections(pg_url) > before and time.monotonic() < deadline:
        time.sleep(0.05)  # (the watcher lets go of its own at its next turn)
    assert dashboard_connections(pg_url) == before

"""`milestone execute` on postgres: the monitor waits on NOTIFY (woken by a write from
another process, silent while nothing happens), the writer and the services borrow
from a connection pool that is closed when the run ends."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from milestones.agents.board import POOLED
from milestones.agents.executor import Executor, Options
from milestones.project import Project
from milestones.storage import pgconn
from milestones.storage.libpq import LibpqConnection

MID = "milestone-001"
GATE = "while [ ! -f go ]; do sleep 0.05; done"  # runs until the test creates ./go


@pytest.fixture
def project(tmp_path: Path, pg_url: str) -> Project:
    p, _ = Project.init(tmp_path, backend="postgres", actor="owner@example.com",
                        session_id="test-session")
    p.plan("Work", tasks=[{"title": "waits", "run": GATE}, {"title": "later", "run": "true",
                                                           "depends_on": ["task-1"]}])
    return p


class Statements:
    """Every statement a thread named ``thread`` sends, with its time (a spy on the
    ``execute`` of both drivers' connections: the pool lends psycopg's, the monitor's
    own is libpq's unless MILESTONE_PG_DRIVER says psycopg)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, thread: str) -> None:
        self.sent: list[tuple[float, str]] = []
        for cls in (pgconn.PgConnection, LibpqConnection):
            monkeypatch.setattr(cls, "execute", self._spy(cls.execute, thread))

    def _spy(self, execute: Any, thread: str) -> Any:
        def spy(conn: Any, sql: str, *args: Any) -> Any:
            if threading.current_thread().name == thread:
                self.sent.append((time.monotonic(), sql))
            return execute(conn, sql, *args)

        return spy

    def since(self, t: float) -> list[str]:
        return [sql for at, sql in self.sent if at >= t]


class Run:
    """An executor started in this process, its board's changes with their times."""

    def __init__(self, p: Project, **opts: Any) -> None:
        self.ex = Executor(p, MID, Options(agents=1, poll=0.1, check_every=0.2,
                                           detect_every=0.2, **opts))
        self.changes: list[tuple[float, str, str | None]] = []
        self.ex.board.listen(lambda c: self.changes.append((time.monotonic(), c.kind, c.ref)))
        self.ex.check()
        self.ex.start()
        self.summary: dict[str, Any] = {}
        self.thread = threading.Thread(target=lambda: self.summary.update(self.ex.wait()))
        self.thread.start()

    def wait_for(self, kind: str, ref: str, seconds: float = 20) -> float:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for at, k, r in list(self.changes):
                if k == kind and r == ref:
                    return at
            time.sleep(0.01)
        raise AssertionError(f"no {kind} of {ref}: {self.changes}")

    def finish(self, root: Path) -> dict[str, Any]:
        (root / "go").write_text("")
        self.thread.join(60)
        assert not self.thread.is_alive()
        return self.summary


@pytest.fixture
def started(project: Project, tmp_path: Path) -> Iterator[Any]:
    runs: list[Run] = []

    def start(**opts: Any) -> Run:
        r = Run(project, **opts)
        runs.append(r)
        r.wait_for("claimed", f"{MID}/task-1")
        return r

    yield start
    for r in runs:
        if r.thread.is_alive():
            r.ex.stop()
            r.finish(tmp_path)


def block_from_another_process(root: Path) -> float:
    """``milestone task block 1/2`` as a process of its own; when it ended."""
    done = subprocess.run([sys.executable, "-m", "milestones", "task", "block", "1/2",
                           "--reason", "outside"], cwd=root, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return time.monotonic()


def test_the_monitor_sends_nothing_while_nothing_happens(
        started: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sent = Statements(monkeypatch, "monitor")
    run = started(watch_every=0.1)  # polling, it would read the head ten times a second
    time.sleep(0.5)  # (the claim's own commits have woken it; it has looked)
    quiet = time.monotonic()
    time.sleep(1.5)
    assert sent.since(quiet) == []
    woken = time.monotonic()
    block_from_another_process(tmp_path)
    run.wait_for("blocked", f"{MID}/task-2")
    assert sent.since(woken), "the monitor read nothing after the NOTIFY"
    assert run.finish(tmp_path)["done"] == 1


def test_a_write_from_another_process_wakes_the_monitor_at_once(
        started: Any, tmp_path: Path) -> None:
    run = started(watch_every=5.0)  # a poll would take up to 5 s to notice
    time.sleep(0.3)
    ended = block_from_another_process(tmp_path)
    noticed = run.wait_for("blocked", f"{MID}/task-2")
    assert noticed - ended < 1.0  # woken by the commit's NOTIFY
    run.finish(tmp_path)


def active(project: Project, app: str = "milestone") -> int:
    """Connections of ``app`` to the project's database, but the caller's own."""
    conn = project.store.connect()  # type: ignore[attr-defined]
    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                       "current_database() AND application_name = ? AND "
                       "pid <> pg_backend_pid()", (app,)).fetchone()
    return int(row[0])


def test_the_writer_and_services_borrow_from_a_pool_closed_at_the_end(
        started: Any, project: Project, tmp_path: Path) -> None:
    before = active(project)
    run = started(watch_every=0.1)
    pool = run.ex.connections.pool
    assert pool is not None and pool.size == len(POOLED) == 3
    time.sleep(0.5)
    stats = pool.stats()
    assert stats["pool_size"] == 3 and stats["requests_num"] > 0
    # the pool's three and the monitor's own (the agents' steps go through the writer)
    assert active(project) == before + 4
    summary = run.finish(tmp_path)
    assert summary["exit_code"] == 0 and summary["done"] == 2
    assert pool.closed
    deadline = time.monotonic() + 5
    while active(project) != before and time.monotonic() < deadline:
        time.sleep(0.05)  # (a closed connection leaves pg_stat_activity a moment later)
    assert active(project) == before

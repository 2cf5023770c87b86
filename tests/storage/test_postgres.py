"""The PostgreSQL backend: migrations there and back, where its URL comes from (never
the project's files), faults of the network, NOTIFY, and its backups.

Every test gets a fresh database of the session's throwaway server (tests/pgserver.py)
and skips, saying why, when there is no initdb; each runs on both connections (libpq's
and psycopg's: ``driver``).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_migrate import build  # the same small project the migration tests move

from conftest import Runner
from milestones.errors import StorageError
from milestones.model import events as ev
from milestones.ops.migrate import checksums, migrate
from milestones.project import Project
from milestones.storage import open_store


@pytest.fixture(autouse=True, params=["libpq", "psycopg"])
def driver(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here on both connections: libpq's (the commands', storage/libpq.py)
    and psycopg's (the long-running processes')."""
    monkeypatch.setenv("MILESTONE_PG_DRIVER", request.param)
    return str(request.param)


def snapshot(root: Path) -> tuple[dict[str, str], list[dict[str, Any]], str | None]:
    store = open_store(root)
    try:
        state = store.load()
        return checksums(state), list(store.events()), state.current
    finally:
        getattr(store, "close", lambda: None)()


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "milestones", "-C", str(cwd), *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_round_trip_through_postgres_keeps_everything(tmp_path: Path, pg_url: str) -> None:
    p = build(tmp_path)
    root = p.root
    before = snapshot(root)
    for to in ("postgres", "database", "postgres", "hybrid", "postgres", "file"):
        migrate(root, to)
        assert (root / "config" / "storage-backend.txt").read_text() == f"{to}\n"
        assert snapshot(root) == before, to
    log = before[1]
    assert ev.verify_chain(log) is None
    q = Project.open(tmp_path)
    assert q.resume_view()["notes"][-1]["text"] == "left off here"
    assert q.milestone("1").task("task-1").status == "in_progress"


def test_cli_migrate_with_url_keeps_the_password_out_of_the_project(
        tmp_path: Path, pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    build(tmp_path)
    monkeypatch.delenv("MILESTONE_DATABASE_URL", raising=False)
    bare = pg_server.new_database()
    pg_server.admin("ALTER USER postgres PASSWORD 's3cret-pw'")  # trust auth: not checked
    url = bare.replace("postgres@", "postgres:s3cret-pw@")
    r = cli(tmp_path, "storage", "migrate", "--to", "postgres", "--url", url)
    assert r.returncode == 0, r.stderr
    assert "s3cret-pw" not in r.stdout + r.stderr
    saved = Path(os.environ["XDG_CONFIG_HOME"]) / "milestone" / "database-url"
    assert saved.read_text().strip() == url
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    for path in (tmp_path / ".milestones").rglob("*"):
        if path.is_file():
            assert b"s3cret-pw" not in path.read_bytes(), path
    assert (tmp_path / ".milestones/config/storage-backend.txt").read_text() == "postgres\n"
    # later commands find the URL in the file, and see the migrated project
    r = cli(tmp_path, "task", "done", "1/1")
    assert r.returncode == 0, r.stderr
    assert Project.open(tmp_path).milestone("1").task("task-1").status == "done"


def test_a_url_file_others_can_read_is_refused(tmp_path: Path, pg_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    Project.init(tmp_path, backend="postgres")
    monkeypatch.delenv("MILESTONE_DATABASE_URL")
    saved = Path(os.environ["XDG_CONFIG_HOME"]) / "milestone" / "database-url"
    saved.parent.mkdir(parents=True)
    saved.write_text(pg_url + "\n")
    saved.chmod(0o644)
    r = cli(tmp_path, "status")
    assert r.returncode == 8
    lines = r.stderr.strip().splitlines()
    assert len(lines) <= 2 and "readable by others" in lines[0] and "Traceback" not in r.stderr
    saved.chmod(0o600)
    assert cli(tmp_path, "status").returncode == 0


def test_no_url_and_an_unreachable_server_are_one_line_exit_8(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    Project.init(tmp_path, backend="postgres")
    monkeypatch.delenv("MILESTONE_DATABASE_URL")
    r = cli(tmp_path, "status")
    assert r.returncode == 8 and "no PostgreSQL URL" in r.stderr and "Traceback" not in r.stderr
    dead = "postgresql://postgres:pw@127.0.0.1:1/nothing"
    r = cli(tmp_path, "status", env={"MILESTONE_DATABASE_URL": dead})
    assert r.returncode == 8 and "PostgreSQL connection" in r.stderr
    assert ":pw@" not in r.stderr and "Traceback" not in r.stderr


def test_a_connection_lost_mid_command_writes_nothing(
        tmp_path: Path, pg_url: str, pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server drops the connection after the events went in, before the commit: the
    command fails with exit 8 naming the reason, and none of it is in the database."""
    from milestones.storage.postgres import PostgresStore

    p, _ = Project.init(tmp_path, backend="postgres")
    p.plan("Alpha", tasks=["One", "Two"])
    before = snapshot(p.root)
    real = PostgresStore.write_milestone

    def cut(self: PostgresStore, conn: Any, *args: Any) -> None:
        real(self, conn, *args)
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        pg_server.admin(f"SELECT pg_terminate_backend({int(pid)})")

    monkeypatch.setattr(PostgresStore, "write_milestone", cut)
    with pytest.raises(StorageError, match="PostgreSQL connection"):
        p.complete_task("1/1")
    monkeypatch.setattr(PostgresStore, "write_milestone", real)
    assert snapshot(p.root) == before
    q = Project.open(tmp_path)  # a new command: a new connection, and it works
    q.complete_task("1/1")
    assert q.milestone("1").task("task-1").status == "done"


def test_log_follow_is_woken_by_notify(tmp_path: Path, pg_url: str) -> None:
    p, _ = Project.init(tmp_path, backend="postgres")
    head = p.state().last_event_id
    writer = threading.Timer(0.5, lambda: Project.open(tmp_path).note("hello"))
    started = time.monotonic()
    writer.start()
    assert p.wait_for_events(head, timeout=60)
    assert time.monotonic() - started < 30  # woken by the commit, not by the timeout
    writer.join()
    follow = subprocess.Popen([sys.executable, "-m", "milestones", "-C", str(tmp_path), "log",
                               "--follow", "--json"], stdout=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        assert '"hello"' in follow.stdout.readline()  # the log so far
        Project.open(tmp_path).note("second")
        assert '"second"' in follow.stdout.readline()  # then each new event
    finally:
        follow.terminate()
        follow.wait(timeout=30)


def test_a_backup_holds_the_rows_as_a_sqlite_copy(tmp_path: Path, pg_url: str) -> None:
    import tarfile

    from milestones.storage.backup import create_backup
    from milestones.storage.sqlite import DatabaseStore

    p, _ = Project.init(tmp_path, backend="postgres")
    p.plan("Alpha", tasks=["One", "Two"])
    p.complete_task("1/1")
    info = create_backup(p.root, reason="manual")
    out = tmp_path / "x"
    with tarfile.open(info.path) as tar:
        tar.extractall(out, filter="data")
    copy = DatabaseStore(out, next(out.rglob("postgres-copy.db")))
    try:
        assert checksums(copy.load()) == snapshot(p.root)[0]
        assert list(copy.events()) == snapshot(p.root)[1]
    finally:
        copy.close()


def test_run_under_many_writers(tmp_path: Path, pg_url: str) -> None:
    """Writers from several processes at once, no lock file: every change is in the
    chain once, in order."""
    Project.init(tmp_path, backend="postgres")
    run = Runner(tmp_path)
    run.ok("plan", "Shared", "--task", "seed")
    procs = [subprocess.Popen([sys.executable, "-m", "milestones", "-C", str(tmp_path),
                               "note", f"n{i}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for i in range(8)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    assert not (tmp_path / ".milestones" / ".lock").exists()
    events = snapshot(tmp_path / ".milestones")[1]
    assert ev.verify_chain(events) is None
    assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))


def test_a_read_only_role_reads_and_cannot_write(tmp_path: Path, pg_url: str,
                                                 pg_server: Any) -> None:
    p, _ = Project.init(tmp_path, backend="postgres")
    p.plan("Alpha", tasks=["One"])
    db = pg_url.rsplit("/", 1)[1]
    pg_server.admin("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
                    "'viewer') THEN CREATE ROLE viewer LOGIN; END IF; END $$")
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO viewer")
    ro = {"MILESTONE_DATABASE_URL": pg_server.url(db).replace("postgres@", "viewer@")}
    r = cli(tmp_path, "status", "--json", env=ro)
    assert r.returncode == 0, r.stderr
    r = cli(tmp_path, "note", "not allowed", env=ro)
    assert r.returncode == 8 and "permission denied" in r.stderr
    assert "Traceback" not in r.stderr
    assert [e["event_type"] for e in snapshot(p.root)[1]][-1] != "note_added"


def test_other_projects_never_import_psycopg(tmp_path: Path) -> None:
    """Start-up and a command on another backend do not pay for the postgres driver."""
    Project.init(tmp_path)
    code = ("import sys, milestones.cli, milestones.storage as s; "
            f"s.open_store(__import__('pathlib').Path({str(tmp_path / '.milestones')!r}))"
            ".load(); print(sorted(m for m in sys.modules if m.startswith('psycopg')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_server_restarting_is_waited_for_at_connect_and_nothing_else_is_retried(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, driver: str) -> None:
    """Connecting while the server restarts is tried again (1.7 s in all); a wrong
    password or database is not; a connection lost later is exit 8, not retried."""
    from milestones.storage import libpq, pgconn

    Project.init(tmp_path, backend="postgres", actor="ann", session_id="s1")
    calls = []
    if driver == "psycopg":
        import psycopg

        target, name, error = psycopg, "connect", psycopg.OperationalError
    else:
        target, name, error = libpq.LibpqConnection, "_attempt", pgconn.DriverError
    real = getattr(target, name)

    def flaky(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) <= 2:
            raise error("connection failed: FATAL:  the database system is starting up")
        return real(*args, **kw)

    monkeypatch.setattr(pgconn, "CONNECT_RETRY", (0.01, 0.01, 0.01))
    monkeypatch.setattr(target, name, flaky)
    assert Project.open(tmp_path).state().milestones == {}
    assert len(calls) == 3
    calls.clear()

    def refused(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        raise error('connection failed: FATAL:  password authentication failed for user "ann"')

    monkeypatch.setattr(target, name, refused)
    with pytest.raises(StorageError, match="password authentication failed"):
        Project.open(tmp_path).state()
    assert len(calls) == 1

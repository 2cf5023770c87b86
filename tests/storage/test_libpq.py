"""The short-lived commands' PostgreSQL connection (storage/libpq.py, ctypes over
libpq): the values it reads and writes equal psycopg's, its errors are ours with their
exit codes, LISTEN/NOTIFY wakes it, and a postgres command never imports psycopg.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from milestones.errors import Conflict, StorageError
from milestones.project import Project
from milestones.storage import libpq, pgconn


@pytest.fixture
def both(pg_url: str) -> Any:
    """A libpq connection and a psycopg one to the same fresh database."""
    lite, psy = libpq.LibpqConnection(pg_url), pgconn.PgConnection(pg_url)
    yield lite, psy
    lite.close()
    psy.close()


def rows(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    return list(conn.execute(sql, params).fetchall())


def typed(values: list[tuple[Any, ...]]) -> list[list[tuple[type, Any]]]:
    """Values with their types (1 == 1.0 == True: equal is not enough)."""
    return [[(type(v), v) for v in row] for row in values]


LARGE = "x" * 3_000_000 + "é"
COLUMNS = ("SELECT 1::int2, 2::int4, 3000000000::int8, 26::oid, 1.5::float4, "
           "0.1::float8, 12.50::numeric, 7::numeric, true, false, 'text'::text, "
           "'vc'::varchar, 'ch'::char(3), '{\"a\": [1, null]}'::json, '{\"b\": 2}'::jsonb, "
           "'\\x00ff41'::bytea, NULL::text, NULL::int4, '', 'héllo ✓ 𝄞'::text, "
           "'schema_version'::regclass, pg_notify('nobody', 'x'), "
           "'NaN'::float8, 'Infinity'::float8, '-9223372036854775808'::int8")


def test_every_column_type_reads_as_psycopg_reads_it(both: Any) -> None:
    lite, psy = both
    got, want = rows(lite, COLUMNS)[0], rows(psy, COLUMNS)[0]
    assert [type(v) for v in got] == [type(v) for v in want]
    # NaN is not equal to itself: compare it by its text
    assert [repr(v) for v in got] == [repr(v) for v in want]
    assert got[6] == Decimal("12.50") and got[15] == b"\x00\xffA" and got[16] is None
    big = rows(lite, "SELECT ?::text, length(?::text)", (LARGE, LARGE))[0]
    assert big == (LARGE, len(LARGE))


def test_parameters_reach_the_server_as_psycopg_sends_them(both: Any) -> None:
    lite, psy = both
    params = (None, True, False, 0, -40000, 2**40, 2**70, 1.25, "it's ? %s é",
              b"\x00\x01bytes", "")
    sql = ("SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, pg_typeof(?)::text, pg_typeof(?)::text, "
           "'?', ?::text IS NULL")
    args = (*params, 1, 2**40, None)
    assert typed(rows(lite, sql, args)) == typed(rows(psy, sql, args))


def test_every_table_of_the_schema_reads_back_equal(tmp_path: Path, pg_url: str) -> None:
    """The rows a project writes read the same through both drivers, table by table."""
    from milestones.storage.postgres import TABLES

    p, _ = Project.init(tmp_path, backend="postgres", actor="ann", session_id="s1")
    p.plan("Alpha ✓", tasks=["One", "Two 'quoted'"])
    p.start_task("1/task-1")
    lite, psy = libpq.LibpqConnection(pg_url), pgconn.PgConnection(pg_url)
    try:
        for table in TABLES:
            sql = f"SELECT * FROM {table} ORDER BY 1, 2" if table not in (
                "resume", "schema_version") else f"SELECT * FROM {table}"
            got = typed(rows(lite, sql))
            assert got == typed(rows(psy, sql)), table
            cur = lite.execute(sql)
            assert [d[0] for d in cur.description] == [
                d.name for d in psy.execute(sql).description]
        assert rows(lite, "SELECT count(*), sum(position), avg(progress) FROM tasks") == \
            rows(psy, "SELECT count(*), sum(position), avg(progress) FROM tasks")
    finally:
        lite.close()
        psy.close()


def test_statements_results_rowcount_and_executemany(both: Any) -> None:
    lite, _ = both
    lite.execute("CREATE TEMP TABLE t (k int PRIMARY KEY, v text)")
    lite.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, None), (3, "c")])
    lite.executemany("INSERT INTO t VALUES (?, ?)", [])
    assert lite.execute("UPDATE t SET v = ? WHERE k >= ?", ("z", 2)).rowcount == 2
    cur = lite.execute("BEGIN; SELECT k FROM t ORDER BY k; SELECT v FROM t WHERE k = 2; "
                       "COMMIT")
    assert cur.description is None and cur.fetchone() is None
    assert cur.nextset() and cur.fetchone() == (1,) and list(cur) == [(2,), (3,)]
    assert cur.nextset() and cur.fetchall() == [("z",)]
    assert cur.nextset() and cur.description is None
    assert cur.nextset() is None
    assert not lite.in_transaction
    lite.execute("BEGIN")
    assert lite.in_transaction
    lite.rollback_quietly()
    assert not lite.in_transaction and not lite.broken


def test_executemany_pipelines_batches_and_stops_at_the_first_error(both: Any) -> None:
    lite, _ = both
    lite.execute("CREATE TEMP TABLE t (k int PRIMARY KEY, v text)")
    many = [(k, f"v{k} é") for k in range(libpq.PIPELINE_BATCH * 3 + 5)]
    lite.executemany("INSERT INTO t VALUES (?, ?)", many)
    assert rows(lite, "SELECT k, v FROM t ORDER BY k") == many
    lite.execute("BEGIN")
    with pytest.raises(StorageError, match="duplicate key"):
        lite.executemany("INSERT INTO t VALUES (?, ?)", [(-1, "new"), (5, "again"), (-2, "x")])
    lite.rollback_quietly()
    assert rows(lite, "SELECT count(*) FROM t WHERE k < 0") == [(0,)]
    with pytest.raises(StorageError, match="cannot pass a set"):
        lite.executemany("INSERT INTO t VALUES (?, ?)", [(-1, "new"), (-2, {1})])
    assert rows(lite, "SELECT count(*) FROM t") == [(len(many),)]
    assert not lite.in_transaction


def test_a_pipeline_reads_when_asked_and_raises_the_first_error(both: Any) -> None:
    lite, _ = both
    lite.execute("CREATE TEMP TABLE t (k int PRIMARY KEY, v text)")
    lite.execute("BEGIN")
    with lite.pipeline():
        lite.execute("INSERT INTO t VALUES (?, ?)", (1, "a"))
        lite.executemany("INSERT INTO t VALUES (?, ?)", [(2, "b"), (3, None)])
        counted = lite.execute("SELECT count(*) FROM t")
        changed = lite.execute("UPDATE t SET v = ? WHERE k > ?", ("z", 1))
        assert counted.fetchone() == (3,)  # (read here: what was sent before it ran)
        last = lite.execute("SELECT v FROM t ORDER BY k")
    assert changed.rowcount == 2 and last.fetchall() == [("a",), ("z",), ("z",)]
    lite.execute("COMMIT")
    lite.execute("BEGIN")
    with pytest.raises(StorageError, match="duplicate key"), lite.pipeline():
        lite.execute("INSERT INTO t VALUES (?, ?)", (4, "d"))
        lite.execute("INSERT INTO t VALUES (?, ?)", (1, "again"))
        after = lite.execute("INSERT INTO t VALUES (?, ?)", (5, "e"))
    assert after.fetchall() == []
    lite.rollback_quietly()
    assert rows(lite, "SELECT k FROM t ORDER BY k") == [(1,), (2,), (3,)]
    assert not lite.in_transaction and not lite.broken
    big = "y" * 1000  # a large write in one pipeline: read as it goes, never stuck
    with lite.pipeline():
        for k in range(10, 10 + libpq.PIPELINE_BATCH * 20):
            lite.execute("INSERT INTO t VALUES (?, ?)", (k, big))
    assert rows(lite, "SELECT count(*) FROM t") == [(3 + libpq.PIPELINE_BATCH * 20,)]


def test_errors_are_ours_and_the_connection_stays_usable(both: Any, pg_url: str) -> None:
    lite, _ = both
    with pytest.raises(StorageError, match="syntax error") as bad:
        lite.execute("SELEC 1")
    assert bad.value.exit_code == 8 and pg_url.rsplit("/", 1)[1] in bad.value.message
    with pytest.raises(StorageError, match="cannot pass a object"):
        lite.execute("SELECT ?", (object(),))
    lite.execute("BEGIN")
    with pytest.raises(StorageError, match="division by zero"):
        lite.execute("SELECT 1 / ?", (0,))
    lite.rollback_quietly()
    assert rows(lite, "SELECT 1") == [(1,)]
    # a lock that times out is a Conflict (exit 7)
    other = libpq.LibpqConnection(pg_url)
    try:
        other.execute("BEGIN; SELECT pg_advisory_xact_lock(42)")
        lite.execute("BEGIN; SET LOCAL lock_timeout = '50ms'")
        with pytest.raises(Conflict) as busy:
            lite.execute("SELECT pg_advisory_xact_lock(?)", (42,))
        assert busy.value.exit_code == 7
        lite.rollback_quietly()
    finally:
        other.close()


def test_ctrl_c_interrupts_a_wait_and_cancels_it_on_the_server(both: Any,
                                                                pg_url: str) -> None:
    """A command waiting on the server (here for a lock another holds) stops at Ctrl-C,
    not when the wait ends, and the server stops waiting too."""
    lite, psy = both
    psy.execute("BEGIN")
    psy.execute("SELECT pg_advisory_xact_lock(42)")
    # (to the main thread, as a terminal's Ctrl-C reaches a command's only thread)
    timer = threading.Timer(0.3, signal.pthread_kill,
                            (threading.main_thread().ident, signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        lite.execute("SELECT pg_advisory_xact_lock(?)", (42,))
    assert time.monotonic() - start < 5
    timer.join()
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    assert rows(psy, waiting) == [(0,)]
    assert rows(lite, "SELECT 1") == [(1,)] and not lite.in_transaction
    psy.execute("ROLLBACK")


def test_a_killed_connection_is_exit_8_and_broken(both: Any, pg_server: Any) -> None:
    lite, _ = both
    pid = rows(lite, "SELECT pg_backend_pid()")[0][0]
    pg_server.admin(f"SELECT pg_terminate_backend({int(pid)})")
    with pytest.raises(StorageError, match=r"connection to .* failed") as lost:
        lite.execute("SELECT 1")
    assert lost.value.exit_code == 8 and lite.broken
    lite.rollback_quietly()  # nothing to roll back on a dead connection: no error
    lite.close()
    lite.close()
    with pytest.raises(StorageError, match="closed"):
        lite.execute("SELECT 1")


def test_a_command_on_a_server_that_is_gone_says_so_in_one_line(tmp_path: Path,
                                                                pg_url: str) -> None:
    Project.init(tmp_path, backend="postgres")
    gone = pg_url.replace(pg_url.split("@")[1].split("/")[0], "127.0.0.1:1")
    r = subprocess.run([sys.executable, "-m", "milestones", "-C", str(tmp_path), "status"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MILESTONE_DATABASE_URL": gone})
    assert r.returncode == 8, r.stderr
    assert "Connection refused" in r.stderr and "Traceback" not in r.stderr


def test_notify_wakes_a_listener(both: Any, pg_url: str) -> None:
    lite, psy = both
    lite.execute("LISTEN milestone_events")
    start = time.monotonic()
    assert lite.notifies(0.1) == []
    assert 0.09 < time.monotonic() - start < 2
    timer = threading.Timer(0.3, lambda: psy.execute("NOTIFY milestone_events, '17'"))
    timer.start()
    start = time.monotonic()
    assert lite.notifies(10) == ["17"]
    assert time.monotonic() - start < 5
    timer.join()


def test_no_libpq_is_a_clear_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libpq, "library_path", lambda: None)
    libpq.load.cache_clear()
    try:
        with pytest.raises(StorageError, match="cannot load libpq") as no:
            libpq.load()
        assert no.value.exit_code == 8
    finally:
        monkeypatch.undo()
        libpq.load.cache_clear()


def test_libpq_is_psycopg_binarys_own() -> None:
    path = libpq.library_path()
    assert path is not None and "psycopg_binary.libs" in path


def test_a_postgres_command_never_imports_psycopg(tmp_path: Path, pg_url: str) -> None:
    """What made a postgres command slow: importing psycopg (250-350 ms)."""
    p, _ = Project.init(tmp_path, backend="postgres")
    p.plan("Alpha", tasks=["One"])
    code = ("import sys, atexit\n"
            "atexit.register(lambda: print(sorted(m for m in sys.modules "
            "if m.startswith('psycopg')), file=sys.stderr))\n"
            "from milestones.console import main\n"
            f"sys.argv = ['milestone', '-C', {str(tmp_path)!r}, 'task', 'done', '1/1']\nmain()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.stderr.strip().splitlines()[-1] == "[]", r.stderr
    assert Project.open(tmp_path).milestone("1").task("task-1").status == "done"
    r = subprocess.run([sys.executable, "-m", "milestones", "-C", str(tmp_path), "status"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MILESTONE_PG_DRIVER": "psycopg",
                            "PYTHONPROFILEIMPORTTIME": "1"})
    assert r.returncode == 0 and "psycopg" in r.stderr  # (the other driver, when asked)

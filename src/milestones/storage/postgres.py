"""The PostgreSQL backend: a PostgreSQL database is the source of truth, shared by
every machine that has the project's URL (``pgconn``).

The same tables as the SQLite database backend, and the same SQL: this store is
``sqlite.DatabaseStore`` over a ``pgconn.PgConnection`` (``sqlquery.Dialect`` spells
the few things the two write differently), with the schema's migrations, the writer
lock and the transactions of its own:

- one transaction per command: ``lock()`` opens it and takes a transaction-scoped
  advisory lock (``pg_advisory_xact_lock``), so writers from every machine line up
  on the chain head; there is no lock file. The events, the rows and the log head
  commit together or not at all; a lost connection rolls back on the server and is
  a ``StorageError`` (exit 8) naming the reason, never half a change;
- a read of several statements runs in one ``REPEATABLE READ`` snapshot;
- each commit that appended events sends ``NOTIFY milestone_events`` with the new
  head's id (``log --follow`` and the dashboard wait on it, ``listen``);
- claims take their row with ``SELECT ... FOR UPDATE SKIP LOCKED`` (``pgclaims``).

Every query is parameterized. On disk, ``.milestones/`` keeps the configuration, the
security and migration logs, the performance records and the local query cache;
never the URL.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PosixPath
from typing import Any

from ..errors import Conflict, StorageError
from . import fsutil, pgconn, sqlready
from .pgheld import PREFETCH, HeldReads
from .sqlite import DatabaseStore
from .sqlite_base import AFTER_MIGRATION, MIGRATIONS, STATUS_COUNTS
from .sqlquery import PostgresDialect

CHANNEL = "milestone_events"
WRITER_KEY = 0x6D696C65  # the advisory lock every writer takes ("mile")
SCHEMA_KEY = 0x6D696C66  # the one a schema migration takes

_COUNT_FUNCTION = """
CREATE OR REPLACE FUNCTION milestone_count_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE status_counts SET n = n - 1 WHERE kind = TG_ARGV[0] AND status = OLD.status;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO status_counts (kind, status, n) VALUES (TG_ARGV[0], NEW.status, 1)
        ON CONFLICT (kind, status) DO UPDATE SET n = status_counts.n + 1;
    END IF;
    RETURN NULL;
END $$"""


def _counted(table: str, kind: str) -> tuple[str, ...]:
    """Triggers keeping ``status_counts`` in step with ``table`` (SQLite's, in plpgsql)."""
    return (
        f"CREATE TRIGGER count_{table}_rows AFTER INSERT OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION milestone_count_status('{kind}')",
        f"CREATE TRIGGER count_{table}_status AFTER UPDATE OF status ON {table} "
        "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) "
        f"EXECUTE FUNCTION milestone_count_status('{kind}')",
    )


# SQLite's migrations, but for the counting triggers (version 2): the same versions.
PG_MIGRATIONS: dict[int, str | tuple[str, ...]] = {
    **MIGRATIONS,
    2: (
        *STATUS_COUNTS,
        _COUNT_FUNCTION,
        *_counted("milestones", "milestone"),
        *_counted("tasks", "task"),
    ),
}
TABLES = ("sources", "task_deps", "tasks", "milestone_deps", "milestone_tags", "milestones",
          "events", "meta", "resume", "records", "status_counts", "schema_version")


class Location(PosixPath):
    """Where the rows are, as messages name it: the URL without its password (the
    SQLite code names its ``db_path``)."""

    url = ""

    def __str__(self) -> str:
        return self.url or super().__str__()


class PostgresStore(HeldReads):
    """The PostgreSQL backend (see the module's docstring)."""

    backend = "postgres"

    def __init__(self, root: Path, url: str | None = None) -> None:
        super().__init__(root, Path("postgresql"))
        self.url = url  # None: MILESTONE_DATABASE_URL or the URL file, when first needed

    # ----------------------------------------------------------- connection

    def connect(self) -> Any:
        conn: Any = self._conn
        if conn is None or conn.broken:
            self._in_txn = False
            self._listening = False
            conn = self._open()
            if self._version_seen:  # once per store (a pool's borrower opens at each step)
                self._conn = conn
                return conn
            try:
                row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
                version = (conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
                           if row[0] else None)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            if version is not None and version < max(PG_MIGRATIONS):
                self.migrate_schema(conn)
            self._version_seen = version is not None
        return conn

    _version_seen = False

    # What opens the connection: a connection of the store's own (libpq's, or
    # psycopg's: ``pgconn.connect``), or one borrowed from a long-running process's
    # pool (``pgpool.Pool.lend``, which takes it back).
    connector: Callable[[str], Any] = staticmethod(pgconn.connect)

    def _open(self) -> Any:
        conn = self.connector(pgconn.resolve_url(self.url))
        where = Location("postgresql")
        where.url = conn.where
        self.db_path = where
        return conn

    def exists(self) -> bool:
        if not self._exists:  # once there, the schema stays (discard() forgets it)
            row = self.connect().execute("SELECT to_regclass('schema_version') IS NOT NULL")
            self._exists = bool(row.fetchone()[0])
        return self._exists

    _exists = False

    def initialize(self) -> None:
        try:
            for d in ("logs", "config"):
                (self.root / d).mkdir(parents=True, exist_ok=True)
            backend = self.root / "config" / "storage-backend.txt"
            if not backend.exists():
                fsutil.atomic_write(backend, b"postgres\n")
        except OSError as exc:
            raise fsutil.storage_error(exc, self.root, "create") from None
        self.open_schema()

    def migrate_schema(self, conn: Any) -> int:
        """Bring the schema forward, a recorded step at a time, under an advisory lock
        (two machines opening an old database at once migrate it once)."""
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        own = not conn.in_transaction  # inside a write (a restore's import): its own
        if own:
            conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_KEY,))
            current = int(conn.execute("SELECT MAX(version) FROM schema_version"
                                       ).fetchone()[0] or 0)
            for version in sorted(v for v in PG_MIGRATIONS if v > current):
                steps = PG_MIGRATIONS[version]
                for statement in steps.split(";") if isinstance(steps, str) else steps:
                    if statement.strip():
                        conn.execute(statement)
                if version in AFTER_MIGRATION:
                    AFTER_MIGRATION[version](conn)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                current = version
            if own:
                conn.execute("COMMIT")
        except BaseException:
            if own:
                conn.rollback_quietly()
            raise
        return current

    # ----------------------------------------------------------------- lock

    def lock_late(self, timeout: float | None = None) -> contextlib.AbstractContextManager[None]:
        """A write that takes the advisory lock only when it first writes (or calls
        ``take_lock``): a claim picks its row (``pick_ready``) before it."""
        self._late = True
        return self._transaction(timeout)

    def take_lock(self) -> bool:
        if self._in_txn and not self._locked:
            self._lock_now(self.connect(), "")
            return True
        return False

    def _lock_now(self, conn: Any, begin: str) -> None:
        limit = self._limit
        try:
            if limit <= 0:
                if begin:
                    conn.execute(begin)
                got = conn.execute("SELECT pg_try_advisory_xact_lock(?)",
                                   (WRITER_KEY,)).fetchone()[0]
                if not got:
                    raise Conflict("the project is busy: another milestone command is writing",
                                   hint="retry, or raise MILESTONE_LOCK_TIMEOUT")
                self.hold(None)
            else:  # one round trip (numbers of ours only, no input in it), with the
                # rows every write reads under the lock (pgheld)
                sql = (f"{begin}SET LOCAL lock_timeout = '{int(limit * 1000)}ms'; "
                       f"SELECT pg_advisory_xact_lock({WRITER_KEY})")
                if self._exists:  # (a schema being made has no such rows yet)
                    self.hold(conn.execute(f"{sql}; {'; '.join(PREFETCH)}"))
                else:
                    conn.execute(sql)
        except Conflict as exc:
            conn.rollback_quietly()
            self._in_txn = False
            raise Conflict(f"the project is busy: another milestone command has held the "
                           f"database for over {limit:g}s" if limit > 0 else exc.message,
                           hint="retry, or raise MILESTONE_LOCK_TIMEOUT") from None
        except BaseException:
            conn.rollback_quietly()
            self._in_txn = False
            raise
        self._locked = True

    _late = False
    _locked = False
    _limit = 0.0

    def pick_ready(self, only: str | None = None, limit: int | None = None
                   ) -> list[dict[str, Any]] | None:
        if not self._in_txn:
            return None
        return sqlready.ready_rows(self.connect(), only, limit, lock=True)

    def reserve_task(self, mid: str, tid: str) -> bool:
        if not self._in_txn:
            return True
        row = self.connect().execute(
            "SELECT 1 FROM tasks t WHERE t.milestone_id = ? AND t.id = ?"
            + PostgresDialect.skip_locked, (mid, tid)).fetchone()
        return row is not None

    @contextlib.contextmanager
    def _transaction(self, timeout: float | None) -> Iterator[None]:
        conn = self.connect()
        if self._in_txn:
            if not self._locked:  # a write inside lock_late(): the lock first
                self._lock_now(conn, "")
            yield
            return
        self._limit = fsutil.lock_timeout() if timeout is None else timeout
        late, self._late = self._late, False
        self._locked = False
        self.hold(None)
        if late:
            try:
                conn.execute("BEGIN")
            except BaseException:
                conn.rollback_quietly()
                raise
        else:
            self._lock_now(conn, "BEGIN; ")
        self._in_txn = True
        self._keeping = {}
        self._dirty = False
        try:
            yield
        except BaseException:
            self._in_txn = self._locked = False
            conn.rollback_quietly()
            raise
        self._in_txn = False
        self._locked = False
        try:
            if self._dirty:
                fsutil.fault("db-commit")
                conn.execute(f"SELECT pg_notify('{CHANNEL}', (SELECT value FROM meta "
                             "WHERE key = 'last_event_id')); COMMIT")  # one round trip
            else:
                conn.execute("COMMIT")
        except (StorageError, OSError) as exc:
            if conn.broken:  # the COMMIT went out; whether it arrived, nobody says
                self._conn = None
                raise StorageError(
                    f"the connection was lost while the change was being committed: it "
                    f"may or may not be in the database ({exc})",
                    hint="check `milestone log --limit 5` before running it again") from None
            conn.rollback_quietly()
            raise StorageError(f"the change was not committed: {exc}",
                               hint=pgconn.RETRY_HINT) from None
        self._keep(self._keeping)

    @contextlib.contextmanager
    def _read(self, conn: Any) -> Iterator[None]:
        """One snapshot for a read of several statements (no-op inside a write)."""
        if self._in_txn or conn.in_transaction:
            yield
            return
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        finally:
            if conn.broken:
                self._conn = None
            else:
                conn.execute("COMMIT")

    # ---------------------------------------------------------- migration

    def data_files(self) -> list[Path]:
        return []  # the data lives on the server

    def discard(self) -> None:
        """Drop this backend's tables (a failed migration's half-made copy)."""
        conn = self.connect()
        self._kept.clear()
        with self._transaction(None):
            for table in TABLES:
                conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
            conn.execute("DROP FUNCTION IF EXISTS milestone_count_status() CASCADE")
        self._exists = False
        self.close()

    def bulk(self, on: bool) -> None:
        """An import's batches need not be flushed one by one: the last one is."""
        self.connect().execute(f"SET synchronous_commit TO {'off' if on else 'on'}")

    def settle(self) -> None:
        return None  # the server's own checkpoints

    # -------------------------------------------------------- backup/restore

    def backup(self, dest: Path) -> Path:
        """A SQLite database holding every row (what ``restore`` reads back)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        copy = DatabaseStore(dest.parent, dest)
        copy.open_schema()
        with self.reading():
            head = self.head_state()
            copy.bulk(True)
            copy.import_begin()
            for batch in _chunks(self.events(), 10_000):
                copy.import_events(batch)
            for snaps in self.snapshot_batches(1000):
                copy.import_snapshots(snaps, self.source_texts([s["id"] for s in snaps]))
            copy.bulk(False)
            copy.import_end(head, self.read_resume())
            for name in ("agents", "messages"):
                if record := self.read_record(name):
                    copy.write_record(name, record)
        copy.close()
        return dest

    def restore(self, src: Path) -> None:
        source = DatabaseStore(Path(src).parent, Path(src))
        try:
            head = source.head_state()
            self.import_stream(_chunks(source.events(), 10_000), source.snapshot_batches(1000),
                               head, source.read_resume(), source.source_texts)
        finally:
            source.close()

    # ------------------------------------------------------------- follow

    def wait_for_events(self, after: int, timeout: float) -> bool:
        """Block until an event past ``after`` is committed (LISTEN/NOTIFY), or
        ``timeout`` seconds pass; True when there is one."""
        conn = self.connect()
        if not self._listening:  # a commit before the LISTEN sent no NOTIFY here: look
            conn.execute(f"LISTEN {CHANNEL}")
            self._listening = True
            if self.last_event_id() > after:
                return True
        # Listening, every commit is told (those during other statements wait in
        # the driver's queue): no read of the head while nothing happens.
        deadline = time.monotonic() + timeout
        try:
            while True:
                for payload in conn.notifies(max(0.0, deadline - time.monotonic())):
                    with contextlib.suppress(ValueError):
                        if int(payload) > after:
                            return True
                if time.monotonic() >= deadline:
                    return False
        except Exception:  # the connection went away while waiting
            self._conn = None
            raise

    def last_event_id(self) -> int:
        row = self.connect().execute("SELECT value FROM meta WHERE key = 'last_event_id'")
        found = row.fetchone()
        return int(found[0]) if found else 0

    _listening = False


def _chunks(items: Any, size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


__all__ = ["CHANNEL", "PG_MIGRATIONS", "PostgresStore"]

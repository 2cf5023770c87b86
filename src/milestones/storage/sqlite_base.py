"""The database backend's base: the schema and its migrations, the connection, the
writer lock (a ``BEGIN IMMEDIATE`` transaction) and the reading of snapshots,
totals and events from the rows (see ``sqlite.DatabaseStore``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..errors import Conflict, StorageError
from ..model import events as ev
from . import fsutil, sqlready
from .base import Edit, LazyMilestones, Snapshot, State, Store
from .sqlquery import QueryCache, loads, refuse_db_links

SCHEMA_VERSION = 4


def _counted(table: str, kind: str) -> tuple[str, ...]:
    """Triggers keeping ``status_counts`` in step with ``table``'s rows."""
    plus = ("INSERT INTO status_counts (kind, status, n) VALUES ('{k}', {v}.status, 1) "
            "ON CONFLICT(kind, status) DO UPDATE SET n = n + 1")
    minus = "UPDATE status_counts SET n = n - 1 WHERE kind = '{k}' AND status = {v}.status"
    return (
        f"CREATE TRIGGER IF NOT EXISTS count_{table}_insert AFTER INSERT ON {table} BEGIN "
        f"{plus.format(k=kind, v='NEW')}; END",
        f"CREATE TRIGGER IF NOT EXISTS count_{table}_delete AFTER DELETE ON {table} BEGIN "
        f"{minus.format(k=kind, v='OLD')}; END",
        f"CREATE TRIGGER IF NOT EXISTS count_{table}_update AFTER UPDATE OF status ON {table} "
        f"WHEN OLD.status IS NOT NEW.status BEGIN {minus.format(k=kind, v='OLD')}; "
        f"{plus.format(k=kind, v='NEW')}; END",
    )


# The status_counts table filled from the rows (schema version 2; the triggers that
# keep it are each database's own).
STATUS_COUNTS = (
    "CREATE TABLE IF NOT EXISTS status_counts (kind TEXT NOT NULL, status TEXT NOT NULL, "
    "n INTEGER NOT NULL, PRIMARY KEY (kind, status))",
    "DELETE FROM status_counts",
    "INSERT INTO status_counts (kind, status, n) "
    "SELECT 'milestone', status, COUNT(*) FROM milestones GROUP BY status",
    "INSERT INTO status_counts (kind, status, n) "
    "SELECT 'task', status, COUNT(*) FROM tasks GROUP BY status",
)


# Forward migrations, by the version they lead to. Never edit one that shipped. A
# string is split on ";"; a tuple lists statements that hold ";" themselves (triggers).
MIGRATIONS: dict[int, str | tuple[str, ...]] = {
    1: """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
    CREATE TABLE IF NOT EXISTS milestones (
        id TEXT PRIMARY KEY,
        number INTEGER NOT NULL,
        title TEXT NOT NULL,
        status TEXT NOT NULL,
        priority TEXT NOT NULL,
        owner TEXT,
        category TEXT,
        start_date TEXT,
        due_date TEXT,
        updated_at TEXT,
        data TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS idx_milestone_status ON milestones(status, priority);
    CREATE INDEX IF NOT EXISTS idx_milestone_timeline ON milestones(start_date, due_date);
    CREATE INDEX IF NOT EXISTS idx_milestone_owner ON milestones(owner);
    CREATE TABLE IF NOT EXISTS milestone_tags (
        milestone_id TEXT NOT NULL REFERENCES milestones(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        PRIMARY KEY (milestone_id, tag)
    );
    CREATE INDEX IF NOT EXISTS idx_tag ON milestone_tags(tag);
    CREATE TABLE IF NOT EXISTS milestone_deps (
        milestone_id TEXT NOT NULL REFERENCES milestones(id) ON DELETE CASCADE,
        depends_on TEXT NOT NULL,
        PRIMARY KEY (milestone_id, depends_on)
    );
    CREATE INDEX IF NOT EXISTS idx_milestone_dep_target ON milestone_deps(depends_on);
    CREATE TABLE IF NOT EXISTS tasks (
        milestone_id TEXT NOT NULL REFERENCES milestones(id) ON DELETE CASCADE,
        id TEXT NOT NULL,
        position INTEGER NOT NULL,
        title TEXT NOT NULL,
        status TEXT NOT NULL,
        assignee TEXT,
        estimate REAL,
        progress INTEGER NOT NULL DEFAULT 0,
        data TEXT NOT NULL,
        PRIMARY KEY (milestone_id, id)
    );
    CREATE INDEX IF NOT EXISTS idx_task_status ON tasks(status, milestone_id);
    CREATE INDEX IF NOT EXISTS idx_task_assignee ON tasks(assignee);
    CREATE TABLE IF NOT EXISTS task_deps (
        milestone_id TEXT NOT NULL,
        task_id TEXT NOT NULL,
        dep_milestone_id TEXT NOT NULL,
        dep_task_id TEXT NOT NULL,
        PRIMARY KEY (milestone_id, task_id, dep_milestone_id, dep_task_id),
        FOREIGN KEY (milestone_id, task_id) REFERENCES tasks(milestone_id, id)
            ON DELETE CASCADE
    );
    CREATE INDEX IF NOT EXISTS idx_task_dependencies ON task_deps(milestone_id, task_id);
    CREATE INDEX IF NOT EXISTS idx_task_dep_target ON task_deps(dep_milestone_id, dep_task_id);
    CREATE TABLE IF NOT EXISTS events (
        event_id INTEGER PRIMARY KEY,
        milestone_id TEXT,
        event_type TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        actor TEXT,
        session_id TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS idx_event_milestone ON events(milestone_id, event_id);
    CREATE INDEX IF NOT EXISTS idx_event_type ON events(event_type, event_id);
    CREATE INDEX IF NOT EXISTS idx_event_time ON events(timestamp);
    CREATE TABLE IF NOT EXISTS resume (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT);
    CREATE TABLE IF NOT EXISTS sources (
        milestone_id TEXT PRIMARY KEY REFERENCES milestones(id) ON DELETE CASCADE,
        text TEXT NOT NULL
    );
    """,
    # Milestones and tasks by status, kept by triggers: `status` reads three rows,
    # not an index of every task.
    2: (
        *STATUS_COUNTS,
        *_counted("milestones", "milestone"),
        *_counted("tasks", "task"),
    ),
    # The agent registry and messages (milestones.agents.coord).
    3: """
    CREATE TABLE IF NOT EXISTS records (name TEXT PRIMARY KEY, data TEXT NOT NULL);
    """,
    # Ready work answered from the rows (storage.sqlready), kept by every write: whether
    # each task can start now, its milestone's priority rank, its number, and the chain
    # of open work waiting on it; the ready tasks indexed in the order `next` shows them.
    4: """
    ALTER TABLE tasks ADD COLUMN chain INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE tasks ADD COLUMN ready INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN num INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX IF NOT EXISTS idx_task_ready ON tasks(rank, chain DESC, milestone_id, num)
        WHERE ready = 1;
    """,
}
# Work a migration does beyond its statements, in the same transaction.
AFTER_MIGRATION = {4: sqlready.mark_all}


class DatabaseBase(Store):
    """The database backend's connection, lock and reading (see ``sqlite.DatabaseStore``)."""

    backend = "database"

    def __init__(self, root: Path, db_path: Path | None = None, *, derived: bool = False) -> None:
        self.root = Path(root)
        self.db_path = db_path or self.root / "database" / "milestones.db"
        # A derived database (the hybrid backend's index, rebuilt whenever it falls
        # behind the files) need not reach the disk at every commit: WAL's NORMAL
        # keeps it consistent, and a power cut costs at most a reindex.
        self.derived = derived
        self._conn: sqlite3.Connection | None = None
        self._in_txn = False
        self.cache: QueryCache | None = None  # database/cache.db, opened on first use
        # Snapshots this object read or wrote, each with the last event of its
        # milestone then (id, hash): served again while that is still the milestone's
        # last event, for one indexed lookup instead of decoding every task row. A
        # long-lived writer (``milestone execute``) reads back what it wrote at every
        # step.
        self._kept: dict[str, tuple[tuple[int, str], Snapshot]] = {}
        self._keeping: dict[str, tuple[tuple[int, str], Snapshot] | None] = {}  # on COMMIT
        self._dirty = False  # this transaction has inserted events: reads are not kept

    # ----------------------------------------------------------- connection

    def connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.db_path.exists():
                from ..errors import NotFound

                raise NotFound(f"no database at {self.db_path}",
                               hint="run `milestone init` (or migrate to the database backend)")
            conn = self._open()
            try:
                version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            except sqlite3.Error:
                version = None
            if version is not None and version < SCHEMA_VERSION:
                self.migrate_schema(conn)  # a database an older version wrote: bring it up
            self._conn = conn
        return self._conn

    def _open(self) -> sqlite3.Connection:
        refuse_db_links(self.db_path)
        try:
            conn = sqlite3.connect(self.db_path, timeout=fsutil.lock_timeout(),
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA synchronous={'NORMAL' if self.derived else 'FULL'}")
            conn.execute(f"PRAGMA busy_timeout={int(fsutil.lock_timeout() * 1000)}")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self.db_path}: {exc}",
                               hint="check the file's permissions, or run `milestone doctor`"
                               ) from None
        return conn

    def open_schema(self) -> None:
        """Open the connection if it is not, and bring its schema up to date."""
        conn = self._conn or self._open()
        self._conn = conn
        self.migrate_schema(conn)

    def close(self) -> None:
        self._kept.clear()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --------------------------------------------------------------- layout

    def exists(self) -> bool:
        return self.db_path.is_file()

    def initialize(self) -> None:
        try:
            for d in ("database", "database/backup", "logs", "config"):
                (self.root / d).mkdir(parents=True, exist_ok=True)
            backend = self.root / "config" / "storage-backend.txt"
            if not backend.exists():
                fsutil.atomic_write(backend, b"database\n")
        except OSError as exc:
            raise fsutil.storage_error(exc, self.root, "create") from None
        conn = self._conn or self._open()
        self._conn = conn
        self.migrate_schema(conn)

    def migrate_schema(self, conn: sqlite3.Connection) -> int:
        """Bring the schema forward, one recorded step at a time; returns the version."""
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = int(row[0] or 0)
        for version in sorted(v for v in MIGRATIONS if v > current):
            conn.execute("BEGIN IMMEDIATE")
            try:
                steps = MIGRATIONS[version]
                for statement in steps.split(";") if isinstance(steps, str) else steps:
                    if statement.strip():
                        conn.execute(statement)
                if version in AFTER_MIGRATION:
                    AFTER_MIGRATION[version](conn)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            current = version
        return current

    # ----------------------------------------------------------------- lock

    @contextlib.contextmanager
    def _transaction(self, timeout: float | None) -> Iterator[None]:
        conn = self.connect()
        if self._in_txn:
            yield
            return
        limit = fsutil.lock_timeout() if timeout is None else timeout
        # SQLite's busy handler does the bounded wait for the write lock.
        conn.execute(f"PRAGMA busy_timeout={int(limit * 1000)}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise StorageError(f"{self.db_path}: {exc}", hint="run `milestone doctor`"
                                   ) from None
            raise Conflict(f"the project is busy: another milestone command has held "
                           f"the database for over {limit:g}s",
                           hint="retry, or raise MILESTONE_LOCK_TIMEOUT") from None
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(fsutil.lock_timeout() * 1000)}")
        self._in_txn = True
        self._keeping = {}
        self._dirty = False
        try:
            yield
        except BaseException:
            self._in_txn = False
            conn.execute("ROLLBACK")
            raise
        self._in_txn = False
        try:
            if self._dirty:
                fsutil.fault("db-commit")
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise StorageError(f"cannot write {self.db_path}: {exc}",
                               hint="check free space and permissions") from None
        self._keep(self._keeping)

    KEEP = 64  # milestones whose snapshots a store object keeps (see _kept)
    KEEP_READ = 8  # a read of at most this many milestones keeps them

    def _keep(self, written: Mapping[str, tuple[tuple[int, str], Snapshot] | None]) -> None:
        for mid, entry in written.items():
            self._kept.pop(mid, None)
            if entry is not None:
                self._kept[mid] = entry
        while len(self._kept) > self.KEEP:
            del self._kept[next(iter(self._kept))]

    def _last_events(self, conn: sqlite3.Connection, mids: Iterable[str]
                     ) -> dict[str, tuple[int, str]]:
        """Each milestone's last event (id, hash): a seek in idx_event_milestone."""
        out = {}
        for mid in mids:
            row = conn.execute("SELECT event_id, hash FROM events WHERE milestone_id = ? "
                               "ORDER BY event_id DESC LIMIT 1", (mid,)).fetchone()
            if row is not None:
                out[mid] = (int(row[0]), str(row[1]))
        return out

    def lock(self, timeout: float | None = None) -> AbstractContextManager[None]:
        return self._transaction(timeout)

    def in_write(self) -> bool:
        """Inside this object's write transaction (``lock``)?"""
        return self._in_txn

    @contextlib.contextmanager
    def _try(self) -> Iterator[bool]:
        try:
            with self._transaction(0.0):
                yield True
        except Conflict:
            yield False

    def try_lock(self) -> AbstractContextManager[bool]:
        return self._try()

    def recover(self) -> list[str]:
        return []  # SQLite's journal already finished or undid any interrupted write

    def scan_edits(self) -> list[Edit]:
        return []  # nobody edits the database by hand

    def needs_sync(self) -> bool:
        return False

    # ------------------------------------------------------------- reading

    def _meta(self, conn: sqlite3.Connection) -> dict[str, str]:
        return {k: v for k, v in conn.execute("SELECT key, value FROM meta")}

    def load(self) -> State:
        conn = self.connect()
        with self._read(conn):
            meta = self._meta(conn)
            tasks: dict[str, list[Any]] = {}
            for mid, data in conn.execute(
                    "SELECT milestone_id, data FROM tasks ORDER BY milestone_id, position"):
                tasks.setdefault(mid, []).append(self._row(data, "tasks", mid))
            milestones: dict[str, Snapshot] = {}
            for mid, data in conn.execute("SELECT id, data FROM milestones"):
                snap = self._row(data, "milestones", mid)
                snap["tasks"] = tasks.get(mid, [])
                milestones[mid] = snap
        return State(milestones=milestones, current=meta.get("current") or None,
                     max_number=int(meta.get("max_number", 0)),
                     last_event_id=int(meta.get("last_event_id", 0)),
                     last_hash=meta.get("last_hash", ev.GENESIS_HASH))

    def _row(self, data: Any, table: str, mid: str) -> dict[str, Any]:
        """A row's JSON object; a row changed by something else is a StorageError."""
        try:
            obj = loads(data)
        except (TypeError, ValueError):
            obj = None
        if not isinstance(obj, dict):
            raise StorageError(f"{self.db_path}: the {table} row of {mid} is not a JSON object "
                               "(changed outside milestone)",
                               hint="run `milestone doctor`; restore a backup")
        return obj

    @contextlib.contextmanager
    def _read(self, conn: sqlite3.Connection) -> Iterator[None]:
        """A consistent snapshot for a multi-statement read (no-op inside a write)."""
        if self._in_txn or conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        try:
            yield
        finally:
            conn.execute("COMMIT")

    def head(self) -> tuple[int, str] | None:
        """Two meta rows, read in one statement (so from one committed state)."""
        meta = dict(self.connect().execute(
            "SELECT key, value FROM meta WHERE key IN ('last_event_id', 'last_hash')"))
        return int(meta.get("last_event_id", 0)), meta.get("last_hash", ev.GENESIS_HASH)

    def milestone_snapshot(self, mid: str) -> Snapshot | None:
        return self.snapshots([mid]).get(mid)

    def view(self) -> State:
        """The meta row's head and current milestone, and milestones read when asked."""
        conn = self.connect()
        meta = self._meta(conn)
        lazy: Any = LazyMilestones(self.snapshots, self.milestone_ids, self._all)
        return State(milestones=lazy,
                     current=meta.get("current") or None,
                     max_number=int(meta.get("max_number", 0)),
                     last_event_id=int(meta.get("last_event_id", 0)),
                     last_hash=meta.get("last_hash", ev.GENESIS_HASH))

    def _all(self) -> dict[str, Snapshot]:
        return self.load().milestones

    def reading(self) -> contextlib.AbstractContextManager[None]:
        return self._read(self.connect())

    def milestone_ids(self) -> list[str]:
        return [mid for (mid,) in self.connect().execute("SELECT id FROM milestones ORDER BY id")]

    def snapshots(self, mids: Sequence[str]) -> dict[str, Snapshot]:
        """The snapshots of ``mids`` (those that exist), in two indexed queries."""
        if not mids:
            return {}
        conn = self.connect()
        out: dict[str, Snapshot] = {}
        with self._read(conn):
            kept = [mid for mid in mids if mid in self._kept]
            if kept:
                last = self._last_events(conn, kept)
                for mid in kept:
                    at, snap = self._kept[mid]
                    if last.get(mid) == at:
                        out[mid] = snap
            want = [mid for mid in mids if mid not in out]
            if not want:
                return out
            marks = ", ".join("?" * len(want))
            read: dict[str, Snapshot] = {}
            for mid, data in conn.execute(
                    f"SELECT id, data FROM milestones WHERE id IN ({marks})", want):
                snap = self._row(data, "milestones", mid)
                snap["tasks"] = []
                read[mid] = snap
            for mid, data in conn.execute(
                    f"SELECT milestone_id, data FROM tasks WHERE milestone_id IN ({marks}) "
                    f"ORDER BY milestone_id, position", want):
                if mid in read:
                    read[mid]["tasks"].append(self._row(data, "tasks", mid))
            if read and len(read) <= self.KEEP_READ and not (self._in_txn and self._dirty):
                last = self._last_events(conn, read)
                self._keep({mid: (last[mid], snap) for mid, snap in read.items() if mid in last})
        out.update(read)
        return out


    def events(self, after: int = 0) -> Iterator[dict[str, Any]]:
        conn = self.connect()
        cursor = conn.execute("SELECT event_id, body FROM events WHERE event_id > ? "
                              "ORDER BY event_id", (after,))
        for event_id, body in cursor:
            yield self._row(body, "events", f"event #{event_id}")

    def events_tail(self, limit: int, keep: Callable[[dict[str, Any]], bool], after: int = 0,
                    *, types: Sequence[str] = (), milestone: str | None = None,
                    actor: str | None = None) -> list[dict[str, Any]]:
        """The last ``limit`` events with id > ``after`` that ``keep`` accepts, oldest
        first: read newest first, a page at a time, stopping once there are enough
        (``log --limit``, the dashboard's recent failures: not the whole log). The
        filters ``keep`` applies that the rows have columns for (``types``,
        ``milestone``, ``actor``) are asked of the index too: a type that never
        happened reads no event."""
        if limit <= 0:
            return []
        conn = self.connect()
        found: list[dict[str, Any]] = []
        where = ["event_id > ?", "event_id < ?"]
        args: list[Any] = [after, 0]
        if types:
            where.append(f"event_type IN ({', '.join('?' * len(types))})")
            args += list(types)
        for column, value in (("milestone_id", milestone), ("actor", actor)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = (f"SELECT event_id, body FROM events WHERE {' AND '.join(where)} "
               "ORDER BY event_id DESC LIMIT ?")
        below, page = 1 << 62, max(2 * limit, 256)
        with self._read(conn):
            while len(found) < limit:
                args[1] = below
                rows = conn.execute(sql, (*args, page)).fetchall()
                for event_id, body in rows:
                    event = self._row(body, "events", f"event #{event_id}")
                    if keep(event):
                        found.append(event)
                        if len(found) == limit:
                            break
                if len(rows) < page:
                    break
                below, page = rows[-1][0], min(page * 4, 65536)
        found.reverse()
        return found


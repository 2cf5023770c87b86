"""The database backends' queries and helpers: ``QueryCache`` (``database/cache.db``,
results keyed by the log head), ``milestone_query_sql`` (a ``MilestoneQuery`` as
parameterized SQL), the canonical JSON of rows and the refusal of linked files.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any, Protocol

from ..errors import MilestoneError
from . import fsutil
from .base import MilestoneQuery


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# Rows decoded by ``json`` before orjson is imported: orjson decodes a row several times
# faster, but importing it (with ``dataclasses`` and ``inspect``) costs more than a few
# hundred rows take. A read of the whole plan decodes a row per task and switches.
JSON_ROWS = 300
LARGE = 100_000  # characters: see loads_large
LARGE_VALUES = 2_000  # see dumps_large
_json_rows = JSON_ROWS
_orjson: Any = None
# 19 digits in a row, found by a substring search once every digit reads "0" (bytes'
# translate and ``in`` run in C: a regex over every digit cost twice orjson's decoding).
_ZEROED = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def loads(text: str | bytes) -> Any:
    """A row's JSON: by ``json`` for the first JSON_ROWS rows of a process, then by
    orjson; what orjson refuses (NaN, a lone surrogate) by ``json``, which raises the
    errors the callers expect. A row with 19 digits in a row goes to ``json`` too:
    orjson reads an integer beyond 64 bits as a float."""
    global _json_rows, _orjson
    if _orjson is None:
        if _json_rows > 0:
            _json_rows -= 1
            return json.loads(text)
        import orjson

        _orjson = orjson
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if _LONG_NUMBER in data.translate(_ZEROED):  # UTF-8 keeps ASCII digits as they are
        return json.loads(text)
    try:
        return _orjson.loads(data)
    except _orjson.JSONDecodeError:
        return json.loads(text)


def loads_large(text: str | bytes) -> Any:
    """``loads``, by orjson from the start for a text of more than ``LARGE`` characters (a
    cached view of thousands of rows: ``json`` takes several times as long to decode it
    as importing orjson takes)."""
    global _json_rows
    if len(text) > LARGE:
        _json_rows = 0
    return loads(text)


def dumps_large(obj: Any) -> str:
    """``dumps``' text, written by orjson when ``obj`` holds LARGE_VALUES values or more
    (a cached view of thousands of rows: ``json`` takes a quarter of a second at 10,000
    rows); what orjson does not take goes to ``dumps``."""
    budget, stack = LARGE_VALUES, [obj]
    while stack and budget > 0:  # counted until the budget is spent (as ui.jsontext)
        budget -= 1
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    if budget > 0:
        return dumps(obj)
    import orjson

    try:
        return orjson.dumps(obj).decode("utf-8")
    except TypeError:  # an integer beyond 64 bits, a key that is not a string
        return dumps(obj)


class Connection(Protocol):
    """What the shared SQL needs of a connection: sqlite3's, or ``pgconn.PgConnection``."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...


class Dialect:
    """What SQLite and PostgreSQL spell differently in the SQL the database backends
    share (``sqlready``, ``sqlite_index``, ``sqlite``): the rest is written once, in
    the SQL both accept, with ``?`` placeholders (the PostgreSQL connection turns them
    into its own). A connection without a ``dialect`` attribute is SQLite's."""

    name = "sqlite"

    def json_field(self, column: str, *keys: str) -> str:
        """A key path of a JSON text column, as JSON text (NULL when it is absent)."""
        return f"json_extract({column}, '$.{'.'.join(keys)}')"

    def byte_length(self, column: str) -> str:
        return f"length(CAST({column} AS BLOB))"

    # A query's tail that locks the rows of ``tasks`` (as ``t``) it returns, passing
    # over those another transaction holds: none on SQLite, whose one writer holds
    # every row.
    skip_locked = ""


class PostgresDialect(Dialect):
    name = "postgres"

    def json_field(self, column: str, *keys: str) -> str:
        return f"(({column})::jsonb #> '{{{','.join(keys)}}}')::text"

    def byte_length(self, column: str) -> str:
        return f"octet_length({column})"

    skip_locked = " FOR UPDATE OF t SKIP LOCKED"


SQLITE = Dialect()


def dialect_of(conn: Any) -> Dialect:
    """The SQL dialect of a connection (SQLite's unless it names another)."""
    return getattr(conn, "dialect", SQLITE)


def refuse_db_links(path: Path) -> None:
    """SQLite follows links: refuse one at the database or its side files (and their
    folders) inside ``.milestones/``, as ``fsutil`` does for every other file."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        fsutil.refuse_links(path.with_name(path.name + suffix))


def _decoded(text: Any) -> tuple[Any] | None:
    """A cached value, in a 1-tuple (None is a value); None when it does not decode: the
    cache is derived, so a damaged entry is a miss, never an error."""
    try:
        return (loads_large(text),)
    except (TypeError, ValueError, RecursionError):
        return None


class QueryCache:
    """``database/cache.db``: query results keyed by the event log head, so an entry
    computed before the last change is never served after it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hits = 0
        self.misses = 0
        self._conn: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection | None:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                refuse_db_links(self.path)
                # One thread at a time, not always the same (milestone execute's writer).
                self._conn = sqlite3.connect(self.path, timeout=1.0, isolation_level=None,
                                             check_same_thread=False)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, "
                                   "head TEXT NOT NULL, value TEXT NOT NULL)")
            except (sqlite3.Error, OSError, MilestoneError):
                return None  # a cache that cannot open is a cache that misses
        return self._conn

    def get(self, key: str, head: str) -> Any:
        db = self._db()
        row = None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                row = db.execute("SELECT value FROM cache WHERE key = ? AND head = ?",
                                 (key, head)).fetchone()
        value = _decoded(row[0]) if row is not None else None
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return value[0]

    def peek(self, key: str) -> tuple[str, Any] | None:
        """The entry for ``key`` at whatever head it was computed (None when there is none)."""
        db = self._db()
        row = None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                row = db.execute("SELECT head, value FROM cache WHERE key = ?", (key,)).fetchone()
        value = _decoded(row[1]) if row is not None else None
        if row is None or value is None:
            self.misses += 1
            return None
        self.hits += 1
        return str(row[0]), value[0]

    def clear(self) -> None:
        """Drop every entry (what they were computed from was rebuilt)."""
        db = self._db()
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("DELETE FROM cache")

    def put(self, key: str, head: str, value: Any) -> None:
        db = self._db()
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.execute("INSERT INTO cache (key, head, value) VALUES (?, ?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET head = excluded.head, "
                           "value = excluded.value", (key, head, dumps_large(value)))


def milestone_query_sql(q: MilestoneQuery) -> tuple[str, list[Any]]:
    """A parameterized SELECT of milestone ids for ``q`` (every filter uses an index)."""
    where: list[str] = []
    args: list[Any] = []
    if q.statuses:
        where.append(f"status IN ({', '.join('?' * len(q.statuses))})")
        args += list(q.statuses)
    elif not q.include_archived:
        where.append("status IN ('planned', 'in_progress', 'blocked', 'completed', "
                     "'cancelled')")
    if q.priorities:
        where.append(f"priority IN ({', '.join('?' * len(q.priorities))})")
        args += list(q.priorities)
    if q.owner:
        where.append("owner = ?")
        args.append(q.owner)
    if q.tags:
        where.append(f"id IN (SELECT milestone_id FROM milestone_tags WHERE tag IN "
                     f"({', '.join('?' * len(q.tags))}))")
        args += list(q.tags)
    if q.overdue_before:
        where.append("due_date < ? AND status IN ('planned', 'in_progress', 'blocked')")
        args.append(q.overdue_before)
    if q.after is not None:
        where.append("id > ?")
        args.append(q.after)
    sql = "SELECT id FROM milestones"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id"
    if q.limit is not None:
        sql += " LIMIT ?"
        args.append(q.limit)
    return sql, args



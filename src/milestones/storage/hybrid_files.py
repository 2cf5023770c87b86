"""The hybrid index's copy of the state's file entries, for hand-edit detection
without the snapshots.

``logs/state.json`` names a checkpoint and the bytes of its journal it covers; together
they hold every milestone's entry: its snapshot, and its file's path, size, mtime and
hash, which tell a hand edit from the tool's own write. Reading them means parsing
every snapshot (hundreds of MB at 100,000 tasks), so the hybrid backend keeps the
file part of each entry in ``database/index.db`` too (table ``files``), with the state
point they are the entries of (meta ``files_point``: ``<token>:<journal bytes>``; any
state write that changes an entry moves it). A read then needs only the head (a few
hundred bytes), the index's rows of the files and a stat of each file. When the point
does not match (an older version's index, a write whose index update failed), the
read takes the whole state, as the file backend does, and the index is brought back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

FILES_TABLE = ("CREATE TABLE IF NOT EXISTS files (milestone_id TEXT PRIMARY KEY, "
               "path TEXT NOT NULL, size INTEGER, mtime_ns INTEGER, sha256 TEXT)")


def point_key(point: Mapping[str, Any] | None) -> str:
    """The state point (a checkpoint and the journal bytes its head covers) as text;
    '' when the state has none yet (an older version's state.json, a rebuilt state)."""
    if not point:
        return ""
    return f"{point['token']}:{point['journal']}"


def ensure(conn: sqlite3.Connection) -> None:
    conn.execute(FILES_TABLE)


def _row(mid: str, entry: Mapping[str, Any]) -> tuple[Any, ...]:
    return (mid, entry["path"], entry.get("size"), entry.get("mtime_ns"), entry.get("sha256"))


def fill(conn: sqlite3.Connection, entries: Mapping[str, Any], point: str) -> None:
    """Every entry's file part, and the point they are of (in the caller's transaction)."""
    ensure(conn)
    conn.execute("DELETE FROM files")
    conn.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?)",
                     [_row(mid, e) for mid, e in entries.items()])
    set_point(conn, point)


def update(conn: sqlite3.Connection, entries: Mapping[str, Any], changed: Iterable[str],
           was: str, point: str) -> bool:
    """The entries of ``changed`` (gone from ``entries``: removed), when the table holds
    the entries of point ``was``; False (nothing written) when it does not."""
    if current_point(conn) != was or not was:
        return False
    for mid in changed:
        entry = entries.get(mid)
        if entry is None:
            conn.execute("DELETE FROM files WHERE milestone_id = ?", (mid,))
        else:
            conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", _row(mid, entry))
    set_point(conn, point)
    return True


def set_point(conn: sqlite3.Connection, point: str) -> None:
    conn.execute("INSERT INTO meta (key, value) VALUES ('files_point', ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (point,))


def current_point(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = 'files_point'").fetchone()
    return str(row[0]) if row else ""


def add(conn: sqlite3.Connection, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """Entries of files an import wrote (into an emptied table)."""
    conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                     [_row(mid, e) for mid, e in rows])


def at(conn: sqlite3.Connection, head: Mapping[str, Any], want: str) -> bool:
    """Does the index hold the state of ``head`` (a state.json head) at point ``want``:
    its snapshots (the log head) and its file entries?"""
    meta = dict(conn.execute("SELECT key, value FROM meta WHERE key IN "
                             "('last_event_id', 'last_hash', 'files_point')"))
    return bool(want) and meta.get("files_point") == want and meta.get("last_hash") == \
        head["applied_hash"] and meta.get("last_event_id") == str(head["applied_event_id"])


def known(conn: sqlite3.Connection) -> set[tuple[str, Any, Any]]:
    """(path, size, mtime_ns) of every milestone file as the state records it."""
    return set(conn.execute("SELECT path, size, mtime_ns FROM files"))

"""The database backend: ``database/milestones.db`` (SQLite) is the source of truth.

Milestones, tasks and dependencies are rows (each row also keeps its canonical
JSON, so a snapshot comes back exactly); events live in a table with the same
hash chain as the JSONL log. The writer lock is SQLite's own: ``lock()`` opens a
``BEGIN IMMEDIATE`` transaction that ``commit`` writes into and that commits when
the lock is released (or rolls back on an error), so the events and the
snapshots change together or not at all. WAL mode lets readers go on while a
writer works. Every query is parameterized.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..model import events as ev
from . import fsutil, sqlready
from .base import MilestoneQuery, Snapshot, State
from .sqlite_base import MIGRATIONS, SCHEMA_VERSION
from .sqlite_index import DatabaseIndex
from .sqlquery import QueryCache, dialect_of, dumps, milestone_query_sql, refuse_db_links

_TASK_DEPS = "INSERT INTO task_deps VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"


def _insert_events(conn: sqlite3.Connection, events: Sequence[dict[str, Any]]) -> None:
    conn.executemany(
        "INSERT INTO events (event_id, milestone_id, event_type, timestamp, actor, "
        "session_id, prev_hash, hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(e["event_id"], e.get("milestone_id"), e["event_type"], e["timestamp"],
          e.get("actor"), e.get("session_id"), e["prev_hash"], e["hash"],
          ev.canonical(e)) for e in events])


def copy_database(src: Path, dest: Path) -> None:
    """A consistent copy of a database through SQLite's online backup API, from a
    connection of our own: the one holding the writer lock cannot be the source."""
    source = sqlite3.connect(src)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


class DatabaseStore(DatabaseIndex):
    """The database backend: its writes, records, queries, migration and backup here;
    the connection, lock and reading in ``sqlite_base``, the query cache in ``sqlquery``."""

    flushes = True  # commit writes into the lock's transaction: it ends with the write

    # ------------------------------------------------------------- writing

    def commit(self, events: Sequence[dict[str, Any]],
               adopt: Sequence[str] = ()) -> list[dict[str, Any]]:
        conn = self.connect()
        with self._transaction(None):
            meta = self._meta(conn)
            last_id = int(meta.get("last_event_id", 0))
            last_hash = meta.get("last_hash", ev.GENESIS_HASH)
            current = meta.get("current") or None
            max_number = int(meta.get("max_number", 0))
            sealed = []
            for e in events:
                last_id += 1
                sealed.append(ev.seal(json.loads(ev.canonical(e)), last_id, last_hash))
                last_hash = sealed[-1]["hash"]
            last_event = {e["milestone_id"]: (e["event_id"], e["hash"])
                          for e in sealed if e.get("milestone_id")}
            # Read before the events go in (while the snapshots kept are still current).
            was = self.snapshots([mid for mid, data in (
                (e.get("milestone_id"), e.get("data") or {}) for e in sealed)
                if mid and any(k in data for k in ev.PATCH_KEYS)])
            fsutil.fault("db-insert")
            _insert_events(conn, sealed)
            self._dirty = True
            working: dict[str, Snapshot | None] = {}  # milestones this commit changed
            for e in sealed:
                data = e.get("data") or {}
                mid = e.get("milestone_id")
                if "current" in data:
                    current = data["current"]
                if mid and any(k in data for k in ev.PATCH_KEYS):
                    before = working[mid] if mid in working else was.get(mid)
                    after = ev.apply(before, data)
                    working[mid] = after
                    if after is None:
                        self.drop_milestone(conn, mid, before)
                        if current == mid:
                            current = None
                    else:
                        self.write_milestone(conn, before, after)
                        max_number = max(max_number, int(mid.rsplit("-", 1)[1]))
            for after in working.values():
                if after is not None:
                    self._check_size(conn, after)
            self.set_meta(conn, {"last_event_id": str(last_id), "last_hash": last_hash,
                                  "current": current or "", "max_number": str(max_number)})
            for mid in last_event:  # kept once the transaction commits
                after = working.get(mid)
                self._keeping[mid] = (last_event[mid], after) if after is not None else None
        return sealed

    def _check_size(self, conn: sqlite3.Connection, snap: Snapshot) -> None:
        """Refuse a milestone too big for its YAML file to be read back (a migration to
        the file backend, an export): the rows' length first, the YAML when it is near."""
        from . import yamlio

        mid = snap["id"]
        size_of = dialect_of(conn).byte_length("data")
        (size,) = conn.execute(  # bytes of JSON: YAML's escapes make it at most ~2.5x
            f"SELECT coalesce((SELECT {size_of} FROM milestones WHERE id = ?), 0) + "
            f"coalesce((SELECT sum({size_of}) FROM tasks WHERE milestone_id = ?), 0)",
            (mid, mid)).fetchone()
        if int(size or 0) > yamlio.MAX_FILE_BYTES // 4:
            yamlio.check_writable(len(yamlio.dump_fast(snap).encode("utf-8")),
                                  f"milestone {mid} (as YAML)")

    def set_meta(self, conn: sqlite3.Connection, values: dict[str, str]) -> None:
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         list(values.items()))

    def drop_milestone(self, conn: sqlite3.Connection, mid: str,
                       before: Snapshot | None) -> None:
        """Delete a milestone's rows (its tasks go with them) and bring the ready flags
        and chains its tasks reached up to date."""
        conn.execute("DELETE FROM milestones WHERE id = ?", (mid,))
        sqlready.after_write(conn, mid, before, None)

    def write_milestone(self, conn: sqlite3.Connection, before: Snapshot | None,
                         after: Snapshot) -> None:
        """Upsert the milestone row and only the task rows that changed (and the
        ``chain`` of the tasks the change reaches, ``storage.sqlready``)."""
        mid = after["id"]
        head = {k: v for k, v in after.items() if k != "tasks"}
        conn.execute(
            "INSERT INTO milestones (id, number, title, status, priority, owner, category, "
            "start_date, due_date, updated_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET title = excluded.title, status = excluded.status, "
            "priority = excluded.priority, owner = excluded.owner, "
            "category = excluded.category, start_date = excluded.start_date, "
            "due_date = excluded.due_date, updated_at = excluded.updated_at, "
            "data = excluded.data",
            (mid, int(mid.rsplit("-", 1)[1]), after["title"], after["status"],
             after["priority"], after.get("owner"), after.get("category"),
             after.get("start_date"), after.get("due_date"), after.get("updated_at"),
             dumps(head)))
        old_head = {k: v for k, v in (before or {}).items() if k != "tasks"}
        if before is None or old_head.get("tags") != head.get("tags"):
            conn.execute("DELETE FROM milestone_tags WHERE milestone_id = ?", (mid,))
            conn.executemany("INSERT INTO milestone_tags VALUES (?, ?) ON CONFLICT DO NOTHING",
                             [(mid, t) for t in head.get("tags") or []])
        if before is None or old_head.get("depends_on") != head.get("depends_on"):
            conn.execute("DELETE FROM milestone_deps WHERE milestone_id = ?", (mid,))
            conn.executemany("INSERT INTO milestone_deps VALUES (?, ?) ON CONFLICT DO NOTHING",
                             [(mid, d) for d in head.get("depends_on") or []])
        old_tasks = {t["id"]: (i, t) for i, t in enumerate((before or {}).get("tasks", []))}
        new_ids = {t["id"] for t in after.get("tasks", [])}
        for tid in old_tasks.keys() - new_ids:
            conn.execute("DELETE FROM tasks WHERE milestone_id = ? AND id = ?", (mid, tid))
        for pos, t in enumerate(after.get("tasks", [])):
            old = old_tasks.get(t["id"])
            if old is not None and old == (pos, t):
                continue
            conn.execute(
                "INSERT INTO tasks (milestone_id, id, position, title, status, assignee, "
                "estimate, progress, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(milestone_id, id) DO UPDATE SET position = excluded.position, "
                "title = excluded.title, status = excluded.status, "
                "assignee = excluded.assignee, estimate = excluded.estimate, "
                "progress = excluded.progress, data = excluded.data",
                (mid, t["id"], pos, t["title"], t["status"], t.get("assignee"),
                 t.get("estimate"), t.get("progress") or 0, dumps(t)))
            if old is None or old[1].get("depends_on") != t.get("depends_on"):
                conn.execute("DELETE FROM task_deps WHERE milestone_id = ? AND task_id = ?",
                             (mid, t["id"]))
                rows = []
                for d in t.get("depends_on") or []:
                    dmid, dtid = d.split("/", 1) if "/" in d else (mid, d)
                    rows.append((mid, t["id"], dmid, dtid))
                conn.executemany(_TASK_DEPS, rows)
        sqlready.after_write(conn, mid, before, after)

    def _insert_many(self, conn: sqlite3.Connection, snaps: Iterable[Snapshot]) -> None:
        """The rows of many new milestones, a statement per table (an import): what
        ``write_milestone(conn, None, snap)`` writes for each."""
        milestones, tags, deps, tasks, task_deps = [], [], [], [], []
        for after in snaps:
            mid = after["id"]
            head = {k: v for k, v in after.items() if k != "tasks"}
            milestones.append((mid, int(mid.rsplit("-", 1)[1]), after["title"], after["status"],
                               after["priority"], after.get("owner"), after.get("category"),
                               after.get("start_date"), after.get("due_date"),
                               after.get("updated_at"), dumps(head)))
            tags += [(mid, t) for t in head.get("tags") or []]
            deps += [(mid, d) for d in head.get("depends_on") or []]
            for pos, t in enumerate(after.get("tasks", [])):
                tasks.append((mid, t["id"], pos, t["title"], t["status"], t.get("assignee"),
                              t.get("estimate"), t.get("progress") or 0, dumps(t)))
                for d in t.get("depends_on") or []:
                    dmid, dtid = d.split("/", 1) if "/" in d else (mid, d)
                    task_deps.append((mid, t["id"], dmid, dtid))
        conn.executemany(
            "INSERT INTO milestones (id, number, title, status, priority, owner, category, "
            "start_date, due_date, updated_at, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            milestones)
        conn.executemany("INSERT INTO milestone_tags VALUES (?, ?) ON CONFLICT DO NOTHING", tags)
        conn.executemany("INSERT INTO milestone_deps VALUES (?, ?) ON CONFLICT DO NOTHING", deps)
        conn.executemany(
            "INSERT INTO tasks (milestone_id, id, position, title, status, assignee, "
            "estimate, progress, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(milestone_id, id) DO UPDATE SET position = excluded.position, "
            "title = excluded.title, status = excluded.status, "
            "assignee = excluded.assignee, estimate = excluded.estimate, "
            "progress = excluded.progress, data = excluded.data", tasks)
        conn.executemany(_TASK_DEPS, task_deps)

    # --------------------------------------------------------------- resume

    def read_resume(self) -> dict[str, Any]:
        row = self.connect().execute("SELECT data FROM resume WHERE id = 1").fetchone()
        if row is None:
            return {}
        try:  # derived, rewritten after every change, as logs/session-resume.json is
            data = fsutil.loads_json(row[0])
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def write_resume(self, record: dict[str, Any]) -> None:
        conn = self.connect()
        with self._transaction(None):
            conn.execute("INSERT INTO resume (id, data) VALUES (1, ?) "
                         "ON CONFLICT(id) DO UPDATE SET data = excluded.data", (dumps(record),))

    def read_record(self, name: str) -> dict[str, Any]:
        """The record; {} when there is none. A damaged one is a StorageError naming
        it (see ``base.decode_record``), never an empty default."""
        from .base import decode_record

        row = self.connect().execute("SELECT data FROM records WHERE name = ?",
                                     (name,)).fetchone()
        if row is None:
            return {}
        return decode_record(row[0], f"the `{name}` record in {self.db_path}")

    def write_record(self, name: str, data: dict[str, Any]) -> None:
        conn = self.connect()
        with self._transaction(None):
            conn.execute("INSERT INTO records (name, data) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET data = excluded.data",
                         (name, dumps(data)))

    def set_aside_record(self, name: str, suffix: str) -> str | None:
        """Keep a (damaged) record as ``<name>.<suffix>`` in the records table; where it
        went, or None when there was none."""
        conn = self.connect()
        with self._transaction(None):
            moved = conn.execute("UPDATE records SET name = ? WHERE name = ?",
                                 (f"{name}.{suffix}", name)).rowcount
        return f"the `{name}.{suffix}` record in {self.db_path}" if moved else None

    # -------------------------------------------------------------- queries

    def query_milestones(self, q: MilestoneQuery) -> Iterator[Snapshot] | None:
        """The milestones matching ``q``, found through the indexes and read 500 at a
        time as they are iterated (a list of 10,000 holds one batch of snapshots)."""
        sql, args = milestone_query_sql(q)
        ids = [mid for (mid,) in self.connect().execute(sql, args)]
        return self._in_batches(ids)

    def _in_batches(self, ids: list[str]) -> Iterator[Snapshot]:
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            found = self.snapshots(chunk)
            yield from (found[mid] for mid in chunk if mid in found)

    def cache_get(self, key: str, head: str) -> Any:
        return self._cache().get(key, head)

    def cache_put(self, key: str, head: str, value: Any) -> None:
        self._cache().put(key, head, value)

    def cache_peek(self, key: str) -> tuple[str, Any] | None:
        return self._cache().peek(key)

    def _cache(self) -> QueryCache:
        if self.cache is None:
            self.cache = QueryCache(self.root / "database" / "cache.db")
        return self.cache

    # ------------------------------------------------------------ migration

    def sources(self) -> dict[str, str]:
        return {mid: text for mid, text in self.connect().execute(
            "SELECT milestone_id, text FROM sources")}

    def import_data(self, events: Sequence[dict[str, Any]], state: State,
                    resume: dict[str, Any], sources: dict[str, str]) -> None:
        self.initialize()
        with self._transaction(None):  # one transaction: readers see the old rows or the new
            self.import_begin()
            self.import_events(events)
            self.import_snapshots(state.milestones.values(), sources)
            self.import_end(state, resume)

    def data_files(self) -> list[Path]:
        """The database file and its WAL files, those that exist."""
        return [p for p in (Path(f"{self.db_path}{s}") for s in ("", "-wal", "-shm"))
                if p.exists()]

    def discard(self) -> None:
        """Remove this backend's data (a failed migration's half-made copy)."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.db_path}{suffix}").unlink()

    # -------------------------------------------------------- backup/restore

    def backup(self, dest: Path) -> Path:
        """A consistent copy through SQLite's online backup API (never a file copy)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        copy_database(self.db_path, dest)
        return dest

    def restore(self, src: Path) -> None:
        self.close()
        copy_database(Path(src), self.db_path)

    # ---------------------------------------------- migration, in batches

    def import_begin(self) -> None:
        """Empty the tables an import fills (after ``initialize``)."""
        conn = self.connect()
        self._kept.clear()
        with self._transaction(None):
            for table in ("events", "sources", "task_deps", "tasks", "milestone_deps",
                          "milestone_tags", "milestones", "meta", "resume"):
                conn.execute(f"DELETE FROM {table}")

    def import_events(self, events: Sequence[dict[str, Any]]) -> None:
        with self._transaction(None):
            _insert_events(self.connect(), events)

    def import_snapshots(self, snaps: Iterable[Snapshot], sources: dict[str, str]) -> None:
        """New milestones' rows and YAML texts (``sources`` of other milestones ignored)."""
        snaps = list(snaps)
        with self._transaction(None):
            conn = self.connect()
            self._insert_many(conn, snaps)
            conn.executemany("INSERT INTO sources (milestone_id, text) VALUES (?, ?)",
                             [(s["id"], sources[s["id"]]) for s in snaps if s["id"] in sources])

    def import_end(self, head: State, resume: dict[str, Any]) -> None:
        """Every task's ready flag and chain (once every row is in), the log head and
        current milestone, and the resume record: written last."""
        with self._transaction(None):
            conn = self.connect()
            sqlready.mark_all(conn)
            self.set_meta(conn, {"last_event_id": str(head.last_event_id),
                                  "last_hash": head.last_hash, "current": head.current or "",
                                  "max_number": str(head.max_number)})
            if resume:
                conn.execute("INSERT INTO resume (id, data) VALUES (1, ?)", (dumps(resume),))

    def import_stream(self, events: Iterable[Sequence[dict[str, Any]]],
                      snapshots: Iterable[Sequence[Snapshot]], head: State,
                      resume: dict[str, Any],
                      sources: Callable[[Sequence[str]], dict[str, str]]) -> None:
        """Each batch in a transaction of its own: nothing reads this database before a
        migration switches to it, and a failed one is removed whole."""
        self.initialize()
        self.bulk(True)
        self.import_begin()
        for batch in events:
            self.import_events(batch)
        for snaps in snapshots:
            self.import_snapshots(snaps, sources([s["id"] for s in snaps]))
        self.bulk(False)
        self.import_end(head, resume)
        self.settle()

    def settle(self) -> None:
        """After an import: the database file whole on disk (a checkpoint)."""
        self.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def bulk(self, on: bool) -> None:
        """Batches of an import need not reach the disk one by one (a crash leaves a copy
        that is discarded, or an index that is rebuilt): ``bulk(True)`` before them,
        ``bulk(False)`` before the last transaction, whose commit and a checkpoint after
        it (which syncs the database file whole) make them all durable."""
        mode = "OFF" if on else ("NORMAL" if self.derived else "FULL")
        self.connect().execute(f"PRAGMA synchronous={mode}")

    def snapshot_batches(self, size: int) -> Iterator[list[Snapshot]]:
        """Every milestone by id, a page of ``size`` at a time (two range queries a page)."""
        conn = self.connect()
        last = ""
        while True:
            with self._read(conn):
                rows = conn.execute("SELECT id, data FROM milestones WHERE id > ? ORDER BY id "
                                    "LIMIT ?", (last, size)).fetchall()
                if not rows:
                    return
                page: dict[str, Snapshot] = {}
                for mid, data in rows:
                    page[mid] = self._row(data, "milestones", mid)
                    page[mid]["tasks"] = []
                for mid, data in conn.execute(
                        "SELECT milestone_id, data FROM tasks WHERE milestone_id > ? AND "
                        "milestone_id <= ? ORDER BY milestone_id, position",
                        (last, rows[-1][0])):
                    if mid in page:
                        page[mid]["tasks"].append(self._row(data, "tasks", mid))
            yield list(page.values())
            last = rows[-1][0]

    def source_texts(self, mids: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        conn = self.connect()
        for start in range(0, len(mids), 500):
            chunk = list(mids[start:start + 500])
            marks = ", ".join("?" * len(chunk))
            out.update(conn.execute(f"SELECT milestone_id, text FROM sources WHERE milestone_id "
                                    f"IN ({marks})", chunk).fetchall())
        return out


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "DatabaseStore", "QueryCache", "copy_database",
           "milestone_query_sql", "refuse_db_links"]

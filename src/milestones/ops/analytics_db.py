"""``database/analytics.db``: the rollups ``milestone analytics`` reads, built from the
event log and never a source of truth.

Every task's life is folded out of the log's patches (``tasks_add``, ``tasks_set``,
``create``, ``delete``...): when it was added, first started, completed (and by whom),
its estimate, time spent and assignee, its open blocked interval; a milestone's tags;
each blocked interval; and per milestone and day how many tasks entered and left
``in_progress`` (work in progress over time). Only ids, times, statuses, numbers, tags
and actors are kept: no title, description, blocker reason or note, so nothing that
encryption at rest protects is copied out in plaintext.

``meta`` remembers the id and hash of the last event folded in. A run reads only the
events after it; when that event's hash no longer matches the log's (``encrypt
rotate`` re-chained it, a restore, a repair) or the log is shorter, the rollups are
rebuilt from the whole log. Deleting the file loses nothing: the next run rebuilds it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MilestoneError

if TYPE_CHECKING:
    from ..project import Project

DB_NAME = "analytics.db"
VERSION = "6"
DONE = ("done", "skipped")
TAIL_READ = 2000  # up to this many new events are read from the log's newest file only

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS milestones (
    mid TEXT PRIMARY KEY, tags TEXT NOT NULL DEFAULT '[]', deleted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS tasks (
    mid TEXT NOT NULL, tid TEXT NOT NULL, status TEXT, created REAL, started REAL,
    completed REAL, completer TEXT, estimate REAL, spent INTEGER NOT NULL DEFAULT 0,
    assignee TEXT, removed INTEGER NOT NULL DEFAULT 0,
    cycle REAL, lead REAL, ratio REAL, person TEXT, week TEXT,
    PRIMARY KEY (mid, tid));
CREATE INDEX IF NOT EXISTS tasks_week ON tasks (week, completed) WHERE week IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_week_in ON tasks (mid, week) WHERE week IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_open ON tasks (mid)
    WHERE removed = 0 AND status NOT IN ('done', 'skipped');
CREATE INDEX IF NOT EXISTS tasks_cycle ON tasks (cycle) WHERE cycle IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_cycle_in ON tasks (mid, cycle) WHERE cycle IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_lead ON tasks (lead) WHERE lead IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_lead_in ON tasks (mid, lead) WHERE lead IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_ratio ON tasks (ratio, estimate, spent) WHERE ratio IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_ratio_in ON tasks (mid, ratio) WHERE ratio IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_person ON tasks (person, ratio, estimate, spent)
    WHERE ratio IS NOT NULL;
CREATE TABLE IF NOT EXISTS milestone_tags (mid TEXT NOT NULL, tag TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS milestone_tags_mid ON milestone_tags (mid);
CREATE TABLE IF NOT EXISTS blocked (
    mid TEXT NOT NULL, tid TEXT NOT NULL, start REAL NOT NULL, end REAL);
CREATE TABLE IF NOT EXISTS task_tags (
    mid TEXT NOT NULL, tid TEXT NOT NULL, tag TEXT NOT NULL, ratio REAL NOT NULL,
    estimate REAL NOT NULL, spent INTEGER NOT NULL, completed REAL NOT NULL);
CREATE INDEX IF NOT EXISTS task_tags_mid ON task_tags (mid);
CREATE INDEX IF NOT EXISTS task_tags_tag ON task_tags (tag, ratio, estimate, spent);
CREATE INDEX IF NOT EXISTS blocked_open ON blocked (mid, tid, end);
CREATE INDEX IF NOT EXISTS blocked_still ON blocked (start) WHERE end IS NULL;
CREATE TABLE IF NOT EXISTS wip (
    mid TEXT NOT NULL, day TEXT NOT NULL, delta INTEGER NOT NULL, PRIMARY KEY (mid, day));
"""

TASK_COLS = ("status", "created", "started", "completed", "completer", "estimate", "spent",
             "assignee", "removed")


def seconds(stamp: Any) -> float | None:
    """An ISO UTC timestamp as seconds since the epoch (None if it is not one)."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def db_path(project: Project) -> Path | None:
    """Where the rollups live; None on a store with no folder of its own (memory)."""
    if getattr(project.store, "backend", "") == "memory":
        return None
    return Path(project.root) / "database" / DB_NAME


def connect(path: Path | None) -> sqlite3.Connection:
    """The rollups' database; in memory when it has no place or cannot be written. A
    file that is not a database (damaged) is removed and made again: it is derived.
    SQLite follows links: one planted at the file or a side file is refused (exit 4),
    as everywhere in .milestones/."""
    if path is not None:
        from ..storage import fsutil

        for suffix in ("", "-wal", "-shm", "-journal"):
            fsutil.refuse_links(Path(f"{path}{suffix}"))
    for attempt in (1, 2):
        if path is None:
            break
        conn = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            _outdated(conn)
            conn.executescript(SCHEMA)
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            if attempt == 2 or isinstance(exc, sqlite3.OperationalError):
                break  # read-only, locked for too long: this run works in memory
            remove(path)
        except OSError:
            if conn is not None:
                conn.close()
            break
    return memory()


def memory() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(SCHEMA)
    return conn


def remove(path: Path) -> None:
    """Delete the rollups' file (and its WAL): they are rebuilt from the log."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


TABLES = ("meta", "milestones", "milestone_tags", "tasks", "task_tags", "blocked", "wip")


def _outdated(conn: sqlite3.Connection) -> None:
    """Drop the rollups of another version (their tables may differ): rebuilt next."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    except sqlite3.OperationalError:
        return  # a new file
    if row is not None and row[0] != VERSION:
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


class Folder:
    """Folds events into the rollups: the tasks an event touches are read once, kept
    in memory until ``flush`` writes them back."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.tasks: dict[tuple[str, str], dict[str, Any]] = {}
        self.by_mid: dict[str, set[str]] = {}  # the task ids of ``tasks``, per milestone
        self.fresh: set[str] = set()  # milestones created here that had no task before
        self.milestones: dict[str, dict[str, Any]] = {}
        self.wip: dict[tuple[str, str], int] = {}
        # Blocked intervals begun (True) and ended (False), in the order of the events:
        # a task blocked and cleared within one second still closes what it opened.
        self.steps: list[tuple[bool, str, str, float]] = []
        self.last_id = 0
        self.last_hash = ""
        self.count = 0

    # ------------------------------------------------------------------ rows

    def task(self, mid: str, tid: str) -> dict[str, Any] | None:
        key = (mid, tid)
        row = self.tasks.get(key)
        if row is None and key not in self.tasks:
            got = self.conn.execute(
                f"SELECT {', '.join(TASK_COLS)} FROM tasks WHERE mid = ? AND tid = ?",
                key).fetchone()
            row = dict(zip(TASK_COLS, got, strict=True)) if got else None
            self.tasks[key] = row  # type: ignore[assignment]
        return row

    def milestone(self, mid: str) -> dict[str, Any]:
        row = self.milestones.get(mid)
        if row is None:
            got = self.conn.execute("SELECT tags, deleted FROM milestones WHERE mid = ?",
                                    (mid,)).fetchone()
            row = ({"tags": json.loads(got[0]), "deleted": got[1]} if got
                   else {"tags": [], "deleted": 0})
            self.milestones[mid] = row
        return row

    def milestone_tasks(self, mid: str) -> list[str]:
        ids = set(self.by_mid.get(mid, ()))
        ids.update(r[0] for r in self.conn.execute(
            "SELECT tid FROM tasks WHERE mid = ? AND removed = 0", (mid,)))
        return sorted(ids)

    # ----------------------------------------------------------- transitions

    def move(self, mid: str, tid: str, row: dict[str, Any], new: str | None, ts: float,
             actor: str) -> None:
        """``row``'s status becomes ``new`` at ``ts`` (None: the task is gone)."""
        old = row.get("status")
        if old == new:
            return
        day = day_of(ts)
        if old == "in_progress":
            self.wip[(mid, day)] = self.wip.get((mid, day), 0) - 1
        if new == "in_progress":
            self.wip[(mid, day)] = self.wip.get((mid, day), 0) + 1
            if row.get("started") is None:
                row["started"] = ts
        if old == "blocked":
            self.steps.append((False, mid, tid, ts))
        if new == "blocked":
            self.steps.append((True, mid, tid, ts))
        if new == "done":
            row["completed"], row["completer"] = ts, actor
        else:  # reopened, skipped or removed: not a completion (any more)
            row["completed"] = row["completer"] = None
        row["status"] = new

    def add_task(self, mid: str, t: Mapping[str, Any], ts: float, actor: str) -> None:
        tid = str(t.get("id"))
        old = None if mid in self.fresh else self.task(mid, tid)
        if old is not None and not old.get("removed"):
            self.move(mid, tid, old, None, ts, actor)
        row: dict[str, Any] = {"status": None, "created": ts, "started": None,
                               "completed": None, "completer": None, "estimate": None,
                               "spent": 0, "assignee": None, "removed": 0}
        self.tasks[(mid, tid)] = row
        self.by_mid.setdefault(mid, set()).add(tid)
        self.set_fields(row, t)
        self.move(mid, tid, row, str(t.get("status") or "todo"), ts, actor)
        if row["status"] in ("in_progress", "done"):  # added as started (an import)
            row["started"] = seconds(t.get("started_at")) or row["started"]
        if row["status"] == "done":
            row["completed"] = seconds(t.get("completed_at")) or ts

    @staticmethod
    def set_fields(row: dict[str, Any], change: Mapping[str, Any]) -> None:
        if "estimate" in change:
            est = change["estimate"]
            row["estimate"] = float(est) if isinstance(est, (int, float)) else None
        if "time_spent" in change:
            spent = change["time_spent"]
            row["spent"] = int(spent) if isinstance(spent, (int, float)) else 0
        if "assignee" in change:
            who = change["assignee"]
            row["assignee"] = who if isinstance(who, str) else None

    def remove_task(self, mid: str, tid: str, ts: float, actor: str) -> None:
        """The task is gone (removed, replaced, its milestone deleted): no longer in
        progress, blocked or open; a completion it had stays history."""
        row = self.task(mid, tid)
        if row is not None and not row.get("removed"):
            status, done = row.get("status"), (row.get("completed"), row.get("completer"))
            self.move(mid, tid, row, None, ts, actor)
            row["status"], row["removed"] = status, 1
            row["completed"], row["completer"] = done

    # ----------------------------------------------------------------- events

    def feed(self, e: Mapping[str, Any]) -> None:
        self.count += 1
        self.last_id = int(e.get("event_id") or self.last_id)
        self.last_hash = str(e.get("hash") or "")
        data = e.get("data")
        mid = e.get("milestone_id")
        if not isinstance(data, dict) or not isinstance(mid, str) or not data:
            return
        ts = seconds(e.get("timestamp"))
        if ts is None:
            return
        actor = str(e.get("actor") or "unknown")
        if "create" in data:
            created = data["create"] if isinstance(data["create"], dict) else {}
            had = self.milestone_tasks(mid)
            for tid in had:
                self.remove_task(mid, tid, ts, actor)
            if not had:
                self.fresh.add(mid)
            self.milestones[mid] = {"tags": _tags(created.get("tags")), "deleted": 0}
            for t in created.get("tasks") or ():
                if isinstance(t, dict):
                    self.add_task(mid, t, ts, actor)
            return
        if data.get("delete"):
            for tid in self.milestone_tasks(mid):
                self.remove_task(mid, tid, ts, actor)
            self.milestone(mid)["deleted"] = 1
            return
        fields = data.get("set")
        if isinstance(fields, dict) and "tags" in fields:
            self.milestone(mid)["tags"] = _tags(fields["tags"])
        tset = data.get("tasks_set")
        if isinstance(tset, dict):
            for tid, change in tset.items():
                row = self.task(mid, str(tid))
                if row is None or row.get("removed") or not isinstance(change, dict):
                    continue
                self.set_fields(row, change)
                if "status" in change and isinstance(change["status"], str):
                    self.move(mid, str(tid), row, change["status"], ts, actor)
        for tid in data.get("tasks_remove") or ():
            self.remove_task(mid, str(tid), ts, actor)
        for t in data.get("tasks_add") or ():
            if isinstance(t, dict):
                self.add_task(mid, t, ts, actor)

    # ------------------------------------------------------------------ write

    def flush(self) -> None:
        c = self.conn
        rows = [(mid, tid, *(row[k] for k in TASK_COLS), *derived(row))
                for (mid, tid), row in self.tasks.items() if row is not None]
        c.executemany(f"INSERT OR REPLACE INTO tasks (mid, tid, {', '.join(TASK_COLS)}, "
                      f"{', '.join(DERIVED)}) "
                      f"VALUES ({', '.join('?' * (len(TASK_COLS) + len(DERIVED) + 2))})", rows)
        c.executemany("INSERT OR REPLACE INTO milestones (mid, tags, deleted) VALUES (?, ?, ?)",
                      [(mid, json.dumps(r["tags"]), r["deleted"])
                       for mid, r in self.milestones.items()])
        c.executemany("DELETE FROM milestone_tags WHERE mid = ?",
                      [(mid,) for mid in self.milestones])
        c.executemany("INSERT INTO milestone_tags (mid, tag) VALUES (?, ?)",
                      [(mid, tag) for mid, r in self.milestones.items() for tag in r["tags"]])
        # Each scored task (estimate, time spent, done) once per tag of its milestone
        # ("(none)": untagged), for estimate accuracy per tag: rewritten per milestone
        # touched.
        touched = sorted({mid for mid, _tid in self.tasks} | set(self.milestones))
        c.executemany("DELETE FROM task_tags WHERE mid = ?", [(mid,) for mid in touched])
        c.executemany(
            "INSERT INTO task_tags SELECT t.mid, t.tid, COALESCE(g.tag, '(none)'), t.ratio, "
            "t.estimate, t.spent, t.completed FROM tasks t LEFT JOIN milestone_tags g "
            "ON g.mid = t.mid WHERE t.mid = ? AND t.ratio IS NOT NULL",
            [(mid,) for mid in touched])
        c.executemany("INSERT INTO wip (mid, day, delta) VALUES (?, ?, ?) ON CONFLICT "
                      "(mid, day) DO UPDATE SET delta = delta + excluded.delta",
                      [(mid, day, d) for (mid, day), d in self.wip.items()])
        for opening, mid, tid, ts in self.steps:
            if opening:
                c.execute("INSERT INTO blocked (mid, tid, start, end) VALUES (?, ?, ?, NULL)",
                          (mid, tid, ts))
            else:
                c.execute("UPDATE blocked SET end = ? WHERE mid = ? AND tid = ? AND end IS NULL",
                          (ts, mid, tid))


DERIVED = ("cycle", "lead", "ratio", "person", "week")  # what a report ranks, indexed


def derived(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """A done task's cycle and lead time (hours), time spent / estimate and person (the
    assignee, else who completed it); None for what it has not got."""
    done = row["completed"]
    if done is None:
        return None, None, None, None, None
    started, created, est, spent = row["started"], row["created"], row["estimate"], row["spent"]
    return ((done - started) / 3600.0 if started is not None and done >= started else None,
            (done - created) / 3600.0 if created is not None and done >= created else None,
            spent / 3600.0 / est if est and est > 0 and spent > 0 else None,
            row["assignee"] or row["completer"] or "unknown", monday(done))


def monday(ts: float) -> str:
    """The Monday (UTC) of the ISO week ``ts`` falls in."""
    d = datetime.fromtimestamp(ts, UTC).date()
    return (d - timedelta(days=d.weekday())).isoformat()


def _tags(value: Any) -> list[str]:
    return sorted({str(t) for t in value}) if isinstance(value, list) else []


def meta(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def clear(conn: sqlite3.Connection) -> None:
    for table in TABLES:
        conn.execute(f"DELETE FROM {table}")


def _new_events(project: Project, after: int, head_id: int) -> Iterator[dict[str, Any]]:
    """The events after ``after`` up to the head; a few from the newest file only. A
    line past the head that does not read (a damaged log: ``doctor`` tells) is not
    history and ends it quietly."""
    store = project.store
    tail = getattr(store, "events_tail", None)
    if tail is not None and 0 < head_id - after <= TAIL_READ:
        try:
            got = [e for e in tail(head_id - after, lambda e: True, after)
                   if int(e.get("event_id") or 0) <= head_id]
        except MilestoneError:
            got = []
        if got and int(got[0].get("event_id") or 0) == after + 1 \
                and int(got[-1].get("event_id") or 0) == head_id:
            yield from got
            return
    seen = after
    events = store.events(after=after)
    while seen < head_id:
        try:
            e = next(events)
        except StopIteration:
            return
        except MilestoneError:
            if seen >= head_id:
                return
            raise
        seen = int(e.get("event_id") or 0)
        if seen > head_id:
            return
        yield e


def _fold(conn: sqlite3.Connection, events: Iterable[Mapping[str, Any]]) -> int:
    folder = Folder(conn)
    batch = 0
    for e in events:
        folder.feed(e)
        batch += 1
        if batch >= 20_000:  # bounded memory on a long log
            _write(conn, folder)
            last_id, last_hash, count = folder.last_id, folder.last_hash, folder.count
            folder = Folder(conn)
            folder.last_id, folder.last_hash, folder.count = last_id, last_hash, count
            batch = 0
    _write(conn, folder)
    return folder.count


def _write(conn: sqlite3.Connection, folder: Folder) -> None:
    folder.flush()
    if folder.last_id:
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         [("version", VERSION), ("last_event_id", str(folder.last_id)),
                          ("last_hash", folder.last_hash)])


def refresh(project: Project, conn: sqlite3.Connection, head: tuple[int, str], *,
            rebuild: bool = False) -> dict[str, Any]:
    """Bring the rollups up to the log's ``head`` (last event id and hash): fold in the
    new events, or rebuild them all when asked, when the file is of another version, or
    when the log no longer holds the event they saw last. Returns what was done."""
    head_id, head_hash = head
    conn.execute("BEGIN IMMEDIATE")
    try:
        seen = meta(conn)
        last_id = int(seen.get("last_event_id") or 0)
        reason = None
        if rebuild:
            reason = "asked"
        elif seen and seen.get("version") != VERSION:
            reason = "another version of the rollups"
        elif last_id > head_id or (last_id == head_id and seen.get("last_hash") != head_hash):
            reason = "the event log changed (re-chained, restored or repaired)"
        if last_id and reason is None and last_id < head_id:
            events = _new_events(project, last_id - 1, head_id)
            first = next(events, None)
            if first is None or first.get("hash") != seen.get("last_hash"):
                reason = "the event log changed (re-chained, restored or repaired)"
            else:
                folded = _fold(conn, events)
                conn.execute("COMMIT")
                return {"mode": "incremental", "events": folded, "last_event_id": head_id}
        if reason is None and last_id == head_id and last_id:
            conn.execute("COMMIT")
            return {"mode": "current", "events": 0, "last_event_id": head_id}
        clear(conn)
        folded = _fold(conn, _new_events(project, 0, head_id))
        conn.execute("COMMIT")
        return {"mode": "rebuild", "reason": reason or "first build", "events": folded,
                "last_event_id": head_id}
    except BaseException:
        conn.execute("ROLLBACK")
        raise

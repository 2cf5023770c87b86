"""The hybrid backend: YAML files stay the source of truth; SQLite indexes them.

Everything the file backend does (people edit the YAML, git diffs stay readable,
the JSONL log is written first) plus ``database/index.db``: the same tables as the
database backend, kept in step with the files on every commit and every recorded
hand edit, and rebuilt from the snapshots whenever it falls behind (or on
``milestone storage reindex``). Reads that need many milestones (list and its
filters) go to the index; ``database/cache.db`` keeps expensive results keyed
by the log head.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import fsutil, hybrid_files
from .base import MilestoneQuery, Snapshot, State
from .file import FILE_RE, FileStore, Undo
from .file_base import head_fields_ok, head_shape_ok
from .file_import import MILESTONES_KEY
from .sqlite import DatabaseStore, QueryCache, milestone_query_sql


class HybridStore(FileStore):
    backend = "hybrid"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.index = DatabaseStore(self.root, self.root / "database" / "index.db", derived=True)
        self.cache = QueryCache(self.root / "database" / "cache.db")
        # The state.json head a read found the index and every file in step with
        # (needs_sync's quick path): what view() and head() answer at, snapshots unread.
        self._quick: dict[str, Any] | None = None
        self._depth = 0  # reading() blocks entered
        self._pinned = False  # view() opened the index's read transaction for them
        self._files_due: tuple[str, list[str]] | None = None  # a commit's entries, see
        # _write_state: written to the index with its rows (_update_index)
        self._imported: list[tuple[str, dict[str, Any]]] | None = None  # import_stream's

    def initialize(self) -> None:
        marker = self.config / "storage-backend.txt"
        fresh = not marker.exists()
        super().initialize()
        if fresh:
            fsutil.atomic_write(marker, b"hybrid\n")
        (self.root / "database").mkdir(parents=True, exist_ok=True)
        self.index.open_schema()
        hybrid_files.ensure(self.index.connect())

    def _index_head(self) -> int:
        with contextlib.suppress(Exception):
            conn = self.index.connect()
            row = conn.execute("SELECT value FROM meta WHERE key = 'last_event_id'").fetchone()
            return int(row[0]) if row else 0
        return -1

    def _index_at(self) -> tuple[int, str] | None:
        """The index's log head (last event id, hash); None without a readable index."""
        if not self.index.exists():
            return None
        with contextlib.suppress(Exception):
            return self.index.head()
        return None

    def reindex(self) -> int:
        """Rebuild the index from the snapshots; returns the milestones indexed."""
        state = self.load()
        if not self.index.exists():
            # Close a connection to the deleted file (it would write nowhere), and drop
            # its -wal/-shm: left beside a new file, SQLite would replay them into it.
            self.index.discard()
            self.initialize()
        with self.index.lock():
            self.index.import_data([], state, {}, {})
            self._fill_files()
        self.cache.clear()  # results read from the old rows, at this very head maybe
        return len(state.milestones)

    def _fill_files(self) -> None:
        """The file entries of the state in memory into the index (in its transaction)."""
        raw = self._state or {}
        # Entries a scan refreshed in memory only are the files' own stats (their
        # content is the snapshot's): safe to keep, though state.json has older ones.
        hybrid_files.fill(self.index.connect(), raw.get("milestones") or {},
                          self._state_point())

    def rebuild(self) -> list[str]:
        changed = super().rebuild()
        try:  # the snapshots were re-derived from the log: so is the index
            self.reindex()
        except Exception as exc:
            self.warn(f"database/index.db was not rebuilt ({exc}); run `milestone storage "
                      "reindex`")
        return changed

    # ------------------------------------------------------------ writing

    def _write_state(self, state: dict[str, Any], *, reuse: bool = False,
                     changed: Iterable[str] = (), written: list[Undo] | None = None) -> None:
        """The file backend's state write, and the index's copy of the entries it
        changes: now, or with the index's rows for a commit (which may yet be undone)."""
        changed = list(changed)
        was = hybrid_files.point_key(state.get("checkpoint"))
        entries = sorted(set(changed) | self._refreshed)
        super()._write_state(state, reuse=reuse, changed=changed, written=written)
        if written is not None:
            self._files_due = (was, entries)
            return
        if hybrid_files.point_key(state.get("checkpoint")) == was:
            return  # the head alone (a log size, a rotation): the entries stand
        try:
            conn = self.index.connect() if self.index.exists() else None
            if conn is None or (conn.in_transaction and not self.index.in_write()):
                return  # inside a read: the next read finds the point behind and heals
            with self.index.lock():
                if not hybrid_files.update(conn, state["milestones"], entries, was,
                                           hybrid_files.point_key(state["checkpoint"])):
                    hybrid_files.set_point(conn, "")  # behind: healed by the next read
        except Exception:  # derived: a read finds it behind and rebuilds it
            return

    def _materialize(self, sealed: Sequence[dict[str, Any]], adopt: Sequence[str]) -> None:
        touched = {e.get("milestone_id") for e in sealed if e.get("milestone_id")}
        # The snapshots as the index has them (it is checked to be current below), so
        # that only the rows that change are written: a claim rewrites one task row.
        entries = (self._state or {}).get("milestones") or {}
        was = {mid: (entries.get(mid) or {}).get("state") for mid in touched if mid}
        self._files_due = None
        super()._materialize(sealed, adopt)
        # Past the commit point (the log and the files are written): the index is
        # derived, so trouble with it is a warning; it is rebuilt when found behind.
        try:
            fsutil.fault("index")
            self._update_index(sealed, touched, was)
        except Exception as exc:
            self.warn(f"database/index.db was not updated ({exc}); it is rebuilt from "
                       f"the files when next used (or `milestone storage reindex`)")
        except BaseException:
            self._undone = False  # interrupted: the files stay, so must the events
            raise

    def _update_index(self, sealed: Sequence[dict[str, Any]], touched: set[Any],
                      was: dict[Any, Any]) -> None:
        state = self.load()
        if not self.index.exists():
            self.initialize()
        if self._index_head() != (state.last_event_id - len(sealed)):
            self.reindex()  # it fell behind (a crash, a copy): rebuild, then it is current
            return
        conn = self.index.connect()
        with self.index.lock():
            for mid in sorted(m for m in touched if m):
                snap = state.milestones.get(mid)
                if snap is None or was.get(mid) is None:
                    self.index.drop_milestone(conn, mid, was.get(mid))
                if snap is not None:
                    self.index.write_milestone(conn, was.get(mid), snap)
            self.index.set_meta(conn, {"last_event_id": str(state.last_event_id),
                                        "last_hash": state.last_hash,
                                        "current": state.current or "",
                                        "max_number": str(state.max_number)})
            raw = self._state or {}
            due, self._files_due = self._files_due, None
            if due is None or not hybrid_files.update(
                    conn, raw["milestones"], due[1], due[0],
                    hybrid_files.point_key(raw.get("checkpoint"))):
                self._fill_files()  # its entries were behind: all of them, once

    def import_data(self, events: Sequence[dict[str, Any]], state: State,
                    resume: dict[str, Any], sources: dict[str, str]) -> None:
        """The files as the file backend writes them, and the index from the same state
        (``import_stream``, which the file backend's ``import_data`` goes through)."""
        super().import_data(events, state, resume, sources)

    # ------------------------------------------------------------ reading

    def needs_sync(self) -> bool:
        """The file backend's check, without the snapshots when the index holds the
        state's file entries (see ``hybrid_files``): the head, the index's rows of the
        files and a stat of each file. Inside a read that pinned the index: no (the
        read goes on from its snapshot)."""
        if self._pinned:
            return False
        self._quick = None
        if self._state is not None or self._suspect or self._deep or not self.index.exists():
            return super().needs_sync()
        head = self._disk_head()
        if head is None:  # an older version's state.json, or none: the whole state
            return super().needs_sync()
        if self._log_size() != head["log_size"] or head.get("rotating"):
            return True
        try:
            conn = self.index.connect()
            with self.index.reading():
                known = (hybrid_files.known(conn) if hybrid_files.at(conn, head, head["point"])
                         else None)
        except Exception:
            known = None
        if known is None:
            self._heal()  # the index behind the state: brought up to it (once)
            return super().needs_sync()
        found = self._file_stats()
        if found is None or found != known:
            return True
        if self._current_mtime() != head.get("current_mtime_ns"):
            return True
        self._quick = head
        return False

    def _disk_head(self) -> dict[str, Any] | None:
        """state.json's head (a few hundred bytes), with ``point``: the state point its
        entries are of (``hybrid_files``); None when it is neither this version's head
        nor the one-file state a migration writes (read whole then)."""
        try:
            with fsutil.open_read(self.state_path) as f:
                first = f.readline(1 << 16)
                st = os.fstat(f.fileno())
            if first.endswith(b"\n") and first.rstrip(b"\n").endswith(MILESTONES_KEY.encode()):
                # The one-file state of a migration (file_import): its first line is the
                # head; until the first write replaces it, the file itself is the point.
                head = fsutil.loads_json(first.rstrip(b"\n") + b"}}")
                if not isinstance(head, dict) or head.get("version") != 1 \
                        or not head_fields_ok(head):
                    return None
                head["point"] = f"v1:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
                return head
            if len(first) != st.st_size:
                return None
            head = fsutil.loads_json(first)
        except (OSError, ValueError):
            return None
        if not isinstance(head, dict) or not head_shape_ok(head):
            return None
        head["point"] = hybrid_files.point_key(head["checkpoint"])
        return head

    def _state_point(self) -> str:
        """The point of the state in memory: its checkpoint's; the one-file state's
        when it is the one on disk (same head); else '' (no quick reads until a write)."""
        raw = self._state or {}
        if raw.get("checkpoint"):
            return hybrid_files.point_key(raw["checkpoint"])
        disk = self._disk_head()
        if raw and disk is not None and disk["point"].startswith("v1:") and (
                disk["applied_event_id"], disk["applied_hash"]) == (
                raw["applied_event_id"], raw["applied_hash"]):
            return str(disk["point"])
        return ""

    def _file_stats(self) -> set[tuple[str, int, int]] | None:
        """(path, size, mtime_ns) of every milestone file; None when one is a link (the
        whole check refuses it)."""
        out: set[tuple[str, int, int]] = set()
        for folder in ("active", "completed"):
            try:
                entries = os.scandir(self.root / folder)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    if FILE_RE.match(entry.name):
                        st = entry.stat(follow_symlinks=False)
                        if stat.S_ISLNK(st.st_mode):
                            return None
                        if stat.S_ISREG(st.st_mode):
                            out.add((f"{folder}/{entry.name}", st.st_size, st.st_mtime_ns))
        return out

    def _heal(self) -> None:
        """Bring the index to the state's head and entries, when the lock is free and no
        read is pinned (the whole state is read: once, then reads are quick again)."""
        if self._pinned or self.index.in_write():
            return
        with contextlib.suppress(Exception), self.try_lock() as got:
            if not got:
                return
            state = self.load()
            if self._index_at() != (state.last_event_id, state.last_hash):
                self.reindex()
            elif hybrid_files.current_point(self.index.connect()) != self._state_point():
                with self.index.lock():
                    self._fill_files()

    def head(self) -> tuple[int, str] | None:
        if self._state is None and self._quick is not None:
            return int(self._quick["applied_event_id"]), str(self._quick["applied_hash"])
        return super().head()

    def invalidate(self) -> None:
        super().invalidate()
        self._quick = None

    def _wanted(self) -> tuple[int, str] | None:
        """The log head this object serves: of the state in memory, of the quick check,
        else of state.json on disk."""
        if self._state is not None or self._quick is not None:
            return self.head()
        head = self._disk_head()
        return None if head is None else (int(head["applied_event_id"]),
                                          str(head["applied_hash"]))

    def view(self) -> State:
        """The database backend's lazy view, from the index, when it is at the head
        this object serves; else every snapshot (``load``). Inside ``reading()`` the
        index's read transaction opens here (after any hand edit was recorded), so the
        view's reads all see one snapshot."""
        want = self._wanted()
        if want is not None and self.index.exists():
            try:
                conn = self.index.connect()
                if self._depth and not self._pinned and not conn.in_transaction:
                    conn.execute("BEGIN")
                    self._pinned = True
                st = self.index.view()
            except Exception:
                st = None
            if st is not None and (st.last_event_id, st.last_hash) == want:
                return st
        return self.load()

    @contextlib.contextmanager
    def _read_block(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pinned:
                self._pinned = False
                with contextlib.suppress(Exception):
                    self.index.connect().execute("COMMIT")

    def reading(self) -> contextlib.AbstractContextManager[None]:
        return self._read_block()

    def _indexed(self) -> bool:
        """Does the index answer for the state this object serves (brought there, when
        no writer is mid-commit and no read is pinned)?"""
        want = self._wanted()
        if want is None:
            return False
        if self._index_at() == want:
            return True
        if self._pinned or self.index.in_write():
            return False
        with self.try_lock() as got:
            if not got:
                return False  # a writer is mid-commit: answer from the snapshots
            self.reindex()
        return self._index_at() == self._wanted()

    def query_milestones(self, q: MilestoneQuery) -> Iterable[Snapshot] | None:
        if not self._indexed():
            return None
        if self._state is None:  # read from the index, 500 at a time
            return self.index.query_milestones(q)
        state = self.load()
        sql, args = milestone_query_sql(q)
        ids = [mid for (mid,) in self.index.connect().execute(sql, args)]
        return [state.milestones[mid] for mid in ids if mid in state.milestones]

    def ready_tasks(self, only: str | None = None, limit: int | None = None
                    ) -> tuple[list[dict[str, Any]], int] | None:
        return self.index.ready_tasks(only, limit) if self._indexed() else None

    def totals(self) -> dict[str, dict[str, int]] | None:
        return self.index.totals() if self._indexed() else None

    def held_tasks(self) -> list[tuple[str, Snapshot]] | None:
        return self.index.held_tasks() if self._indexed() else None

    def schedule_graph(self) -> tuple[dict[str, list[str]], dict[str, float]] | None:
        return self.index.schedule_graph() if self._indexed() else None

    def dependents(self, mids: Iterable[str]) -> set[str] | None:
        return self.index.dependents(mids) if self._indexed() else None

    def task_edges(self) -> dict[str, list[str]] | None:
        return self.index.task_edges() if self._indexed() else None

    def milestones_with_tasks(self, statuses: Sequence[str]) -> list[str] | None:
        return self.index.milestones_with_tasks(statuses) if self._indexed() else None

    def active_tasks(self) -> list[tuple[str, Snapshot]] | None:
        return self.index.active_tasks() if self._indexed() else None

    def cache_get(self, key: str, head: str) -> Any:
        return self.cache.get(key, head)

    def cache_put(self, key: str, head: str, value: Any) -> None:
        self.cache.put(key, head, value)

    def cache_peek(self, key: str) -> tuple[str, Any] | None:
        return self.cache.peek(key)

    def data_files(self) -> list[Path]:
        return sorted([*super().data_files(), *self.index.data_files()])

    def discard(self) -> None:
        super().discard()
        self.index.discard()

    def import_stream(self, events: Iterable[Sequence[dict[str, Any]]],
                      snapshots: Iterable[Sequence[Snapshot]], head: State,
                      resume: dict[str, Any],
                      sources: Callable[[Sequence[str]], dict[str, str]]) -> None:
        """The files as the file backend writes them, and the index from the same
        batches: the rows, and each file's entry as it is written (``files``)."""

        def indexed() -> Iterator[Sequence[Snapshot]]:
            # Runs once the files' import has discarded and re-created the index.
            self.index.bulk(True)
            self.index.import_begin()
            conn = self.index.connect()
            hybrid_files.ensure(conn)
            conn.execute("DELETE FROM files")
            for batch in snapshots:
                self.index.import_snapshots(batch, {})
                yield batch
                self._flush_imported()
            self.index.bulk(False)
            self.index.import_end(head, {})
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        self._imported = []
        try:
            super().import_stream(events, indexed(), head, resume, sources)
        finally:
            self._imported = None
        disk = self._disk_head()  # the one-file state just written: its point
        if disk is not None:
            with self.index.lock():
                hybrid_files.set_point(self.index.connect(), str(disk["point"]))

    def _write_milestone_file(self, snap: Snapshot, source: str | None) -> dict[str, Any]:
        entry = super()._write_milestone_file(snap, source)
        if self._imported is not None:
            self._imported.append((snap["id"], entry))
        return entry

    def _flush_imported(self) -> None:
        """The entries of the files an import wrote since the last call, into the index."""
        rows, self._imported = self._imported or [], []
        with self.index.lock():
            hybrid_files.add(self.index.connect(), rows)

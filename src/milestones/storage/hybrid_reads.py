"""The hybrid backend's reads (see ``hybrid``): from the index when it is at the
state's head, as the database backend answers them (``LazyMilestones``, the ready,
held and schedule queries), with hand edits found without the snapshots: the state's
file entries are in the index too (``hybrid_files``), so a read needs the head of
``logs/state.json``, the index's rows of the files and a stat of each file. When the
index is behind (a crash between the log and the index, an older version's index), the
read takes the whole state, as the file backend does, and brings the index up.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import fsutil, hybrid_files
from .base import MilestoneQuery, Snapshot, State
from .file import FILE_RE, FileStore
from .file_base import head_fields_ok, head_shape_ok
from .file_import import MILESTONES_KEY
from .sqlite import DatabaseStore, QueryCache, milestone_query_sql


class HybridReads(FileStore):
    """The hybrid backend's index and reads (see ``hybrid.HybridStore``)."""

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
        whole check refuses it). One stat a file: the loop is kept tight (10,000 files)."""
        out: set[tuple[str, int, int]] = set()
        add, match, regular, link = out.add, FILE_RE.match, stat.S_ISREG, stat.S_ISLNK
        for folder in ("active", "completed"):
            prefix = f"{folder}/"
            try:
                entries = os.scandir(self.root / folder)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    name = entry.name
                    if name.endswith(".yaml") and match(name):
                        st = entry.stat(follow_symlinks=False)
                        if regular(st.st_mode):
                            add((prefix + name, st.st_size, st.st_mtime_ns))
                        elif link(st.st_mode):
                            return None
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


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
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import fsutil
from .base import MilestoneQuery, Snapshot, State
from .file import FileStore
from .sqlite import DatabaseStore, QueryCache, milestone_query_sql


class HybridStore(FileStore):
    backend = "hybrid"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.index = DatabaseStore(self.root, self.root / "database" / "index.db", derived=True)
        self.cache = QueryCache(self.root / "database" / "cache.db")

    def initialize(self) -> None:
        marker = self.config / "storage-backend.txt"
        fresh = not marker.exists()
        super().initialize()
        if fresh:
            fsutil.atomic_write(marker, b"hybrid\n")
        (self.root / "database").mkdir(parents=True, exist_ok=True)
        self.index.open_schema()

    def _index_head(self) -> int:
        with contextlib.suppress(Exception):
            conn = self.index.connect()
            row = conn.execute("SELECT value FROM meta WHERE key = 'last_event_id'").fetchone()
            return int(row[0]) if row else 0
        return -1

    def reindex(self) -> int:
        """Rebuild the index from the snapshots; returns the milestones indexed."""
        state = self.load()
        if not self.index.exists():
            # Close a connection to the deleted file (it would write nowhere), and drop
            # its -wal/-shm: left beside a new file, SQLite would replay them into it.
            self.index.discard()
            self.initialize()
        self.index.import_data([], state, {}, {})
        return len(state.milestones)

    def _materialize(self, sealed: Sequence[dict[str, Any]], adopt: Sequence[str]) -> None:
        touched = {e.get("milestone_id") for e in sealed if e.get("milestone_id")}
        # The snapshots as the index has them (it is checked to be current below), so
        # that only the rows that change are written: a claim rewrites one task row.
        entries = (self._state or {}).get("milestones") or {}
        was = {mid: (entries.get(mid) or {}).get("state") for mid in touched if mid}
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

    def import_data(self, events: Sequence[dict[str, Any]], state: State,
                    resume: dict[str, Any], sources: dict[str, str]) -> None:
        """The files as the file backend writes them, and the index from the same state."""
        super().import_data(events, state, resume, sources)
        self.index.discard()
        self.initialize()
        self.index.import_data([], state, {}, {})

    def _index_current(self, state: State) -> bool:
        """Is the index at ``state``'s head (brought there when no writer is mid-commit)?"""
        if self._index_head() != state.last_event_id:
            with self.try_lock() as got:
                if not got:
                    return False  # a writer is mid-commit: answer from the snapshots
                self.reindex()
        return True

    def query_milestones(self, q: MilestoneQuery) -> list[Snapshot] | None:
        state = self.load()
        if not self._index_current(state):
            return None
        sql, args = milestone_query_sql(q)
        ids = [mid for (mid,) in self.index.connect().execute(sql, args)]
        return [state.milestones[mid] for mid in ids if mid in state.milestones]

    def ready_tasks(self, only: str | None = None, limit: int | None = None
                    ) -> tuple[list[dict[str, Any]], int] | None:
        return self.index.ready_tasks(only, limit) if self._index_current(self.load()) else None

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
        """The files as the file backend writes them, and the index from the same batches."""

        def indexed() -> Iterator[Sequence[Snapshot]]:
            # Runs once the files' import has discarded and re-created the index.
            self.index.bulk(True)
            self.index.import_begin()
            for batch in snapshots:
                self.index.import_snapshots(batch, {})
                yield batch
            self.index.bulk(False)
            self.index.import_end(head, {})
            self.index.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")

        super().import_stream(events, indexed(), head, resume, sources)

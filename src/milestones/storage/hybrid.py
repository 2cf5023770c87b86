"""The hybrid backend: YAML files stay the source of truth; SQLite indexes them.

Everything the file backend does (people edit the YAML, git diffs stay readable,
the JSONL log is written first) plus ``database/index.db``: the same tables as the
database backend, kept in step with the files on every commit and every recorded
hand edit, and rebuilt from the snapshots whenever it falls behind (or on
``milestone storage reindex``). The index also keeps each milestone file's entry
(path, size, mtime, hash; ``hybrid_files``), so a read at the index's head is answered
from it as on the database backend, hand edits found by a stat of each file against
those rows (``hybrid_reads``); ``database/cache.db`` keeps expensive results keyed by
the log head.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import fsutil, hybrid_files
from .base import Snapshot, State
from .file import Undo
from .hybrid_reads import HybridReads


class HybridStore(HybridReads):
    """Writes keep the index in step with the files (rows and file entries); the reads
    are in ``hybrid_reads``."""

    backend = "hybrid"

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
        conn = self.index.connect()
        if conn.in_transaction and not self.index.in_write():
            # A write inside a read (reading()): its snapshot ends here, before ours.
            conn.execute("COMMIT")
            self._pinned = False
        if self._index_head() != (state.last_event_id - len(sealed)):
            self.reindex()  # it fell behind (a crash, a copy): rebuild, then it is current
            return
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

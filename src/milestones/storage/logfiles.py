"""Event log rotation: the live log plus gzipped archives, read as one log.

Layout::

    logs/progress-events.jsonl                     the live log: appends go here
    logs/archive/progress-events-000001.jsonl.gz   older events, oldest archive first
    logs/archive/index.json                        each archive's first/last event id and hash

The hash chain runs on across files: an archive's first event has the previous
archive's last hash as its ``prev_hash``. ``events(after)`` reads the archives in
sequence order, then the live log; the index lets it skip (never decompress) an
archive whose last event id is ``<= after``, and lets ``tail`` (``log --limit``)
stop at the newest archives.

Rotation (``rotate``) runs inside a write, under the writer lock, right after a
commit has fully applied, so every event in the live log is already in the
snapshots and ``state.json``'s ``log_size`` is the live log's size. Steps:

0. ``state.json`` gets a ``rotating`` marker (atomic replace). It does nothing
   but make the next command's ``needs_sync`` true, so a crash in the steps
   below is finished by the very next command, even a read.
1. The live log's bytes are gzipped to a temp name in ``logs/archive/``,
   fsync'd, renamed to ``progress-events-<next seq>.jsonl.gz``, and the
   directory fsync'd. Until the rename nothing reads the temp file.
2. ``index.json`` gets the archive's entry (atomic replace).
3. The live log is replaced by an empty file (atomic replace: a reader holding
   the old file open still reads it whole).
4. ``state.json``: ``log_size`` 0, the marker removed (atomic replace).

A crash (or power loss) leaves one of these, all readable without loss or
duplication, and all finished by ``finish`` (run by ``FileStore.recover``, so by
the next command and by ``doctor --repair``):

* during 0-1 (marker set, maybe a temp file, no archive): the temp file is
  removed and the marker cleared; the live log is untouched. The next write
  rotates again.
* after 1 (archive on disk, not in the index; the live log still holds the
  same events): readers decompress the unindexed archive and then skip the
  live log's events with ids not above the archive's last one, so no event is
  seen twice. ``finish`` indexes the archive (by reading it), then as below.
* after 2 (indexed; the live log still holds the events): readers skip the
  repeated events by id, as above. ``finish`` drops from the live log the
  events up to the archive's last id, once it has checked that the live log's
  event with that id has the archive's last hash (same chain, so the same
  events), and sets ``log_size`` to 0.
* after 3 (live log empty, ``state.json`` still names the old size): ``finish``
  sets ``log_size`` to 0 (every applied event is archived) and clears the marker.

The overlap check uses event ids, not the marker, so an interrupted rotation is
also finished when ``state.json`` was lost or rebuilt in between.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import StorageError
from ..model import events as ev
from . import fsutil
from .logrotation import (
    ARCHIVE_DIR,
    INDEX_NAME,
    ROTATION_STEPS,
    LogRotation,
    Scan,
    Segment,
    archive_name,
    gzip_lines,
    iter_events,
    lines_of,
    loads_line,
    read_gzip,
    rotate_bytes,
)


class LogFiles(LogRotation):

    """The live event log and its archives."""


    # --------------------------------------------------------------- reading

    def events(self, after: int = 0) -> Iterator[dict[str, Any]]:
        """Every event with id > ``after``: the archives in order, then the live log.

        The live log is opened before the archives are listed: a rotation finishing
        in between then shows its events twice (in the old live file and the new
        archive), never not at all, and the repeats are skipped by id: a file's
        events with ids not above the ids of the files before it are not yielded.
        Within one file every event with id > ``after`` is yielded, as it is; the live
        log is entered by a binary search (``_skip_to``), so the last few events of a
        long log cost those few lines, not the file.
        """
        live = self._open_live()
        try:
            floor = after
            archives = self.archives()
            index = self.read_index() if archives else {}
            for seq, path in archives:
                entry = index.get(seq)
                if entry is not None and entry["last_id"] <= floor:
                    continue  # wholly at or before ``after``: not even decompressed
                top = floor
                for _no, event in iter_events(gzip_lines(path), path, True):
                    eid = event.get("event_id", 0)
                    if eid > floor:
                        top = max(top, eid)
                        yield event
                floor = top
            if live is not None:
                first = self._skip_to(live, floor) if floor > 0 else 1
                for _no, event in iter_events(live, self.live, False, first):
                    if event.get("event_id", 0) > floor:
                        yield event
        finally:
            if live is not None:
                live.close()

    SKIP_SPAN = 1 << 16  # the binary search stops at this many bytes; read on from there

    def _skip_to(self, live: IO[bytes], floor: int) -> int:
        """Place ``live`` at a line whose event id is at most ``floor`` (ids grow down the
        file), found by a binary search over byte offsets, so that reading the last
        events of a long log parses only them; the number of that line. From the start
        (1) when a probed line is not an event: the lines are then read and reported
        as ever."""
        import json

        size = os.fstat(live.fileno()).st_size
        lo, hi, best = 0, size, 0
        try:
            while hi - lo > self.SKIP_SPAN:
                mid = (lo + hi) // 2
                live.seek(mid)
                live.readline()  # the rest of the line ``mid`` falls in
                start = live.tell()
                line = live.readline()
                if not line.endswith(b"\n"):
                    hi = mid  # the end (or a torn last line)
                    continue
                eid = json.loads(line)["event_id"]
                if not isinstance(eid, int) or isinstance(eid, bool):
                    raise ValueError("no event id")
                if eid > floor:
                    hi = mid
                else:
                    best, lo = start, mid
        except (ValueError, KeyError, TypeError, RecursionError):
            best = 0
        live.seek(0)
        newlines = 0
        while live.tell() < best:  # the line number, for what a later line may report
            chunk = live.read(min(1 << 20, best - live.tell()))
            if not chunk:
                break
            newlines += chunk.count(b"\n")
        live.seek(best)
        return newlines + 1

    def tail(
        self, limit: int, keep: Callable[[dict[str, Any]], bool], after: int = 0
    ) -> list[dict[str, Any]]:
        """The last ``limit`` events with id > ``after`` that ``keep`` accepts, oldest
        first, reading the newest file first and stopping once there are enough."""
        if limit <= 0:
            return []
        live = self._open_live()  # first, as in ``events``
        batches: list[list[dict[str, Any]]] = []
        found = 0
        ceiling: int | None = None  # the lowest id read so far: older files repeat none
        try:
            if live is not None:
                batch = []
                for _no, event in iter_events(live, self.live, False):
                    eid = event.get("event_id", 0)
                    if eid > after:
                        ceiling = eid if ceiling is None else min(ceiling, eid)
                        if keep(event):
                            batch.append(event)
                batches.append(batch)
                found += len(batch)
        finally:
            if live is not None:
                live.close()
        archives = self.archives()
        index = self.read_index() if archives else {}
        for seq, path in reversed(archives):
            if found >= limit:
                break
            entry = index.get(seq)
            if entry is not None and entry["last_id"] <= after:
                break  # this one and every older one are at or before ``after``
            low = ceiling
            batch = []
            for _no, event in iter_events(gzip_lines(path), path, True):
                eid = event.get("event_id", 0)
                if eid > after and (ceiling is None or eid < ceiling):
                    low = eid if low is None else min(low, eid)
                    if keep(event):
                        batch.append(event)
            ceiling = low
            batches.append(batch)
            found += len(batch)
        rows = [e for batch in reversed(batches) for e in batch]
        return rows[-limit:]

    def scan(self, root: Path) -> Scan:
        """Read every file of the log and verify the chain from the first event: ids one
        by one, each ``prev_hash`` the hash before, each ``hash`` its content's. Stops at
        the first line that does not verify (a torn last line of the live log is no
        event, and no problem: ``recover`` truncates it)."""
        out = Scan()
        prev_id, prev_hash = 0, ev.GENESIS_HASH
        last_file: dict[int, Any] = {}  # the previous file's hashes: an interrupted rotation

        def label(path: Path) -> str:
            try:
                return f".milestones/{path.relative_to(root).as_posix()}"
            except ValueError:
                return str(path)

        files: list[tuple[Path, bool]] = [(path, True) for _seq, path in self.archives()]
        files.append((self.live, False))
        for path, archive in files:
            try:
                raw = read_gzip(path) if archive else fsutil.read_bytes(path)
            except StorageError as exc:
                out.problem = f"{label(path)}: {exc.message[len(str(path)) + 2:]}"
                return out
            except FileNotFoundError:
                out.live_missing = True
                return out
            except OSError as exc:
                out.problem = f"{label(path)}: cannot be read ({exc.strerror})"
                return out
            hashes: dict[int, Any] = {}
            offset = 0
            prefix = True
            for lineno, line in enumerate(lines_of(raw), 1):
                start, offset = offset, offset + len(line)
                if not line.endswith(b"\n"):
                    if archive:
                        out.problem = f"{label(path)}:{lineno}: torn last line in an archive"
                        return out
                    break  # a torn last line: not an event
                if not line.strip():
                    if not archive and out.problem is None:
                        out.live_end = offset
                    continue
                event = loads_line(line)
                eid = event.get("event_id")
                if prefix and isinstance(eid, int) and eid in last_file \
                        and last_file[eid] == event.get("hash"):
                    continue  # repeats the last archive (an interrupted rotation)
                prefix = False
                bad = ev.verify_chain([event], prev_hash, prev_id) if event else (0, "")
                if bad is not None:
                    what = bad[1] or "not a JSON event"
                    out.problem = f"{label(path)}:{lineno}: {what}"
                    out.bad_line = lineno
                    out.bad_offset = None if archive else start
                    return out
                out.events.append(event)
                prev_id, prev_hash = event["event_id"], event["hash"]
                hashes[prev_id] = prev_hash
                if not archive:
                    out.live_end = offset
            last_file = hashes
        return out

    def archive_segments(self, root: Path) -> Iterator[Segment]:
        """Every archive of the log, oldest first, each read whole when it is reached
        (one at a time in memory), for ``doctor`` and ``validate``."""
        for seq, path in self.archives():
            label = f".milestones/{path.relative_to(root).as_posix()}"
            try:
                yield Segment(seq, path, label, read_gzip(path))
            except StorageError as exc:
                yield Segment(seq, path, label, None, exc.message[len(str(path)) + 2:])

    def check_index(self, archives: Sequence[tuple[int, str, dict[str, Any] | None]]
                    ) -> list[str]:
        """Where ``index.json`` disagrees with the archives on disk: (sequence number,
        label, ``describe`` of its content or None when it could not be read) each."""
        index = self.read_index()
        if not index and self.index_path.exists():
            return [f"{INDEX_NAME} is unreadable (`milestone doctor --repair` rebuilds it)"]
        problems = []
        on_disk = {seq for seq, _label, _actual in archives}
        for seq, label, actual in archives:
            if actual is None:
                continue
            entry = index.get(seq)
            if entry is None:
                problems.append(f"{label} is not in {INDEX_NAME} (an interrupted rotation; "
                                "`milestone doctor --repair` indexes it)")
                continue
            wrong = [k for k in ("first_id", "last_id", "last_hash", "events", "sha256")
                     if k in entry and entry[k] != actual[k]]
            if wrong:
                problems.append(f"{label}: {INDEX_NAME} has another {wrong[0]} for it "
                                "(the archive was changed after it was written)")
        problems += [f"{INDEX_NAME} names {archive_name(seq)}, which is missing"
                     for seq in sorted(set(index) - on_disk)]
        return problems


__all__ = ["ARCHIVE_DIR", "INDEX_NAME", "ROTATION_STEPS", "LogFiles", "Scan", "Segment",
           "archive_name", "lines_of", "rotate_bytes"]

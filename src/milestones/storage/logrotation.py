"""The event log's archives: their names and index, reading a gzip member, and
rotation (the live log marked, compressed into an archive, indexed, truncated —
each step resumable after a crash).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import MilestoneError, StorageError
from ..model import events as ev
from . import fsutil

ARCHIVE_DIR = "archive"
ARCHIVE_RE = re.compile(r"^progress-events-([0-9]{6,})\.jsonl\.gz$")
INDEX_NAME = "index.json"
INDEX_VERSION = 1
DEFAULT_ROTATE_BYTES = 10 * 1024 * 1024
MAX_ARCHIVE_BYTES = 1024 * 1024 * 1024  # one archive, uncompressed: no gzip bomb in memory
GZIP_LEVEL = 6  # gzip.compress defaults to 9: slower, for little gain on JSON lines

# The points between rotation steps, in order ("compressed": the temp archive is
# written and fsync'd, not yet renamed). ``_after_step`` is called at each one.
ROTATION_STEPS = ("marked", "compressed", "archived", "indexed", "emptied")


def _after_step(step: str) -> None:
    """A hook between rotation steps: the crash tests make it ``os._exit``;
    ``MILESTONE_FAULT=rotate:STEP`` makes it fail there (``fsutil.fault``)."""
    fsutil.fault(f"rotate:{step}")


def archive_name(seq: int) -> str:
    return f"progress-events-{seq:06d}.jsonl.gz"


def rotate_bytes(root: Path) -> int:
    """``logs.rotate_bytes`` from the config: the live log's size limit (0: never rotate)."""
    from .config import load_config

    try:
        section = load_config(root).get("logs")
    except MilestoneError:
        return DEFAULT_ROTATE_BYTES  # a broken config is reported elsewhere, not by a write
    value = section.get("rotate_bytes") if isinstance(section, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return DEFAULT_ROTATE_BYTES
    return max(value, 0)


@dataclass
class Finished:
    """What ``finish`` did: repairs, the state to write (None: unchanged), the last
    archived event id (0 without archives)."""

    repairs: list[str] = field(default_factory=list)
    state: dict[str, Any] | None = None
    archived_through: int = 0


@dataclass
class Segment:
    """One file of the log, for ``doctor``: its label, and raw bytes or an error."""

    seq: int  # 0: the live log
    path: Path
    label: str
    raw: bytes | None
    error: str | None = None

    @property
    def archive(self) -> bool:
        return self.seq > 0


@dataclass
class Scan:
    """The whole log read and verified (``LogFiles.scan``): the events that verify,
    in order, and where the first one that does not is."""

    events: list[dict[str, Any]] = field(default_factory=list)
    live_end: int = 0  # bytes of the live log through its last event that verifies
    problem: str | None = None  # "FILE:LINE: what", the first line that does not verify
    bad_offset: int | None = None  # where that line starts, when it is in the live log
    bad_line: int = 0
    live_missing: bool = False


def _parse(line: bytes, path: Path, lineno: int) -> dict[str, Any]:
    try:
        event = fsutil.loads_json(line)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        raise StorageError(
            f"{path}:{lineno}: the event log has a corrupt line",
            hint="run `milestone doctor` to see the damage",
        )
    return event


def _gzip_error(path: Path, exc: BaseException) -> StorageError:
    return StorageError(
        f"{path}: cannot read the archived event log ({exc or 'cut short'})",
        hint="run `milestone doctor`; restore the archive from a backup",
    )


def read_gzip(path: Path) -> bytes:
    """An archive's whole text; StorageError naming the file when it cannot be read."""
    import gzip
    import zlib

    try:
        with fsutil.open_read(path) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as f:
            data = f.read(MAX_ARCHIVE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise _gzip_error(path, exc) from None
    if len(data) > MAX_ARCHIVE_BYTES:
        raise _gzip_error(path, ValueError(f"over {MAX_ARCHIVE_BYTES:,} bytes uncompressed"))
    return data


def gzip_lines(path: Path) -> Iterator[bytes]:
    """An archive's lines, decompressed as they are read."""
    import gzip
    import zlib

    try:
        with fsutil.open_read(path) as raw, gzip.GzipFile(fileobj=raw, mode="rb") as f:
            yield from f
    except (OSError, EOFError, zlib.error) as exc:
        raise _gzip_error(path, exc) from None


def loads_line(line: bytes) -> dict[str, Any]:
    """A line's JSON object, or {} when it is not one."""
    try:
        obj = fsutil.loads_json(line)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def lines_of(raw: bytes) -> Iterator[bytes]:
    """``raw``'s lines, each with its ``\\n`` (the last one without, when it has none)."""
    start = 0
    while start < len(raw):
        end = raw.find(b"\n", start)
        end = len(raw) if end < 0 else end + 1
        yield raw[start:end]
        start = end


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def iter_events(
    lines: Iterable[bytes], path: Path, archive: bool, first: int = 1
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, event) of each whole line (``first``: the number of the first); a
    torn last line of the live log ends it."""
    for lineno, line in enumerate(lines, first):
        if not line.endswith(b"\n"):
            if archive and line.strip():
                raise StorageError(
                    f"{path}:{lineno}: the archived event log ends in a torn line",
                    hint="run `milestone doctor` to see the damage",
                )
            break  # a torn last line is not an event (doctor reports it)
        if line.strip():
            yield lineno, _parse(line, path, lineno)

class LogArchives:
    """The log's files on disk: the live log and its archives, and their index."""

    def __init__(self, live: Path) -> None:
        self.live = live
        self.dir = live.parent / ARCHIVE_DIR
        self.index_path = self.dir / INDEX_NAME

    # --------------------------------------------------------------- listing

    def archives(self) -> list[tuple[int, Path]]:
        """(sequence number, path) of every archive on disk, oldest first."""
        fsutil.refuse_links(self.dir)  # a linked archive folder: refused, never listed
        try:
            entries = os.scandir(self.dir)
        except (FileNotFoundError, NotADirectoryError):
            return []
        with entries:
            found = [
                (int(m.group(1)), Path(e.path))
                for e in entries
                if (m := ARCHIVE_RE.match(e.name))
            ]
        return sorted(found)

    def read_index(self) -> dict[int, dict[str, Any]]:
        """The index's entries by sequence number ({} when missing or unreadable)."""
        try:
            data = fsutil.loads_json(fsutil.read_bytes(self.index_path, 64 * 1024 * 1024))
        except (OSError, ValueError):
            return {}
        out: dict[int, dict[str, Any]] = {}
        rows = data.get("archives") if isinstance(data, dict) else None
        for row in rows if isinstance(rows, list) else ():
            if (
                isinstance(row, dict)
                and isinstance(row.get("seq"), int)
                and isinstance(row.get("first_id"), int)
                and isinstance(row.get("last_id"), int)
                and isinstance(row.get("last_hash"), str)
            ):
                out[row["seq"]] = row
        return out

    def write_index(self, entries: dict[int, dict[str, Any]]) -> None:
        body = {"version": INDEX_VERSION, "archives": [entries[k] for k in sorted(entries)]}
        fsutil.atomic_write(self.index_path, (json.dumps(body, indent=1) + "\n").encode("utf-8"))

    def describe(self, seq: int, raw: bytes) -> dict[str, Any]:
        """The index entry of archive ``seq`` holding ``raw`` (whole JSON lines)."""
        lines = [line for line in raw.split(b"\n") if line.strip()]
        first = loads_line(lines[0]) if lines else {}
        last = loads_line(lines[-1]) if lines else {}
        return {
            "seq": seq,
            "file": archive_name(seq),
            "first_id": _int(first.get("event_id")),
            "first_prev_hash": str(first.get("prev_hash", "")),
            "last_id": _int(last.get("event_id")),
            "last_hash": str(last.get("hash", "")),
            "events": len(lines),
            "bytes": len(raw),
            "sha256": ev.sha256_hex(raw),
        }

    def _open_live(self) -> IO[bytes] | None:
        try:
            return fsutil.open_read(self.live)
        except FileNotFoundError:
            return None


class LogRotation(LogArchives):
    """Rotation of the live log into a new archive."""

    # -------------------------------------------------------------- rotation

    def rotate(
        self, state: dict[str, Any], write_state: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any] | None:
        """Archive the whole live log (see the module's docstring for the steps).

        ``state`` must be the state just written by a commit: every event of the
        live log applied. Returns the new state, or None when the live log is not
        in a state to rotate (left for the next write).
        """
        fsutil.refuse_links(self.dir)  # before the marker: nothing to finish or undo
        try:
            raw = fsutil.read_bytes(self.live)
        except FileNotFoundError:
            return None
        if not raw or not raw.endswith(b"\n") or len(raw) != state.get("log_size"):
            return None  # a torn tail or unapplied events: never archive those
        lines = raw.split(b"\n")
        last_line = next((x for x in reversed(lines) if x.strip()), b"")
        try:
            last = fsutil.loads_json(last_line)
        except ValueError:
            return None
        if (
            not isinstance(last, dict)
            or last.get("event_id") != state.get("applied_event_id")
            or last.get("hash") != state.get("applied_hash")
        ):
            return None
        index = self.read_index()
        seq = max([s for s, _ in self.archives()] + list(index) + [0]) + 1
        final = self.dir / archive_name(seq)

        # 0. The marker: the next command finishes whatever of 1-4 a crash leaves.
        marked = dict(state, rotating={"seq": seq})
        write_state(marked)
        _after_step("marked")

        # 1. The archive: temp name, fsync, rename, fsync the directory.
        import gzip

        tmp: Path | None = None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            data = gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)
            tmp, fd = fsutil.create_temp(final)  # a random name, O_EXCL: nothing planted
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            _after_step("compressed")
            os.replace(tmp, final)
        except OSError as exc:
            # Nothing is archived yet: take the marker back; the next write retries.
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            with contextlib.suppress(OSError, MilestoneError):
                write_state(state)
            raise fsutil.storage_error(exc, final, "write") from None
        fsutil.fsync_dir(self.dir)
        _after_step("archived")

        # 2. The index entry (from the bytes just archived: no need to read them back).
        index[seq] = self.describe(seq, raw)
        self.write_index(index)
        _after_step("indexed")

        # 3. An empty live log, by rename: readers holding the old one read it whole.
        fsutil.atomic_write(self.live, b"")
        _after_step("emptied")

        # 4. state.json: nothing of the (empty) live log is applied; no marker.
        done = dict(state, log_size=0)
        done.pop("rotating", None)
        write_state(done)
        return done

    def finish(self, state: dict[str, Any]) -> Finished:
        """Finish (or undo) an interrupted rotation; see the module's docstring.

        Runs under the writer lock before anything else touches the log.
        """
        out = Finished()
        marker = state.get("rotating")
        if marker:
            self._remove_temps()  # temp files exist only if a rotation died writing them
        archives = self.archives()
        new = dict(state)
        if marker:
            new.pop("rotating", None)
            out.state = new
            seq = marker.get("seq") if isinstance(marker, dict) else None
            if not any(s == seq for s, _ in archives):
                out.repairs.append(
                    "undid an interrupted log rotation: no archive was written and "
                    f"{self.live.name} is unchanged"
                )
        if not archives:
            return out
        index = self.read_index()
        added = []
        for seq, path in archives:
            if seq in index:
                continue
            try:
                index[seq] = self.describe(seq, read_gzip(path))
            except StorageError:
                continue  # damaged: left for `milestone doctor` to report
            added.append(path.name)
        if added:
            self.write_index(index)
            out.repairs.append(f"indexed {', '.join(added)} (a log rotation was interrupted)")
        latest = next((index[s] for s, _ in reversed(archives) if s in index), None)
        if latest is None:
            return out
        last_id, last_hash = latest["last_id"], latest["last_hash"]
        out.archived_through = last_id
        cut = self._archived_prefix(last_id, last_hash)
        if cut is None:
            return out  # the live log does not continue the archives: doctor reports it
        if cut:
            raw = fsutil.read_bytes(self.live)
            fsutil.atomic_write(self.live, raw[cut:])
            new["log_size"] = max(0, int(new.get("log_size", 0)) - cut)
            out.state = new
            out.repairs.append(
                f"finished an interrupted log rotation: removed from {self.live.name} the "
                f"events through #{last_id}, which are in {latest.get('file', 'the archive')}"
            )
        if new.get("applied_event_id") == last_id and new.get("log_size") != 0:
            # Every applied event is archived: none of the live log is applied.
            new["log_size"] = 0
            out.state = new
            if not cut:
                out.repairs.append("finished an interrupted log rotation (state.json)")
        if marker and not out.repairs:
            out.repairs.append("finished an interrupted log rotation")
        return out

    def _archived_prefix(self, last_id: int, last_hash: str) -> int | None:
        """Bytes at the start of the live log that repeat archived events (through
        ``last_id``): 0 when it starts after them, None when it disagrees with them."""
        live = self._open_live()
        if live is None:
            return 0
        with live:
            offset = 0
            repeats = False  # seen an event with an id <= last_id
            for line in live:
                if not line.endswith(b"\n"):
                    break  # a torn last line: recover truncates it
                offset += len(line)
                if not line.strip():
                    continue
                event = loads_line(line)
                eid = event.get("event_id")
                if not isinstance(eid, int):
                    return None
                if eid > last_id:
                    return None if repeats else 0
                repeats = True
                if eid == last_id:
                    return offset if event.get("hash") == last_hash else None
            return None if repeats else 0

    def _remove_temps(self) -> None:
        """Temp files a crash mid-rotation left (the archive's, the index's, the live
        log's): never read, only removed (under the writer lock)."""
        stale: list[Path] = []
        with contextlib.suppress(OSError):
            stale += [self.dir / n for n in os.listdir(self.dir)
                      if n.startswith(".") and ".tmp-" in n]
        prefix = f".{self.live.name}.tmp-"
        with contextlib.suppress(OSError):
            stale += [self.live.parent / n for n in os.listdir(self.live.parent)
                      if n.startswith(prefix)]
        for path in stale:
            with contextlib.suppress(OSError):
                path.unlink()

    def discard(self) -> None:
        """Remove every archive and the index (a migration's leftovers)."""
        for _seq, path in self.archives():
            path.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.index_path.unlink()

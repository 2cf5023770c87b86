"""The file backend's import (a migration's copy to YAML), written batch by batch.

The log is written as the events come, then ``current.txt``, then each batch of
snapshots as YAML files while ``logs/state.json`` is written beside them, one
milestone a line (still one JSON object, as ``file_base`` reads it), so the copy
never holds the whole project. ``snapshot_batches`` and ``head_state`` read such a
state.json back a line at a time (a migration's verification); a state.json a
commit rewrote since is read whole, as always.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import MilestoneError
from ..model import events as ev
from . import fsutil, yamlio
from .base import Snapshot, State
from .file_base import FILE_RE, STATE_FILE_RE, sha
from .file_edits import FileEdits

MILESTONES_KEY = '"milestones":{'


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@contextlib.contextmanager
def _streamed(path: Path) -> Iterator[IO[bytes]]:
    """A new file written piece by piece, renamed into place when whole (no fsync: the
    import ends with one ``sync_everything``)."""
    tmp, fd = fsutil.create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_new(path: Path, data: bytes) -> os.stat_result:
    """A milestone file of an import, written in place: ``discard`` removed the old
    ones and nothing reads these before the switch, so no temp file, rename or fsync
    (the import ends with one ``sync_everything``). ``O_EXCL``: never into a file
    planted meanwhile (a link, a hard link); such a name gets ``atomic_write``."""
    try:
        fd = fsutil.open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        fsutil.atomic_write(path, data, sync=False)
        return path.stat()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        return os.fstat(fd)
    finally:
        os.close(fd)


class FileImport(FileEdits):
    """``import_data`` and ``import_stream`` of the file backend, and the reading back
    of what they wrote (see ``file.FileStore``)."""

    def import_data(self, events: Sequence[dict[str, Any]], state: State,
                    resume: dict[str, Any], sources: dict[str, str]) -> None:
        """Write another backend's data as files: the log verbatim, each milestone as the
        text it was last written as when that text still says the same, else afresh."""
        mids = sorted(state.milestones)
        batches = ([state.milestones[m] for m in mids[i:i + 1000]]
                   for i in range(0, len(mids), 1000))
        self.import_stream([events], batches, state, resume,
                           lambda want: {m: sources[m] for m in want if m in sources})

    def import_stream(self, events: Iterable[Sequence[dict[str, Any]]],
                      snapshots: Iterable[Sequence[Snapshot]], head: State,
                      resume: dict[str, Any],
                      sources: Callable[[Sequence[str]], dict[str, str]]) -> None:
        self.discard()
        self.initialize()
        log_size = 0
        try:
            with _streamed(self.log_path) as log:
                for batch in events:
                    data = "".join(ev.canonical(e) + "\n" for e in batch).encode("utf-8")
                    log.write(data)
                    log_size += len(data)
            marker = f"{head.current}\n".encode() if head.current else b""
            fsutil.atomic_write(self.current_path, marker, sync=False)
            # The one-file state of format 1 (every entry in state.json), which can be
            # written a milestone at a time; the first write converts it to a head, a
            # checkpoint and a journal (file_base).
            header = self._empty_state()
            header.update(version=1, applied_event_id=head.last_event_id,
                          applied_hash=head.last_hash, log_size=log_size,
                          max_number=head.max_number, current=head.current,
                          current_mtime_ns=self._current_mtime())
            del header["milestones"], header["checkpoint"]
            with _streamed(self.state_path) as out:
                out.write(f"{_json(header)[:-1]},{MILESTONES_KEY}\n".encode())
                sep = ""
                # Nothing reads these files before the migration switches to them: write
                # them all, then flush once (two fsyncs a file made 10,000 files take minutes).
                for batch in snapshots:
                    texts = sources([s["id"] for s in batch])
                    lines = []
                    for snap in batch:
                        entry = self._write_milestone_file(snap, texts.get(snap["id"]))
                        lines.append(f"{sep}{_json(snap['id'])}:{_json(entry)}")
                        sep = ",\n"
                    out.write("".join(lines).encode("utf-8"))
                out.write(b"\n}}\n")
        except OSError as exc:
            raise fsutil.storage_error(exc, self.root, "write into") from None
        fsutil.sync_everything()
        self._state = None
        if resume:
            self.write_resume(resume)

    def _write_milestone_file(self, snap: Snapshot, source: str | None) -> dict[str, Any]:
        """A milestone's file, written; its state.json entry."""
        rel = self._relpath(snap)
        fresh = yamlio.dump_fast(snap)
        text = self.file_text(snap, source, fresh)
        data = text.encode("utf-8")
        st = _write_new(self.root / rel, data)
        return {"path": rel, "sha256": sha(data), "mtime_ns": st.st_mtime_ns,
                "size": st.st_size, "roundtrip": text != fresh, "state": snap}

    def file_text(self, snap: Snapshot, source: str | None, fresh: str | None = None) -> str:
        """The text a milestone's file gets: ``source`` (what it was last written as) when
        that still says the same, comments and all, else a fresh ``dump_fast`` (``fresh``,
        when the caller made it already)."""
        fresh = yamlio.dump_fast(snap) if fresh is None else fresh
        if source is None or source == fresh:
            return fresh
        try:
            same = self._parse_file(self._relpath(snap), source.encode("utf-8")) == snap
        except MilestoneError:
            same = False
        return source if same else fresh

    # ------------------------------------------------------- reading it back

    def _state_lines(self) -> Generator[tuple[str, Any], None, None] | None:
        """state.json as ``import_stream`` wrote it, a line at a time: ("head", the
        header), then (milestone id, entry) in file order. None when it is not in that
        form (or is missing): read it whole then. Lines that do not parse raise
        ValueError."""
        try:
            f = fsutil.open_read(self.state_path)
        except OSError:
            return None
        first = f.readline()
        if not first.rstrip(b"\n").endswith(MILESTONES_KEY.encode()):
            f.close()
            return None

        def lines() -> Generator[tuple[str, Any], None, None]:
            with f:
                yield "head", fsutil.loads_json(first.rstrip(b"\n") + b"}}")
                for raw in f:
                    line = raw.rstrip(b"\n").rstrip(b",")
                    if line == b"}}":
                        return
                    if line:
                        yield from fsutil.loads_json(b"{" + line + b"}").items()
                raise ValueError("state.json ends early")

        return lines()

    def snapshot_batches(self, size: int) -> Iterator[list[Snapshot]]:
        lines = self._state_lines() if self._state is None else None
        if lines is None:
            yield from super().snapshot_batches(size)
            return
        batch: list[Snapshot] = []
        for mid, entry in lines:
            if mid == "head":
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("state"), dict):
                raise ValueError(f"state.json's entry of {mid} holds no snapshot")
            batch.append(entry["state"])
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch

    def head_state(self) -> State:
        lines = self._state_lines() if self._state is None else None
        if lines is None:
            return super().head_state()
        _key, head = next(lines)
        lines.close()
        return State({}, head.get("current"), head.get("max_number", 0),
                     head["applied_event_id"], head["applied_hash"])

    def source_texts(self, mids: Sequence[str]) -> dict[str, str]:
        """The files of these milestones only (``sources`` reads every file)."""
        files = self.milestone_files()
        out: dict[str, str] = {}
        for mid in mids:
            if found := files.get(mid):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    out[mid] = fsutil.read_bytes(self.root / found[0][0]).decode("utf-8")
        return out

    def discard(self) -> None:
        """Remove this backend's data files (a failed migration's half-made copy)."""
        for folder in ("active", "completed"):
            d = self.root / folder
            if d.is_dir():
                for entry in d.iterdir():
                    if FILE_RE.match(entry.name) or entry.name == "current.txt":
                        entry.unlink()
        records = self.records_dir.glob("*.json") if self.records_dir.is_dir() else ()
        states = [p for p in self.logs.glob("state-*") if STATE_FILE_RE.match(p.name)]
        for path in (self.log_path, self.state_path, self.resume_path, *records, *states):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.log_files.discard()
        self._state = None

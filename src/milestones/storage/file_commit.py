"""The file backend's writes: ``commit`` (the event appended, then the files it
changes and ``logs/state.json`` written with fsync, each undone on a failure),
materializing snapshots into YAML files, and the log's rotation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import Conflict, MilestoneError
from ..model import events as ev
from . import fsutil, yamlio
from .base import Snapshot
from .file_base import sha
from .file_state import FileState, Undo, state_text


class HandEdited(Conflict):
    """A file the tool was about to replace changed since it last wrote it, though its
    size and mtime did not (so the scan before the write took it as unchanged).
    ``Project`` records the edit, then reports this; nothing else is written."""

    hand_edit = True



class FileCommit(FileState):
    """The file backend's commit, materialize and rotation (see ``file.FileStore``)."""

    # -------------------------------------------------------------- commit

    def commit(
        self, events: Sequence[dict[str, Any]], adopt: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        state = self._state if self._state is not None else self._read_state()
        self._state = state
        last_id, last_hash = state["applied_event_id"], state["applied_hash"]
        sealed, lines = [], []
        for e in events:
            last_id += 1
            event, line = ev.seal_line(dict(e), last_id, last_hash)
            sealed.append(event)
            lines.append(line + "\n")
            last_hash = event["hash"]
        before = fsutil.append_durable(self.log_path, "".join(lines).encode("utf-8"))
        del lines  # the events' text (a created milestone's whole) is not held from here
        # The commit point: the events in the log AND every file (state.json last)
        # written. Before it, a failure undoes the files and takes the events back;
        # after it (rotation, the hybrid index) trouble is only a warning.
        self._undone = True
        try:
            self._materialize(sealed, adopt)
        except BaseException as exc:
            self._state = None
            taken_back = self._undone
            if taken_back:
                try:
                    fsutil.truncate_durable(self.log_path, before)
                except OSError:
                    taken_back = False
            if taken_back or not isinstance(exc, Exception):
                raise
            # The events stay in the log, so the change has happened: the next
            # command (recover) writes its files from the log. Not an error exit,
            # or a retry would make the change twice.
            self.warn(f"the change is in the event log, but its files were not all "
                       f"written ({exc}); the next command finishes them from the log")
            return sealed
        self._maybe_rotate()
        return sealed

    # ------------------------------------------------------------ rotation

    def _maybe_rotate(self) -> None:
        """After a commit: archive the live log once it is over ``logs.rotate_bytes``.

        The commit has fully applied (``log_size`` is the live log's size), so the
        archive holds no pending event. See ``logfiles`` for the steps and why a
        crash at any point loses and duplicates nothing. A failure here does not
        fail the commit, which is done: the next write retries or finishes it.
        """
        if self._rotate_limit is None:
            from .logfiles import rotate_bytes

            self._rotate_limit = rotate_bytes(self.root)
        state = self._state
        if (
            not self._rotate_limit
            or state is None
            or self._log_size() <= self._rotate_limit
            or state.get("rotating")
        ):
            return
        try:
            self._state = self.log_files.rotate(state, self._write_state) or state
        except (MilestoneError, OSError) as exc:
            self._state = None  # re-read: recover() finishes a half-done rotation
            self.warn(f"the event log was not rotated ({exc}); the next write retries")
        except BaseException:
            self._state = None
            raise

    def _finish_rotation(self) -> list[str]:
        """Finish or undo a rotation a crash interrupted (from ``recover``)."""
        state = self._state if self._state is not None else self._read_state()
        done = self.log_files.finish(state)
        if done.state is not None:
            state = done.state
            self._write_state(state)
        if state["applied_event_id"] < done.archived_through:
            # state.json is behind the archives (an old copy): pending events are
            # no longer all in the live log, so derive it from every file.
            state = self._rebuild_state()
            self._write_state(state)
            done.repairs.append("state.json was behind the archived event log; rebuilt it")
        self._state = state
        return done.repairs

    def _materialize(self, sealed: Sequence[dict[str, Any]], adopt: Sequence[str]) -> None:
        """Apply sealed events' patches to the snapshots and files, then state.json."""
        state = self._state if self._state is not None else self._read_state()
        # Writing on from the state this object wrote last, twice in a row or more: a
        # long-lived writer (milestone execute, an agent's loop) that will write again,
        # so keeping the text of the records it renders pays (see state_text). A
        # one-shot write, or processes taking turns, would fill the caches for nothing.
        self._streak = self._streak + 1 if self._written[1] is state else 0
        warm = self._streak >= 2
        entries: dict[str, Any] = state["milestones"]
        replay = ev.ReplayState()
        replay.milestones = {mid: e["state"] for mid, e in entries.items()}
        replay.current = state.get("current")
        replay.max_number = state.get("max_number", 0)
        touched: list[str] = []
        for e in sealed:
            replay.feed(e)
            mid = e.get("milestone_id")
            if mid and mid not in touched and e.get("data"):
                touched.append(mid)
        written: list[Undo] = []  # for undo: (path, link to the old file, old bytes)
        new_entries = dict(entries)
        try:
            for mid in touched:
                snap = replay.milestones.get(mid)
                old = entries.get(mid)
                if mid in adopt:
                    if snap is None:
                        new_entries.pop(mid, None)
                    else:
                        new_entries[mid] = self._adopt_entry(mid, snap)
                    continue
                if snap is None:
                    if old is not None:
                        self._remove(self.root / old["path"], written, old.get("sha256"))
                    new_entries.pop(mid, None)
                    continue
                rel = self._relpath(snap)
                path = self.root / rel
                roundtrip = bool(old and old.get("roundtrip"))
                text = self._render(snap, old, roundtrip, reuse=warm)
                data = text.encode("utf-8")
                yamlio.check_writable(len(data), f".milestones/{rel}")
                kept = old["sha256"] if old is not None and old["path"] == rel else None
                self._write(path, data, written, kept)
                if old is not None and old["path"] != rel:
                    self._remove(self.root / old["path"], written, old.get("sha256"))
                st = path.stat()
                new_entries[mid] = {
                    "path": rel,
                    "sha256": sha(data),
                    "mtime_ns": st.st_mtime_ns,
                    "size": st.st_size,
                    "roundtrip": roundtrip,
                    "state": snap,
                }
            if replay.current != state.get("current") or (
                replay.current and self._read_current_marker() != replay.current
            ):
                current_bytes = f"{replay.current}\n".encode() if replay.current else b""
                self._write(self.current_path, current_bytes, written,
                            state.get("current") or "")
            new_state = dict(state)
            new_state.update(
                milestones=new_entries,
                current=replay.current,
                max_number=max(replay.max_number, state.get("max_number", 0)),
                applied_event_id=sealed[-1]["event_id"] if sealed else state["applied_event_id"],
                applied_hash=sealed[-1]["hash"] if sealed else state["applied_hash"],
                log_size=self._log_size(),
                current_mtime_ns=self._current_mtime(),
            )
            # Last: the touched entries (a journal line), then the head.
            self._write_state(new_state, reuse=warm, changed=touched, written=written)
        except BaseException:
            # Undo every file (state.json included) so the caller can take the
            # events back: a half-done write must not survive as a "hand edit".
            # The old files are kept as hard links, so the undo is a rename and
            # needs no space on a full disk.
            self._written = (None, None)
            for path, link, old_bytes in reversed(written):
                try:
                    if link is not None:
                        os.replace(link, path)
                        # Still there when both were one file (never replaced): rename()
                        # of a hard link onto itself does nothing.
                        link.unlink(missing_ok=True)
                    elif old_bytes is None:
                        path.unlink(missing_ok=True)
                    else:
                        fsutil.atomic_write(path, old_bytes)
                except (OSError, MilestoneError):
                    self._undone = False
            raise
        self._state = new_state
        for _path, link, _old in written:
            if link is not None:
                with contextlib.suppress(OSError):
                    link.unlink()
        if new_state["checkpoint"] is not state.get("checkpoint") and \
                new_state["checkpoint"]["token"] != (state.get("checkpoint") or {}).get("token"):
            self.drop_old_checkpoints(new_state["checkpoint"]["token"])

    def _adopt_entry(self, mid: str, snap: Snapshot) -> dict[str, Any]:
        rel = self._relpath(snap)
        files = self.milestone_files().get(mid, [])
        rel = files[0][0] if files else rel
        raw = fsutil.read_bytes(self.root / rel, yamlio.MAX_FILE_BYTES)
        st = (self.root / rel).stat()
        return {
            "path": rel,
            "sha256": sha(raw),
            "mtime_ns": st.st_mtime_ns,
            "size": st.st_size,
            "roundtrip": True,
            "state": snap,
        }

    def _render(self, snap: Snapshot, old: Any, roundtrip: bool, *, reuse: bool = False) -> str:
        if roundtrip and old is not None:
            try:
                old_text = fsutil.read_bytes(self.root / old["path"]).decode("utf-8")
            except (OSError, UnicodeDecodeError):
                return yamlio.dump_fast(snap, reuse=reuse)
            return yamlio.dump_roundtrip(old_text, snap)
        return yamlio.dump_fast(snap, reuse=reuse)

    def _write(self, path: Path, data: bytes, written: list[Undo],
               expect: str | None = None) -> None:
        """Replace ``path`` with ``data``. ``expect``: what the tool last wrote there (a
        milestone file's SHA-256, current.txt's id); other bytes are a hand edit."""
        if expect is not None:
            old = fsutil.read_existing(path)
            if old != data:  # else the file holds what is written: nothing to lose
                self._check_unchanged(path, old, expect)
        self._keep_old(path, written)  # before the write: an interrupt may land after the rename
        fsutil.atomic_write(path, data)

    def _check_unchanged(self, path: Path, old: bytes | None, expect: str | None) -> None:
        """Before a file is replaced or removed: the content check behind the scan's
        size-and-mtime shortcut. A difference is never written over."""
        if old is None or expect is None or self._recovering:
            return
        if path == self.current_path:
            if old.decode("utf-8", "replace").strip() == expect:
                return
        elif sha(old) == expect:
            return
        rel = path.relative_to(self.root).as_posix()
        self._suspect.add(rel)
        raise HandEdited(
            f".milestones/{rel} was edited by hand since the tool last wrote it (its size "
            f"and time unchanged); the edit is kept and recorded, and this command changed "
            f"nothing",
            hint="check the edit (`milestone log`), then run the command again")

    def _remove_undo_links(self) -> None:
        for folder in (self.active, self.completed, self.logs):
            with contextlib.suppress(OSError):
                for name in os.listdir(folder):
                    if name.startswith(".") and ".tmp-undo-" in name:
                        with contextlib.suppress(OSError):
                            (folder / name).unlink()

    def _remove(self, path: Path, written: list[Undo], expect: str | None = None) -> None:
        if expect is not None:
            old = fsutil.read_existing(path)
            if old is None:
                return
            self._check_unchanged(path, old, expect)
        elif not path.exists():
            return
        self._keep_old(path, written)  # before the unlink, as in _write
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise fsutil.storage_error(exc, path, "remove") from None
        fsutil.fsync_dir(path.parent)


__all__ = ["FileCommit", "HandEdited", "Undo", "state_text"]

"""The file backend's state files written: the head (``logs/state.json``), a journal
line of the entries a write changed, or a new checkpoint of them all (see
``file_base`` for the layout and reading), and how a write keeps what it replaces.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import MilestoneError
from . import fsutil, yamlio
from .file_base import JOURNAL_MIN, JOURNAL_SHARE, STATE_FILE_RE, FileBase

Undo = tuple[Path, "Path | None", "bytes | None"]  # see FileState._keep_old


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_TASK_JSON: yamlio.RecordText[str] = yamlio.RecordText()


def state_text(state: Mapping[str, Any], *, reuse: bool = False) -> str:
    """A state checkpoint's (or journal line's) JSON: ``state["milestones"]`` holds the
    entries, each with its milestone's snapshot, and a write changes one or two task
    records: with ``reuse`` (a writer that writes again and again) the JSON of each task
    record is reused from the write before when the record is the same
    (``yamlio.RecordText``); a one-shot write encodes it all at once."""
    if not reuse:
        return _json(state)
    entries = [f"{_json(mid)}:{_entry_text(entry)}" for mid, entry in state["milestones"].items()]
    rest = _json({k: v for k, v in state.items() if k != "milestones"})
    milestones = f'"milestones":{{{",".join(entries)}}}'
    return f"{rest[:-1]},{milestones}}}" if len(rest) > 2 else f"{{{milestones}}}"


def _entry_text(entry: Any) -> str:
    snap = entry.get("state") if isinstance(entry, dict) else None
    if not isinstance(snap, dict) or not isinstance(snap.get("tasks"), list) \
            or not snap["tasks"]:
        return _json(entry)
    texts = []
    for t in snap["tasks"]:
        text = _TASK_JSON.get(t)
        if text is None:
            text = _json(t)
            _TASK_JSON.put(t, text)
        texts.append(text)
    head = _json({k: v for k, v in snap.items() if k != "tasks"})
    body = f'"tasks":[{",".join(texts)}]'
    snap_text = f"{head[:-1]},{body}}}" if len(head) > 2 else f"{{{body}}}"
    rest = _json({k: v for k, v in entry.items() if k != "state"})
    return f'{rest[:-1]},"state":{snap_text}}}' if len(rest) > 2 \
        else f'{{"state":{snap_text}}}'


class FileState(FileBase):
    """Writing the file backend's state (see ``file.FileStore``)."""

    def _keep_old(self, path: Path, written: list[Undo]) -> None:
        """Note how to put ``path`` back, before it is replaced or removed: a hard
        link to the old file (undone by a rename, which needs no space), else its
        bytes (a file system without hard links)."""
        link = path.with_name(f".{path.name}.tmp-undo-{os.getpid()}")
        try:
            try:
                os.link(path, link, follow_symlinks=False)
            except FileExistsError:  # left by a process of the same pid that died
                link.unlink()
                os.link(path, link, follow_symlinks=False)
        except FileNotFoundError:
            written.append((path, None, None))  # a new file: undone by removing it
            return
        except OSError:
            written.append((path, None, fsutil.read_existing(path)))
            return
        written.append((path, link, None))

    def _write_state(self, state: dict[str, Any], *, reuse: bool = False,
                     changed: Iterable[str] = (), written: list[Undo] | None = None) -> None:
        """Write ``state``: the entries of ``changed`` as a line of the journal (every
        entry as a new checkpoint when there is none yet, or the journal has grown past
        a share of it), then the head, ``state.json``, last: until the head names them,
        a new journal line or checkpoint is ignored (a write cut short). ``written``
        (a commit's undo list) gets how to put the head back."""
        # Derived from the log, which is fsynced first: a state left behind by a power
        # cut (older, or cut short) is caught up (recover) or rebuilt (_read_state).
        self._written = (None, None)
        old: dict[str, Any] | None = state.get("checkpoint")
        changed = sorted(set(changed) | self._refreshed)
        self._refreshed = set()
        # A head-only write (rotation, a log size) never starts a new checkpoint unless
        # its own is gone: whoever holds the old head dict writes it next.
        seen, tail = self._seen
        tail_known = True
        if old is None or not self._checkpoint_fits(old) or (changed and old["journal"] > max(
                JOURNAL_MIN, old["size"] // JOURNAL_SHARE)):
            point, tail = self._write_checkpoint(state, reuse=reuse, written=written), b""
        elif changed:
            point, tail = self._append_journal(state, old, changed, reuse=reuse)
        else:
            point = old
            tail_known = seen is not None and seen.get("checkpoint") == old
        state["checkpoint"] = point
        if written is not None:
            # Its old copy kept like the others: an interrupt can land right after the
            # rename, and a state ahead of the log is damage (recover).
            self._keep_old(self.state_path, written)
        head = {k: v for k, v in state.items() if k != "milestones"}
        try:
            fsutil.atomic_write(self.state_path, _json(head).encode("utf-8"), sync=False)
        except BaseException:
            if point is not old and old is not None and point["token"] == old["token"]:
                # The line the head does not cover is ignored; take it back all the same.
                with contextlib.suppress(OSError, MilestoneError):
                    self._cut_journal(old)
            raise
        # The next write's recover() keeps this very object (no re-read; snapshots
        # keep sharing their unchanged task records) while the state files and the log
        # are the files this object left: nobody else wrote since.
        self._written = (self._disk_key(), state)
        self._seen = (state, tail) if tail_known else (None, b"")
        if written is None and point["token"] != (old or {}).get("token"):
            # (A commit drops them once it cannot be undone.)
            self.drop_old_checkpoints(point["token"])

    def _checkpoint_fits(self, point: Mapping[str, Any]) -> bool:
        """Is the checkpoint there, and does its journal hold at least the bytes the
        head covers (the next line goes right after them)? Not after a power cut that
        lost its tail."""
        try:
            os.stat(self.checkpoint_path(point["token"]))
            return bool(os.stat(self.journal_path(point["token"])).st_size >= point["journal"])
        except FileNotFoundError:
            return bool(point["journal"] == 0 and self.checkpoint_path(point["token"]).exists())
        except OSError:
            return False

    def _write_checkpoint(self, state: Mapping[str, Any], *, reuse: bool,
                          written: list[Undo] | None) -> dict[str, Any]:
        token = os.urandom(8).hex()
        path = self.checkpoint_path(token)
        text = state_text({"token": token, "milestones": state["milestones"]}, reuse=reuse)
        data = text.encode("utf-8")
        if written is not None:
            written.append((path, None, None))  # a new file: undone by removing it
        fsutil.fault("write:state-checkpoint")
        fsutil.atomic_write(path, data, sync=False)
        return {"token": token, "journal": 0, "size": len(data)}

    def _append_journal(self, state: Mapping[str, Any], point: Mapping[str, Any],
                        changed: Sequence[str], *, reuse: bool) -> tuple[dict[str, Any], bytes]:
        """Write the ``changed`` entries (None: removed) right after the journal bytes
        the head covers (dropping any a write cut short left after them)."""
        entries = state["milestones"]
        line = state_text({"token": point["token"],
                           "milestones": {mid: entries.get(mid) for mid in changed}},
                          reuse=reuse) + "\n"
        data = line.encode("utf-8")
        path = self.journal_path(point["token"])
        fsutil.fault("write:state-journal")
        try:
            fd = fsutil.open_nofollow(path, os.O_WRONLY | os.O_CREAT)
        except OSError as exc:
            raise fsutil.storage_error(exc, path, "write") from None
        try:
            os.ftruncate(fd, point["journal"])
            view = memoryview(data)
            offset = point["journal"]
            while view:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n
        except OSError as exc:
            raise fsutil.storage_error(exc, path, "write") from None
        finally:
            os.close(fd)
        return {**point, "journal": point["journal"] + len(data)}, data

    def _cut_journal(self, point: Mapping[str, Any]) -> None:
        fd = fsutil.open_nofollow(self.journal_path(point["token"]), os.O_WRONLY)
        try:
            os.ftruncate(fd, point["journal"])
        finally:
            os.close(fd)

    def drop_old_checkpoints(self, token: str) -> None:
        """Remove the checkpoints and journals but ``token``'s (the head's)."""
        keep = {f"state-{token}.json", f"state-{token}.jsonl"}
        with contextlib.suppress(OSError):
            for name in os.listdir(self.logs):
                if STATE_FILE_RE.match(name) and name not in keep:
                    with contextlib.suppress(OSError):
                        (self.logs / name).unlink()

    def _disk_key(self) -> tuple[int, ...] | None:
        """Which state.json and log are on disk (inode, size, mtime of each)."""
        try:
            a, b = os.stat(self.state_path), os.stat(self.log_path)
        except OSError:
            return None
        return (a.st_ino, a.st_size, a.st_mtime_ns, b.st_ino, b.st_size, b.st_mtime_ns)

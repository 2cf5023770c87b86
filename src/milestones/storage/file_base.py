"""The file backend's base: its layout and lock, its state (read, checked for shape,
rebuilt from the log), the snapshots it serves and the event log it reads.
``file_commit`` writes on it; ``file_edits`` recovers it and finds hand edits.

The state is in three files of ``logs/`` (see ``read_stored``): ``state.json``, the head
(applied event, log size, current, ...; a few hundred bytes, replaced on every write and
last); ``state-<token>.json``, a checkpoint of every milestone's entry (snapshot, path,
hash, size, mtime); ``state-<token>.jsonl``, a journal of the entries changed since the
checkpoint, one line a write. The head names the checkpoint and how many bytes of the
journal it covers, so a write costs the milestones it touches, and a journal line the
head does not cover yet (a write cut short) is ignored.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import MilestoneError
from ..model import MILESTONE_ID_RE
from ..model import events as ev
from . import fsutil, yamlio
from .base import Snapshot, State, Store

if TYPE_CHECKING:
    from .logfiles import LogFiles

FILE_RE = re.compile(r"^(milestone-[0-9]{3,})\.yaml$")
STATE_VERSION = 2  # 1: one state.json holding every entry (read, then converted)
TOKEN_RE = re.compile(r"^[0-9a-f]{16}$")
STATE_FILE_RE = re.compile(r"^state-[0-9a-f]{16}\.jsonl?$")  # checkpoints and journals
JOURNAL_MIN = 1 << 20  # the journal is folded into a new checkpoint past this and a
JOURNAL_SHARE = 4  # quarter of the checkpoint's size


def sha(data: bytes) -> str:
    return ev.sha256_hex(data)


_STATE_TYPES: dict[str, Any] = {
    "applied_event_id": int, "applied_hash": str, "log_size": int, "max_number": int,
    "current": (str, type(None)), "current_mtime_ns": (int, type(None)), "milestones": dict,
}
_ENTRY_TYPES: dict[str, Any] = {"path": str, "sha256": str, "mtime_ns": int, "size": int,
                                "state": dict}
_CHECKPOINT_TYPES: dict[str, Any] = {"token": str, "journal": int, "size": int}


def head_fields_ok(head: dict[str, Any]) -> bool:
    """Does ``head`` hold every key of a state's head (all but its entries), each of its
    type?"""
    return not any(not isinstance(head.get(k), t) or isinstance(head.get(k), bool)
                   for k, t in _STATE_TYPES.items() if k != "milestones")


def head_shape_ok(head: Any) -> bool:
    """Is ``head`` a state.json head as this version writes it (every key, of its type,
    naming a checkpoint by its token)?"""
    if not isinstance(head, dict) or head.get("version") != STATE_VERSION:
        return False
    if not head_fields_ok(head):
        return False
    point = head.get("checkpoint")
    return (isinstance(point, dict)
            and all(isinstance(point.get(k), t) and not isinstance(point.get(k), bool)
                    for k, t in _CHECKPOINT_TYPES.items())
            and TOKEN_RE.match(point["token"]) is not None
            and point["journal"] >= 0 and point["size"] >= 0)


def entry_ok(mid: Any, e: Any) -> bool:
    if not isinstance(e, dict) or not all(isinstance(e.get(k), t)
                                          for k, t in _ENTRY_TYPES.items()):
        return False
    m = FILE_RE.match(str(e["path"]).rsplit("/", 1)[-1])
    return m is not None and m.group(1) == mid


def _state_shape_ok(state: Any, version: int = STATE_VERSION) -> bool:
    """Is ``state`` a state as this version holds it (every key, of its type), or (with
    ``version=1``) the one state.json of older versions?"""
    if not isinstance(state, dict) or state.get("version") != version:
        return False
    if any(not isinstance(state.get(k), t) or isinstance(state.get(k), bool)
           for k, t in _STATE_TYPES.items()):
        return False
    current = state.get("current")
    if current is not None and (not isinstance(current, str) or current not in state["milestones"]):
        return False  # a current milestone the state does not hold: damaged, rebuilt from the log
    return all(entry_ok(mid, e) for mid, e in state["milestones"].items())


def apply_journal(milestones: dict[str, Any], lines: Iterable[Any], token: str) -> bool:
    """Apply journal ``lines`` (decoded) to ``milestones``; False: one is not a line
    of ``token``'s journal. Entries are checked with the whole state, after."""
    for line in lines:
        if not isinstance(line, dict) or line.get("token") != token \
                or not isinstance(line.get("milestones"), dict):
            return False
        for mid, entry in line["milestones"].items():
            if entry is None:
                milestones.pop(mid, None)
            else:
                milestones[mid] = entry
    return True


def line_start(f: BinaryIO, end: int) -> int:
    """Where the line holding byte ``end - 1`` of the open file ``f`` starts: read
    backwards from ``end`` in 64 KiB steps to the newline before it (0 if none)."""
    pos = end
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        f.seek(pos)
        nl = f.read(step).rfind(b"\n")
        if nl >= 0:
            return pos + nl + 1
    return 0


class FileBase(Store):
    """The file backend's state and reading (see ``file.FileStore``)."""

    backend = "file"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.active = self.root / "active"
        self.completed = self.root / "completed"
        self.logs = self.root / "logs"
        self.config = self.root / "config"
        self.log_path = self.logs / "progress-events.jsonl"
        self.state_path = self.logs / "state.json"
        self.resume_path = self.logs / "session-resume.json"
        self.records_dir = root / "agents"  # agents.json, messages.json (milestones.agents.coord)
        self.current_path = self.active / "current.txt"
        self.lock_path = self.root / ".lock"
        self._state: dict[str, Any] | None = None
        # (files on disk, state object) of this object's last state.json write.
        self._written: tuple[tuple[int, ...] | None, dict[str, Any] | None] = (None, None)
        self._streak = 0  # writes in a row on from the state this object wrote
        self._log_files: LogFiles | None = None
        self._rotate_limit: int | None = None  # logs.rotate_bytes, read once
        # Files a write found changed behind an unchanged size and mtime: the next
        # scan_edits reads them whatever their stat says (see _write).
        self._suspect: set[str] = set()
        self._deep = False  # distrust(): the next scan reads every file
        # Entries a scan refreshed (size, mtime, hash) while it found edits: the next
        # state write journals them too.
        self._refreshed: set[str] = set()
        # (a state read or written, the last journal line it covers): what _catch_up
        # goes on from, checking that line is still where it was.
        self._seen: tuple[dict[str, Any] | None, bytes] = (None, b"")
        self._last_line = b""
        self._recovering = False
        # What ``recover`` found wrong with the log ("FILE:LINE: what"): events that do
        # not verify are not applied, and writes are refused until it is repaired.
        self.damage: str | None = None
        self._undone = True  # _materialize took back every file it wrote (see commit)

    @property
    def log_files(self) -> LogFiles:
        """The live log and its archives; imported on first use (~1 ms reads seldom need)."""
        if self._log_files is None:
            from .logfiles import LogFiles

            self._log_files = LogFiles(self.log_path)
        return self._log_files

    # ------------------------------------------------------------- layout

    def exists(self) -> bool:
        return (self.config / "storage-backend.txt").is_file() or self.active.is_dir()

    def initialize(self) -> None:
        try:
            for d in (self.active, self.completed, self.logs, self.config, self.logs / "archive"):
                d.mkdir(parents=True, exist_ok=True)
            backend = self.config / "storage-backend.txt"
            if not backend.exists():
                fsutil.atomic_write(backend, b"file\n")
            if not self.log_path.exists():
                fsutil.append_durable(self.log_path, b"")
            schema_path = self.root / yamlio.SCHEMA_FILE
            if not schema_path.exists():
                import json as _json

                from ..model.schema import milestone_schema

                text = _json.dumps(milestone_schema(), indent=2) + "\n"
                fsutil.atomic_write(schema_path, text.encode("utf-8"))
        except OSError as exc:
            raise fsutil.storage_error(exc, self.root, "create") from None

    def lock(self, timeout: float | None = None) -> AbstractContextManager[None]:
        if self._state is None:
            # Read the state before waiting for the lock, as any reader may: under it,
            # recover() reads only the journal lines written meanwhile (``_catch_up``),
            # so writers taking turns do not each hold the lock to read all of it.
            with contextlib.suppress(OSError, MilestoneError):
                self._state = self._assemble(fsutil.read_bytes(self.state_path))
        return fsutil.writer_lock(self.lock_path, timeout)

    def try_lock(self) -> AbstractContextManager[bool]:
        return fsutil.try_writer_lock(self.lock_path)

    # -------------------------------------------------------------- state

    def _empty_state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "applied_event_id": 0,
            "applied_hash": ev.GENESIS_HASH,
            "log_size": 0,
            "max_number": 0,
            "current": None,
            "current_mtime_ns": None,
            "checkpoint": None,  # none yet: the next write makes one
            "milestones": {},
        }

    def checkpoint_path(self, token: str) -> Path:
        return self.logs / f"state-{token}.json"

    def journal_path(self, token: str) -> Path:
        return self.logs / f"state-{token}.jsonl"

    def _read_state(self) -> dict[str, Any]:
        for _attempt in range(3):
            try:
                raw = fsutil.read_bytes(self.state_path)
            except FileNotFoundError:
                if self._log_size() or self.log_files.archives():
                    return self._rebuild_state()
                return self._empty_state()
            except OSError as exc:
                raise fsutil.storage_error(exc, self.state_path, "read") from None
            state = self._assemble(raw)
            if state is not None:
                return state
            try:  # a writer may have replaced the head and its checkpoint meanwhile
                again = fsutil.read_bytes(self.state_path)
            except OSError:
                break
            if again == raw:
                break
        # Derived, so rebuilt from the log when it is not what this version writes: a
        # damaged or hand-edited state file is never trusted key by key.
        return self._rebuild_state()

    def read_stored(self) -> dict[str, Any] | None:
        """The state as its files hold it (head, checkpoint, the journal the head
        covers), or None when they are missing or not what this version writes."""
        try:
            return self._assemble(fsutil.read_bytes(self.state_path))
        except OSError:
            return None

    def _assemble(self, raw: bytes) -> dict[str, Any] | None:
        try:
            head = fsutil.loads_json(raw)
        except ValueError:
            return None
        if isinstance(head, dict) and head.get("version") == 1:
            # An older version's one state.json: used as it is, converted to a
            # checkpoint and a head by the next write.
            if not _state_shape_ok(head, 1):
                return None
            head.update(version=STATE_VERSION, checkpoint=None)
            return head
        if not head_shape_ok(head):
            return None
        point = head["checkpoint"]
        try:
            data = fsutil.loads_json(fsutil.read_bytes(self.checkpoint_path(point["token"])))
            journal = self._read_journal(point["token"], point["journal"])
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("token") != point["token"] \
                or not isinstance(data.get("milestones"), dict):
            return None
        milestones: dict[str, Any] = data["milestones"]
        if not apply_journal(milestones, journal, point["token"]):
            return None
        state = dict(head)
        state["milestones"] = milestones
        if not _state_shape_ok(state):
            return None
        self._seen = (state, self._last_line)
        return state

    def _read_journal(self, token: str, size: int) -> list[Any]:
        """The first ``size`` bytes of the checkpoint's journal as JSON lines (ValueError:
        shorter, or not whole lines; bytes past ``size`` are a write cut short)."""
        self._last_line = b""
        if size == 0:
            return []
        with fsutil.open_read(self.journal_path(token)) as f:
            raw = f.read(size)
        if len(raw) != size or not raw.endswith(b"\n"):
            raise ValueError("journal cut short")
        lines = raw.split(b"\n")[:-1]
        self._last_line = lines[-1] + b"\n"
        return [fsutil.loads_json(line) for line in lines]

    def _rebuild_state(self) -> dict[str, Any]:
        """Derive state.json from the events of the log that verify (hashes empty: files
        are re-checked); a line that does not verify, and all after it, is not applied."""
        scan = self.log_files.scan(self.root)
        self.damage = scan.problem
        replayed = ev.replay(scan.events)
        state = self._empty_state()
        state.update(
            applied_event_id=replayed.last_id,
            applied_hash=replayed.last_hash,
            log_size=scan.live_end,
            max_number=replayed.max_number,
            current=replayed.current,
        )
        for mid, snap in replayed.milestones.items():
            state["milestones"][mid] = {
                "path": self._relpath(snap),
                "sha256": None,
                "mtime_ns": None,
                "size": None,
                "roundtrip": False,
                "state": snap,
            }
        return state

    def _relpath(self, snap: Snapshot) -> str:
        folder = "completed" if snap.get("status") == "archived" else "active"
        return f"{folder}/{snap['id']}.yaml"

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def state_entries(self) -> dict[str, Any]:
        """What ``logs/state.json`` (as last read) records of each milestone's file:
        id -> {path, hash, ...} (empty before the first read)."""
        return dict((self._state or {}).get("milestones", {}))

    def milestone_files(self) -> dict[str, list[tuple[str, os.stat_result]]]:
        """Milestone files on disk: id -> [(relative path, stat)]."""
        found: dict[str, list[tuple[str, os.stat_result]]] = {}
        for folder in ("active", "completed"):
            try:
                entries = os.scandir(self.root / folder)
            except FileNotFoundError:
                continue
            with entries:
                for entry in entries:
                    m = FILE_RE.match(entry.name)
                    if m and entry.is_symlink():
                        raise fsutil.link_refused(entry.path)
                    if m and entry.is_file():
                        found.setdefault(m.group(1), []).append(
                            (f"{folder}/{entry.name}", entry.stat())
                        )
        return found

    def needs_sync(self) -> bool:
        state = self._state if self._state is not None else self._read_state()
        self._state = state
        if self._log_size() != state["log_size"] or state.get("rotating") or self._suspect \
                or self._deep:
            return True  # "rotating": a log rotation was interrupted
        files = self.milestone_files()
        entries = state["milestones"]
        if set(files) != set(entries):
            return True
        for mid, found in files.items():
            entry = entries[mid]
            if len(found) != 1:
                return True
            rel, st = found[0]
            if (
                rel != entry["path"]
                or st.st_mtime_ns != entry["mtime_ns"]
                or st.st_size != entry["size"]
            ):
                return True
        return self._current_mtime() != state.get("current_mtime_ns")

    def _current_mtime(self) -> int | None:
        try:
            return self.current_path.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def _read_current_text(self) -> str:
        raw = fsutil.read_bytes(self.current_path, yamlio.MAX_FILE_BYTES)
        return raw.decode("utf-8", errors="replace").strip()

    def _read_current_marker(self) -> str | None:
        try:
            text = self._read_current_text()
        except FileNotFoundError:
            return None
        return text if MILESTONE_ID_RE.match(text) else None

    def load(self) -> State:
        state = self._state if self._state is not None else self._read_state()
        self._state = state
        return State(
            milestones={mid: e["state"] for mid, e in state["milestones"].items()},
            current=state.get("current"),
            max_number=state.get("max_number", 0),
            last_event_id=state["applied_event_id"],
            last_hash=state["applied_hash"],
        )

    def head(self) -> tuple[int, str] | None:
        """The head of the state in memory: what ``load()`` returns until ``needs_sync()``
        notices a change on disk (another process's write, a hand edit)."""
        state = self._state
        if state is None:
            return None
        return int(state["applied_event_id"]), str(state["applied_hash"])

    def invalidate(self) -> None:
        self._state = None

    # ------------------------------------------------------------- events

    def events(self, after: int = 0) -> Iterator[dict[str, Any]]:
        """Events after ``after``: the rotated archives in order, then the live log."""
        return self.log_files.events(after)

    def events_tail(
        self, limit: int, keep: Callable[[dict[str, Any]], bool], after: int = 0,
        **_filters: Any,
    ) -> list[dict[str, Any]]:
        """The last ``limit`` events ``keep`` accepts, reading only the newest files
        (the filters the database asks of its index are ``keep``'s here)."""
        return self.log_files.tail(limit, keep, after)

    def _torn_tail(self) -> int | None:
        """Offset where a torn (unterminated) last line starts, or None."""
        size = self._log_size()
        if size == 0:
            return None
        with fsutil.open_read(self.log_path) as f:
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return None
            return line_start(f, size)

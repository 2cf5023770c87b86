"""The YAML file backend: one milestone per file, an append-only JSONL event log.

Layout (see the README)::

    .milestones/
      active/milestone-001.yaml   active/current.txt   completed/milestone-000.yaml
      logs/progress-events.jsonl  logs/session-resume.json  logs/state.json
      config/storage-backend.txt  config/config.yaml

``logs/state.json`` is derived data: the snapshots as the log last left them,
with each file's hash, size and mtime. It makes reads cheap (no YAML parse
unless a file changed), tells a hand edit from the tool's own write, and gives
the "before" of a hand edit. It can always be rebuilt by replaying the log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import Conflict, InvalidInput, MilestoneError
from ..model import MILESTONE_ID_RE, Milestone
from ..model import events as ev
from . import fsutil, yamlio
from .base import Edit, Snapshot, State, Store

if TYPE_CHECKING:
    from .logfiles import LogFiles

FILE_RE = re.compile(r"^(milestone-[0-9]{3,})\.yaml$")
Undo = tuple[Path, "Path | None", "bytes | None"]  # see FileStore._keep_old
STATE_VERSION = 1
RECORD_LIMIT = 64 * 1024 * 1024  # agents.json, messages.json, session-resume.json
RESTORE_LIMIT = 4 * 1024 * 1024 * 1024  # Store.restore: all members together


class HandEdited(Conflict):
    """A file the tool was about to replace changed since it last wrote it, though its
    size and mtime did not (so the scan before the write took it as unchanged).
    ``Project`` records the edit, then reports this; nothing else is written."""

    hand_edit = True


def _sha(data: bytes) -> str:
    return ev.sha256_hex(data)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_TASK_JSON: yamlio.RecordText[str] = yamlio.RecordText()


def state_text(state: Mapping[str, Any], *, reuse: bool = False) -> str:
    """state.json's JSON. Every milestone's snapshot is in it and a write changes one
    or two task records: with ``reuse`` (a writer that writes again and again) the
    JSON of each task record is reused from the write before when the record is the
    same (``yamlio.RecordText``); a one-shot write encodes it all at once."""
    if not reuse:
        return _json(state)
    entries = []
    for mid, entry in state["milestones"].items():
        snap = entry.get("state") if isinstance(entry, dict) else None
        if not isinstance(snap, dict) or not isinstance(snap.get("tasks"), list) \
                or not snap["tasks"]:
            entries.append(f"{_json(mid)}:{_json(entry)}")
            continue
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
        entry_text = f'{rest[:-1]},"state":{snap_text}}}' if len(rest) > 2 \
            else f'{{"state":{snap_text}}}'
        entries.append(f"{_json(mid)}:{entry_text}")
    rest = _json({k: v for k, v in state.items() if k != "milestones"})
    milestones = f'"milestones":{{{",".join(entries)}}}'
    return f"{rest[:-1]},{milestones}}}" if len(rest) > 2 else f"{{{milestones}}}"


_STATE_TYPES: dict[str, Any] = {
    "applied_event_id": int, "applied_hash": str, "log_size": int, "max_number": int,
    "current": (str, type(None)), "current_mtime_ns": (int, type(None)), "milestones": dict,
}
_ENTRY_TYPES: dict[str, Any] = {"path": str, "sha256": str, "mtime_ns": int, "size": int,
                                "state": dict}


def _state_shape_ok(state: Any) -> bool:
    """Is ``state`` a state.json as this version writes it (every key, of its type)?"""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return False
    if any(not isinstance(state.get(k), t) or isinstance(state.get(k), bool)
           for k, t in _STATE_TYPES.items()):
        return False
    return all(isinstance(e, dict) and all(isinstance(e.get(k), t) for k, t in
                                           _ENTRY_TYPES.items())
               and FILE_RE.match(str(e["path"]).rsplit("/", 1)[-1]) is not None
               for e in state["milestones"].values())


def _line_start(f: BinaryIO, end: int) -> int:
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


class FileStore(Store):
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
            "milestones": {},
        }

    def _read_state(self) -> dict[str, Any]:
        try:
            raw = fsutil.read_bytes(self.state_path)
        except FileNotFoundError:
            if self._log_size() or self.log_files.archives():
                return self._rebuild_state()
            return self._empty_state()
        except OSError as exc:
            raise fsutil.storage_error(exc, self.state_path, "read") from None
        try:
            state = fsutil.loads_json(raw)
        except ValueError:
            return self._rebuild_state()
        # Derived, so rebuilt from the log when it is not what this version writes: a
        # damaged or hand-edited state.json is never trusted key by key.
        return state if _state_shape_ok(state) else self._rebuild_state()

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
        self, limit: int, keep: Callable[[dict[str, Any]], bool], after: int = 0
    ) -> list[dict[str, Any]]:
        """The last ``limit`` events ``keep`` accepts, reading only the newest files."""
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
            return _line_start(f, size)

    # ----------------------------------------------------------- recovery

    def recover(self) -> list[str]:
        repairs: list[str] = []
        self.damage = None
        if self._state is None or self._state is not self._written[1] \
                or self._written[0] != self._disk_key():
            self._state = self._read_state()  # else: what this object wrote last is on disk
        repairs += self._finish_rotation()
        torn = self._torn_tail()
        if torn is not None:
            try:
                fsutil.truncate_durable(self.log_path, torn)
            except OSError as exc:
                raise fsutil.storage_error(exc, self.log_path, "repair") from None
            repairs.append(f"truncated a torn last line at byte {torn} of {self.log_path.name}")
        state = self._state
        if self._log_size() != state["log_size"]:
            # Events after the applied head: each is checked (id, prev_hash, hash)
            # before it is applied; one that does not verify is not, nor any after it.
            pending, end, self.damage = self._check_log(state)
            if pending:
                # The files may hold these events' writes already (the crash came after
                # a rename): what is on disk is the tool's own, not a hand edit.
                self._recovering = True
                try:
                    self._materialize(pending, adopt=())
                finally:
                    self._recovering = False
                self._remove_undo_links()  # a writer died mid-write: its links stay behind
                repairs.append(
                    f"finished an interrupted write: applied events "
                    f"{pending[0]['event_id']}..{pending[-1]['event_id']}"
                )
                state = self._state
            if end is not None and end != state["log_size"]:
                state["log_size"] = end  # through the last event that verifies, no further
                self._write_state(state)
        return repairs

    def _check_log(self, state: dict[str, Any]) -> tuple[list[dict[str, Any]], int | None,
                                                          str | None]:
        """The events after ``state``'s applied head that verify, the live log's size
        through the last of them (None: leave ``log_size``), and what is wrong, if
        anything. ``log_size`` is trusted only when the line just before it is the
        applied event; else the whole log is read and verified."""
        applied, head = int(state["applied_event_id"]), str(state["applied_hash"])
        offset = int(state.get("log_size") or 0)
        if self._at_head(offset, applied, head):
            return self._pending_after(offset, applied, head)
        scan = self.log_files.scan(self.root)
        if self._holds(scan.events, applied, head):
            return scan.events[applied:], scan.live_end, scan.problem
        return [], None, scan.problem or self._missing(scan, applied)

    @staticmethod
    def _holds(events: Sequence[dict[str, Any]], applied: int, head: str) -> bool:
        """Do verified ``events`` (ids 1, 2, ...) include the applied head?"""
        if applied == 0:
            return head == ev.GENESIS_HASH
        return len(events) >= applied and events[applied - 1].get("hash") == head

    def _missing(self, scan: Any, applied: int) -> str:
        label = f".milestones/{self.log_path.relative_to(self.root).as_posix()}"
        if scan.live_missing and not scan.events:
            return (f"{label} is missing, but logs/state.json has {applied} events applied "
                    "(deleted?)")
        last = scan.events[-1]["event_id"] if scan.events else 0
        if last < applied:
            return (f"{label}: the log ends at event #{last}, but logs/state.json has "
                    f"#{applied} applied: events #{last + 1}..#{applied} are missing")
        return f"{label}: event #{applied} is not the event logs/state.json has applied"

    def _at_head(self, offset: int, applied: int, head: str) -> bool:
        """Is the line ending at byte ``offset`` of the live log the applied event?"""
        if offset == 0:
            if applied == 0:
                return not self.log_files.archives()
            index = self.log_files.read_index()
            latest = index[max(index)] if index else None
            return latest is not None and (latest["last_id"], latest["last_hash"]) == (
                applied, head)
        try:
            with fsutil.open_read(self.log_path) as f:
                if offset > os.fstat(f.fileno()).st_size:
                    return False
                f.seek(offset - 1)
                if f.read(1) != b"\n":
                    return False
                start = _line_start(f, offset - 1)
                f.seek(start)
                line = f.read(offset - 1 - start)
        except FileNotFoundError:
            return False
        try:
            event = json.loads(line)
        except ValueError:
            return False
        return isinstance(event, dict) and event.get("event_id") == applied and \
            event.get("hash") == head

    def _pending_after(self, offset: int, applied: int, head: str
                       ) -> tuple[list[dict[str, Any]], int, str | None]:
        """The events from byte ``offset`` of the live log on, up to the first that does
        not verify (chained on ``applied``/``head``); a torn last line is left out."""
        from .logfiles import lines_of

        with fsutil.open_read(self.log_path) as f:
            f.seek(offset)
            raw = f.read()
        out: list[dict[str, Any]] = []
        end = pos = offset
        for line in lines_of(raw):
            pos += len(line)
            if not line.endswith(b"\n"):
                break
            if not line.strip():
                end = pos
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            bad = (ev.verify_chain([event], head, applied) if isinstance(event, dict)
                   else (0, "not a JSON event"))
            if bad is not None:
                with fsutil.open_read(self.log_path) as f:
                    lineno = f.read(pos - len(line)).count(b"\n") + 1
                label = f".milestones/{self.log_path.relative_to(self.root).as_posix()}"
                return out, end, f"{label}:{lineno}: {bad[1]}"
            assert isinstance(event, dict)
            out.append(event)
            applied, head, end = event["event_id"], event["hash"], pos
        return out, end, None

    # ---------------------------------------------------------- hand edits

    def _parse_file(self, rel: str, raw: bytes) -> Snapshot:
        data = yamlio.load_bytes(raw, f".milestones/{rel}")
        if not isinstance(data, dict):
            raise InvalidInput(
                f".milestones/{rel}: expected a mapping of milestone fields",
                hint="start the file with `id: milestone-001`",
            )
        expected = Path(rel).stem
        if data.get("id") != expected:
            raise InvalidInput(
                f".milestones/{rel}: id {data.get('id')!r} does not match the file name",
                hint=f"set `id: {expected}` or rename the file",
            )
        try:
            return Milestone.from_dict(data, where=f".milestones/{rel}").to_dict()
        except MilestoneError as exc:
            msg = exc.message
            if not msg.startswith(".milestones/"):
                msg = f".milestones/{rel}: {msg}"
            raise InvalidInput(msg, hint=exc.hint) from None

    def scan_edits(self) -> list[Edit]:
        state = self._state if self._state is not None else self._read_state()
        self._state = state
        entries: dict[str, Any] = state["milestones"]
        edits: list[Edit] = []
        files = self.milestone_files()
        dirty = False
        for mid, found in sorted(files.items()):
            if len(found) > 1:
                paths = " and ".join(f".milestones/{rel}" for rel, _ in found)
                raise InvalidInput(f"{mid} exists twice: {paths}", hint="delete one of them")
            rel, st = found[0]
            entry = entries.get(mid)
            if (
                entry
                and rel == entry["path"]
                and st.st_mtime_ns == entry["mtime_ns"]
                and st.st_size == entry["size"]
                and rel not in self._suspect
                and not self._deep
            ):
                continue
            try:
                raw = fsutil.read_bytes(self.root / rel, yamlio.MAX_FILE_BYTES)
            except OSError as exc:
                raise fsutil.storage_error(exc, self.root / rel, "read") from None
            digest = _sha(raw)
            if entry and digest == entry["sha256"] and rel == entry["path"]:
                entry["mtime_ns"], entry["size"] = st.st_mtime_ns, st.st_size
                dirty = True
                continue
            after = self._parse_file(rel, raw)
            before = entry["state"] if entry else None
            if before == after and entry is not None:
                # Same data in other words (reformatted, comments): adopt quietly.
                entry.update(
                    path=rel,
                    sha256=digest,
                    mtime_ns=st.st_mtime_ns,
                    size=st.st_size,
                    roundtrip=raw != yamlio.dump_fast(after).encode("utf-8"),
                )
                dirty = True
                continue
            edits.append(Edit(mid, before, after, rel))
        for mid in sorted(set(entries) - set(files)):
            edits.append(Edit(mid, entries[mid]["state"], None, entries[mid]["path"]))
        if self._current_mtime() != state.get("current_mtime_ns") \
                or "active/current.txt" in self._suspect or self._deep:
            marker = self._edited_current_marker(set(files))
            if marker != state.get("current"):
                edits.append(Edit(marker or "", None, None, "active/current.txt", current=True))
            else:
                state["current_mtime_ns"] = self._current_mtime()
                dirty = True
        self._suspect.clear()
        self._deep = False
        if dirty and not edits:
            self._write_state(state)
        elif dirty:
            self._written = (None, None)  # changed here, not on disk: re-read next time
        return edits

    def distrust(self) -> None:
        """Make the next ``scan_edits`` compare every file by content, whatever its size
        and mtime say (before a migration copies the files: no edit may be missed)."""
        self._deep = True

    def _edited_current_marker(self, ids: set[str]) -> str | None:
        """The id in a hand-edited current.txt; refuse one that is no milestone here."""
        try:
            text = self._read_current_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise fsutil.storage_error(exc, self.current_path, "read") from None
        if text and text not in ids:
            raise InvalidInput(
                f".milestones/active/current.txt: {text[:80]!r} is not a milestone of this project",
                hint="write a milestone id there (e.g. milestone-001), or delete the file",
            )
        return text or None

    def _read_current_text(self) -> str:
        raw = fsutil.read_bytes(self.current_path, yamlio.MAX_FILE_BYTES)
        return raw.decode("utf-8", errors="replace").strip()

    def _read_current_marker(self) -> str | None:
        try:
            text = self._read_current_text()
        except FileNotFoundError:
            return None
        return text if MILESTONE_ID_RE.match(text) else None

    # -------------------------------------------------------------- commit

    def commit(
        self, events: Sequence[dict[str, Any]], adopt: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        state = self._state if self._state is not None else self._read_state()
        self._state = state
        last_id, last_hash = state["applied_event_id"], state["applied_hash"]
        sealed = []
        for e in events:
            last_id += 1
            sealed.append(ev.seal(dict(e), last_id, last_hash))
            last_hash = sealed[-1]["hash"]
        payload = "".join(ev.canonical(e) + "\n" for e in sealed).encode("utf-8")
        before = fsutil.append_durable(self.log_path, payload)
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
                    "sha256": _sha(data),
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
            # Last, its old copy kept like the others: an interrupt can land right
            # after the rename, and a state.json ahead of the log is damage (recover).
            self._keep_old(self.state_path, written)
            self._write_state(new_state, reuse=warm)
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

    def _adopt_entry(self, mid: str, snap: Snapshot) -> dict[str, Any]:
        rel = self._relpath(snap)
        files = self.milestone_files().get(mid, [])
        rel = files[0][0] if files else rel
        raw = fsutil.read_bytes(self.root / rel, yamlio.MAX_FILE_BYTES)
        st = (self.root / rel).stat()
        return {
            "path": rel,
            "sha256": _sha(raw),
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
            try:
                old = fsutil.read_bytes(path)
            except FileNotFoundError:
                old = None
            except OSError as exc:
                raise fsutil.storage_error(exc, path, "read") from None
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
        elif _sha(old) == expect:
            return
        rel = path.relative_to(self.root).as_posix()
        self._suspect.add(rel)
        raise HandEdited(
            f".milestones/{rel} was edited by hand since the tool last wrote it (its size "
            f"and time unchanged); the edit is kept and recorded, and this command changed "
            f"nothing",
            hint="check the edit (`milestone log`), then run the command again")

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
            try:
                old = fsutil.read_bytes(path)
            except FileNotFoundError:
                old = None
            except OSError as exc:
                raise fsutil.storage_error(exc, path, "read") from None
            written.append((path, None, old))
            return
        written.append((path, link, None))

    def _remove_undo_links(self) -> None:
        for folder in (self.active, self.completed, self.logs):
            with contextlib.suppress(OSError):
                for name in os.listdir(folder):
                    if name.startswith(".") and ".tmp-undo-" in name:
                        with contextlib.suppress(OSError):
                            (folder / name).unlink()

    def _remove(self, path: Path, written: list[Undo], expect: str | None = None) -> None:
        if expect is not None:
            try:
                old = fsutil.read_bytes(path)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise fsutil.storage_error(exc, path, "read") from None
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

    def _write_state(self, state: dict[str, Any], *, reuse: bool = False) -> None:
        # Derived from the log, which is fsynced first: a state.json left behind by a
        # power cut (older, or empty) is caught up (recover) or rebuilt (_read_state).
        self._written = (None, None)
        fsutil.atomic_write(self.state_path, state_text(state, reuse=reuse).encode("utf-8"),
                            sync=False)
        # The next write's recover() keeps this very object (no re-read; snapshots
        # keep sharing their unchanged task records) while state.json and the log are
        # the files this object left: nobody else wrote since.
        self._written = (self._disk_key(), state)

    def _disk_key(self) -> tuple[int, ...] | None:
        """Which state.json and log are on disk (inode, size, mtime of each)."""
        try:
            a, b = os.stat(self.state_path), os.stat(self.log_path)
        except OSError:
            return None
        return (a.st_ino, a.st_size, a.st_mtime_ns, b.st_ino, b.st_size, b.st_mtime_ns)

    # -------------------------------------------------------------- doctor

    def rotation_interrupted(self) -> bool:
        """A log rotation began (state.json's ``rotating`` marker) and did not end."""
        state = self._state if self._state is not None else self._read_state()
        return bool(state.get("rotating"))

    def repair_log(self, make: Callable[[str, str | None, dict[str, Any], str], dict[str, Any]]
                   ) -> list[str]:
        """``doctor --repair`` on a log that does not verify (under the writer lock).

        Never re-hashes over what is there. The first line that does not verify and
        every line after it (they chain on it) move to ``logs/quarantine/``, and the
        state goes back to the last event that verifies. A log whose applied events
        are gone (deleted, cut short) starts a new chain from the current state. Each
        is recorded as an event (``log_quarantined``, ``log_restarted``) made by
        ``make(event_type, milestone_id, data, summary)``."""
        self._state = state = self._read_state()
        scan = self.log_files.scan(self.root)
        applied, head = int(state["applied_event_id"]), str(state["applied_hash"])
        holds = self._holds(scan.events, applied, head)
        if scan.problem is None and holds:
            return []
        if scan.problem is not None and scan.bad_offset is None:
            return [f"left alone (restore the archive from a backup): {scan.problem}"]
        import time

        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        qdir = self.logs / "quarantine"
        try:
            if scan.problem is not None or self._log_size() or self.log_files.archives():
                qdir.mkdir(parents=True, exist_ok=True)
            if scan.problem is not None:
                return self._quarantine(scan, state, holds, qdir / f"progress-events-{stamp}.jsonl",
                                        make)
            return self._restart(state, qdir, stamp, make)
        except OSError as exc:
            raise fsutil.storage_error(exc, qdir, "repair") from None

    def _label(self, path: Path) -> str:
        return f".milestones/{path.relative_to(self.root).as_posix()}"

    def _quarantine(self, scan: Any, state: dict[str, Any], holds: bool, dest: Path,
                    make: Callable[[str, str | None, dict[str, Any], str], dict[str, Any]]
                    ) -> list[str]:
        cut = int(scan.bad_offset)
        moved = fsutil.read_bytes(self.log_path)[cut:]
        fsutil.atomic_write(dest, moved)  # first: the lines are kept before they are cut
        fsutil.truncate_durable(self.log_path, cut)
        lines = moved.count(b"\n") + (0 if moved.endswith(b"\n") else 1)
        repairs = [f"moved {lines} line(s) to {self._label(dest)}, not applied: {scan.problem}"
                   " (and every line after it)"]
        if holds:
            self._state = state
            repairs += self.recover()
        else:  # state.json was built on events that no longer verify
            kept = dest.with_suffix("")  # the files as they were, beside the lines moved
            for rel, _st in [f for found in self.milestone_files().values() for f in found]:
                (kept / rel).parent.mkdir(parents=True, exist_ok=True)
                fsutil.atomic_write(kept / rel, fsutil.read_bytes(self.root / rel), sync=False)
            changed = self.rebuild()
            repairs.append("rebuilt the snapshots from the events that verify"
                           + (f": {', '.join(changed)}" if changed else "")
                           + (f" (the files as they were are in {self._label(kept)})"
                              if kept.exists() else ""))
        data = {"quarantined": {"file": self._label(dest), "from_line": scan.bad_line,
                                "lines": lines, "problem": scan.problem}}
        self.commit([make("log_quarantined", None, data,
                          f"{lines} line(s) of the event log that do not verify moved to "
                          f"{self._label(dest)}")])
        return repairs

    def _restart(self, state: dict[str, Any], qdir: Path, stamp: str,
                 make: Callable[[str, str | None, dict[str, Any], str], dict[str, Any]]
                 ) -> list[str]:
        moved: list[str] = []
        if self._log_size():
            dest = qdir / f"progress-events-{stamp}.jsonl"
            os.replace(self.log_path, dest)
            moved.append(self._label(dest))
        archive_dir = self.log_files.dir
        if self.log_files.archives() or self.log_files.index_path.exists():
            dest = qdir / f"archive-{stamp}"
            os.replace(archive_dir, dest)
            archive_dir.mkdir()
            moved.append(self._label(dest))
        fsutil.atomic_write(self.log_path, b"")
        previous = {"event_id": state["applied_event_id"], "hash": state["applied_hash"]}
        fresh = dict(state, applied_event_id=0, applied_hash=ev.GENESIS_HASH, log_size=0)
        fresh.pop("rotating", None)
        self._state = fresh
        events = [make("log_restarted", None,
                       {"current": state.get("current"), "previous_head": previous,
                        "moved": moved},
                       f"the event log lost events #1..#{previous['event_id']}; a new chain "
                       "starts from the current state")]
        events += [make("log_restarted", mid, {"create": entry["state"]},
                        f"{mid} as it was when the event log restarted")
                   for mid, entry in sorted(state["milestones"].items())]
        self.commit(events)
        return [f"started a new event log from the current state ({len(events) - 1} "
                f"milestones); it had lost events up to #{previous['event_id']}"
                + (f"; what was left is in {', '.join(moved)}" if moved else "")]

    def check_files(self) -> list[tuple[str, Snapshot | None, str | None]]:
        """Every milestone file: (relative path, parsed snapshot or None, error or None)."""
        out: list[tuple[str, Snapshot | None, str | None]] = []
        for _mid, found in sorted(self.milestone_files().items()):
            for rel, _st in found:
                try:
                    raw = fsutil.read_bytes(self.root / rel, yamlio.MAX_FILE_BYTES)
                    out.append((rel, self._parse_file(rel, raw), None))
                except MilestoneError as exc:
                    out.append((rel, None, str(exc)))
                except OSError as exc:
                    out.append((rel, None, f"cannot read: {exc.strerror}"))
        return out

    def rebuild(self) -> list[str]:
        """Rewrite state.json and every file from the log (under the lock)."""
        fresh = self._rebuild_state()
        changed: list[str] = []
        files = self.milestone_files()
        for mid, entry in fresh["milestones"].items():
            snap = entry["state"]
            rel = entry["path"]
            path = self.root / rel
            current = None
            with contextlib.suppress(MilestoneError, OSError):
                current = self._parse_file(rel, fsutil.read_bytes(path, yamlio.MAX_FILE_BYTES))
            if current != snap:
                fsutil.atomic_write(path, yamlio.dump_fast(snap).encode("utf-8"))
                changed.append(rel)
            for other, _st in files.get(mid, []):
                if other != rel:
                    (self.root / other).unlink()
                    changed.append(f"removed {other}")
            raw = fsutil.read_bytes(path)
            st = path.stat()
            entry.update(
                sha256=_sha(raw),
                mtime_ns=st.st_mtime_ns,
                size=st.st_size,
                roundtrip=raw != yamlio.dump_fast(snap).encode("utf-8"),
            )
        for mid in set(files) - set(fresh["milestones"]):
            for rel, _st in files[mid]:
                (self.root / rel).unlink()
                changed.append(f"removed {rel}")
        marker = f"{fresh['current']}\n".encode() if fresh["current"] else b""
        fsutil.atomic_write(self.current_path, marker)
        fresh["current_mtime_ns"] = self._current_mtime()
        self._write_state(fresh)
        self._state = fresh
        return changed

    # ------------------------------------------------------------ migration

    def sources(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for mid, found in self.milestone_files().items():
            with contextlib.suppress(OSError, UnicodeDecodeError):
                out[mid] = fsutil.read_bytes(self.root / found[0][0]).decode("utf-8")
        return out

    def import_data(self, events: Sequence[dict[str, Any]], state: State,
                    resume: dict[str, Any], sources: dict[str, str]) -> None:
        """Write another backend's data as files: the log verbatim, each milestone as the
        text it was last written as when that text still says the same, else afresh."""
        self.discard()
        self.initialize()
        log = "".join(ev.canonical(e) + "\n" for e in events).encode("utf-8")
        fsutil.atomic_write(self.log_path, log)
        entries: dict[str, Any] = {}
        # Nothing reads these files before the migration switches to them: write them
        # all, then flush once (two fsyncs a file made ten thousand files take minutes).
        for mid, snap in sorted(state.milestones.items()):
            rel = self._relpath(snap)
            fresh = yamlio.dump_fast(snap)
            text = self.file_text(snap, sources.get(mid), fresh)
            data = text.encode("utf-8")
            fsutil.atomic_write(self.root / rel, data, sync=False)
            st = (self.root / rel).stat()
            entries[mid] = {"path": rel, "sha256": _sha(data), "mtime_ns": st.st_mtime_ns,
                            "size": st.st_size, "roundtrip": text != fresh, "state": snap}
        fsutil.sync_everything()
        marker = f"{state.current}\n".encode() if state.current else b""
        fsutil.atomic_write(self.current_path, marker)
        fresh_state = self._empty_state()
        fresh_state.update(applied_event_id=state.last_event_id, applied_hash=state.last_hash,
                           log_size=len(log), max_number=state.max_number,
                           current=state.current, current_mtime_ns=self._current_mtime(),
                           milestones=entries)
        self._write_state(fresh_state)
        self._state = fresh_state
        if resume:
            self.write_resume(resume)

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

    def data_files(self) -> list[Path]:
        """This backend's data files that exist: the milestone files, the log and its
        archives, state.json, the resume record, the agents' records."""
        out: list[Path] = []
        for folder in ("active", "completed"):
            d = self.root / folder
            if d.is_dir():
                out += [e for e in d.iterdir() if FILE_RE.match(e.name) or e.name == "current.txt"]
        if self.records_dir.is_dir():
            out += self.records_dir.glob("*.json")
        out += [p for p in (self.log_path, self.state_path, self.resume_path) if p.exists()]
        out += [path for _seq, path in self.log_files.archives()]
        if self.log_files.index_path.exists():
            out.append(self.log_files.index_path)
        return sorted(out)

    def discard(self) -> None:
        """Remove this backend's data files (a failed migration's half-made copy)."""
        for folder in ("active", "completed"):
            d = self.root / folder
            if d.is_dir():
                for entry in d.iterdir():
                    if FILE_RE.match(entry.name) or entry.name == "current.txt":
                        entry.unlink()
        records = self.records_dir.glob("*.json") if self.records_dir.is_dir() else ()
        for path in (self.log_path, self.state_path, self.resume_path, *records):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.log_files.discard()
        self._state = None

    # ------------------------------------------------------------- resume

    def read_resume(self) -> dict[str, Any]:
        try:
            data = fsutil.loads_json(fsutil.read_bytes(self.resume_path, RECORD_LIMIT))
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_resume(self, record: dict[str, Any]) -> None:
        data = json.dumps(record, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
        fsutil.atomic_write(self.resume_path, data, sync=False)  # derived, rewritten often

    # ------------------------------------------------------------ records

    def read_record(self, name: str) -> dict[str, Any]:
        """The record; {} when there is none. A damaged one is a StorageError naming
        the file (see ``base.decode_record``), never an empty default."""
        from ..errors import StorageError
        from .base import decode_record

        path = self.records_dir / f"{name}.json"
        try:
            raw = fsutil.read_bytes(path, RECORD_LIMIT)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}",
                               hint="check the file's permissions") from None
        return decode_record(raw, str(path))

    def write_record(self, name: str, data: dict[str, Any]) -> None:
        text = json.dumps(data, indent=1, ensure_ascii=False).encode("utf-8") + b"\n"
        self.records_dir.mkdir(parents=True, exist_ok=True)
        fsutil.atomic_write(self.records_dir / f"{name}.json", text)

    def set_aside_record(self, name: str, suffix: str) -> str | None:
        """Move a (damaged) record out of the way, kept as ``<name>.json.<suffix>``;
        where it went, or None when there was none."""
        path = self.records_dir / f"{name}.json"
        if not path.exists():
            return None
        aside = path.with_name(f"{path.name}.{suffix}")
        os.replace(path, aside)
        fsutil.fsync_dir(self.records_dir)
        return str(aside)

    # ------------------------------------------------------ backup/restore

    def backup(self, dest: Path) -> Path:
        import tarfile  # with shutil, ~3 ms at start-up: only backup and restore need them

        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self.lock(), tarfile.open(dest, "w:gz") as tar:
            for folder in ("active", "completed", "logs", "config", "agents"):
                if (self.root / folder).exists():
                    self._refuse_links_under(self.root / folder)
                    tar.add(self.root / folder, arcname=folder)
        return dest

    @staticmethod
    def _refuse_links_under(top: Path) -> None:
        """A link anywhere in ``top`` (``top`` included): refused, as fsutil does."""
        fsutil.refuse_links(top)
        for dirpath, dirnames, filenames in os.walk(top):
            for name in (*dirnames, *filenames):
                if os.path.islink(os.path.join(dirpath, name)):
                    raise fsutil.link_refused(os.path.join(dirpath, name))

    def restore(self, src: Path) -> None:
        import shutil
        import tarfile

        fsutil.check_input(src, what=str(src))
        with self.lock(), tarfile.open(src, "r:gz") as tar:
            # Bounded before anything is removed or unpacked: files and folders only,
            # none over the limit a restore allows (see milestones.storage.backup).
            members = tar.getmembers()
            total = 0
            for m in members:
                if not (m.isfile() or m.isdir()):
                    raise InvalidInput(f"{src}: member {m.name} is not a regular file",
                                       hint="use another backup")
                total += m.size
            if total > RESTORE_LIMIT:
                raise InvalidInput(f"{src}: its members hold {total:,} bytes, over the "
                                   f"{RESTORE_LIMIT:,} bytes a restore unpacks",
                                   hint="it may be a decompression bomb")
            for folder in ("active", "completed", "logs", "config", "agents"):
                fsutil.refuse_links(self.root / folder)
                shutil.rmtree(self.root / folder, ignore_errors=True)
            tar.extractall(self.root, members=members, filter="data")
        self._state = None

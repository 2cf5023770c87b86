"""The file backend's recovery (the log checked against ``logs/state.json`` and the
files, a write cut short finished or taken back) and its hand edits (files changed
outside the tool, found, parsed and reported as edits).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, MilestoneError
from ..model import Milestone
from ..model import events as ev
from . import fsutil, yamlio
from .base import Edit, Snapshot
from .file_base import apply_journal, entry_ok, head_shape_ok, line_start, sha
from .file_commit import FileCommit


class FileEdits(FileCommit):
    """The file backend's recovery and hand-edit scan (see ``file.FileStore``)."""

    # ----------------------------------------------------------- recovery

    def recover(self) -> list[str]:
        repairs: list[str] = []
        self.damage = None
        if self._state is None or self._state is not self._written[1] \
                or self._written[0] != self._disk_key():
            # Else what this object wrote last is on disk. A state read before (the
            # lock, a read) is brought up to date with the journal lines written since.
            caught = self._catch_up(self._state) if self._state is not None else None
            self._state = caught if caught is not None else self._read_state()
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

    def _catch_up(self, state: dict[str, Any]) -> dict[str, Any] | None:
        """``state`` (read or written by this object) brought up to the head on disk
        by reading only the journal lines after the bytes it covers; None when that
        cannot be done (another checkpoint, the line it ends with no longer there)."""
        seen, tail = self._seen
        point = state.get("checkpoint")
        if seen is not state or not point:
            return None
        try:
            head = fsutil.loads_json(fsutil.read_bytes(self.state_path))
        except (OSError, ValueError):
            return None
        if not head_shape_ok(head):
            return None
        new = head["checkpoint"]
        if new["token"] != point["token"] or new["journal"] < point["journal"] \
                or head["applied_event_id"] < state["applied_event_id"]:
            return None
        start = point["journal"] - len(tail)
        raw = b""
        if new["journal"]:
            try:
                with fsutil.open_read(self.journal_path(point["token"])) as f:
                    f.seek(start)
                    raw = f.read(new["journal"] - start)
            except OSError:
                return None
        if len(raw) != new["journal"] - start or not raw.startswith(tail) \
                or (len(raw) > len(tail) and not raw.endswith(b"\n")):
            return None
        lines = raw[len(tail):].split(b"\n")[:-1]
        milestones = dict(state["milestones"])
        try:
            decoded = [fsutil.loads_json(line) for line in lines]
        except ValueError:
            return None
        if not apply_journal(milestones, decoded, point["token"]):
            return None
        changed = {mid for line in decoded for mid in line["milestones"]}
        if any(mid in milestones and not entry_ok(mid, milestones[mid]) for mid in changed):
            return None
        current = head["current"]
        if current is not None and current not in milestones:
            return None
        out = dict(head)
        out["milestones"] = milestones
        self._seen = (out, lines[-1] + b"\n" if lines else tail)
        return out

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
                start = line_start(f, offset - 1)
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
            digest = sha(raw)
            if entry and digest == entry["sha256"] and rel == entry["path"]:
                entry["mtime_ns"], entry["size"] = st.st_mtime_ns, st.st_size
                self._refreshed.add(mid)
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
                self._refreshed.add(mid)
                dirty = True
                continue
            # Who made the edit, as far as the file tells: its owner (an editor that
            # writes a new file and renames it makes it the editor's own).
            edits.append(Edit(mid, before, after, rel,
                              extra={"os_user": fsutil.owner_name(st.st_uid)}))
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


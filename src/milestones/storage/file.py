"""The YAML file backend: one milestone per file, an append-only JSONL event log.

Layout (see the README)::

    .milestones/
      active/milestone-001.yaml   active/current.txt   completed/milestone-000.yaml
      logs/progress-events.jsonl  logs/session-resume.json  logs/state.json
      logs/state-<token>.json  logs/state-<token>.jsonl
      config/storage-backend.txt  config/config.yaml

The state (``logs/state.json``, the head, naming a checkpoint ``state-<token>.json``
and the bytes of its journal ``state-<token>.jsonl`` it covers; see ``file_base``) is
derived data: the snapshots as the log last left them, with each file's hash, size
and mtime. It makes reads cheap (no YAML parse unless a file changed), tells a hand
edit from the tool's own write, and gives the "before" of a hand edit. A write
journals the entries it changes, so it costs the milestones it touches. It can
always be rebuilt by replaying the log.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, MilestoneError
from ..model import events as ev
from . import fsutil, yamlio
from .base import Snapshot
from .file_base import FILE_RE, STATE_FILE_RE, STATE_VERSION, sha
from .file_commit import HandEdited, Undo, state_text
from .file_import import FileImport

RECORD_LIMIT = 64 * 1024 * 1024  # agents.json, messages.json, session-resume.json
RESTORE_LIMIT = 4 * 1024 * 1024 * 1024  # Store.restore: all members together


class FileStore(FileImport):
    """The file backend: its doctor, records and backup here; the import (a migration's
    copy) in ``file_import``, recovery and hand edits in ``file_edits``, writes in
    ``file_commit``, state and reading in ``file_base``."""

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
                sha256=sha(raw),
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
        out += [p for p in self.logs.glob("state-*") if STATE_FILE_RE.match(p.name)]
        out += [path for _seq, path in self.log_files.archives()]
        if self.log_files.index_path.exists():
            out.append(self.log_files.index_path)
        return sorted(out)

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


__all__ = ["FILE_RE", "RECORD_LIMIT", "RESTORE_LIMIT", "STATE_VERSION", "FileStore", "HandEdited",
           "Undo", "state_text"]

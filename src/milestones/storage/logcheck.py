"""The event log checked line by line, as it is on disk (``milestone doctor``, rule MS501).

Reads the rotated archives and the live log without trusting either: a torn last
line, a line that is not a JSON event, a repeated archive prefix (an interrupted
rotation), a broken hash chain and a stale archive index are each named
``file:line``. Backends without log files check the chain of their events.

The log is read as a stream: one archive at a time, the live log line by line, each
event's hash checked as it is parsed, so memory follows the largest archive, not the
log. A caller that wants the events in order without keeping them (``validate``
replays them as they come) passes a ``sink``.

``ChainWalk`` is the same check streamed, for ``milestone audit``: one pass over every
file in constant memory, stopping at the first event that does not verify and naming
it precisely (file, line, event id, and whether it was changed, is missing or out of
order); each event is checked by ``events.verify_chain``, as everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import StorageError
from ..model import events as ev
from . import fsutil
from .fsutil import loads_json
from .logfiles import LogFiles
from .logrotation import gzip_lines, loads_line

if TYPE_CHECKING:
    from .base import Store

Sink = Callable[[dict[str, Any]], None]


def check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    """One row of a health report: what was checked, whether it passed, and how."""
    return {"name": name, "ok": ok, "detail": detail}


def check_log(store: Store, sink: Sink | None = None
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check the raw log line by line, across the rotated archives and the live log;
    returns (checks, the events that parsed). Problems are named ``file:line``.

    With ``sink``, each event that parsed is handed to it, in order, and none is kept
    (the list returned is empty)."""
    parsed: list[dict[str, Any]] = []
    feed: Sink = parsed.append if sink is None else sink
    path = getattr(store, "log_path", None)
    if path is None:
        chain = ev.Chain()
        for event in store.events():
            chain.add(event)
            feed(event)
        bad = chain.bad
        return [check("hash chain", bad is None,
                      "valid" if bad is None else f"event #{bad[0] + 1}: {bad[1]}")], parsed
    log_files = getattr(store, "log_files", None)
    if log_files is None:
        log_files = LogFiles(path)
    try:
        live = fsutil.open_read(log_files.live)
    except FileNotFoundError:
        return [check("event log", False, f"{path} is missing")], parsed
    with live:
        reader = _Reader(feed)
        archives: list[tuple[int, str, dict[str, Any] | None]] = []
        for seg in log_files.archive_segments(store.root):
            if seg.raw is None:
                reader.unreadable = reader.unreadable or f"{seg.label}: {seg.error}"
                archives.append((seg.seq, seg.label, None))
                continue
            archives.append((seg.seq, seg.label, log_files.describe(seg.seq, seg.raw)))
            if reader.unreadable:
                continue  # the archive index is still checked against every archive
            lines = seg.raw.split(b"\n")
            if lines[-1] != b"":
                reader.unreadable = f"{seg.label}:{len(lines)}: torn last line in an archive"
            reader.segment(seg.label, enumerate(lines[:-1], 1))
        label = f".milestones/{log_files.live.relative_to(store.root).as_posix()}"
        if not reader.unreadable:  # (an unreadable archive stops the reading there)
            numbered = enumerate(live, 1)
            reader.segment(label, _whole_lines(numbered, reader))
            for no, line in numbered:  # after an unreadable line: the rest only counted
                reader.live_lines, reader.torn_live = no, not line.endswith(b"\n")
    torn = None
    if reader.torn_live:
        torn = f"{label}:{reader.live_lines}: torn last line (an interrupted append)"
    n = reader.events
    counted = f"{n} event{'' if n == 1 else 's'}"
    if archives:
        counted += f" in {len(archives) + 1} files"
    checks = [check("event log readable", reader.unreadable is None, reader.unreadable or counted),
              check("event log complete", torn is None, torn or "every line is whole")]
    bad = reader.chain.bad
    if bad is None:
        detail = f"valid through event #{reader.last_id}" if n else "empty log"
    else:
        detail = f"{reader.bad_at}: {bad[1]}"
    checks.append(check("hash chain", bad is None, detail))
    if archives or log_files.index_path.exists():
        problems = log_files.check_index(archives) + ([reader.repeated] if reader.repeated else [])
        count_a = len(archives)
        checks.append(
            check(
                "log archives",
                not problems,
                f"{count_a} archive{'s' if count_a != 1 else ''}, indexed"
                if not problems
                else problems[0] + (f" (and {len(problems) - 1} more)" if problems[1:] else ""),
            )
        )
    return checks, parsed


class _Reader:
    """The events of the log's files, read in order: parsed, chained, handed on."""

    def __init__(self, feed: Sink) -> None:
        self.feed = feed
        self.chain = ev.Chain()
        self.events = 0
        self.last_id: Any = None
        self.bad_at = ""  # file:line of the first event the chain refuses
        self.unreadable: str | None = None
        self.repeated: str | None = None
        self.previous: dict[int, Any] = {}  # the previous file's event hashes, by id
        self.torn_live = False
        self.live_lines = 0

    def segment(self, label: str, lines: Iterable[tuple[int, bytes]]) -> None:
        hashes: dict[int, Any] = {}
        skipped: list[int] = []
        prefix = True  # still at the file's start, where repeats of the last file may be
        for no, line in lines:
            if not line.strip():
                continue
            try:
                event = loads_json(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                self.unreadable = f"{label}:{no}: not a JSON event"
                break
            eid, digest = event.get("event_id"), event.get("hash")
            if prefix and isinstance(eid, int) and isinstance(digest, str) and (
                self.previous.get(eid) == digest
            ):
                skipped.append(eid)  # an interrupted rotation: already in the archive
                continue
            prefix = False
            if not self.chain.add(event) and not self.bad_at:
                self.bad_at = f"{label}:{no}"
            self.events += 1
            self.last_id = event.get("event_id")
            self.feed(event)
            if isinstance(eid, int):
                hashes[eid] = digest
        if skipped:
            self.repeated = (
                f"{label}:1: repeats events #{skipped[0]}..#{skipped[-1]} of the last "
                "archive (an interrupted log rotation; `milestone doctor --repair` finishes it)"
            )
        self.previous = hashes


def _whole_lines(lines: Iterator[tuple[int, bytes]], reader: _Reader
                 ) -> Iterator[tuple[int, bytes]]:
    """The live log's whole lines (without their ``\\n``); a last line without one is
    torn, and left out (as ``split`` leaves it out of the body)."""
    for no, line in lines:
        reader.live_lines = no
        if not line.endswith(b"\n"):
            reader.torn_live = True
            return
        yield no, line[:-1]


# ------------------------------------------------------------------ the audit's walk


_EVENT_ID = re.compile(rb'"event_id"\s*:\s*([0-9]+)')


@dataclass
class Tamper:
    """The first event of the log that does not verify: where, which, and what is wrong."""

    file: str
    line: int
    event_id: int | None
    kind: str  # hash_mismatch prev_hash sequence_gap truncated out_of_order unreadable missing
    problem: str

    def __str__(self) -> str:
        which = f"event #{self.event_id}" if self.event_id is not None else "no event id"
        return f"{self.file}:{self.line}: {which}: {self.problem}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "event_id": self.event_id,
                "kind": self.kind, "problem": self.problem}


class ChainWalk:
    """The whole log, streamed and verified event by event (``milestone audit``).

    Iterating yields each event that verifies, oldest first: the rotated archives (read
    as they are decompressed), then the live log, on the file and hybrid backends; the
    events table on the database backend. Nothing is kept but the previous event's id
    and hash, so a log of any length is read in constant memory. At the first event
    that does not verify the iteration stops and ``problem`` says where (file:line),
    which event and what is wrong; ``problem`` stays None when the whole chain holds
    (checked, at the end, against the head the snapshots applied: a log cut short at
    its end is missing events too). Reads only: nothing is written or repaired.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.problem: Tamper | None = None
        self.files: list[str] = []
        self.count = 0
        self.last_id = 0
        self.last_hash = ev.GENESIS_HASH
        self.notes: list[str] = []  # harmless findings: a torn last line (an interrupted append)

    def label(self, path: Path) -> str:
        try:
            return f".milestones/{path.relative_to(self.store.root).as_posix()}"
        except ValueError:
            return str(path)

    def _lines(self) -> Iterator[tuple[str, int, bytes | dict[str, Any], bool]]:
        """(file, line, raw line or event, whether the file is an archive), in log order;
        a file that cannot be read sets ``problem`` and ends it."""
        log_path = getattr(self.store, "log_path", None)
        if log_path is None:
            db = getattr(self.store, "db_path", None)
            where = f"{self.label(db)} (events table)" if db is not None else "the events"
            self.files.append(where)
            events = self.store.events()
            row = 0
            while True:
                row += 1
                try:
                    event = next(events)
                except StopIteration:
                    return
                except StorageError as exc:
                    self.problem = Tamper(where, row, None, "unreadable", exc.message)
                    return
                yield where, row, event, True
        log_files = getattr(self.store, "log_files", None) or LogFiles(log_path)
        # The live log is opened before the archives are listed (as ``LogFiles.events``
        # does): a rotation finishing in between shows its events twice, as a repeated
        # prefix, never not at all.
        try:
            live: IO[bytes] | None = fsutil.open_read(log_files.live)
        except FileNotFoundError:
            live = None
        try:
            files: list[tuple[Path, Iterator[bytes] | IO[bytes] | None]] = [
                (path, None) for _seq, path in log_files.archives()]
            files.append((log_files.live, live))
            for path, opened in files:
                where = self.label(path)
                archive = opened is None and path != log_files.live
                if not archive and opened is None:
                    self.problem = Tamper(where, 0, None, "missing",
                                          "the live event log is missing")
                    return
                source = gzip_lines(path) if archive else opened
                assert source is not None
                self.files.append(where)
                lineno = 0
                try:
                    for lineno, line in enumerate(source, 1):
                        yield where, lineno, line, archive
                except StorageError as exc:
                    what = exc.message.split(": ", 1)[-1]
                    self.problem = Tamper(where, lineno + 1, None, "unreadable", what)
                    return
                finally:
                    if archive:  # the archive's generator closes its file
                        getattr(source, "close", lambda: None)()
        finally:
            if live is not None:
                live.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        head = self._head()
        prev_id, prev_hash = 0, ev.GENESIS_HASH
        # A file may start by repeating the previous file's last events (a rotation cut
        # short after the archive was written): such a prefix must verify on its own and
        # end on the chain's head, so it is the same events, and no hash need be kept.
        rep_id: int | None = None  # the last repeated event of this file's prefix
        rep_hash = ""
        current = None
        prefix = True
        pending: tuple[str, int, dict[str, Any]] | None = None  # an id ahead: gap or swap?
        last_line = 0
        for where, lineno, item, archive in self._lines():
            if where != current:
                current, prefix, rep_id = where, True, None
            if isinstance(item, dict):
                event = item
            else:
                if not item.endswith(b"\n"):
                    if archive:
                        self._fail(where, lineno, item, "unreadable", "a torn line in an archive")
                        return
                    self.notes.append(f"{where}:{lineno}: a torn last line (an interrupted "
                                      "append; `milestone doctor --repair` removes it)")
                    break
                if not item.strip():
                    continue
                event = loads_line(item)
                if not event:
                    self._fail(where, lineno, item, "unreadable",
                               "not a JSON event (the line was changed or damaged)")
                    return
            eid = event.get("event_id")
            if pending is not None:
                p_where, p_line, p_event = pending
                if eid == prev_id + 1:
                    self.problem = Tamper(p_where, p_line, p_event["event_id"], "out_of_order",
                                          f"out of order: event #{p_event['event_id']} comes "
                                          f"before event #{eid} (lines swapped or moved)")
                else:
                    self._gap(p_where, p_line, p_event, prev_id)
                return
            if prefix and isinstance(eid, int) and not isinstance(eid, bool) \
                    and 0 < eid <= prev_id:
                if event.get("hash") != ev.event_hash(event) or (rep_id is not None and (
                        eid != rep_id + 1 or event.get("prev_hash") != rep_hash)) or (
                        eid == prev_id and event.get("hash") != prev_hash):
                    self.problem = (
                        Tamper(where, lineno, eid, "hash_mismatch", "hash mismatch: the "
                               "event's content was changed after it was written")
                        if event.get("hash") != ev.event_hash(event) else
                        Tamper(where, lineno, eid, "out_of_order",
                               f"out of order: event #{eid} comes after event #{prev_id} (and "
                               "does not repeat it as an interrupted log rotation would)"))
                    return
                rep_id, rep_hash = eid, event["hash"]
                prefix = eid != prev_id  # repeats through the head: the new file goes on
                continue
            if prefix and rep_id is not None:
                self.problem = Tamper(where, lineno, eid if isinstance(eid, int) else None,
                                      "out_of_order",
                                      f"the lines before it repeat events through #{rep_id} "
                                      f"of the file before, not through its last (#{prev_id})")
                return
            prefix = False
            bad = ev.verify_chain([event], prev_hash, prev_id)
            if bad is not None:
                if isinstance(eid, int) and not isinstance(eid, bool) and eid > prev_id + 1:
                    pending = (where, lineno, event)  # the next event tells a gap from a swap
                    continue
                self.problem = self._classify(where, lineno, event, prev_id, bad[1])
                return
            prev_id, prev_hash = event["event_id"], event["hash"]
            if head is not None and prev_id == head[0] and prev_hash != head[1]:
                self.problem = Tamper(where, lineno, prev_id, "hash_mismatch",
                                      f"hash mismatch: {head[2]} applied event #{prev_id} "
                                      "with another hash (the log was replaced from here)")
                return
            self.count += 1
            self.last_id, self.last_hash, last_line = prev_id, prev_hash, lineno
            yield event
        if self.problem is not None:
            return
        if pending is not None:
            self._gap(*pending, prev_id)
        elif head is not None and head[0] > self.last_id:
            where = self.files[-1] if self.files else "the event log"
            self.problem = Tamper(where, last_line + 1, self.last_id + 1, "truncated",
                                  f"sequence gap: the log ends at event #{self.last_id} but "
                                  f"{head[2]} applied event #{head[0]} (events were removed "
                                  "from its end)")

    def _fail(self, where: str, lineno: int, line: bytes, kind: str, what: str) -> None:
        m = _EVENT_ID.search(line)
        self.problem = Tamper(where, lineno, int(m.group(1)) if m else None, kind, what)

    def _gap(self, where: str, lineno: int, event: dict[str, Any], prev_id: int) -> None:
        eid = event["event_id"]
        missing = (f"event #{prev_id + 1}" if eid == prev_id + 2
                   else f"events #{prev_id + 1}..#{eid - 1}")
        self.problem = Tamper(where, lineno, eid, "sequence_gap",
                              f"sequence gap: {missing} missing before it (a line was removed)")

    @staticmethod
    def _classify(where: str, lineno: int, event: dict[str, Any], prev_id: int,
                  what: str) -> Tamper:
        eid = event.get("event_id")
        if not isinstance(eid, int) or isinstance(eid, bool):
            return Tamper(where, lineno, None, "unreadable", f"no valid event id ({what})")
        if eid <= prev_id:
            return Tamper(where, lineno, eid, "out_of_order",
                          f"out of order: event #{eid} comes after event #{prev_id}")
        if what.startswith("prev_hash"):
            return Tamper(where, lineno, eid, "prev_hash",
                          "prev_hash does not link to the previous event's hash (an event "
                          "before it was changed, removed or replaced)")
        return Tamper(where, lineno, eid, "hash_mismatch",
                      "hash mismatch: the event's content was changed after it was written")

    def _head(self) -> tuple[int, str, str] | None:
        """The head the snapshots applied (state.json, the database's meta), which the
        chain must reach: a log cut short at its end is missing events too."""
        read_stored = getattr(self.store, "read_stored", None)
        if read_stored is not None:
            stored = read_stored()
            if stored is None:
                return None  # no state to compare with (rebuilt from the log when next read)
            return (int(stored.get("applied_event_id", 0)), str(stored.get("applied_hash")),
                    ".milestones/logs/state.json")
        got = self.store.head()
        return None if got is None else (got[0], got[1], "the database's meta")

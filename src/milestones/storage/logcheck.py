"""The event log checked line by line, as it is on disk (``milestone doctor``, rule MS501).

Reads the rotated archives and the live log without trusting either: a torn last
line, a line that is not a JSON event, a repeated archive prefix (an interrupted
rotation), a broken hash chain and a stale archive index are each named
``file:line``. Backends without log files check the chain of their events.

The log is read as a stream: one archive at a time, the live log line by line, each
event's hash checked as it is parsed, so memory follows the largest archive, not the
log. A caller that wants the events in order without keeping them (``validate``
replays them as they come) passes a ``sink``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..model import events as ev
from . import fsutil
from .fsutil import loads_json
from .logfiles import LogFiles

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


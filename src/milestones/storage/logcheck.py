"""The event log checked line by line, as it is on disk (``milestone doctor``, rule MS501).

Reads the rotated archives and the live log without trusting either: a torn last
line, a line that is not a JSON event, a repeated archive prefix (an interrupted
rotation), a broken hash chain and a stale archive index are each named
``file:line``. Backends without log files check the chain of their events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model import events as ev
from .fsutil import loads_json
from .logfiles import LogFiles

if TYPE_CHECKING:
    from .base import Store


def check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    """One row of a health report: what was checked, whether it passed, and how."""
    return {"name": name, "ok": ok, "detail": detail}


def check_log(store: Store) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check the raw log line by line, across the rotated archives and the live log;
    returns (checks, the events that parsed). Problems are named ``file:line``."""
    path = getattr(store, "log_path", None)
    checks: list[dict[str, Any]] = []
    if path is None:
        events = list(store.events())
        bad = ev.verify_chain(events)
        checks.append(
            check(
                "hash chain",
                bad is None,
                "valid" if bad is None else f"event #{bad[0] + 1}: {bad[1]}",
            )
        )
        return checks, events
    log_files = getattr(store, "log_files", None)
    if log_files is None:
        log_files = LogFiles(path)
    segments = log_files.segments(store.root)
    live = segments[-1]
    if live.raw is None:
        checks.append(check("event log", False, f"{path} is missing"))
        return checks, []
    parsed: list[dict[str, Any]] = []
    where: list[tuple[str, int]] = []  # (file, line) of each parsed event
    unreadable = torn = repeated = None
    previous: dict[int, Any] = {}  # the previous file's event hashes, by id
    for seg in segments:
        if seg.raw is None:
            unreadable = f"{seg.label}: {seg.error}"
            break
        lines = seg.raw.split(b"\n")
        body = lines[:-1]
        if lines[-1] != b"":
            if seg.archive:
                unreadable = f"{seg.label}:{len(lines)}: torn last line in an archive"
            else:
                torn = f"{seg.label}:{len(lines)}: torn last line (an interrupted append)"
        hashes: dict[int, Any] = {}
        skipped: list[int] = []
        prefix = True  # still at the file's start, where repeats of the last file may be
        for no, line in enumerate(body, 1):
            if not line.strip():
                continue
            try:
                event = loads_json(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                unreadable = f"{seg.label}:{no}: not a JSON event"
                break
            eid, digest = event.get("event_id"), event.get("hash")
            if prefix and isinstance(eid, int) and isinstance(digest, str) and (
                previous.get(eid) == digest
            ):
                skipped.append(eid)  # an interrupted rotation: already in the archive
                continue
            prefix = False
            parsed.append(event)
            where.append((seg.label, no))
            if isinstance(eid, int):
                hashes[eid] = event.get("hash")
        if skipped:
            repeated = (
                f"{seg.label}:1: repeats events #{skipped[0]}..#{skipped[-1]} of the last "
                "archive (an interrupted log rotation; `milestone doctor --repair` finishes it)"
            )
        if unreadable:
            break
        previous = hashes
    counted = f"{len(parsed)} event{'' if len(parsed) == 1 else 's'}"
    if len(segments) > 1:
        counted += f" in {len(segments)} files"
    checks.append(check("event log readable", unreadable is None, unreadable or counted))
    checks.append(check("event log complete", torn is None, torn or "every line is whole"))
    bad = ev.verify_chain(parsed)
    if bad is None:
        detail = f"valid through event #{parsed[-1]['event_id']}" if parsed else "empty log"
    else:
        label, line = where[bad[0]]
        detail = f"{label}:{line}: {bad[1]}"
    checks.append(check("hash chain", bad is None, detail))
    if len(segments) > 1 or log_files.index_path.exists():
        problems = log_files.check_index(segments) + ([repeated] if repeated else [])
        archives = len(segments) - 1
        checks.append(
            check(
                "log archives",
                not problems,
                f"{archives} archive{'s' if archives != 1 else ''}, indexed"
                if not problems
                else problems[0] + (f" (and {len(problems) - 1} more)" if problems[1:] else ""),
            )
        )
    return checks, parsed

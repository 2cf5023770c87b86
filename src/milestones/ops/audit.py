"""``milestone audit``: verify the event log's hash chain end to end, then say who
changed what.

The chain is walked once, streamed (``storage.logcheck.ChainWalk``: the rotated
archives as they are decompressed, then the live log; the events table on the
database backend), so a log of any length is audited in constant memory. The first
event that does not verify ends the audit: ``LogTampered`` (exit 8) names its file,
line and id and what is wrong. Otherwise the summary counts, per actor, the events by
type with the first and last time, the edits made outside the tool
(``manual_edit_detected``, with the OS user that owned the edited file where known),
and the ``access_denied`` records of ``logs/security-events.jsonl``. Nothing is
written: no lock is taken, no hand edit is recorded, nothing is repaired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import LogTampered, MilestoneError
from ..storage import fsutil
from ..storage.logcheck import ChainWalk

if TYPE_CHECKING:
    from ..project import Project

SCHEMA = 1
SECURITY_LOG = "logs/security-events.jsonl"
UNKNOWN = "unknown"


def _actor_row(actors: dict[str, dict[str, Any]], who: str) -> dict[str, Any]:
    row = actors.get(who)
    if row is None:
        row = actors[who] = {
            "actor": who, "events": 0, "by_type": {}, "first": None, "last": None,
            "manual_edits": {"count": 0, "os_users": {}},
            "access_denied": {"count": 0, "operations": {}, "first": None, "last": None},
        }
    return row


def _span(row: dict[str, Any], ts: str) -> None:
    if ts and (row["first"] is None or ts < row["first"]):
        row["first"] = ts
    if ts and (row["last"] is None or ts > row["last"]):
        row["last"] = ts


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def summarize_events(events: Any, actors: dict[str, dict[str, Any]], *,
                     since: str | None, actor: str | None) -> dict[str, Any]:
    """Count ``events`` (an iterable, read once) into ``actors``; returns the totals."""
    total: dict[str, Any] = {"events": 0, "manual_edits": 0, "os_users": {}}
    for e in events:
        ts = str(e.get("timestamp") or "")
        if since and ts < since:
            continue
        who = str(e.get("actor") or UNKNOWN)
        if actor is not None and who != actor:
            continue
        row = _actor_row(actors, who)
        kind = str(e.get("event_type"))
        row["events"] += 1
        _bump(row["by_type"], kind)
        _span(row, ts)
        total["events"] += 1
        if kind == "manual_edit_detected":
            details = e.get("details") if isinstance(e.get("details"), dict) else {}
            os_user = str(details.get("os_user") or UNKNOWN)
            row["manual_edits"]["count"] += 1
            _bump(row["manual_edits"]["os_users"], os_user)
            total["manual_edits"] += 1
            _bump(total["os_users"], os_user)
    return total


def read_denials(project: Project, actors: dict[str, dict[str, Any]], *,
                 since: str | None, actor: str | None) -> tuple[int, list[str]]:
    """Count the ``access_denied`` records of ``logs/security-events.jsonl`` into
    ``actors``, line by line; returns (records counted, problems: one per bad line).
    An absent file holds none."""
    path = project.root / SECURITY_LOG
    label = f".milestones/{SECURITY_LOG}"
    try:
        f = fsutil.open_read(path)
    except FileNotFoundError:
        return 0, []
    except (OSError, MilestoneError) as exc:
        return 0, [f"{label}: cannot be read ({getattr(exc, 'strerror', None) or exc})"]
    counted, problems = 0, []
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = fsutil.loads_json(line)
            except ValueError:
                rec = None
            if not isinstance(rec, dict) or not isinstance(rec.get("type"), str):
                problems.append(f"{label}:{lineno}: not a security record (a JSON object with a "
                                "\"type\"); skipped")
                continue
            if rec["type"] != "access_denied":
                continue
            ts = str(rec.get("ts") or "")
            who = str(rec.get("actor") or UNKNOWN)
            if (since and ts < since) or (actor is not None and who != actor):
                continue
            denied = _actor_row(actors, who)["access_denied"]
            denied["count"] += 1
            _bump(denied["operations"], str(rec.get("operation") or UNKNOWN))
            _span(denied, ts)
            counted += 1
    return counted, problems


def run(project: Project, *, since: str | None = None, actor: str | None = None
        ) -> dict[str, Any]:
    """Verify the whole chain and summarise it; ``LogTampered`` at the first bad event.
    ``since`` (an ISO UTC stamp) and ``actor`` filter the summary, never the check."""
    walk = ChainWalk(project.store)
    actors: dict[str, dict[str, Any]] = {}
    total = summarize_events(walk, actors, since=since, actor=actor)
    bad = walk.problem
    if bad is not None:
        raise LogTampered(
            f"audit: {bad}",
            hint="the event log was changed outside milestone; compare it with a backup "
                 "(`milestone restore`), and see `milestone doctor`",
            details=bad.to_dict(),
        )
    denied, problems = read_denials(project, actors, since=since, actor=actor)
    return {
        "schema": SCHEMA,
        "chain": {"ok": True, "events": walk.count, "last_event_id": walk.last_id,
                  "last_hash": walk.last_hash, "files": walk.files, "notes": walk.notes},
        "since": since,
        "actor": actor,
        "totals": {**total, "access_denied": denied},
        "actors": [actors[k] for k in sorted(actors)],
        "warnings": problems,
    }

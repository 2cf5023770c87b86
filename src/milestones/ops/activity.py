"""What scale detection measures: command timings (``performance/metrics.jsonl``),
recent activity and the team in the event log, the features in use.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MilestoneError

if TYPE_CHECKING:
    from ..storage import Store



# ------------------------------------------------------------------------ I/O

WINDOW_DAYS = 30  # the team counts the actors of this many days
METRICS = "performance/metrics.jsonl"
MIGRATION_LOG = "performance/migration-log.jsonl"
MEMO = "performance/scale-state.json"  # when the policy last spoke (a small cache)
LATENCY_WINDOW = 200
METRICS_KEEP_LINES = 1000
# After a write the live event log is read backwards from its end, stopping at the
# first event older than WINDOW_DAYS, after this many events, or once enough actors
# were seen to cross every team bound (rotated archives are not opened); `storage
# status` reads the whole window, archives included.
QUICK_SCAN_EVENTS = 5_000
# The write rate counts the last hour's events, at most this many (600 a minute and up
# all ask for the same thing).
WRITES_SCAN_EVENTS = 36_000
MEASURE_EVERY = 3600  # seconds: after writes, team and latency are re-measured this often
UNCOUNTED_ACTORS = frozenset({"", "unknown"})


def lines_backwards(path: Path, block: int = 1 << 16) -> Iterator[bytes]:
    """The file's complete lines, last first (a torn last line is skipped)."""
    from ..storage import fsutil

    try:
        f = fsutil.open_read(path)
    except (OSError, MilestoneError):  # a linked or odd metrics file: not read
        return
    with f:
        pos = f.seek(0, os.SEEK_END)
        rest = b""
        first = True
        while pos > 0:
            step = min(block, pos)
            pos -= step
            f.seek(pos)
            lines = (f.read(step) + rest).split(b"\n")
            rest = lines[0]
            body = lines[1:]
            if first:
                body = body[:-1]  # after the last newline: empty, or a torn write
                first = False
            for line in reversed(body):
                if line.strip():
                    yield line
        if rest.strip() and not first:
            yield rest


def trim_metrics(path: Path, keep: int = METRICS_KEEP_LINES) -> None:
    """Keep the last ``keep`` lines of the metrics file (temp file and rename).

    Metrics are not worth a lock: a line another process appends during the
    rewrite may be lost.
    """
    from ..storage import fsutil

    lines = list(lines_backwards(path))[:keep]
    fsutil.atomic_write(path, b"".join(line + b"\n" for line in reversed(lines)), sync=False)


def read_latencies(root: Path, backend: str, window: int = LATENCY_WINDOW) -> list[float]:
    """Wall times (ms) of the last ``window`` successful non-storage commands on ``backend``."""
    out: list[float] = []
    for line in lines_backwards(root / METRICS):
        try:
            rec = json.loads(line)
            if (rec.get("backend") == backend and rec.get("ok") is True
                    and not str(rec.get("command", "")).startswith("storage")):
                out.append(float(rec["ms"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if len(out) >= window:
            break
    return out


class Activity:
    """Who acted in the window: actor → last seen, and how many events agents left."""

    __slots__ = ("actors", "agent_events", "scanned")

    def __init__(self) -> None:
        self.actors: dict[str, str] = {}
        self.agent_events = 0
        self.scanned = 0


# A sealed event is canonical JSON (sorted keys): it opens with the actor and ends with
# the timestamp, so both are read without parsing the line (any other shape is parsed).
_ACTOR = re.compile(rb'^\{"actor":"((?:[^"\\]|\\.)*)"')
_STAMP = re.compile(rb'"timestamp":"([^"\\]*)"\}\s*$')


def _actor_and_time(line: bytes) -> tuple[str, str, bool]:
    a, t = _ACTOR.match(line), _STAMP.search(line)
    if a is not None and t is not None:
        raw = a.group(1)
        actor = json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode("utf-8", "replace")
        return str(actor), t.group(1).decode(), b'"event_type":"agent' in line
    event = json.loads(line)
    return (str(event.get("actor") or ""), str(event.get("timestamp") or ""),
            str(event.get("event_type") or "").startswith("agent"))


def recent_activity(store: Store, since: str, *, limit: int | None = None,
                    enough: int | None = None, archives: bool = True,
                    agents: Collection[str] = ()) -> Activity:
    """Actors of the events at or after ``since`` (ISO UTC), but for ``agents`` (the
    registered agents' names and ids: they are not people).

    The database answers from its timestamp index. The file log (file and hybrid) is
    read backwards from its end and the scan stops at the first older event (the log
    is appended in time order), after ``limit`` events, or once ``enough`` distinct
    actors were seen. When the live log starts inside the window and rotated
    archives exist, ``archives`` reads every file instead (exact, slower); without
    it the live log alone is counted.
    """
    act = Activity()

    def seen(actor: str, stamp: str, agent: bool) -> None:
        act.scanned += 1
        act.agent_events += agent
        if actor not in UNCOUNTED_ACTORS and actor not in agents:
            act.actors[actor] = max(stamp, act.actors.get(actor, ""))

    indexed = store.actors_since(since)  # the database answers from its events table
    if indexed is not None:
        for actor, stamp, n, agent_steps in indexed:
            seen(actor, stamp, False)
            act.scanned += n - 1
            act.agent_events += agent_steps
        return act
    log_path = getattr(store, "log_path", None)
    if isinstance(log_path, Path):
        for line in lines_backwards(log_path):
            try:
                actor, stamp, agent = _actor_and_time(line)
            except ValueError:
                continue  # a corrupt line: `milestone doctor` reports it
            if stamp < since:
                return act
            seen(actor, stamp, agent)
            if (limit is not None and act.scanned >= limit) or (
                    enough is not None and len(act.actors) >= enough):
                return act
        if not archives or not any((log_path.parent / "archive").glob("*.gz")):
            return act
        act = Activity()
    for event in store.events():  # every event, oldest first
        stamp = str(event.get("timestamp") or "")
        if stamp >= since:
            seen(str(event.get("actor") or ""), stamp,
                 str(event.get("event_type") or "").startswith("agent"))
    return act


def events_since(store: Store, since: str, *, limit: int = 100_000) -> int:
    """How many events were recorded at or after ``since`` (ISO UTC), counting at most
    ``limit``: the database from its timestamp index, the file log backwards from its
    end (stopping at the first older event; rotated archives are not opened)."""
    indexed = store.actors_since(since)
    if indexed is not None:
        return min(limit, sum(n for _, _, n, _ in indexed))
    count = 0
    log_path = getattr(store, "log_path", None)
    if isinstance(log_path, Path):
        for line in lines_backwards(log_path):
            try:
                _, stamp, _ = _actor_and_time(line)
            except ValueError:
                continue
            if stamp < since or count >= limit:
                break
            count += 1
    return count


def team_members(config: Mapping[str, Any]) -> list[set[str]]:
    """Each ``team.members`` entry as the set of names it goes by."""
    team = config.get("team")
    raw = team.get("members") if isinstance(team, Mapping) else None
    out: list[set[str]] = []
    for m in raw if isinstance(raw, list) else []:
        if isinstance(m, Mapping):
            names = {str(m[k]) for k in ("name", "email", "id") if m.get(k)}
            names |= {str(a) for a in m.get("aliases") or [] if a}
        else:
            names = {str(m)} if m else set()
        if names:
            out.append(names)
    return out


def features_in_use(root: Path, agent_events: int = 0) -> frozenset[str]:
    used = set()
    if agent_events or (root / "agents").is_dir():
        used.add("agents")
    if (root / "web-dashboard").is_dir():
        used.add("dashboard")
    if (root / "config" / "encryption.key").is_file():
        used.add("encryption")
    return frozenset(used)


def since_iso(days: int = WINDOW_DAYS, now: datetime | None = None, *, hours: int = 0) -> str:
    start = (now or datetime.now(UTC)) - timedelta(days=days, hours=hours)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")

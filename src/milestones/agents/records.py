"""The agents' settings and shared records: leases, path overlap, and the ``agents``
and ``messages`` records (read, checked, rebuilt from the log, repaired).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..model import parse_utc_stamp

if TYPE_CHECKING:
    from ..project import Project


RECORDS = ("agents", "messages")
DEFAULTS: dict[str, Any] = {
    "lease_seconds": 300,  # a claim lapses this long after the holder's last heartbeat
    "max_attempts": 3,  # a task failing this many times is blocked and escalated
    "message_keep": 5000,  # acked messages beyond this many are dropped, oldest first
}
ROLE_PREFIX = "role:"
BROADCAST = "*"


# Task statuses that put a milestone in a claim's scope.
OPEN = ("todo", "in_progress", "blocked")


def ts(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return _parse_ts(stamp)


@lru_cache(maxsize=4096)
def _parse_ts(stamp: str) -> float:
    """Seconds since the epoch of a UTC stamp (every step reads the same few: each
    agent's last_seen, each claim's claimed_at)."""
    return parse_utc_stamp(stamp).timestamp()


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(DEFAULTS)
    merged.update(config.get("agents") or {})
    return merged


def check_lease(value: Any) -> int:
    try:
        lease = int(value)
    except (TypeError, ValueError):
        lease = 0
    if not 1 <= lease <= 7 * 86400:
        raise InvalidInput(f"lease {value!r} is not a number of seconds",
                           hint="give 1 to 604800, for example --lease 300")
    return lease


def _pattern_prefix(pattern: str) -> str:
    cut = min((i for i, ch in enumerate(pattern) if ch in "*?["), default=len(pattern))
    return pattern[:cut]


def paths_overlap(a: Iterable[str], b: Iterable[str]) -> list[str]:
    """Pairs of path patterns that may name the same file (``src/api/**`` and
    ``src/api/routes.py``), as ``"a ~ b"``. Conservative: two globs overlap when one's
    literal prefix starts the other's, so a false alarm is possible, a miss is not."""
    hits = []
    b = list(b)
    for x in a:
        px = _pattern_prefix(x)
        for y in b:
            py = _pattern_prefix(y)
            exact_x, exact_y = px == x, py == y
            if exact_x and exact_y:
                same = x.rstrip("/") == y.rstrip("/") or y.startswith(x.rstrip("/") + "/") \
                    or x.startswith(y.rstrip("/") + "/")
            elif exact_x:
                same = fnmatch.fnmatchcase(x, y) or x.startswith(py) or py.startswith(x)
            elif exact_y:
                same = fnmatch.fnmatchcase(y, x) or y.startswith(px) or px.startswith(y)
            else:
                same = px.startswith(py) or py.startswith(px)
            if same:
                hits.append(f"{x} ~ {y}")
    return hits


# ------------------------------------------------------- the records, checked


_AGENT_ID = re.compile(r"^agent-([1-9][0-9]{0,17})$")
_STATUSES = ("live", "dead", "gone")


def record_where(store: Any, name: str) -> str:
    """How an error names the record: its file, or its row in the database."""
    folder = getattr(store, "records_dir", None)
    if folder is not None:
        return str(folder / f"{name}.json")
    db = getattr(store, "db_path", None)
    return f"the `{name}` record in {db}" if db is not None else f"the `{name}` record"


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_record(name: str, data: dict[str, Any], where: str) -> dict[str, Any]:
    """``data`` if it is a sound ``agents``/``messages`` record ({} for none yet), else
    a StorageError naming ``where`` and what is wrong. What these hold (who holds
    which id, the unread messages) no one can rebuild exactly, so a damaged record
    is never read as empty: the next write would reuse ids and drop messages."""
    from ..errors import RECORD_HINT, StorageError

    def bad(what: str) -> StorageError:
        return StorageError(f"{where} is damaged: {what}", hint=RECORD_HINT)

    if not data:
        return data
    if not _int(data.get("next")):
        raise bad(f"its `next` is {data.get('next')!r}, not a positive id number")
    nxt = int(data["next"])
    if name == "agents":
        agents = data.get("agents")
        if not isinstance(agents, dict):
            raise bad(f"its `agents` is a {type(agents).__name__}, not an object of agents "
                      "by id")
        for aid, a in agents.items():
            m = _AGENT_ID.match(str(aid))
            if not (m and isinstance(a, dict) and a.get("id") == aid
                    and isinstance(a.get("name"), str) and a.get("status") in _STATUSES):
                raise bad(f"agent {aid!r} is not an agent entry (id, name, status)")
            if int(m.group(1)) >= nxt:
                raise bad(f"its `next` ({nxt}) would hand out {aid} again")
    elif name == "messages":
        items = data.get("items")
        if not isinstance(items, list):
            raise bad(f"its `items` is a {type(items).__name__}, not a list of messages")
        for i, msg in enumerate(items):
            if not (isinstance(msg, dict) and _int(msg.get("id"))
                    and isinstance(msg.get("body"), str)
                    and all(isinstance(x, list) and all(isinstance(r, str) for r in x)
                            for x in (msg.get("recipients"), msg.get("acked")))):
                raise bad(f"item {i} is not a message (id, body, recipients, acked)")
            if msg["id"] >= nxt:
                raise bad(f"its `next` ({nxt}) would hand out message {msg['id']} again")
    return data


def read_record(store: Any, name: str) -> dict[str, Any]:
    """The store's ``name`` record, checked (see ``check_record``)."""
    return check_record(name, store.read_record(name), record_where(store, name))


def _raw_record(store: Any, name: str) -> str:
    """A damaged record's text as it is, for the ids it still names."""
    folder = getattr(store, "records_dir", None)
    try:
        if folder is not None:
            return str((folder / f"{name}.json").read_text("utf-8", errors="replace"))
        if getattr(store, "db_path", None) is not None:
            row = store.connect().execute("SELECT data FROM records WHERE name = ?",
                                          (name,)).fetchone()
            return str(row[0]) if row is not None else ""
    except (OSError, ValueError):
        pass
    return ""


def rebuild_records(snaps: Mapping[str, Any], events: Iterable[Mapping[str, Any]],
                    damaged: Mapping[str, str], keep: int) -> dict[str, dict[str, Any]]:
    """The ``agents`` and ``messages`` records as the event log tells them, each with
    a ``next`` id beyond any the log, the tasks or the damaged text (``damaged``:
    name -> text) ever named, so no id is handed out twice. Agents come back as the
    log last saw them (their pid, host and lease are not in it); messages with who
    acked them."""
    agents: dict[str, dict[str, Any]] = {}
    items: dict[int, dict[str, Any]] = {}
    top_agent = max([0, *(int(n) for n in re.findall(r"agent-([1-9][0-9]{0,17})",
                                                     damaged.get("agents", "")))])
    top_msg = max([0, *(int(n) for n in re.findall(r'"id"\s*:\s*([0-9]{1,18})',
                                                   damaged.get("messages", "")))])
    for snap in snaps.values():
        for t in snap.get("tasks", ()):
            m = _AGENT_ID.match(str((t.get("execution") or {}).get("agent") or ""))
            if m:
                top_agent = max(top_agent, int(m.group(1)))
    for e in events:
        d = e.get("details") or {}
        kind, when = e.get("event_type"), e.get("timestamp")
        aid = d.get("agent") if isinstance(d.get("agent"), str) else None
        m = _AGENT_ID.match(aid or "")
        if m:
            top_agent = max(top_agent, int(m.group(1)))
        if kind == "agent_registered" and aid and m:
            entry = agents.setdefault(aid, {"id": aid, "name": str(d.get("name") or aid),
                                            "registered_at": when, "kind": None,
                                            "skills": [], "pid": None, "host": None,
                                            "lease": None})
            entry.update({"status": "live", "last_seen": when})
            if d.get("kind") is not None:
                entry["kind"] = d["kind"]
            if isinstance(d.get("skills"), list):
                entry["skills"] = list(d["skills"])
            if isinstance(d.get("identity"), str):
                entry["identity"] = d["identity"]
        elif kind in ("agent_expired", "agent_deregistered") and aid in agents:
            agents[aid]["status"] = "dead" if kind == "agent_expired" else "gone"
        elif kind == "message_sent" and _int(d.get("message_id")):
            mid = int(d["message_id"])
            top_msg = max(top_msg, mid)
            items[mid] = {"id": mid, "from": d.get("sender"), "to": d.get("to"),
                          "kind": d.get("kind"), "body": str(d.get("body") or ""),
                          "sent_at": when,
                          "recipients": [str(r) for r in d.get("recipients") or []],
                          "acked": []}
        elif kind == "message_acked" and aid is not None:
            for i in d.get("message_ids") or ():
                if i in items and aid not in items[i]["acked"]:
                    items[i]["acked"].append(aid)
        if aid in agents and when and kind != "agent_expired":
            agents[aid]["last_seen"] = when
    msgs = [items[i] for i in sorted(items)]
    done = [i for i, x in enumerate(msgs) if set(x["acked"]) >= set(x["recipients"])]
    for i in reversed(done[: max(0, len(msgs) - keep)]):
        del msgs[i]
    return {"agents": {"next": top_agent + 1, "agents": agents},
            "messages": {"next": top_msg + 1, "items": msgs}}


def repair_records(project: Project) -> list[str]:
    """``doctor --repair``, under the writer lock: each damaged record is set aside
    (kept, renamed) and rebuilt from the event log; sound ones are left alone."""
    from ..errors import StorageError

    store = project.store
    damaged: dict[str, str] = {}
    for name in RECORDS:
        try:
            read_record(store, name)
        except StorageError:
            damaged[name] = _raw_record(store, name)
    if not damaged:
        return []
    events = store.events()
    try:
        built = rebuild_records(store.load().milestones, events, damaged,
                                int(settings(project.config())["message_keep"]))
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    stamp = datetime.now(UTC).strftime("damaged-%Y%m%dT%H%M%SZ")
    done = []
    from ..ui import plural

    for name in damaged:
        setter = getattr(store, "set_aside_record", None)
        aside = setter(name, stamp) if setter is not None else None
        store.write_record(name, built[name])
        count = len(built[name]["agents" if name == "agents" else "items"])
        done.append(f"rebuilt {record_where(store, name)} from the event log ("
                    f"{plural(count, 'agent' if name == 'agents' else 'message')}, next id "
                    f"{built[name]['next']})" + (f"; the damaged one is kept as {aside}"
                                                 if aside else ""))
    return done

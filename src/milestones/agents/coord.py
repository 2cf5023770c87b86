"""Agents working one project in parallel: registry, leased claims, messages.

Every step goes through the ``Project``'s writer lock, so it is atomic on every
backend and across processes:

* **registry** (the store's ``agents`` record): an agent registers (name, kind,
  skills, pid, host) and gets an id (``agent-3``); its heartbeats renew the
  leases of everything it holds; an agent silent for longer than its lease is
  dead, and the next coordination step releases its claims (``task_requeued``).
* **claims**: ``claim`` hands the caller the best ready task (dependencies done,
  not held, skills matching, paths not overlapping a held task's, then
  priority, longest chain waiting, id) under a lease. The task's ``execution``
  record keeps the holder and a fencing token that grows with every claim of the
  task; ``complete``, ``fail`` and ``release`` with a stale token are refused.
* **messages** (the store's ``messages`` record): to an agent, a role (agent
  kind) or everyone live; an inbox holds what the addressee has not acked.

Records are not events (heartbeats would flood the log), but every step that
changes who holds what, or what was said, is one: ``agent_registered``,
``task_claimed``, ``task_released``, ``task_requeued``, ``task_failed``,
``message_sent``, ... (see ``events.EVENT_TYPES``).
"""

from __future__ import annotations

import fnmatch
import os
import re
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import Conflict, InvalidInput, NotFound
from ..model import refs

if TYPE_CHECKING:
    from ..project import Project, Txn

RECORDS = ("agents", "messages")
DEFAULTS: dict[str, Any] = {
    "lease_seconds": 300,  # a claim lapses this long after the holder's last heartbeat
    "max_attempts": 3,  # a task failing this many times is blocked and escalated
    "message_keep": 5000,  # acked messages beyond this many are dropped, oldest first
}
ROLE_PREFIX = "role:"
BROADCAST = "*"


# Task statuses that put a milestone in a claim's scope (OPEN), or a sweep's (HELD).
OPEN = ("todo", "in_progress", "blocked")
HELD = ("in_progress",)


def _ts(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return _parse_ts(stamp)


@lru_cache(maxsize=4096)
def _parse_ts(stamp: str) -> float:
    """Seconds since the epoch of a UTC stamp (strptime is slow, and every step reads
    the same few: each agent's last_seen, each claim's claimed_at)."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


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


class Agents:
    """The coordination API of one ``Project``: ``Agents(project)``."""

    def __init__(self, project: Project) -> None:
        self.p = project
        self._batch: tuple[Txn, dict[str, Any]] | None = None

    # ------------------------------------------------------------ helpers

    @property
    def conf(self) -> dict[str, Any]:
        return settings(self.p.config())

    def _registry(self) -> dict[str, Any]:
        reg = read_record(self.p.store, "agents")
        reg.setdefault("next", 1)
        reg.setdefault("agents", {})
        return reg

    def _scope(self, snaps: Mapping[str, Any], only: str | None,
               statuses: Sequence[str]) -> list[str]:
        """The milestones a step must look at (``Project.scope``)."""
        return self.p.scope(snaps, only, statuses)

    def _alive(self, entry: Mapping[str, Any], now: float) -> bool:
        if entry.get("status") == "gone":
            return False
        lease = float(entry.get("lease") or self.conf["lease_seconds"])
        return now - _ts(entry.get("last_seen")) <= lease

    def resolve(self, who: str | None, reg: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The registry entry of an agent id or name (``--agent``/``MILESTONE_AGENT_ID``)."""
        who = (who or os.environ.get("MILESTONE_AGENT_ID") or "").strip()
        if not who:
            raise InvalidInput("no agent given",
                               hint="pass --agent ID or set MILESTONE_AGENT_ID "
                                    "(`milestone agent register` prints the id)")
        agents = (reg if reg is not None else self._registry())["agents"]
        entry = agents.get(who) or next(
            (a for a in agents.values() if a.get("name") == who), None)
        if entry is None:
            raise NotFound(f"no agent {who!r} is registered",
                           hint="`milestone agent register --name NAME` first; "
                                "`milestone agent list` shows who is")
        return dict(entry)

    @contextmanager
    def _step(self) -> Iterator[tuple[Txn, dict[str, Any]]]:
        """One coordination write: the project's write lock, the registry, and the
        sweep of lapsed claims and dead agents that every step starts with. Inside
        ``batch()``, the batch's write."""
        if self._batch is not None:
            tx, reg = self._batch
            try:
                yield tx, reg
            except BaseException:
                tx.forget()  # the step may have changed a milestone it did not record
                raise
            return
        with self.p.transaction() as tx:
            tx.check = False  # status moves only (see Txn.check)
            reg = self._registry()
            before = repr(reg)
            self._sweep(tx, reg)
            yield tx, reg
            if repr(reg) != before:
                self.p.store.write_record("agents", reg)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Several steps as one write (one lock, one sweep, one commit): what
        ``milestone execute`` does with the steps its agents queue up at once. A step
        that is refused (a ``MilestoneError`` its caller catches) leaves the others'
        work standing; any other error undoes the whole batch."""
        if self._batch is not None:
            yield
            return
        with self._step() as pair:
            self._batch = pair
            try:
                yield
            finally:
                self._batch = None

    def _sweep(self, tx: Txn, reg: dict[str, Any]) -> None:
        now = _ts(tx.now)
        lease_default = self.conf["lease_seconds"]
        for entry in reg["agents"].values():
            if entry.get("status") == "live" and not self._alive(entry, now):
                entry["status"] = "dead"
                tx.record("agent_expired", None, None, agent=entry["id"], name=entry["name"],
                          last_seen=entry.get("last_seen"))
        agents = reg["agents"]
        for mid in self._scope(tx.snaps, None, HELD):
            for t in tx.snaps[mid].get("tasks", ()):
                ex = t.get("execution") or {}
                holder = ex.get("agent")
                if not holder or t.get("status") != "in_progress":
                    continue
                entry = agents.get(holder, {})
                renewed = max(_ts(ex.get("claimed_at")),
                              _ts(entry.get("last_seen")) if entry.get("status") == "live" else 0)
                if now - renewed > (ex.get("lease") or lease_default):
                    self._requeue(tx, mid, t["id"], f"lease expired: {holder} last seen "
                                  f"{entry.get('last_seen') or 'never'}", lapsed=True)

    def _requeue(self, tx: Txn, mid: str, tid: str, reason: str, *, lapsed: bool,
                 event: str = "task_requeued", **details: Any) -> md.Task:
        m, before = tx.edit(mid)
        t = m.task(tid)
        ex = dict(t.execution or {})
        holder = ex.pop("agent", None)
        if lapsed:
            ex["lapsed"] = int(ex.get("lapsed", 0)) + 1
            ex["lapsed_from"] = holder  # its token stands until someone claims the task
        spent = md.requeue_task(t, tx.now)
        t.execution = ex
        tx.touch(m)
        tx.record(event, m, before, task=t, only=t, time_spent=spent, agent=holder, reason=reason,
                  token=ex.get("token"), **details)
        tx.follow_status(m)
        return t

    def _held(self, tx: Txn, agent_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(milestone id, task snapshot) of every task an agent holds (or ``agent_id``)."""
        out = []
        for mid in self._scope(tx.snaps, None, HELD):
            for t in tx.snaps[mid].get("tasks", ()):
                holder = (t.get("execution") or {}).get("agent")
                if holder and t.get("status") == "in_progress" and (
                        agent_id is None or holder == agent_id):
                    out.append((mid, t))
        return out

    # ----------------------------------------------------------- registry

    def register(self, name: str, *, kind: str = "worker", skills: Sequence[str] = (),
                 pid: int | None = None, host: str | None = None,
                 lease: int | None = None) -> dict[str, Any]:
        """Register (or re-register, after a restart) an agent; returns its entry."""
        name = (name or "").strip()
        if not name or len(name) > 100 or any(ch.isspace() for ch in name):
            raise InvalidInput(f"agent name {name!r} is not usable",
                               hint="give a short name without spaces, e.g. --name worker-1")
        kind = (kind or "worker").strip() or "worker"
        skills = sorted({s.strip().lower() for s in skills if s.strip()})
        if lease is not None:
            lease = check_lease(lease)
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)
                                or not 1 <= pid < 2**31):
            raise InvalidInput(f"pid {pid!r} is not a process id",
                               hint="give the agent's process id (1 or more), or leave --pid out")
        with self._step() as (tx, reg):
            agents = reg["agents"]
            entry: dict[str, Any] | None = next(
                (a for a in agents.values() if a["name"] == name), None)
            restarted = entry is not None
            if entry is None:
                aid = f"agent-{reg['next']}"
                reg["next"] += 1
                entry = {"id": aid, "name": name, "registered_at": tx.now}
                agents[aid] = entry
            entry.update({"kind": kind, "skills": skills, "pid": pid or os.getpid(),
                          "host": host or socket.gethostname(), "last_seen": tx.now,
                          "status": "live", "lease": lease})
            tx.actor = name
            tx.record("agent_registered", None, None, agent=entry["id"], name=name, kind=kind,
                      skills=skills, restarted=restarted or None)
            return dict(entry)

    def heartbeat(self, who: str | None) -> dict[str, Any]:
        """Renew the agent's leases; says what it holds and how many messages wait."""
        with self._step() as (tx, reg):
            entry = reg["agents"][self.resolve(who, reg)["id"]]
            if entry.get("status") == "gone":
                raise Conflict(f"{entry['id']} was cleaned up",
                               hint="register again with `milestone agent register`")
            revived = entry.get("status") == "dead"
            entry["last_seen"] = tx.now
            entry["status"] = "live"
            if revived:
                tx.record("agent_registered", None, None, agent=entry["id"],
                          name=entry["name"], kind=entry.get("kind"), restarted=True)
            held = [f"{mid}/{t['id']}" for mid, t in self._held(tx, entry["id"])]
        return {"agent": dict(entry), "holds": held, "inbox": len(self.inbox(entry["id"]))}

    def cleanup(self, who: str | None = None) -> dict[str, Any]:
        """Deregister an agent and release its claims; without one, release the claims
        of every dead agent (the sweep every step runs) and list who was dead."""
        with self._step() as (tx, reg):
            if who is None and not os.environ.get("MILESTONE_AGENT_ID"):
                dead = [a["id"] for a in reg["agents"].values() if a.get("status") == "dead"]
                return {"released": [], "dead": dead}
            entry = reg["agents"][self.resolve(who, reg)["id"]]
            released = []
            for mid, t in self._held(tx, entry["id"]):
                self._requeue(tx, mid, t["id"], f"{entry['id']} was cleaned up", lapsed=False,
                              event="task_released")
                released.append(f"{mid}/{t['id']}")
            entry["status"] = "gone"
            entry["last_seen"] = tx.now
            tx.record("agent_deregistered", None, None, agent=entry["id"], name=entry["name"],
                      released=released)
            return {"agent": dict(entry), "released": released}

    def roster(self) -> list[dict[str, Any]]:
        st = self.p.state()
        now = _ts(self.p.clock())
        holds: dict[str, list[str]] = {}
        for mid in self._scope(st.milestones, None, HELD):
            for t in st.milestones[mid].get("tasks", ()):
                holder = (t.get("execution") or {}).get("agent")
                if holder and t.get("status") == "in_progress":
                    holds.setdefault(holder, []).append(f"{mid}/{t['id']}")
        rows = []
        for entry in self._registry()["agents"].values():
            row = dict(entry)
            if row.get("status") == "live" and not self._alive(row, now):
                row["status"] = "dead"
            row["holds"] = holds.get(row["id"], [])
            rows.append(row)
        rows.sort(key=lambda r: int(r["id"].rsplit("-", 1)[1]))
        return rows

    # ------------------------------------------------------------- claims

    def _candidates(self, snaps: Mapping[str, Any], only: str | None,
                    agent: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """Ready tasks, best first (as ``next``), with whether ``agent`` may claim each.

        Works on the snapshots as they are (no model objects): it runs on every
        claim, over every task of the project."""
        mids = self._scope(snaps, only, OPEN)
        status: dict[str, str] = {}

        def learn(mid: str) -> None:
            snap = snaps.get(mid)
            if snap is None:
                status[mid] = "missing"
                return
            status[mid] = "done" if snap["status"] in ("completed", "archived") else "open"
            for t in snap["tasks"]:
                status[f"{mid}/{t['id']}"] = t["status"]

        def status_of(ref: str) -> str | None:
            if ref not in status and ref.split("/", 1)[0] not in status:
                learn(ref.split("/", 1)[0])  # outside the scope: all done, or gone
            return status.get(ref)

        for mid in mids:
            learn(mid)
        finished = md.FINISHED_TASK
        edges: dict[str, list[str]] = {}
        held_paths: list[tuple[str, list[str]]] = []
        rows: list[dict[str, Any]] = []
        for mid in mids:
            snap = snaps[mid]
            closed = snap["status"] in md.CLOSED_MILESTONE or (only is not None and mid != only)
            waiting = any(status_of(d) != "done" for d in snap.get("depends_on") or ())
            for t in snap["tasks"]:
                ref = f"{mid}/{t['id']}"
                st = t["status"]
                if st in finished:
                    continue
                deps = [d if "/" in d else f"{mid}/{d}" for d in t.get("depends_on") or ()]
                edges[ref] = deps
                if st == "in_progress" and t.get("paths") and (t.get("execution") or {}).get(
                        "agent"):
                    held_paths.append((ref, t["paths"]))
                if closed or waiting or st != "todo":
                    continue
                if any(status_of(d) not in finished for d in deps):
                    continue
                rows.append({"ref": ref, "milestone_id": mid, "task_id": t["id"],
                             "title": t["title"], "priority": snap["priority"],
                             "estimate": t.get("estimate"), "skills": list(t.get("skills") or ()),
                             "paths": list(t.get("paths") or ()),
                             "milestone_title": snap["title"]})
        # Work waiting on a task: only open tasks have edges, so the chain counts open work.
        chain = md.dependents_chain(edges, set(edges)) if rows else {}
        for row in rows:
            row["chain"] = chain.get(row["ref"], 1)
        rows.sort(key=lambda r: (md.priority_rank(r["priority"]), -r["chain"],
                                 r["milestone_id"], md.task_number(r["task_id"])))
        skills = set(agent.get("skills") or ()) if agent is not None else None
        for row in rows:
            missing = sorted(set(row["skills"]) - skills) if skills is not None else []
            clash = [f"{ref} ({', '.join(hit)})" for ref, paths in held_paths
                     if (hit := paths_overlap(row["paths"], paths))] if row["paths"] else []
            row["claimable"] = not missing and not clash
            if missing:
                row["reason"] = f"needs skills {', '.join(missing)}"
            elif clash:
                row["reason"] = f"paths overlap a held task: {'; '.join(clash)}"
        return rows

    def ready(self, ref: str | None = None) -> list[dict[str, Any]]:
        """Tasks that can be claimed now, best first (any agent's skills)."""
        st = self.p.state()
        only = refs.resolve_milestone(ref, st.milestones) if ref is not None else None
        return self._candidates(st.milestones, only, None)

    def claim(self, who: str | None, ref: str | None = None, *,
              lease: int | None = None) -> dict[str, Any]:
        """Hold the best ready task for this agent. When nothing can be claimed, ``ref``
        is None and ``open``/``held`` say whether to wait (work is still held or
        blocked) or stop (``open`` is 0: everything is done)."""
        if lease is not None:
            lease = check_lease(lease)
        with self._step() as (tx, reg):
            entry = reg["agents"][self.resolve(who, reg)["id"]]
            if entry.get("status") == "gone":
                raise Conflict(f"{entry['id']} was cleaned up",
                               hint="register again with `milestone agent register`")
            entry["last_seen"] = tx.now
            entry["status"] = "live"
            tx.actor = entry["name"]
            only = refs.resolve_milestone(ref, tx.snaps) if ref is not None else None
            got = self._take(tx, entry, only, lease)
        return got

    def _take(self, tx: Txn, entry: Mapping[str, Any], only: str | None,
              lease: int | None) -> dict[str, Any]:
        """Inside a step: give ``entry``'s agent the best task it may claim."""
        pick = next((r for r in self._candidates(tx.snaps, only, entry) if r["claimable"]),
                    None)
        if pick is None:
            return {"ref": None, "agent": entry["id"], **self._backlog(tx.snaps, only)}
        m, before = tx.edit(pick["milestone_id"])
        t = m.task(pick["task_id"])
        md.start_task(t, tx.now, pick["ref"], [], False)
        ex = dict(t.execution or {})
        ex.pop("lapsed_from", None)
        ex.update({"agent": entry["id"], "token": int(ex.get("token", 0)) + 1,
                   "claimed_at": tx.now,
                   "lease": lease or entry.get("lease") or self.conf["lease_seconds"]})
        t.execution = ex
        t.assignee = entry["name"]
        tx.touch(m)
        tx.record("task_claimed", m, before, task=t, only=t, agent=entry["id"],
                  token=ex["token"],
                  lease=ex["lease"])
        tx.follow_status(m)
        return {"ref": pick["ref"], "token": ex["token"], "lease": ex["lease"],
                "agent": entry["id"], "task": t.to_dict(),
                # Written here, under the lock: it reads the dependencies' snapshots,
                # which on an indexed store are fetched as needed.
                "prompt": task_prompt(tx.snaps, pick["milestone_id"], pick["task_id"])}

    def _backlog(self, snaps: Mapping[str, Any], only: str | None) -> dict[str, int]:
        counts = {"open": 0, "held": 0, "blocked": 0}
        for mid in self._scope(snaps, only, OPEN):
            snap = snaps[mid]
            if (only and mid != only) or snap.get("status") in md.CLOSED_MILESTONE:
                continue
            for t in snap.get("tasks", ()):
                if t["status"] in md.FINISHED_TASK:
                    continue
                counts["open"] += 1
                counts["held"] += t["status"] == "in_progress"
                counts["blocked"] += t["status"] == "blocked"
        return counts

    @contextmanager
    def _holding(self, who: str | None, ref: str | None, token: int | None, verb: str
                 ) -> Iterator[tuple[Txn, dict[str, Any], str, str]]:
        """A step on a task the agent holds; a stale token or lost claim is refused."""
        with self._step() as (tx, reg):
            entry = reg["agents"][self.resolve(who, reg)["id"]]
            aid = entry["id"]
            if ref is None:
                held = self._held(tx, aid)
                if len(held) != 1:
                    raise InvalidInput(
                        f"{aid} holds {len(held)} tasks: name the one to {verb}",
                        hint="give the task reference, e.g. milestone-003/task-2")
                mid, tid = held[0][0], held[0][1]["id"]
            else:
                mid, tid = refs.resolve_task(ref, tx.snaps, tx.current)
            snap = next(x for x in tx.snaps[mid]["tasks"] if x["id"] == tid)
            ex = snap.get("execution") or {}
            status = snap["status"]
            latest = ex.get("token")
            if (not ex.get("agent") and status == "todo" and ex.get("lapsed_from") == aid
                    and token in (None, latest)):
                # Its lease lapsed but nobody claimed the task since: the claim (and its
                # token, still the latest) stands, so the late agent's work counts.
                t = self._retake(tx, mid, tid, entry)
                ex, status = t.execution or {}, t.status
            if token is not None and latest is None:
                raise Conflict(
                    f"cannot {verb} {mid}/{tid}: claim token {token} is stale: the task has "
                    f"never been claimed, so no token is current",
                    hint="check the task reference, or `milestone agent claim` it first")
            if token is not None and latest != token:
                holder = ex.get("agent")
                if holder == aid:  # its own later claim: an old token from an earlier one
                    holding, hint = f"{aid}'s own later claim", f"give --token {latest}"
                else:
                    holding = f"held by {holder}" if holder else "held by nobody now"
                    hint = ("your lease expired and the task was claimed again; drop this "
                            "work and `milestone agent claim` again")
                raise Conflict(
                    f"cannot {verb} {mid}/{tid}: claim token {token} is stale: the current "
                    f"token is {latest} ({holding})", hint=hint)
            if ex.get("agent") != aid or status != "in_progress":
                raise Conflict(
                    f"cannot {verb} {mid}/{tid}: {aid} does not hold it "
                    f"(held by {ex.get('agent') or 'nobody'}, status {status})",
                    hint="your lease may have expired; `milestone agent claim` again")
            entry["last_seen"] = tx.now
            entry["status"] = "live"
            tx.actor = entry["name"]
            yield tx, entry, mid, tid

    def _retake(self, tx: Txn, mid: str, tid: str, entry: Mapping[str, Any]) -> md.Task:
        m, before = tx.edit(mid)
        t = m.task(tid)
        md.start_task(t, tx.now, f"{mid}/{tid}", [], False)
        ex = dict(t.execution or {})
        ex.pop("lapsed_from", None)
        ex["agent"] = entry["id"]
        t.execution = ex
        t.assignee = entry["name"]
        tx.touch(m)
        tx.record("task_claimed", m, before, task=t, only=t, agent=entry["id"],
                  token=ex.get("token"),
                  lease=ex.get("lease"), retaken=True)
        tx.follow_status(m)
        return t

    def complete(self, who: str | None, ref: str | None = None, *, token: int | None = None,
                 result: str | None = None, time_spent: int | None = None,
                 claim_next: bool = False, scope: str | None = None) -> dict[str, Any]:
        """Finish a held task with a result summary; time spent defaults to the lease's
        clock (claim to now). With ``claim_next``, claim the next task (of milestone
        ``scope``, or any) in the same step: ``next`` is what ``claim`` returns."""
        if result is not None:
            result = md.check_text(result, "result", limit=4000)
        if time_spent is not None and not 0 <= time_spent <= 10**7:
            raise InvalidInput(f"time spent {time_spent} is out of range",
                               hint="give seconds, 0 to 10000000")
        with self._holding(who, ref, token, "complete") as (tx, entry, mid, tid):
            m, before = tx.edit(mid)
            t = m.task(tid)
            spent = md.complete_task(t, tx.now, f"{mid}/{tid}", tx.unmet(m, t), False)
            if time_spent is not None:
                t.time_spent += time_spent - spent
                spent = time_spent
            ex = dict(t.execution or {})
            ex.pop("agent", None)
            ex["completed_by"] = entry["id"]
            if result:
                ex["result"] = result
            t.execution = ex
            tx.touch(m)
            tx.record("task_completed", m, before, task=t, only=t, time_spent=spent,
                      agent=entry["id"],
                      token=ex.get("token"), result=result)
            tx.follow_status(m)
            done: dict[str, Any] = {
                "ref": f"{mid}/{tid}", "status": t.status, "token": ex.get("token"),
                "milestone_status": m.status, "time_spent": spent}
            if claim_next:
                only = refs.resolve_milestone(scope, tx.snaps) if scope else None
                done["next"] = self._take(tx, entry, only, None)
        return done

    def fail(self, who: str | None, ref: str | None = None, *, token: int | None = None,
             reason: str = "") -> dict[str, Any]:
        """The agent could not do the task: back in the queue until it has failed
        ``max_attempts`` times, then blocked with the reason and escalated."""
        reason = md.check_text(reason, "fail reason", required=True, limit=1000,
                               single_line=True)
        with self._holding(who, ref, token, "fail") as (tx, entry, mid, tid):
            m, before = tx.edit(mid)
            t = m.task(tid)
            ex = dict(t.execution or {})
            ex.pop("agent", None)
            attempts = ex["attempts"] = int(ex.get("attempts", 0)) + 1
            ex["last_error"] = reason
            spent = md.requeue_task(t, tx.now)
            t.execution = ex
            blocked = attempts >= int(self.conf["max_attempts"])
            why = f"failed {attempts} times; last: {reason}"[:1000]
            if blocked:
                md.block_task(t, tx.now, f"{mid}/{tid}", why)
            tx.touch(m)
            tx.record("task_failed", m, before, task=t, only=t, time_spent=spent,
                      agent=entry["id"],
                      token=ex.get("token"), reason=reason, attempts=attempts,
                      blocked=blocked or None)
            if blocked:
                self._escalate(tx, m, tid, why, rule="repeated_failure")
            tx.follow_status(m)
            return {"ref": f"{mid}/{tid}", "attempts": attempts, "status": t.status,
                    "escalated": blocked}

    def release(self, who: str | None, ref: str | None = None, *,
                token: int | None = None) -> dict[str, Any]:
        """Give a held task back to the queue untouched."""
        with self._holding(who, ref, token, "release") as (tx, entry, mid, tid):
            t = self._requeue(tx, mid, tid, f"released by {entry['id']}", lapsed=False,
                              event="task_released")
            return {"ref": f"{mid}/{tid}", "status": t.status}

    def report_blocker(self, ref: str, reason: str, *, rule: str,
                       block: bool = True) -> dict[str, Any] | None:
        """A blocker rule fired on task ``ref`` (``milestone-003/task-2``): release any
        claim on it, mark it blocked with the reason (unless ``block`` is False), send
        a ``blocker_detected`` event and a message to the milestone's owner. Reporting
        what is already recorded (same task blocked for the same reason) does
        nothing and returns None."""
        reason = md.check_text(reason, "blocker reason", required=True, limit=1000,
                               single_line=True)
        with self._step() as (tx, _reg):
            mid, tid = refs.resolve_task(ref, tx.snaps, tx.current)
            t = tx.milestone(mid).task(tid)
            if reason in t.blockers or t.finished:
                return None
            if block and (t.execution or {}).get("agent") and t.status == "in_progress":
                self._requeue(tx, mid, tid, f"blocker: {reason}", lapsed=False,
                              event="task_released")
            m = tx.milestone(mid)
            if block:
                before = m.to_dict()
                t = m.task(tid)
                spent = md.block_task(t, tx.now, f"{mid}/{tid}", reason)
                tx.touch(m)
                tx.record("task_blocked", m, before, task=t, time_spent=spent, reason=reason,
                          rule=rule)
            self._escalate(tx, m, tid, reason, rule=rule)
            tx.follow_status(m)
            return {"ref": f"{mid}/{tid}", "rule": rule, "reason": reason, "blocked": block,
                    "escalated_to": m.owner or self.p.actor}

    def _escalate(self, tx: Txn, m: md.Milestone, tid: str | None, reason: str, *,
                  rule: str) -> None:
        """A ``blocker_detected`` event and a message to the milestone's owner."""
        ref = f"{m.id}/{tid}" if tid else m.id
        owner = m.owner or self.p.actor
        tx.record("blocker_detected", None, None, mid=m.id, task_id=tid, rule=rule,
                  reason=reason, escalated_to=owner)
        self._post(tx, "milestone", [owner], f"blocker on {ref}: {reason}", kind="escalation",
                   to=owner, about=ref)

    # ----------------------------------------------------------- messages

    def _post(self, tx: Txn, sender: str, recipients: Sequence[str], body: str, *,
              kind: str, to: str, about: str | None = None) -> dict[str, Any]:
        box = read_record(self.p.store, "messages")
        box.setdefault("next", 1)
        items: list[dict[str, Any]] = box.setdefault("items", [])
        msg = {"id": box["next"], "from": sender, "to": to, "kind": kind, "body": body,
               "sent_at": tx.now, "recipients": list(recipients), "acked": []}
        if about:
            msg["about"] = about
        box["next"] += 1
        items.append(msg)
        keep = int(self.conf["message_keep"])
        if len(items) > keep:  # drop the oldest fully read messages first
            done = [i for i, x in enumerate(items) if set(x["acked"]) >= set(x["recipients"])]
            for i in reversed(done[: len(items) - keep]):
                del items[i]
        self.p.store.write_record("messages", box)
        tx.record("message_sent", None, None, message_id=msg["id"], sender=sender, to=to,
                  recipients=list(recipients), body=body, kind=kind)
        return msg

    def send(self, who: str | None, to: str, body: str) -> dict[str, Any]:
        """Send to an agent (id or name), a role (``role:KIND``) or everyone (``*``)."""
        body = md.check_text(body, "message", required=True, limit=4000)
        to = (to or "").strip()
        if not to:
            raise InvalidInput("no addressee given",
                               hint="--to agent-3, --to role:reviewer, or `agent broadcast`")
        with self._step() as (tx, reg):
            sender = self.resolve(who, reg)
            reg["agents"][sender["id"]]["last_seen"] = tx.now
            tx.actor = sender["name"]
            live = [a for a in reg["agents"].values() if a.get("status") == "live"]
            if to == BROADCAST:
                recipients = [a["id"] for a in live if a["id"] != sender["id"]]
                kind = "broadcast"
            elif to.startswith(ROLE_PREFIX):
                role = to[len(ROLE_PREFIX):]
                recipients = [a["id"] for a in live if a.get("kind") == role]
                kind = "role"
                if not recipients:
                    raise NotFound(f"no live agent has the role {role!r}",
                                   hint="`milestone agent list` shows each agent's kind")
            else:
                target = next((a for a in reg["agents"].values()
                               if to in (a["id"], a["name"])), None)
                recipients = [target["id"] if target else to]
                kind = "direct"
            return self._post(tx, sender["id"], recipients, body, kind=kind, to=to)

    def inbox(self, who: str | None, *, include_acked: bool = False) -> list[dict[str, Any]]:
        """Messages addressed to the agent (or a person, by name) it has not acked."""
        reg = self._registry()
        try:
            me = self.resolve(who, reg)
            names = {me["id"], me["name"]}
        except NotFound:
            names = {(who or os.environ.get("MILESTONE_AGENT_ID") or "").strip()}
        out = []
        for msg in read_record(self.p.store, "messages").get("items", []):
            mine = names & set(msg["recipients"])
            if mine and (include_acked or not mine & set(msg["acked"])):
                out.append(msg)
        return out

    def ack(self, who: str | None, ids: Sequence[int]) -> list[int]:
        """Mark messages read; returns the ids newly acked (acking twice is harmless)."""
        with self._step() as (tx, reg):
            try:
                me = self.resolve(who, reg)["id"]
            except NotFound:
                me = (who or os.environ.get("MILESTONE_AGENT_ID") or "").strip()
            box = read_record(self.p.store, "messages")
            by_id = {m["id"]: m for m in box.get("items", [])}
            unknown = [i for i in ids if i not in by_id or me not in by_id[i]["recipients"]]
            if unknown:
                raise NotFound(f"no message {unknown[0]} in {me}'s inbox",
                               hint="`milestone agent inbox` lists the ids")
            newly = [i for i in ids if me not in by_id[i]["acked"]]
            for i in newly:
                by_id[i]["acked"].append(me)
            if newly:
                self.p.store.write_record("messages", box)
                tx.record("message_acked", None, None, agent=me, message_ids=newly)
            return newly


def task_prompt(snaps: Mapping[str, Any], mid: str, tid: str) -> str:
    """What an agent needs to do the task: the task, its milestone, what its
    dependencies produced, and what "done" means."""
    m = snaps[mid]  # the snapshots as they are: nothing here needs the model objects
    t = next(x for x in m["tasks"] if x["id"] == tid)
    lines = [f"# Task {mid}/{tid}: {t['title']}", ""]
    if t.get("description"):
        lines += [t["description"], ""]
    lines += [f"## Milestone {mid}: {m['title']}"]
    if m.get("description"):
        lines += ["", m["description"]]
    deps = []
    for d in t.get("depends_on") or ():
        dmid, dtid = md.split_task_ref(d, mid)
        dt = next((x for x in snaps.get(dmid, {}).get("tasks", ()) if x["id"] == dtid), None)
        if dt is None:
            continue
        result = (dt.get("execution") or {}).get("result") or "(no result recorded)"
        deps.append(f"- {dmid}/{dtid} {dt['title']} [{dt['status']}]: {result}")
    if deps:
        lines += ["", "## Results of the tasks this one depends on", *deps]
    if t.get("paths"):
        lines += ["", "## Files this task may change", *(f"- {p}" for p in t["paths"])]
    done = []
    if t.get("requirements"):
        done += [f"- requirement {r}" for r in t["requirements"]]
    if t.get("run"):
        done.append(f"- the command `{t['run']}` exits 0")
    done += [f"- {c}" for c in m.get("success_criteria") or ()]
    if not done:
        done.append(f"- the work described in the title is finished: {t['title']}")
    lines += ["", "## Done means", *done, "",
              "Report back with `milestone agent complete` (a one-line result) or "
              "`milestone agent fail --reason ...`."]
    return "\n".join(lines)

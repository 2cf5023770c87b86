"""The event log's record format: canonical JSON, the SHA-256 chain, and patches.

Every change is one event. Its ``data`` holds a patch from the milestone's
state before to its state after, so replaying the log from empty rebuilds every
milestone exactly (``replay``). The seed's fields (``milestone_id``,
``event_type``, ``timestamp``, ``details``, ``session_id``) are kept as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

GENESIS_HASH = "0" * 64
SCHEMA = 1

EVENT_TYPES: dict[str, str] = {
    "project_initialized": "`milestone init` created the project",
    "milestone_created": "a milestone was planned",
    "milestone_updated": "milestone fields were edited (`update`)",
    "milestone_started": "the first task of a milestone started",
    "milestone_completed": "every task of a milestone is done or skipped",
    "milestone_status_changed": "a milestone's derived status moved (blocked, reopened, ...)",
    "milestone_archived": "a completed milestone moved to completed/ with its record",
    "milestone_deleted": "a milestone was deleted",
    "task_added": "a task was added to a milestone",
    "task_updated": "task fields were edited (`task edit`)",
    "task_started": "work on a task started (its timer runs)",
    "task_stopped": "work on a task paused (time added to time_spent)",
    "task_completed": "a task is done",
    "task_blocked": "a task is blocked, with the reason",
    "task_unblocked": "a task's blockers were cleared",
    "task_skipped": "a task was skipped",
    "task_reopened": "a done or skipped task was reopened",
    "task_progress": "a task's partial progress changed",
    "task_assigned": "a task got a new assignee",
    "current_changed": "the current milestone changed",
    "note_added": "a session note (`milestone note`)",
    "manual_edit_detected": "a person edited, added or removed a milestone file by hand",
    "review_recorded": "a Kiro gate decision: approve, reject or request changes",
    "gate_opened": "every required role approved a Kiro phase's gate",
    "agent_registered": "an agent registered (or came back after a restart)",
    "agent_expired": "an agent missed its heartbeats for longer than its lease",
    "agent_deregistered": "an agent was cleaned up; its claims were released",
    "task_claimed": "an agent claimed a task under a lease, with a fencing token",
    "task_released": "an agent gave a claimed task back to the queue",
    "task_requeued": "a claim's lease expired (its agent died): the task is ready again",
    "task_failed": "an agent failed a task: re-queued, or blocked after max attempts",
    "message_sent": "a message to an agent, a role, or every live agent",
    "message_acked": "an agent marked messages read",
    "blocker_detected": "a blocker rule fired; the milestone's owner was told",
    "commit_linked": "`git link` recorded a commit that names a task on that task",
    "task_close_refused": "a commit closes a task its rules keep open (dependencies, "
                          "blocked): noted on the task, left open",
    "log_restarted": "`doctor --repair` started a new event log from the current state "
                     "(the old one was deleted or cut short)",
    "log_quarantined": "`doctor --repair` moved event log lines that do not verify to "
                       "logs/quarantine/",
    "team_changed": "`milestone team add|remove|role` changed the team or a role in "
                    "config.yaml (details: action, identity, role, previous, on)",
    "encryption_changed": "`encrypt init|rotate|off` re-sealed every protected value and "
                          "re-chained the log; names the old chain's head",
}


def canonical(obj: Any) -> str:
    """The one JSON text of ``obj`` that hashes are taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def event_hash(event: Mapping[str, Any]) -> str:
    body = {k: v for k, v in event.items() if k != "hash"}
    return sha256_hex(canonical(body).encode("utf-8"))


def sha256_hex(data: bytes) -> str:
    global _SHA256
    if _SHA256 is None:
        _SHA256 = _builtin_sha256()
    return str(_SHA256(data).hexdigest())


_SHA256: Any = None  # loaded on the first hash: reads hash nothing


def _builtin_sha256() -> Any:
    """The built-in SHA-256, as random.py does: hashlib loads OpenSSL, ~5 ms per start."""
    import importlib

    for name in ("_sha256", "_sha2"):  # Python 3.12 moved it into _sha2
        try:
            return importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
    import hashlib  # pragma: no cover  (a Python built without them)

    return hashlib.sha256  # pragma: no cover


def seal(event: dict[str, Any], event_id: int, prev_hash: str) -> dict[str, Any]:
    """Give ``event`` its id and chain hash; returns the same dict."""
    event["event_id"] = event_id
    event["prev_hash"] = prev_hash
    event["hash"] = event_hash(event)
    return event


def seal_line(event: dict[str, Any], event_id: int, prev_hash: str
              ) -> tuple[dict[str, Any], str]:
    """``seal``, and the sealed event's ``canonical`` text (its log line): both made
    from one serialisation of each value (a created milestone of 100,000 tasks is
    turned into JSON once, not once for the hash and again for the log).

    ``canonical`` of a mapping with text keys is its members' texts, ``"key":value``,
    in key order, joined by commas in braces: the hash is taken over those of the
    body, the line adds the hash's own member."""
    event["event_id"] = event_id
    event["prev_hash"] = prev_hash
    if not all(type(k) is str for k in event):
        seal(event, event_id, prev_hash)  # (no event has other keys)
        return event, canonical(event)
    members = {k: f"{canonical(k)}:{canonical(v)}" for k, v in event.items() if k != "hash"}
    global _SHA256
    if _SHA256 is None:
        _SHA256 = _builtin_sha256()
    digest = _SHA256(b"{")  # the body's text hashed member by member, never made whole
    for i, k in enumerate(sorted(members)):
        if i:
            digest.update(b",")
        digest.update(members[k].encode("utf-8"))
    digest.update(b"}")
    event["hash"] = str(digest.hexdigest())
    members["hash"] = f'"hash":{canonical(event["hash"])}'
    return event, "{" + ",".join(members[k] for k in sorted(members)) + "}"


def make_event(
    event_type: str,
    milestone_id: str | None,
    *,
    timestamp: str,
    actor: str,
    session_id: str,
    data: dict[str, Any] | None = None,
    task_id: str | None = None,
    progress: float | None = None,
    time_spent: int = 0,
    blockers: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    details: dict[str, Any] = {
        "task_id": task_id,
        "progress_percentage": progress,
        "time_spent": time_spent,
        "blockers": list(blockers or []),
    }
    details.update({k: v for k, v in extra.items() if v is not None})
    return {
        "milestone_id": milestone_id,
        "event_type": event_type,
        "timestamp": timestamp,
        "details": details,
        "session_id": session_id,
        "actor": actor,
        "data": data or {},
    }


def verify_chain(
    events: Iterable[Mapping[str, Any]], prev_hash: str = GENESIS_HASH, prev_id: int = 0
) -> tuple[int, str] | None:
    """Check ids and hashes; return (position, problem) of the first bad event or None."""
    chain = Chain(prev_hash, prev_id)
    for event in events:
        if not chain.add(event):
            break
    return chain.bad


class Chain:
    """``verify_chain`` one event at a time, for a reader that streams the log: ``bad``
    is (position, problem) of the first bad event, None while every event added checks."""

    __slots__ = ("bad", "pos", "prev_hash", "prev_id")

    def __init__(self, prev_hash: str = GENESIS_HASH, prev_id: int = 0) -> None:
        self.prev_hash, self.prev_id = prev_hash, prev_id
        self.pos = 0
        self.bad: tuple[int, str] | None = None

    def add(self, ev: Mapping[str, Any]) -> bool:
        """Check the next event; False (and nothing more checked) from the first bad one."""
        if self.bad is not None:
            return False
        if ev.get("event_id") != self.prev_id + 1:
            gap = isinstance(ev.get("event_id"), int) and ev["event_id"] > self.prev_id + 1
            self.bad = (self.pos, f"event_id {ev.get('event_id')} should be {self.prev_id + 1}"
                        + (" (events are missing before it)" if gap else ""))
        elif ev.get("prev_hash") != self.prev_hash:
            self.bad = (self.pos, "prev_hash does not match the previous event's hash")
        elif ev.get("hash") != event_hash(ev):
            self.bad = (self.pos, "hash does not match the event's content")
        else:
            self.prev_id, self.prev_hash = ev["event_id"], ev["hash"]
            self.pos += 1
            return True
        return False


# --------------------------------------------------------------------- patches


def _changed(old: Mapping[str, Any], new: Mapping[str, Any], key: str) -> bool:
    """Does ``new[key]`` differ from ``old``'s? A key new with the value None counts."""
    if key not in old:
        return True
    before, after = old[key], new[key]
    if before != after or type(before) is not type(after):
        return True  # 1 == 1.0 == True, but they are different JSON
    if isinstance(after, (list, dict)):
        if not after or (type(after) is list and all(type(x) is str for x in after)):
            return False  # equal, and nothing inside that could be 1 where it was 1.0
        return canonical(before) != canonical(after)
    return False


_NUMERIC = ("estimate", "time_spent", "progress")  # task fields whose type may flip


def diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> dict[str, Any]:
    """A patch taking milestone dict ``old`` to ``new`` (both canonical ``to_dict``)."""
    if old is None and new is None:
        return {}
    if old is None:
        return {"create": dict(new or {})}
    if new is None:
        return {"delete": True}
    patch: dict[str, Any] = {}
    fields = {k: new[k] for k in new if k != "tasks" and _changed(old, new, k)}
    removed = [k for k in old if k != "tasks" and k not in new]
    if fields:
        patch["set"] = fields
    if removed:
        patch["unset"] = removed
    if new.get("tasks") is old.get("tasks"):
        return patch  # the very same task records (``to_dict(tasks=...)``): none changed
    old_tasks = {t["id"]: t for t in old.get("tasks", [])}
    new_tasks = {t["id"]: t for t in new.get("tasks", [])}
    tset: dict[str, Any] = {}
    replaced: set[str] = set()
    for tid, t in new_tasks.items():
        before = old_tasks.get(tid)
        if before is None or before is t:
            continue
        if before == t and all(type(before.get(k)) is type(t.get(k)) for k in _NUMERIC):
            continue  # most tasks of a write are untouched (1 == 1.0: see _changed)
        changed = {k: t[k] for k in t if _changed(before, t, k)}
        gone = [k for k in before if k not in t]
        if "$unset" in changed:
            replaced.add(tid)  # a task field named "$unset" cannot be patched: replace it
        elif changed or gone:
            tset[tid] = {**changed, **({"$unset": gone} if gone else {})}
    added = [t for tid, t in new_tasks.items() if tid not in old_tasks or tid in replaced]
    dropped = [tid for tid in old_tasks if tid not in new_tasks or tid in replaced]
    if tset:
        patch["tasks_set"] = tset
    if added:
        patch["tasks_add"] = added
    if dropped:
        patch["tasks_remove"] = dropped
    kept = [tid for tid in old_tasks if tid in new_tasks and tid not in replaced]
    order_after = kept + [t["id"] for t in added]
    if order_after != list(new_tasks):
        patch["tasks_order"] = list(new_tasks)
    return patch


def apply(state: Mapping[str, Any] | None, patch: Mapping[str, Any], *,
          fresh: bool = False) -> dict[str, Any] | None:
    """Apply a ``diff`` patch to a milestone dict; returns a new dict (or None if deleted).

    The patch's values are copied into the result, unless ``fresh``: the caller parsed
    the patch for this alone and keeps no other reference to it (a replay that is
    compared and dropped), so the result may share them."""
    copy = _as_is if fresh else _copy
    if "create" in patch:
        created: dict[str, Any] = copy(patch["create"])
        return created
    if patch.get("delete"):
        return None
    if state is None:
        raise ValueError("patch applied to a milestone that does not exist")
    new = dict(state)
    new.update(copy(patch.get("set", {})))
    for k in patch.get("unset", ()):
        new.pop(k, None)
    # The task records a patch does not change are shared with ``state`` (snapshots
    # are never changed in place), so a write that moves one task of a large
    # milestone copies one record, and the YAML writer can tell the others did not
    # change (yamlio.dump_fast).
    tasks = list(state.get("tasks", []))
    tset = patch.get("tasks_set", {})
    if tset:
        for i, old in enumerate(tasks):
            change = tset.get(old["id"])
            if change:
                t = tasks[i] = dict(old)
                for k, v in change.items():
                    if k != "$unset":
                        t[k] = copy(v)
                for k in change.get("$unset", ()):
                    t.pop(k, None)
    drop = set(patch.get("tasks_remove", ()))
    tasks = [t for t in tasks if t["id"] not in drop]
    tasks.extend(copy(patch.get("tasks_add", [])))
    if "tasks_order" in patch:
        by_id = {t["id"]: t for t in tasks}
        tasks = [by_id[tid] for tid in patch["tasks_order"]]
    new["tasks"] = tasks
    return new


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _as_is(value: Any) -> Any:
    return value


# The keys of ``data`` that make an event a patch of its milestone.
PATCH_KEYS = ("create", "delete", "set", "unset", "tasks_set", "tasks_add", "tasks_remove",
              "tasks_order")


class ReplayState:
    """What the log says the project is: milestones, the current one, id counters."""

    def __init__(self, *, fresh: bool = False) -> None:
        self.fresh = fresh  # the events fed are the caller's own copies (see ``apply``)
        self.milestones: dict[str, dict[str, Any]] = {}
        self.current: str | None = None
        self.max_number = 0
        self.notes: list[dict[str, Any]] = []
        self.last_id = 0
        self.last_hash = GENESIS_HASH

    def feed(self, ev: Mapping[str, Any]) -> None:
        data = ev.get("data") or {}
        mid = ev.get("milestone_id")
        if "current" in data:
            self.current = data["current"]
        if "note" in data:
            self.notes.append(
                {"text": data["note"], "actor": ev.get("actor"), "timestamp": ev.get("timestamp")}
            )
        if mid and any(k in data for k in PATCH_KEYS):
            after = apply(self.milestones.get(mid), data, fresh=self.fresh)
            if after is None:
                self.milestones.pop(mid, None)
                if self.current == mid:
                    self.current = None
            else:
                self.milestones[mid] = after
                num = int(mid.rsplit("-", 1)[1])
                self.max_number = max(self.max_number, num)
        self.last_id = int(ev.get("event_id", self.last_id))
        self.last_hash = str(ev.get("hash", self.last_hash))


def replay(events: Iterable[Mapping[str, Any]], *, fresh: bool = False) -> ReplayState:
    """What ``events`` make of the project; ``fresh``: they are the caller's own copies,
    kept nowhere else (their values are not copied again, see ``apply``)."""
    state = ReplayState(fresh=fresh)
    for ev in events:
        state.feed(ev)
    return state

"""``milestone doctor``: check the event log, the snapshots and the files; repair safely.

Repair only does what needs no guessing: truncate a torn last log line (a write
that died mid-append, never applied), finish an interrupted write from the
log's tail, record hand edits, rewrite snapshots the log disagrees with, and
set a damaged agents/messages record aside and rebuild it from the log.
A broken hash chain is never re-hashed over: the line that does not verify and
every line after it move to ``logs/quarantine/`` (recorded as ``log_quarantined``),
and a log whose applied events are gone starts a new chain from the current state
(recorded as ``log_restarted``). Damage to the database's tables is reported as
failed checks, never an exception.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from ..errors import MilestoneError, StorageError
from ..model import events as ev
from ..storage.logcheck import check as _check
from ..storage.logcheck import check_log
from ..ui import plural

if TYPE_CHECKING:
    from ..project import Project


def rule_sections(project: Project) -> list[dict[str, Any]]:
    """The schema and cross-reference sections, from the validation rules' errors."""
    report = project.validate(types=("standard",))
    out = []
    for name, codes in (("YAML syntax and schema", "MS1"), ("cross-references", "MS2")):
        errors = [f for f in report["findings"]
                  if f["code"].startswith(codes) and f["severity"] == "error"]
        detail = "consistent" if not errors else (
            f"{errors[0]['location']}: {errors[0]['code']} {errors[0]['message']}"
            + (f" (and {len(errors) - 1} more; see `milestone validate`)" if errors[1:] else ""))
        out.append(_check(name, not errors, detail))
    return out


def check_records(project: Project) -> list[dict[str, Any]]:
    """The agents' records (``agents``, ``messages``): each sound, or named with what
    is wrong and how to fix it (``--repair`` rebuilds it from the log)."""
    from ..agents.coord import RECORDS, read_record

    out = []
    for name in RECORDS:
        try:
            data = read_record(project.store, name)
        except MilestoneError as exc:
            out.append(_check(f"{name} record", False, str(exc)))
            continue
        count = len(data.get("agents" if name == "agents" else "items") or ())
        out.append(_check(f"{name} record", True,
                          plural(count, 'agent' if name == 'agents' else 'message')))
    return out


def _make(project: Project) -> Any:
    def make(kind: str, mid: str | None, data: dict[str, Any], summary: str) -> dict[str, Any]:
        return ev.make_event(kind, mid, timestamp=project.clock(), actor=project.actor,
                             session_id=project.session_id, data=data, summary=summary)
    return make


def _head_check(project: Project, verified: list[dict[str, Any]], st: Any) -> dict[str, Any]:
    """The snapshots' head (state.json, the database's meta) is an event of the log."""
    store = project.store
    where = "logs/state.json" if getattr(store, "log_path", None) else "the database's meta"
    last = verified[-1] if verified else {"event_id": 0, "hash": ev.GENESIS_HASH}
    applied, head = st.last_event_id, st.last_hash
    at = verified[applied - 1] if 0 < applied <= len(verified) else None
    if (applied == 0 and head == ev.GENESIS_HASH) or (at is not None and at["hash"] == head):
        return _check("log head", True, f"{where} applied event #{applied}, which verifies")
    if last["event_id"] < applied:
        fix = ("restore a backup, or `milestone doctor --repair` starts a new log from the "
               "current state" if hasattr(store, "repair_log")
               else "restore a backup (`milestone restore`)")
        detail = (f"the log ends at event #{last['event_id']} (of those that verify), but "
                  f"{where} applied #{applied}: events are missing — {fix}")
    else:
        detail = f"event #{applied} of the log is not the one {where} applied"
    return _check("log head", False, detail)


def run(project: Project, *, repair: bool = False) -> dict[str, Any]:
    if repair:  # an admin operation: owners only (a check alone is a read)
        project.require("admin", operation="doctor.repair")
    try:
        return _run(project, repair=repair)
    except (StorageError, sqlite3.Error, ValueError, KeyError, TypeError, AttributeError) as exc:
        # The database's tables were changed by something else (rows deleted, a
        # snapshot edited): whatever the reading tripped on is the finding.
        if project.store.backend != "database":
            raise
        what = exc.message if isinstance(exc, StorageError) else f"{type(exc).__name__}: {exc}"
        detail = f"{project.root}/database: the data cannot be read ({what})"
        return {"schema": 1, "healthy": False, "repaired": repair, "repairs": [],
                "checks": [_check("database readable", False,
                                  detail + "; restore a backup (`milestone restore`)")]}


def _run(project: Project, *, repair: bool = False) -> dict[str, Any]:
    store = project.store
    repairs: list[str] = []
    if repair:
        from ..storage.restore import recover_restore

        repairs += recover_restore(project.root)
        with store.lock():
            fix = getattr(store, "repair_log", None)
            if fix is not None:
                repairs += fix(_make(project))
            repairs += store.recover()
            distrust = getattr(store, "distrust", None)
            if distrust is not None:
                distrust()  # every file by content: a same-size, same-mtime edit too
            damage = getattr(store, "damage", None)
            if damage:
                repairs.append(f"left alone (restore a backup): {damage}")
            sealed: list[dict[str, Any]] = []
            try:
                if not damage:  # no hand edits recorded on top of a log that does not verify
                    sealed = project.sync()
            except MilestoneError as exc:  # a broken file: a person must fix it
                repairs.append(f"left alone (fix by hand): {exc}")
            if sealed:
                repairs.append(f"recorded {plural(len(sealed), 'hand edit')} as events")
            from ..agents.coord import repair_records

            repairs += repair_records(project)
            replayed = ev.replay(store.events())
            st = store.load()
            differs = replayed.milestones != st.milestones or replayed.current != st.current
            if not damage and differs and hasattr(store, "rebuild"):
                changed = store.rebuild()
                repairs.append(
                    "rewrote snapshots from the log"
                    + (f": {', '.join(changed)}" if changed else "")
                )
    checks, events = check_log(project.store)
    interrupted = getattr(store, "rotation_interrupted", None)
    if interrupted is not None and interrupted():
        checks.append(_check("log rotation", False,
                             "a log rotation was interrupted; the next command finishes it, "
                             "or `milestone doctor --repair`"))
    bad = ev.verify_chain(events)
    verified = events if bad is None else events[:bad[0]]  # what is applied, at most
    replayed = ev.replay(verified)
    st = store.load()
    checks.append(_head_check(project, verified, st))
    pending = store.needs_sync()
    same = replayed.milestones == st.milestones and replayed.current == st.current
    if same:
        n = len(st.milestones)
        detail = f"{plural(n, 'milestone')} match{'es' if n == 1 else ''} the log"
    else:
        diff = sorted(set(replayed.milestones) ^ set(st.milestones)) or sorted(
            k for k in replayed.milestones if replayed.milestones[k] != st.milestones.get(k)
        )
        detail = f"snapshots differ from the log: {', '.join(diff) or 'current milestone'}"
    checks.append(_check("snapshots match the log", same, detail))
    check_files = getattr(store, "check_files", None)
    if check_files is not None:
        results = check_files()
        errors = [err for _rel, _snap, err in results if err]
        checks.append(
            _check(
                "milestone files",
                not errors,
                (f"{plural(len(results), 'file')} parse" + ("s" if len(results) == 1 else ""))
                if not errors else errors[0],
            )
        )
        unrecorded = [
            rel
            for rel, snap, err in results
            if not err and snap is not None and st.milestones.get(snap["id"]) != snap
        ]
        checks.append(
            _check(
                "hand edits recorded",
                not unrecorded,
                "none pending" if not unrecorded else f"not yet recorded: {', '.join(unrecorded)}",
            )
        )
    elif pending:
        checks.append(_check("pending changes", False, "changes not yet recorded"))
    checks += check_records(project)
    checks += rule_sections(project)
    healthy = all(c["ok"] for c in checks)
    return {
        "schema": 1,
        "healthy": healthy,
        "repaired": repair,
        "repairs": repairs,
        "checks": checks,
    }

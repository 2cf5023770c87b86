"""``milestone doctor``: check the event log, the snapshots and the files; repair safely.

Repair only does what needs no guessing: truncate a torn last log line (a write
that died mid-append, never applied), finish an interrupted write from the
log's tail, record hand edits, and rewrite snapshots the log disagrees with.
A broken hash chain in the middle of the log is reported, never "fixed".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import events as ev
from .errors import MilestoneError
from .storage.fsutil import loads_json
from .storage.logfiles import LogFiles

if TYPE_CHECKING:
    from .project import Project


def _check(name: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail}


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


def check_log(project: Project) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check the raw log line by line, across the rotated archives and the live log;
    returns (checks, the events that parsed). Problems are named ``file:line``."""
    store = project.store
    path = getattr(store, "log_path", None)
    checks: list[dict[str, Any]] = []
    if path is None:
        events = list(store.events())
        bad = ev.verify_chain(events)
        checks.append(
            _check(
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
        checks.append(_check("event log", False, f"{path} is missing"))
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
    checks.append(
        _check(
            "event log readable",
            unreadable is None,
            f"{len(parsed)} events" + (f" in {len(segments)} files" if len(segments) > 1 else "")
            if unreadable is None
            else unreadable,
        )
    )
    checks.append(_check("event log complete", torn is None, torn or "every line is whole"))
    bad = ev.verify_chain(parsed)
    if bad is None:
        detail = f"valid through event #{parsed[-1]['event_id']}" if parsed else "empty log"
    else:
        label, line = where[bad[0]]
        detail = f"{label}:{line}: {bad[1]}"
    checks.append(_check("hash chain", bad is None, detail))
    if len(segments) > 1 or log_files.index_path.exists():
        problems = log_files.check_index(segments) + ([repeated] if repeated else [])
        archives = len(segments) - 1
        checks.append(
            _check(
                "log archives",
                not problems,
                f"{archives} archive{'s' if archives != 1 else ''}, indexed"
                if not problems
                else problems[0] + (f" (and {len(problems) - 1} more)" if problems[1:] else ""),
            )
        )
    return checks, parsed


def run(project: Project, *, repair: bool = False) -> dict[str, Any]:
    store = project.store
    repairs: list[str] = []
    if repair:
        from .backup import recover_restore

        repairs += recover_restore(project.root)
        with store.lock():
            repairs += store.recover()
            try:
                sealed = project._sync()
            except MilestoneError as exc:  # a broken file: a person must fix it
                sealed = []
                repairs.append(f"left alone (fix by hand): {exc}")
            if sealed:
                repairs.append(f"recorded {len(sealed)} hand edit(s) as events")
            replayed = ev.replay(store.events())
            st = store.load()
            if (replayed.milestones != st.milestones or replayed.current != st.current) and hasattr(
                store, "rebuild"
            ):
                changed = store.rebuild()
                repairs.append(
                    "rewrote snapshots from the log"
                    + (f": {', '.join(changed)}" if changed else "")
                )
    checks, events = check_log(project)
    interrupted = getattr(store, "rotation_interrupted", None)
    if interrupted is not None and interrupted():
        checks.append(_check("log rotation", False,
                             "a log rotation was interrupted; the next command finishes it, "
                             "or `milestone doctor --repair`"))
    replayed = ev.replay(events)
    st = store.load()
    pending = store.needs_sync()
    same = replayed.milestones == st.milestones and replayed.current == st.current
    if same:
        detail = f"{len(st.milestones)} milestones match the log"
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
                f"{len(results)} files parse" if not errors else errors[0],
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
    checks += rule_sections(project)
    healthy = all(c["ok"] for c in checks)
    return {
        "schema": 1,
        "healthy": healthy,
        "repaired": repair,
        "repairs": repairs,
        "checks": checks,
    }

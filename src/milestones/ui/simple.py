"""Plain ASCII renderers: they take the view data (the JSON contract) and return text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import plural

HEALTH = {
    "on_track": "on track",
    "at_risk": "at risk",
    "overdue": "OVERDUE",
    "done": "done",
    "cancelled": "cancelled",
}
TASK_MARK = {"todo": "[ ]", "in_progress": "[~]", "blocked": "[!]", "done": "[x]", "skipped": "[-]"}


def bar(pct: float, width: int = 20) -> str:
    filled = round(width * max(0.0, min(100.0, pct)) / 100.0)
    return "[" + "#" * filled + "." * (width - filled) + f"] {pct:5.1f}%"


def duration(seconds: int | float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    h, rem = divmod(s, 3600)
    m = rem // 60
    return f"{h}h{m:02d}m" if h else f"{m}m"


def hours(value: float | int | None) -> str:
    if not value:
        return "-"
    return f"{value:g}h"


def _counts(c: Mapping[str, int]) -> str:
    parts = [f"{c.get('done', 0)}/{c.get('total', 0)} done"]
    for key, label in (
        ("in_progress", "in progress"),
        ("blocked", "blocked"),
        ("skipped", "skipped"),
    ):
        if c.get(key):
            parts.append(f"{c[key]} {label}")
    return ", ".join(parts)


def milestone_block(s: Mapping[str, Any], current: str | None) -> list[str]:
    mark = "*" if s["id"] == current else " "
    lines = [
        f"{mark} {s['id']}  {s['title']}",
        f"    {bar(s['progress'])}  {s['status']}, {HEALTH.get(s['health'], s['health'])}"
        f", {s['priority']} priority",
    ]
    meta = [_counts(s["counts"])]
    if s.get("due_date"):
        meta.append(f"due {s['due_date']}")
    if s.get("owner"):
        meta.append(f"owner {s['owner']}")
    if s.get("time_spent"):
        meta.append(f"spent {duration(s['time_spent'])}")
    if s.get("estimate_hours"):
        meta.append(f"estimated {hours(s['estimate_hours'])}")
    lines.append("    " + "; ".join(meta))
    for b in s.get("blocked", []):
        lines.append(f"    blocked: {b['ref']} {b['title']} ({'; '.join(b['blockers'])})")
    for n in s.get("next", []):
        lines.append(f"    next: {n['ref']} {n['title']}")
    return lines


def render_status(data: Mapping[str, Any]) -> str:
    if not data["milestones"]:
        return 'No milestones yet. Create one with: milestone plan "Title" --task "First task"'
    out: list[str] = []
    for s in data["milestones"]:
        out += milestone_block(s, data.get("current"))
        out.append("")
    t = data.get("totals") or {}
    if t and len(data["milestones"]) > 1:
        tasks = t.get("tasks", {})
        counted = t.get("by_status") or {} if t.get("includes_archived") else {}
        archived = counted.get("archived", 0)
        out.append(
            f"{plural(t['milestones'], 'milestone')}"
            + (f" in all, {archived} of them archived (not listed above)" if archived else "")
            + f"; tasks: {tasks.get('done', 0)} done, "
            f"{tasks.get('in_progress', 0)} in progress, {tasks.get('blocked', 0)} blocked, "
            f"{tasks.get('todo', 0)} to do"
        )
    return "\n".join(out).rstrip()


def render_list(data: Mapping[str, Any]) -> str:
    rows = data["milestones"]
    if not rows:
        return "No milestones match."
    width = max(len(r["title"]) for r in rows)
    width = min(max(width, 5), 50)
    lines = [
        f"  {'ID':<14} {'TITLE':<{width}} {'STATUS':<12} {'PRI':<8} {'PROGRESS':>8} "
        f"{'DUE':<10} HEALTH"
    ]
    for r in rows:
        mark = "*" if r["id"] == data.get("current") else " "
        title = r["title"] if len(r["title"]) <= width else r["title"][: width - 1] + "…"
        lines.append(
            f"{mark} {r['id']:<14} {title:<{width}} {r['status']:<12} "
            f"{r['priority']:<8} {r['progress']:>7.1f}% {r['due_date'] or '-':<10} "
            f"{HEALTH.get(r['health'], r['health'])}"
        )
    return "\n".join(lines)


def render_task(t: Mapping[str, Any]) -> str:
    lines = [
        f"{t['ref']}  {t['title']}",
        f"  status:     {t['status']}" + (f" ({t['progress']}%)" if t.get("progress") else ""),
        f"  milestone:  {t['milestone_id']} {t['milestone_title']}",
    ]
    if t.get("description"):
        lines.append("  about:      " + t["description"].replace("\n", "\n" + " " * 14))
    if t.get("depends_on"):
        lines.append(f"  depends on: {', '.join(t['depends_on'])}")
    if t.get("waiting_on"):
        lines.append(f"  waiting on: {', '.join(t['waiting_on'])}")
    for key, label in (
        ("assignee", "assignee"),
        ("run", "run"),
        ("started_at", "started"),
        ("completed_at", "completed"),
    ):
        if t.get(key):
            lines.append(f"  {label + ':':<11} {t[key]}")
    if t.get("estimate") is not None:
        lines.append(f"  estimate:   {hours(t['estimate'])}")
    if t.get("time_spent"):
        lines.append(f"  spent:      {duration(t['time_spent'])}")
    if t.get("skills"):
        lines.append(f"  skills:     {', '.join(t['skills'])}")
    if t.get("blockers"):
        lines.append(f"  blockers:   {'; '.join(t['blockers'])}")
    lines += commit_lines(t)
    return "\n".join(lines)


def commits_of(t: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The commits `milestone git link` recorded on a task (its ``execution``)."""
    return list((t.get("execution") or {}).get("commits") or [])


def commit_lines(t: Mapping[str, Any]) -> list[str]:
    commits = commits_of(t)
    if not commits:
        return []
    return ["  commits:"] + [
        f"    {c.get('sha', '')[:10]} {c.get('subject', '')}"
        + (f" ({c['author']}, {c['date']})" if c.get("author") and c.get("date") else "")
        + (f" [did not close it: {c['close_refused']}]" if c.get("close_refused") else "")
        for c in commits
    ]


def render_show(data: Mapping[str, Any]) -> str:
    if data["kind"] == "task":
        return render_task(data["task"])
    m = data["milestone"]
    lines = [
        f"{m['id']}  {m['title']}",
        f"  {bar(m['progress'])}  {m['status']}, "
        f"{HEALTH.get(m['health'], m['health'])}, {m['priority']} priority",
    ]
    if m.get("description"):
        lines.append("  " + m["description"].replace("\n", "\n  "))
    meta = []
    for key, label in (
        ("owner", "owner"),
        ("start_date", "starts"),
        ("due_date", "due"),
        ("category", "category"),
    ):
        if m.get(key):
            meta.append(f"{label} {m[key]}")
    if m.get("tags"):
        meta.append("tags " + ", ".join(m["tags"]))
    if m.get("depends_on"):
        meta.append("depends on " + ", ".join(m["depends_on"]))
    if meta:
        lines.append("  " + "; ".join(meta))
    if m.get("success_criteria"):
        lines.append("  success criteria:")
        lines += [f"    - {c}" for c in m["success_criteria"]]
    lines.append(f"  tasks ({_counts(m['counts'])}):")
    for t in m["tasks"]:
        extra = []
        if t.get("depends_on"):
            extra.append("after " + ", ".join(t["depends_on"]))
        if t.get("estimate") is not None:
            extra.append(hours(t["estimate"]))
        if t.get("assignee"):
            extra.append("@" + t["assignee"])
        if t["status"] == "in_progress" and t.get("progress"):
            extra.append(f"{t['progress']}%")
        if t.get("blockers"):
            extra.append("blocked: " + "; ".join(t["blockers"]))
        if commits_of(t):
            extra.append(plural(len(commits_of(t)), "commit"))
        tail = f"  ({'; '.join(extra)})" if extra else ""
        lines.append(f"    {TASK_MARK[t['status']]} {t['id']:<8} {t['title']}{tail}")
    if data.get("show_critical_path"):
        lines += critical_path_lines(m)
    if m.get("completion"):
        c = m["completion"]
        lines.append(
            f"  completion: estimated {hours(c.get('estimated_hours'))}, actual "
            f"{hours(c.get('actual_hours'))}, efficiency {c.get('efficiency') or '-'}, "
            f"{c.get('duration_days')} days, "
            + (
                "on time"
                if c.get("on_time")
                else "late"
                if c.get("on_time") is False
                else "no due date"
            )
        )
        lines += [f"    lesson: {x}" for x in c.get("lessons", [])]
    return "\n".join(lines)


def render_next(data: Mapping[str, Any]) -> str:
    rows = data["tasks"]
    if not rows:
        return ("Nothing is ready to start: every open task waits on another, or is blocked "
                "(`milestone validate` names a dependency cycle, if that is why).")
    lines = [
        f"{r['ref']:<24} {r['title']}  ({r['priority']}, unblocks {r['chain'] - 1}"
        + (f", {hours(r['estimate'])}" if r.get("estimate") else "")
        + ")"
        for r in rows
    ]
    more = int(data.get("total") or len(rows)) - len(rows)
    if more > 0:
        lines.append(f"... and {more} more ready (`milestone next --all` lists every one)")
    return "\n".join(lines)


def event_line(e: Mapping[str, Any]) -> str:
    d = e.get("details") or {}
    target = e.get("milestone_id") or "-"
    if d.get("task_id"):
        target += "/" + d["task_id"]
    extra = []
    if d.get("progress_percentage") is not None:
        extra.append(f"{d['progress_percentage']}%")
    if d.get("time_spent"):
        extra.append(f"+{duration(d['time_spent'])}")
    if d.get("reason"):
        extra.append(f"reason: {d['reason']}")
    if d.get("summary"):
        extra.append(str(d["summary"]))
    if d.get("forced"):
        extra.append("FORCED")
    note = (e.get("data") or {}).get("note")
    if note:
        extra.append(f"note: {note}")
    tail = f"  ({'; '.join(extra)})" if extra else ""
    return (
        f"#{e['event_id']:<5} {e['timestamp']}  {e['event_type']:<24} {target:<24} "
        f"{e.get('actor', '')}{tail}"
    )


def render_log(data: Mapping[str, Any]) -> str:
    rows = data["events"]
    if not rows:
        return "No events match."
    return "\n".join(event_line(e) for e in rows)


def render_resume(data: Mapping[str, Any]) -> str:
    lines = []
    if data.get("session_id"):
        lines.append(
            f"Session {data['session_id']} ({data.get('actor')}), last active "
            f"{data.get('updated_at')}"
        )
    git = data.get("git") or {}
    if git.get("branch") or git.get("commit"):
        lines.append(f"Git: {git.get('branch') or '(detached)'} @ {(git.get('commit') or '')[:12]}")
    if data.get("cwd"):
        lines.append(f"Directory: {data['cwd']}")
    lines.append(f"Current milestone: {data.get('current_milestone') or 'none'}")
    last = data.get("last_event")
    if last:
        target = last.get("milestone_id") or ""
        if last.get("task_id"):
            target += "/" + last["task_id"]
        lines.append(
            f"Last change: #{last['event_id']} {last['event_type']} {target} at {last['timestamp']}"
        )
    for t in data.get("in_progress", []):
        lines.append(
            f"In progress: {t['ref']} {t['title']}"
            + (" (timer running)" if t.get("timer_running") else "")
        )
    for b in data.get("blockers", []):
        lines.append(f"Blocked: {b['ref']} {b['title']} ({'; '.join(b['blockers'])})")
    for n in (data.get("notes") or [])[-5:]:
        lines.append(f"Note ({n.get('timestamp')}): {n['text']}")
    nxt = data.get("next_task")
    lines.append(f"Next: {nxt['ref']} {nxt['title']}" if nxt else "Next: nothing ready")
    return "\n".join(lines)


def render_doctor(data: Mapping[str, Any]) -> str:
    lines = []
    for c in data["checks"]:
        lines.append(f"[{'ok' if c['ok'] else 'FAIL'}] {c['name']}: {c['detail']}")
    for r in data.get("repairs", []):
        lines.append(f"repaired: {r}")
    lines.append(
        "healthy"
        if data["healthy"]
        else "problems found"
        + ("" if data.get("repaired") else " — run `milestone doctor --repair`")
    )
    return "\n".join(lines)


def render_audit(data: Mapping[str, Any]) -> str:
    chain = data["chain"]
    files = chain["files"]
    where = files[0] if len(files) == 1 else (
        f"{len(files)} files, {files[0]} .. {files[-1]}" if files else "no file")
    lines = [f"hash chain: valid, {plural(chain['events'], 'event')} in {where}, "
             f"through event #{chain['last_event_id']}"]
    lines += [f"note: {n}" for n in chain["notes"]]
    scope = [f"since {data['since']}" if data.get("since") else "",
             f"actor {data['actor']}" if data.get("actor") else ""]
    t = data["totals"]
    lines.append(f"{plural(t['events'], 'event')}, {plural(t['manual_edits'], 'hand edit')}, "
                 f"{t['access_denied']} access denied"
                 + (f" ({', '.join(x for x in scope if x)})" if any(scope) else ""))
    for a in data["actors"]:
        span = f", {a['first']} .. {a['last']}" if a["first"] else ""
        lines.append(f"{a['actor']}: {plural(a['events'], 'event')}{span}")
        by_type = sorted(a["by_type"].items(), key=lambda kv: (-kv[1], kv[0]))
        if by_type:
            lines.append("  " + ", ".join(f"{k} {v}" for k, v in by_type))
        edits = a["manual_edits"]
        if edits["count"]:
            users = ", ".join(f"{u} {n}" for u, n in sorted(edits["os_users"].items()))
            lines.append(f"  hand edits: {edits['count']} (OS user: {users})")
        denied = a["access_denied"]
        if denied["count"]:
            ops = ", ".join(f"{o} {n}" for o, n in sorted(denied["operations"].items()))
            lines.append(f"  access denied: {denied['count']} ({ops}), "
                         f"{denied['first']} .. {denied['last']}")
    lines += [f"warning: {w}" for w in data["warnings"]]
    return "\n".join(lines)


def render_rows(rows: Sequence[str]) -> str:
    return "\n".join(rows)


def render_validation(data: Mapping[str, Any]) -> str:
    lines = [f"{f['location']}: {f['severity']} {f['code']} {f['message']} — {f['hint']}"
             for f in data["findings"]]
    c = data["counts"]
    verdict = "ok" if data["ok"] and not (data.get("strict") and c["warning"]) else "FAILED"
    lines.append(f"{verdict}: {c['error']} error(s), {c['warning']} warning(s), "
                 f"{c['info']} info ({', '.join(data['types'])})")
    return "\n".join(lines)


def render_rules(data: Mapping[str, Any]) -> str:
    return "\n".join(f"{r['code']}  {r['family']:<10} {r['severity']:<7} {r['title']}"
                     + ("  [on write]" if r["on_write"] else "") for r in data["rules"])


def critical_path_lines(m: Mapping[str, Any]) -> list[str]:
    path = m.get("critical_path") or []
    lines = ["  critical path: " + (" → ".join(path) if path else "none (nothing left to do)")]
    for t in m["tasks"]:
        if "slack" in t and t["status"] not in ("done", "skipped"):
            lines.append(f"    {t['id']:<8} slack {t['slack']:g}h"
                         + ("  (critical)" if t.get("critical") else ""))
    f = m.get("feasibility")
    if f:
        lines.append(f"  projected finish {f['projected_finish'] or 'after 9999-12-31'} "
                     f"({f['remaining_hours']:g}h "
                     f"left, {f['critical_path_hours']:g}h on the critical path)"
                     + (f"; due {f['due_date']}" if f.get("due_date") else "")
                     + ("; AT RISK" if f.get("at_risk") else ""))
    return lines


def render_pending(data: Mapping[str, Any]) -> str:
    if not data["pending"]:
        return f"Nothing waits for {data['actor']} ({data['role'] or 'no role'})."
    return "\n".join(
        f"{p['ref']}  {p['title']}: {p['phase']} gate {p['status']}, waiting for "
        f"{', '.join(p['waiting_for'])}" + (f" (feedback: {p['feedback']})" if p["feedback"]
                                            else "") for p in data["pending"])


def render_templates(data: Mapping[str, Any]) -> str:
    return "\n".join(f"{t['name']:<14} {t['duration']:>3}d  {t['task_count']:>2} tasks  "
                     f"{t['description']}" + ("" if t["source"] == "built-in"
                                             else f"  ({t['source']})")
                     for t in data["templates"])


def render_template(data: Mapping[str, Any]) -> str:
    t = data["template"]
    lines = [f"{t['name']}: {t['description']}",
             f"  {t['duration']} days, {t['task_count']} tasks, {t['estimate_hours']:g}h; "
             f"priority {t['priority']}; category {t['category']}; from {t['source']}"]
    for v in t["variables"]:
        lines.append(f"  variable {v['name']}" + (" (required)" if v["required"] else "")
                     + (f" = {v['default']}" if v["default"] is not None else "")
                     + (f": {v['description']}" if v["description"] else ""))
    for p in t["phases"]:
        lines.append(f"  phase {p['name']} ({p['days']} days)")
        lines += [f"    - {task['title']}" + (f" ({task['estimate']:g}h)" if task["estimate"]
                                              else "") for task in p["tasks"]]
    r = t["requires"]
    lines.append(f"  requires: phases {', '.join(r['phases']) or '-'}; at least "
                 f"{r['min_tasks']} tasks" + ("; a due date" if r["due_date"] else "")
                 + (f"; {r['success_criteria']} success criteria" if r["success_criteria"]
                    else "") + ("; estimates" if r["estimates"] else ""))
    return "\n".join(lines)


def render_analytics(data: Mapping[str, Any]) -> str:
    from .analytics import render

    return render(data)

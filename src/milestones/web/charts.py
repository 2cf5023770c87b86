"""Charts and the dependency graph as SVG, drawn on the server: burn-up,
burn-down, throughput and work in progress with pygal (served as images), the DAG
laid out by grandalf (Sugiyama), the timeline from the schedule. Every text goes
through ``escape``."""

from __future__ import annotations

import re
from datetime import date, timedelta
from html import escape
from typing import Any

NODE_W, NODE_H, GAP_X, GAP_Y = 120.0, 34.0, 24.0, 46.0
_SCRIPT = re.compile(r"<script\b.*?</script>", re.S)


def burn_svg(points: list[tuple[str, int]], total: int, kind: str, title: str) -> str:
    """pygal's line chart of tasks done (burn-up, with the scope) or left (burn-down)
    by day; its scripts taken out (the chart is an image)."""
    import pygal
    from pygal.style import DefaultStyle

    days = [d for d, _ in points] or [date.today().isoformat()]
    done = [n for _, n in points] or [0]
    chart = pygal.Line(js=[], width=720, height=300, style=DefaultStyle, show_dots=True,
                       x_label_rotation=30, title=title, include_x_axis=True,
                       truncate_label=10, show_minor_x_labels=len(days) <= 12,
                       x_labels_major_count=8)
    chart.x_labels = days
    if kind == "burnup":
        chart.add("done", done)
        chart.add("scope", [total] * len(days))
    else:
        chart.add("remaining", [max(0, total - n) for n in done])
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def throughput_svg(weeks: list[dict[str, Any]], title: str) -> str:
    """pygal's bar chart of tasks done per ISO week (``analytics`` throughput)."""
    import pygal
    from pygal.style import DefaultStyle

    labels = [str(w["week"]) for w in weeks] or [date.today().strftime("%G-W%V")]
    values = [int(w["completed"]) for w in weeks] or [0]
    chart = pygal.Bar(js=[], width=720, height=300, style=DefaultStyle, title=title,
                      x_label_rotation=30, show_legend=False, include_x_axis=True,
                      show_minor_x_labels=len(labels) <= 12, x_labels_major_count=8)
    chart.x_labels = labels
    chart.add("done", values)
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def wip_svg(days: list[dict[str, Any]], title: str) -> str:
    """pygal's line chart of the tasks in progress at the end of each day."""
    import pygal
    from pygal.style import DefaultStyle

    labels = [str(d["day"]) for d in days] or [date.today().isoformat()]
    values = [int(d["in_progress"]) for d in days] or [0]
    chart = pygal.Line(js=[], width=720, height=300, style=DefaultStyle, title=title,
                       x_label_rotation=30, show_legend=False, include_x_axis=True,
                       truncate_label=10, show_dots=len(labels) <= 60,
                       show_minor_x_labels=len(labels) <= 12, x_labels_major_count=8)
    chart.x_labels = labels
    chart.add("in progress", values)
    return _SCRIPT.sub("", chart.render(is_unicode=True))


def dag_svg(tasks: list[dict[str, Any]], critical: set[str], label: str) -> str:
    """The milestone's tasks and their dependencies inside it, laid out in layers
    (grandalf's Sugiyama), the critical path's tasks and edges marked ``critical``."""
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout

    class View:
        w, h = NODE_W, NODE_H
        xy = (0.0, 0.0)

    vertex: dict[str, Any] = {}
    for t in tasks:
        v = Vertex(t["id"])
        v.view = View()
        vertex[t["id"]] = v
    edges = [(d, t["id"]) for t in tasks for d in t.get("depends_on", ()) if d in vertex]
    g = Graph(list(vertex.values()), [Edge(vertex[a], vertex[b]) for a, b in edges])
    place: dict[str, tuple[float, float]] = {}
    left = 0.0
    loners = []
    for comp in g.C:
        if len(comp.sV) == 1 and not comp.sE:
            loners.append(comp.sV[0].data)
            continue
        sug = SugiyamaLayout(comp)
        sug.init_all()
        sug.draw()
        xs = [v.view.xy[0] for v in comp.sV]
        ys = [v.view.xy[1] for v in comp.sV]
        shift = left - min(xs) + NODE_W / 2
        for v in comp.sV:
            place[v.data] = (v.view.xy[0] + shift, v.view.xy[1] - min(ys) + NODE_H / 2)
        left = max(x for x, _ in (place[v.data] for v in comp.sV)) + NODE_W / 2 + GAP_X * 2
    per_row = max(4, int(max(left, 6 * (NODE_W + GAP_X)) // (NODE_W + GAP_X)))
    top = max((y for _, y in place.values()), default=-NODE_H / 2) + NODE_H / 2 + GAP_Y
    for i, tid in enumerate(loners):
        place[tid] = ((i % per_row) * (NODE_W + GAP_X) + NODE_W / 2,
                      top + (i // per_row) * (NODE_H + GAP_Y / 2) + NODE_H / 2)
    width = max((x for x, _ in place.values()), default=0) + NODE_W / 2 + 4
    height = max((y for _, y in place.values()), default=0) + NODE_H / 2 + 4
    status = {t["id"]: t.get("status", "todo") for t in tasks}
    titles = {t["id"]: str(t.get("title", "")) for t in tasks}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" role="img" '
           f'width="{width + 4:.0f}" height="{height + 4:.0f}" '
           f'viewBox="-4 -4 {width + 4:.0f} {height + 4:.0f}" '
           f'aria-labelledby="dag-title"><title id="dag-title">{escape(label)}</title>']
    for a, b in edges:
        (x1, y1), (x2, y2) = place[a], place[b]
        cls = "edge critical" if a in critical and b in critical else "edge"
        out.append(f'<line class="{cls}" x1="{x1:.0f}" y1="{y1 + NODE_H / 2:.0f}" '
                   f'x2="{x2:.0f}" y2="{y2 - NODE_H / 2:.0f}"/>')
    for tid, (x, y) in place.items():
        cls = f"node {status[tid]}" + (" critical" if tid in critical else "")
        name = titles[tid]
        short = name if len(name) <= 16 else name[:15] + "…"
        out.append(
            f'<g class="{cls}"><title>{escape(tid)}: {escape(name)} ({escape(status[tid])})'
            f'</title><rect x="{x - NODE_W / 2:.0f}" y="{y - NODE_H / 2:.0f}" '
            f'width="{NODE_W:.0f}" height="{NODE_H:.0f}" rx="5"/>'
            f'<text x="{x:.0f}" y="{y - 3:.0f}">{escape(tid)}</text>'
            f'<text x="{x:.0f}" y="{y + 11:.0f}" class="sub">{escape(short)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _day(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10]) if text else None
    except ValueError:
        return None


def timeline_svg(m: dict[str, Any], today: str, limit: int = 60) -> str:
    """Bars from start to finish: the milestone (start, due, projected finish) and
    its tasks (as worked, or as scheduled from today by the critical path)."""
    now = _day(today) or date.today()
    feas = m.get("feasibility") or {}
    per_hour = (feas.get("work_days") or 0) / (feas.get("critical_path_hours") or 1) or 0.125
    rows: list[tuple[str, str, date, date, str]] = []
    start = _day(m.get("start_date")) or _day(m.get("created_at")) or now
    finish = _day(m.get("completed_at")) or _day(m.get("projected_finish")) or now
    rows.append((m["id"], str(m.get("title", "")), start, max(start, finish), "milestone"))
    for t in m.get("tasks", [])[:limit]:
        if t.get("status") in ("done", "skipped"):
            a = _day(t.get("started_at")) or _day(t.get("completed_at")) or start
            b = _day(t.get("completed_at")) or a
        else:
            a = _day(t.get("started_at")) or now + timedelta(
                days=float(t.get("earliest_start") or 0) * per_hour)
            b = now + timedelta(days=float(t.get("earliest_finish") or 0) * per_hour)
        rows.append((t["id"], str(t.get("title", "")), a, max(a, b), str(t.get("status"))))
    due = _day(m.get("due_date"))
    lo = min([r[2] for r in rows] + [now] + ([due] if due else []))
    hi = max([r[3] for r in rows] + [now] + ([due] if due else []))
    span = max(1, (hi - lo).days + 1)
    left, width, row_h = 150.0, 600.0, 18.0

    def x(d: date) -> float:
        return left + (d - lo).days / span * width

    height = row_h * len(rows) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" '
           f'viewBox="0 0 {left + width + 10:.0f} {height:.0f}" aria-labelledby="tl-title">'
           f'<title id="tl-title">Timeline of {escape(m["id"])}: {escape(lo.isoformat())} '
           f'to {escape(hi.isoformat())}</title>']
    for i, (rid, title, a, b, st) in enumerate(rows):
        y = 20 + i * row_h
        w = max(3.0, x(b) - x(a) + width / span)
        out.append(f'<g class="bar {escape(st)}"><title>{escape(rid)}: {escape(title)} '
                   f'{a.isoformat()} → {b.isoformat()}</title>'
                   f'<text x="4" y="{y + 12:.0f}">{escape(rid)}</text>'
                   f'<rect x="{x(a):.1f}" y="{y + 2:.0f}" width="{w:.1f}" height="12" rx="2"/>'
                   f'</g>')
    for d, cls, name in ((now, "today", "today"), (due, "due", "due")):
        if d is not None:
            out.append(f'<g class="mark {cls}"><title>{name} {d.isoformat()}</title>'
                       f'<line x1="{x(d):.1f}" y1="12" x2="{x(d):.1f}" y2="{height:.0f}"/>'
                       f'<text x="{min(x(d) + 2, left + width - 30):.1f}" y="10">{name}</text>'
                       f'</g>')
    out.append("</svg>")
    return "".join(out)

"""The text of ``milestone analytics``: a few plain lines per figure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import plural

RECENT_WEEKS = 8  # the text shows this many of the latest weeks; --json has them all


def _h(hours: Any) -> str:
    if hours is None:
        return "-"
    return f"{hours / 24:.1f}d" if hours >= 48 else f"{hours:.1f}h"


def _spread(name: str, s: Mapping[str, Any]) -> str:
    if not s["tasks"]:
        return f"{name}: no completed tasks"
    return (f"{name}: median {_h(s['median_hours'])}, p85 {_h(s['p85_hours'])} "
            f"({s['tasks']} tasks)")


def _ratio(r: Mapping[str, Any]) -> str:
    return (f"{r['tasks']} tasks, {r['spent_hours']}h spent / {r['estimate_hours']}h "
            f"estimated = {r['ratio']}x")


def render(data: Mapping[str, Any]) -> str:
    scope = data["milestone"] or "all milestones"
    lines = [f"Analytics: {scope}" + (f", since {data['since']}" if data["since"] else "")
             + f" (at {data['generated_at']})"]
    tp = data["throughput"]
    lines.append(f"Throughput: {plural(tp['total'], 'task')} done"
                 + (f", {tp['mean_per_week']} per week" if tp["weeks"] else ""))
    for w in tp["weeks"][-RECENT_WEEKS:]:
        lines.append(f"  {w['week']}  {w['completed']:>4}  {'#' * min(w['completed'], 50)}")
    lines.append(_spread("Cycle time (start to done)", data["cycle_time"]))
    lines.append(_spread("Lead time (added to done)", data["lead_time"]))
    acc = data["estimate_accuracy"]
    if acc["tasks"]:
        lines.append(f"Estimate accuracy: {_ratio(acc)}")
        lines += [f"  {p['person']}: {_ratio(p)}" for p in acc["by_person"]]
        lines += [f"  tag {t['tag']}: {_ratio(t)}" for t in acc["by_tag"]]
    else:
        lines.append("Estimate accuracy: no done task with an estimate and time spent")
    b = data["blocked"]
    lines.append(f"Blocked: {b['intervals']} times, {_h(b['total_hours'])} in all, "
                 f"median {_h(b['median_hours'])}; {b['open_count']} open")
    lines += [f"  {o['task']} blocked {_h(o['age_hours'])} (since {o['since']})"
              for o in b["open"][:10]]
    w = data["wip"]
    lines.append(f"Work in progress: {w['current']} now")
    for row in w["weeks"][-RECENT_WEEKS:]:
        lines.append(f"  {row['week']}  mean {row['mean']}, most {row['max']}")
    f = data["forecast"]
    lines.append(f"Forecast ({f['trials']} trials over {len(f['history_weeks'])} weeks of "
                 "throughput):" if not f["too_short"] else f"Forecast: {f['reason']}")
    for m in f["milestones"]:
        if m["status"] in ("forecast", "beyond_horizon"):
            d = m["dates"]
            lines.append(f"  {m['milestone']}: {m['remaining']} open; p50 {d['p50'] or '-'}, "
                         f"p85 {d['p85'] or '-'}, p95 {d['p95'] or '-'}"
                         + (f" ({m['reason']})" if m["reason"] else ""))
        elif m["status"] == "done" or not f["too_short"]:
            lines.append(f"  {m['milestone']}: {m['reason']}")
    return "\n".join(lines)

"""``milestone analytics``: throughput, cycle and lead time, estimate accuracy, blocked
time, work in progress over time and a Monte Carlo completion forecast per milestone.

Every figure comes from the event log, through the rollups of ``database/analytics.db``
(``analytics_db``: brought up to the log's head first, incrementally). ``report`` is the
one entry point, shared by the CLI (``--json`` prints it with ``"schema": 1``) and the
dashboard's ``/api/analytics[/{id}]``.

Definitions (times in hours, weeks are ISO weeks, Monday to Sunday, UTC):

- throughput: tasks completed (status ``done``) per week; a task reopened and done again
  counts once, in the week of its last completion.
- cycle time: first start to done; lead time: added to done (tasks done without a start
  have a lead time only). Median and p85 are nearest-rank percentiles.
- estimate accuracy: over done tasks with an estimate and some time spent, time spent /
  estimate (1.0: as estimated, 2.0: twice as long), in total, per person (the assignee,
  else whoever completed it) and per tag (its milestone's tags).
- blocked: every interval a task spent ``blocked`` (clipped to ``--since``), and the
  blockers still open with their age.
- work in progress: tasks ``in_progress`` at the end of each day; per week the mean and
  the most of those days.
- forecast: the project's weekly throughput over the complete weeks since its first
  completion (or ``--since``) is sampled week by week, ``trials`` times, until a
  milestone's open tasks are done: p50/p85/p95 weeks and dates. With fewer than
  ``MIN_WEEKS`` weeks that completed anything, no numbers: ``too_short`` says why.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..model import refs
from . import analytics_db as adb

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..project import Project

SCHEMA = 1
TRIALS = 10_000
MIN_WEEKS = 3  # weeks with at least one completion before a forecast is made
HORIZON_WEEKS = 520  # a forecast past ten years says so instead of a date
LEVELS = (("p50", 0.50), ("p85", 0.85), ("p95", 0.95))
HOUR = 3600.0


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def _r(x: float | None, digits: int = 2) -> float | None:
    return None if x is None else round(x, digits)


def week_of(ts: float) -> date:
    """The Monday (UTC) of the ISO week ``ts`` falls in."""
    d = datetime.fromtimestamp(ts, UTC).date()
    return d - timedelta(days=d.weekday())


def week_label(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def _weeks(first: date, last: date) -> list[date]:
    out, d = [], first
    while d <= last:
        out.append(d)
        d += timedelta(days=7)
    return out


def _spread(hours: list[float]) -> dict[str, Any]:
    return {"tasks": len(hours), "median_hours": _r(percentile(hours, 0.5)),
            "p85_hours": _r(percentile(hours, 0.85)),
            "mean_hours": _r(sum(hours) / len(hours)) if hours else None}


# ------------------------------------------------------------------ figures


def throughput(done: list[float], since: float | None, now: float) -> dict[str, Any]:
    counts: dict[date, int] = {}
    for ts in done:
        counts[week_of(ts)] = counts.get(week_of(ts), 0) + 1
    if not counts:
        return {"weeks": [], "total": 0, "mean_per_week": None}
    first = week_of(since) if since is not None else min(counts)
    weeks = _weeks(min(first, min(counts)), week_of(now))
    rows = [{"week": week_label(w), "start": w.isoformat(), "completed": counts.get(w, 0)}
            for w in weeks]
    return {"weeks": rows, "total": len(done),
            "mean_per_week": _r(len(done) / len(rows)) if rows else None}


def accuracy(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def summary(group: list[dict[str, Any]]) -> dict[str, Any]:
        est = sum(r["estimate"] for r in group)
        spent = sum(r["spent"] for r in group) / HOUR
        return {"tasks": len(group), "estimate_hours": _r(est), "spent_hours": _r(spent),
                "ratio": _r(spent / est if est else None),
                "median_ratio": _r(percentile([r["spent"] / HOUR / r["estimate"]
                                               for r in group], 0.5))}

    scored = [r for r in rows if r["completed"] is not None and (r["estimate"] or 0) > 0
              and r["spent"] > 0]
    people: dict[str, list[dict[str, Any]]] = {}
    tags: dict[str, list[dict[str, Any]]] = {}
    for r in scored:
        people.setdefault(r["assignee"] or r["completer"] or "unknown", []).append(r)
        for tag in r["tags"] or ["(none)"]:
            tags.setdefault(tag, []).append(r)
    return {**summary(scored),
            "by_person": [{"person": k, **summary(v)} for k, v in sorted(people.items())],
            "by_tag": [{"tag": k, **summary(v)} for k, v in sorted(tags.items())]}


def blocked(intervals: list[tuple[str, str, float, float | None]], since: float | None,
            now: float) -> dict[str, Any]:
    spans: list[float] = []
    tasks: set[tuple[str, str]] = set()
    aged: list[tuple[float, str, float]] = []  # (-age, task, start) of the open ones
    for mid, tid, start, end in intervals:
        stop = now if end is None else end
        begin = start if since is None else max(start, since)
        if end is None:
            aged.append((-(now - start) / HOUR, f"{mid}/{tid}", start))
        if stop < begin:
            continue
        spans.append((stop - begin) / HOUR)
        tasks.add((mid, tid))
    aged.sort()
    ages = [-a for a, _t, _s in aged]
    open_ = [{"task": task, "since": _stamp(start), "age_hours": _r(-a)}
             for a, task, start in aged]
    return {"intervals": len(spans), "tasks": len(tasks), "total_hours": _r(sum(spans)),
            "median_hours": _r(percentile(spans, 0.5)), "p85_hours": _r(percentile(spans, 0.85)),
            "open": open_, "open_count": len(open_),
            "oldest_open_hours": _r(max(ages)) if ages else None,
            "median_open_hours": _r(percentile(ages, 0.5))}


def wip(deltas: list[tuple[str, int]], since: float | None, now: float) -> dict[str, Any]:
    by_day: dict[str, int] = {}
    for stamp, delta in deltas:
        by_day[stamp] = by_day.get(stamp, 0) + delta
    if not by_day:
        return {"days": [], "weeks": [], "current": 0}
    first = date.fromisoformat(min(by_day))
    last = datetime.fromtimestamp(now, UTC).date()
    start = max(first, datetime.fromtimestamp(since, UTC).date()) if since is not None else first
    days: list[dict[str, Any]] = []
    weeks: dict[date, list[int]] = {}
    count, day = 0, first
    while day <= last:
        count += by_day.get(day.isoformat(), 0)
        if day >= start:
            days.append({"day": day.isoformat(), "in_progress": count})
            weeks.setdefault(day - timedelta(days=day.weekday()), []).append(count)
        day += timedelta(days=1)
    return {"days": days, "current": count,
            "weeks": [{"week": week_label(w), "start": w.isoformat(),
                       "mean": _r(sum(v) / len(v)), "max": max(v)}
                      for w, v in sorted(weeks.items())]}


# ----------------------------------------------------------------- forecast


def history(done: list[float], since: float | None, now: float) -> list[int]:
    """Completions per complete week, from the first week with one (or ``since``'s
    week) to the week before this one."""
    if not done:
        return []
    counts: dict[date, int] = {}
    for ts in done:
        counts[week_of(ts)] = counts.get(week_of(ts), 0) + 1
    first = min(counts) if since is None else max(min(counts), week_of(since))
    return [counts.get(w, 0) for w in _weeks(first, week_of(now) - timedelta(days=7))]


def simulate(hist: list[int], most: int, trials: int, seed: int
             ) -> list[dict[str, int]]:
    """Per week w (index w-1): for each level, the completions reached by w weeks in that
    share of the trials (the lower quantile of the cumulative sum); stops once the p95
    level reaches ``most`` or at the horizon."""
    rng = random.Random(seed)
    totals = [0] * trials
    out: list[dict[str, int]] = []
    picks = {name: trials - math.ceil(p * trials) for name, p in LEVELS}
    while len(out) < HORIZON_WEEKS:
        totals = [a + b for a, b in zip(totals, rng.choices(hist, k=trials), strict=True)]
        ordered = sorted(totals)
        out.append({name: ordered[i] for name, i in picks.items()})
        if out[-1]["p95"] >= most:
            break
    return out


def forecast(hist: list[int], remaining: dict[str, int], now: float, trials: int,
             seed: int) -> dict[str, Any]:
    active = sum(1 for n in hist if n > 0)
    base: dict[str, Any] = {"basis": "project", "history_weeks": hist, "trials": trials,
                            "seed": seed, "min_weeks": MIN_WEEKS}
    too_short = active < MIN_WEEKS
    reason = (f"history too short to forecast: {active} week(s) with completed tasks, "
              f"{MIN_WEEKS} needed") if too_short else None
    open_counts = [n for n in remaining.values() if n > 0]
    levels = (simulate(hist, max(open_counts), trials, seed)
              if open_counts and not too_short else [])
    today = datetime.fromtimestamp(now, UTC).date()
    rows = []
    for mid, left in sorted(remaining.items()):
        row: dict[str, Any] = {"milestone": mid, "remaining": left}
        if left == 0:
            rows.append({**row, "status": "done", "weeks": None, "dates": None,
                         "reason": "no open tasks"})
            continue
        if too_short:
            rows.append({**row, "status": "too_short", "weeks": None, "dates": None,
                         "reason": reason})
            continue
        weeks: dict[str, int | None] = {}
        for name, _p in LEVELS:
            weeks[name] = next((i + 1 for i, lv in enumerate(levels) if lv[name] >= left), None)
        dates = {k: None if w is None else (today + timedelta(days=7 * w)).isoformat()
                 for k, w in weeks.items()}
        beyond = any(w is None for w in weeks.values())
        rows.append({**row, "status": "beyond_horizon" if beyond else "forecast",
                     "weeks": weeks, "dates": dates,
                     "reason": f"more than {HORIZON_WEEKS} weeks at this throughput"
                     if beyond else None})
    return {**base, "too_short": too_short, "reason": reason, "milestones": rows}


# ------------------------------------------------------------------- report


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report(project: Project, ref: str | None = None, since: str | None = None, *,
           rebuild: bool = False, seed: int | None = None, trials: int = TRIALS
           ) -> dict[str, Any]:
    """The analytics of the project (or of milestone ``ref``), from events since
    ``since`` (an ISO UTC stamp, as ``--since`` gives it): exactly what ``milestone
    analytics --json`` prints, without its ``schema``. NotFound for an unknown ``ref``.
    ``seed`` makes the forecast repeatable (default: taken from the log's head hash, so
    one log always gives one answer); ``rebuild`` rebuilds the rollups first."""
    mid = refs.resolve_milestone(ref, project.state().milestones) if ref else None
    now = adb.seconds(project.clock()) or datetime.now(UTC).timestamp()
    cut = adb.seconds(since) if since else None
    conn = adb.connect(adb.db_path(project))
    try:
        done_how = adb.refresh(project, conn, rebuild=rebuild)
        head_hash = adb.meta(conn).get("last_hash") or ""
        tasks, intervals, deltas, all_done = _read(conn, mid)
    finally:
        conn.close()
    live = [t for t in tasks if not t["removed"]]
    done = [t for t in tasks if t["completed"] is not None
            and (cut is None or t["completed"] >= cut)]
    remaining: dict[str, int] = {}
    for t in live:
        remaining.setdefault(t["mid"], 0)
        if t["status"] not in adb.DONE:
            remaining[t["mid"]] += 1
    if mid is not None:
        remaining = {mid: remaining.get(mid, 0)}
    if seed is None:
        seed = int(head_hash[:12] or "0", 16)
    return {
        "generated_at": _stamp(now), "since": since, "milestone": mid,
        "rollups": done_how,
        "throughput": throughput([t["completed"] for t in done], cut, now),
        "cycle_time": _spread([(t["completed"] - t["started"]) / HOUR for t in done
                               if t["started"] is not None and t["completed"] >= t["started"]]),
        "lead_time": _spread([(t["completed"] - t["created"]) / HOUR for t in done
                              if t["created"] is not None and t["completed"] >= t["created"]]),
        "estimate_accuracy": accuracy(done),
        "blocked": blocked(intervals, cut, now),
        "wip": wip(deltas, cut, now),
        "forecast": forecast(history(all_done, cut, now), remaining, now, trials, seed),
    }


def _read(conn: Any, mid: str | None) -> tuple[list[dict[str, Any]], list[Any],
                                               list[tuple[str, int]], list[float]]:
    import json

    where, args = ("WHERE t.mid = ?", (mid,)) if mid else ("", ())
    cols = ("mid", "tid", *adb.TASK_COLS, "tags")
    tags: dict[str, list[str]] = {}
    tasks = []
    for row in conn.execute(
            f"SELECT t.mid, t.tid, {', '.join('t.' + c for c in adb.TASK_COLS)}, m.tags "
            f"FROM tasks t LEFT JOIN milestones m ON m.mid = t.mid {where}", args):
        t = dict(zip(cols, row, strict=True))
        raw = t["tags"] or "[]"
        if raw not in tags:
            tags[raw] = json.loads(raw)
        t["tags"] = tags[raw]
        tasks.append(t)
    blocked_rows = conn.execute(
        f"SELECT b.mid, b.tid, b.start, b.end FROM blocked b "
        f"JOIN tasks t ON t.mid = b.mid AND t.tid = b.tid "
        f"WHERE (b.end IS NOT NULL OR t.removed = 0) {'AND b.mid = ?' if mid else ''}",
        args).fetchall()
    deltas = conn.execute(f"SELECT day, SUM(delta) FROM wip {'WHERE mid = ?' if mid else ''} "
                          "GROUP BY day ORDER BY day", args).fetchall()
    all_done = ([t["completed"] for t in tasks if t["completed"] is not None] if not mid
                else [r[0] for r in conn.execute(
                    "SELECT completed FROM tasks WHERE completed IS NOT NULL")])
    return tasks, blocked_rows, deltas, all_done

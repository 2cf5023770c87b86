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
import sqlite3
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
#
# Computed in SQL over the rollups, so a report reads a few aggregated rows, not every
# task: percentiles by rank (``LIMIT 1 OFFSET``, on the indexed columns of analytics_db).

class Scope:
    """The WHERE clause of the done tasks a report counts (``t``: the tasks table)."""

    def __init__(self, mid: str | None, cut: float | None) -> None:
        self.mid, self.cut = mid, cut

    def done(self, col: str = "week", alias: str = "t") -> tuple[str, tuple[Any, ...]]:
        """Done tasks (``col`` is not null only for those: the index to use)."""
        where = [f"{alias}.{col} IS NOT NULL"]
        args: list[Any] = []
        if self.cut is not None:
            where.append(f"{alias}.completed >= ?")
            args.append(self.cut)
        if self.mid is not None:
            where.append(f"{alias}.mid = ?")
            args.append(self.mid)
        return " AND ".join(where), tuple(args)


def ranked(conn: Any, source: str, args: tuple[Any, ...], n: int, p: int) -> float | None:
    """The nearest-rank ``p``-th percentile of the ``n`` values of ``source`` (a query of
    one column, in order: an index walk when ``source`` is on an indexed column)."""
    if n <= 0:
        return None
    row = conn.execute(f"{source} LIMIT 1 OFFSET ?",
                       (*args, max(0, math.ceil(p * n / 100) - 1))).fetchone()
    return None if row is None else float(row[0])


def weekly(conn: Any, scope: Scope) -> dict[date, int]:
    where, args = scope.done()
    return {date.fromisoformat(w): n for w, n in conn.execute(
        f"SELECT t.week, COUNT(*) FROM tasks t WHERE {where} GROUP BY t.week", args)}


def throughput(counts: dict[date, int], since: float | None, now: float) -> dict[str, Any]:
    if not counts:
        return {"weeks": [], "total": 0, "mean_per_week": None}
    first = min(counts) if since is None else min(week_of(since), min(counts))
    rows = [{"week": week_label(w), "start": w.isoformat(), "completed": counts.get(w, 0)}
            for w in _weeks(first, week_of(now))]
    total = sum(counts.values())
    return {"weeks": rows, "total": total, "mean_per_week": _r(total / len(rows))}


def spread(conn: Any, scope: Scope, col: str) -> dict[str, Any]:
    where, args = scope.done(col)
    n, mean = conn.execute(f"SELECT COUNT(t.{col}), AVG(t.{col}) FROM tasks t WHERE {where}",
                           args).fetchone()
    source = f"SELECT t.{col} FROM tasks t WHERE {where} ORDER BY t.{col}"
    return {"tasks": n, "median_hours": _r(ranked(conn, source, args, n, 50)),
            "p85_hours": _r(ranked(conn, source, args, n, 85)), "mean_hours": _r(mean)}


def _ratios(n: int, est: float | None, spent: float | None, median: float | None
            ) -> dict[str, Any]:
    return {"tasks": n, "estimate_hours": _r(est or 0.0), "spent_hours": _r(spent or 0.0),
            "ratio": _r(spent / est) if est and spent is not None else None,
            "median_ratio": _r(median)}


def accuracy(conn: Any, scope: Scope) -> dict[str, Any]:
    """Time spent / estimate over the done tasks with both: the ``ratio`` column."""
    where, args = scope.done("ratio")
    sums = "COUNT(*), SUM(t.estimate), SUM(t.spent) / 3600.0"
    n, est, spent = conn.execute(f"SELECT {sums} FROM tasks t WHERE {where}", args).fetchone()
    out = _ratios(n, est, spent, ranked(
        conn, f"SELECT t.ratio FROM tasks t WHERE {where} ORDER BY t.ratio", args, n, 50))
    out["by_person"] = [
        {"person": who, **_ratios(k, e, sp, ranked(
            conn, f"SELECT t.ratio FROM tasks t WHERE {where} AND t.person = ? "
                  "ORDER BY t.ratio", (*args, who), k, 50))}
        for who, k, e, sp in conn.execute(
            f"SELECT t.person, {sums} FROM tasks t WHERE {where} GROUP BY t.person "
            "ORDER BY t.person", args).fetchall()]
    twhere, targs = scope.done("ratio", "g")  # the same tasks, once per tag
    out["by_tag"] = [
        {"tag": tag, **_ratios(k, e, sp, ranked(
            conn, f"SELECT g.ratio FROM task_tags g WHERE {twhere} AND g.tag = ? "
                  "ORDER BY g.ratio", (*targs, tag), k, 50))}
        for tag, k, e, sp in conn.execute(
            "SELECT g.tag, COUNT(*), SUM(g.estimate), SUM(g.spent) / 3600.0 FROM task_tags g "
            f"WHERE {twhere} GROUP BY g.tag ORDER BY g.tag", targs).fetchall()]
    return out


def blocked(conn: Any, scope: Scope, now: float) -> dict[str, Any]:
    begin = "b.start" if scope.cut is None else "MAX(b.start, ?)"
    head: tuple[Any, ...] = () if scope.cut is None else (scope.cut,)
    only, tail = ("AND b.mid = ?", (scope.mid,)) if scope.mid else ("", ())
    # A task removed (or its milestone deleted) while blocked closes its interval then:
    # every open interval is a live task's.
    source = (f"SELECT b.mid, b.tid, (COALESCE(b.end, ?) - {begin}) / 3600.0 AS x "
              f"FROM blocked b WHERE 1 {only}")
    args = (now, *head, *tail)
    spans = f"SELECT * FROM ({source}) WHERE x >= 0"
    n, tasks, total = conn.execute(
        f"SELECT COUNT(*), COUNT(DISTINCT mid || '/' || tid), SUM(x) FROM ({spans})",
        args).fetchone()
    ordered = f"SELECT x FROM ({spans}) ORDER BY x"
    opened = conn.execute(
        f"SELECT b.mid, b.tid, b.start FROM blocked b WHERE b.end IS NULL {only} "
        "ORDER BY b.start, b.mid, b.tid", tail).fetchall()
    open_ = [{"task": f"{mid}/{tid}", "since": _stamp(start),
              "age_hours": _r((now - start) / HOUR)} for mid, tid, start in opened]
    ages = [(now - start) / HOUR for _m, _t, start in opened]
    return {"intervals": n, "tasks": tasks, "total_hours": _r(total or 0.0),
            "median_hours": _r(ranked(conn, ordered, args, n, 50)),
            "p85_hours": _r(ranked(conn, ordered, args, n, 85)),
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


def history(counts: dict[date, int], since: float | None, now: float) -> list[int]:
    """Completions per complete week, from the first week with one (or ``since``'s
    week) to the week before this one."""
    if not counts:
        return []
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
    with project.reading() as st:
        mid = refs.resolve_milestone(ref, st.milestones) if ref else None
        head = (int(st.last_event_id), str(st.last_hash))
    now = adb.seconds(project.clock()) or datetime.now(UTC).timestamp()
    cut = adb.seconds(since) if since else None
    scope = Scope(mid, cut)
    conn = adb.connect(adb.db_path(project))
    try:
        try:
            done_how = adb.refresh(project, conn, head, rebuild=rebuild)
        except sqlite3.Error:  # read-only, busy past the timeout: this run in memory
            conn.close()
            conn = adb.memory()
            done_how = adb.refresh(project, conn, head, rebuild=rebuild)
        counts = weekly(conn, scope)
        project_counts = counts if mid is None else weekly(conn, Scope(None, cut))
        remaining = dict(conn.execute(  # the milestones with open tasks (or REF)
            "SELECT mid, COUNT(*) FROM tasks WHERE removed = 0 AND status NOT IN "
            "('done', 'skipped') " + ("AND mid = ? " if mid else "") + "GROUP BY mid",
            (mid,) if mid else ()))
        if mid is not None:
            remaining = {mid: remaining.get(mid, 0)}
        data = {
            "generated_at": _stamp(now), "since": since, "milestone": mid,
            "rollups": done_how,
            "throughput": throughput(counts, cut, now),
            "cycle_time": spread(conn, scope, "cycle"),
            "lead_time": spread(conn, scope, "lead"),
            "estimate_accuracy": accuracy(conn, scope),
            "blocked": blocked(conn, scope, now),
            "wip": wip(conn.execute(
                f"SELECT day, SUM(delta) FROM wip {'WHERE mid = ?' if mid else ''} "
                "GROUP BY day ORDER BY day", (mid,) if mid else ()).fetchall(), cut, now),
        }
    finally:
        conn.close()
    if seed is None:
        seed = int(head[1][:12] or "0", 16)
    data["forecast"] = forecast(history(project_counts, cut, now), remaining, now, trials,
                                seed)
    return data

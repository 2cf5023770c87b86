"""The pages, rendered on the server with Jinja2 (autoescape on): the same
templates serve the live dashboard and the static export (``static=True``: links
between files, no live updates, no writes)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import charts

HERE = Path(__file__).parent
BOARD = ("todo", "in_progress", "blocked", "done", "skipped")
ANALYTICS_CHARTS = ("throughput", "wip")


class Site:
    def __init__(self, reader: Any, *, static: bool = False) -> None:
        import jinja2

        self.reader = reader
        self.static = static
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True, trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(link=self.link, static=static, board=BOARD)
        self.env.filters["hours"] = _hours
        self.env.globals["chart_src"] = self.chart_src

    def link(self, kind: str, ident: str = "") -> str:
        """Where a page or asset is: server paths, or files side by side when static."""
        if self.static:
            return {"overview": "index.html", "agents": "agents.html",
                    "activity": "activity.html", "analytics": "analytics.html",
                    "milestone": f"{ident}.html",
                    "asset": f"assets/{ident}", "chart": f"assets/charts/{ident}"}[kind]
        return {"overview": "/", "agents": "/agents", "activity": "/activity",
                "analytics": "/analytics",
                "milestone": f"/milestones/{ident}", "asset": f"/assets/{ident}",
                "chart": f"/charts/{ident}"}[kind]

    def chart_src(self, name: str, since: str | None = None) -> str:
        """A chart's address; live, with the log head in it, so a page refreshed after
        an event loads the new drawing rather than the image it already holds."""
        if self.static:
            return self.link("chart", name)
        from urllib.parse import urlencode

        query = {"v": self.reader.head()[0], **({"since": since} if since else {})}
        return f"{self.link('chart', name)}?{urlencode(query)}"

    def render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)

    # ------------------------------------------------------------ pages

    def overview(self) -> str:
        data = self.reader.status()
        return self.render("overview.html", title="Milestones", page="overview", data=data)

    def milestone(self, ref: str) -> str:
        data = self.reader.milestone(ref)["milestone"]
        mid = data["id"]
        crit = {r.split("/", 1)[1] for r in data.get("critical_path", []) if "/" in r}
        by_status: dict[str, list[dict[str, Any]]] = {s: [] for s in BOARD}
        for t in data["tasks"]:
            by_status.setdefault(t["status"], []).append(t)
        today = self.reader.status()["today"]
        return self.render(
            "milestone.html", title=f"{mid}: {data['title']}", page="milestone", m=data,
            board_tasks=by_status, forecast=self.forecast(mid),
            dag=charts.dag_svg(data["tasks"], crit, f"Dependency graph of {mid}, "
                               f"{len(data['tasks'])} tasks, critical path marked"),
            timeline=charts.timeline_svg(data, today))

    def chart(self, ref: str, kind: str) -> str:
        data = self.reader.milestone(ref)["milestone"]
        total = data["counts"]["total"] - data["counts"].get("skipped", 0)
        title = ("Burn-up: tasks done" if kind == "burnup" else "Burn-down: tasks left")
        return charts.burn_svg(self.reader.burn(data["id"]), total, kind,
                               f"{title} ({data['id']})")

    def forecast(self, mid: str) -> dict[str, Any] | None:
        """The milestone's entry in the project's forecast (None: no open tasks)."""
        rows = self.reader.analytics(None, None)["forecast"]["milestones"]
        return next((r for r in rows if r["milestone"] == mid), None)

    def analytics(self, since: str | None = None) -> str:
        data = self.reader.analytics(None, since)
        titles = {r["id"]: r["title"] for r in self.reader.status()["milestones"]}
        return self.render("analytics.html", title="Analytics", page="analytics",
                           data=data, titles=titles)

    def analytics_chart(self, kind: str, since: str | None = None) -> str:
        data = self.reader.analytics(None, since)
        if kind == "throughput":
            return charts.throughput_svg(data["throughput"]["weeks"],
                                         "Throughput: tasks done per week")
        return charts.wip_svg(data["wip"]["days"],
                              "Work in progress: tasks in progress at the end of each day")

    def agents(self) -> str:
        data = dict(self.reader.agents())
        now = datetime.now(UTC)
        data["agents"] = [row | {"age": _age(row.get("last_seen"), now)}
                          for row in data["agents"]]
        return self.render("agents.html", title="Agents", page="agents", data=data)

    def activity(self, *, actor: str | None = None, milestone: str | None = None,
                 type_: str | None = None, limit: int = 200) -> str:
        events = self.reader.recent(limit, milestone=milestone or None, actor=actor or None,
                                    types=(type_,) if type_ else ())
        return self.render("activity.html", title="Activity", page="activity",
                           events=events, actor=actor or "", milestone=milestone or "",
                           type_=type_ or "")


def _hours(value: Any) -> str:
    """Hours as the page shows them: ``3.5 h``, ``2.1 d`` past two days, ``—`` for none."""
    if value is None:
        return "—"
    hours = float(value)
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"


def _age(stamp: Any, now: datetime) -> str:
    try:
        then = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return "-"
    secs = int((now - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{max(secs, 0)}s"


def export(reader: Any, out: Path, done: Callable[[str], None] | None = None) -> list[str]:
    """Write the static snapshot to ``out``: index.html, agents.html, activity.html,
    analytics.html, a page per milestone and assets/ (charts as SVG files). Returns the
    files written, each as the project's files are (``atomic_write``: a temp of its
    own, no link followed inside .milestones/, the default place)."""
    from ..project import atomic_write

    site = Site(reader, static=True)
    (out / "assets" / "charts").mkdir(parents=True, exist_ok=True)
    for name in ("app.css", "app.js"):
        atomic_write(out / "assets" / name, (HERE / "assets" / name).read_bytes(), sync=False)
    written = ["assets/app.css", "assets/app.js"]

    def put(name: str, text: str) -> None:
        atomic_write(out / name, text.encode("utf-8"), sync=False)
        written.append(name)
        if done is not None:
            done(name)

    put("index.html", site.overview())
    put("agents.html", site.agents())
    put("activity.html", site.activity())
    put("analytics.html", site.analytics())
    for kind in ANALYTICS_CHARTS:
        put(f"assets/charts/analytics-{kind}.svg", site.analytics_chart(kind))
    for row in reader.status()["milestones"]:
        mid = row["id"]
        put(f"{mid}.html", site.milestone(mid))
        for kind in ("burnup", "burndown"):
            put(f"assets/charts/{mid}-{kind}.svg", site.chart(mid, kind))
    return written

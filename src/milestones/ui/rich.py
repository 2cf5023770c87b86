"""Rich terminal renderers: tables, colour and progress bars coloured by progress.

They take the same view data as ``simple`` and print through a rich Console,
which honours NO_COLOR and the terminal width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from . import simple

HEALTH_STYLE = {
    "on_track": "green",
    "at_risk": "yellow",
    "overdue": "bold red",
    "done": "cyan",
    "cancelled": "dim",
}
STATUS_STYLE = {
    "todo": "white",
    "in_progress": "bold blue",
    "blocked": "bold red",
    "done": "green",
    "skipped": "dim",
    "planned": "white",
    "completed": "green",
    "archived": "dim",
    "cancelled": "dim",
}


def console() -> Console:
    # Stored text is never markup nor emoji codes: `[/x]` or `:fire:` in a title is printed
    # as written. Styles come only from Text objects made here.
    return Console(highlight=False, markup=False, emoji=False)


NARROW = 80  # below this many columns a table leaves out its low-value ("+") columns


class _Table(Table):
    """A table that stays readable on a narrow terminal: ids and short values never
    wrap (an ellipsis cuts them), prose wraps in the room left, and the columns
    whose kind ends in "+" are left out below NARROW columns (add_row drops their
    cells, so callers pass every cell as before). Kinds: "id", "short", "text"."""

    def __init__(self, con: Console, columns: Sequence[tuple[str, str]]) -> None:
        super().__init__(box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
        narrow = con.width < NARROW
        self._keep = [not (narrow and kind.endswith("+")) for _, kind in columns]
        for (header, kind), keep in zip(columns, self._keep, strict=True):
            if not keep:
                continue
            if kind.rstrip("+") == "text":
                self.add_column(header, min_width=12)
            else:
                self.add_column(header, no_wrap=True, overflow="ellipsis")

    def add_row(self, *renderables: Any, style: Any = None, end_section: bool = False) -> None:
        cells = [c for c, keep in zip(renderables, self._keep, strict=False) if keep]
        super().add_row(*cells, style=style, end_section=end_section)


def progress_color(pct: float) -> str:
    if pct >= 100:
        return "cyan"
    if pct >= 66:
        return "green"
    if pct >= 33:
        return "yellow"
    return "red"


def pbar(pct: float, width: int = 24) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        ProgressBar(
            total=100,
            completed=pct,
            width=width,
            complete_style=progress_color(pct),
            finished_style="cyan",
        ),
        Text(f"{pct:5.1f}%"),
    )
    return grid


def _health(h: str) -> Text:
    return Text(simple.HEALTH.get(h, h), style=HEALTH_STYLE.get(h, ""))


def _status(s: str) -> Text:
    return Text(s.replace("_", " "), style=STATUS_STYLE.get(s, ""))


def _milestone_panel(s: Mapping[str, Any], current: str | None) -> Panel:
    info = Table.grid(padding=(0, 2))
    info.add_column(style="dim")
    info.add_column()
    info.add_row("progress", pbar(s["progress"]))
    info.add_row("status", Text.assemble(_status(s["status"]), "  ", _health(s["health"])))
    c = s["counts"]
    info.add_row(
        "tasks",
        f"{c['done']}/{c['total']} done, {c['in_progress']} in progress, "
        f"{c['blocked']} blocked, {c['todo']} to do",
    )
    if s.get("due_date"):
        info.add_row("due", s["due_date"])
    if s.get("time_spent"):
        info.add_row("spent", simple.duration(s["time_spent"]))
    for b in s.get("blocked", []):
        info.add_row(
            Text("blocked", style="red"), f"{b['ref']} {b['title']} ({'; '.join(b['blockers'])})"
        )
    for n in s.get("next", []):
        info.add_row("next", f"{n['ref']} {n['title']}")
    star = "★ " if s["id"] == current else ""
    return Panel(
        info,
        title=Text.assemble(star, (s["id"], "bold"), " ", s["title"]),
        title_align="left",
        subtitle=Text(s["priority"]),
        subtitle_align="right",
        box=box.ROUNDED,
    )


def render_status(data: Mapping[str, Any]) -> None:
    con = console()
    if not data["milestones"]:
        con.print(simple.render_status(data))
        return
    con.print(Group(*(_milestone_panel(s, data.get("current")) for s in data["milestones"])))


def render_list(data: Mapping[str, Any]) -> None:
    con = console()
    table = _Table(con, [("", "short"), ("id", "id"), ("title", "text"), ("status", "short+"),
                         ("priority", "short+"), ("progress", "short"), ("due", "short+"),
                         ("health", "short+")])
    for r in data["milestones"]:
        table.add_row(
            "★" if r["id"] == data.get("current") else "",
            r["id"],
            r["title"],
            _status(r["status"]),
            r["priority"],
            pbar(r["progress"], 12),
            r["due_date"] or "-",
            _health(r["health"]),
        )
    con.print(table if data["milestones"] else "No milestones match.")


def render_show(data: Mapping[str, Any]) -> None:
    con = console()
    if data["kind"] == "task":
        con.print(Panel(simple.render_task(data["task"]), box=box.ROUNDED))
        return
    m = data["milestone"]
    con.print(_milestone_panel(m, None))
    linked = any(simple.commits_of(t) for t in m["tasks"])
    table = _Table(con, [("id", "id"), ("title", "text"), ("status", "short"), ("after", "text+"),
                         ("estimate", "short"), ("spent", "short+"), ("assignee", "short+"),
                         *([("commits", "text+")] if linked else [])])
    for t in m["tasks"]:
        table.add_row(
            t["id"],
            t["title"],
            _status(t["status"]),
            ", ".join(t["depends_on"]),
            simple.hours(t.get("estimate")),
            simple.duration(t["time_spent"]),
            t.get("assignee") or "",
            *([" ".join(c.get("sha", "")[:7] for c in simple.commits_of(t))] if linked else []),
        )
    con.print(table)
    if data.get("show_critical_path"):
        con.print("\n".join(simple.critical_path_lines(m)))


def render_next(data: Mapping[str, Any]) -> None:
    con = console()
    if not data["tasks"]:
        con.print(simple.render_next(data))
        return
    table = _Table(con, [("task", "id"), ("title", "text"), ("priority", "short+"),
                         ("unblocks", "short+"), ("estimate", "short")])
    for r in data["tasks"]:
        table.add_row(
            r["ref"],
            r["title"],
            r["priority"],
            str(r["chain"] - 1),
            simple.hours(r.get("estimate")),
        )
    con.print(table)
    more = int(data.get("total") or len(data["tasks"])) - len(data["tasks"])
    if more > 0:
        con.print(f"... and {more} more ready (`milestone next --all` lists every one)")


def render_log(data: Mapping[str, Any]) -> None:
    con = console()
    table = _Table(con, [("#", "id"), ("time", "short+"), ("event", "id"), ("target", "id"),
                         ("actor", "short")])
    for e in data["events"]:
        target = e.get("milestone_id") or "-"
        if (e.get("details") or {}).get("task_id"):
            target += "/" + e["details"]["task_id"]
        table.add_row(
            str(e["event_id"]), e["timestamp"], e["event_type"], target, e.get("actor", "")
        )
    con.print(table if data["events"] else "No events match.")


def render_resume(data: Mapping[str, Any]) -> None:
    console().print(Panel(simple.render_resume(data), title=Text("resume"), box=box.ROUNDED))


def render_doctor(data: Mapping[str, Any]) -> None:
    con = console()
    for c in data["checks"]:
        mark = Text("ok  ", style="green") if c["ok"] else Text("FAIL", style="bold red")
        con.print(Text.assemble(mark, f" {c['name']}: {c['detail']}"))
    for r in data.get("repairs", []):
        con.print(f"repaired: {r}")


def render_audit(data: Mapping[str, Any]) -> None:
    console().print(Text(simple.render_audit(data)))


def render_analytics(data: Mapping[str, Any]) -> None:
    console().print(Text(simple.render_analytics(data)))


SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def render_validation(data: Mapping[str, Any]) -> None:
    con = console()
    if data["findings"]:
        table = _Table(con, [("location", "text"), ("severity", "short+"), ("code", "id"),
                             ("message", "text"), ("hint", "text+")])
        for f in data["findings"]:
            table.add_row(f["location"], Text(f["severity"], style=SEVERITY_STYLE[f["severity"]]),
                          f["code"], f["message"], f["hint"])
        con.print(table)
    con.print(simple.render_validation(data).splitlines()[-1])


def render_rules(data: Mapping[str, Any]) -> None:
    con = console()
    table = _Table(con, [("code", "id"), ("family", "short+"), ("severity", "short"),
                         ("title", "text"), ("on write", "short+")])
    for r in data["rules"]:
        table.add_row(r["code"], r["family"], Text(r["severity"],
                                                   style=SEVERITY_STYLE[r["severity"]]),
                      r["title"], "yes" if r["on_write"] else "")
    con.print(table)


def render_pending(data: Mapping[str, Any]) -> None:
    console().print(simple.render_pending(data))


def render_templates(data: Mapping[str, Any]) -> None:
    con = console()
    table = _Table(con, [("name", "id"), ("days", "short"), ("tasks", "short+"),
                         ("description", "text"), ("source", "short+")])
    for t in data["templates"]:
        table.add_row(t["name"], str(t["duration"]), str(t["task_count"]), t["description"],
                      t["source"])
    con.print(table)


def render_template(data: Mapping[str, Any]) -> None:
    console().print(Panel(simple.render_template(data), box=box.ROUNDED))

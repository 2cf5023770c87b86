"""The dashboard's analytics page (Starlette's TestClient, no server): the numbers of
``milestone analytics --json``, its charts as SVG images, each milestone's forecast
line, and the page in the static export."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from milestones.project import Project
from milestones.web.app import create_app

XSS = "<img src=x onerror=alert(1)>"


class Clock:
    def __init__(self, now: str) -> None:
        self.now = now

    def __call__(self) -> str:
        return self.now


@pytest.fixture
def history(project_dir: Path) -> Path:
    """Milestone 1: 3, 5 and 4 tasks done in the weeks of 2, 9 and 16 November 2026
    (one blocked 2 hours first, three estimated); milestone 2 (a hostile title): 10 open tasks, one
    blocked still; enough history for a forecast."""
    p = Project.open(project_dir)
    clock = Clock("2026-11-02T08:00:00Z")
    p.clock = clock  # type: ignore[attr-defined]
    p.plan("History", tasks=[f"h{i}" for i in range(12)], tags=["api"])
    p.plan(XSS, tasks=[f"n{i}" for i in range(10)])
    for ref in ("1/2", "1/3", "1/4"):
        p.edit_task(ref, estimate=1)
    n = 0
    for day, count in ((2, 3), (9, 5), (16, 4)):
        for i in range(count):
            n += 1
            clock.now = f"2026-11-{day:02d}T{9 + i:02d}:00:00Z"
            if n == 1:
                p.block_task("1/1", "waiting")
                clock.now = f"2026-11-{day:02d}T{11 + i:02d}:00:00Z"
                p.unblock_task("1/1")
            p.start_task(f"1/{n}")
            clock.now = f"2026-11-{day:02d}T{9 + i:02d}:30:00Z" if n > 1 else \
                "2026-11-02T12:00:00Z"
            p.complete_task(f"1/{n}")
    clock.now = "2026-11-20T09:00:00Z"
    p.block_task("2/1", "needs a <b>decision</b>")
    return project_dir


def client(root: Path) -> TestClient:
    return TestClient(create_app(Project.open(root)), base_url="http://127.0.0.1")


def value(page: str, figure: str) -> str:
    got = re.search(rf'data-figure="{figure}"[^>]*data-value="([^"]*)"', page)
    assert got, figure
    return got.group(1)


def test_the_page_shows_the_numbers_of_the_cli(history: Path, run: Any) -> None:
    with client(history) as c:
        page = c.get("/analytics")
        m2 = c.get("/milestones/milestone-002").text
    cli = run.json("analytics")
    assert page.status_code == 200 and "<h1>Analytics</h1>" in page.text
    text = page.text
    assert cli["throughput"]["total"] == 12
    assert value(text, "throughput-total") == str(cli["throughput"]["total"])
    cycle = re.search(r'data-figure="cycle_time">.*?data-value="([^"]*)"', text, re.S)
    assert cycle and cycle.group(1) == str(cli["cycle_time"]["median_hours"])
    lead = re.search(r'data-figure="lead_time">.*?data-value="([^"]*)"', text, re.S)
    assert lead and lead.group(1) == str(cli["lead_time"]["median_hours"])
    # the forecast with its range, the same dates as the CLI (seeded by the log head)
    (row,) = cli["forecast"]["milestones"]
    assert row["milestone"] == "milestone-002" and row["status"] == "forecast"
    got = re.search(r'<tr data-forecast="milestone-002".*?</tr>', text, re.S)
    assert got
    for q in ("p50", "p85", "p95"):
        assert f'<td data-q="{q}"><time datetime="{row["dates"][q]}">' in got.group(0)
    # the open blocker with its age, the accuracy table per person and per tag
    assert 'data-blocker="milestone-002/task-1"' in text
    assert "tag: api" in text and "person: tester@example.com" in text
    # escaped everywhere; the nav links the page
    assert XSS not in text and "&lt;img src=x" in text
    assert '<a href="/analytics" aria-current="page">Analytics</a>' in text
    # the milestone page has its own forecast line
    assert 'class="meta forecast" data-forecast="milestone-002" data-status="forecast"' in m2
    assert row["dates"]["p85"] in m2


def test_the_charts_are_svg_images_with_a_title(history: Path) -> None:
    with client(history) as c:
        page = c.get("/analytics").text
        for kind in ("throughput", "wip"):
            src = re.search(rf'src="(/charts/analytics-{kind}.svg\?v=\d+)"', page)
            assert src, kind
            svg = c.get(src.group(1))
            assert svg.status_code == 200
            assert svg.headers["content-type"].startswith("image/svg+xml")
            assert "<script" not in svg.text and "<title" in svg.text
        bars = c.get("/charts/analytics-throughput.svg").text
        assert bars.count('class="rect reactive tooltip-trigger"') >= 3  # a bar a week
        assert c.get("/charts/analytics-nothing.svg").status_code == 404
        # ?since= narrows the charts as the figures
        narrow = c.get("/analytics", params={"since": "2026-11-09"}).text
        assert "since=2026-11-09T00%3A00%3A00Z" in narrow
        cut = c.get("/charts/analytics-throughput.svg", params={"since": "2026-11-09"}).text
        assert cut.count('class="rect reactive tooltip-trigger"') < bars.count(
            'class="rect reactive tooltip-trigger"')
        assert c.get("/charts/analytics-wip.svg?since=never").status_code == 422


def test_a_write_gives_the_charts_a_new_address(history: Path, run: Any) -> None:
    """A page refreshed after an event must not show the drawing the browser holds."""
    with client(history) as c:
        before = re.findall(r'src="(/charts/[^"]+)"', c.get("/analytics").text
                            + c.get("/milestones/milestone-002").text)
        run.ok("task", "done", "2/2")
        after = re.findall(r'src="(/charts/[^"]+)"', c.get("/analytics").text
                           + c.get("/milestones/milestone-002").text)
    assert len(before) == len(after) == 4 and not set(before) & set(after)


def test_a_short_history_says_why_there_is_no_forecast(project_dir: Path, run: Any) -> None:
    run.ok("plan", "Alpha", "--task", "A", "--task", "B")
    run.ok("task", "done", "1/1")
    cli = run.json("analytics")
    reason = cli["forecast"]["milestones"][0]["reason"]
    assert cli["forecast"]["too_short"] and "history too short" in reason
    with client(project_dir) as c:
        page = c.get("/analytics").text
        one = c.get("/milestones/milestone-001").text
        assert c.get("/analytics", params={"since": "yesterday"}).status_code == 422
    assert value(page, "throughput-total") == "1"
    assert f'<p class="why" data-figure="forecast-reason">{cli["forecast"]["reason"]}' in page
    assert reason in page and 'data-status="too_short"' in one and reason in one


def test_the_export_has_the_analytics_page(history: Path, run: Any) -> None:
    out = history / "site"
    data = run.json("dashboard", "--export", str(out))
    assert {"analytics.html", "assets/charts/analytics-throughput.svg",
            "assets/charts/analytics-wip.svg"} <= set(data["files"])
    page = (out / "analytics.html").read_text()
    assert 'src="assets/charts/analytics-throughput.svg"' in page
    assert 'href="milestone-002.html"' in page and 'href="/' not in page
    assert 'href="analytics.html"' in (out / "index.html").read_text()
    assert (out / "assets/charts/analytics-wip.svg").read_text().lstrip().startswith("<?xml")

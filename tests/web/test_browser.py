"""The dashboard in a real browser: Playwright driving Debian's chromium (never a
downloaded browser) against ``milestone dashboard`` started on a free port.

Screenshots of each page go to test-artifacts/dashboard/ (MILESTONE_TEST_ARTIFACTS
overrides the directory). CI installs chromium (.ci/run); without a chromium binary
these tests are skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ARTIFACTS, cli

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("MILESTONE_CHROMIUM") or next(
    (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()),
    shutil.which("chromium") or "")
XSS = "<img src=x onerror=alert(1)>"
SHOTS = ARTIFACTS / "dashboard"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser tests: .ci/run installs chromium")
        pytest.skip("no chromium binary (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


class Page:
    """A browser page that records console errors, page errors and dialogs."""

    def __init__(self, browser: Any, width: int = 1280, height: int = 900) -> None:
        self.ctx = browser.new_context(viewport={"width": width, "height": height})
        self.page = self.ctx.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.errors.append("dialog: " + d.message),
                                          d.dismiss()))

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.ctx.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Page]:
    p = Page(browser)
    yield p
    p.close()
    assert p.errors == []


@pytest.fixture
def seeded(project_dir: Path) -> Path:
    cli(project_dir, "plan", "Alpha", "--task", "Design", "--task", "Build", "--task", "Ship",
        "--due", "2099-01-01")
    cli(project_dir, "plan", XSS, "--task", "One", "--task", "Two", "--due", "2000-01-01")
    cli(project_dir, "task", "edit", "1/2", "--depends-on", "task-1")
    cli(project_dir, "task", "start", "1/1")
    cli(project_dir, "task", "done", "2/1")
    return project_dir


def test_the_overview_shows_what_status_says(seeded: Path, serve: Any, tab: Page) -> None:
    d = serve()
    status = cli(seeded, "status", "--all", "--json")
    assert cli(seeded, "status", "--json")["totals"] == status["totals"]
    page = tab.page
    page.goto(d.url + "/")
    page.wait_for_selector("#live-status:text('live')")
    totals = status["totals"]
    assert page.inner_text("[data-total=milestones]") == str(totals["milestones"])
    for s, n in totals["tasks"].items():
        assert page.inner_text(f"[data-tasks={s}]") == str(n), s
    for s, n in totals["by_status"].items():
        assert page.inner_text(f"[data-milestones={s}]") == str(n), s
    for m in status["milestones"]:
        row = page.locator(f"tr[data-id={m['id']}]")
        assert row.get_attribute("data-status") == m["status"]
        assert row.locator("[data-progress]").get_attribute("data-progress") == str(
            m["progress"])
        assert row.locator("[data-done]").inner_text() == str(m["counts"]["done"])
        assert row.locator("[data-count]").inner_text() == str(m["counts"]["total"])
        assert row.locator(".title").inner_text() == m["title"]
    # the overdue one is flagged; search and the at-risk filter hide rows
    assert page.locator("tr[data-id=milestone-002][data-risk='1']").count() == 1
    page.fill("#filter-text", "alpha")
    assert page.locator("tr[data-id=milestone-002]").is_hidden()
    page.fill("#filter-text", "")
    page.check("#filter-risk")
    assert page.locator("tr[data-id=milestone-001]").is_hidden()
    assert page.locator("tr[data-id=milestone-002]").is_visible()
    page.uncheck("#filter-risk")
    tab.shot("overview")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    tab.shot("overview-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1 or \
        page.locator("table.milestones").is_visible()


def test_a_cli_write_appears_without_a_reload(seeded: Path, serve: Any, tab: Page) -> None:
    d = serve()
    page = tab.page
    page.goto(d.url + "/milestones/milestone-001")
    page.wait_for_selector("#live-status:text('live')")
    page.evaluate("window.__marker = 'same page'")
    assert page.locator(".column li[data-ref='milestone-001/task-1']").get_attribute(
        "data-status") == "in_progress"
    cli(seeded, "task", "done", "1/1")
    t0 = time.monotonic()
    page.wait_for_selector(".card.done[data-ref='milestone-001/task-1']", timeout=2000)
    assert time.monotonic() - t0 < 2
    assert page.evaluate("window.__marker") == "same page"  # no reload
    tab.shot("milestone-live")
    # the overview too
    page.goto(d.url + "/")
    page.wait_for_selector("#live-status:text('live')")
    cli(seeded, "task", "done", "1/2")
    page.wait_for_selector("tr[data-id=milestone-001] [data-done='2']", timeout=2000)


def test_the_dag_and_charts_render_for_200_tasks(project_dir: Path, serve: Any,
                                                 tab: Page) -> None:
    tasks = []
    for i in range(1, 201):
        deps = [f"task-{j}" for j in (i - 1, i - 9) if j >= 1 and i % 13]
        tasks.append({"title": f"Task {i} <b>x</b>", "estimate": 1 + i % 4,
                      "depends_on": deps})
    plan = project_dir / "plan.yaml"
    plan.write_text(json.dumps({"title": "Big", "due": "2099-06-01", "tasks": tasks}))
    cli(project_dir, "plan", "--from-file", str(plan))
    for ref in ("1/1", "1/2", "1/3"):
        cli(project_dir, "task", "done", ref)
    d = serve()
    page = tab.page
    page.goto(d.url + "/milestones/milestone-001")
    page.wait_for_selector("svg.dag")
    assert page.locator("svg.dag g.node").count() == 200
    assert page.locator("svg.dag line.edge").count() > 150
    assert page.locator("svg.dag g.node.critical").count() > 1
    assert page.locator("svg.dag line.edge.critical").count() >= 1
    box = page.locator("svg.dag").bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
    assert page.locator("svg.dag > title").text_content()
    assert page.locator("svg.timeline rect").count() > 10
    for img in page.locator("img.chart").all():
        img.scroll_into_view_if_needed()
        deadline = time.monotonic() + 10  # wait_for_function would need eval: CSP says no
        while not img.evaluate("i => i.complete && i.naturalWidth > 0"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert img.get_attribute("alt")
    assert page.locator(".column li").count() == 200
    tab.shot("milestone-200-tasks")
    page.set_viewport_size({"width": 390, "height": 844})
    tab.shot("milestone-200-tasks-phone")


def wait_loaded(img: Any) -> None:
    img.scroll_into_view_if_needed()
    deadline = time.monotonic() + 10  # wait_for_function would need eval: CSP says no
    while not img.evaluate("i => i.complete && i.naturalWidth > 0"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_analytics_page_draws_its_charts(seeded: Path, serve: Any, tab: Page) -> None:
    cli(seeded, "task", "block", "1/3", "--reason", "keys")
    data = cli(seeded, "analytics", "--json")
    d = serve()
    page = tab.page
    page.goto(d.url + "/analytics")
    page.wait_for_selector("#live-status:text('live')")
    assert page.locator("nav a[aria-current=page]").inner_text() == "Analytics"
    assert page.inner_text("[data-figure=throughput-total]") == str(
        data["throughput"]["total"])
    assert page.locator("tr[data-blocker='milestone-001/task-3']").count() == 1
    reason = data["forecast"]["milestones"][0]["reason"]
    assert reason in page.inner_text("table.forecast")
    imgs = page.locator("img.chart").all()
    assert len(imgs) == 2
    for img in imgs:
        wait_loaded(img)
        assert img.get_attribute("alt")
        svg = page.request.get(d.url + str(img.get_attribute("src")))
        assert svg.ok and svg.headers["content-type"].startswith("image/svg+xml")
        text = svg.text()
        assert "<title" in text and ("<rect" in text or "<path" in text)
    tab.shot("analytics")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    tab.shot("analytics-phone")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    # a write elsewhere updates the page, its charts too, without a reload
    srcs = [img.get_attribute("src") for img in imgs]
    cli(seeded, "task", "done", "1/1")
    page.wait_for_selector(f"[data-figure=throughput-total]:text('"
                           f"{data['throughput']['total'] + 1}')", timeout=3000)
    fresh = page.locator("img.chart").all()
    assert [img.get_attribute("src") for img in fresh] != srcs
    for img in fresh:
        wait_loaded(img)


def test_a_hostile_title_is_text(seeded: Path, serve: Any, tab: Page) -> None:
    d = serve()
    page = tab.page
    for path in ("/", "/milestones/milestone-002", "/activity"):
        page.goto(d.url + path)
        assert page.locator("main img[src=x]").count() == 0
    page.goto(d.url + "/milestones/milestone-002")
    assert page.locator("h1 .title").inner_text() == XSS
    assert XSS in page.title()
    tab.shot("milestone-hostile-title")


def test_every_page_loads_clean_and_works_by_keyboard(seeded: Path, serve: Any,
                                                      tab: Page) -> None:
    cli(seeded, "agent", "register", "--name", "worker-a", "--kind", "worker")
    d = serve()
    page = tab.page
    for name, path in (("overview", "/"), ("milestone", "/milestones/milestone-001"),
                       ("agents", "/agents"), ("activity", "/activity"),
                       ("analytics", "/analytics"),
                       ("activity-filtered", "/activity?type=task_started")):
        page.goto(d.url + path)
        page.wait_for_selector("#live-status:text('live')")
        assert page.locator("main h1").count() == 1
        tab.shot(name)
    page.goto(d.url + "/agents")
    assert "worker-a" in page.inner_text("table.agents")
    # keyboard: Tab reaches the skip link, then the navigation
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Overview"
    page.keyboard.press("Enter")
    page.wait_for_url(d.url + "/")


def test_a_write_from_the_page_uses_the_csrf_token(seeded: Path, serve: Any,
                                                   tab: Page) -> None:
    d = serve()
    page = tab.page
    page.goto(d.url + "/milestones/milestone-001")
    page.wait_for_selector("#live-status:text('live')")
    form = page.locator("form.task-action[data-ref='milestone-001/task-3']")
    form.locator("select").select_option("block")
    form.locator("input[name=text]").fill("waiting <for> keys")
    form.locator("button").click()
    page.wait_for_selector(".card.blocked[data-ref='milestone-001/task-3']", timeout=3000)
    assert "waiting <for> keys" in page.locator(
        ".card[data-ref='milestone-001/task-3'] .why").inner_text()
    assert cli(seeded, "show", "1/3", "--json")["task"]["status"] == "blocked"


def test_a_write_without_the_token_is_refused_on_a_non_local_bind(
        seeded: Path, serve: Any, tab: Page) -> None:
    d = serve("--host", "0.0.0.0")
    assert d.token
    before = cli(seeded, "log", "--json")["events"][-1]["event_id"]

    def post(headers: dict[str, str]) -> int:
        req = urllib.request.Request(d.url + "/api/tasks/1/1/done", data=b"{}",
                                     method="POST", headers={
                                         "Content-Type": "application/json", **headers})
        try:
            return int(urllib.request.urlopen(req, timeout=10).status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    assert post({}) == 401
    assert post({"Authorization": "Bearer wrong"}) == 401
    assert post({"X-CSRF-Token": "a", "Cookie": "ms_csrf=a"}) == 401
    assert cli(seeded, "log", "--json")["events"][-1]["event_id"] == before
    stored = (seeded / ".milestones/config/dashboard-token.sha256").read_text()
    assert d.token not in stored and (seeded / ".milestones/config/dashboard-token.sha256"
                                      ).stat().st_mode & 0o777 == 0o600
    # the page: sent to the login form without the token, open after /login?token=
    page = tab.page
    page.goto(d.url + "/milestones/milestone-001")
    assert page.url == d.url + "/login" and page.locator("input[name=token]").count() == 1
    assert "Alpha" not in page.content()
    page.goto(d.url + f"/login?token={d.token}")
    page.wait_for_selector("#live-status:text('live')")
    tab.shot("overview-after-login")
    assert post({"Authorization": f"Bearer {d.token}"}) == 200


def test_the_export_opens_from_disk(seeded: Path, tab: Page) -> None:
    out = seeded / "site"
    cli(seeded, "dashboard", "--export", str(out))
    page = tab.page
    page.goto((out / "index.html").as_uri())
    assert page.locator("#live-status").inner_text() == "static snapshot"
    assert page.locator("tr[data-id]").count() == 2
    page.fill("#filter-text", "alpha")  # the filters work without a server
    assert page.locator("tr[data-id=milestone-002]").is_hidden()
    page.click("a[href='milestone-001.html']")
    page.wait_for_selector("svg.dag g.node")
    assert page.locator("form.task-action").count() == 0  # no writes in a snapshot
    for img in page.locator("img.chart").all():
        img.scroll_into_view_if_needed()
        deadline = time.monotonic() + 10
        while not img.evaluate("i => i.complete && i.naturalWidth > 0"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    tab.shot("export-milestone")
    page.click("nav a[href='activity.html']")
    assert page.locator("tr[data-event]").count() > 3

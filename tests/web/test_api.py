"""The dashboard's JSON API through Starlette's TestClient: every endpoint, its data
equal to the CLI's --json, and bad input refused with a clear 4xx, nothing changed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from milestones.errors import InvalidInput
from milestones.project import Project
from milestones.project.access import DASHBOARD_TOKEN
from milestones.web import guard, security
from milestones.web.app import create_app
from milestones.web.openapi import SPEC

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(params=["file", "postgres"])
def project_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Every test here on the file backend and on postgres (its fresh database set up
    by conftest's ``_postgres_when_parametrized``): the dashboard's threads then
    borrow from a connection pool."""
    Project.init(tmp_path, backend=request.param)
    return tmp_path


@pytest.fixture
def proj(run: Any, project_dir: Path) -> Path:
    run.ok("plan", "Alpha", "--task", "Design", "--task", "Build", "--due", "2099-01-01")
    run.ok("plan", XSS, "--task", "One", "--task", "Two")
    run.ok("task", "edit", "1/2", "--depends-on", "task-1")
    run.ok("task", "start", "1/1")
    return project_dir


def client(root: Path, **kw: Any) -> TestClient:
    return TestClient(create_app(Project.open(root), **kw), base_url="http://127.0.0.1")


@pytest.fixture
def api(proj: Path) -> Iterator[TestClient]:
    with client(proj) as c:
        c.get("/")  # the page sets the CSRF cookie
        yield c


def csrf(c: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": c.cookies.get(security.CSRF_COOKIE) or ""}


def head(root: Path) -> int:
    return int(Project.open(root).state().last_event_id)


def test_reads_equal_the_cli(api: TestClient, run: Any) -> None:
    got = api.get("/api/milestones").json()
    assert got["milestones"] == run.json("list", "--all")["milestones"]
    one = api.get("/api/milestones/milestone-001").json()["milestone"]
    assert one == run.json("show", "1")["milestone"]
    assert api.get("/api/milestones/1").json()["milestone"]["id"] == "milestone-001"
    assert api.get("/api/tasks/1/2").json()["task"]["waiting_on"] == ["milestone-001/task-1"]


def test_tasks_are_filtered(api: TestClient) -> None:
    every = api.get("/api/tasks").json()
    assert every["total"] == 4
    doing = api.get("/api/tasks", params={"status": "in_progress"}).json()["tasks"]
    assert [t["ref"] for t in doing] == ["milestone-001/task-1"]
    assert [t["ref"] for t in api.get("/api/tasks", params={"q": "two"}).json()["tasks"]] \
        == ["milestone-002/task-2"]
    assert api.get("/api/tasks", params={"assignee": "nobody"}).json()["total"] == 0


def test_events_are_paged_by_id(api: TestClient, proj: Path) -> None:
    first = api.get("/api/events", params={"limit": 3}).json()
    ids = [e["event_id"] for e in first["events"]]
    assert ids == [1, 2, 3] and first["next_after"] == 3
    rest = api.get("/api/events", params={"after": 3, "limit": 1000}).json()
    assert rest["events"][0]["event_id"] == 4 and rest["next_after"] is None
    assert rest["events"][-1]["event_id"] == head(proj)
    typed = api.get("/api/events", params={"type": "task_started"}).json()["events"]
    assert [e["event_type"] for e in typed] == ["task_started"]


def test_agents_and_openapi(api: TestClient) -> None:
    assert api.get("/api/agents").json()["agents"] == []
    spec = api.get("/openapi.json").json()
    assert spec == json.loads(json.dumps(SPEC))
    app = api.app.app  # type: ignore[attr-defined]  # inside the Guard
    api_routes = {r.path for r in app.routes if r.path.startswith("/api/")}
    described = set(spec["paths"])
    for path in api_routes:
        if "{action}" in path:
            assert all(path.replace("{action}", a) in described
                       for a in ("start", "done", "block", "assign", "comment"))
        else:
            assert path in described, path


def test_analytics_equal_the_cli(api: TestClient, run: Any) -> None:
    run.ok("task", "done", "1/1")
    def figures(data: dict[str, Any]) -> dict[str, Any]:
        # not how they were brought up, nor the second each was made in
        return {k: v for k, v in data.items() if k not in ("rollups", "generated_at")}

    got = api.get("/api/analytics").json()
    assert got["throughput"] and figures(got) == figures(run.json("analytics"))
    one = api.get("/api/analytics/milestone-001", params={"since": "2000-01-01"}).json()
    assert figures(one) == figures(run.json("analytics", "1", "--since", "2000-01-01"))


@pytest.mark.parametrize(("path", "status"), [
    ("/api/milestones/milestone-999", 404),
    ("/api/milestones/zzz", 404),
    ("/api/tasks/1/99", 404),
    ("/api/tasks?status=nope", 422),
    ("/api/events?after=abc", 422),
    ("/api/events?limit=0", 422),
    ("/api/events?after=-1", 422),
    ("/api/events?type=no_such_event", 422),
    ("/api/events/stream?after=x", 422),
    ("/api/analytics/milestone-999", 404),
    ("/api/analytics?since=yesterday", 422),
    ("/api/nothing", 404),
    ("/milestones/milestone-999", 404),
    ("/charts/milestone-001-pie.svg", 404),
])
def test_bad_reads_are_a_clear_4xx(api: TestClient, path: str, status: int) -> None:
    r = api.get(path)
    assert r.status_code == status, r.text
    if path.startswith("/api/"):
        assert r.json()["error"]["message"]


def test_writes_go_through_the_project(api: TestClient, run: Any) -> None:
    h = csrf(api)
    r = api.post("/api/tasks/1/1/done", headers=h)
    assert r.status_code == 200 and r.json()["task"]["status"] == "done"
    assert api.post("/api/tasks/2/1/start", headers=h, json={}).status_code == 200
    r = api.post("/api/tasks/2/1/block", headers=h, json={"reason": "waiting for keys"})
    assert r.json()["task"]["blockers"] == ["waiting for keys"]
    r = api.post("/api/tasks/1/2/assign", headers=h, json={"assignee": "bob@example.com"})
    assert r.json()["task"]["assignee"] == "bob@example.com"
    assert api.post("/api/tasks/1/2/assign", headers=h,
                    json={"assignee": None}).json()["task"]["assignee"] is None
    assert api.post("/api/tasks/1/2/comment", headers=h,
                    json={"text": "looks good"}).status_code == 200
    notes = run.json("log", "--type", "note_added")["events"]
    assert "milestone-001/task-2: looks good" in json.dumps(notes)
    assert run.json("show", "1/1")["task"]["status"] == "done"


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/api/tasks/1/2/block", b"{not json", 400),
    ("/api/tasks/1/2/block", b"[1, 2]", 422),
    ("/api/tasks/1/2/block", b"{}", 422),
    ("/api/tasks/1/2/block", b'{"reason": 5}', 422),
    ("/api/tasks/1/2/block", b'{"reason": "x", "extra": 1}', 422),
    ("/api/tasks/1/2/start", b'{"force": "yes"}', 422),
    ("/api/tasks/1/2/assign", b'{"assignee": ["a"]}', 422),
    ("/api/tasks/1/2/block", b'{"reason": ""}', 422),  # the Project's own check
    ("/api/tasks/1/2/done", b"{}", 409),  # its dependency is not done
    ("/api/tasks/1/99/done", b"{}", 404),
    ("/api/tasks/9/1/start", b"{}", 404),
    ("/api/tasks/1/2/fly", b"{}", 404),
    ("/api/tasks/1/2/comment", b'{"text": "' + b"x" * (70 * 1024) + b'"}', 413),
])
def test_bad_writes_change_nothing(api: TestClient, proj: Path, path: str, body: bytes,
                                   status: int) -> None:
    before = head(proj)
    r = api.post(path, content=body, headers={**csrf(api), "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and "\n" not in err["message"] and "Traceback" not in r.text
    assert head(proj) == before


def test_a_write_without_the_csrf_token_is_refused(api: TestClient, proj: Path) -> None:
    before = head(proj)
    r = api.post("/api/tasks/1/1/done")
    assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"]
    bad = api.post("/api/tasks/1/1/done", headers={"X-CSRF-Token": "guess"})
    assert bad.status_code == 403
    assert head(proj) == before


def test_a_denied_role_is_403_with_the_line(proj: Path, run: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    run.ok("team", "add", "vic@example.com", "--role", "viewer")
    monkeypatch.setenv("MILESTONE_USER", "vic@example.com")
    before = head(proj)
    with client(proj) as c:
        c.get("/")
        r = c.post("/api/tasks/1/1/done", headers=csrf(c))
        assert r.status_code == 403
        assert "viewer" in r.json()["error"]["message"]
        assert c.get("/api/milestones").status_code == 200  # reads stay open
    assert head(proj) == before


def test_the_token_hash_is_not_written_through_a_planted_link(proj: Path,
                                                              tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    path = proj / ".milestones" / DASHBOARD_TOKEN
    path.symlink_to(outside)
    with pytest.raises(InvalidInput, match="symbolic link"):
        security.new_token(Project.open(proj).root)
    assert outside.read_text() == "keep me" and path.is_symlink()


def test_a_non_local_bind_needs_the_token(proj: Path) -> None:
    token = security.new_token(Project.open(proj).root)
    stored = security.read_hash(Project.open(proj).root)
    path = proj / ".milestones" / DASHBOARD_TOKEN
    assert stored == security.digest(token) and token not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    before = head(proj)
    with TestClient(create_app(Project.open(proj), token_hash=stored, local=False),
                    base_url="http://10.1.2.3") as c:
        assert c.get("/api/milestones").status_code == 401
        assert c.get("/", follow_redirects=False).headers["location"] == "/login"
        assert c.post("/api/tasks/1/1/done").status_code == 401
        assert c.get("/api/milestones", headers={"Authorization": "Bearer nope"}
                     ).status_code == 401
        assert c.get("/login?token=nope").status_code == 401
        assert head(proj) == before
        bearer = {"Authorization": f"Bearer {token}"}
        assert c.get("/api/milestones", headers=bearer).status_code == 200
        # a session cookie from /login reads; its writes need the CSRF header too
        assert c.get(f"/login?token={token}", follow_redirects=False).status_code == 303
        assert c.get("/").status_code == 200
        assert c.post("/api/tasks/1/1/done").status_code == 403
        assert head(proj) == before
        assert c.post("/api/tasks/1/1/done", headers=csrf(c)).status_code == 200
        assert c.post("/api/tasks/1/2/done", headers=bearer).status_code == 200


def test_pages_escape_and_carry_a_strict_policy(api: TestClient) -> None:
    for path in ("/", "/milestones/milestone-002", "/agents", "/activity",
                 "/activity?actor=x&type=task_started"):
        r = api.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp
        assert XSS not in r.text and "<script>" not in r.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in api.get("/").text
    chart = api.get("/charts/milestone-001-burnup.svg")
    assert chart.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in chart.text and "<script" not in chart.text


def test_a_foreign_host_name_is_refused_on_a_local_bind(proj: Path) -> None:
    with TestClient(create_app(Project.open(proj)), base_url="http://evil.example") as c:
        r = c.get("/api/milestones")
        assert r.status_code == 400 and "host" in r.json()["error"]["message"]


def test_the_body_bound_is_64_kb() -> None:
    assert guard.BODY_LIMIT == 64 * 1024


def test_export_writes_a_static_snapshot(proj: Path, run: Any) -> None:
    out = run.ok("dashboard", "--export")
    site = proj / ".milestones" / "web-dashboard"
    assert str(site) in out
    names = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    assert {"index.html", "agents.html", "activity.html", "milestone-001.html",
            "milestone-002.html", "assets/app.css", "assets/app.js",
            "assets/charts/milestone-001-burnup.svg"} <= names
    index = (site / "index.html").read_text()
    assert 'href="assets/app.css"' in index and 'href="milestone-001.html"' in index
    assert 'data-live="0"' in index and 'href="/' not in index and 'src="/' not in index
    assert XSS not in index
    other = proj / "snap"
    data = run.json("dashboard", "--export", str(other))
    assert (other / "index.html").exists() and "index.html" in data["files"]


def test_export_writes_through_no_planted_link(proj: Path, run: Any, tmp_path: Path) -> None:
    outside = tmp_path / "bashrc"
    outside.write_text("keep me")
    site = proj / ".milestones" / "web-dashboard"
    site.mkdir()
    (site / "index.html").symlink_to(outside)
    result = run("dashboard", "--export")
    assert result.exit_code == 4 and "symbolic link" in result.output
    assert outside.read_text() == "keep me"


def test_open_hands_the_overview_to_the_browser(proj: Path, tmp_path: Path, serve: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``--open`` opens the served overview in the user's browser ($BROWSER here: a
    script that writes down the address it was given)."""
    import time

    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > "{opened}"\n')
    browser.chmod(0o755)
    monkeypatch.setenv("BROWSER", f"{browser} %s")
    d = serve("--open")  # in proj's directory
    deadline = time.monotonic() + 20
    while not opened.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert opened.exists(), "--open did not start the browser"
    port = d.url.rsplit(":", 1)[1]
    assert opened.read_text() == f"http://localhost:{port}/"


def test_a_port_in_use_is_one_line_and_exit_4(proj: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "milestones", "dashboard", "--port",
                               str(port)], cwd=proj, capture_output=True, text=True,
                              timeout=60)
    assert done.returncode == 4 and not done.stdout
    assert done.stderr.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_agents_show_what_each_holds_and_their_failures(api: TestClient, run: Any) -> None:
    run.ok("agent", "register", "--name", "w1")
    claimed = run.json("agent", "claim", "--agent", "w1")
    ref = claimed["ref"] if "ref" in claimed else claimed["task"]["ref"]
    rows = api.get("/api/agents").json()["agents"]
    assert rows[0]["name"] == "w1" and rows[0]["holds"] == [ref]
    run.ok("agent", "fail", ref, "--reason", "tests <b>red</b>", "--agent", "w1")
    got = api.get("/api/agents").json()
    assert got["agents"][0]["holds"] == []
    assert [e["event_type"] for e in got["failures"]][:1] == ["task_failed"]
    page = api.get("/agents").text
    assert "w1" in page and "tests &lt;b&gt;red&lt;/b&gt;" in page

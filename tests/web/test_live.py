"""Live events from a real server: a CLI write in another process reaches the SSE
stream with its event id; a reconnect with Last-Event-ID resumes after it."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .conftest import cli


def sse(url: str, last: int | None, want: int, timeout: float = 10
        ) -> list[tuple[int, dict[str, Any]]]:
    """The first ``want`` messages of the stream: (id, event)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    headers = {"Accept": "text/event-stream"}
    if last is not None:
        headers["Last-Event-ID"] = str(last)
    conn.request("GET", "/api/events/stream", headers=headers)
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type", "").startswith(
        "text/event-stream")
    got: list[tuple[int, dict[str, Any]]] = []
    eid, data = None, ""
    while len(got) < want:
        line = resp.fp.readline().decode().rstrip("\r\n")
        if line.startswith("id:"):
            eid = int(line[3:].strip())
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif not line and data:
            got.append((int(eid or 0), json.loads(data)))
            eid, data = None, ""
    conn.close()
    return got


def test_a_cli_write_reaches_the_stream_and_a_reconnect_resumes(
        serve: Any, project_dir: Path) -> None:
    cli(project_dir, "plan", "Live", "--task", "a", "--task", "b")
    d = serve()
    import threading

    got: list[tuple[int, dict[str, Any]]] = []
    reader = threading.Thread(target=lambda: got.extend(sse(d.url, None, 1)))
    reader.start()
    time.sleep(0.5)  # connected and subscribed
    t0 = time.monotonic()
    cli(project_dir, "task", "start", "1/1")
    reader.join(10)
    assert got and time.monotonic() - t0 < 5
    eid, event = got[0]
    assert event["event_type"] == "task_started" and event["event_id"] == eid
    # resume after an id: the events after it, in order, ids as the SSE ids
    again = sse(d.url, 1, 3)
    assert [i for i, _ in again] == [2, 3, 4]
    assert [e["event_id"] for _, e in again] == [2, 3, 4]



def test_a_resume_far_behind_gets_every_event(serve: Any, project_dir: Path) -> None:
    """More events missed than one page of /api/events (1,000): all come, in order."""
    from milestones.project import Project

    cli(project_dir, "plan", "Many", "--task", "a")
    p = Project.open(project_dir)
    for i in range(1100):
        p.note(f"note {i}")
    last = cli(project_dir, "log", "--limit", "1", "--json")["events"][-1]["event_id"]
    assert last > 1100
    d = serve()
    got = sse(d.url, 0, last, timeout=60)
    assert [i for i, _ in got] == list(range(1, last + 1))


def test_on_postgres_a_write_reaches_the_stream(serve: Any, project_dir: Path,
                                                pg_url: str) -> None:
    """The watcher is woken by the commit's NOTIFY (and polls besides)."""
    cli(project_dir, "storage", "migrate", "--to", "postgres")  # asserts it succeeds
    cli(project_dir, "plan", "Live", "--task", "a")
    d = serve()
    import threading

    got: list[tuple[int, dict[str, Any]]] = []
    reader = threading.Thread(target=lambda: got.extend(sse(d.url, None, 1)))
    reader.start()
    time.sleep(0.5)
    cli(project_dir, "task", "start", "1/1")
    reader.join(10)
    assert got and got[0][1]["event_type"] == "task_started"

"""The Starlette application: pages, the JSON API, the SSE stream, the errors.

Every read and write runs on a small pool of worker threads, each with its own
Project (``data.Reader``); the event loop only parses, checks and streams. On
postgres their stores share a pool of connections (``project.pooling``: one per
worker and one for the loop's look at the log head), opened when the app starts and
closed when it stops; the live stream's watcher keeps its own (LISTEN).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import MilestoneError
from ..project.pooling import Pooled
from . import data, guard, security
from .live import Watcher, stream
from .pages import ANALYTICS_CHARTS, HERE, Site

WORKERS = 4
# the HTTP status of each error kind (its exit code, errors.py)
STATUS = {3: 404, 4: 422, 5: 409, 6: 403, 7: 409}
ACTIONS = ("start", "done", "block", "assign", "comment")


class BadRequest(Exception):
    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


def failure(status: int, message: str, kind: str, hint: str | None = None) -> Response:
    return Response(guard.error_body(status, message, kind, hint), status,
                    media_type="application/json")


def create_app(project: Any, *, token_hash: str | None = None, local: bool = True,
               hosts: frozenset[str] | None = None) -> Any:
    connections = Pooled(project, WORKERS + 1)  # the workers and the loop's peek
    reader = data.Reader(project, connections)
    site = Site(reader)
    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="milestone-web")
    watcher = Watcher(reader)

    async def run(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, lambda: reader.call(fn, *args, **kw))

    def out(value: Any, status: int = 200) -> Response:
        from ..ui import jsontext

        return Response(jsontext.dumps(value), status, media_type="application/json")

    async def answer(request: Request, fn: Callable[[], Any]) -> Response:
        """A read's JSON text, kept per URL until the next event (reader.kept)."""
        from ..ui import jsontext

        key = f"http:{request.url.path}?{request.url.query}"
        text = reader.peek(key)  # kept: answered on the loop, no thread hop
        if text is None:
            text = await run(reader.kept, key, lambda p: jsontext.dumps(fn()), reveal=False)
        return Response(text, media_type="application/json")

    async def html(request: Request, fn: Callable[[], str]) -> Response:
        key = f"page:{request.url.path}?{request.url.query}"
        text = reader.peek(key)
        if text is None:
            text = await run(reader.kept, key, lambda p: fn(), reveal=False)
        return page(text, request)

    def page(html: str, request: Request) -> Response:
        resp = HTMLResponse(html)
        if not request.cookies.get(security.CSRF_COOKIE):
            resp.set_cookie(security.CSRF_COOKIE, security.new_csrf(), httponly=False,
                            samesite="strict", path="/")
        return resp

    # ------------------------------------------------------------- API

    async def api_milestones(request: Request) -> Response:
        return await answer(request, reader.milestones)

    async def api_milestone(request: Request) -> Response:
        return await answer(request, lambda: reader.milestone(request.path_params["mid"]))

    async def api_tasks(request: Request) -> Response:
        q = request.query_params
        return await answer(request, lambda: reader.tasks(
            q.get("status") or None, q.get("assignee") or None, q.get("q") or None))

    async def api_task(request: Request) -> Response:
        ref = f"{request.path_params['mid']}/{request.path_params['tid']}"
        return await answer(request, lambda: reader.task(ref))

    async def api_events(request: Request) -> Response:
        q = request.query_params
        after = _int(q.get("after"), "after", 0)
        limit = _int(q.get("limit"), "limit", data.EVENTS_PAGE)
        if not 1 <= limit <= data.EVENTS_MAX:
            raise BadRequest(422, f"limit must be 1 to {data.EVENTS_MAX}")
        types = tuple(t for t in q.getlist("type") if t)
        return await answer(request, lambda: reader.events(
            after, limit, q.get("milestone") or None, q.get("actor") or None, types))

    async def api_agents(request: Request) -> Response:
        return await answer(request, reader.agents)

    async def api_analytics(request: Request) -> Response:
        since = _since(request.query_params.get("since"))
        mid = request.path_params.get("mid")
        return await answer(request, lambda: reader.analytics(mid, since))

    async def api_stream(request: Request) -> Response:
        from sse_starlette.sse import EventSourceResponse

        given = request.headers.get("last-event-id") or request.query_params.get("after")
        after = _int(given, "Last-Event-ID", 0) if given else None

        async def backlog(n: int) -> AsyncIterator[dict[str, Any]]:
            while True:  # page by page, up to the head
                got = await run(reader.events, n, data.EVENTS_MAX)
                for row in got["events"]:
                    yield row
                if got["next_after"] is None:
                    return
                n = got["next_after"]

        return EventSourceResponse(stream(watcher, backlog, after), ping=15,
                                   headers={"Cache-Control": "no-store"})

    async def api_write(request: Request) -> Response:
        action = request.path_params["action"]
        ref = f"{request.path_params['mid']}/{request.path_params['tid']}"
        if action not in ACTIONS:
            raise BadRequest(404, f"no task action {action!r}", ", ".join(ACTIONS))
        body = _body(await request.body(), action)
        return out(await run(reader.write, action, ref, body))

    async def openapi(request: Request) -> Response:
        from .openapi import SPEC

        return JSONResponse(SPEC)

    # ----------------------------------------------------------- pages

    async def overview(request: Request) -> Response:
        return await html(request, site.overview)

    async def milestone_page(request: Request) -> Response:
        return await html(request, lambda: site.milestone(request.path_params["mid"]))

    async def chart(request: Request) -> Response:
        name = request.path_params["name"]
        for kind in ANALYTICS_CHARTS:
            if name == f"analytics-{kind}.svg":
                since = _since(request.query_params.get("since"))
                svg = await run(reader.kept, f"chart:{name}:{since}",
                                lambda p, k=kind, s=since: site.analytics_chart(k, s),
                                reveal=False)
                return Response(svg, media_type="image/svg+xml",
                                headers={"content-security-policy": guard.CHART_CSP})
        for kind in ("burnup", "burndown"):
            if name.endswith(f"-{kind}.svg"):
                svg = await run(reader.kept, f"chart:{name}",
                                lambda p, k=kind: site.chart(name[:-len(k) - 5], k),
                                reveal=False)
                return Response(svg, media_type="image/svg+xml",
                                headers={"content-security-policy": guard.CHART_CSP})
        return failure(404, f"no chart {name!r}", "not_found")

    async def agents_page(request: Request) -> Response:
        return await html(request, site.agents)

    async def analytics_page(request: Request) -> Response:
        since = _since(request.query_params.get("since"))
        return await html(request, lambda: site.analytics(since))

    async def activity_page(request: Request) -> Response:
        q = request.query_params
        return await html(request, lambda: site.activity(
            actor=q.get("actor"), milestone=q.get("milestone"), type_=q.get("type")))

    async def login(request: Request) -> Response:
        token = request.query_params.get("token")
        if token is None or not security.token_ok(token, token_hash):
            html = site.render("login.html", title="Access token", page="login",
                               message="This dashboard needs its access token"
                               + (" (that one is not it)." if token else "."))
            return HTMLResponse(html, 401 if token else 200)
        resp = RedirectResponse("/", 303)
        resp.set_cookie(security.SESSION_COOKIE, token, httponly=True, samesite="strict",
                        path="/")
        resp.set_cookie(security.CSRF_COOKIE, security.new_csrf(), samesite="strict",
                        path="/")
        return resp

    # ---------------------------------------------------------- errors

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, BadRequest):
            return failure(exc.status, exc.message, "bad_request", exc.hint)
        if isinstance(exc, MilestoneError):
            status = STATUS.get(exc.exit_code, 500)
            kind = type(exc).__name__
            message, hint = str(exc), getattr(exc, "hint", None)
            if wants_json(request):
                return failure(status, message, kind, hint)
            html = site.render("login.html", title=kind, page="error", message=message)
            return HTMLResponse(html, status)
        raise exc

    async def on_http(request: Request, exc: Exception) -> Response:
        status = int(getattr(exc, "status_code", 500))
        return failure(status, str(getattr(exc, "detail", "error")), "http")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        connections.open()
        try:
            await run(reader.head)
            watcher.start()
            yield
        finally:
            watcher.stop()
            pool.shutdown(wait=False, cancel_futures=True)
            connections.close()

    routes = [
        Route("/", overview),
        Route("/milestones/{mid}", milestone_page),
        Route("/charts/{name}", chart),
        Route("/agents", agents_page),
        Route("/activity", activity_page),
        Route("/analytics", analytics_page),
        Route("/login", login),
        Route("/openapi.json", openapi),
        Route("/api/milestones", api_milestones),
        Route("/api/milestones/{mid}", api_milestone),
        Route("/api/tasks", api_tasks),
        Route("/api/tasks/{mid}/{tid}", api_task),
        Route("/api/tasks/{mid}/{tid}/{action}", api_write, methods=["POST"]),
        Route("/api/events", api_events),
        Route("/api/events/stream", api_stream),
        Route("/api/agents", api_agents),
        Route("/api/analytics", api_analytics),
        Route("/api/analytics/{mid}", api_analytics),
        Mount("/assets", StaticFiles(directory=Path(HERE / "assets")), name="assets"),
    ]
    from starlette.exceptions import HTTPException

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={MilestoneError: on_error,
                                        BadRequest: on_error, HTTPException: on_http})
    app.state.reader = reader
    app.state.watcher = watcher
    app.state.connections = connections
    return guard.Guard(app, token_hash=token_hash, local=local, hosts=hosts)


def _int(text: str | None, name: str, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(422, f"{name} must be a whole number, not {text!r}") from None
    if value < 0:
        raise BadRequest(422, f"{name} must not be negative")
    return value


def _since(text: str | None) -> str | None:
    """``?since=``: an ISO date or date-time (UTC unless it says), as the timestamp
    prefix the analytics compare with; 422 otherwise."""
    if not text:
        return None
    from datetime import UTC, datetime

    from ..project import utc_stamp

    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(422, f"since must be a date or date-time, not {text!r}",
                         "e.g. 2026-11-01 or 2026-11-01T09:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return str(utc_stamp(moment))
    except (OverflowError, ValueError):
        raise BadRequest(422, f"since {text!r} is outside the calendar") from None


# each action's fields: name -> (types allowed, required)
FIELDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "start": {"force": ((bool,), False)},
    "done": {"force": ((bool,), False)},
    "block": {"reason": ((str,), True)},
    "assign": {"assignee": ((str, type(None)), True)},
    "comment": {"text": ((str,), True)},
}


def _body(raw: bytes, action: str) -> dict[str, Any]:
    """The JSON body of a write, checked: 400 when it is not JSON, 422 when a field
    is missing, unknown or of the wrong type."""
    import json

    if not raw.strip():
        value: Any = {}
    else:
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest(400, "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise BadRequest(422, "the body must be a JSON object")
    fields = FIELDS[action]
    for key in value:
        if key not in fields:
            raise BadRequest(422, f"unknown field {key!r} for {action}",
                             "fields: " + (", ".join(fields) or "none"))
    for key, (types, required) in fields.items():
        if key not in value:
            if required:
                raise BadRequest(422, f"{action} needs the field {key!r}")
            continue
        v = value[key]
        if not isinstance(v, types):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise BadRequest(422, f"{key} must be {names}")
    return dict(value)

"""The ASGI middleware in front of every route: security headers, the request body
bound (413), the token and the CSRF check (security.py), the Host check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any

from . import security

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_LIMIT = 64 * 1024
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
CHART_CSP = "default-src 'none'; style-src 'unsafe-inline'"  # pygal's SVG, shown as an <img>
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
OPEN_PATHS = ("/login", "/assets/")


def error_body(status: int, message: str, kind: str, hint: str | None = None) -> bytes:
    from ..ui import jsontext

    return jsontext.dumps({"schema": 1, "error": {
        "status": status, "kind": kind, "message": message, "hint": hint}}).encode()


class Guard:
    def __init__(self, app: App, *, token_hash: str | None, local: bool,
                 hosts: frozenset[str] | None = None) -> None:
        self.app = app
        self.token_hash = token_hash
        self.local = local
        # DNS rebinding: on a local bind only these Host names are answered
        self.hosts = hosts if hosts is not None else security.LOCAL_HOSTS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", ())}
        path = scope.get("path", "")
        method = scope.get("method", "GET")

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY")]
                names = {k.lower() for k, _ in message.get("headers", [])}
                if b"content-security-policy" not in names:
                    extra.append((b"content-security-policy", CSP.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        async def refuse(status: int, message: str, kind: str, hint: str | None = None,
                         ) -> None:
            body = error_body(status, message, kind, hint)
            await secured({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        host = headers.get("host", "").rsplit(":", 1)[0].strip("[]")
        if self.local and host not in self.hosts:
            await refuse(400, f"unknown host {host!r}", "bad_host",
                         "open the dashboard at 127.0.0.1")
            return
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:
            cookies = SimpleCookie()
        cookie = {k: m.value for k, m in cookies.items()}
        by_bearer = security.token_ok(security.bearer(headers.get("authorization")),
                                      self.token_hash)
        by_cookie = security.token_ok(cookie.get(security.SESSION_COOKIE), self.token_hash)
        if not self.local and not (by_bearer or by_cookie) and not path.startswith(OPEN_PATHS):
            if method == "GET" and not path.startswith("/api/") and path != "/openapi.json":
                await secured({"type": "http.response.start", "status": 303,
                               "headers": [(b"location", b"/login"), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            await refuse(401, "an access token is needed", "unauthorized",
                         "send Authorization: Bearer TOKEN, or open /login?token=TOKEN")
            return
        if method in WRITES:
            csrf = security.csrf_ok(cookie.get(security.CSRF_COOKIE),
                                    headers.get(security.CSRF_HEADER))
            if not (by_bearer or csrf):
                await refuse(403, "a write needs the access token or the page's CSRF token",
                             "forbidden", "send the X-CSRF-Token header from the page")
                return
            bounded = await self._bounded(receive, headers)
            if bounded is None:
                await refuse(413, f"request body over {BODY_LIMIT // 1024} KB",
                             "too_large")
                return
            receive = bounded
        await self.app(scope, receive, secured)

    @staticmethod
    async def _bounded(receive: Receive, headers: dict[str, str]) -> Receive | None:
        """The body read whole, at most BODY_LIMIT bytes (None: over), replayed."""
        try:
            if int(headers.get("content-length") or 0) > BODY_LIMIT:
                return None
        except ValueError:
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > BODY_LIMIT:
                return None
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

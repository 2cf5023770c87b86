"""``milestone dashboard``: the web dashboard (milestones.web), or its static export.

The ASGI stack (starlette, uvicorn) is imported here, inside the command, only."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import InvalidInput, MilestoneError
from .group import cli, get_project, say

EXPORT_DEFAULT = "\0default"  # --export without DIR: .milestones/web-dashboard/


def _web() -> None:
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise MilestoneError("the dashboard needs the web extra",
                             hint="pip install 'milestone[web]'") from None


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; any but 127.0.0.1/localhost/::1 needs the access token.")
@click.option("--open", "open_", is_flag=True, help="Open the dashboard in a browser.")
@click.option("--export", "export", is_flag=False, flag_value=EXPORT_DEFAULT, default=None,
              metavar="[DIR]", help="Write a static snapshot (index.html + assets/) to DIR "
                                    "(default .milestones/web-dashboard/) and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --export: print JSON.")
def dashboard(port: int, host: str, open_: bool, export: str | None, as_json: bool) -> None:
    """Serve the web dashboard and its JSON API (live), or --export a static snapshot.

    Pages: overview, one per milestone (board, dependency graph, burn-up and
    burn-down, timeline, forecast), agents, activity, analytics; the API under
    /api/ and its description at /openapi.json (README, "Dashboard"). On 127.0.0.1
    (the default) no token is needed; on any other host an access token is printed
    once at start-up (only its hash is kept) and every request needs it. Stop with
    Ctrl-C.

    \b
    Examples:
      milestone dashboard --open
      milestone dashboard --host 0.0.0.0 --port 9000
      milestone dashboard --export site/
    """
    _web()
    project = get_project()
    if export is not None:
        from ..web.data import Reader
        from ..web.pages import export as write

        out = (project.root / "web-dashboard" if export == EXPORT_DEFAULT
               else Path(export))
        files = write(Reader(project), out)
        say(f"Wrote {len(files)} files to {out}/ (open {out / 'index.html'})",
            {"dir": str(out), "files": files}, as_json, changed=False)
        return
    _serve(project, host, port, open_)


def _serve(project: object, host: str, port: int, open_: bool) -> None:
    import socket

    import uvicorn

    from ..web import security
    from ..web.app import create_app

    local = security.is_local(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets that say so (else a
    # keep-alive answer waits ~40 ms for a delayed ACK between its headers and its body)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)  # connections wait from now on, while the app starts
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror}",
                           hint="choose another --port (0: any free one)") from None
    port = sock.getsockname()[1]
    token_hash = None
    shown = "localhost" if host in ("127.0.0.1", "localhost") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    root = project.root  # type: ignore[attr-defined]
    if not local:
        token = security.new_token(root)
        token_hash = security.read_hash(root)
        click.echo(f"Access token (shown once; only its hash is kept): {token}")
        click.echo(f"Open {url}login?token={token}")
    click.echo(f"Dashboard on {url} (Ctrl-C stops it)")
    app = create_app(project, token_hash=token_hash, local=local)
    if open_:
        import threading
        import webbrowser

        threading.Timer(0.5, webbrowser.open, (url,)).start()
    # The event loop and the worker threads share the GIL: handed over every 1 ms
    # rather than 5, a request the loop could answer at once (a kept answer) does not
    # wait behind a worker's computation (p95 under 50 clients).
    sys.setswitchinterval(0.001)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])

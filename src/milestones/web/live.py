"""Live events: one watcher per server, fanned out to every SSE client.

The watcher is a thread with a Project (and, on postgres, a connection) of its own:
every ``POLL`` seconds (on postgres, only when a commit wakes it:
``Project.wait_for_events``) it asks
``Project.reading()`` for the log head (cheap: the L1 cache, keyed by the head, or the
database's head without its milestones; a hand edit is noticed and recorded there as
on any read), and when the head moved it
reads only the new events (``log_view(after=last)``) and hands each to every
subscriber's queue on the event loop. A client that falls too far behind is
dropped; it reconnects and resumes from its ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

POLL = 0.2
QUEUE = 2000


class Watcher:
    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.last = 0
        self.subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.last = self.reader.call(self.reader.head)[0]
        self._thread = threading.Thread(target=self._run, name="milestone-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for q in list(self.subscribers):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)

    def _run(self) -> None:
        p = self.reader.base.another()  # (on postgres a connection of its own: LISTEN)
        try:
            self._watch(p)
        finally:
            if self.reader.pooled is not None:
                self.reader.pooled.let_go(p)

    def _watch(self, p: Any) -> None:
        while not self._stop.is_set():
            try:
                # POLL seconds, or less: postgres wakes it at the commit (LISTEN/NOTIFY),
                # and says when nothing was committed (no read then)
                woke = p.wait_for_events(self.last, POLL)
                if self._stop.is_set():
                    break
                if not woke:
                    continue
                with p.reading() as st:  # the head only (the database reads no milestone)
                    head = st.last_event_id
                if head <= self.last:
                    continue
                rows = p.reveal(p.log_view(after=self.last)["events"])
            except Exception:  # a busy or damaged store: try again on the next tick
                self._stop.wait(POLL)
                continue
            if rows:
                self.last = int(rows[-1]["event_id"])
                assert self._loop is not None
                with contextlib.suppress(RuntimeError):  # the loop closed: the server stopped
                    self._loop.call_soon_threadsafe(self._publish, rows)

    def _publish(self, rows: list[dict[str, Any]]) -> None:
        for q in list(self.subscribers):
            for row in rows:
                try:
                    q.put_nowait(row)
                except asyncio.QueueFull:  # too slow: let it reconnect with Last-Event-ID
                    self.subscribers.discard(q)
                    break

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE)
        self.subscribers.add(q)
        return q


async def stream(watcher: Watcher, backlog: Any, after: int | None
                 ) -> AsyncIterator[dict[str, str]]:
    """The SSE messages of one client: what it missed after ``after`` (its
    ``Last-Event-ID``), then every new event; each with its event id as ``id``."""
    from ..ui import jsontext

    q = watcher.subscribe()
    try:
        sent = watcher.last if after is None else after
        if after is not None:
            async for row in backlog(after):
                sent = int(row["event_id"])
                yield {"id": str(sent), "data": jsontext.dumps(row)}
        while True:
            row = await q.get()
            if row is None:
                return
            eid = int(row["event_id"])
            if eid <= sent:
                continue
            sent = eid
            yield {"id": str(eid), "data": jsontext.dumps(row)}
    finally:
        watcher.subscribers.discard(q)

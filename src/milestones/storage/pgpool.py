"""A PostgreSQL connection pool for a long-running process (the dashboard, the
executor): psycopg-pool's ``ConnectionPool``, from which each thread's store borrows
a connection for a request or a step and gives it back.

A store made to borrow (``Pool.lend``) opens no connection of its own: its next
statement takes one from the pool (``PostgresStore.connector``), checked on the way
out (``ConnectionPool.check_connection``: a connection the server dropped, after a
restart, is replaced, never handed out; the first found dead has every idle one
looked at), and ``Pool.give_back`` returns it, with
any the store dropped as broken on the way (the pool opens their replacements).
A LISTEN connection is never pooled: a store that waits on NOTIFY keeps its own.

Imported by long-running processes only (psycopg_pool is imported here, when a
pool is made).
"""

from __future__ import annotations

from typing import Any

from . import pgconn
from .postgres import PostgresStore

CONNECT_TIMEOUT = 10.0  # seconds for the pool's first connections at start-up
BORROW_TIMEOUT = 10.0  # seconds a borrower waits (a server restarting: ~1-2 s)


class Pool:
    """``size`` connections to the URL a store would use (``url``: as
    ``PostgresStore.url``, None for the environment or the 0600 file); ``open()``
    once, ``close()`` when the process ends."""

    def __init__(self, url: str | None, size: int, *, name: str = "milestone") -> None:
        import logging

        from psycopg_pool import ConnectionPool

        # A dead connection dropped is the pool's job, not a line on the terminal
        # (Python's last-resort handler would print psycopg.pool's warnings).
        log = logging.getLogger("psycopg.pool")
        if not log.handlers:
            log.addHandler(logging.NullHandler())
        url = pgconn.resolve_url(url)
        self.where = pgconn.redact(url)
        self.size = size
        self._pool: Any = ConnectionPool(
            url, min_size=size, max_size=size, open=False, name=name,
            check=self._check, timeout=BORROW_TIMEOUT,
            kwargs={"autocommit": True, "connect_timeout": 10, "application_name": name})

    def _check(self, conn: Any) -> None:
        """``ConnectionPool.check_connection`` (one empty statement) before a connection
        is handed out. When it fails, the server has most likely restarted and every
        idle connection is as dead: they are all looked at now (``check()``), the dead
        replaced at once. (Left to the pool, each would be found at a borrow, the
        borrower backing off 1, 2, 4 ... s between them: 10 s gone by the fifth.)"""
        from psycopg_pool import ConnectionPool

        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            self._pool.check()
            raise

    @property
    def closed(self) -> bool:
        return bool(self._pool.closed)

    def open(self) -> None:
        """Connect (all ``size``), or fail with a ``StorageError`` naming the reason."""
        import psycopg

        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            self._pool.close()
            raise pgconn.failure(exc, self.where) from None

    def close(self) -> None:
        self._pool.close()

    def lend(self, store: PostgresStore) -> None:
        """Make ``store`` borrow its connections from this pool."""
        store.connector = Lender(self)

    def give_back(self, store: PostgresStore) -> None:
        """Return what ``store`` borrowed since it last gave back (nothing if it
        borrowed nothing, or is no borrower); its next statement borrows again."""
        lender = store.connector
        if isinstance(lender, Lender):
            store._conn = None  # (connect() opens, that is borrows, the next one)
            lender.give_back()

    def borrow(self) -> Any:
        """A checked psycopg connection of the pool (a ``StorageError`` when none
        comes within ``BORROW_TIMEOUT``)."""
        import psycopg

        try:
            return self._pool.getconn()
        except psycopg.Error as exc:
            raise pgconn.failure(exc, self.where) from None

    def put(self, raw: Any) -> None:
        """Take back a connection ``borrow`` gave (a broken one is replaced)."""
        self._pool.putconn(raw)

    def stats(self) -> dict[str, int]:
        """psycopg-pool's counters (``pool_size``, ``connections_lost``, ...)."""
        return dict(self._pool.get_stats())


class Lender:
    """A borrowing store's ``connector``: what it borrowed, until it gives it back."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.lent: list[Any] = []

    def __call__(self, url: str) -> pgconn.PgConnection:
        raw = self.pool.borrow()  # (the pool's URL is the store's: resolved alike)
        self.lent.append(raw)
        return pgconn.PgConnection.around(raw, self.pool.where)

    def give_back(self) -> None:
        lent, self.lent = self.lent, []
        for raw in lent:  # a broken one is dropped by the pool and replaced
            self.pool.put(raw)


__all__ = ["Lender", "Pool"]

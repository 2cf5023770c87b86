"""Connections for a long-running process's threads (the dashboard's workers, the
executor's writer and services).

Each thread keeps a ``Project`` of its own (a store object is not shared across
threads). On the PostgreSQL backend their stores borrow from one connection pool
(``storage.pgpool``): a request or a step takes a connection for its read or its
transaction and ``give_back`` returns it, so ``size`` connections serve the threads
and a connection the server dropped is replaced, not handed out. On the other
backends each Project opens its files or database itself, as before: ``another``
is ``Project.another`` and ``give_back`` nothing. A thread that waits on NOTIFY
(``Project.wait_for_events``) keeps a connection of its own: ``Project.another``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import Project


class Pooled:
    """Projects over ``project``'s store that share a pool of ``size`` connections
    on postgres; ``open()`` once, ``close()`` when the process ends (``with``)."""

    def __init__(self, project: Project, size: int) -> None:
        self.project = project
        self.size = size
        self.pool: Any = None  # storage.pgpool.Pool, once open on postgres

    def open(self) -> None:
        """Connect the pool (postgres; a ``StorageError`` when the server cannot be
        reached); on the other backends, nothing."""
        if self.pool is None and self.project.store.backend == "postgres":
            from ..storage.pgpool import Pool

            pool = Pool(getattr(self.project.store, "url", None), self.size)
            pool.open()
            self.pool = pool
            # What another() reads of it (the session), read now; then the project's
            # own connection is closed: the threads' Projects borrow instead.
            _session = self.project.session_id
            self.let_go(self.project)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def another(self) -> Project:
        """A Project for the calling thread, its store borrowing from the pool."""
        p = self.project.another()
        if self.pool is not None and p.store.backend == "postgres":
            self.pool.lend(p.store)
        return p

    def give_back(self, p: Project) -> None:
        """The end of ``p``'s request or step: its connection back to the pool."""
        if self.pool is not None and p.store.backend == "postgres":
            self.pool.give_back(p.store)

    def let_go(self, p: Project) -> None:
        """``p`` is done with: a borrowed connection given back, one of its own closed."""
        self.give_back(p)
        close = getattr(p.store, "close", None)  # (the database stores have one)
        if close is not None:
            close()

    def __enter__(self) -> Pooled:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The PostgreSQL backend's connection: where its URL comes from, and a connection
that speaks the SQL the database backends share (``sqlquery.Dialect``).

The URL (``postgresql://user:password@host:port/dbname``) is, first found:
``--url`` on the command that takes one (``storage migrate``, ``init``), the
``MILESTONE_DATABASE_URL`` environment variable, or the first line of
``$XDG_CONFIG_HOME/milestone/database-url`` (``~/.config/...``), a file outside the
project that must be readable by its owner only (0600). It never goes into
``.milestones/``: ``config/storage-backend.txt`` says ``postgres`` and nothing more.

A command connects through libpq itself (``libpq``: ctypes, no psycopg imported);
``PgConnection`` is psycopg's: for what opens its connections through psycopg
(a long-running process's pool), and for ``MILESTONE_PG_DRIVER=psycopg``. Neither
is imported before a PostgreSQL store first connects: no other command pays for it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import Conflict, StorageError
from .sqlquery import PostgresDialect

URL_ENV = "MILESTONE_DATABASE_URL"
RETRY_HINT = "nothing of this command was written; retry it (see `milestone doctor`)"


def url_file() -> Path:
    """``$XDG_CONFIG_HOME/milestone/database-url`` (default ``~/.config/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "milestone" / "database-url"


def redact(url: str) -> str:
    """The URL without its password (what messages and reports show)."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def resolve_url(explicit: str | None = None) -> str:
    """The PostgreSQL URL: ``explicit``, the environment, or the 0600 file."""
    if explicit:
        return check_url(explicit)
    env = os.environ.get(URL_ENV, "").strip()
    if env:
        return check_url(env)
    path = url_file()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise StorageError(f"no PostgreSQL URL: set {URL_ENV}, or write it to {path} (0600)",
                           hint="or pass --url postgresql://... to the command") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StorageError(f"{path} is readable by others (mode {stat.S_IMODE(mode):o}): "
                           "refusing a password file that is not 0600",
                           hint=f"chmod 600 {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"cannot read {path}: {exc}", hint=f"chmod 600 {path}") from None
    return check_url(lines[0].strip() if lines else "")


def check_url(url: str) -> str:
    if not re.match(r"^postgres(ql)?://", url):
        raise StorageError(f"not a PostgreSQL URL: {redact(url)!r}",
                           hint="use postgresql://user:password@host:port/dbname")
    return url


def save_url(url: str) -> Path:
    """Keep ``url`` in ``url_file()`` (0600, written before anything is put in it)."""
    path = url_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (check_url(url) + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    return path


def use_database_url(url: str) -> Path:
    """``--url``: the URL this process uses, kept in ``url_file()`` (0600) for the
    commands after it; returns that file's path."""
    os.environ[URL_ENV] = check_url(url)
    return save_url(url)


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled), outside quotes."""
    out = []
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


# Connecting again after a server that is restarting (or not up yet) refused: the
# pauses, 1.7 s in all, before the command fails with exit 8. Nothing has been read or
# written yet, so any command may; a fault later in a command is not retried here
# (README, "PostgreSQL": what is retried and what is not).
CONNECT_RETRY = (0.2, 0.5, 1.0)
_TRANSIENT = ("starting up", "shutting down", "in recovery", "connection refused",
              "could not connect", "server closed the connection", "timeout expired",
              "no such file or directory")


def transient(exc: Exception) -> bool:
    """A connection refused for a while only (the server restarting), not for good
    (a wrong password, no such database)."""
    text = str(exc).lower()
    return any(t in text for t in _TRANSIENT)


class DriverError(Exception):
    """An error of the libpq connection (``libpq``): the server's message and its
    SQLSTATE (None when there is none: the connection failed or was lost)."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


# The SQLSTATE classes psycopg raises as OperationalError (``psycopg.errors``): the
# connection, the server's resources or state, an operator's intervention.
_OPERATIONAL = ("08", "27", "28", "2F", "38", "39", "3B", "40", "53", "54", "55", "57", "58",
                "F", "H")


def failure(exc: Exception, where: str) -> StorageError | Conflict:
    """A driver's error as one of ours: a lock that timed out is a Conflict (exit 7), a
    lost connection or anything else a StorageError (exit 8) naming the reason."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, DriverError):
        state = exc.sqlstate
        operational = state is None or state.startswith(_OPERATIONAL)
    else:
        import psycopg

        state = getattr(exc, "sqlstate", None)
        operational = isinstance(exc, psycopg.OperationalError)
    if state == "55P03":  # lock_not_available
        return Conflict(f"the project is busy: another milestone command holds {where}",
                        hint="retry, or raise MILESTONE_LOCK_TIMEOUT")
    if operational:
        return StorageError(f"the PostgreSQL connection to {where} failed: {text}",
                            hint=RETRY_HINT)
    return StorageError(f"{where}: {text}", hint=RETRY_HINT)


DRIVER_ENV = "MILESTONE_PG_DRIVER"


def connect(url: str, *, application: str = "milestone") -> Any:
    """A connection to ``url``: libpq's own (``libpq``), unless ``MILESTONE_PG_DRIVER``
    says ``psycopg``."""
    if os.environ.get(DRIVER_ENV, "").strip().lower() == "psycopg":
        return PgConnection(url, application=application)
    from .libpq import LibpqConnection

    return LibpqConnection(url, application=application)


class PgConnection:
    """A psycopg connection (autocommit: transactions are opened by the store) with
    sqlite3's ``execute``/``executemany`` and ``?`` placeholders."""

    dialect = PostgresDialect()

    def __init__(self, url: str, *, application: str = "milestone") -> None:
        import psycopg

        self.where = redact(url)
        for pause in (*CONNECT_RETRY, None):
            try:
                self.raw = psycopg.connect(url, autocommit=True, connect_timeout=10,
                                           application_name=application)
                return
            except psycopg.Error as exc:
                if pause is None or not transient(exc):
                    raise failure(exc, self.where) from None
            time.sleep(pause)

    @classmethod
    def around(cls, raw: Any, where: str) -> PgConnection:
        """One over a psycopg connection opened elsewhere (autocommit: a pool's,
        ``pgpool``); ``where`` names it in messages (the URL without its password)."""
        conn = cls.__new__(cls)
        conn.raw, conn.where = raw, where
        return conn

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.broken

    def execute(self, sql: str, parameters: Any = None, /) -> Any:
        import psycopg

        try:
            if parameters:
                return self.raw.execute(to_pyformat(sql), tuple(parameters))
            return self.raw.execute(sql)  # no parameters: no placeholder is read
        except psycopg.Error as exc:
            raise failure(exc, self.where) from None

    def executemany(self, sql: str, parameters: Any, /) -> None:
        import psycopg

        rows = [tuple(p) for p in parameters]
        if not rows:
            return
        try:
            with self.raw.cursor() as cur:
                cur.executemany(to_pyformat(sql), rows)
        except psycopg.Error as exc:
            raise failure(exc, self.where) from None

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[None]:
        """Statements sent without waiting for each one's answer (psycopg's pipeline
        mode): a read's rows are waited for when fetched, the rest at the end. An
        error of any of them is one of ours (``failure``), raised there."""
        import psycopg

        try:
            with self.raw.pipeline():
                yield
        except psycopg.Error as exc:
            raise failure(exc, self.where) from None

    def notifies(self, timeout: float) -> list[str]:
        """The payloads of the notifications received within ``timeout`` seconds (the
        first ones: it returns once there are some), ``[]`` when none came."""
        import psycopg

        try:
            return [n.payload for n in self.raw.notifies(timeout=timeout, stop_after=1)]
        except psycopg.Error as exc:  # the connection went away while waiting
            raise failure(exc, self.where) from None

    def rollback_quietly(self) -> None:
        """End a transaction that failed (nothing of it stays); the connection may be gone."""
        import psycopg

        try:
            if not self.broken and self.in_transaction:
                self.raw.execute("ROLLBACK")
        except psycopg.Error:
            self.close()

    def close(self) -> None:
        self.raw.close()

"""The short-lived commands' PostgreSQL connection: libpq itself, through ``ctypes``.

``import psycopg`` costs a command 250-350 ms (logging, asyncio, ssl, its type
system ...) before it sends a byte; the few libpq calls the store makes cost ~25 ms
to load and under a millisecond each. ``LibpqConnection`` speaks what
``pgconn.PgConnection`` speaks (``execute``, ``executemany``, ``pipeline``,
``in_transaction``, ``broken``, ``rollback_quietly``, ``close``, ``notifies``), with
the values psycopg gives for the column types our schema and queries use, and the
same errors (``pgconn.failure``). psycopg's ``pgconn.PgConnection`` stays for what
opens its connections through psycopg, and for ``MILESTONE_PG_DRIVER=psycopg``.

The libpq loaded is psycopg_binary's own (``psycopg_binary.libs/libpq-*.so*``, pinned
with it), found without importing it; else the system's ``libpq.so``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import time
from collections.abc import Iterator
from typing import Any

from ..errors import StorageError
from .pgconn import CONNECT_RETRY, DriverError, failure, redact, transient
from .pgtypes import LOADERS, decode, param, to_numbered
from .sqlquery import PostgresDialect

# libpq's enums (libpq-fe.h)
CONNECTION_OK = 0
PGRES_EMPTY_QUERY, PGRES_COMMAND_OK, PGRES_TUPLES_OK = 0, 1, 2
PGRES_PIPELINE_SYNC = 10
PQTRANS_IDLE = 0
PG_DIAG_SQLSTATE = ord("C")
PG_DIAG_MESSAGE_PRIMARY = ord("M")

_P = ctypes.c_void_p

# Statements of a pipeline sent before their answers are read: the answers (a few dozen
# bytes each) fit in the sockets' buffers, so the server never waits for us to read
# while we wait for it to take what we send (the connection is in blocking mode).
PIPELINE_BATCH = 256


class _Notify(ctypes.Structure):
    _fields_ = (("relname", ctypes.c_char_p), ("be_pid", ctypes.c_int),
                ("extra", ctypes.c_char_p), ("next", _P))


# name: (result type, argument types)
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "PQconnectdbParams": (_P, [ctypes.POINTER(ctypes.c_char_p),
                               ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]),
    "PQstatus": (ctypes.c_int, [_P]),
    "PQtransactionStatus": (ctypes.c_int, [_P]),
    "PQerrorMessage": (ctypes.c_char_p, [_P]),
    "PQfinish": (None, [_P]),
    "PQsendQuery": (ctypes.c_int, [_P, ctypes.c_char_p]),
    "PQsendQueryParams": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_int,
                                         ctypes.POINTER(ctypes.c_uint),
                                         ctypes.POINTER(ctypes.c_char_p),
                                         ctypes.POINTER(ctypes.c_int),
                                         ctypes.POINTER(ctypes.c_int), ctypes.c_int]),
    "PQgetResult": (_P, [_P]),
    "PQresultStatus": (ctypes.c_int, [_P]),
    "PQresultErrorField": (ctypes.c_char_p, [_P, ctypes.c_int]),
    "PQresultErrorMessage": (ctypes.c_char_p, [_P]),
    "PQclear": (None, [_P]),
    "PQntuples": (ctypes.c_int, [_P]),
    "PQnfields": (ctypes.c_int, [_P]),
    "PQfname": (ctypes.c_char_p, [_P, ctypes.c_int]),
    "PQftype": (ctypes.c_uint, [_P, ctypes.c_int]),
    "PQgetvalue": (ctypes.c_char_p, [_P, ctypes.c_int, ctypes.c_int]),
    "PQgetisnull": (ctypes.c_int, [_P, ctypes.c_int, ctypes.c_int]),
    "PQcmdTuples": (ctypes.c_char_p, [_P]),
    "PQsocket": (ctypes.c_int, [_P]),
    "PQconsumeInput": (ctypes.c_int, [_P]),
    "PQnotifies": (ctypes.POINTER(_Notify), [_P]),
    "PQfreemem": (None, [_P]),
    "PQsetNoticeProcessor": (_P, [_P, _P, _P]),
    "PQisBusy": (ctypes.c_int, [_P]),
    "PQflush": (ctypes.c_int, [_P]),
    "PQgetCancel": (_P, [_P]),
    "PQcancel": (ctypes.c_int, [_P, ctypes.c_char_p, ctypes.c_int]),
    "PQfreeCancel": (None, [_P]),
}
# libpq 14's pipeline mode (what psycopg's pipeline() and executemany use): without it
# (an older system libpq), statements are sent one after the other.
_PIPELINE: dict[str, tuple[Any, list[Any]]] = {
    "PQenterPipelineMode": (ctypes.c_int, [_P]),
    "PQexitPipelineMode": (ctypes.c_int, [_P]),
    "PQpipelineSync": (ctypes.c_int, [_P]),
    "PQsendFlushRequest": (ctypes.c_int, [_P]),
}

# A server's notices (``NOTICE: ... already exists, skipping``) are not the user's
# business: psycopg logs them where nobody looks, libpq would print them on stderr.
_IGNORE_NOTICE = ctypes.CFUNCTYPE(None, _P, ctypes.c_char_p)(lambda arg, message: None)


def library_path() -> str | None:
    """psycopg_binary's bundled libpq (its package not imported), else the system's."""
    import importlib.util

    spec = importlib.util.find_spec("psycopg_binary")
    for folder in (spec and spec.submodule_search_locations) or ():
        libs = os.path.join(os.path.dirname(folder), "psycopg_binary.libs")
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(libs)):
                if name.startswith("libpq-") and ".so" in name:
                    return os.path.join(libs, name)
    import ctypes.util  # (slow to import: only when there is no bundled libpq)

    return ctypes.util.find_library("pq")


@functools.cache
def load() -> Any:
    """libpq, its functions typed (a StorageError, exit 8, when there is none)."""
    path = library_path()
    try:
        if path is None:
            raise OSError("not found")
        lib: Any = ctypes.CDLL(path)
    except OSError as exc:
        raise StorageError(f"cannot load libpq, PostgreSQL's client library ({exc})",
                           hint="reinstall milestone (it depends on psycopg[binary]), "
                                "or install libpq (apt install libpq5)") from None
    for name, (restype, argtypes) in (_SIGNATURES | _PIPELINE).items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if name in _PIPELINE:
                lib.pipelines = False
                continue
            raise StorageError(f"{path} is not a libpq of version 14 or later (it has no "
                               f"{name})", hint="install libpq5 14 or later") from None
        fn.restype, fn.argtypes = restype, argtypes
    lib.pipelines = getattr(lib, "pipelines", True)
    return lib


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode("utf-8", "replace").strip()


Result = tuple[list[tuple[Any, ...]], "list[tuple[Any, ...]] | None", int]


class Cursor:
    """A statement's results, read when it ran: the first's rows (``fetchone``,
    ``fetchall``, iteration), ``rowcount`` and ``description``; ``nextset()`` moves
    to the next statement's, as psycopg's cursor does."""

    def __init__(self, results: list[Result]) -> None:
        self._results = results or [([], None, -1)]
        self._at = 0
        self._next = 0

    @property
    def description(self) -> list[tuple[Any, ...]] | None:
        return self._results[self._at][1]

    @property
    def rowcount(self) -> int:
        return self._results[self._at][2]

    def nextset(self) -> bool | None:
        if self._at + 1 >= len(self._results):
            return None
        self._at += 1
        self._next = 0
        return True

    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self._results[self._at][0]
        if self._next >= len(rows):
            return None
        self._next += 1
        return rows[self._next - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows = self._results[self._at][0]
        rest, self._next = rows[self._next:], len(rows)
        return rest

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())


class Pending(Cursor):
    """A statement sent inside ``pipeline()``: its answer is read when first asked
    for (with those of the statements sent before it), or when the pipeline ends."""

    def __init__(self, conn: LibpqConnection) -> None:
        super().__init__([])
        self._conn: LibpqConnection | None = conn

    def _ready(self) -> None:
        if self._conn is not None:
            self._conn._collect(self)

    @property
    def description(self) -> list[tuple[Any, ...]] | None:
        self._ready()
        return super().description

    @property
    def rowcount(self) -> int:
        self._ready()
        return super().rowcount

    def nextset(self) -> bool | None:
        self._ready()
        return super().nextset()

    def fetchone(self) -> tuple[Any, ...] | None:
        self._ready()
        return super().fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        self._ready()
        return super().fetchall()


class LibpqConnection:
    """A libpq connection (autocommit: transactions are opened by the store) with
    sqlite3's ``execute``/``executemany`` and ``?`` placeholders."""

    dialect = PostgresDialect()
    _pg: Any = None

    def __init__(self, url: str, *, application: str = "milestone") -> None:
        self.where = redact(url)
        self._lib = load()
        keys = (ctypes.c_char_p * 5)(b"dbname", b"connect_timeout", b"application_name",
                                     b"client_encoding", None)
        values = (ctypes.c_char_p * 5)(url.encode("utf-8"), b"10",
                                       application.encode("utf-8"), b"UTF8", None)
        for pause in (*CONNECT_RETRY, None):
            try:
                self._pg = self._attempt(keys, values)
                return
            except DriverError as exc:
                if pause is None or not transient(exc):
                    raise failure(exc, self.where) from None
            time.sleep(pause)

    def _attempt(self, keys: Any, values: Any) -> Any:
        """One try at connecting: the PGconn (its notices not printed), or why not."""
        lib = self._lib
        pg = lib.PQconnectdbParams(keys, values, 1)
        if pg and lib.PQstatus(pg) == CONNECTION_OK:
            lib.PQsetNoticeProcessor(pg, _IGNORE_NOTICE, None)
            return pg
        reason = _text(lib.PQerrorMessage(pg)) if pg else "out of memory"
        lib.PQfinish(pg)
        raise DriverError(f"connection failed: {reason}", None)

    @property
    def in_transaction(self) -> bool:
        return self.broken or self._lib.PQtransactionStatus(self._pg) != PQTRANS_IDLE

    @property
    def broken(self) -> bool:
        return self._pg is None or self._lib.PQstatus(self._pg) != CONNECTION_OK

    def _lost(self) -> DriverError:
        reason = _text(self._lib.PQerrorMessage(self._pg)) if self._pg else ""
        return DriverError(reason or "the connection is closed", None)

    def _result(self) -> Any:
        """The next PGresult (None after each statement's last): waited for in
        ``select``, so that Ctrl-C interrupts the wait; the statement is then
        cancelled on the server (as psycopg does) before KeyboardInterrupt goes on."""
        lib, pg = self._lib, self._pg
        try:
            lib.PQflush(pg)  # (what a pipeline queued: sent before its answer is awaited)
            while lib.PQisBusy(pg):
                # (a second at most: a Ctrl-C the kernel handed to another thread is
                # raised here at the next look, not when the statement ends)
                select.select([lib.PQsocket(pg)], [], [], 1.0)
                if not lib.PQconsumeInput(pg):
                    break  # (lost: PQgetResult says so)
        except BaseException:
            self._cancel()
            raise
        return lib.PQgetResult(pg)

    def _cancel(self) -> None:
        """Ask the server to stop the statement running, read what is left of it."""
        lib, pg = self._lib, self._pg
        cancel = lib.PQgetCancel(pg)
        if cancel:
            lib.PQcancel(cancel, ctypes.create_string_buffer(256), 256)
            lib.PQfreeCancel(cancel)
        with contextlib.suppress(Exception):
            while res := lib.PQgetResult(pg):
                lib.PQclear(res)

    def _run(self, sent: int) -> Cursor:
        """Every result of what was just sent (each PGresult cleared once read); the
        first error among them raised when all are in."""
        lib, pg = self._lib, self._pg
        if not sent:
            raise failure(self._lost(), self.where)
        results = []
        error: DriverError | None = None
        while res := self._result():
            try:
                status = lib.PQresultStatus(res)
                if status in (PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY):
                    if error is None:
                        results.append(_read(lib, res, status))
                elif error is None:
                    error = _error(lib, pg, res)
            finally:
                lib.PQclear(res)
        if error is None and self.broken:
            error = self._lost()
        if error is not None:
            raise failure(error, self.where)
        return Cursor(results)

    def execute(self, sql: str, parameters: Any = None, /) -> Cursor:
        if self._pg is None:
            raise failure(self._lost(), self.where)
        if self._piped is not None:  # inside pipeline(): sent, its answer read later
            if not self._send(to_numbered(sql).encode("utf-8"),
                              self._arrays(parameters or ())):
                raise failure(self._lost(), self.where)
            pending = Pending(self)
            self._piped.append(pending)
            if len(self._piped) >= PIPELINE_BATCH:  # (their answers kept few: below)
                self._collect(pending)
            return pending
        if not parameters:  # no parameters: no placeholder is read, and several
            return self._run(self._lib.PQsendQuery(self._pg, sql.encode("utf-8")))
        return self._run(self._send(to_numbered(sql).encode("utf-8"),
                                    self._arrays(parameters)))

    def _arrays(self, parameters: Any) -> tuple[Any, ...]:
        """Parameters as PQsendQueryParams takes them: count, types, values, lengths,
        formats."""
        try:
            params = [param(p) for p in parameters]
        except TypeError as exc:
            raise StorageError(f"{self.where}: {exc}") from None
        n = len(params)
        types = (ctypes.c_uint * n)(*[p[0] for p in params])
        values = (ctypes.c_char_p * n)(*[p[1] for p in params])
        if not any(p[2] for p in params):  # all text: no lengths, no formats
            return n, types, values, None, None
        return (n, types, values,
                (ctypes.c_int * n)(*[len(p[1]) if p[1] is not None else 0 for p in params]),
                (ctypes.c_int * n)(*[p[2] for p in params]))

    def _send(self, sql: bytes, arrays: tuple[Any, ...]) -> int:
        return int(self._lib.PQsendQueryParams(self._pg, sql, *arrays, 0))

    def executemany(self, sql: str, parameters: Any, /) -> None:
        """``sql`` once per row of ``parameters``, in libpq's pipeline mode: a batch of
        rows sent at once, their answers read after (one round trip a batch, as
        psycopg's ``executemany`` does); the first error raised once the batch is in."""
        rows = [tuple(p) for p in parameters]
        if len(rows) <= 1 or self._pg is None or self._piped is not None or not (
                self._lib.pipelines):
            for row in rows:
                self.execute(sql, row)
            return
        lib, pg = self._lib, self._pg
        text = to_numbered(sql).encode("utf-8")
        for start in range(0, len(rows), PIPELINE_BATCH):
            batch = [self._arrays(row) for row in rows[start:start + PIPELINE_BATCH]]
            if not lib.PQenterPipelineMode(pg):
                raise failure(self._lost(), self.where)
            sent = 0
            for arrays in batch:
                if not self._send(text, arrays):
                    break
                sent += 1
            lib.PQpipelineSync(pg)
            error = self._pipeline_results(sent)
            lib.PQexitPipelineMode(pg)
            if error is None and (sent < len(batch) or self.broken):
                error = self._lost()
            if error is not None:
                raise failure(error, self.where)

    def _pipeline_results(self, sent: int) -> DriverError | None:
        """Read (and clear) the results of ``sent`` statements and their sync: the
        first error among them, if any."""
        lib, pg = self._lib, self._pg
        error: DriverError | None = None
        for _ in range(sent + 1):
            while res := self._result():
                status = lib.PQresultStatus(res)
                if error is None and status not in (PGRES_COMMAND_OK, PGRES_TUPLES_OK,
                                                    PGRES_PIPELINE_SYNC):
                    error = _error(lib, pg, res)
                lib.PQclear(res)
                if status == PGRES_PIPELINE_SYNC:
                    return error
        return error

    _piped: list[Pending] | None = None  # inside pipeline(): sent, answers not read

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[None]:
        """Statements sent without waiting for each one's answer (libpq's pipeline
        mode, as psycopg's pipeline()): a read's rows are waited for when fetched, the
        rest at the end. An error of any of them is one of ours (``failure``), raised
        there; the statements after it are not run."""
        if self._piped is not None or self._pg is None or not self._lib.pipelines:
            yield
            return
        if not self._lib.PQenterPipelineMode(self._pg):
            raise failure(self._lost(), self.where)
        self._piped = []
        try:
            yield
        except BaseException:
            with contextlib.suppress(StorageError):
                self._end_pipeline()
            raise
        self._end_pipeline()

    def _collect(self, upto: Pending | None) -> None:
        """Read the answers of the statements sent, in order, up to ``upto`` (all of
        them and the pipeline's end with None); the first error raised."""
        lib, pg, piped = self._lib, self._pg, self._piped or []
        if upto is None:
            lib.PQpipelineSync(pg)
        else:
            lib.PQsendFlushRequest(pg)
        error = None
        while piped:
            pending = piped.pop(0)
            pending._conn = None
            results = []
            while res := self._result():
                status = lib.PQresultStatus(res)
                if status in (PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY):
                    results.append(_read(lib, res, status))
                elif error is None:
                    error = _error(lib, pg, res)  # (those after it: PIPELINE_ABORTED)
                lib.PQclear(res)
            pending._results = results or pending._results
            if pending is upto:
                break
        if upto is None:  # the sync's own result
            while res := self._result():
                status = lib.PQresultStatus(res)
                lib.PQclear(res)
                if status == PGRES_PIPELINE_SYNC:
                    break
        if error is None and self.broken:
            error = self._lost()
        if error is not None:
            raise failure(error, self.where)

    def _end_pipeline(self) -> None:
        try:
            self._collect(None)
        finally:
            self._piped = None
            if self._pg is not None:
                self._lib.PQexitPipelineMode(self._pg)

    def notifies(self, timeout: float) -> list[str]:
        """The payloads of the notifications received within ``timeout`` seconds (the
        first ones: it returns once there are some), ``[]`` when none came."""
        lib, pg = self._lib, self._pg
        deadline = time.monotonic() + timeout
        while True:
            if pg is None or not lib.PQconsumeInput(pg):
                raise failure(self._lost(), self.where)
            payloads = []
            while note := lib.PQnotifies(pg):
                payloads.append(_text(note.contents.extra))
                lib.PQfreemem(ctypes.cast(note, _P))
            left = deadline - time.monotonic()
            if payloads or left <= 0:
                return payloads
            with contextlib.suppress(InterruptedError):
                select.select([lib.PQsocket(pg)], [], [], left)

    def rollback_quietly(self) -> None:
        """End a transaction that failed (nothing of it stays); the connection may be gone."""
        try:
            if not self.broken and self.in_transaction:
                self.execute("ROLLBACK")
        except StorageError:
            self.close()

    def close(self) -> None:
        pg, self._pg = self._pg, None
        if pg:
            self._lib.PQfinish(pg)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _error(lib: Any, pg: Any, res: Any) -> DriverError:
    """A failed result's message and SQLSTATE."""
    state = lib.PQresultErrorField(res, PG_DIAG_SQLSTATE)
    text = lib.PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) or lib.PQresultErrorMessage(res)
    return DriverError(_text(text) or _text(lib.PQerrorMessage(pg)),
                       state.decode("ascii") if state else None)


def _read(lib: Any, res: int, status: int) -> Result:
    """A result's rows (converted as psycopg does), description and row count."""
    count = lib.PQcmdTuples(res)
    rowcount = int(count) if count else -1
    if status != PGRES_TUPLES_OK:
        return [], None, rowcount
    nfields = lib.PQnfields(res)
    types = [lib.PQftype(res, c) for c in range(nfields)]
    description = [(decode(lib.PQfname(res, c)), types[c], None, None, None, None, None)
                   for c in range(nfields)]
    loaders = [LOADERS.get(t, decode) for t in types]
    value, isnull = lib.PQgetvalue, lib.PQgetisnull
    columns = list(enumerate(loaders))
    rows = [tuple([None if not (v := value(res, r, c)) and isnull(res, r, c) else load_(v)
                   for c, load_ in columns])
            for r in range(lib.PQntuples(res))]
    return rows, description, rowcount


__all__ = ["Cursor", "LibpqConnection", "load"]

"""One throwaway PostgreSQL server per test session (pytest-postgresql's executor, a
free port, a temp dir, no system service), and a fresh database per test cloned from
a template that already holds the schema.

``initdb`` is found through ``pg_config --bindir`` or ``/usr/lib/postgresql/*/bin``;
without one the tests that need a server skip, saying so. ``initdb`` refuses to run
as root: when the tests run as root (CI containers), the server runs as the
``postgres`` user (``runuser -u postgres -- pg_ctl ...``, through a two-line wrapper
the executor is given), in a temp dir that user owns. The server runs with
``fsync=off``: a test server's data need not survive a power cut.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

SERVER_OPTIONS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                  "-c max_connections=300")


def find_bindir() -> Path | None:
    """The directory holding ``pg_ctl`` and ``initdb`` (None when there is none)."""
    candidates = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            candidates.append(subprocess.run([pg_config, "--bindir"], capture_output=True,
                                             text=True, check=True).stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(Path(p).parent.name), reverse=True)
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


class Server:
    """A running test server: ``url(db)``, ``new_database()``, ``restart()``, ``stop()``."""

    def __init__(self, bindir: Path) -> None:
        from port_for import get_port
        from pytest_postgresql.executors import PostgreSQLExecutor

        self.dir = Path(tempfile.mkdtemp(prefix="milestone-pg-"))
        pg_ctl = bindir / "pg_ctl"
        if os.geteuid() == 0:  # initdb refuses root: the server runs as `postgres`
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self.dir.chmod(0o755)
            wrapper = self.dir / "pg_ctl"
            wrapper.write_text(f'#!/bin/sh\nexec runuser -u postgres -- "{pg_ctl}" "$@"\n')
            wrapper.chmod(0o755)
            pg_ctl = wrapper
        self.pg_ctl = pg_ctl
        self.port = get_port(None)
        self.executor = PostgreSQLExecutor(
            executable=str(pg_ctl), host="127.0.0.1", port=self.port,
            datadir=str(self.dir / "data"), unixsocketdir=str(self.dir),
            logfile=str(self.dir / "server.log"), startparams="-w", dbname="postgres",
            postgres_options=" " + SERVER_OPTIONS)
        self.executor.start()
        self.wait_ready()
        self.counter = itertools.count(1)
        self.template: str | None = None

    def wait_ready(self, seconds: float = 60.0) -> None:
        """Until the server takes connections (it listens a moment before it does)."""
        import psycopg

        deadline = time.monotonic() + seconds
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)  # names made here only: no input reaches it

    def new_database(self, *, schema: bool = True) -> str:
        """A fresh database's URL (from the template holding the schema, or empty)."""
        name = f"t{os.getpid()}_{next(self.counter)}"
        if schema and self.template is None:
            template = f"template_{os.getpid()}"
            self.admin(f"CREATE DATABASE {template}")
            from milestones.storage.postgres import PostgresStore

            store = PostgresStore(self.dir / "unused", self.url(template))
            store.open_schema()
            store.close()
            self.template = template
        self.admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {self.template}" if schema
                                                 else ""))
        return self.url(name)

    def restart(self) -> None:
        subprocess.run([str(self.pg_ctl), "restart", "-D", str(self.dir / "data"), "-w",
                        "-m", "fast", "-l", str(self.dir / "server.log"), "-o",
                        f"-F -p {self.port} -c unix_socket_directories='{self.dir}' "
                        + SERVER_OPTIONS], check=True, capture_output=True, timeout=120)
        self.wait_ready()

    def stop(self) -> None:
        try:
            self.executor.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def start() -> Any:
    """A started ``Server``, or the reason there cannot be one."""
    bindir = find_bindir()
    if bindir is None:
        return "no PostgreSQL initdb found (pg_config --bindir, /usr/lib/postgresql/*/bin)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run initdb as"
    return Server(bindir)

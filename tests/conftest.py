"""Shared fixtures: a fresh project per test, a CLI runner that returns parsed JSON."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from milestones.project import Project
from milestones.storage.memory import MemoryStore

# A suite started in the background by a non-interactive shell inherits SIGINT ignored,
# and so would every command the tests start (an ignored signal stays ignored across
# exec): the Ctrl-C tests would then wait out their timeouts. Ctrl-C is theirs to send.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MILESTONE_USER", "tester@example.com")
    monkeypatch.setenv("MILESTONE_SESSION_ID", "test-session")
    monkeypatch.delenv("MILESTONE_DIR", raising=False)
    monkeypatch.delenv("MILESTONE_UI", raising=False)
    monkeypatch.delenv("MILESTONE_DEBUG", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    # execute's approval key lives in $XDG_STATE_HOME/milestone/: never the real home's
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path.parent / f"{tmp_path.name}-state"))
    # the PostgreSQL URL file (storage.pgconn.url_file): never the real home's either
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path.parent / f"{tmp_path.name}-config"))
    monkeypatch.delenv("MILESTONE_DATABASE_URL", raising=False)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    Project.init(tmp_path)
    return tmp_path


BACKENDS = ["file", "hybrid", "database", "memory", "postgres"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """The session's throwaway PostgreSQL server (tests/pgserver.py), started on first
    use; a test that asks for it skips, saying why, when there is no initdb."""
    import pgserver

    server = pgserver.start()
    if isinstance(server, str):
        pytest.skip(server)
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database (the schema in place), set as MILESTONE_DATABASE_URL."""
    url = str(pg_server.new_database())
    monkeypatch.setenv("MILESTONE_DATABASE_URL", url)
    return url


def on_backend(request: pytest.FixtureRequest, backend: str) -> None:
    """What a test on ``backend`` needs besides the directory: for postgres, a fresh
    database named by MILESTONE_DATABASE_URL."""
    if backend == "postgres":
        request.getfixturevalue("pg_url")


@pytest.fixture(autouse=True)
def _postgres_when_parametrized(request: pytest.FixtureRequest) -> None:
    """A test parametrized with ``postgres`` (a backend, a migration's source or
    target) gets its fresh database before anything opens a project."""
    callspec = getattr(request.node, "callspec", None)
    for value in callspec.params.values() if callspec is not None else ():
        if value == "postgres" or (isinstance(value, tuple) and "postgres" in value):
            on_backend(request, "postgres")
            return


@pytest.fixture(params=BACKENDS)
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Project:
    """A Project on every backend: the same behaviour is expected of each."""
    on_backend(request, request.param)
    if request.param == "memory":
        store = MemoryStore(tmp_path / ".milestones")
        store.initialize()
        return Project(store, cwd=tmp_path, actor="tester@example.com", session_id="test-session")
    p, _ = Project.init(tmp_path, backend=request.param, actor="tester@example.com",
                        session_id="test-session")
    return p


class ConsoleMain:
    """What CliRunner invokes for ``Runner``: the console script's ``milestones.cli.main``
    (the fast path of the most run reads, else the click group), so every test that
    runs a command through ``run`` takes the way a user's command takes."""

    name = "milestone"

    def main(self, args: Any = (), prog_name: str | None = None, **extra: Any) -> None:
        from milestones.cli import main

        main(list(args))


class Runner:
    """Run the CLI in a directory as the console script does; ``.json(...)`` parses
    --json output."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Any:
        return self.runner.invoke(ConsoleMain(), ["-C", str(self.cwd), *args],  # type: ignore[arg-type]
                                  input=input, catch_exceptions=False)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 0, (args, result.output, result.stderr)
        return str(result.output)

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture
def run(project_dir: Path) -> Iterator[Runner]:
    yield Runner(project_dir)


def cli_on_a_terminal(argv: list[str], cwd: Path, env: dict[str, str] | None = None
                      ) -> tuple[int, str, str]:
    """The CLI as a process with stderr on a pseudo-terminal and stdout a pipe:
    (exit code, stdout, stderr). ``env``: the child's (default: this one's, without
    NO_COLOR and MILESTONE_UI), with TERM and a width of 100 columns."""
    import pty

    base = env if env is not None else {k: v for k, v in os.environ.items()
                                        if k not in ("NO_COLOR", "MILESTONE_UI")}
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "milestones", *argv], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                            env={**base, "TERM": "xterm", "COLUMNS": "100"})
    os.close(slave)
    err = b""
    while True:  # read as it comes: a full terminal buffer would block the child
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(timeout=120), out, err.decode("utf-8", "replace")

"""Shared fixtures: a fresh project per test, a CLI runner that returns parsed JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from milestones.cli import cli
from milestones.project import Project
from milestones.storage.memory import MemoryStore


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


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    Project.init(tmp_path)
    return tmp_path


BACKENDS = ["file", "hybrid", "database", "memory"]


@pytest.fixture(params=BACKENDS)
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Project:
    """A Project on every backend: the same behaviour is expected of each."""
    if request.param == "memory":
        store = MemoryStore(tmp_path / ".milestones")
        store.initialize()
        return Project(store, cwd=tmp_path, actor="tester@example.com", session_id="test-session")
    p, _ = Project.init(tmp_path, backend=request.param, actor="tester@example.com",
                        session_id="test-session")
    return p


class Runner:
    """Run the CLI in a directory; ``.json(...)`` parses --json output."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Any:
        return self.runner.invoke(cli, ["-C", str(self.cwd), *args], input=input,
                                  catch_exceptions=False)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 0, (args, result.output, result.stderr)
        return str(result.output)

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture
def run(project_dir: Path) -> Iterator[Runner]:
    yield Runner(project_dir)

"""Fixtures for the durability tests: real processes on a real project directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import cli


@pytest.fixture(autouse=True)
def _patient_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    # Contention must make commands wait, never fail.
    monkeypatch.setenv("MILESTONE_LOCK_TIMEOUT", "60")


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    """A project initialised by `milestone init` (the directory holding .milestones/)."""
    d = tmp_path / "proj"
    d.mkdir()
    cli(d, "init")
    return d


@pytest.fixture(params=["file", "hybrid", "database", "postgres"])
def any_proj(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A fresh project on each backend (the directory holding .milestones/)."""
    from milestones.project import Project

    d = tmp_path / "proj"
    d.mkdir()
    Project.init(d, backend=request.param)
    return d


@pytest.fixture(params=["file", "hybrid"])
def yaml_proj(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A fresh project on each backend that keeps YAML files and a log file."""
    from milestones.project import Project

    d = tmp_path / "proj"
    d.mkdir()
    Project.init(d, backend=request.param)
    return d

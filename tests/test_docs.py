"""The README documents every event type and exit code the code has."""

from __future__ import annotations

from pathlib import Path

from milestones.errors import EXIT_CODES
from milestones.model.events import EVENT_TYPES

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_lists_every_event_type() -> None:
    missing = [t for t in EVENT_TYPES if f"| `{t}` |" not in README]
    assert not missing


def test_readme_lists_every_exit_code() -> None:
    missing = [c for c in EXIT_CODES if f"\n| {c} |" not in README]
    assert not missing


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text().splitlines()
    test_line = next(line for line in README.splitlines()
                     if line.startswith("python3 -m venv") and line.endswith("pytest"))
    assert test_line in ci


def test_readme_first_command_runs_the_demo() -> None:
    first = next(line for line in README.splitlines() if line.startswith("python3 -m venv"))
    assert first.endswith("pip install . && milestone demo")

"""plan --from-file: a progress bar on stderr when it is a terminal, never on a pipe or
with --json (run as a real process, its stderr a pseudo-terminal or a pipe)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_on_a_terminal
from milestones.cli import plan as plan_cmd
from milestones.project import Project

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")


def big_plan(tmp_path: Path) -> Path:
    """Three milestones in a file over the size that shows a bar (a long comment)."""
    path = tmp_path / "plan.yaml"
    padding = "# " + "x" * 98 + "\n"
    text = padding * (plan_cmd.PROGRESS_FROM_BYTES // len(padding) + 1)
    text += "milestones:\n" + "".join(f"- title: M{i}\n  tasks: [A, B]\n" for i in range(3))
    path.write_text(text)
    return path


def run(cwd: Path, *args: str, terminal: bool) -> tuple[int, str, str]:
    """The CLI as a process: (exit code, stdout, stderr), stderr a pty if ``terminal``."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "MILESTONE_UI")}
    env["COLUMNS"] = "100"
    cmd = [sys.executable, "-m", "milestones", "-C", str(cwd), *args]
    if not terminal:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout, done.stderr
    return cli_on_a_terminal(["-C", str(cwd), *args], cwd)


def test_bar_on_a_terminal(tmp_path: Path) -> None:
    Project.init(tmp_path)
    code, out, err = run(tmp_path, "plan", "--from-file", str(big_plan(tmp_path)),
                         terminal=True)
    assert code == 0, err
    assert "Reading plan.yaml" in err
    assert "Planned milestone-003: M2 (2 tasks)" in out
    assert [m.title for m in Project.open(tmp_path).milestones().values()] == ["M0", "M1", "M2"]


def test_no_bar_on_a_pipe_or_with_json(tmp_path: Path) -> None:
    Project.init(tmp_path)
    plan = big_plan(tmp_path)
    code, out, err = run(tmp_path, "plan", "--from-file", str(plan), terminal=False)
    assert (code, err) == (0, "")
    assert "Planned milestone-003: M2 (2 tasks)" in out
    code, out, err = run(tmp_path, "plan", "--from-file", str(plan), "--json", terminal=True)
    assert code == 0 and "Reading" not in err and "\x1b[" not in err
    assert out.startswith("{") and '"milestone-006"' in out


def test_show_progress_asks_for_a_terminal_and_a_big_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Stream:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    big, small = big_plan(tmp_path), tmp_path / "small.yaml"
    small.write_text("title: One\n")
    monkeypatch.setattr(sys, "stderr", Stream(True))
    assert plan_cmd.show_progress(big, as_json=False)
    assert not plan_cmd.show_progress(big, as_json=True)
    assert not plan_cmd.show_progress(small, as_json=False)
    assert not plan_cmd.show_progress(tmp_path / "missing.yaml", as_json=False)
    monkeypatch.setattr(sys, "stderr", Stream(False))
    assert not plan_cmd.show_progress(big, as_json=False)

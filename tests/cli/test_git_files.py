"""Git's files are read as untrusted input: a FIFO or device planted among them never
hangs a command, and HEAD never names a path outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from milestones.project.session import git_position


def _cli(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "milestones", "-C", str(cwd), *args],
                          capture_output=True, text=True, timeout=30, env=env)


@pytest.mark.parametrize("planted", ["HEAD", "config", "home-gitconfig"])
def test_a_fifo_among_git_files_never_hangs_a_command(tmp_path: Path, planted: str) -> None:
    repo = tmp_path / "repo"
    (repo / ".git" / "refs" / "heads").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    home = tmp_path / "home"
    home.mkdir()
    target = {"HEAD": repo / ".git" / "HEAD", "config": repo / ".git" / "config",
              "home-gitconfig": home / ".gitconfig"}[planted]
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    env = {k: v for k, v in os.environ.items() if k != "MILESTONE_USER"}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    for args in (("init",), ("plan", "Alpha", "--task", "one"), ("status",), ("resume",)):
        proc = _cli(repo, *args, env=env)  # the timeout fails a hang
        assert proc.returncode == 0, (args, proc.stderr)


def test_head_naming_a_path_outside_is_no_commit(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("top secret\n")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: ../../secret\n")
    assert git_position(repo) == {"branch": None, "commit": None}
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/../../../secret\n")
    assert git_position(repo) == {"branch": None, "commit": None}

"""`execute` runs a command from the plan only once a person approved it on this
machine: commands set through milestone are; a hand edit, a pull, an import are not."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import Runner
from milestones.agents.executor import Executor, Options
from milestones.project import Project

FAST = {"poll": 0.1, "check_every": 0.2, "detect_every": 0.2, "watch_every": 0.1}


@pytest.fixture(autouse=True)
def _own_key(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """This machine's approval key in a directory of the test's own."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def run(project_dir: Path) -> Runner:
    runner = Runner(project_dir)
    runner.runner = CliRunner(mix_stderr=False)
    return runner


def yaml_path(root: Path, n: int = 1) -> Path:
    return root / ".milestones" / "active" / f"milestone-{n:03d}.yaml"


def hand_edit_run(root: Path, title: str, command: str, n: int = 1) -> None:
    """Give task ``title`` a ``run`` line by editing the YAML, as a person or a pull would."""
    path = yaml_path(root, n)
    text = path.read_text()
    line = f"  title: {title}\n"
    assert line in text, text
    path.write_text(text.replace(line, line + f"  run: {json.dumps(command)}\n", 1))


def test_a_hand_edited_command_is_refused_without_a_terminal(run: Runner,
                                                             project_dir: Path) -> None:
    run.ok("plan", "Work", "--task", "one")
    hand_edit_run(project_dir, "one", "touch pwned.txt")
    result = run("execute", "1", "--json")
    assert result.exit_code == 6, (result.output, result.stderr)
    assert "--approve-commands" in result.stderr
    assert "touch pwned.txt" in result.stderr and "milestone-001/task-1" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (project_dir / "pwned.txt").exists()
    assert run.json("show", "1/1")["task"]["status"] == "todo"  # nothing claimed
    # the dry run lists what waits for approval
    dry = run.json("execute", "1", "--dry-run")
    assert dry["unapproved"] == [{"where": "milestone-001/task-1",
                                  "command": "touch pwned.txt"}]
    assert "not approved here" in run.ok("execute", "1", "--dry-run")


def test_the_flag_approves_runs_and_remembers(run: Runner, project_dir: Path) -> None:
    run.ok("plan", "Work", "--task", "one")
    hand_edit_run(project_dir, "one", "touch approved.txt")
    result = run("execute", "1", "--approve-commands", "--json")
    assert result.exit_code == 0, (result.output, result.stderr)
    assert (project_dir / "approved.txt").exists()
    # approved once: the same command elsewhere in the plan runs without asking
    run.ok("plan", "More", "--task", "two")
    hand_edit_run(project_dir, "two", "touch approved.txt", n=2)
    again = run("execute", "2", "--json")
    assert again.exit_code == 0, (again.output, again.stderr)


def test_commands_set_through_milestone_run_without_asking(run: Runner,
                                                           project_dir: Path) -> None:
    run.ok("plan", "Work", "--task", "one", "--task", "two")
    run.ok("task", "edit", "1/1", "--run", "touch one.txt")
    run.ok("task", "add", "1", "three", "--run", "touch three.txt")
    plan = project_dir / "plan.yaml"
    plan.write_text("milestones:\n  - title: From file\n    tasks:\n"
                    "      - title: f\n        run: touch from-file.txt\n")
    run.ok("plan", "--from-file", str(plan))
    run.ok("task", "edit", "1/2", "--run", "touch two.txt")
    for ref in ("1", "2"):
        result = run("execute", ref, "--json")
        assert result.exit_code == 0, (ref, result.output, result.stderr)
    for name in ("one", "two", "three", "from-file"):
        assert (project_dir / f"{name}.txt").exists(), name


def test_a_forged_approval_record_approves_nothing(run: Runner, project_dir: Path) -> None:
    """The record is in the working tree, so a pull could bring one: without this
    machine's key its lines match nothing."""
    run.ok("plan", "Work", "--task", "one", "--task", "two")
    run.ok("task", "edit", "1/2", "--run", "true")  # the record and the key exist
    hand_edit_run(project_dir, "one", "touch pwned.txt")
    record = project_dir / ".milestones" / "performance" / "approved-commands"
    with record.open("a") as f:
        f.write(hashlib.sha256(b"touch pwned.txt").hexdigest() + "\n")
    result = run("execute", "1", "--json")
    assert result.exit_code == 6, (result.output, result.stderr)
    assert not (project_dir / "pwned.txt").exists()
    assert "approved-commands" in (record.parent / ".gitignore").read_text().split()


def test_a_hand_set_test_command_waits_for_approval(run: Runner, project_dir: Path) -> None:
    run.ok("plan", "Work", "--task", "one")
    run.ok("task", "edit", "1/1", "--run", "true")
    config = project_dir / ".milestones" / "config" / "config.yaml"
    config.write_text(config.read_text() + "\nblockers:\n  test_command: touch tested.txt\n")
    result = run("execute", "1", "--json")
    assert result.exit_code == 6, (result.output, result.stderr)
    assert "blockers.test_command" in result.stderr
    assert not (project_dir / "tested.txt").exists()


def test_a_command_changed_by_hand_during_the_run_is_not_run(tmp_path: Path) -> None:
    """The executor checks each command as it takes the task, not only at the start."""
    p, _ = Project.init(tmp_path, actor="owner@example.com", session_id="s")
    p.plan("Work", tasks=[{"title": "edits", "run": "python3 edit.py"},
                          {"title": "later", "depends_on": ["task-1"], "run": "echo later"}])
    (tmp_path / "edit.py").write_text(
        "from pathlib import Path\n"
        "p = Path('.milestones/active/milestone-001.yaml')\n"
        "text = p.read_text()\n"
        "assert 'run: echo later' in text, text\n"
        "p.write_text(text.replace('run: echo later', 'run: touch pwned.txt'))\n")
    summary = Executor(p, "milestone-001", Options(**FAST, agents=1)).run()  # type: ignore[arg-type]
    assert not (tmp_path / "pwned.txt").exists()
    later = next(t for t in summary["tasks"] if t["ref"].endswith("task-2"))
    assert later["status"] != "done", summary
    assert "not approved" in json.dumps(summary), summary


def test_the_python_api_is_the_persons_own_act(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path, actor="owner@example.com", session_id="s")
    p.plan("Work", tasks=[{"title": "one", "run": "touch api.txt"}])
    fresh = Project.open(tmp_path)  # another process: the approval is on record
    summary = Executor(fresh, "milestone-001", Options(**FAST)).run()  # type: ignore[arg-type]
    assert summary["exit_code"] == 0, summary
    assert (tmp_path / "api.txt").exists()


def _on_a_terminal(cwd: Path, answer: bytes, *args: str) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal for stdin, stdout and stderr; answer its prompt."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "milestones", "-C", str(cwd), *args],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the other end closed: the process is done
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(master, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    return proc.wait(timeout=30), seen.decode("utf-8", "replace")


@pytest.mark.parametrize("answer", [b"y\n", b"n\n"])
def test_on_a_terminal_the_commands_are_listed_and_asked_about(
        run: Runner, project_dir: Path, answer: bytes) -> None:
    run.ok("plan", "Work", "--task", "one")
    hand_edit_run(project_dir, "one", "touch asked.txt")
    code, screen = _on_a_terminal(project_dir, answer, "execute", "1", "--ui", "simple")
    assert "milestone-001/task-1: $ touch asked.txt" in screen, screen
    if answer.startswith(b"y"):
        assert code == 0, screen
        assert (project_dir / "asked.txt").exists()
    else:
        assert code == 1, screen
        assert "not approved: nothing was run" in screen
        assert not (project_dir / "asked.txt").exists()


@pytest.mark.parametrize("backend", ["file", "hybrid", "database"])
def test_approval_on_every_backend(tmp_path: Path, backend: str) -> None:
    """Set through milestone: runs; the same task's command unknown here: refused."""
    p, _ = Project.init(tmp_path, backend=backend, actor="owner@example.com", session_id="s")
    p.plan("Work", tasks=[{"title": "one", "run": "touch ok.txt"}])
    runner = Runner(tmp_path)
    runner.runner = CliRunner(mix_stderr=False)
    assert runner("execute", "1", "--json").exit_code == 0
    assert (tmp_path / "ok.txt").exists()
    p.plan("Second", tasks=[{"title": "two", "run": "touch second.txt"}])
    record = tmp_path / ".milestones" / "performance" / "approved-commands"
    record.unlink()  # as on another machine, or after a restore from elsewhere
    result = runner("execute", "2", "--json")
    assert result.exit_code == 6, (result.output, result.stderr)
    assert not (tmp_path / "second.txt").exists()

"""The contract scripts and agents rely on: --json errors, what every write names, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from milestones.cli import cli
from milestones.errors import ERROR_KINDS, EXIT_CODES
from milestones.project import Project
from milestones.storage.fsutil import writer_lock


def no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    assert not dupes, f"duplicate keys {dupes}"
    return dict(pairs)


def strict_json(text: str) -> Any:
    return json.loads(text, object_pairs_hook=no_dupes)


class Cli:
    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, *args: str, input: str | None = None,
                 env: dict[str, str] | None = None) -> Result:
        return CliRunner(mix_stderr=False).invoke(cli, ["-C", str(self.cwd), *args],
                                                  input=input, env=env)

    def write(self, *args: str) -> dict[str, Any]:
        """A write with --json: exit 0, one document, no key twice, names what it touched."""
        result = self(*args, "--json")
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        data = strict_json(result.stdout)
        assert data["schema"] == 1
        assert "ref" in data and "milestone_id" in data, (args, sorted(data))
        return dict(data)


@pytest.fixture
def cli_(tmp_path: Path) -> Cli:
    Project.init(tmp_path)
    return Cli(tmp_path)


def json_error(result: Result, code: int, kind: str) -> dict[str, Any]:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    doc = strict_json(lines[0])
    assert doc["schema"] == 1
    err = doc["error"]
    assert err["code"] == code and err["kind"] == kind
    assert err["message"]
    return dict(err)


# ------------------------------------------------------------------ --json errors


def test_every_exit_code_has_a_kind() -> None:
    assert set(ERROR_KINDS) == set(EXIT_CODES) - {0, 9}
    assert ERROR_KINDS[3] == "not_found" and ERROR_KINDS[130] == "interrupted"


def test_json_errors_not_found_invalid_and_validation(cli_: Cli) -> None:
    cli_.write("plan", "Beta", "--task", "A", "--task", "B")
    cli_("task", "edit", "1/2", "--depends-on", "1")
    err = json_error(cli_("show", "9", "--json"), 3, "not_found")
    assert "milestone-009" in err["message"] and "milestone-001" in err["hint"]
    err = json_error(cli_("update", "1", "--due", "someday", "--json"), 4, "invalid_input")
    assert "someday" in err["message"]
    err = json_error(cli_("task", "start", "1/2", "--json"), 5, "validation_failed")
    assert "waiting on milestone-001/task-1" in err["message"]
    # --json before the arguments works as well; without --json the line stays text
    json_error(cli_("task", "start", "--json", "1/2"), 5, "validation_failed")
    text = cli_("task", "start", "1/2")
    assert text.exit_code == 5 and text.stderr.startswith("milestone: error: cannot start")


def test_json_errors_no_project(tmp_path: Path) -> None:
    err = json_error(Cli(tmp_path)("status", "--json"), 3, "not_found")
    assert "milestone init" in err["hint"]


@pytest.mark.parametrize("args", [
    ("show", "--bogus", "--json"),           # an unknown option of a command
    ("--bogus", "status", "--json"),         # an unknown option of the top level
    ("task", "start", "--json"),             # a missing argument
    ("task", "progress", "1/1", "200", "--json"),  # out of range
    ("frobnicate", "--json"),                # an unknown command
])
def test_json_usage_errors(cli_: Cli, args: tuple[str, ...]) -> None:
    err = json_error(cli_(*args), 2, "usage")
    assert err["hint"].startswith("see `") and err["hint"].endswith(" -h`")


def test_json_error_when_the_project_is_busy(cli_: Cli) -> None:
    cli_.write("plan", "Beta", "--task", "A")
    before = (cli_.cwd / ".milestones/active/milestone-001.yaml").read_bytes()
    env = {**os.environ, "MILESTONE_LOCK_TIMEOUT": "0.2"}
    with writer_lock(cli_.cwd / ".milestones" / ".lock"):
        proc = subprocess.run(
            [sys.executable, "-m", "milestones", "-C", str(cli_.cwd), "task", "start", "1/1",
             "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == ""
    err = strict_json(proc.stderr.strip().splitlines()[-1])["error"]
    assert err["code"] == 7 and err["kind"] == "conflict" and "busy" in err["message"]
    assert (cli_.cwd / ".milestones/active/milestone-001.yaml").read_bytes() == before


# ------------------------------------------------------------- writes name their target


KIRO_TASKS = "# Tasks\n\n- [ ] 1. Build the login form\n- [ ] 2. Wire the API\n"


def test_every_write_names_ref_and_milestone_id(cli_: Cli, tmp_path: Path) -> None:
    w = cli_.write
    d = w("plan", "Beta", "--task", "A", "--task", "B", "--task", "C")
    assert (d["ref"], d["milestone_id"], d["refs"]) == ("milestone-001", "milestone-001",
                                                        ["milestone-001"])
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("milestones:\n  - title: Two\n    tasks: [x]\n  - title: Three\n")
    d = w("plan", "--from-file", str(plan_file))
    assert d["ref"] == "milestone-002" and d["refs"] == ["milestone-002", "milestone-003"]
    assert w("update", "1", "--priority", "high")["ref"] == "milestone-001"
    assert w("current", "2")["milestone_id"] == "milestone-002"
    assert w("current", "1")["ref"] == "milestone-001"
    d = w("task", "add", "1", "D")
    assert (d["ref"], d["milestone_id"]) == ("milestone-001/task-4", "milestone-001")
    expected = {
        ("task", "edit", "1/4", "--title", "Dee"): "milestone-001/task-4",
        ("task", "start", "1"): "milestone-001/task-1",          # of the current milestone
        ("task", "progress", "1/1", "50"): "milestone-001/task-1",
        ("task", "stop", "1/1"): "milestone-001/task-1",
        ("task", "done", "milestone-001/task-1"): "milestone-001/task-1",
        ("task", "block", "1/2", "--reason", "keys"): "milestone-001/task-2",
        ("task", "unblock", "1/2"): "milestone-001/task-2",
        ("task", "skip", "1/2"): "milestone-001/task-2",
        ("task", "reopen", "1/2"): "milestone-001/task-2",
        ("task", "assign", "2/1", "bob"): "milestone-002/task-1",
        ("task", "assign", "2/1", "--none"): "milestone-002/task-1",
    }
    for args, ref in expected.items():
        d = w(*args)
        assert (d["ref"], d["milestone_id"]) == (ref, ref.split("/")[0]), args
        assert d["task"]["id"] == ref.split("/")[1]
    assert w("note", "carry on")["milestone_id"] == "milestone-001"
    agent = w("agent", "register", "--name", "w1")
    assert agent["ref"] is None and agent["milestone_id"] is None
    aid = agent["agent"]["id"]
    d = w("agent", "claim", "2", "--agent", aid)
    assert (d["ref"], d["milestone_id"]) == ("milestone-002/task-1", "milestone-002")
    d = w("agent", "release", "--agent", aid)
    assert d["milestone_id"] == "milestone-002"
    d = w("agent", "claim", "2", "--agent", aid)
    d = w("agent", "fail", "--agent", aid, "--reason", "flaky")
    assert d["ref"] == "milestone-002/task-1"
    d = w("agent", "claim", "2", "--agent", aid)
    d = w("agent", "complete", "--agent", aid, "--result", "ok")
    assert (d["ref"], d["milestone_id"]) == ("milestone-002/task-1", "milestone-002")
    assert w("agent", "cleanup", "--agent", aid)["ref"] is None
    spec = tmp_path / ".kiro" / "specs" / "login"
    spec.mkdir(parents=True)
    (spec / "tasks.md").write_text(KIRO_TASKS)
    d = w("import", "kiro", str(spec))
    kiro_id = d["ref"]
    assert d["milestone_id"] == kiro_id == d["milestone"]["id"]
    d = w("review", kiro_id, "--approve", "requirements")
    assert d["ref"] == kiro_id
    d = w("plan", "--template", "bugfix", "--var", "bug=Login loop")
    assert d["ref"] == d["milestones"][0]["id"]
    d = w("quickstart", "--yes", "--template", "bugfix", "--var", "bug=Crash")
    assert d["ref"] == d["milestone"]["id"] == d["milestone_id"]
    d = w("plan", "Done soon", "--task", "only")
    mid = d["ref"]
    w("task", "done", f"{mid}/1")
    d = w("archive", mid, "--lessons", "small is good")
    assert (d["ref"], d["milestone_id"]) == (mid, mid)
    d = w("delete", "3", "--yes")
    assert (d["ref"], d["deleted"]) == ("milestone-003", "milestone-003")
    d = w("backup", "--to", str(tmp_path / "b.tar.gz"))
    assert d["ref"] is None
    d = w("restore", str(tmp_path / "b.tar.gz"), "--yes")
    assert d["milestone_id"] is None
    d = w("execute", "2", "--command", "true")
    assert d["ref"] == d["milestone_id"] == "milestone-002"
    assert w("storage", "migrate", "--to", "hybrid")["ref"] is None
    assert w("storage", "rollback")["ref"] is None
    assert w("storage", "cleanup", "--yes")["ref"] is None
    assert w("init")["ref"] is None


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_link_json_names_no_single_target(cli_: Cli) -> None:
    cli_.write("plan", "Beta", "--task", "A")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m",
                                  "Closes milestone-001/task-1"]):
        subprocess.run(["git", "-C", str(cli_.cwd), *args], check=True, env=env)
    d = cli_.write("git", "link")
    assert d["ref"] is None and d["milestone_id"] is None
    assert [r["ref"] for r in d["linked"]] == ["milestone-001/task-1"]


# ------------------------------------------------------------------- exit code families


def test_due_before_start_is_invalid_input_everywhere(cli_: Cli, tmp_path: Path) -> None:
    result = cli_("plan", "X", "--start", "2026-12-10", "--due", "2026-12-01")
    assert result.exit_code == 4 and "before it starts" in result.stderr
    cli_.write("plan", "Beta", "--start", "2026-12-01", "--due", "2026-12-20")
    before = (cli_.cwd / ".milestones/active/milestone-001.yaml").read_bytes()
    result = cli_("update", "1", "--due", "2026-11-01")
    assert result.exit_code == 4 and "before it starts" in result.stderr
    plan_file = tmp_path / "late.yaml"
    plan_file.write_text("title: Late\nstart: 2026-12-10\ndue: 2026-12-01\n")
    result = cli_("plan", "--from-file", str(plan_file))
    assert result.exit_code == 4 and "before it starts" in result.stderr
    assert (cli_.cwd / ".milestones/active/milestone-001.yaml").read_bytes() == before
    assert sorted(Project.open(cli_.cwd).state().milestones) == ["milestone-001"]


@pytest.mark.parametrize("args", [
    ("plan", "--from-file", "{missing}/plan.yaml"),
    ("plan", "--from-file", "{missing}/plan.md"),
    ("import", "kiro", "{missing}/specs/login"),
    ("restore", "{missing}/backup.tar.gz", "--yes"),
    ("plan", "--from-file", "{missing}"),    # a directory where a file is wanted
    ("restore", "{missing}", "--yes"),
])
def test_a_missing_input_file_is_invalid_input(cli_: Cli, tmp_path: Path,
                                               args: tuple[str, ...]) -> None:
    (tmp_path / "nowhere").mkdir()
    words = [a.format(missing=tmp_path / "nowhere") for a in args]
    result = cli_(*words)
    assert result.exit_code == 4, result.stderr
    assert result.stderr.startswith("milestone: error: ") and "nowhere" in result.stderr
    json_error(cli_(*words, "--json"), 4, "invalid_input")
    assert Project.open(cli_.cwd).state().milestones == {}


def test_an_unknown_template_name_is_not_found(cli_: Cli) -> None:
    json_error(cli_("plan", "--template", "bugfx", "--json"), 3, "not_found")


def test_a_declined_confirmation_with_json(cli_: Cli) -> None:
    cli_.write("plan", "Beta", "--task", "A")
    proc = subprocess.run(  # a real process: the test runner echoes input to stdout
        [sys.executable, "-m", "milestones", "-C", str(cli_.cwd), "delete", "1", "--json"],
        input="n\n", capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (1, "")  # click's prompt ends in " "
    err = strict_json(proc.stderr.strip().splitlines()[-1])["error"]
    assert err["code"] == 1 and err["kind"] == "declined" and "--yes" in err["hint"]
    assert "milestone-001" in Project.open(cli_.cwd).state().milestones


def test_an_internal_error_with_json(cli_: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(Project, "status_view", broken)
    err = json_error(cli_("status", "--json"), 1, "internal")
    assert "boom" in err["message"] and "--debug" in err["hint"]

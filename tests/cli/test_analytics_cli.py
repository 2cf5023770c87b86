"""``milestone analytics`` through the CLI: its JSON contract, bad input, and that
database/analytics.db holds no protected plain text and follows `encrypt rotate`."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from conftest import Runner
from milestones.cli import cli


def _work(run: Runner) -> None:
    run.ok("plan", "Alpha", "--task", "TITLE-one-x7", "--task", "two", "--task", "three",
           "--description", "PLAIN-milestone-description-a1")
    run.ok("task", "edit", "1/1", "--description", "PLAIN-task-description-b2")
    run.ok("task", "start", "1/1")
    run.ok("task", "done", "1/1")
    run.ok("task", "block", "1/2", "-r", "PLAIN-blocker-reason-c3")
    run.ok("note", "PLAIN-session-note-d4")


def test_json_contract_and_text(run: Runner) -> None:
    _work(run)
    data = run.json("analytics")
    assert data["schema"] == 1
    assert set(data) >= {"generated_at", "since", "milestone", "rollups", "throughput",
                         "cycle_time", "lead_time", "estimate_accuracy", "blocked", "wip",
                         "forecast"}
    assert data["throughput"]["total"] == 1
    assert data["blocked"]["open"][0]["task"] == "milestone-001/task-2"
    assert data["forecast"]["too_short"] is True
    one = run.json("analytics", "1", "--since", "1w")
    assert one["milestone"] == "milestone-001" and one["since"].endswith("Z")
    assert run.json("analytics", "--rebuild")["rollups"]["mode"] == "rebuild"
    text = run.ok("analytics")
    assert "Throughput: 1 task done" in text and "history too short" in text


def test_bad_since_and_unknown_ref(run: Runner) -> None:
    _work(run)
    r = run("analytics", "--since", "yesterday-ish")
    assert r.exit_code == 4 and "--since 'yesterday-ish' is not a time" in r.output
    r = run("analytics", "42")
    assert r.exit_code == 3 and "unknown milestone" in r.output
    assert "Traceback" not in r.output


def test_no_protected_plain_text_and_rotate_rebuilds(run: Runner, project_dir: Path) -> None:
    run.ok("encrypt", "init")
    _work(run)
    run.ok("analytics")
    db = project_dir / ".milestones" / "database" / "analytics.db"
    run.ok("encrypt", "rotate")
    data = run.json("analytics")  # the re-chained log: rebuilt (the swap may drop the file)
    assert data["rollups"]["mode"] == "rebuild"
    blob = b"".join(p.read_bytes() for p in db.parent.glob("analytics.db*"))
    for secret in ("PLAIN-milestone-description-a1", "PLAIN-task-description-b2",
                   "PLAIN-blocker-reason-c3", "PLAIN-session-note-d4", "TITLE-one-x7"):
        assert secret.encode() not in blob, secret
    assert json.dumps(data["throughput"]["total"]) == "1"


def test_a_planted_link_at_analytics_db_is_refused(tmp_path: Path) -> None:
    runner = CliRunner(mix_stderr=False)
    root = tmp_path / "p"
    root.mkdir()
    assert runner.invoke(cli, ["-C", str(root), "init"]).exit_code == 0
    outside = tmp_path / "elsewhere.db"
    outside.write_bytes(b"keep me")
    (root / ".milestones" / "database").mkdir(exist_ok=True)
    (root / ".milestones" / "database" / "analytics.db").symlink_to(outside)
    result = runner.invoke(cli, ["-C", str(root), "analytics"])
    assert result.exit_code == 4 and "symbolic link" in result.stderr
    assert outside.read_bytes() == b"keep me"

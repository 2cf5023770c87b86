"""The Kiro spec workflow through Project and the CLI: import, gates, reviews, export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from milestones import model as md
from milestones.cli import cli
from milestones.errors import InvalidTransition, PermissionDenied, ValidationFailed
from milestones.project import Project

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kiro" / "offline-sync"


def spec_project(tmp_path: Path, config: str | None = None, actor: str = "ann@example.com"
                 ) -> tuple[Project, Path]:
    spec = tmp_path / ".kiro" / "specs" / "offline-sync"
    shutil.copytree(FIXTURE, spec)
    Project.init(tmp_path)
    if config is not None:
        (tmp_path / ".milestones" / "config" / "config.yaml").write_text(config)
    return Project.open(tmp_path, actor=actor, session_id="s"), spec


TEAM = """\
team:
  members:
    - {name: ann@example.com, role: owner}
    - {name: bob@example.com, role: contributor}
    - {name: vic@example.com, role: viewer}
kiro:
  approvers:
    design: [owner, contributor]
"""


def test_import_maps_tasks_requirements_and_numbers(tmp_path: Path) -> None:
    project, spec = spec_project(tmp_path)
    m = project.import_kiro(spec)
    assert m.workflow == "kiro" and m.kiro is not None
    assert m.kiro["spec"] == "offline-sync" and m.kiro["path"] == ".kiro/specs/offline-sync"
    assert m.kiro["tasks_source"] == (spec / "tasks.md").read_text()
    by_ref = {t.spec_ref: t for t in m.tasks}
    assert by_ref["1"].status == "done" and by_ref["1"].requirements == ["1.1", "1.3"]
    assert by_ref["2.1"].status == "done" and by_ref["2.1"].requirements == ["1.1"]
    assert by_ref["2.3"].requirements == ["1.3"]  # from **Validates: Requirements 1.3**
    assert by_ref["3.1"].requirements == ["2.1", "2.2"]
    assert by_ref["1"].description.startswith("- Create the `sync_queue` table")
    parent = by_ref["2"]
    assert set(parent.depends_on) == {t.id for r, t in by_ref.items()
                                      if r and r.startswith("2.")}
    assert set(m.kiro["imported_done"]) == {t.id for t in m.tasks if t.status == "done"}


def test_export_round_trip_and_box_flips(tmp_path: Path) -> None:
    project, spec = spec_project(tmp_path)
    m = project.import_kiro(spec)
    original = (spec / "tasks.md").read_text()
    assert project.export_kiro(m.id) == original
    open_task = next(t for t in m.tasks if t.status == "todo" and not t.depends_on)
    project.complete_task(f"1/{open_task.id.split('-')[1]}", force=True)
    exported = project.export_kiro(m.id)
    changed = [(a, b) for a, b in zip(original.splitlines(), exported.splitlines(), strict=True)
               if a != b]
    assert len(changed) == 1 and "[ ]" in changed[0][0] and "[x]" in changed[0][1]


def test_gates_in_order_and_progress_counts_them(tmp_path: Path) -> None:
    project, spec = spec_project(tmp_path)
    m = project.import_kiro(spec)
    p0 = project.milestone(m.id)
    with pytest.raises(InvalidTransition, match="requirements gate is not approved"):
        project.review(m.id, "design", "approve")
    assert md.kiro_phase(p0) == "requirements"
    before = md.milestone_progress(p0)
    project.review(m.id, "requirements", "approve", "testable")
    after = project.milestone(m.id)
    assert md.kiro_phase(after) == "design"
    assert md.milestone_progress(after) == pytest.approx(before + 10.0, abs=0.11)
    types = [e["event_type"] for e in project.store.events()][-2:]
    assert types == ["review_recorded", "gate_opened"]


def test_two_roles_open_a_gate_and_rejection_blocks(tmp_path: Path) -> None:
    project, spec = spec_project(tmp_path, TEAM)
    m = project.import_kiro(spec)
    project.review(m.id, "requirements", "approve")
    gate = project.review(m.id, "design", "approve")
    assert gate["status"] == "pending" and gate["waiting_for"] == ["contributor"]
    bob = Project.open(tmp_path, actor="bob@example.com", session_id="s")
    assert [p["phase"] for p in bob.pending_reviews()["pending"]] == ["design"]
    gate = bob.review(m.id, "design", "reject", "sessions must expire")
    assert gate["status"] == "rejected" and gate["feedback"] == "sessions must expire"
    assert project.pending_reviews()["pending"][0]["feedback"] == "sessions must expire"
    assert project.review(m.id, "design", "approve")["status"] == "pending"
    assert bob.review(m.id, "design", "approve")["status"] == "approved"
    assert bob.pending_reviews()["pending"] == []
    vic = Project.open(tmp_path, actor="vic@example.com", session_id="s")
    with pytest.raises(PermissionDenied, match="viewer"):
        vic.review(m.id, "tasks", "approve")


def test_strict_enforcement_refuses_work_before_the_tasks_gate(tmp_path: Path) -> None:
    project, spec = spec_project(tmp_path)
    m = project.import_kiro(spec, enforcement="strict", policy="mandatory")
    ready = next(t for t in m.tasks if t.status == "todo" and not t.depends_on)
    ref = f"{m.id}/{ready.id}"
    before = list(project.store.events())
    with pytest.raises(ValidationFailed, match="MS710"):
        project.start_task(ref)
    assert list(project.store.events()) == before
    for phase in md.KIRO_GATED:
        project.review(m.id, phase, "approve")
    assert project.start_task(ref).status == "in_progress"


def test_flexible_enforcement_warns_and_records(tmp_path: Path) -> None:
    project, spec = spec_project(tmp_path)
    m = project.import_kiro(spec)
    ready = next(t for t in m.tasks if t.status == "todo" and not t.depends_on)
    result = CliRunner(mix_stderr=False).invoke(
        cli, ["-C", str(tmp_path), "task", "start", f"1/{ready.id.split('-')[1]}"])
    assert result.exit_code == 0
    assert "milestone: warning:" in result.stderr and "MS710" in result.stderr
    started = [e for e in project.store.events() if e["event_type"] == "task_started"][-1]
    assert started["details"]["warnings"][0].startswith("MS710")


def test_kiro_rules_find_spec_problems(tmp_path: Path) -> None:
    project, spec = spec_project(tmp_path)
    m = project.import_kiro(spec, policy="mandatory")
    report = project.validate(m.id, ("kiro",))
    codes = {f["code"] for f in report["findings"]}
    assert {"MS703", "MS706", "MS707"} <= codes
    ears = next(f for f in report["findings"] if f["code"] == "MS703")
    line = ears["line"]
    text = (spec / "requirements.md").read_text().splitlines()[line - 1]
    assert "should be fast" in text  # the location points at the criterion
    (spec / "design.md").unlink()
    project.review(m.id, "requirements", "approve")
    assert "MS704" in {f["code"] for f in project.validate(m.id, ("kiro",))["findings"]}
    shutil.rmtree(spec)
    assert "MS701" in {f["code"] for f in project.validate(m.id, ("kiro",))["findings"]}


def test_cli_import_export_review(tmp_path: Path) -> None:
    spec = tmp_path / ".kiro" / "specs" / "offline-sync"
    shutil.copytree(FIXTURE, spec)
    runner = CliRunner(mix_stderr=False)

    def run(*args: str) -> str:
        result = runner.invoke(cli, ["-C", str(tmp_path), *args])
        assert result.exit_code == 0, result.stderr
        return result.output

    run("init")
    out = json.loads(run("import", "kiro", str(spec), "--json"))
    assert out["milestone"]["workflow"] == "kiro"
    assert run("export", "kiro", "1") == (spec / "tasks.md").read_text()
    dest = tmp_path / "out.md"
    run("export", "kiro", "1", "--to", str(dest))
    assert dest.read_text() == (spec / "tasks.md").read_text()
    assert "requirements gate pending" in run("review", "--pending")
    assert "gate approved" in run("review", "1", "--approve", "requirements", "-m", "ok")
    bad = runner.invoke(cli, ["-C", str(tmp_path), "review", "1"])
    assert bad.exit_code == 2

"""Templates and quick-start through the CLI, non-interactively for each project type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from milestones.cli import cli
from milestones.project import Project

REPOS: dict[str, dict[str, str]] = {
    "api": {"pyproject.toml": '[project]\nname = "svc"\ndependencies = ["fastapi>=0.100"]\n'},
    "frontend": {"package.json": json.dumps({"dependencies": {"react": "^18", "vite": "^5"}})},
    "feature": {"Cargo.toml": '[package]\nname = "tool"\nversion = "0.1.0"\n',
                "go.mod": "module example.com/x\n\ngo 1.22\n"},
    "research": {"analysis.ipynb": json.dumps({"cells": [], "nbformat": 4})},
    "documentation": {"mkdocs.yml": "site_name: Docs\n", "docs/index.md": "# Hi\n"},
    "kiro-spec": {".kiro/specs/login/requirements.md": "# Requirements\n"},
    "personal": {},
}


def invoke(cwd: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["-C", str(cwd), *args])
    return result.exit_code, result.output, result.stderr


@pytest.mark.parametrize("template", sorted(REPOS))
def test_quickstart_detects_each_project_type(tmp_path: Path, template: str) -> None:
    for rel, text in REPOS[template].items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    args = ["quickstart", "--yes", "--title", "First", "--json"]
    if template == "kiro-spec":
        args += ["--var", "feature=login"]
    code, out, err = invoke(tmp_path, *args)
    assert code == 0, err
    data = json.loads(out)
    assert data["template"] == template
    m = Project.open(tmp_path).milestone("1")
    assert m.title == "First" and m.template and m.template["name"] == template
    assert m.due_date and m.tasks and all(t.phase for t in m.tasks)
    assert Project.open(tmp_path).validate(types=("quick",))["ok"]


def test_quickstart_refuses_a_missing_required_variable(tmp_path: Path) -> None:
    code, _out, err = invoke(tmp_path, "quickstart", "--yes", "--template", "release")
    assert code == 4 and "--var version=" in err
    assert not (tmp_path / ".milestones").exists()


def test_template_list_show_and_plan(tmp_path: Path) -> None:
    Project.init(tmp_path)
    code, out, _ = invoke(tmp_path, "template", "list", "--json")
    names = {t["name"] for t in json.loads(out)["templates"]}
    assert {"personal", "team", "api", "frontend", "bugfix", "feature", "release",
            "research", "kiro-spec"} <= names
    code, out, _ = invoke(tmp_path, "template", "show", "bugfix")
    assert code == 0 and "phase reproduce" in out
    code, _, err = invoke(tmp_path, "template", "show", "bugfx")
    assert code == 3 and "bugfix" in err
    code, out, err = invoke(tmp_path, "plan", "--template", "bugfix", "--var",
                            "bug=Login loop", "--start", "2026-12-01", "--json")
    assert code == 0, err
    m = json.loads(out)["milestones"][0]
    assert "Login loop" in m["title"] and m["start_date"] == "2026-12-01"
    assert m["due_date"] == "2026-12-03"


def test_user_template_overrides_and_quick_rules(tmp_path: Path) -> None:
    project, _ = Project.init(tmp_path)
    (project.root / "templates").mkdir()
    (project.root / "templates" / "spike.yaml").write_text(
        "description: A short spike\nduration: 3\nphases:\n"
        "  - name: try\n    tasks:\n      - title: Try {{ idea }}\n        estimate: 2\n"
        "  - name: decide\n    tasks:\n      - {title: Write it up, estimate: 1}\n"
        "variables:\n  - {name: idea, required: true}\n"
        "requires:\n  phases: [try, decide]\n  min_tasks: 2\n")
    code, out, err = invoke(tmp_path, "plan", "--template", "spike", "--var", "idea=caching",
                            "--json")
    assert code == 0, err
    assert json.loads(out)["milestones"][0]["tasks"][0]["title"] == "Try caching"
    assert Project.open(tmp_path).validate(types=("quick",))["ok"]
    invoke(tmp_path, "task", "skip", "1/2")
    report = Project.open(tmp_path).validate(types=("quick",))
    assert [f["code"] for f in report["findings"]] == ["MS602"] * len(report["findings"])
    assert report["findings"] and not report["ok"]
    (project.root / "templates" / "spike.yaml").unlink()
    report = Project.open(tmp_path).validate(types=("quick",))
    assert [f["code"] for f in report["findings"]] == ["MS601"]

"""Project detection on fake repositories built in tmp_path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from milestones.errors import InvalidInput
from milestones.plans import detect, detect_langs
from milestones.plans.detect import detect_project
from milestones.plans.templates import builtin_templates


def put(root: Path, rel: str, text: str = "") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def package_json(deps: dict[str, str] | None = None, dev: dict[str, str] | None = None) -> str:
    return json.dumps({"name": "app", "dependencies": deps or {},
                       "devDependencies": dev or {}})


def check(d: detect.Detection) -> None:
    """Every detection suggests a real template and serialises to JSON."""
    assert d.template in builtin_templates()
    assert d.reason
    json.dumps(d.to_dict())
    for s in d.signals:
        assert s.path and s.reason and str(s).startswith(s.path)


def test_empty_directory_is_unknown(tmp_path: Path) -> None:
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template) == ("unknown", "personal")
    assert d.signals == [] and d.languages == [] and not d.truncated


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        detect_project(tmp_path / "missing")
    with pytest.raises(InvalidInput):
        detect_project(put(tmp_path, "file.txt"))


# ------------------------------------------------------------------- python


def test_pyproject_fastapi_is_api(tmp_path: Path) -> None:
    put(tmp_path, "pyproject.toml",
        '[project]\nname = "svc"\ndependencies = ["fastapi>=0.100", "uvicorn[standard]"]\n')
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template) == ("api", "api")
    assert d.languages == ["python"] and d.frameworks == ["fastapi"]
    fw = next(s for s in d.signals if s.kind == "framework")
    assert fw.path == "pyproject.toml" and "backend" in fw.reason


def test_requirements_django_is_api(tmp_path: Path) -> None:
    put(tmp_path, "requirements.txt", "# web\nDjango==5.0  # pinned\n-r base.txt\n-e .\n")
    d = detect_project(tmp_path)
    assert d.template == "api" and "django" in d.frameworks


def test_setup_py_flask_is_read_not_run(tmp_path: Path) -> None:
    put(tmp_path, "setup.py", "raise SystemExit('never run me')\n"
        "setup(name='x', install_requires=['Flask>=2', 'requests'])\n")
    d = detect_project(tmp_path)
    assert d.template == "api" and d.frameworks == ["flask"]


def test_poetry_and_pipfile(tmp_path: Path) -> None:
    put(tmp_path, "pyproject.toml",
        '[tool.poetry.dependencies]\npython = "^3.11"\nstarlette = "*"\n')
    assert detect_project(tmp_path).frameworks == ["starlette"]
    (tmp_path / "pyproject.toml").unlink()
    put(tmp_path, "Pipfile", '[packages]\nsanic = "*"\n[dev-packages]\nflask = "*"\n')
    d = detect_project(tmp_path)
    assert d.frameworks == ["sanic"] and d.template == "api"


def test_dev_only_framework_does_not_count(tmp_path: Path) -> None:
    put(tmp_path, "pyproject.toml",
        '[project]\nname = "lib"\ndependencies = ["click"]\n'
        '[project.optional-dependencies]\ntest = ["flask"]\ndocs = ["mkdocs-material"]\n')
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template) == ("software", "feature")
    assert "flask" not in d.frameworks
    assert "click" in d.frameworks and "mkdocs" in d.frameworks


def test_plain_python_library_is_feature(tmp_path: Path) -> None:
    put(tmp_path, "pyproject.toml", '[project]\nname = "lib"\n')
    d = detect_project(tmp_path)
    assert (d.project_type, d.template, d.languages) == ("software", "feature", ["python"])


def test_broken_pyproject_is_tolerated(tmp_path: Path) -> None:
    put(tmp_path, "pyproject.toml", "[project\nname = ")
    d = detect_project(tmp_path)
    check(d)
    assert d.languages == ["python"] and d.template == "feature"
    assert any(s.kind == "note" and "not valid TOML" in s.reason for s in d.signals)


# --------------------------------------------------------------- javascript


@pytest.mark.parametrize("deps, dev, framework", [
    ({"react": "^18", "react-dom": "^18"}, {}, "react"),
    ({}, {"vue": "^3"}, "vue"),
    ({}, {"svelte": "^4", "@sveltejs/kit": "^2"}, "svelte"),
    ({"next": "14", "react": "18"}, {}, "next.js"),
    ({"@angular/core": "17"}, {}, "angular"),
])
def test_package_json_frontends(tmp_path: Path, deps: dict[str, str], dev: dict[str, str],
                                framework: str) -> None:
    put(tmp_path, "package.json", package_json(deps, dev))
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template) == ("frontend", "frontend")
    assert framework in d.frameworks and "javascript" in d.languages


def test_package_json_express_is_api(tmp_path: Path) -> None:
    put(tmp_path, "package.json", package_json({"express": "^4"}, {"typescript": "^5"}))
    d = detect_project(tmp_path)
    assert (d.project_type, d.template) == ("api", "api")
    assert d.languages == ["javascript", "typescript"]


def test_monorepo_frontend_and_backend_is_fullstack(tmp_path: Path) -> None:
    put(tmp_path, "package.json", json.dumps({"name": "mono", "workspaces": ["apps/*"]}))
    put(tmp_path, "apps/web/package.json", package_json({"react": "18"}))
    put(tmp_path, "apps/api/package.json", package_json({"fastify": "4"}))
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template) == ("fullstack", "feature")
    assert {"react", "fastify"} <= set(d.frameworks)
    assert {s.path for s in d.signals if s.kind == "framework"} == {
        "apps/web/package.json", "apps/api/package.json"}


def test_django_with_react_is_fullstack(tmp_path: Path) -> None:
    put(tmp_path, "requirements.txt", "django\n")
    put(tmp_path, "frontend/package.json", package_json({"vue": "3"}))
    assert detect_project(tmp_path).project_type == "fullstack"


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\"just a string\"", ""])
def test_broken_package_json_is_tolerated(tmp_path: Path, text: str) -> None:
    put(tmp_path, "package.json", text)
    d = detect_project(tmp_path)
    check(d)
    assert d.languages == ["javascript"] and d.frameworks == []
    assert any(s.kind == "note" for s in d.signals)


def test_package_json_with_odd_dependency_fields(tmp_path: Path) -> None:
    put(tmp_path, "package.json", json.dumps({"dependencies": ["react"], "devDependencies": 3}))
    d = detect_project(tmp_path)
    check(d)
    assert d.frameworks == []


def test_non_utf8_and_huge_files_are_skipped(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "package.json").write_bytes(b'{"dependencies": {"react": "\xff"}}')
    d = detect_project(tmp_path)
    assert any("not UTF-8" in s.reason for s in d.signals) and d.frameworks == []
    monkeypatch.setattr(detect_langs, "MAX_FILE_BYTES", 10)
    put(tmp_path, "package.json", package_json({"react": "18"}))
    d = detect_project(tmp_path)
    assert any("too big" in s.reason for s in d.signals) and d.frameworks == []


# ----------------------------------------------------------------- rust, go


def test_cargo_axum_is_api(tmp_path: Path) -> None:
    put(tmp_path, "Cargo.toml",
        '[package]\nname = "svc"\n[dependencies]\naxum = "0.7"\ntokio = { version = "1" }\n')
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template, d.languages) == ("api", "api", ["rust"])
    assert d.frameworks == ["axum"]


def test_cargo_cli_and_workspace(tmp_path: Path) -> None:
    put(tmp_path, "Cargo.toml", '[workspace]\nmembers = ["cli"]\n'
        '[workspace.dependencies]\nclap = "4"\n')
    d = detect_project(tmp_path)
    assert (d.project_type, d.template) == ("software", "feature")
    assert d.frameworks == ["clap"]


def test_cargo_leptos_is_frontend_and_broken_cargo_tolerated(tmp_path: Path) -> None:
    put(tmp_path, "Cargo.toml", '[dependencies]\nleptos = "0.6"\n')
    assert detect_project(tmp_path).template == "frontend"
    put(tmp_path, "Cargo.toml", "[dependencies\n")
    d = detect_project(tmp_path)
    check(d)
    assert d.languages == ["rust"] and d.template == "feature"


def test_go_mod_block_and_single_requires(tmp_path: Path) -> None:
    put(tmp_path, "go.mod", "module example.com/svc\n\ngo 1.22\n\n"
        "require (\n\tgithub.com/gin-gonic/gin v1.9.1 // indirect\n"
        "\tgolang.org/x/text v0.14.0\n)\n")
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template, d.languages) == ("api", "api", ["go"])
    assert d.frameworks == ["gin"]
    put(tmp_path, "go.mod", "module x\nrequire github.com/gofiber/fiber/v2 v2.52.0\n")
    assert detect_project(tmp_path).frameworks == ["fiber"]
    put(tmp_path, "go.mod", "module x\nrequire github.com/spf13/cobra v1.8.0\n")
    assert detect_project(tmp_path).template == "feature"


# ---------------------------------------------------------- research, docs


def test_notebooks_are_research(tmp_path: Path) -> None:
    put(tmp_path, "requirements.txt", "pandas\nnumpy\n")
    for i in range(5):
        put(tmp_path, f"notebooks/analysis-{i}.ipynb", "{}")
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template) == ("research", "research")
    sig = next(s for s in d.signals if s.kind == "notebooks")
    assert "5 Jupyter notebooks" in sig.reason and "and 2 more" in sig.reason


def test_jupyter_dependency_is_research(tmp_path: Path) -> None:
    put(tmp_path, "pyproject.toml", '[project]\nname = "study"\ndependencies = ["jupyterlab"]\n')
    assert detect_project(tmp_path).template == "research"


def test_dvc_pipeline_is_research(tmp_path: Path) -> None:
    put(tmp_path, "dvc.yaml", "stages: {}\n")
    assert detect_project(tmp_path).template == "research"


def test_notebooks_in_docs_are_not_research(tmp_path: Path) -> None:
    put(tmp_path, "pyproject.toml", '[project]\nname = "lib"\n')
    put(tmp_path, "docs/conf.py", "project = 'lib'\n")
    put(tmp_path, "docs/tutorial.ipynb", "{}")
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template) == ("software", "feature")
    assert any(s.kind == "docs" and s.name == "sphinx" for s in d.signals)


def test_web_app_wins_over_notebooks(tmp_path: Path) -> None:
    put(tmp_path, "requirements.txt", "flask\n")
    put(tmp_path, "explore.ipynb", "{}")
    d = detect_project(tmp_path)
    assert d.template == "api" and any(s.kind == "notebooks" for s in d.signals)


def test_mkdocs_site_is_documentation(tmp_path: Path) -> None:
    put(tmp_path, "mkdocs.yml", "site_name: Handbook\n")
    put(tmp_path, "requirements.txt", "mkdocs-material\n")
    put(tmp_path, "docs/index.md", "# Hi\n")
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template) == ("documentation", "documentation")


def test_docusaurus_site_is_documentation_not_frontend(tmp_path: Path) -> None:
    put(tmp_path, "docusaurus.config.js", "module.exports = {}\n")
    put(tmp_path, "package.json", package_json(
        {"@docusaurus/core": "3", "react": "18", "react-dom": "18"}))
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template) == ("documentation", "documentation")
    react = next(s for s in d.signals if s.name == "react")
    assert "docusaurus docs site" in react.reason


def test_docs_site_in_a_code_repo_is_feature(tmp_path: Path) -> None:
    put(tmp_path, "Cargo.toml", '[package]\nname = "x"\n')
    put(tmp_path, "book.toml", "[book]\n")
    put(tmp_path, "docs/.vitepress/config.js", "")
    d = detect_project(tmp_path)
    assert d.template == "feature"
    assert {s.name for s in d.signals if s.kind == "docs"} == {"mdbook", "vitepress"}


def test_docs_requirements_do_not_make_code(tmp_path: Path) -> None:
    put(tmp_path, "docs/requirements.txt", "sphinx\nflask\n")
    put(tmp_path, "docs/conf.py", "")
    d = detect_project(tmp_path)
    assert d.template == "documentation" and "flask" not in d.frameworks


# --------------------------------------------------------------------- kiro


def test_kiro_specs_win(tmp_path: Path) -> None:
    put(tmp_path, "package.json", package_json({"react": "18"}))
    put(tmp_path, ".kiro/specs/login/requirements.md", "# Requirements\n")
    put(tmp_path, ".kiro/specs/search/tasks.md", "- [ ] 1. Do it\n")
    (tmp_path / ".kiro/specs/empty").mkdir()
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template) == ("kiro-spec", "kiro-spec")
    sig = next(s for s in d.signals if s.kind == "kiro")
    assert sig.path == ".kiro/specs" and "2 Kiro specs: login, search" in sig.reason
    assert "react" in d.frameworks  # the rest is still reported


def test_empty_kiro_dir_does_not_count(tmp_path: Path) -> None:
    (tmp_path / ".kiro" / "specs").mkdir(parents=True)
    put(tmp_path, ".kiro/steering/product.md", "x")
    assert detect_project(tmp_path).template == "personal"


# ------------------------------------------------------------ bounded walk


def test_dependency_and_hidden_dirs_are_skipped(tmp_path: Path) -> None:
    put(tmp_path, "pyproject.toml", '[project]\nname = "lib"\n')
    put(tmp_path, "node_modules/react/package.json", package_json({"express": "4"}))
    put(tmp_path, ".venv/lib/site/package.json", package_json({"express": "4"}))
    put(tmp_path, ".git/package.json", package_json({"express": "4"}))
    put(tmp_path, "tests/fixtures/app/package.json", package_json({"react": "18"}))
    put(tmp_path, "examples/demo.ipynb", "{}")
    put(tmp_path, "pkg.egg-info/requires.txt", "")
    d = detect_project(tmp_path)
    check(d)
    assert (d.project_type, d.template, d.languages) == ("software", "feature", ["python"])


def test_depth_is_bounded(tmp_path: Path) -> None:
    put(tmp_path, "a/b/c/package.json", package_json({"react": "18"}))  # depth 3: seen
    assert detect_project(tmp_path).template == "frontend"
    (tmp_path / "a/b/c/package.json").unlink()
    put(tmp_path, "a/b/c/d/package.json", package_json({"react": "18"}))  # too deep
    assert detect_project(tmp_path).template == "personal"


def test_entry_limit_truncates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "MAX_ENTRIES", 50)
    put(tmp_path, "Cargo.toml", '[package]\nname = "x"\n')
    for i in range(100):
        put(tmp_path, f"src/f{i:03}.rs")
    d = detect_project(tmp_path)
    check(d)
    assert d.truncated and d.languages == ["rust"]
    assert any(s.kind == "note" and "stopped after 50" in s.reason for s in d.signals)


def test_wide_tree_is_fast(tmp_path: Path) -> None:
    put(tmp_path, "package.json", package_json({"vue": "3"}))
    for i in range(30):
        for j in range(30):
            put(tmp_path, f"node_modules/p{i}/sub{j}/package.json", "{}")
        put(tmp_path, f"src/components/c{i}.vue")
    started = time.perf_counter()
    d = detect_project(tmp_path)
    assert time.perf_counter() - started < 1.0
    assert d.template == "frontend"


def test_symlink_loops_are_not_followed(tmp_path: Path) -> None:
    put(tmp_path, "go.mod", "module x\n")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    d = detect_project(tmp_path)
    assert d.languages == ["go"]


def test_package_json_dependencies_in_order_each_once(tmp_path: Path) -> None:
    """A package listed in several dependency fields counts once, where it first appears
    (dependencies, devDependencies, peerDependencies, optionalDependencies)."""
    put(tmp_path, "package.json", json.dumps({
        "dependencies": {"express": "4", "react": "18"},
        "devDependencies": {"react": "18", "vue": "3", "express": "4"},
        "peerDependencies": {"svelte": "4", "vue": "3"},
        "optionalDependencies": {"typescript": "5", "react": "18"},
    }))
    d = detect_project(tmp_path)
    check(d)
    assert d.frameworks == ["express", "react", "vue", "svelte"]
    assert [s.name for s in d.signals if s.kind == "framework"] == d.frameworks
    assert d.languages == ["javascript", "typescript"]


def test_package_json_of_many_dependencies(tmp_path: Path) -> None:
    """100,000 dependencies (1.4 MB; de-duplicated through a dict, not a list): found."""
    deps = {f"pkg-{i}": "1" for i in range(100_000)} | {"fastify": "4"}
    dev = {f"pkg-{i}": "1" for i in range(0, 100_000, 100)}
    put(tmp_path, "package.json", json.dumps({"dependencies": deps, "devDependencies": dev}))
    d = detect_project(tmp_path)
    assert (d.project_type, d.frameworks) == ("api", ["fastify"])

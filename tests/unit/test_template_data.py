"""The built-in templates are YAML package data: shipped in the wheel, read lazily with
importlib.resources, and checked by the same code as a user's template file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest
from click.testing import CliRunner

from milestones.cli import cli
from milestones.plans import templates as tpl
from milestones.project import Project

REPO = Path(__file__).resolve().parents[2]
DATA = files("milestones.plans").joinpath(tpl.DATA_DIR)


@pytest.fixture(autouse=True)
def _no_user_templates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def _invoke(cwd: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["-C", str(cwd), *args])
    return result.exit_code, result.output, result.stderr


def test_the_package_holds_exactly_the_builtin_names_as_yaml() -> None:
    names = sorted(r.name for r in DATA.iterdir() if not r.name.startswith("__"))
    assert names == sorted(f"{n}.yaml" for n in tpl.BUILTIN_NAMES)


@pytest.mark.parametrize("name", tpl.BUILTIN_NAMES)
def test_every_builtin_file_passes_the_user_template_schema(name: str, tmp_path: Path) -> None:
    text = DATA.joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    assert text.startswith("# Built-in template")  # commented, block-style, human-readable
    # The very same file, dropped in as a user template, loads through the user path ...
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    as_user = tpl.load_template_file(path).to_dict()
    as_builtin = tpl.builtin_templates()[name].to_dict()
    assert as_builtin["source"] == "built-in"
    assert {**as_user, "source": "built-in"} == as_builtin
    assert as_builtin["task_count"] >= 3


def test_pyproject_ships_the_yaml_as_package_data() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["milestones.plans"]
    assert f"{tpl.DATA_DIR}/*.yaml" in globs
    src = REPO / "src" / "milestones" / "plans" / tpl.DATA_DIR
    assert sorted(p.stem for p in src.glob("*.yaml")) == sorted(tpl.BUILTIN_NAMES)


def test_a_built_wheel_carries_the_templates_and_works_installed(tmp_path: Path) -> None:
    """Build the wheel from a copy of the tree (the build leaves nothing in the checkout),
    install it into a bare directory and list the templates from there."""
    tree = tmp_path / "tree"
    shutil.copytree(REPO / "src", tree / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, tree / name)
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(tree)],
        capture_output=True, text=True, timeout=300, check=False)
    if build.returncode != 0:  # no setuptools to build with (offline, no cache)
        pytest.skip(f"cannot build the wheel here: {build.stderr.strip()[-300:]}")
    (wheel,) = wheels.glob("milestone-*.whl")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, install.stderr
    data = target / "milestones" / "plans" / tpl.DATA_DIR
    shipped = sorted(p.stem for p in data.glob("*.yaml"))
    assert shipped == sorted(tpl.BUILTIN_NAMES)
    probe = ("import milestones, milestones.plans.templates as t; print(milestones.__file__); "
             "print(' '.join(sorted(t.builtin_templates())))")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, "
                          f"{str(target)!r}); {probe}"],
                         capture_output=True, text=True, timeout=60, env=env, check=True)
    where, names = out.stdout.splitlines()
    assert where.startswith(str(target))
    assert names.split() == sorted(tpl.BUILTIN_NAMES)


def test_status_does_not_read_or_import_the_templates(tmp_path: Path) -> None:
    Project.init(tmp_path)
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "milestones", "-C",
                          str(tmp_path), "status"], capture_output=True, text=True,
                         timeout=60, check=True)
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()}
    assert "milestones.model" in imported  # the probe sees the CLI's imports
    assert not imported & {"milestones.plans.templates", "importlib.resources", "yaml"}


# ----------------------------------------------------------- a broken built-in

_API = DATA.joinpath("api.yaml").read_text(encoding="utf-8")
BROKEN = {
    "yaml syntax": _API.replace("duration: 21", "duration: [21"),
    "unknown field": _API.replace("    days: 4\n", "    dayz: 4\n"),
    "unknown placeholder": _API.replace('"{{ service }} API"', '"{{ servce }} API"'),
    "bad estimate": _API.replace("estimate: 3\n", "estimate: lots\n", 1),
    "empty": "",
}


class _Resource:
    def __init__(self, text: str) -> None:
        self.text = text

    def read_bytes(self) -> bytes:
        return self.text.encode("utf-8")


def _break_builtin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    real = tpl.builtin_resource
    monkeypatch.setattr(tpl, "_BUILTINS", {})
    monkeypatch.setattr(tpl, "builtin_resource",
                        lambda name: _Resource(text) if name == "api" else real(name))


@pytest.mark.parametrize("case", sorted(BROKEN))
@pytest.mark.parametrize("command", [("template", "show", "api"), ("template", "list"),
                                     ("plan", "--template", "api", "Orders")])
def test_a_broken_builtin_is_reported_like_a_broken_user_template(
        case: str, command: tuple[str, ...], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = BROKEN[case]
    assert text != _API
    # The same text as a project template: the user-template report to compare with.
    user_dir, builtin_dir = tmp_path / "user", tmp_path / "builtin"
    for d in (user_dir, builtin_dir):
        d.mkdir()
        Project.init(d)
    user_file = user_dir / ".milestones" / "templates" / "api.yaml"
    user_file.parent.mkdir(parents=True, exist_ok=True)
    user_file.write_text(text, encoding="utf-8")
    ucode, _, uerr = _invoke(user_dir, *command)

    _break_builtin(monkeypatch, text)
    bcode, bout, berr = _invoke(builtin_dir, *command)

    assert ucode == bcode == 4, (uerr, berr)
    assert tpl._data_path("api").endswith(f"milestones/plans/{tpl.DATA_DIR}/api.yaml")
    where = f"built-in template api ({tpl._data_path('api')})"
    assert berr.count("\n") == 1 and "Traceback" not in berr
    assert berr.startswith(f"milestone: error: {where}"), berr
    assert berr.replace(where, "FILE") == uerr.replace(str(user_file), "FILE")
    assert bout == ""
    monkeypatch.undo()
    code, out, _ = _invoke(builtin_dir, "list", "--json")
    assert code == 0 and '"milestones": []' in out  # nothing was created


def test_a_broken_builtin_spoils_only_itself(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    _break_builtin(monkeypatch, BROKEN["unknown field"])
    Project.init(tmp_path)
    code, out, _ = _invoke(tmp_path, "template", "show", "team")
    assert code == 0 and "team" in out
    with pytest.raises(tpl.InvalidInput, match=r"phases\[1\]: unknown field\(s\) dayz"):
        tpl.get_template(None, "api")

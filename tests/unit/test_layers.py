"""The layer contracts (pyproject.toml, ARCHITECTURE.md) hold, and they bite.

``lint-imports`` runs in CI; here it runs on the tree as it is (it must pass) and on
copies of the package, each with one deliberate violation: an arrow pointing up,
a door reaching past the service layer, an agent opening a backend's module. Each
must fail, naming the contract that was broken and the import that broke it, so a
contract that silently checks nothing (a typo in a module name, a wrong root
package) fails this test too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import milestones

SRC = Path(milestones.__file__).parent
PYPROJECT = SRC.parents[1] / "pyproject.toml"
LINT = Path(sys.executable).with_name("lint-imports")


def lint(tmp_path: Path, src_root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with our contracts, over the package found in ``src_root``."""
    env = {**os.environ, "PYTHONPATH": str(src_root)}
    return subprocess.run(
        [str(LINT), "--config", str(PYPROJECT), "--no-cache"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


def copy_with(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package where ``module`` (a path under milestones/) has ``line`` added."""
    root = tmp_path / "src"
    shutil.copytree(SRC, root / "milestones",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    target = root / "milestones" / module
    target.write_text(target.read_text("utf-8") + f"\n{line}\n", "utf-8")
    return root


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = lint(tmp_path, SRC.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout
    # and the copy used below is the package being checked, not the installed one
    copy = lint(tmp_path, copy_with(tmp_path, "errors.py", "# unchanged"))
    assert copy.returncode == 0, copy.stdout + copy.stderr


@pytest.mark.parametrize(("module", "line", "contract", "arrow"), [
    # model imports nothing of ours but errors
    ("model/refs.py", "from ..project import Project",
     "The arrows point down only", "milestones.model.refs -> milestones.project"),
    # storage never imports the service layer or a door (inside a function counts too)
    ("storage/fsutil.py", "def _late():\n    from ..cli import cli",
     "The arrows point down only", "milestones.storage.fsutil -> milestones.cli"),
    # the service layer never imports a door, an agent or an op
    ("project/session.py", "from ..ops import doctor",
     "The arrows point down only", "milestones.project.session -> milestones.ops.doctor"),
    # a cycle between two layers is an arrow pointing up
    ("plans/kiro.py", "from .. import validation",
     "The arrows point down only", "milestones.plans.kiro -> milestones.validation"),
    # doors import only the service layer, ui and errors
    ("cli/task.py", "from ..storage import fsutil",
     "Doors import only the service layer", "milestones.cli.task -> milestones.storage.fsutil"),
    ("cli/plan.py", "from ..model import Milestone",
     "Doors import only the service layer", "milestones.cli.plan -> milestones.model"),
    # agents and ops go through the service layer, never a backend's module
    ("agents/coord.py", "from ..storage.sqlite import DatabaseStore",
     "never a storage backend's module", "milestones.agents.coord -> milestones.storage.sqlite"),
    ("ops/migrate.py", "from ..storage import file",
     "never a storage backend's module", "milestones.ops.migrate -> milestones.storage.file"),
])
def test_a_deliberate_violation_fails_the_contract_it_breaks(
        tmp_path: Path, module: str, line: str, contract: str, arrow: str) -> None:
    result = lint(tmp_path, copy_with(tmp_path, module, line))
    assert result.returncode == 1, result.stdout + result.stderr
    out = " ".join(result.stdout.split())  # the report wraps long lines
    assert f"{contract}" in out and "BROKEN" in out
    assert arrow in out, out

"""No ``_private`` name is used across modules (ARCHITECTURE.md, "Sizes").

A leading underscore says "only this module relies on me", so a move or a rename
inside one module can never break another. Two ways to break that are checked
over the package's source: importing a private name from one of our modules, and
reaching ``something._name`` where no code in the same module defines ``_name``
(an attribute or method private to another module's class). ``self._name`` is the
class's own business, even where the class is composed of mixins in several
modules of one package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import milestones

SRC = Path(milestones.__file__).parent
# The public API of namedtuples, spelled with an underscore so it cannot clash.
ALLOWED = {"_field_defaults", "_fields", "_replace", "_asdict", "_make"}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def crossings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text("utf-8"))
    defined = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            defined.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").startswith("milestones")):
            found += [f"{path.name}:{node.lineno}: imports {a.name}"
                      for a in node.names if private(a.name)]
        elif (isinstance(node, ast.Attribute) and private(node.attr)
              and node.attr not in defined and node.attr not in ALLOWED
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_private_name_crosses_a_module() -> None:
    found = [f"{p.relative_to(SRC.parent)}: {c}"
             for p in sorted(SRC.rglob("*.py")) for c in crossings(p)]
    assert found == []


def test_the_check_sees_a_crossing(tmp_path: Path) -> None:
    sample = tmp_path / "door.py"
    sample.write_text("from ..project import _hidden\n"
                      "def f(project):\n    return project._sync()\n", "utf-8")
    assert crossings(sample) == ["door.py:1: imports _hidden",
                                 "door.py:3: project._sync"]

"""The names a script imports from ``milestones`` (its ``__all__``)."""

from __future__ import annotations

import subprocess
import sys

import milestones

EXPECTED = {
    "Agents", "Conflict", "DependencyError", "InvalidInput", "InvalidTransition", "Milestone",
    "MilestoneError", "NotFound", "PermissionDenied", "Project", "StorageError", "Store",
    "Task", "ValidationFailed", "__version__", "find_root", "open_store",
}


def test_all_is_the_expected_list_sorted() -> None:
    assert set(milestones.__all__) == EXPECTED
    assert milestones.__all__ == sorted(milestones.__all__)


def test_every_name_imports_and_is_the_defining_modules_own() -> None:
    from milestones import errors, model, project, storage
    from milestones.agents import coord

    for name in milestones.__all__:
        assert getattr(milestones, name) is not None, name
    assert milestones.Project is project.Project
    assert milestones.Milestone is model.Milestone and milestones.Store is storage.Store
    assert milestones.NotFound is errors.NotFound
    assert milestones.Agents is coord.Agents
    assert issubclass(milestones.NotFound, milestones.MilestoneError)


def test_star_import_and_unknown_names() -> None:
    namespace: dict[str, object] = {}
    exec("from milestones import *", namespace)
    assert namespace.keys() >= EXPECTED
    try:
        milestones.Nope  # noqa: B018
    except AttributeError as exc:
        assert "Nope" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_importing_the_package_loads_no_module_of_ours() -> None:
    """``milestone status`` starts by importing the package: the API names load lazily."""
    code = ("import sys, milestones; "
            "print(sorted(m for m in sys.modules if m.startswith('milestones.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"

"""milestone: a local-first milestone and task tracker for people and AI coding agents.

The Python API, for scripts::

    from milestones import Agents, Project
    project = Project.open()          # the .milestones/ project at or above the cwd
    m = project.plan("Launch", tasks=["Write docs"])
    Agents(project).ready()           # agents: ready tasks, claims, messages

The names below load on first use (module ``__getattr__``), so ``import milestones``
stays as light as the CLI's start-up needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it
_API = {
    "Project": "project", "find_root": "project", "Agents": "agents.coord",
    "Milestone": "model", "Task": "model",
    "Store": "storage", "open_store": "storage",
    **dict.fromkeys(("MilestoneError", "NotFound", "InvalidInput", "ValidationFailed",
                     "InvalidTransition", "DependencyError", "PermissionDenied", "Conflict",
                     "StorageError"), "errors"),
}

__all__ = [
    "Agents",
    "Conflict",
    "DependencyError",
    "InvalidInput",
    "InvalidTransition",
    "Milestone",
    "MilestoneError",
    "NotFound",
    "PermissionDenied",
    "Project",
    "StorageError",
    "Store",
    "Task",
    "ValidationFailed",
    "__version__",
    "find_root",
    "open_store",
]

if TYPE_CHECKING:
    from .agents.coord import Agents
    from .errors import (
        Conflict,
        DependencyError,
        InvalidInput,
        InvalidTransition,
        MilestoneError,
        NotFound,
        PermissionDenied,
        StorageError,
        ValidationFailed,
    )
    from .model import Milestone, Task
    from .project import Project, find_root
    from .storage import Store, open_store


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'milestones' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

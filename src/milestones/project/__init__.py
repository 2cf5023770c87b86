"""The service layer: the only way data changes.

Every operation takes the writer lock, finishes any interrupted write, records
hand edits, checks the change against the model, then commits its events (the
write-ahead record) and the new snapshots as one unit, and refreshes the
session-resume record. Reads are served without the lock. Views return plain
data (the ``--json`` contract); the doors render it.

May import ``validation``, ``plans``, ``storage``, ``model``, ``ui`` and ``errors``;
never an agent, an op or a door (``Agents(project)`` builds on it, not the other
way round). See ARCHITECTURE.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..storage import BACKENDS as BACKENDS  # the doors' choice of backends (storage migrate --to)
from .access import guard
from .constants import DIRNAME, SCHEMA
from .core import find_root
from .encryption import Encryption
from .team import TeamOps
from .txn import Txn


@guard  # every write checked against the actor's role: access.OPERATIONS
class Project(TeamOps, Encryption):
    """A milestone project on disk (or in memory): every read and write goes here.

    The operations come in families, one module each, every family's class
    extending the one before it so each sees the methods it builds on:
    ``core`` (opening, state, caches) < ``unit`` (the write transaction) <
    ``plans`` (milestones) < ``tasks`` < ``specs`` (templates, Kiro, export) <
    ``reviews`` < ``checks`` (feasibility, validation) < ``views`` < ``team``
    (roles; every operation's access class is in ``access.OPERATIONS``).
    """


# ----------------------------------------------------------- the doors' API
# A door (cli/, later web/ and mcp/) imports the service layer, ui and errors only
# (the "doors" contract in pyproject.toml). What else a door needs from below, the
# vocabulary of choices and the readers of outside documents, it gets here: the
# constants now (model is loaded with the project anyway), the readers on first use,
# so a command that needs none of them pays nothing for them at start-up.
from ..model import (  # noqa: E402
    CATEGORIES,
    KIRO_GATED,
    MILESTONE_STATUSES,
    PRIORITIES,
    Task,
    add_days,
    utc_stamp,
)
from ..model.events import EVENT_TYPES  # noqa: E402
from ..model.refs import parse_milestone  # noqa: E402

_ON_FIRST_USE = {  # name -> the module that defines it
    "milestone_schema": "..model.schema",
    "all_rules": "..validation",
    "read_plan": "..plans.planfile",
    "detect_project": "..plans.detect",
    "list_templates": "..plans.templates",
    "get_template": "..plans.templates",
    # a file a door writes (the dashboard's export): a temp of its own, no link followed
    "atomic_write": "..storage.fsutil",
    # `storage migrate --url`: the PostgreSQL URL, kept outside the project (0600)
    "use_database_url": "..storage.pgconn",
}

if TYPE_CHECKING:
    from ..model.schema import milestone_schema
    from ..plans.detect import detect_project
    from ..plans.planfile import read_plan
    from ..plans.templates import get_template, list_templates
    from ..storage.fsutil import atomic_write
    from ..storage.pgconn import use_database_url
    from ..validation import all_rules


def __getattr__(name: str) -> Any:
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BACKENDS",
    "CATEGORIES",
    "DIRNAME",
    "EVENT_TYPES",
    "KIRO_GATED",
    "MILESTONE_STATUSES",
    "PRIORITIES",
    "SCHEMA",
    "Project",
    "Task",
    "Txn",
    "ValidationFailed",
    "add_days",
    "all_rules",
    "atomic_write",
    "detect_project",
    "find_root",
    "get_template",
    "list_templates",
    "milestone_schema",
    "parse_milestone",
    "read_plan",
    "use_database_url",
    "utc_stamp",
]

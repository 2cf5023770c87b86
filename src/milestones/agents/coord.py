"""Agents working one project in parallel: registry, leased claims, messages.

Every step goes through the ``Project``'s writer lock, so it is atomic on every
backend and across processes:

* **registry** (the store's ``agents`` record): an agent registers (name, kind,
  skills, pid, host) and gets an id (``agent-3``); its heartbeats renew the
  leases of everything it holds; an agent silent for longer than its lease is
  dead, and the next coordination step releases its claims (``task_requeued``).
* **claims**: ``claim`` hands the caller the best ready task (dependencies done,
  not held, skills matching, paths not overlapping a held task's, then
  priority, longest chain waiting, id) under a lease. The task's ``execution``
  record keeps the holder and a fencing token that grows with every claim of the
  task; ``complete``, ``fail`` and ``release`` with a stale token are refused.
* **messages** (the store's ``messages`` record): to an agent, a role (agent
  kind) or everyone live; an inbox holds what the addressee has not acked.

Records are not events (heartbeats would flood the log), but every step that
changes who holds what, or what was said, is one: ``agent_registered``,
``task_claimed``, ``task_released``, ``task_requeued``, ``task_failed``,
``message_sent``, ... (see ``events.EVENT_TYPES``).
"""

from __future__ import annotations

from .claims import Claims, task_prompt
from .records import (
    DEFAULTS,
    RECORDS,
    check_lease,
    check_record,
    paths_overlap,
    read_record,
    rebuild_records,
    repair_records,
    settings,
)


class Agents(Claims):
    """The coordination API of one ``Project``: ``Agents(project)``."""


__all__ = ["DEFAULTS", "RECORDS", "Agents", "check_lease", "check_record", "paths_overlap",
           "read_record", "rebuild_records", "repair_records", "settings", "task_prompt"]

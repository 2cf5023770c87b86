"""The domain model: milestones, tasks, their legal transitions and progress math.

Pure: no I/O, no clock, no environment. Callers pass ``now`` (an ISO 8601 UTC
string) and ``today`` (an ISO date) in. Every function that changes state works
on the object it is given; the service layer copies first when it needs the
old state (see ``Milestone.copy``).

The package is the pure domain: no I/O, no printing, and nothing of ours imported
but ``milestones.errors`` (the layers contract; see ARCHITECTURE.md). Its modules,
each re-exported here so ``from milestones.model import Task`` is the one spelling:
``checks`` (vocabulary, ids, input checks), ``records`` (Task, Milestone, their dict
and snapshot forms), ``progress``, ``transitions``, ``graph`` (dependencies),
``kiro`` (spec gates); beside them ``schedule``, ``refs``, ``events`` (the event
record format) and ``schema``.
"""

from __future__ import annotations

from .checks import (
    CATEGORIES,
    CLOSED_MILESTONE,
    FINISHED_TASK,
    MAX_TEXT,
    MAX_TIME_SPENT,
    MAX_TITLE,
    MILESTONE_ID_RE,
    MILESTONE_STATUSES,
    PRIORITIES,
    PRIORITY_RANK,
    TASK_ID_RE,
    TASK_REF_RE,
    TASK_STATUSES,
    add_days,
    check_choice,
    check_date,
    check_estimate,
    check_text,
    check_title,
    check_window,
    milestone_id,
    milestone_number,
    split_task_ref,
    task_number,
)
from .graph import (
    dependents_chain,
    find_cycle,
    priority_rank,
    topological_order,
)
from .kiro import (
    KIRO_DECISIONS,
    KIRO_DEFAULTS,
    KIRO_GATED,
    KIRO_PHASES,
    gate_state,
    kiro_phase,
    kiro_settings,
)
from .progress import (
    counts,
    derive_status,
    health,
    kiro_progress,
    milestone_progress,
    task_fraction,
    task_weights,
)
from .records import (
    MILESTONE_FIELDS,
    TASK_FIELDS,
    Milestone,
    Task,
    copy_record,
    parse_utc_stamp,
    utc_stamp,
)
from .transitions import (
    TASK_TRANSITIONS,
    block_task,
    complete_task,
    reopen_task,
    requeue_task,
    seconds_between,
    set_progress,
    skip_task,
    start_task,
    stop_task,
    unblock_task,
    unmet_dependencies,
)

__all__ = [
    "CATEGORIES",
    "CLOSED_MILESTONE",
    "FINISHED_TASK",
    "KIRO_DECISIONS",
    "KIRO_DEFAULTS",
    "KIRO_GATED",
    "KIRO_PHASES",
    "MAX_TEXT",
    "MAX_TIME_SPENT",
    "MAX_TITLE",
    "MILESTONE_FIELDS",
    "MILESTONE_ID_RE",
    "MILESTONE_STATUSES",
    "PRIORITIES",
    "PRIORITY_RANK",
    "TASK_FIELDS",
    "TASK_ID_RE",
    "TASK_REF_RE",
    "TASK_STATUSES",
    "TASK_TRANSITIONS",
    "Milestone",
    "Task",
    "add_days",
    "block_task",
    "check_choice",
    "check_date",
    "check_estimate",
    "check_text",
    "check_title",
    "check_window",
    "complete_task",
    "copy_record",
    "counts",
    "dependents_chain",
    "derive_status",
    "find_cycle",
    "gate_state",
    "health",
    "kiro_phase",
    "kiro_progress",
    "kiro_settings",
    "milestone_id",
    "milestone_number",
    "milestone_progress",
    "parse_utc_stamp",
    "priority_rank",
    "reopen_task",
    "requeue_task",
    "seconds_between",
    "set_progress",
    "skip_task",
    "split_task_ref",
    "start_task",
    "stop_task",
    "task_fraction",
    "task_number",
    "task_weights",
    "topological_order",
    "unblock_task",
    "unmet_dependencies",
    "utc_stamp",
]

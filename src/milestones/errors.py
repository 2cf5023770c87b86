"""Errors raised by milestone, each mapped to one documented exit code.

MilestoneError                 base; catch it to handle anything we raise
 ├── NotFound          (3)     no project, unknown milestone or task reference
 ├── InvalidInput      (4)     a value, file or argument is malformed or unsafe
 ├── ValidationFailed  (5)     the change is well formed but not allowed by the plan
 │    ├── InvalidTransition    a status change the task or milestone cannot make
 │    └── DependencyError      a missing, self or cyclic dependency, or unmet ones
 ├── PermissionDenied  (6)     the actor's role does not allow the operation
 ├── Conflict          (7)     the project is busy (writer lock) or the state moved on
 └── StorageError      (8)     the disk said no: read-only, full, unreadable
      └── LogTampered          `milestone audit`: an event of the log does not verify
"""

from __future__ import annotations


class MilestoneError(Exception):
    """Base class: a message for the user and the process exit code."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} — {self.hint}"
        return self.message


class NotFound(MilestoneError):
    exit_code = 3


class InvalidInput(MilestoneError):
    exit_code = 4


class ValidationFailed(MilestoneError):
    exit_code = 5


class InvalidTransition(ValidationFailed):
    pass


class DependencyError(ValidationFailed):
    pass


class PermissionDenied(MilestoneError):
    exit_code = 6


class Conflict(MilestoneError):
    exit_code = 7


class StorageError(MilestoneError):
    exit_code = 8


class LogTampered(StorageError):
    """The event log's hash chain breaks (``milestone audit``): ``details`` names the
    first event that does not verify (file, line, event_id, kind, problem); a ``--json``
    error carries it as ``details``."""

    def __init__(self, message: str, *, hint: str | None = None,
                 details: dict[str, object] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.details = details or {}


# The hint of a damaged coordination record (agents, messages): the store raises it on
# text that is not a record, the agents layer on a record that is not sound.
RECORD_HINT = ("restore it from a backup (`milestone restore PATH`), or run `milestone doctor "
               "--repair`: it sets the damaged record aside and rebuilds it from the event log, "
               "never reusing an id")


EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "unexpected internal error (please report it, with --debug output)",
    2: "usage error: unknown command or option, missing argument",
    3: "not found: no .milestones/ project, or an unknown milestone/task reference",
    4: "invalid input: bad value, malformed or unsafe file",
    5: "validation failed: illegal transition, dependency problem",
    6: "permission denied (also: `execute` commands not approved on this machine)",
    7: "conflict: the project is busy (writer lock) or changed underneath",
    8: "storage error: read-only directory, disk full, unreadable data; `audit` found a "
       "tampered, missing or reordered event",
    9: "`execute` ended with tasks left blocked or failed",
    130: "interrupted (Ctrl-C or SIGTERM)",
}

ERROR_KINDS: dict[int, str] = {
    1: "internal",
    2: "usage",
    3: "not_found",
    4: "invalid_input",
    5: "validation_failed",
    6: "permission_denied",
    7: "conflict",
    8: "storage_error",
    130: "interrupted",
}
"""The ``kind`` of a ``--json`` error (``{"schema": 1, "error": {"code", "kind", ...}}``) by
exit code; a code not listed is ``internal``. A declined confirmation (exit 1) is
``declined``."""


def error_kind(code: int) -> str:
    return ERROR_KINDS.get(code, "internal")

"""What a command prints and how it fails, without click: shared by the click commands
(``cli/group.py``) and the fast path of the read commands (``cli/fast.py``), so both
print the same text, the same error lines and exit codes, and record the same metrics.

A command's project is handed in as a function that opens it (``get``): a command that
never needs it (``--json``, ``--ui`` given) never opens it for the choice of output.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from ..errors import MilestoneError, StorageError
from ..ui import inert, inert_data

UI_LEVELS = ("simple", "rich")
MULTILINE = frozenset({"description"})  # view keys whose text keeps its line breaks


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM on its way to ``main``, past click, which would print
    "Aborted!" and exit 1 instead of 130."""


class Failure(NamedTuple):
    """An error on its way out: one line (or a JSON object) and its exit code."""

    message: str
    code: int
    hint: str | None = None
    kind: str | None = None
    details: dict[str, Any] | None = None  # more, for --json (audit: the bad event)

    def text(self, as_json: bool) -> str:
        """The line on stderr: ``milestone: error: …``, or with ``as_json`` the JSON error
        object scripts read, ``{"schema": 1, "error": {"code", "kind", "message", "hint"}}``."""
        if as_json:
            import json

            from ..errors import error_kind

            error = {"code": self.code, "kind": self.kind or error_kind(self.code),
                     "message": self.message, "hint": self.hint}
            if self.details:
                error["details"] = self.details
            return json.dumps({"schema": 1, "error": error}, ensure_ascii=False)
        line = f"{self.message} — {self.hint}" if self.hint else self.message
        # Text people wrote (a title, a reference) may be quoted: shown inert, the JSON
        # form above keeps it exact.
        return f"milestone: error: {inert(line)}"


def echo(text: str, *, err: bool = False) -> None:
    """One line (or several) and a newline, on stdout or stderr, flushed."""
    stream = sys.stderr if err else sys.stdout
    if stream is None:  # started with the stream closed: nothing to print to
        return
    stream.write(text + "\n")
    stream.flush()


def wants_json(words: list[str]) -> bool:
    """The command line asks for --json (before any ``--``)."""
    for word in words:
        if word == "--":
            return False
        if word == "--json":
            return True
    return False


def debug() -> bool:
    return os.environ.get("MILESTONE_DEBUG", "") not in ("", "0")


def failure(exc: BaseException, as_json: bool) -> Failure | None:
    """The line an exception leaves as, or None when it is a bug to show as a traceback
    (the command line did not ask for JSON, or ``--debug``)."""
    if debug():
        return None
    if isinstance(exc, MilestoneError):
        return Failure(exc.message, exc.exit_code, exc.hint,
                       details=getattr(exc, "details", None))
    if isinstance(exc, PermissionError):
        err: MilestoneError = StorageError(
            f"cannot write {exc.filename or 'the project'}: {exc.strerror}",
            hint="check the directory's permissions")
        return failure(err, as_json)
    if isinstance(exc, OSError):
        err = StorageError(f"{exc.filename or 'disk'}: {exc.strerror or exc}",
                           hint="check the path, permissions and free space")
        return failure(err, as_json)
    damaged = damaged_database(exc)
    if damaged is not None:
        return failure(damaged, as_json)
    if not as_json:
        return None
    return Failure(f"internal error: {exc!r}", 1, "please report it, with the --debug output")


def damaged_database(exc: BaseException) -> StorageError | None:
    """SQLite's error for a database it cannot read (a damaged or foreign file) as the
    storage error it is; None for anything else. sqlite3 is only looked up, never
    imported: a command that did not open a database cannot have raised its error."""
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is None or not isinstance(exc, sqlite3.DatabaseError):
        return None
    return StorageError(f"the project's database cannot be read: {exc}",
                        hint="run `milestone doctor`, or restore a backup (`milestone restore`)")


def choose_ui(ui: str | None, count: int | None, get: Callable[[], Any]) -> str:
    """The output level: ``--ui``, else MILESTONE_UI, else simple when stdout is not a
    terminal, else the project's ``ui`` settings and size."""
    if ui:
        return ui
    env = os.environ.get("MILESTONE_UI")
    if env in UI_LEVELS:
        return env
    if env and env.strip().lower() != "auto":
        echo(f"milestone: warning: MILESTONE_UI={env!r} is not one of "
             f"{', '.join(UI_LEVELS)}, auto; using the default — set one of those "
             "or unset it", err=True)
    if not sys.stdout.isatty():
        return "simple"
    try:
        cfg = get().config()["ui"]
    except MilestoneError:
        cfg = {"default": "auto", "rich_from_milestones": 5}
    if cfg.get("default") in UI_LEVELS:
        return str(cfg["default"])
    if count is None:
        count = len(get().state().milestones)
    return "rich" if count >= int(cfg.get("rich_from_milestones", 5)) else "simple"


def revealed(data: Any, project: Any) -> Any:
    """``data`` with the project's encrypted values opened (``Project.reveal``): the
    text with the key, ``[encrypted]`` without. Nothing to do before a project opens."""
    return data if project is None else project.reveal(data)


def say(project: Any, message: str, data: dict[str, Any] | None = None,
        as_json: bool = False, *, ref: str | None = None, milestone_id: str | None = None,
        changed: bool = True) -> None:
    """Confirm a change: one line for people, the changed object for --json, naming what
    it touched: ``ref`` (``milestone-003`` or ``milestone-003/task-2``) and
    ``milestone_id`` (both null for a change to the whole project).

    ``changed=False``: an edit that found everything as asked. It still succeeds (a
    script or an agent may repeat it): "nothing changed", and ``"changed": false``."""
    if not changed:
        message, data = f"nothing changed: {message}", {**(data or {}), "changed": False}
    message, data = revealed((message, data), project)
    if as_json:
        from ..ui import jsontext

        touched = {"ref": ref, "milestone_id": milestone_id}
        echo(jsontext.dumps({"schema": 1, **touched, **(data or {})}))
    else:
        echo(inert(message, keep_newlines=True))


def emit(data: dict[str, Any], view: str, as_json: bool, ui: str | None,
         get: Callable[[], Any], opened: Callable[[], Any] | None = None) -> None:
    """Print ``data`` as JSON or through the ``render_<view>`` of the chosen level.
    ``opened``: the project if one is open (default: ``get``'s, opened by the caller)."""
    data = revealed(data, (opened or get)())
    if as_json:
        from ..ui import jsontext  # json and orjson: only for --json

        echo(jsontext.dumps(data))
        return
    data = inert_data(data, multiline=MULTILINE)  # stored text is shown, never obeyed
    level = choose_ui(ui, len(data["milestones"]) if "milestones" in data else None, get)
    if level == "rich":
        from ..ui import rich as rich_ui

        getattr(rich_ui, f"render_{view}")(data)
        return
    from ..ui import simple

    echo(getattr(simple, f"render_{view}")(data))


def print_warnings(project: Any) -> None:
    """Validation warnings a write raised: one line each on stderr; and on the database
    backend, the YAML files it does not read that someone edited."""
    for w in getattr(project, "warnings", []) or []:
        echo(inert(f"milestone: warning: {w.location}: {w.code} {w.message} — {w.hint}"),
             err=True)
    if project is not None:
        project.warnings = []
        backend = str(getattr(getattr(project, "store", None), "backend", "file"))
        if backend not in ("file", "hybrid", "memory"):
            from ..ops.inactive import warnings  # the YAML files it does not read, edited

            for line in warnings(project.root, backend):
                echo(f"milestone: warning: {line}", err=True)


def after_command(project: Any, name: str, ms: float, ok: bool) -> None:
    """After a command: its timing, and after a committed write the scale check.

    Only when the command opened a project, and never failing the command: a metric
    that cannot be written is dropped. See ``milestones.ops.timings``.
    """
    if project is None:
        return
    from ..ops import timings

    with contextlib.suppress(Exception):  # metrics are best effort
        timings.record(project, name, ms, ok)
    commits: int = getattr(project, "commits", 0)
    if ok and commits:
        try:  # the write is committed: whatever goes wrong here is no failure
            line = timings.scale_check(project)
        except Exception as exc:
            line = f"milestone: debug: scale check failed: {exc!r}" if debug() else None
        if line:
            echo(line, err=True)

"""Blocker detection: rules that find tasks in trouble, for the executor's blocker agent.

``detect(project, "milestone-003")`` returns ``Finding``s; the caller reports each
with ``Agents(project).report_blocker(f.ref, f.reason, rule=f.rule, block=f.block)``
(which blocks the task, releases its claim, records ``blocker_detected`` and
messages the milestone's owner). ``detect`` itself writes nothing: it reads the
milestone's snapshot, the event log (incrementally: each call reads only the
events appended since the last one) and, for two rules, git and a test command.

The rules (``RULES``):

* ``over_estimate``: a task in progress has taken longer than its estimate (hours)
  times ``over_estimate_factor``, counting its time spent and its running timer.
* ``lease_lapses``: the task's claim lapsed ``lease_lapses`` times or more (its
  agent kept dying or stopped heartbeating).
* ``repeated_failure``: the task failed ``repeated_failures`` times or more but fewer
  than ``agents.max_attempts`` (at which ``Agents.fail`` blocks it itself):
  escalated, not blocked.
* ``stale``: a task in progress with no event about it (nor a claim or a timer
  start, nor activity the caller passes in ``seen``) for ``stale_hours``.
* ``blocked_dependency``: an open task depends on a blocked task. It does not
  cascade: a dependency blocked only by this rule does not block its dependents.
* ``merge_conflicts``: with ``git_root``, ``git status`` there shows unmerged paths;
  the in-progress tasks whose ``paths`` match them are blocked (every in-progress
  task when none of them names paths), the reason naming the paths.
* ``test_command``: ``test_command`` is set and exits non-zero (or times out), run in
  ``git_root`` or the project's directory at most every ``test_interval_seconds``:
  the milestone's in-progress tasks are escalated, not blocked.

Configuration, under ``blockers:`` in ``config/config.yaml`` (``DEFAULTS``; the
``conf`` argument overrides it):

* ``over_estimate_factor`` (2.0): times the estimate before ``over_estimate`` fires;
* ``lease_lapses`` (2): lapsed claims before ``lease_lapses`` fires;
* ``repeated_failures`` (2): failed attempts before ``repeated_failure`` fires;
* ``stale_hours`` (2.0): hours without activity before ``stale`` fires;
* ``test_command`` (none): a shell command, for example ``pytest -x -q``;
* ``test_timeout_seconds`` (300): a test run taking longer counts as failing;
* ``test_interval_seconds`` (300): the least time between two test runs;
* ``disabled`` ([]): names of rules to turn off, for example ``[stale]``.

Quiet by design, since the blocker agent calls ``detect`` every few seconds: a
blocked task gets no further blocking findings; an escalation-only finding
already reported (a ``blocker_detected`` event with the same task, rule and
reason) is not returned again; and a person unblocking a task silences the rules
that had fired on it, for that task, so the agent does not undo their decision.
Reasons are stable for a given condition (no running clock in them), so
``report_blocker`` recognises what it has already recorded.
"""

from __future__ import annotations

import subprocess
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import InvalidInput
from ..model import refs

if TYPE_CHECKING:
    from ..project import Project

RULES = ("over_estimate", "lease_lapses", "repeated_failure", "stale", "blocked_dependency",
         "merge_conflicts", "test_command")
DEFAULTS: dict[str, Any] = {
    "over_estimate_factor": 2.0,
    "lease_lapses": 2,
    "repeated_failures": 2,
    "stale_hours": 2.0,
    "test_command": None,
    "test_timeout_seconds": 300,
    "test_interval_seconds": 300,
    "disabled": [],
}
_NUMBERS = {"over_estimate_factor": float, "lease_lapses": int, "repeated_failures": int,
            "stale_hours": float, "test_timeout_seconds": float,
            "test_interval_seconds": float}
# Events that are not work on the task (an escalation is about it, not activity).
_NOT_ACTIVITY = frozenset({"blocker_detected", "message_sent", "message_acked"})
_DEP_PREFIX = "dependency "
_DEP_SUFFIX = " is blocked"


@dataclass(frozen=True)
class Finding:
    """A rule fired on a task: report it, blocking the task when ``block``."""

    ref: str
    rule: str
    reason: str
    block: bool = True


def _ts(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    try:
        return md.parse_utc_stamp(stamp).timestamp()
    except ValueError:
        return 0.0


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def settings(config: Mapping[str, Any], conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """DEFAULTS, then the config's ``blockers``, then ``conf``; checked."""
    merged = dict(DEFAULTS)
    merged.update(config.get("blockers") or {})
    merged.update(conf or {})
    for key, kind in _NUMBERS.items():
        try:
            value = kind(merged[key])
        except (TypeError, ValueError):
            raise InvalidInput(f"blockers.{key} is {merged[key]!r}, not a number",
                               hint=f"give a number, default {DEFAULTS[key]}") from None
        if value < 0:
            raise InvalidInput(f"blockers.{key} is negative",
                               hint=f"give 0 or more, default {DEFAULTS[key]}")
        merged[key] = value
    disabled = merged.get("disabled") or []
    if isinstance(disabled, str) or not all(r in RULES for r in disabled):
        raise InvalidInput(f"blockers.disabled is {disabled!r}",
                           hint="a list of rule names: " + ", ".join(RULES))
    merged["disabled"] = list(disabled)
    cmd = merged.get("test_command")
    if cmd is not None and not isinstance(cmd, str):
        raise InvalidInput("blockers.test_command must be one shell command line",
                           hint="for example: test_command: pytest -x -q")
    merged["test_command"] = (cmd or "").strip() or None
    return merged


# ------------------------------------------------------------------ the event log


@dataclass
class Activity:
    """What the event log says about a project's tasks, keyed by (milestone, task)."""

    last: dict[tuple[str, str], str] = field(default_factory=dict)  # newest event's time
    fired: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)  # rule: id
    unblocked: dict[tuple[str, str], int] = field(default_factory=dict)  # last unblock id
    reported: set[tuple[str, str, str, str]] = field(default_factory=set)
    last_id: int = 0

    def add(self, events: Iterable[Mapping[str, Any]]) -> None:
        for e in events:
            self.last_id = max(self.last_id, int(e.get("event_id") or 0))
            details = e.get("details") or {}
            tid, mid = details.get("task_id"), e.get("milestone_id")
            if not tid or not mid:
                continue
            key = (str(mid), str(tid))
            kind = e.get("event_type")
            if kind == "blocker_detected":
                rule = str(details.get("rule") or "")
                self.fired.setdefault(key, {})[rule] = int(e.get("event_id") or 0)
                self.reported.add((*key, rule, str(details.get("reason") or "")))
            elif kind not in _NOT_ACTIVITY:
                stamp = str(e.get("timestamp") or "")
                if stamp > self.last.get(key, ""):
                    self.last[key] = stamp
                if kind == "task_unblocked":
                    self.unblocked[key] = int(e.get("event_id") or 0)

    def silenced(self, key: tuple[str, str]) -> set[str]:
        """Rules a person overrode on this task: it was unblocked after they fired."""
        after = self.unblocked.get(key, -1)
        return {rule for rule, at in self.fired.get(key, {}).items() if at < after}


@dataclass
class _Cache:
    store: Any
    activity: Activity
    test: tuple[float, str, str | None] | None = None  # (ran at, command, failure)


_CACHES: weakref.WeakKeyDictionary[Any, _Cache] = weakref.WeakKeyDictionary()


def _cache(project: Project, head: int) -> _Cache:
    """The project's activity, brought up to date with the events since the last call."""
    cached = _CACHES.get(project)
    if cached is None or cached.store is not project.store or cached.activity.last_id > head:
        cached = _Cache(project.store, Activity(), cached.test if cached else None)
        _CACHES[project] = cached
    if cached.activity.last_id < head:
        events = project.store.events(after=cached.activity.last_id)
        try:
            cached.activity.add(events)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # a database cursor left open would pin a read transaction
    return cached


# ---------------------------------------------------------------------- the rules


def _short(paths: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")


def conflict_reason(paths: Sequence[str]) -> str:
    """The ``merge_conflicts`` reason naming the paths (also for a failed
    ``GitIntegration.merge``: report it with ``rule="merge_conflicts"``)."""
    return f"merge conflicts in {_short(sorted(paths))}"


def evaluate(
    snaps: Mapping[str, Mapping[str, Any]],
    milestone_id: str,
    *,
    now: str,
    conf: Mapping[str, Any],
    max_attempts: int,
    activity: Activity | None = None,
    seen: Mapping[str, str] | None = None,
    conflicts: Sequence[str] = (),
    test_failure: str | None = None,
) -> list[Finding]:
    """The rules over plain data (no I/O): milestone snapshots, the time, settings
    (``settings()``), the event log's ``Activity``, unmerged paths, a test failure."""
    from .coord import paths_overlap

    act = activity or Activity()
    off = set(conf.get("disabled") or ())
    m = md.Milestone.from_snapshot(dict(snaps[milestone_id]))
    clock = _ts(now)
    out: list[Finding] = []

    index: dict[str, dict[str, Mapping[str, Any]]] = {}  # milestone -> task id -> task

    def status_of(ref: str) -> tuple[str | None, list[str]]:
        mid, tid = md.split_task_ref(ref, milestone_id)
        if mid not in index:
            index[mid] = {t["id"]: t for t in (snaps.get(mid) or {}).get("tasks", ())}
        t = index[mid].get(tid)
        return (str(t["status"]), list(t.get("blockers") or ())) if t else (None, [])

    running = [t for t in m.tasks if t.status == "in_progress"]
    conflicted: set[str] = set()
    if conflicts and "merge_conflicts" not in off:
        named = [t for t in running if t.paths]
        conflicted = {t.id for t in named if paths_overlap(t.paths, conflicts)} if named \
            else {t.id for t in running}

    for t in m.tasks:
        if t.finished:
            continue
        key = (m.id, t.id)
        ref = f"{m.id}/{t.id}"
        ex = t.execution or {}
        fired: list[tuple[str, str, bool]] = []  # (rule, reason, block)
        if t.status != "blocked":
            factor = float(conf["over_estimate_factor"])
            if t.status == "in_progress" and t.estimate and factor > 0:
                spent = t.time_spent + (max(0.0, clock - _ts(t.timer_started_at))
                                        if t.timer_started_at else 0.0)
                if spent > t.estimate * 3600 * factor:
                    fired.append(("over_estimate", f"in progress past {factor:g}x its "
                                                   f"estimate of {t.estimate:g}h", True))
            lapses = _int(ex.get("lapsed"))
            if conf["lease_lapses"] and lapses >= conf["lease_lapses"]:
                fired.append(("lease_lapses", f"its claim lapsed {lapses} times (the agent "
                                              "holding it stopped heartbeating)", True))
            if t.status == "in_progress" and conf["stale_hours"]:
                last = max(_ts(act.last.get(key)), _ts(t.timer_started_at),
                           _ts(t.started_at), _ts(ex.get("claimed_at")),
                           _ts((seen or {}).get(ref)))
                if clock - last > float(conf["stale_hours"]) * 3600:
                    fired.append(("stale", "in progress with no activity for over "
                                           f"{float(conf['stale_hours']):g}h", True))
            for dep in t.depends_on:
                dstatus, dblockers = status_of(dep)
                cascaded = bool(dblockers) and all(
                    b.startswith(_DEP_PREFIX) and b.endswith(_DEP_SUFFIX) for b in dblockers)
                if dstatus == "blocked" and not cascaded:
                    full = "/".join(md.split_task_ref(dep, m.id))
                    fired.append(("blocked_dependency", f"{_DEP_PREFIX}{full}{_DEP_SUFFIX}",
                                  True))
            if t.id in conflicted:
                fired.append(("merge_conflicts", conflict_reason(conflicts), True))
        attempts = _int(ex.get("attempts"))
        if conf["repeated_failures"] and conf["repeated_failures"] <= attempts < max_attempts:
            last_error = ex.get("last_error") or "no reason given"
            fired.append(("repeated_failure", f"failed {attempts} times; last: {last_error}",
                          False))
        if test_failure and t.status == "in_progress":
            fired.append(("test_command", test_failure, False))
        quiet = act.silenced(key) | off
        blocked = False
        for rule, reason, block in fired:
            reason = reason[:1000]
            if rule in quiet or (block and blocked):
                continue  # one block is enough: it stops the task
            if not block and (*key, rule, reason) in act.reported:
                continue
            blocked = blocked or block
            out.append(Finding(ref, rule, reason, block))
    return out


def run_test_command(command: str, cwd: Path, timeout: float) -> str | None:
    """None when the command passes; else the (stable) reason it failed."""
    try:
        proc = subprocess.run(command, shell=True, cwd=cwd, timeout=timeout or None,
                              capture_output=True, check=False)
    except subprocess.TimeoutExpired:
        return f"test command `{command}` did not finish in {timeout:g}s"
    except OSError as exc:
        return f"test command `{command}` could not run: {exc.strerror or exc}"
    if proc.returncode != 0:
        return f"test command `{command}` exits {proc.returncode}"
    return None


def detect(project: Project, milestone_id: str, *, now: str | None = None,
           conf: Mapping[str, Any] | None = None, git_root: Path | None = None,
           seen: Mapping[str, str] | None = None) -> list[Finding]:
    """Every rule over one milestone now (``now``: ``YYYY-MM-DDTHH:MM:SSZ``, default
    the project's clock); ``seen`` adds activity the caller knows of (task ref to
    time, for example the last output of the task's command)."""
    from .coord import settings as agent_settings

    st = project.state()
    mid = refs.resolve_milestone(milestone_id, st.milestones)
    config = project.config()
    cfg = settings(config, conf)
    now = now or project.clock()
    cache = _cache(project, st.last_event_id)
    snap = st.milestones[mid]
    running = any(t["status"] == "in_progress" for t in snap.get("tasks", ()))
    conflicts: list[str] = []
    if git_root is not None and running and "merge_conflicts" not in cfg["disabled"]:
        from .git import unmerged_paths

        conflicts = unmerged_paths(Path(git_root))
    failure = None
    command = cfg["test_command"]
    if command and running and "test_command" not in cfg["disabled"]:
        clock = _ts(now)
        last = cache.test
        if last is not None and last[1] == command and \
                clock - last[0] < float(cfg["test_interval_seconds"]):
            failure = last[2]
        else:
            where = Path(git_root) if git_root is not None else project.root.parent
            failure = run_test_command(command, where, float(cfg["test_timeout_seconds"]))
            cache.test = (clock, command, failure)
    return evaluate(st.milestones, mid, now=now, conf=cfg,
                    max_attempts=int(agent_settings(config)["max_attempts"]),
                    activity=cache.activity, seen=seen, conflicts=conflicts,
                    test_failure=failure)


__all__ = ["DEFAULTS", "RULES", "Activity", "Finding", "conflict_reason", "detect",
           "evaluate", "run_test_command", "settings"]

"""Scale detection: which storage backend a project's size and use call for.

Signals (the seed's detection criteria), each read by a function in the I/O part:

* **milestones**: how many the project has.
* **team**: the people in ``team.members`` plus the distinct actors of the last 30
  days' events, each person once (an actor equal to a member's name, email, id or
  alias is that member). Registered agents are not people: an actor that is an
  agent's name or id is not counted (``milestone execute`` acts as a dozen).
* **writes**: the events recorded in the last hour, per minute (the write rate).
* **latency**: the p95 wall time of the last 200 successful commands run on the
  current backend, from ``performance/metrics.jsonl`` (the CLI appends one line per
  command; ``storage`` commands are left out, a migration being slow by nature).
* **features**: agents (a ``.milestones/agents/`` directory, where the file backends
  keep the agent registry, or an ``agent_*`` event in the last 30 days: see
  ``milestones.agents.coord``), the dashboard (``.milestones/web-dashboard/``) and
  encryption (``config/encryption.key``).

Each signal names the smallest tier that serves it (``Finding``); the project wants
the largest of those (``Recommendation.ideal``). The seed's table: ``file`` below 25
milestones and a team below 5, ``hybrid`` below 100 and 20, ``database`` beyond.
``postgres`` comes when the team reaches 50 or the write rate 600 a minute (a server
for many machines; the number of milestones alone never asks for one) and is
suggested only: ``auto`` never moves a project to a server it was not given (see
``SUGGEST_ONLY``). The latency trigger asks for the next built local backend above
the current one. Agents and
the dashboard ask for at least ``hybrid`` (concurrent writers and a reader that
queries everything); encryption works on every backend and asks for nothing.

Which backend to move to is decided by ``TIERS`` and ``storage.BACKENDS`` alone: the
highest *built* tier above the current one and no higher than ``ideal``. So while
``hybrid`` is not built a project that wants hybrid stays where it is (``pending``
says hybrid would be recommended once available) and only the database thresholds
move it to ``database``; adding ``"hybrid"`` to ``BACKENDS`` is all it takes to
recommend hybrid. Recommendations only go up: a project on a bigger backend than it
needs is told so, never moved down.

Policy (``scale.policy``), applied by the CLI after a command that wrote
(``after_write``): ``suggest`` (the default) prints one note on stderr at most once a
day, ``auto`` migrates and says so in one line, ``off`` does nothing. The keys are
documented in ``milestones.cli.storage``.

Cost: recording a metric is one ``O_APPEND`` write in the CLI (no import, no fsync).
The policy runs only after a write, and returns before measuring anything when it
is ``off``, when no built backend is above the current one, or when it already spoke
today. It counts milestones in the (cached) state on every write; team and latency
are measured at most once an hour (``MEASURE_EVERY``) and kept in
``performance/scale-state.json``: the last ~200 metric lines, and the event log read
backwards from its end until the first event older than 30 days (at most
``QUICK_SCAN_EVENTS`` events, stopping early once the team crosses every bound;
rotated archives are left closed); the database answers with one indexed query.
``storage status`` measures everything, reading the whole window, archives included.

The first part of this module is pure (signals in, recommendation out); the second
reads the files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import MilestoneError
from ..storage import BACKENDS

if TYPE_CHECKING:
    from ..project import Project
from .activity import (
    LATENCY_WINDOW,
    MEASURE_EVERY,
    MEMO,
    MIGRATION_LOG,
    QUICK_SCAN_EVENTS,
    WINDOW_DAYS,
    WRITES_SCAN_EVENTS,
    events_since,
    features_in_use,
    lines_backwards,
    read_latencies,
    recent_activity,
    since_iso,
    team_members,
)

# ------------------------------------------------------------------ pure logic

TIERS: tuple[str, ...] = ("file", "hybrid", "database", "postgres")  # smallest first
POLICIES: tuple[str, ...] = ("auto", "suggest", "off")
DEFAULT_POLICY = "suggest"

# A project fits a tier while it is below both of the tier's bounds (the
# ``Thresholds`` fields named here); the last tier has no bounds.
LIMITS: tuple[tuple[str, str | None, str | None], ...] = (
    ("file", "file_below_milestones", "file_below_team"),
    ("hybrid", "hybrid_below_milestones", "hybrid_below_team"),
    ("database", None, "database_below_team"),  # milestones alone never ask for a server
)
BEYOND = {1: "database", 2: "postgres"}  # the tier past every bound of a LIMITS column
# Tiers ``auto`` never moves a project to: they need a server (and its URL) first.
SUGGEST_ONLY: tuple[str, ...] = ("postgres",)
# The smallest tier a feature in use asks for.
FEATURE_FLOORS: dict[str, str] = {"agents": "hybrid", "dashboard": "hybrid", "encryption": "file"}
FEATURES: tuple[str, ...] = tuple(FEATURE_FLOORS)


# NamedTuples, not dataclasses: this module is imported after every write, and a
# NamedTuple costs a tenth of a frozen dataclass to define.


class Thresholds(NamedTuple):
    """The ``scale`` section of ``config/config.yaml`` (the seed's numbers by default)."""

    file_below_milestones: int = 25
    file_below_team: int = 5
    hybrid_below_milestones: int = 100
    hybrid_below_team: int = 20
    database_below_team: int = 50
    database_below_writes_per_minute: float = 600.0
    latency_p95_ms: float = 500.0
    latency_min_samples: int = 20


class Signals(NamedTuple):
    """What the project measures: the input of ``recommend``."""

    milestones: int
    team: int = 1
    p95_ms: float | None = None
    samples: int = 0  # how many commands the p95 is over
    features: frozenset[str] = frozenset()
    writes_per_minute: float = 0.0  # events recorded in the last hour, per minute


class Finding(NamedTuple):
    """One signal against its thresholds: the smallest tier that serves it, and why."""

    signal: str
    tier: str
    reason: str  # for `storage status`
    lead: str  # opens the one-line note: "this project has 31 milestones"
    detail: dict[str, Any]  # JSON for `storage status --json`


class Recommendation(NamedTuple):
    """What ``recommend`` decided, with every finding behind it."""

    current: str
    backend: str  # the backend to be on now (``current`` when no move is called for)
    ideal: str  # the tier the signals ask for, built or not
    findings: tuple[Finding, ...]
    pending: str | None = None  # a tier that would be recommended once it is built

    @property
    def change(self) -> bool:
        return self.backend != self.current

    @property
    def drivers(self) -> tuple[Finding, ...]:
        """The findings that call for more than the current backend, strongest first."""
        above = [f for f in self.findings if rank(f.tier) > rank(self.current)]
        return tuple(sorted(above, key=lambda f: -rank(f.tier)))

    @property
    def command(self) -> str | None:
        return f"milestone storage migrate --to {self.backend}" if self.change else None

    def explain(self) -> str:
        """One sentence: what to do and why."""
        why = "; ".join(f.reason for f in self.drivers)
        if self.change:
            return f"move to {self.backend}: {why} — run `{self.command}`"
        if self.pending:
            return (f"stay on {self.current}; {self.pending} would be recommended once "
                    f"available: {why}")
        if rank(self.ideal) < rank(self.current):
            return (f"stay on {self.current} (every signal would fit {self.ideal}; moves "
                    f"down are never suggested — `milestone storage migrate --to "
                    f"{self.ideal}` if you want one)")
        return f"stay on {self.current}: every signal fits it"

    def note(self, moved: str | None = None) -> str:
        """The line the policy prints (``moved``: the backup of an automatic migration)."""
        lead = self.drivers[0].lead if self.drivers else "this project"
        if moved is not None:
            return (f"milestone: note: {lead}; moved it to the {self.backend} backend "
                    f"(scale.policy auto; backup: {moved}) — `milestone storage rollback` "
                    f"undoes it")
        return (f"milestone: note: {lead}; the {self.backend} backend would serve it "
                f"better — run `{self.command}`")


def rank(tier: str) -> int:
    """A tier's place in ``TIERS`` (-1 for a backend outside them, e.g. memory)."""
    return TIERS.index(tier) if tier in TIERS else -1


def _bounded(value: int, th: Thresholds, column: int) -> tuple[str, dict[str, int]]:
    """The smallest tier whose bound in ``LIMITS[..][column]`` ``value`` is below."""
    limits = {row[0]: int(getattr(th, name)) for row in LIMITS
              if (name := row[column]) is not None}
    for tier, below in limits.items():
        if value < below:
            return tier, limits
    return BEYOND[column], limits


def _limits_text(limits: Mapping[str, int]) -> str:
    return ", ".join(f"{tier} below {below}" for tier, below in limits.items())


def recommend(signals: Signals, current: str, thresholds: Thresholds | None = None,
              available: Sequence[str] | None = None) -> Recommendation:
    """The backend the signals call for, given the ``current`` one and those ``available``."""
    th = thresholds or Thresholds()
    built = tuple(BACKENDS if available is None else available)
    findings: list[Finding] = []

    tier, limits = _bounded(signals.milestones, th, 1)
    findings.append(Finding(
        "milestones", tier,
        f"{signals.milestones} milestones ({_limits_text(limits)})",
        f"this project has {signals.milestones} milestones",
        {"value": signals.milestones, "thresholds": limits}))

    tier, limits = _bounded(signals.team, th, 2)
    findings.append(Finding(
        "team", tier,
        f"a team of {signals.team} ({_limits_text(limits)})",
        f"this project's team has {signals.team} people (members and actors of the last "
        f"{WINDOW_DAYS} days)",
        {"value": signals.team, "thresholds": limits}))

    rate, most = signals.writes_per_minute, th.database_below_writes_per_minute
    findings.append(Finding(
        "writes", "postgres" if rate >= most else TIERS[0],
        f"{rate:g} writes a minute over the last hour (postgres from {most:g})",
        f"this project records {rate:g} writes a minute",
        {"value": rate, "threshold": most}))

    triggered = (signals.p95_ms is not None and signals.samples >= th.latency_min_samples
                 and signals.p95_ms >= th.latency_p95_ms)
    # slow commands ask for the next local backend: a server makes no command faster
    up = [t for t in TIERS if rank(t) > rank(current) and t in built
          and t not in SUGGEST_ONLY]
    tier = (up[0] if up else current) if triggered else TIERS[0]
    if signals.p95_ms is None or signals.samples < th.latency_min_samples:
        reason = (f"{signals.samples} commands recorded on {current}; the latency trigger "
                  f"needs {th.latency_min_samples}")
    else:
        reason = (f"commands take {signals.p95_ms:.0f} ms at p95 over the last "
                  f"{signals.samples} ({'at or above' if triggered else 'below'} "
                  f"{th.latency_p95_ms:g} ms)")
    findings.append(Finding(
        "latency", tier, reason,
        f"this project's commands take {signals.p95_ms or 0:.0f} ms at p95",
        {"p95_ms": signals.p95_ms, "samples": signals.samples,
         "threshold_ms": th.latency_p95_ms, "min_samples": th.latency_min_samples,
         "triggered": triggered}))

    used = sorted(f for f in signals.features if f in FEATURE_FLOORS)
    tier = max((FEATURE_FLOORS[f] for f in used), key=rank, default=TIERS[0])
    asking = [f for f in used if rank(FEATURE_FLOORS[f]) > 0]
    if not used:
        reason = "no agents, dashboard or encryption in use"
    elif asking:
        reason = f"uses {', '.join(used)} ({', '.join(asking)}: {tier} or above)"
    else:
        reason = f"uses {', '.join(used)} (any backend serves it)"
    findings.append(Finding("features", tier, reason,
                            f"this project uses {', '.join(asking or used)}",
                            {f: f in used for f in FEATURES}))

    ideal = max((f.tier for f in findings), key=rank)
    steps = [t for t in TIERS if rank(current) < rank(t) <= rank(ideal) and t in built]
    backend = steps[-1] if steps else current
    pending = ideal if ideal not in built and rank(ideal) > rank(backend) else None
    return Recommendation(current, backend, ideal, tuple(findings), pending)


def settings(config: Mapping[str, Any]) -> tuple[str, Thresholds, list[str]]:
    """The policy and thresholds in the ``scale`` config section, and what was wrong there.

    A bad value is reported (by ``storage status``) and replaced by its default, so a
    typo in the config never stops a command.
    """
    section = config.get("scale")
    section = section if isinstance(section, Mapping) else {}
    problems: list[str] = []
    policy = section.get("policy", DEFAULT_POLICY)
    if policy is False:
        policy = "off"  # YAML 1.1 reads a bare `off` as false
    if policy not in POLICIES:
        problems.append(f"scale.policy must be one of {', '.join(POLICIES)} (got {policy!r}); "
                        f"using {DEFAULT_POLICY}")
        policy = DEFAULT_POLICY
    values: dict[str, Any] = {}
    for name, default in Thresholds._field_defaults.items():
        if name not in section:
            continue
        raw = section[name]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw <= 0:
            problems.append(f"scale.{name} must be a positive number (got {raw!r}); "
                            f"using {default}")
            continue
        values[name] = type(default)(raw)
    th = Thresholds(**values)
    for column in (1, 2):
        for row, upper in pairwise(LIMITS):
            lower_name, upper_name = row[column], upper[column]
            if lower_name is None or upper_name is None:
                continue
            low, high = getattr(th, lower_name), getattr(th, upper_name)
            if low >= high:
                problems.append(f"scale.{lower_name} ({low}) should be below "
                                f"scale.{upper_name} ({high})")
    return str(policy), th, problems


def p95(values: Sequence[float]) -> float | None:
    """The 95th percentile (nearest rank), or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def team_size(members: Sequence[set[str]], actors: Iterable[str]) -> int:
    """Members plus the actors who are none of them (each member: the names they go by)."""
    known: set[str] = set().union(*members) if members else set()
    return len(members) + len({a for a in actors if a not in known})




def gather(project: Project, thresholds: Thresholds | None = None, *,
           quick: bool = False) -> tuple[Signals, dict[str, Any]]:
    """Measure the project; ``quick`` bounds the event scan (see QUICK_SCAN_EVENTS)."""
    th = thresholds or Thresholds()
    milestones, tasks, events = _counts(project)
    members = team_members(project.config())
    enough = None
    if quick:
        enough = max(th.file_below_team, th.hybrid_below_team, th.database_below_team
                     ) + sum(len(m) for m in members)
    try:  # a measure only: a damaged registry is named by the commands that need it
        registry = project.store.read_record("agents").get("agents")
    except MilestoneError:
        registry = None
    agents = {str(v) for a in (registry if isinstance(registry, Mapping) else {}).values()
              if isinstance(a, Mapping) for v in (a.get("id"), a.get("name")) if v}
    activity = recent_activity(project.store, since_iso(), enough=enough, archives=not quick,
                               limit=QUICK_SCAN_EVENTS if quick else None, agents=agents)
    latencies = read_latencies(project.root, project.store.backend)
    signals = Signals(
        milestones=milestones,
        team=team_size(members, activity.actors),
        p95_ms=p95(latencies),
        samples=len(latencies),
        features=features_in_use(project.root, activity.agent_events),
        writes_per_minute=round(events_since(project.store, since_iso(days=0, hours=1),
                                             limit=WRITES_SCAN_EVENTS) / 60, 1),
    )
    extra = {
        "counts": {"milestones": milestones, "tasks": tasks, "events": events},
        "members": len(members),
        "recent_actors": sorted(activity.actors),
        "agent_events": activity.agent_events,
    }
    return signals, extra


def _counts(project: Project) -> tuple[int, int, int]:
    """How many milestones, tasks and events: from the index's status counts and the
    log head where there is one (a write at 100,000 tasks must not read them all to
    count them), else the state (in memory on the file backends anyway)."""
    totals = project.store.totals()
    if totals is not None:
        return (sum(totals["by_status"].values()), sum(totals["tasks"].values()),
                project.store.head_state().last_event_id)
    state = project.state()
    return (len(state.milestones),
            sum(len(snap.get("tasks", [])) for snap in state.milestones.values()),
            state.last_event_id)


def migrations(root: Path, last: int = 5) -> list[dict[str, Any]]:
    """The last records of ``performance/migration-log.jsonl``, newest first."""
    out: list[dict[str, Any]] = []
    for line in lines_backwards(root / MIGRATION_LOG):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
        if len(out) >= last:
            break
    return out


def status(project: Project) -> dict[str, Any]:
    """Everything `milestone storage status` shows (the ``--json`` contract)."""
    policy, th, problems = settings(project.config())
    signals, extra = gather(project, th)
    rec = recommend(signals, project.store.backend, th)
    found = {f.signal: {"tier": f.tier, "reason": f.reason, **f.detail} for f in rec.findings}
    found["team"].update(members=extra["members"], recent_actors=extra["recent_actors"],
                         window_days=WINDOW_DAYS)
    found["latency"].update(window=LATENCY_WINDOW)
    found["features"]["agent_events"] = extra["agent_events"]
    return {
        "schema": 1,
        "backend": project.store.backend,
        "available": list(BACKENDS),
        "counts": extra["counts"],
        "policy": policy,
        "signals": found,
        "recommendation": {
            "backend": rec.backend,
            "change": rec.change,
            "ideal": rec.ideal,
            "pending": rec.pending,
            "reasons": [f.reason for f in rec.drivers],
            "summary": rec.explain(),
            "command": rec.command,
        },
        "migrations": migrations(project.root),
        "problems": problems,
    }


def _read_memo(path: Path) -> dict[str, Any]:
    try:
        from ..storage import fsutil

        data = json.loads(fsutil.read_bytes(path, 1 << 20))
    except (OSError, ValueError, MilestoneError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_memo(path: Path, memo: Mapping[str, Any]) -> None:
    from ..storage import fsutil

    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.atomic_write(path, json.dumps(dict(memo), sort_keys=True).encode("utf-8"))


def _moved_back_from(root: Path, backend: str, current: str) -> bool:
    """True when the last completed migration left ``backend`` for ``current``."""
    for rec in migrations(root, last=50):
        if rec.get("event") == "migration_completed":
            return bool(rec.get("from") == backend and rec.get("to") == current)
    return False


def _measured(memo: Mapping[str, Any], backend: str) -> Mapping[str, Any] | None:
    """The team and latency the memo keeps, if measured on ``backend`` within the hour."""
    slow = memo.get("measured")
    try:
        if (isinstance(slow, Mapping) and slow["backend"] == backend
                and 0 <= time.time() - float(slow["at"]) < MEASURE_EVERY
                and (slow["p95_ms"] is None or float(slow["p95_ms"]) >= 0)
                and int(slow["team"]) >= 0 and int(slow["samples"]) >= 0
                and int(slow["agent_events"]) >= 0):
            return slow
    except (KeyError, TypeError, ValueError):
        pass
    return None


def after_write(project: Project) -> str | None:
    """Apply the scale policy after a command that wrote; the line to print, if any.

    Cheap when nothing is to be said: ``off``, a backend with nothing built above it,
    or a note already given today return before anything is measured. The slow
    signals (team and latency: they read the event log and the metrics) are measured
    at most once every ``MEASURE_EVERY`` seconds and kept in the memo; the milestone
    count and the feature files are read on every call. ``auto`` does not undo a
    rollback: after the user moved back from the recommended backend it only suggests.
    """
    policy, th, _ = settings(project.config())
    current = project.store.backend
    if policy == "off" or not any(t in BACKENDS for t in TIERS if rank(t) > rank(current) >= 0):
        return None
    memo_path = project.root / MEMO
    memo = _read_memo(memo_path)
    today = project.today()
    if memo.get("noted_on") == today:
        return None
    slow = _measured(memo, current)
    if slow is None:
        signals, extra = gather(project, th, quick=True)
        memo["measured"] = {"backend": current, "at": time.time(), "team": signals.team,
                            "p95_ms": signals.p95_ms, "samples": signals.samples,
                            "agent_events": extra["agent_events"]}
        _write_memo(memo_path, memo)
    else:
        signals = Signals(
            milestones=_counts(project)[0], team=int(slow["team"]),
            p95_ms=slow["p95_ms"], samples=int(slow["samples"]),
            features=features_in_use(project.root, int(slow["agent_events"])))
    rec = recommend(signals, current, th)
    if not rec.change:
        return None
    memo = {**memo, "noted_on": today, "backend": rec.backend, "policy": policy}
    if (policy == "suggest" or rec.backend in SUGGEST_ONLY
            or _moved_back_from(project.root, rec.backend, current)):
        _write_memo(memo_path, memo)
        return rec.note()
    from ..errors import MilestoneError
    from .migrate import migrate, read_marker

    try:
        report = migrate(project.root, rec.backend, actor=project.actor, automatic=True)
    except MilestoneError as exc:
        if read_marker(project.root, current) != current:
            return None  # another command's `auto` moved it first
        _write_memo(memo_path, {**memo, "failed": str(exc)})
        return (f"milestone: warning: the automatic move to the {rec.backend} backend failed "
                f"({exc}); the project still uses {current} — see `milestone storage status`")
    _write_memo(memo_path, memo)
    return rec.note(moved=str(report.get("backup")))

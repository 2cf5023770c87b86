"""The rules' registry: coded rules, the context they read, findings with locations.

The rule modules (``structure``, ``dependency``...) import this module and register
through ``@rule``; the engine (``engine.py``) imports them, never the reverse, so the
package has no import cycle.

A rule is a function over a ``Context`` that yields findings through
``ctx.report``. Each rule has a stable code (``MS203``), a family, a default
severity, a one-line title and a hint. ``config/config.yaml`` may change a rule's
severity or turn it off::

    validation:
      rules:
        MS304: error      # error | warning | info | off
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .index import PlanIndex

FAMILIES = ("structure", "dependency", "timeline", "resource", "storage", "template", "kiro")
SEVERITIES = ("error", "warning", "info")
TYPES = ("standard", "hybrid", "quick", "kiro")
TYPE_FAMILIES = {
    "standard": ("structure", "dependency", "timeline", "resource"),
    "hybrid": ("storage",),
    "quick": ("template",),
    "kiro": ("kiro",),
}


# Plain classes, not dataclasses: every write runs the rules, and ``dataclasses``
# imports ``inspect`` (several milliseconds of each write's start; model/records.py).


class Rule(NamedTuple):
    code: str
    family: str
    severity: str
    title: str
    hint: str
    check: Callable[[Context], None]
    on_write: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "family": self.family,
            "severity": self.severity,
            "title": self.title,
            "hint": self.hint,
            "on_write": self.on_write,
        }


class Finding:
    """One problem a rule found, where it is (a reference, or a file's line and column)."""

    __slots__ = (
        "code",
        "column",
        "family",
        "file",
        "hint",
        "line",
        "message",
        "ref",
        "severity",
    )

    def __init__(self, code: str, family: str, severity: str, message: str, hint: str,
                 ref: str | None = None, file: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        self.code, self.family, self.severity = code, family, severity
        self.message, self.hint, self.ref = message, hint, ref
        self.file, self.line, self.column = file, line, column

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Finding):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable: ``locate`` sets line, column

    def __repr__(self) -> str:
        return f"Finding({self.line_text()!r})"

    @property
    def location(self) -> str:
        if self.file:
            pos = f":{self.line}" if self.line else ""
            pos += f":{self.column}" if self.line and self.column else ""
            return f"{self.file}{pos}"
        return self.ref or "project"

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.code, self.ref, self.message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "family": self.family,
            "severity": self.severity,
            "message": self.message,
            "location": self.location,
            "hint": self.hint,
            "ref": self.ref,
            "file": self.file,
            "line": self.line,
            "column": self.column,
        }

    def line_text(self) -> str:
        return f"{self.location}: {self.severity} {self.code} {self.message} — {self.hint}"


RULES: dict[str, Rule] = {}


def rule(
    code: str, family: str, severity: str, title: str, hint: str, *, on_write: bool = False
) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    """Register a rule function under ``code``."""
    assert family in FAMILIES and severity in SEVERITIES and code not in RULES, code

    def register(fn: Callable[[Context], None]) -> Callable[[Context], None]:
        RULES[code] = Rule(code, family, severity, title, hint, fn, on_write)
        return fn

    return register


class Source:
    """Where a milestone came from on disk, for file:line:column locations."""

    def __init__(self, rel: str, text: str) -> None:
        self.rel = rel  # from the project directory: .milestones/active/milestone-003.yaml
        self.text = text
        self._nodes: Any = None

    def position(self, path: Sequence[str | int]) -> tuple[int, int] | None:
        """Line and column (1-based) of the node at ``path``, or the nearest parent."""
        if self._nodes is None:
            try:
                import yaml

                self._nodes = yaml.compose(self.text, Loader=_position_loader()) or False
            except Exception:
                self._nodes = False
        node = self._nodes
        if not node:
            return None
        best = node.start_mark
        for step in path:
            nxt = None
            if (
                isinstance(step, str)
                and hasattr(node, "value")
                and isinstance(node.value, list)
                and node.value
                and isinstance(node.value[0], tuple)
            ):
                for k, v in node.value:
                    if getattr(k, "value", None) == step:
                        nxt = v
                        best = k.start_mark
                        break
            elif (
                isinstance(step, int)
                and isinstance(getattr(node, "value", None), list)
                and 0 <= step < len(node.value)
                and not isinstance(node.value[0], tuple)
            ):
                nxt = node.value[step]
                best = nxt.start_mark
            if nxt is None:
                break
            node = nxt
        return best.line + 1, best.column + 1

    def forget(self) -> None:
        """Let go of the composed YAML (``position`` composes it again if asked)."""
        self._nodes = None


_LOADER: Any = None


def _position_loader() -> Any:
    """The C (or Python) safe loader, minus tag resolution: only positions are wanted."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class PositionLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
            def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
                return ""

            def descend_resolver(self, current_node: Any, current_index: Any) -> None:
                pass

            def ascend_resolver(self) -> None:
                pass

        _LOADER = PositionLoader
    return _LOADER


class Context:
    """What rules look at. ``scope`` limits per-milestone rules to some milestones."""

    def __init__(self, milestones: Mapping[str, Mapping[str, Any]], today: str,
                 config: Mapping[str, Any] | None = None, *, root: Path | None = None,
                 sources: dict[str, Source] | None = None,
                 raw: dict[str, tuple[str, Any, str | None]] | None = None,
                 store: Any = None, state: Any = None, scope: set[str] | None = None,
                 severities: frozenset[str] | None = None) -> None:
        self.milestones = milestones
        self.today = today
        self.config: Mapping[str, Any] = config if config is not None else {}
        self.root = root  # the .milestones directory
        self.sources: dict[str, Source] = sources if sources is not None else {}
        self.raw: dict[str, tuple[str, Any, str | None]] = raw if raw is not None else {}
        self.store = store
        self.state = state  # the store's State the plan was read from (else MS502 loads it)
        self.scope = scope
        self.severities = severities  # keep only findings of these (None: all)
        self.findings: list[Finding] = []
        self.memo: dict[str, Any] = {}  # work rules share within one run
        # Set by the engine: the rule running now (its findings carry its code and
        # severity), and the findings whose position ``locate`` looks up once the rules
        # have run.
        self.current_rule: Rule | None = None
        self.unlocated: list[tuple[Finding, Source, Sequence[str | int]]] = []

    def in_scope(self, mid: str) -> bool:
        return self.scope is None or mid in self.scope

    def scoped(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        if self.scope is not None:  # a write's few milestones: never list the whole plan
            for mid in sorted(self.scope):
                if mid in self.milestones:
                    yield mid, self.milestones[mid]
            return
        milestones = self.milestones
        for mid in self.index.ids:
            yield mid, milestones[mid]

    @property
    def index(self) -> PlanIndex:
        """The plan's shared index for this run (see ``index.py``)."""
        found: PlanIndex | None = self.memo.get("index")
        if found is None:
            found = self.memo["index"] = PlanIndex(self.milestones, self.store, self.state)
        return found

    @property
    def partial(self) -> bool:
        """True when the milestones are read on demand from an index (a write's check on
        a large store): rules that need the whole plan read what the scope reaches."""
        return self.scope is not None and bool(getattr(self.milestones, "lazy", False))

    def reached(self, follow: Callable[[str, Mapping[str, Any]], Iterable[str]]
                ) -> dict[str, Mapping[str, Any]]:
        """The scope's milestones and those ``follow`` leads to from them, transitively."""
        found: dict[str, Mapping[str, Any]] = {}
        todo = sorted(self.scope or ())
        while todo:
            mid = todo.pop()
            if mid in found or mid not in self.milestones:
                continue
            m = found[mid] = self.milestones[mid]
            todo.extend(d for d in follow(mid, m) if d not in found)
        return found

    def report(
        self,
        message: str,
        *,
        ref: str | None = None,
        path: tuple[str, Sequence[str | int]] | None = None,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
        severity: str | None = None,
        source: Source | None = None,
    ) -> None:
        """Record a finding of the running rule; ``path`` = (milestone id, YAML path).

        The YAML path is looked up in ``source`` (default: the milestone's file)
        when the run ends, by ``locate``: each file is composed once for all its
        findings.
        """
        r = self.current_rule
        assert r is not None
        sev = self.severity_of(r, severity)
        if sev == "off" or (self.severities is not None and sev not in self.severities):
            return
        src = None
        if path is not None and file is None:
            src = source or self.sources.get(path[0])
            if src is not None:
                file = src.rel
        finding = Finding(r.code, r.family, sev, message, hint or r.hint, ref, file, line, column)
        self.findings.append(finding)
        if src is not None and path is not None:
            self.unlocated.append((finding, src, path[1]))

    def locate(self) -> None:
        """Give findings reported by YAML path their line and column, file by file."""
        by_source: dict[int, list[tuple[Finding, Source, Sequence[str | int]]]] = {}
        for item in self.unlocated:
            by_source.setdefault(id(item[1]), []).append(item)
        self.unlocated = []
        for items in by_source.values():
            for finding, src, path in items:
                pos = src.position(path)
                if pos:
                    finding.line, finding.column = pos
            items[0][1].forget()  # one composed file at a time, not thousands

    def severity_of(self, r: Rule, wanted: str | None = None) -> str:
        overrides = (self.config.get("validation") or {}).get("rules") or {}
        configured = overrides.get(r.code)
        if configured is False:
            return "off"
        if isinstance(configured, str) and configured in (*SEVERITIES, "off"):
            return configured
        return wanted or r.severity

    @property
    def team(self) -> list[dict[str, Any]]:
        members = ((self.config.get("team") or {}).get("members")) or []
        return [m for m in members if isinstance(m, dict)]


def short(ref: str) -> str:
    """``milestone-003/task-2`` -> ``3/2`` for compact cycle paths."""
    if ref.startswith("milestone-"):
        mid, _, tid = ref.partition("/")
        num = str(int(mid.split("-")[1]))
        return f"{num}/{tid.removeprefix('task-')}" if tid else num
    return ref

"""Project configuration: ``config/config.yaml``, read on demand (never at import)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, MilestoneError

DEFAULTS: dict[str, Any] = {
    "ui": {"default": "auto", "rich_from_milestones": 5},
    "team": {"members": []},
    # Read by milestones.ops.scale (documented in milestones.cli.storage).
    "scale": {
        "policy": "suggest",
        "file_below_milestones": 25,
        "file_below_team": 5,
        "hybrid_below_milestones": 100,
        "hybrid_below_team": 20,
        "database_below_team": 50,
        "database_below_writes_per_minute": 600,
        "latency_p95_ms": 500,
        "latency_min_samples": 20,
    },
    # Read by milestones.agents.coord (documented in the README, "Agents").
    "agents": {"lease_seconds": 300, "max_attempts": 3, "message_keep": 5000},
}

DEFAULT_CONFIG_TEXT = """\
# milestone project configuration. Every key is optional; these are the defaults.
ui:
  # auto | simple | rich. auto: plain text when output is not a terminal; on a
  # terminal, rich once the project has rich_from_milestones milestones or more.
  default: auto
  rich_from_milestones: 5
team:
  members: []
scale:
  # What to do when the project outgrows its storage backend (after a command that
  # wrote): suggest (one note a day on stderr), auto (migrate, saying so), or off.
  # `milestone storage status` shows each signal against these thresholds.
  policy: suggest
  file_below_milestones: 25     # file while below 25 milestones and a team below 5
  file_below_team: 5            # (team: members plus actors of the last 30 days)
  hybrid_below_milestones: 100  # hybrid while below 100 and 20
  hybrid_below_team: 20
  database_below_team: 50       # database beyond; postgres (a server, suggested only,
  database_below_writes_per_minute: 600  # never moved to by auto) from a team of 50
                                # or 600 writes a minute over the last hour
  latency_p95_ms: 500           # p95 of the last 200 commands at or above this: move up
  latency_min_samples: 20
"""

# Default files written by earlier versions: still default, still not parsed.
EARLIER_DEFAULT_TEXTS = (
    """\
# milestone project configuration. Every key is optional; these are the defaults.
ui:
  # auto | simple | rich. auto: plain text when output is not a terminal; on a
  # terminal, rich once the project has rich_from_milestones milestones or more.
  default: auto
  rich_from_milestones: 5
team:
  members: []
scale:
  # What to do when the project outgrows its storage backend (after a command that
  # wrote): suggest (one note a day on stderr), auto (migrate, saying so), or off.
  # `milestone storage status` shows each signal against these thresholds.
  policy: suggest
  file_below_milestones: 25     # file while below 25 milestones and a team below 5
  file_below_team: 5            # (team: members plus actors of the last 30 days)
  hybrid_below_milestones: 100  # hybrid while below 100 and 20; database beyond
  hybrid_below_team: 20
  latency_p95_ms: 500           # p95 of the last 200 commands at or above this: move up
  latency_min_samples: 20
""",
    """\
# milestone project configuration. Every key is optional; these are the defaults.
ui:
  # auto | simple | rich. auto: plain text when output is not a terminal; on a
  # terminal, rich once the project has rich_from_milestones milestones or more.
  default: auto
  rich_from_milestones: 5
team:
  members: []
""",
)
_DEFAULT_BYTES = frozenset(t.encode("utf-8") for t in (DEFAULT_CONFIG_TEXT, *EARLIER_DEFAULT_TEXTS))


WHERE = ".milestones/config/config.yaml"


# ------------------------------------------------------------------ the schema
# Each checked key: a function saying what is wrong with a value (None: fine). A bad
# value or an unknown key is named with its line on stderr (a warning) and its default
# applies: a typo in the preferences never stops a command (as `scale:` always did).

Check = Callable[[Any], str | None]


def _number(low: float, high: float, *, whole: bool = False) -> Check:
    want = f"must be {'a whole number' if whole else 'a number'} from {low:,} to {high:,}"

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
            return want
        return None if low <= value <= high else want  # NaN is in no range
    return check


def _mapping(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be a mapping"


def _choice(*options: str) -> Check:
    def check(value: Any) -> str | None:
        return None if value in options else f"must be one of {', '.join(options)}"
    return check


def _text(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "must be text"


def _list(value: Any) -> str | None:
    return None if isinstance(value, list) else "must be a list"


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


ACCESS_ROLES = ("owner", "contributor", "viewer")
_MILESTONE_ID = re.compile(r"^milestone-\d{3,}$")


def _overrides(value: Any) -> str | None:
    """team.milestones: {milestone-003: {bob@example.com: owner}}."""
    if not isinstance(value, dict):
        return "must be a mapping of milestone ids to {identity: role}"
    for mid, over in value.items():
        if not _MILESTONE_ID.match(str(mid)):
            return f"has {mid!r}, not a milestone id (write it as milestone-003)"
        if not isinstance(over, dict):
            return f"{mid} must map identities to roles, e.g. {{bob@example.com: owner}}"
        for who, role in over.items():
            if role not in ACCESS_ROLES:
                return (f"{mid}.{who} must be one of {', '.join(ACCESS_ROLES)}, "
                        f"not {role!r}")
    return None


def _protected(value: Any) -> str | None:
    """``encryption.fields``: milestone.FIELD, task.FIELD or note (README, "Encryption at
    rest"); read by milestones.project.crypto."""
    import re

    if not isinstance(value, list):
        return "must be a list"
    bad = [f for f in value if not isinstance(f, str)
           or not re.fullmatch(r"(milestone|task)\.[A-Za-z0-9_-]+|note", f)]
    return (f"has {bad[0]!r}: each entry is milestone.FIELD, task.FIELD or note"
            if bad else None)


_MEMBER: dict[str, Check] = {
    "name": _text, "email": _text, "id": _text, "aliases": _list, "skills": _list,
    "role": _text, "capacity": _number(0, 168),
}

# Sections checked key by key; None: a known section whose keys the module reading
# it checks (scale, kiro, validation, git).
SCHEMA: dict[str, dict[str, Check] | None] = {
    "ui": {"default": _choice("auto", "simple", "rich"),
           "rich_from_milestones": _number(0, 10**9, whole=True)},
    "team": {"members": _list, "enforce_roles": _bool,
             "default_role": _choice(*ACCESS_ROLES), "milestones": _overrides},
    "agents": {"lease_seconds": _number(1, 7 * 86400, whole=True),
               "max_attempts": _number(1, 10**6, whole=True),
               "message_keep": _number(0, 10**9, whole=True)},
    "logs": {"rotate_bytes": _number(0, 10**15, whole=True)},
    "blockers": {"over_estimate_factor": _number(0, 10**6),
                 "lease_lapses": _number(0, 10**6), "repeated_failures": _number(0, 10**6),
                 "stale_hours": _number(0, 10**6), "test_command": _text,
                 "test_timeout_seconds": _number(0, 10**6),
                 "test_interval_seconds": _number(0, 10**6), "disabled": _list},
    "kiro": {"policy": _choice("optional", "mandatory"),
             "enforcement": _choice("flexible", "strict"),
             "weights": _mapping, "approvers": _mapping},
    "validation": {"rules": _mapping},
    "encryption": {"fields": _protected},
    "scale": None,
    "backup": None,  # refused where read: pruning by a default could drop wanted backups
    "git": None,
}


def _nearest(word: str, options: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f"did you mean {close[0]}?" if close else f"known: {', '.join(options)}"


def _default_text(section: str, key: str) -> str:
    default = DEFAULTS.get(section, {}).get(key)
    return f"using the default ({default})" if default is not None else "using the default"


def check(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong in the config ``data`` (its path, one line each); removes each bad
    value from ``data`` so that its default applies."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for section in list(data):
        value = data[section]
        if section not in SCHEMA:
            problems.append(((section,), f"unknown key {section!r}, ignored — "
                             + _nearest(section, SCHEMA)))
            continue
        keys = SCHEMA[section]
        if not isinstance(value, dict):
            if value is not None:
                problems.append(((section,), f"{section} must be a mapping of settings, not "
                                 f"{value!r}; using the defaults — indent its keys under it"))
            del data[section]
            continue
        if keys is None:
            continue
        for key in list(value):
            if key not in keys:
                problems.append(((section, key), f"unknown key {section}.{key}, ignored — "
                                 + _nearest(key, keys)))
                continue
            wrong = keys[key](value[key])
            if wrong:
                problems.append(((section, key), f"{section}.{key} {wrong}, not "
                                 f"{value[key]!r}; {_default_text(section, key)} — fix or "
                                 "remove it"))
                del value[key]
    members = (data.get("team") or {}).get("members") or []
    for i, member in enumerate(members):
        if not isinstance(member, dict):
            continue
        for key in list(member):
            rule = _MEMBER.get(key)
            wrong = rule(member[key]) if rule is not None else None
            if wrong:
                problems.append((("team", "members", i, key), f"team.members[{i}].{key} "
                                 f"{wrong}, not {member[key]!r}; using the default — fix or "
                                 "remove it"))
                del member[key]
    return problems


def where(root: Path, path: Sequence[str | int]) -> str:
    """``.milestones/config/config.yaml:LINE`` of the key at ``path`` (for a message)."""
    from . import fsutil, yamlio

    try:
        text = fsutil.read_bytes(root / "config" / "config.yaml",
                                 yamlio.MAX_FILE_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError, MilestoneError):
        return WHERE
    line = yamlio.key_line(text, path)
    return f"{WHERE}:{line}" if line else WHERE


_WARNED: set[tuple[str, bytes]] = set()


def load_config(root: Path) -> dict[str, Any]:
    """The merged configuration; a broken file is reported, not ignored. Bad values
    are named on stderr (once a process) and replaced by their defaults."""
    from . import fsutil, yamlio

    path = root / "config" / "config.yaml"
    try:
        raw = fsutil.read_bytes(path, yamlio.MAX_FILE_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return {k: dict(v) for k, v in DEFAULTS.items()}
    if raw in _DEFAULT_BYTES:
        return {k: dict(v) for k, v in DEFAULTS.items()}  # no YAML parse on the hot path
    data = yamlio.load_bytes(raw, WHERE) or {}
    merged: dict[str, Any] = {k: dict(v) for k, v in DEFAULTS.items()}
    if not isinstance(data, dict):  # a broken file, never read as if it were not there
        raise InvalidInput(f"{WHERE}: holds a {type(data).__name__}, not a mapping of "
                           "settings", hint="fix the file (`milestone init` writes a default "
                           "one in a new project to copy from), or restore it from a backup")
    _warn(root, raw, check(data))
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def _warn(root: Path, raw: bytes, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
    if not problems or (str(root), raw) in _WARNED:
        return
    _WARNED.add((str(root), raw))
    from . import yamlio

    text = raw.decode("utf-8")
    for where_in, message in problems:
        line = yamlio.key_line(text, where_in) if where_in else None
        print(f"milestone: warning: {WHERE}{f':{line}' if line else ''}: {message}",
              file=sys.stderr, flush=True)


def edit_team(root: Path, change: Callable[[Any], Any]) -> Any:
    """Change the ``team:`` section of config.yaml in place, keeping the file's
    comments and order: ``change`` gets the section (a mapping, made when missing)
    and returns what the caller wants back. Written atomically, links refused; the
    caller holds the writer lock."""
    import io

    from ruamel.yaml import YAML

    from . import fsutil, yamlio

    path = root / "config" / "config.yaml"
    try:
        raw = fsutil.read_bytes(path, yamlio.MAX_FILE_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        raw = DEFAULT_CONFIG_TEXT.encode("utf-8")
    text = yamlio.decode(raw, WHERE)
    yamlio.load_text(text, WHERE)  # refuse what the tool refuses to read, as reads do
    yaml = YAML(typ="rt")
    yaml.width = 100
    yaml.preserve_quotes = True
    doc = yaml.load(text)
    if doc is None:
        doc = yaml.load("{}\n")
    if not isinstance(doc, dict):
        raise InvalidInput(f"{WHERE}: holds a {type(doc).__name__}, not a mapping of settings",
                           hint="fix the file first")
    if not isinstance(doc.get("team"), dict):
        doc["team"] = {}
    got = change(doc["team"])
    buf = io.StringIO()
    yaml.dump(doc, buf)
    new = buf.getvalue()
    yamlio.load_text(new, WHERE)  # what is written reads back
    fsutil.atomic_write(path, new.encode("utf-8"))
    return got

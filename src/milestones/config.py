"""Project configuration: ``config/config.yaml``, read on demand (never at import)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import InvalidInput

DEFAULTS: dict[str, Any] = {
    "ui": {"default": "auto", "rich_from_milestones": 5},
    "team": {"members": []},
    # Read by milestones.scale (documented in milestones.cli.storage).
    "scale": {
        "policy": "suggest",
        "file_below_milestones": 25,
        "file_below_team": 5,
        "hybrid_below_milestones": 100,
        "hybrid_below_team": 20,
        "latency_p95_ms": 500,
        "latency_min_samples": 20,
    },
    # Read by milestones.coord (documented in the README, "Agents").
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
  hybrid_below_milestones: 100  # hybrid while below 100 and 20; database beyond
  hybrid_below_team: 20
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
""",
)
_DEFAULT_BYTES = frozenset(t.encode("utf-8") for t in (DEFAULT_CONFIG_TEXT, *EARLIER_DEFAULT_TEXTS))


# Sections read as mappings of settings besides those DEFAULTS lists.
_SECTIONS = frozenset({"validation", "git", "blockers", "backup", "logs", "kiro"})


def load_config(root: Path) -> dict[str, Any]:
    """The merged configuration; a broken file is reported, not ignored."""
    from .storage import fsutil, yamlio

    path = root / "config" / "config.yaml"
    try:
        raw = fsutil.read_bytes(path, yamlio.MAX_FILE_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return {k: dict(v) for k, v in DEFAULTS.items()}
    if raw in _DEFAULT_BYTES:
        return {k: dict(v) for k, v in DEFAULTS.items()}  # no YAML parse on the hot path
    where = ".milestones/config/config.yaml"
    data = yamlio.load_bytes(raw, where)
    merged: dict[str, Any] = {k: dict(v) for k, v in DEFAULTS.items()}
    if data is None:
        return merged  # an empty file: the defaults
    if not isinstance(data, dict):  # never read as the defaults, as if it were not there
        raise InvalidInput(f"{where}: holds a {type(data).__name__}, not a mapping of settings",
                           hint="fix the file (`milestone init` writes a default one in a new "
                                "project to copy from), or restore it from a backup")
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        elif isinstance(value, dict):
            merged[key] = value
        elif (isinstance(merged.get(key), dict) or key in _SECTIONS) and value is not None:
            raise InvalidInput(f"{where}: {key} holds a {type(value).__name__}, not a mapping "
                               "of settings", hint=f"write {key}: as key: value lines, or "
                                                   "remove it for the defaults")
        elif value is not None:
            merged[key] = value
    return merged

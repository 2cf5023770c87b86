"""Project configuration: ``config/config.yaml``, read on demand (never at import)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "ui": {"default": "auto", "rich_from_milestones": 5},
    "team": {"members": []},
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
"""


def load_config(root: Path) -> dict[str, Any]:
    """The merged configuration; a broken file is reported, not ignored."""
    from .storage import yamlio

    path = root / "config" / "config.yaml"
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return {k: dict(v) for k, v in DEFAULTS.items()}
    if raw == DEFAULT_CONFIG_TEXT.encode("utf-8"):
        return {k: dict(v) for k, v in DEFAULTS.items()}  # no YAML parse on the hot path
    data = yamlio.load_bytes(raw, ".milestones/config/config.yaml") or {}
    merged: dict[str, Any] = {k: dict(v) for k, v in DEFAULTS.items()}
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key].update(value)
            else:
                merged[key] = value
    return merged

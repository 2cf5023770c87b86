"""milestone: a local-first milestone and task tracker for people and AI coding agents."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

"""Agents: many workers on one milestone, built on the service layer.

Owns coordination (``coord``: leased, fenced claims, messages), the executor that
runs the five agents on a milestone (``executor``), blocker detection
(``blockers``) and the git link between tasks, branches and commits (``git``).

May import ``milestones.project`` (the service layer), ``model``, ``ui`` and
``errors``; never a storage backend's module, never a door. See ARCHITECTURE.md.
"""

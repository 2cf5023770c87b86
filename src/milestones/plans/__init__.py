"""Plans from outside: templates (built-ins as YAML package data), Kiro specs, plan
files and project detection. Each turns a document into plain data the service
layer applies; none of them writes a project.

May import ``storage``'s file helpers (``fsutil``, ``yamlio``), ``model``, ``ui``
and ``errors``; never ``project``, ``agents``, ``ops`` or a door. See ARCHITECTURE.md.
"""

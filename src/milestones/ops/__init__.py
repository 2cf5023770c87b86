"""Operations on a project as a whole, built on the service layer.

Owns storage migration (``migrate``), backup and restore (``backup``), the health
check (``doctor``), scale detection (``scale``), the inactive backend's files
(``inactive``) and the demo project (``demo``).

May import ``milestones.project``, ``agents`` (their records), ``storage``'s
package interface, ``model``, ``ui`` and ``errors``; never a storage backend's
module, never a door. See ARCHITECTURE.md.
"""

"""Operations on a project as a whole, built on the service layer.

Owns storage migration (``migrate``), backup and restore (``backup``), the health
check (``doctor``), scale detection (``scale``), the inactive backend's files
(``inactive``), the demo project (``demo``), the log's audit (``audit``) and
the analytics with their rollups in ``database/analytics.db`` (``analytics``,
``analytics_db``).

May import ``milestones.project``, ``agents`` (their records), ``storage``'s
package interface, ``model``, ``ui`` and ``errors``; never a storage backend's
module, never a door. See ARCHITECTURE.md.
"""

"""Storage: the ``Store`` interface (``base``) and its backends, chosen at run time.

Owns everything under ``.milestones/`` as bytes on disk: the file backend (YAML
milestones, ``state.json``, the log's files), hybrid (YAML + a SQLite index), the
database (SQLite), the project's ``config.yaml``, backup archives and the crash-safe
file helpers (``fsutil``); and the PostgreSQL backend (``postgres``, its connection
in ``pgconn``). May import ``model``, ``errors`` and itself; never the
service layer, an agent, an op or a door. Agents and ops use this package's
interface, never a backend's module. See ARCHITECTURE.md.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import StorageError
from .base import Edit, State, Store

__all__ = ["BACKENDS", "Edit", "State", "Store", "open_store", "read_backend", "store_for"]

BACKENDS = ("file", "hybrid", "database", "postgres")


def read_backend(root: Path) -> str | None:
    """The backend ``config/storage-backend.txt`` names (None when there is no file;
    ``file`` when it is empty). Unreadable or not text: a StorageError naming it."""
    from . import fsutil

    marker = root / "config" / "storage-backend.txt"
    try:
        return fsutil.read_bytes(marker, 4096).decode("utf-8").strip() or "file"
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise StorageError(f"{marker} is not text (not UTF-8)",
                           hint=f"set it to one of: {', '.join(BACKENDS)}") from None
    except OSError as exc:
        raise StorageError(
            f"cannot read {marker}: {exc.strerror}", hint="check the directory's permissions"
        ) from None


def open_store(root: Path, backend: str | None = None) -> Store:
    """Open the backend named in ``config/storage-backend.txt`` (``file`` if absent).

    ``backend`` chooses one for a project that has none yet (``milestone init``).
    """
    backend = read_backend(root) or backend or "file"
    store = store_for(root, backend)
    if store is None:
        marker = root / "config" / "storage-backend.txt"
        raise StorageError(
            f"{marker} names an unknown storage backend {backend!r}",
            hint=f"set it to one of: {', '.join(BACKENDS)}",
        )
    return store


def store_for(root: Path, backend: str) -> Store | None:
    """A store object for ``backend`` at ``root`` (None for an unknown name)."""
    if backend == "file":
        from .file import FileStore

        return FileStore(root)
    if backend == "hybrid":
        from .hybrid import HybridStore

        return HybridStore(root)
    if backend == "database":
        from .sqlite import DatabaseStore

        return DatabaseStore(root)
    if backend == "postgres":
        from .postgres import PostgresStore

        return PostgresStore(root)
    return None

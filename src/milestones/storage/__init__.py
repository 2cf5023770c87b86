"""Storage backends behind one ``Store`` interface, chosen at run time."""

from __future__ import annotations

from pathlib import Path

from ..errors import StorageError
from .base import Edit, State, Store

__all__ = ["BACKENDS", "Edit", "State", "Store", "open_store", "store_for"]

BACKENDS = ("file", "hybrid", "database")


def open_store(root: Path, backend: str | None = None) -> Store:
    """Open the backend named in ``config/storage-backend.txt`` (``file`` if absent).

    ``backend`` chooses one for a project that has none yet (``milestone init``).
    """
    marker = root / "config" / "storage-backend.txt"
    try:
        from . import fsutil

        backend = fsutil.read_bytes(marker, 4096).decode("utf-8").strip() or "file"
    except FileNotFoundError:
        backend = backend or "file"
    except OSError as exc:
        raise StorageError(
            f"cannot read {marker}: {exc.strerror}", hint="check the directory's permissions"
        ) from None
    store = store_for(root, backend)
    if store is None:
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
    return None

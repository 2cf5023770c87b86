"""Storage backends behind one ``Store`` interface, chosen at run time."""

from __future__ import annotations

from pathlib import Path

from ..errors import StorageError
from .base import Edit, State, Store

__all__ = ["BACKENDS", "Edit", "State", "Store", "open_store"]

BACKENDS = ("file",)


def open_store(root: Path) -> Store:
    """Open the backend named in ``config/storage-backend.txt`` (``file`` if absent)."""
    marker = root / "config" / "storage-backend.txt"
    try:
        backend = marker.read_text("utf-8").strip() or "file"
    except FileNotFoundError:
        backend = "file"
    except OSError as exc:
        raise StorageError(
            f"cannot read {marker}: {exc.strerror}", hint="check the directory's permissions"
        ) from None
    if backend == "file":
        from .file import FileStore

        return FileStore(root)
    raise StorageError(
        f"{marker} names an unknown storage backend {backend!r}",
        hint=f"set it to one of: {', '.join(BACKENDS)}",
    )

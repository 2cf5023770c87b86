"""The storage adapter interface every backend implements.

A Store keeps three things: milestone snapshots (canonical dicts, see
``Milestone.to_dict``), the append-only event log, and a little session state.
The service layer (``Project``) is the only caller. Writes happen inside
``lock()`` and go through ``commit``, which appends the events first (the
write-ahead record) and then applies their patches to the snapshots, so the two
can never disagree for longer than a crash, which ``recover`` repairs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

Snapshot = dict[str, Any]


@dataclass
class State:
    """What a reader sees: every milestone snapshot plus the log head."""

    milestones: dict[str, Snapshot]
    current: str | None
    max_number: int
    last_event_id: int
    last_hash: str
    # True when the store saw changes it has not recorded yet (hand edits, an
    # interrupted write) and could not take the lock to record them.
    stale: bool = False


@dataclass
class Edit:
    """A change made outside the tool: a milestone file edited, added or removed."""

    milestone_id: str
    before: Snapshot | None
    after: Snapshot | None
    path: str
    current: bool = False  # the edit is to the current-milestone marker
    extra: dict[str, Any] = field(default_factory=dict)


class MilestoneQuery(NamedTuple):
    """The filters of `milestone list`, for stores that can answer from an index."""

    statuses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    owner: str | None = None
    priorities: tuple[str, ...] = ()
    overdue_before: str | None = None  # today: open milestones due before it
    include_archived: bool = False


class Store(ABC):
    """Adapter interface: snapshots, events, the writer lock, backup and restore."""

    backend: str = "abstract"
    root: Path

    @abstractmethod
    def exists(self) -> bool:
        """True when a project has been initialised here."""

    @abstractmethod
    def initialize(self) -> None:
        """Create the on-disk layout (idempotent)."""

    @abstractmethod
    def lock(self, timeout: float | None = None) -> AbstractContextManager[None]:
        """Hold the project's single writer lock; raise Conflict after ``timeout``."""

    @abstractmethod
    def try_lock(self) -> AbstractContextManager[bool]:
        """Take the writer lock if it is free right now; yields whether it was taken."""

    @abstractmethod
    def recover(self) -> list[str]:
        """Finish an interrupted write (under the lock); describe what was repaired."""

    @abstractmethod
    def scan_edits(self) -> list[Edit]:
        """Changes made by hand since the last commit (under the lock)."""

    @abstractmethod
    def load(self) -> State:
        """The current state; may be served without the lock."""

    @abstractmethod
    def needs_sync(self) -> bool:
        """Cheap check: has anything changed outside ``commit`` since the last one?"""

    @abstractmethod
    def commit(
        self, events: Sequence[dict[str, Any]], adopt: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Seal and append ``events``, then apply their patches (under the lock).

        ``adopt`` names milestones whose file already holds the new state (hand
        edits): the store records it without rewriting the file.
        """

    @abstractmethod
    def events(self, after: int = 0) -> Iterator[dict[str, Any]]:
        """Events with ``event_id`` greater than ``after``, oldest first."""

    @abstractmethod
    def read_resume(self) -> dict[str, Any]:
        """The session-resume record (empty when there is none)."""

    @abstractmethod
    def write_resume(self, record: dict[str, Any]) -> None:
        """Replace the session-resume record."""

    @abstractmethod
    def read_record(self, name: str) -> dict[str, Any]:
        """A coordination record (``agents``, ``messages``; see ``milestones.coord``);
        {} when there is none. Records are not events: they hold the live state of
        agents (heartbeats, inboxes) that changes too often to log every change."""

    @abstractmethod
    def write_record(self, name: str, data: dict[str, Any]) -> None:
        """Replace a coordination record (under the lock)."""

    @abstractmethod
    def sources(self) -> dict[str, str]:
        """The YAML text each milestone was last written as (kept across migrations)."""

    @abstractmethod
    def import_data(self, events: Sequence[dict[str, Any]], state: State,
                    resume: dict[str, Any], sources: dict[str, str]) -> None:
        """Fill a fresh store with another's events (verbatim) and snapshots."""

    def query_milestones(self, q: MilestoneQuery) -> list[Snapshot] | None:
        """Milestones matching ``q`` from an index; None when the store has none."""
        return None

    def head(self) -> tuple[int, str] | None:
        """The log head (last event id and hash) if the store can tell it cheaply, else None.

        Right after ``needs_sync()`` said False it names exactly what ``load()`` would
        return: two loads at one head are the same state (the hash chains every event),
        so a caller may keep a loaded state for as long as the head stays put.
        """
        return None

    def cache_get(self, key: str, head: str) -> Any:
        """A cached query result computed at log head ``head`` (None on a miss)."""
        return None

    def cache_put(self, key: str, head: str, value: Any) -> None:
        """Keep a query result computed at log head ``head``."""
        return None

    @abstractmethod
    def backup(self, dest: Path) -> Path:
        """Write a complete copy of the project's data to ``dest``."""

    @abstractmethod
    def restore(self, src: Path) -> None:
        """Replace the project's data with a backup made by ``backup``."""

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
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import RECORD_HINT

Snapshot = dict[str, Any]


class State:
    """What a reader sees: every milestone snapshot plus the log head."""

    def __init__(self, milestones: dict[str, Snapshot], current: str | None,
                 max_number: int, last_event_id: int, last_hash: str,
                 stale: bool = False) -> None:
        self.milestones = milestones  # or LazyMilestones, from Store.view() only
        self.current = current
        self.max_number = max_number
        self.last_event_id = last_event_id
        self.last_hash = last_hash
        # True when the store saw changes it has not recorded yet (hand edits, an
        # interrupted write) and could not take the lock to record them.
        self.stale = stale

    def replace(self, milestones: dict[str, Snapshot]) -> State:
        """The same state over other snapshots."""
        return State(milestones, *self._rest())

    def _rest(self) -> tuple[Any, ...]:
        return self.current, self.max_number, self.last_event_id, self.last_hash, self.stale

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return self._rest() == other._rest() and self.milestones == other.milestones

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (f"State({len(self.milestones)} milestones, current={self.current!r}, "
                f"last_event_id={self.last_event_id})")


class Edit:
    """A change made outside the tool: a milestone file edited, added or removed."""

    def __init__(self, milestone_id: str, before: Snapshot | None, after: Snapshot | None,
                 path: str, current: bool = False, extra: dict[str, Any] | None = None
                 ) -> None:
        self.milestone_id = milestone_id
        self.before = before
        self.after = after
        self.path = path
        self.current = current  # the edit is to the current-milestone marker
        self.extra: dict[str, Any] = {} if extra is None else extra

    def _fields(self) -> tuple[Any, ...]:
        return (self.milestone_id, self.before, self.after, self.path, self.current,
                self.extra)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Edit):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Edit({self.milestone_id!r}, {self.path!r}, current={self.current!r})"


class LazyMilestones(Mapping[str, Snapshot]):
    """Milestone snapshots fetched from an indexed store when asked, each at most once.

    What ``Store.view`` hands out on stores that can read one milestone cheaply: a
    command that needs three milestones reads three, not ten thousand. Iterating
    asks the store for the ids only; ``values()``/``items()`` load everything in
    one go (and keep it). Read the snapshots, never change them. Consistent only
    inside ``Store.reading()`` (or the writer lock), as every read of the store.
    """

    lazy = True

    def __init__(self, fetch: Callable[[Sequence[str]], dict[str, Snapshot]],
                 ids: Callable[[], list[str]], load_all: Callable[[], dict[str, Snapshot]]
                 ) -> None:
        self._fetch = fetch
        self._ids = ids
        self._load_all = load_all
        self._got: dict[str, Snapshot | None] = {}
        self._every: list[str] | None = None
        self._every_set: set[str] = set()
        self._complete = False

    def prefetch(self, mids: Iterable[str]) -> None:
        """Read these milestones (those not read yet) in one batch."""
        want = [m for m in dict.fromkeys(mids) if m not in self._got]
        for start in range(0, len(want), 500):
            chunk = want[start:start + 500]
            found = self._fetch(chunk)
            for mid in chunk:
                self._got[mid] = found.get(mid)

    def __getitem__(self, mid: str) -> Snapshot:
        if mid not in self._got:
            if self._complete or (self._every is not None and mid not in self._every_set):
                raise KeyError(mid)
            self.prefetch([mid])
        snap = self._got[mid]
        if snap is None:
            raise KeyError(mid)
        return snap

    def __contains__(self, mid: object) -> bool:
        if not isinstance(mid, str):
            return False
        try:
            self[mid]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        if self._every is None:
            self._every = self._ids()
            self._every_set = set(self._every)
        return iter(self._every)

    def __len__(self) -> int:
        return len(list(iter(self)))

    def everything(self) -> dict[str, Snapshot]:
        """Every milestone, read in one go (then served from memory)."""
        if not self._complete:
            every = self._load_all()
            self._got = dict(every)
            self._every = list(every)
            self._every_set = set(self._every)
            self._complete = True
        return {mid: snap for mid, snap in self._got.items() if snap is not None}

    def values(self) -> Any:
        return self.everything().values()

    def items(self) -> Any:
        return self.everything().items()


class Overlay(MutableMapping[str, Snapshot]):
    """A write's view of the milestones: its own changes over the store's snapshots."""

    lazy = True

    def __init__(self, base: Mapping[str, Snapshot]) -> None:
        self.base = base
        self.changed: dict[str, Snapshot] = {}
        self.removed: set[str] = set()

    def __getitem__(self, mid: str) -> Snapshot:
        if mid in self.changed:
            return self.changed[mid]
        if mid in self.removed:
            raise KeyError(mid)
        return self.base[mid]

    def __contains__(self, mid: object) -> bool:
        if mid in self.changed:
            return True
        return mid not in self.removed and mid in self.base

    def __setitem__(self, mid: str, snap: Snapshot) -> None:
        self.removed.discard(mid)
        self.changed[mid] = snap

    def __delitem__(self, mid: str) -> None:
        if mid not in self:
            raise KeyError(mid)
        self.changed.pop(mid, None)
        self.removed.add(mid)

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for mid in self.base:
            if mid not in self.removed:
                seen.add(mid)
                yield mid
        for mid in self.changed:
            if mid not in seen:
                yield mid

    def __len__(self) -> int:
        return sum(1 for _ in self)


def is_lazy(milestones: Mapping[str, Any]) -> bool:
    """True when ``milestones`` reads from an index on demand (not every snapshot in memory)."""
    return isinstance(milestones, (LazyMilestones, Overlay))


class MilestoneQuery(NamedTuple):
    """The filters of `milestone list`, for stores that can answer from an index."""

    statuses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    owner: str | None = None
    priorities: tuple[str, ...] = ()
    overdue_before: str | None = None  # today: open milestones due before it
    include_archived: bool = False
    after: str | None = None  # a page: ids after this one
    limit: int | None = None  # at most this many


class Store(ABC):
    """Adapter interface: snapshots, events, the writer lock, backup and restore."""

    backend: str = "abstract"
    root: Path

    def data_files(self) -> list[Path]:
        """The files this backend keeps its data in that exist (none in memory)."""
        return []

    def warn(self, message: str) -> None:
        """Trouble after a write's commit point (a derived index, a rotation): the write
        stands, so it is kept for the caller to show as a warning, never raised."""
        self.__dict__.setdefault("_warnings", []).append(message)

    def take_warnings(self) -> list[str]:
        """The warnings ``warn`` kept since the last call."""
        return list(self.__dict__.pop("_warnings", []))

    @abstractmethod
    def exists(self) -> bool:
        """True when a project has been initialised here."""

    @abstractmethod
    def initialize(self) -> None:
        """Create the on-disk layout (idempotent)."""

    @abstractmethod
    def lock(self, timeout: float | None = None) -> AbstractContextManager[None]:
        """Hold the project's single writer lock; raise Conflict after ``timeout``."""

    # Whether ``commit`` may be called more than once in a write, each time inside the
    # write's one transaction (the database backends): ``Txn.flush``.
    flushes = False

    def lock_late(self, timeout: float | None = None) -> AbstractContextManager[None]:
        """A write whose writer lock may be taken late: inside it, reads and
        ``pick_ready`` come first and ``take_lock`` (or the first write) takes the
        lock; a backend without such a lock takes it whole here (``lock``)."""
        return self.lock(timeout)

    def take_lock(self) -> bool:
        """Inside ``lock_late``: take the writer lock now; True when it was not held yet
        (what the write read so far may be a moment old), False when it was."""
        return False

    def pick_ready(self, only: str | None = None, limit: int | None = None
                   ) -> list[dict[str, Any]] | None:
        """``ready_tasks``' rows, each locked for this write and none another write has
        locked (a claim's pick, before the writer lock); None without such row locks."""
        return None

    def reserve_task(self, mid: str, tid: str) -> bool:
        """Inside a write: lock the task's row for it, unless another write holds it
        (False: pass it over). True where the writer lock holds every row."""
        return True

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
        """A coordination record (``agents``, ``messages``; see ``milestones.agents.coord``);
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

    def query_milestones(self, q: MilestoneQuery) -> Iterable[Snapshot] | None:
        """Milestones matching ``q`` from an index, by id (read as they are iterated,
        inside ``reading()``); None when the store has none."""
        return None

    def view(self) -> State:
        """The current state for a reader or a write: like ``load()``, but a store with
        an index may hand out ``LazyMilestones`` that read each snapshot when asked."""
        return self.load()

    def reading(self) -> AbstractContextManager[None]:
        """Hold one consistent snapshot of the data for several reads (a no-op unless
        the store reads lazily)."""
        return nullcontext()

    def totals(self) -> dict[str, dict[str, int]] | None:
        """Milestones by status and tasks by status, from an index (None without one)."""
        return None

    def dependents(self, mids: Iterable[str]) -> set[str] | None:
        """Milestones that depend on any of ``mids`` (a task of theirs on a task of one of
        ``mids``, or the milestone itself), from an index; None without one."""
        return None

    def task_edges(self) -> dict[str, list[str]] | None:
        """Every task dependency (full refs, task -> what it waits on), from an index
        (None without one)."""
        return None

    def milestones_with_tasks(self, statuses: Sequence[str]) -> list[str] | None:
        """Ids of the milestones holding a task in one of ``statuses``, from an index
        (None without one: look at every milestone)."""
        return None

    def active_tasks(self) -> list[tuple[str, Snapshot]] | None:
        """(milestone id, task) of every task in progress or blocked, by milestone id and
        position, from an index; None without one."""
        return None

    def held_tasks(self) -> list[tuple[str, Snapshot]] | None:
        """(milestone id, task) of every task in progress that an agent holds (its
        ``execution.agent`` set), by milestone id and position, from an index; None
        without one."""
        return None

    def schedule_graph(self) -> tuple[dict[str, list[str]], dict[str, float]] | None:
        """Every task's dependencies (those that exist) and remaining hours, by full ref
        (``model.schedule``'s task graph), from an index without reading a snapshot;
        None without one."""
        return None

    def ready_tasks(self, only: str | None = None, limit: int | None = None
                    ) -> tuple[list[dict[str, Any]], int] | None:
        """The tasks that can start now (of milestone ``only``, or all), best first, at
        most ``limit`` of them, and how many there are in all; from an index (the rows of
        ``next``, each with its task's ``paths``). None without one: work it out from
        the snapshots."""
        return None

    def actors_since(self, since: str) -> list[tuple[str, str, int, int]] | None:
        """Per actor, the events since ``since`` (an ISO timestamp): (actor, latest
        timestamp, events, agent events), from an index; None without one (read the log)."""
        return None

    def wait_for_events(self, after: int, timeout: float) -> bool:
        """Wait for an event past ``after`` (``log --follow``): at most ``timeout``
        seconds. This one polls (a quarter of a second, then says there may be one); a
        store that is told of each commit (postgres: LISTEN/NOTIFY) waits for it."""
        import time

        time.sleep(min(timeout, 0.25))
        return True

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

    def cache_peek(self, key: str) -> tuple[str, Any] | None:
        """The cached ``key`` whatever head it was computed at: (head, value), or None."""
        return None

    @abstractmethod
    def backup(self, dest: Path) -> Path:
        """Write a complete copy of the project's data to ``dest``."""

    @abstractmethod
    def restore(self, src: Path) -> None:
        """Replace the project's data with a backup made by ``backup``."""

    # ------------------------------------------------- migration, in batches

    def snapshot_batches(self, size: int) -> Iterator[list[Snapshot]]:
        """Every milestone snapshot by id, ``size`` at a time (a migration's copy and its
        verification). This one reads them all first; an indexed store pages."""
        milestones = self.load().milestones
        mids = sorted(milestones)
        for start in range(0, len(mids), size):
            yield [milestones[mid] for mid in mids[start:start + size]]

    def head_state(self) -> State:
        """The log head and current milestone, without the milestones (empty)."""
        s = self.view()
        return State({}, s.current, s.max_number, s.last_event_id, s.last_hash)

    def source_texts(self, mids: Sequence[str]) -> dict[str, str]:
        """``sources()`` of these milestones only."""
        want = set(mids)
        return {mid: text for mid, text in self.sources().items() if mid in want}

    def import_stream(self, events: Iterable[Sequence[dict[str, Any]]],
                      snapshots: Iterable[Sequence[Snapshot]], head: State,
                      resume: dict[str, Any],
                      sources: Callable[[Sequence[str]], dict[str, str]]) -> None:
        """``import_data`` fed in batches: the events (oldest first), then the snapshots,
        each batch written as it comes, so a migration never holds the whole project.
        ``head`` gives the log head and current milestone (its milestones unused);
        ``sources(mids)`` the YAML texts of a batch. This one gathers everything and
        calls ``import_data``; the disk backends write batch by batch."""
        every = [e for batch in events for e in batch]
        milestones = {s["id"]: s for batch in snapshots for s in batch}
        state = State(milestones, head.current, head.max_number, head.last_event_id,
                      head.last_hash)
        self.import_data(every, state, resume, sources(sorted(milestones)))




def decode_record(raw: bytes | str, where: str) -> dict[str, Any]:
    """A coordination record's stored text as its object. Text that is not one JSON
    object is a ``StorageError`` naming ``where``: never read as empty, since the next
    write would replace it (agent ids reused, unread messages lost)."""
    import json

    from ..errors import StorageError

    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise StorageError(f"{where} is damaged: not valid JSON ({exc!r:.200})",
                           hint=RECORD_HINT) from None
    if not isinstance(data, dict):
        raise StorageError(f"{where} is damaged: it holds a {type(data).__name__}, "
                           "not a JSON object", hint=RECORD_HINT)
    return data

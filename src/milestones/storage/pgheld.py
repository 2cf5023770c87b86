"""What a PostgreSQL write reads under the writer lock, read once: the log head
(``meta``), the session-resume record, the agents' registry and each milestone's
last event are read in the round trip that takes the lock (or on first use) and
kept until the transaction ends, updated by the write's own changes. Nobody else
writes them while the lock is held, so they stay true; every round trip saved is
time the lock is held less (``postgres.PostgresStore``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .sqlite import DatabaseStore

# Read in the lock's own round trip (a write reads these at every commit).
PREFETCH = ("SELECT key, value FROM meta", "SELECT data FROM resume WHERE id = 1",
            "SELECT data FROM records WHERE name = 'agents'")


class HeldReads(DatabaseStore):
    """``DatabaseStore``'s reads of the head, the resume record, the registry and the
    milestones' last events, kept while this store holds the writer lock."""

    _held: dict[str, Any] = {}  # noqa: RUF012  (set per transaction: see hold())
    _locked = False

    def hold(self, cursor: Any | None) -> None:
        """A new transaction's (empty); with ``cursor``, the lock's round trip, its
        results past the lock's own being ``PREFETCH``'s, in order."""
        self._held = {"last": {}, "records": {}}
        if cursor is None:
            return
        results = []
        while cursor.nextset():
            results.append(cursor.fetchall() if cursor.description is not None else [])
        meta, resume, agents = results[-3:]
        self._held["meta"] = {k: v for k, v in meta}
        self._held["resume"] = resume[0][0] if resume else None
        self._held["records"]["agents"] = agents[0][0] if agents else None

    def _holding(self) -> bool:
        return self._locked and self._in_txn

    def _meta(self, conn: Any) -> dict[str, str]:
        if not self._holding():
            return super()._meta(conn)
        if "meta" not in self._held:
            self._held["meta"] = super()._meta(conn)
        return dict(self._held["meta"])

    def set_meta(self, conn: Any, values: dict[str, str]) -> None:
        super().set_meta(conn, values)
        if self._holding() and "meta" in self._held:
            self._held["meta"].update(values)

    def _last_events(self, conn: Any, mids: Iterable[str]) -> dict[str, tuple[int, str]]:
        if not self._holding():
            return super()._last_events(conn, mids)
        memo: dict[str, tuple[int, str] | None] = self._held["last"]
        mids = list(mids)
        missing = [mid for mid in mids if mid not in memo]
        if missing:
            found = super()._last_events(conn, missing)
            memo.update({mid: found.get(mid) for mid in missing})
        return {mid: at for mid in mids if (at := memo[mid]) is not None}

    def commit(self, events: Sequence[dict[str, Any]],
               adopt: Sequence[str] = ()) -> list[dict[str, Any]]:
        if not self._holding():
            return super().commit(events, adopt)
        conn: Any = self.connect()
        with conn.pipeline():  # the rows' writes in one round trip or few
            sealed = super().commit(events, adopt)
        if self._holding():
            for e in sealed:
                if e.get("milestone_id"):
                    self._held["last"][e["milestone_id"]] = (e["event_id"], e["hash"])
        return sealed

    def held_tasks(self) -> list[tuple[str, Any]] | None:
        """Before the lock (a claim's look at the leases, then its pick), read once."""
        if not self._in_txn or self._locked:
            return super().held_tasks()
        if "held" not in self._held:
            self._held["held"] = super().held_tasks()
        return list(self._held["held"])

    def read_resume(self) -> dict[str, Any]:
        if not self._holding() or "resume" not in self._held:
            return super().read_resume()
        text = self._held["resume"]
        if text is None:
            return {}
        from . import fsutil

        try:
            data = fsutil.loads_json(text)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def write_resume(self, record: dict[str, Any]) -> None:
        super().write_resume(record)
        self._held.pop("resume", None)  # (read again if asked)

    def read_record(self, name: str) -> dict[str, Any]:
        if not self._holding() or name not in self._held["records"]:
            return super().read_record(name)
        text = self._held["records"][name]
        if text is None:
            return {}
        from .base import decode_record

        return decode_record(text, f"the `{name}` record in {self.db_path}")

    def write_record(self, name: str, data: dict[str, Any]) -> None:
        super().write_record(name, data)
        self._held.get("records", {}).pop(name, None)

    def set_aside_record(self, name: str, suffix: str) -> str | None:
        self._held.get("records", {}).pop(name, None)
        return super().set_aside_record(name, suffix)

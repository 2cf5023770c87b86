"""An in-memory Store: the fake the service tests run on, and the reference
implementation of the interface's semantics (no files, same behaviour)."""

from __future__ import annotations

import contextlib
import copy
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ..errors import Conflict
from ..model import events as ev
from .base import Edit, State, Store


class MemoryStore(Store):
    backend = "memory"

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or "/nonexistent/.milestones")
        self._initialized = False
        self._log: list[dict[str, Any]] = []
        self._replay = ev.ReplayState()
        self._resume: dict[str, Any] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()

    def exists(self) -> bool:
        return self._initialized

    def initialize(self) -> None:
        self._initialized = True

    def lock(self, timeout: float | None = None) -> AbstractContextManager[None]:
        @contextlib.contextmanager
        def held() -> Iterator[None]:
            if not self._lock.acquire(timeout=10.0 if timeout is None else timeout):
                raise Conflict("the project is busy", hint="retry")
            try:
                yield
            finally:
                self._lock.release()

        return held()

    def try_lock(self) -> AbstractContextManager[bool]:
        @contextlib.contextmanager
        def held() -> Iterator[bool]:
            got = self._lock.acquire(blocking=False)
            try:
                yield got
            finally:
                if got:
                    self._lock.release()

        return held()

    def recover(self) -> list[str]:
        return []

    def scan_edits(self) -> list[Edit]:
        return []

    def needs_sync(self) -> bool:
        return False

    def load(self) -> State:
        r = self._replay
        return State(
            milestones=copy.deepcopy(r.milestones),
            current=r.current,
            max_number=r.max_number,
            last_event_id=r.last_id,
            last_hash=r.last_hash,
        )

    def commit(
        self, events: Sequence[dict[str, Any]], adopt: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        sealed = []
        last_id, last_hash = self._replay.last_id, self._replay.last_hash
        for e in events:
            last_id += 1
            sealed.append(ev.seal(json.loads(ev.canonical(e)), last_id, last_hash))
            last_hash = sealed[-1]["hash"]
        for e in sealed:
            self._replay.feed(e)
        self._log.extend(sealed)
        return sealed

    def events(self, after: int = 0) -> Iterator[dict[str, Any]]:
        for e in list(self._log):
            if e["event_id"] > after:
                yield copy.deepcopy(e)

    def read_resume(self) -> dict[str, Any]:
        return copy.deepcopy(self._resume)

    def write_resume(self, record: dict[str, Any]) -> None:
        self._resume = copy.deepcopy(record)

    def read_record(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self._records.get(name, {}))

    def write_record(self, name: str, data: dict[str, Any]) -> None:
        self._records[name] = copy.deepcopy(data)

    def sources(self) -> dict[str, str]:
        return {}

    def import_data(self, events: Sequence[dict[str, Any]], state: State,
                    resume: dict[str, Any], sources: dict[str, str]) -> None:
        self._log = [copy.deepcopy(dict(e)) for e in events]
        self._replay = ev.replay(self._log)
        self._resume = copy.deepcopy(resume)
        self._initialized = True

    def backup(self, dest: Path) -> Path:
        Path(dest).write_text(json.dumps({"events": self._log, "resume": self._resume}))
        return Path(dest)

    def restore(self, src: Path) -> None:
        data = json.loads(Path(src).read_text())
        self._log = data["events"]
        self._resume = data["resume"]
        self._replay = ev.replay(self._log)

"""Replaying the event log from empty rebuilds every milestone exactly.

A hypothesis state machine drives a ``Project`` (memory store and file store)
through random command sequences. Commands the model refuses must raise a
``MilestoneError`` and change nothing; after every step the log's hash chain
verifies, replaying it gives back the stored milestones and current one, and
(file store) every YAML file parses back to its snapshot.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from prop_strategies import TRICKY_TITLES, examples

from milestones import model as md
from milestones.errors import MilestoneError
from milestones.model import events as ev
from milestones.project import Project
from milestones.storage import BACKENDS, open_store, yamlio
from milestones.storage.file import FileStore
from milestones.storage.memory import MemoryStore

ACTOR = "prop@example.com"
SESSION = "prop-session"


class Clock:
    """A clock that moves on 97 seconds per reading, so time accounting is exact."""

    def __init__(self) -> None:
        self.tick = 0

    def __call__(self) -> str:
        self.tick += 1
        seconds = 1_700_000_000 + 97 * self.tick
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mostly(default: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``default`` three times in four, else a draw from ``other``."""
    return st.integers(0, 3).flatmap(lambda n: other if n == 0 else st.just(default))


titles = st.integers(0, 5).flatmap(
    lambda n: st.text(max_size=12)  # may be empty or hold control characters: refused
    if n == 0
    else st.sampled_from(TRICKY_TITLES)
    if n < 3
    else st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,12}", fullmatch=True)
)
mnum = st.integers(1, 6)  # milestone numbers; some will not exist
tnum = st.integers(1, 5)


def milestone_ref_forms(n: int) -> st.SearchStrategy[str]:
    return st.sampled_from([str(n), f"milestone-{n:03d}", f"m{n}", f"M{n}", f"00{n}"])


def task_ref_forms(t: int) -> st.SearchStrategy[str]:
    return st.sampled_from([str(t), f"task-{t}", f"t{t}"])


dep_refs = st.one_of(
    tnum.map(str),
    st.tuples(mnum, tnum).map(lambda p: f"{p[0]}/{p[1]}"),
    st.sampled_from(["nonsense/x", "0", "x"]),
)
opt_dates = st.one_of(st.none(), st.sampled_from(["2026-01-01", "2026-06-30", "2026-13-01", ""]))


def _canon(state: Any) -> str:
    return ev.canonical({"milestones": state.milestones, "current": state.current})


class ProjectMachine(RuleBasedStateMachine):
    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="ms-prop-"))
        if self.backend == "memory":
            store = MemoryStore(self.tmp / ".milestones")
            store.initialize()
            self.project = Project(store, cwd=self.tmp, actor=ACTOR, session_id=SESSION)
        else:
            kw = {} if self.backend == "file" else {"backend": self.backend}
            self.project, _ = Project.init(self.tmp, actor=ACTOR, session_id=SESSION, **kw)
        self.project.clock = Clock()
        self.project.today = lambda: "2026-03-01"
        self.store = self.project.store
        self.refused = 0

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ----------------------------------------------------------- helpers

    def attempt(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run a command; a refusal must be a MilestoneError that changed nothing."""
        before = _canon(self.store.load())
        head = self.store.load().last_event_id
        n_events = len(list(self.store.events()))
        try:
            return fn(*args, **kw)
        except MilestoneError:
            self.refused += 1
            after = self.store.load()
            assert after.last_event_id == head, "a refused command appended an event"
            assert len(list(self.store.events())) == n_events
            assert _canon(after) == before, "a refused command changed the state"
            return None

    def snapshot(self, mid: str) -> dict[str, Any]:
        return self.store.load().milestones[mid]

    def check_task(self, t: md.Task | None, ref: str) -> None:
        """The task a command returned is the task the store now holds."""
        if t is None:
            return
        st_ = self.store.load()
        homes = [
            mid
            for mid, s in st_.milestones.items()
            if any(x["id"] == t.id and x == t.to_dict() for x in s["tasks"])
        ]
        assert homes, f"{ref}: the returned task {t.id} is not what the store holds"

    def pick_milestone(self, data: st.DataObject) -> str:
        """A reference to an existing milestone, now and then to any number."""
        nums = [md.milestone_number(m) for m in sorted(self.store.load().milestones)]
        if nums and data.draw(st.integers(0, 7)):
            n = data.draw(st.sampled_from(nums))
        else:
            n = data.draw(mnum)
        return data.draw(milestone_ref_forms(n))

    def pick_task(self, data: st.DataObject) -> str:
        """A reference to an existing task, now and then a bare or unknown one."""
        st_ = self.store.load()
        pairs = [
            (md.milestone_number(mid), md.task_number(t["id"]))
            for mid, snap in sorted(st_.milestones.items())
            for t in snap["tasks"]
        ]
        roll = data.draw(st.integers(0, 9))
        if pairs and roll > 1:
            n, t = data.draw(st.sampled_from(pairs))
        else:
            n, t = data.draw(mnum), data.draw(tnum)
        if roll == 1:
            return data.draw(task_ref_forms(t))  # in the current milestone
        return f"{data.draw(milestone_ref_forms(n))}/{data.draw(task_ref_forms(t))}"

    def pick_deps(self, data: st.DataObject) -> list[str]:
        if data.draw(st.integers(0, 2)):
            return []
        out = []
        for _ in range(data.draw(st.integers(1, 2))):
            if data.draw(st.booleans()):
                out.append(data.draw(tnum.map(str)))
            elif data.draw(st.integers(0, 4)):
                ref = self.pick_task(data)
                out.append(ref if "/" in ref else f"1/{ref}")
            else:
                out.append(data.draw(dep_refs))
        return out

    # ---------------------------------------------------------- commands

    @initialize(
        seeds=st.lists(
            st.tuples(
                st.from_regex(r"[A-Z][a-z]{1,8}", fullmatch=True),
                st.lists(st.sampled_from(TRICKY_TITLES), min_size=1, max_size=4),
                st.booleans(),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def seed(self, seeds: list[tuple[str, list[str], bool]]) -> None:
        """Start from a few valid milestones, so most commands have something to act on."""
        for title, task_titles, chain in seeds:
            specs = [
                {"title": t, "depends_on": [str(i)] if chain and i > 0 else []}
                for i, t in enumerate(task_titles)
            ]
            m = self.project.plan(title, tasks=specs)
            assert m.to_dict() == self.snapshot(m.id)

    @rule(
        data=st.data(),
        title=titles,
        tasks=st.lists(
            st.tuples(
                titles,
                mostly([], st.lists(st.one_of(tnum.map(str), dep_refs), max_size=2)),
                st.sampled_from(["todo", "todo", "todo", "done"]),
                st.one_of(st.none(), st.sampled_from([1, 2.5, 8])),
            ),
            max_size=4,
        ),
        start=mostly(None, opt_dates),
        due=mostly(None, opt_dates),
        priority=mostly("medium", st.sampled_from([*md.PRIORITIES, "urgent"])),
    )
    def plan(
        self,
        data: st.DataObject,
        title: str,
        tasks: list[tuple[str, list[str], str, float | None]],
        start: str | None,
        due: str | None,
        priority: str,
    ) -> None:
        specs = [
            {"title": t, "depends_on": deps, "status": status, "estimate": est}
            for t, deps, status, est in tasks
        ]
        depends_on = (
            [] if data.draw(st.integers(0, 3)) else [self.pick_milestone(data)]
        )
        m = self.attempt(
            self.project.plan,
            title,
            tasks=specs,
            depends_on=depends_on,
            start=start,
            due=due,
            priority=priority,
        )
        if m is not None:
            assert m.to_dict() == self.snapshot(m.id)

    @rule(
        data=st.data(),
        title=titles,
        estimate=mostly(None, st.sampled_from([0, 0.5, 3, 20000])),
    )
    def add_task(self, data: st.DataObject, title: str, estimate: float | None) -> None:
        mref, deps = self.pick_milestone(data), self.pick_deps(data)
        out = self.attempt(self.project.add_task, mref, title, depends_on=deps, estimate=estimate)
        if out is not None:
            mid, t = out
            assert t.to_dict() == self.snapshot(mid)["tasks"][-1]

    @rule(data=st.data(), force=st.booleans())
    def start(self, data: st.DataObject, force: bool) -> None:
        ref = self.pick_task(data)
        self.check_task(self.attempt(self.project.start_task, ref, force=force), ref)

    @rule(data=st.data())
    def stop(self, data: st.DataObject) -> None:
        ref = self.pick_task(data)
        self.check_task(self.attempt(self.project.stop_task, ref), ref)

    @rule(data=st.data(), force=st.booleans())
    def done(self, data: st.DataObject, force: bool) -> None:
        ref = self.pick_task(data)
        self.check_task(self.attempt(self.project.complete_task, ref, force=force), ref)

    @rule(data=st.data(), reason=st.sampled_from(["waiting on review", "", "  x  ", "yes"]))
    def block(self, data: st.DataObject, reason: str) -> None:
        ref = self.pick_task(data)
        self.check_task(self.attempt(self.project.block_task, ref, reason), ref)

    @rule(data=st.data())
    def unblock(self, data: st.DataObject) -> None:
        ref = self.pick_task(data)
        self.check_task(self.attempt(self.project.unblock_task, ref), ref)

    @rule(data=st.data(), reason=st.one_of(st.none(), st.just("out of scope")))
    def skip(self, data: st.DataObject, reason: str | None) -> None:
        ref = self.pick_task(data)
        self.check_task(self.attempt(self.project.skip_task, ref, reason=reason), ref)

    @rule(data=st.data())
    def reopen(self, data: st.DataObject) -> None:
        ref = self.pick_task(data)
        self.check_task(self.attempt(self.project.reopen_task, ref), ref)

    @rule(data=st.data(), value=st.one_of(st.integers(0, 100), st.sampled_from([-1, 101])))
    def progress(self, data: st.DataObject, value: int) -> None:
        ref = self.pick_task(data)
        self.check_task(self.attempt(self.project.set_progress, ref, value), ref)

    @rule(data=st.data(), who=st.sampled_from([None, "ana", "bo@example.com", "", "null"]))
    def assign(self, data: st.DataObject, who: str | None) -> None:
        ref = self.pick_task(data)
        self.check_task(self.attempt(self.project.assign_task, ref, who), ref)

    @rule(
        data=st.data(),
        title=st.one_of(st.none(), titles),
        estimate=st.one_of(st.none(), st.sampled_from([0, 1.5, 4, -1])),
        description=st.one_of(st.none(), st.sampled_from(["", "multi\nline", "yes"])),
    )
    def edit_task(
        self,
        data: st.DataObject,
        title: str | None,
        estimate: float | None,
        description: str | None,
    ) -> None:
        ref = self.pick_task(data)
        depends_on = self.pick_deps(data) if data.draw(st.booleans()) else None
        t = self.attempt(
            self.project.edit_task,
            ref,
            title=title,
            estimate=estimate,
            depends_on=depends_on,
            description=description,
        )
        self.check_task(t, ref)

    @rule(
        data=st.data(),
        title=st.one_of(st.none(), titles),
        priority=st.one_of(st.none(), st.sampled_from([*md.PRIORITIES, "bogus"])),
        status=st.one_of(
            st.none(),
            st.sampled_from(["planned", "in_progress", "blocked", "cancelled", "completed", "x"]),
        ),
        start=opt_dates,
        due=opt_dates,
        tags=st.one_of(st.none(), st.lists(st.sampled_from(["web", "api", "yes", ""]))),
        owner=st.one_of(st.none(), st.sampled_from(["ana", "null", ""])),
    )
    def update(self, data: st.DataObject, **changes: Any) -> None:
        mref = self.pick_milestone(data)
        if data.draw(st.integers(0, 3)) == 0:
            changes["depends_on"] = [
                self.pick_milestone(data) for _ in range(data.draw(st.integers(0, 2)))
            ]
        m = self.attempt(self.project.update, mref, **changes)
        if m is not None:
            assert m.to_dict() == self.snapshot(m.id)

    @rule(data=st.data())
    def set_current(self, data: st.DataObject) -> None:
        mid = self.attempt(self.project.set_current, self.pick_milestone(data))
        if mid is not None:
            assert self.store.load().current == mid

    @rule(data=st.data(), lessons=st.lists(st.sampled_from(["ship smaller", ""]), max_size=2))
    def archive(self, data: st.DataObject, lessons: list[str]) -> None:
        m = self.attempt(self.project.archive, self.pick_milestone(data), lessons=lessons)
        if m is not None:
            assert m.to_dict() == self.snapshot(m.id)
            assert self.store.load().current != m.id

    @rule(data=st.data(), force=st.booleans())
    def delete(self, data: st.DataObject, force: bool) -> None:
        # Rarer than the rest, so projects grow.
        if data.draw(st.integers(0, 2)):
            return
        mid = self.attempt(self.project.delete, self.pick_milestone(data), force=force)
        if mid is not None:
            assert mid not in self.store.load().milestones

    @rule(text=st.one_of(titles, st.just("a note\nover two lines")))
    def note(self, text: str) -> None:
        self.attempt(self.project.note, text)

    @precondition(lambda self: self.backend != "memory")
    @rule()
    def reopen_project(self) -> None:
        """A fresh process: a new store reads what is on disk and must see the same."""
        before = _canon(self.store.load())
        fresh = Project(
            open_store(self.store.root), cwd=self.tmp, actor=ACTOR, session_id=SESSION
        )
        assert fresh.store.backend == self.store.backend
        fresh.clock, fresh.today = self.project.clock, self.project.today
        assert _canon(fresh.state()) == before
        self.project, self.store = fresh, fresh.store

    # -------------------------------------------------------- invariants

    @invariant()
    def log_replays_to_the_snapshots(self) -> None:
        events = list(self.store.events())
        assert ev.verify_chain(events) is None
        assert [e["event_type"] for e in events if e["event_type"] not in ev.EVENT_TYPES] == []
        assert not any(e["event_type"] == "manual_edit_detected" for e in events)
        replayed = ev.replay(events)
        state = self.store.load()
        assert ev.canonical(replayed.milestones) == ev.canonical(state.milestones)
        assert replayed.current == state.current
        assert replayed.last_id == state.last_event_id == len(events)
        assert replayed.last_hash == state.last_hash
        assert state.current is None or state.current in state.milestones
        for mid, snap in state.milestones.items():
            # Every snapshot is canonical: the model reads it back unchanged.
            assert ev.canonical(md.Milestone.from_dict(snap).to_dict()) == ev.canonical(snap)
            assert snap["id"] == mid

    @invariant()
    def files_parse_to_the_snapshots(self) -> None:
        if self.backend != "file":
            return
        assert isinstance(self.store, FileStore)
        root = self.store.root
        state = self.store.load()
        assert not self.store.needs_sync(), "the tool's own writes look like hand edits"
        on_disk: dict[str, Any] = {}
        for folder in ("active", "completed"):
            for path in sorted((root / folder).glob("milestone-*.yaml")):
                data = yamlio.load_text(path.read_text("utf-8"), str(path))
                snap = md.Milestone.from_dict(data).to_dict()
                assert snap["id"] == path.stem
                assert snap["id"] not in on_disk, f"{snap['id']} exists twice"
                assert (folder == "completed") == (snap["status"] == "archived")
                on_disk[snap["id"]] = snap
        assert ev.canonical(on_disk) == ev.canonical(state.milestones)
        marker = (root / "active" / "current.txt")
        text = marker.read_text("utf-8").strip() if marker.exists() else ""
        assert (text or None) == state.current
        saved = FileStore(root).read_stored()  # state.json, its checkpoint and journal
        assert saved is not None
        assert ev.canonical({m: e["state"] for m, e in saved["milestones"].items()}) == (
            ev.canonical(state.milestones)
        )


class FileProjectMachine(ProjectMachine):
    backend = "file"


class DatabaseProjectMachine(ProjectMachine):
    backend = "database"


SETTINGS = settings(
    max_examples=examples(40),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


MACHINES = [ProjectMachine, FileProjectMachine]
if "database" in BACKENDS:  # the SQLite backend, where this build has it
    MACHINES.append(DatabaseProjectMachine)


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: str(m.backend))
def test_replay_rebuilds_every_milestone(machine: type[ProjectMachine]) -> None:
    run_state_machine_as_test(machine, settings=SETTINGS)

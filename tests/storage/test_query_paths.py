"""The database backend's query paths give the answers of the whole-plan paths.

On an indexed store ``Project`` reads only what a view or a write needs (lazily read
snapshots, counts kept by triggers, closures through the dependency indexes, results
cached by log head). Here random projects are built through the service layer and
every view is compared with what the same code gives when the store hands out every
snapshot (``FullDatabaseStore``), and the writes with the same writes on the memory
store.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from milestones.errors import MilestoneError
from milestones.project import Project
from milestones.storage.base import State, Store
from milestones.storage.memory import MemoryStore
from milestones.storage.sqlite import DatabaseStore

NOW = "2026-03-02T10:00:00Z"
TODAY = "2026-03-02"


class FullDatabaseStore(DatabaseStore):
    """The same database, read the old way: every snapshot, no index, no cache."""

    def view(self) -> State:
        return self.load()

    def reading(self) -> Any:
        return Store.reading(self)

    def totals(self) -> Any:
        return None

    def dependents(self, mids: Any) -> Any:
        return None

    def task_edges(self) -> Any:
        return None

    def active_tasks(self) -> Any:
        return None

    def query_milestones(self, q: Any) -> Any:
        return None

    def ready_tasks(self, only: Any = None, limit: Any = None) -> Any:
        return None

    def cache_get(self, key: str, head: str) -> Any:
        return None

    def cache_put(self, key: str, head: str, value: Any) -> None:
        return None

    def cache_peek(self, key: str) -> Any:
        return None


def fixed(p: Project) -> Project:
    p.clock = lambda: NOW  # type: ignore[method-assign]
    p.today = lambda: TODAY  # type: ignore[method-assign]
    return p


def plan_random(rng: random.Random, n: int) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        tasks: list[dict[str, Any]] = []
        for k in range(1, rng.randint(1, 6) + 1):
            deps: list[str] = []
            if k > 1 and rng.random() < 0.4:
                deps.append(str(rng.randint(1, k - 1)))
            if i > 1 and rng.random() < 0.2:
                j = rng.randint(1, i - 1)
                deps.append(f"{j}/{rng.randint(1, len(specs[j - 1]['tasks']))}")
            tasks.append({"title": f"T{i}.{k}", "depends_on": deps,
                          "estimate": rng.choice([None, 1, 2.5, 8]),
                          "skills": rng.choice([[], ["py"], ["py", "docs"]])})
        specs.append({
            "title": f"Milestone {i}",
            "priority": rng.choice(["low", "medium", "high", "critical"]),
            "tags": rng.sample(["api", "ui", "db", "ops"], rng.randint(0, 2)),
            "owner": rng.choice([None, "ann", "bob"]),
            "due_date": rng.choice([None, "2026-02-01", "2026-04-15", "2026-09-30"]),
            "depends_on": ([f"milestone-{rng.randint(1, i - 1):03d}"]
                           if i > 1 and rng.random() < 0.15 else []),
            "tasks": tasks,
        })
    return specs


def random_ops(rng: random.Random, n: int, count: int) -> list[tuple[str, str]]:
    verbs = ["start_task", "complete_task", "complete_task", "skip_task", "block_task",
             "unblock_task", "reopen_task", "set_progress", "set_current"]
    return [(rng.choice(verbs), f"{rng.randint(1, n)}/{rng.randint(1, 6)}")
            for _ in range(count)]


def apply(p: Project, verb: str, ref: str) -> str:
    """Run one operation; the outcome as text (the error class when it is refused)."""
    try:
        if verb == "block_task":
            p.block_task(ref, "waiting")
        elif verb == "set_progress":
            p.set_progress(ref, 40)
        elif verb == "set_current":
            p.set_current(ref.split("/")[0])
        else:
            getattr(p, verb)(ref)
    except MilestoneError as exc:
        return type(exc).__name__
    return "ok"


def views(p: Project, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": p.status_view(),
        "status_all": p.status_view(all_=True),
        "status_3": p.status_view("3"),
        "list": p.list_view(),
        "list_in_progress": p.list_view(status=["in_progress"]),
        "list_filters": p.list_view(tags=["api"], priority=["high", "critical"]),
        "list_overdue": p.list_view(overdue=True, all_=True),
        "list_page": p.list_view(limit=3, after="milestone-004"),
        "list_page_filtered": p.list_view(limit=2, priority=["high", "critical"]),
        "next": p.next_view(),
        "next_2": p.next_view("2", limit=3),
        "show": [p.show_view(str(i)) for i in range(1, n + 1)],
        "show_task": p.show_view("2/1"),
    }
    resume = p.resume_view()
    out["resume"] = {k: resume.get(k) for k in ("in_progress", "blockers", "next_task",
                                                "current_milestone")}
    return out


def open_pair(tmp_path: Path) -> tuple[Project, Project]:
    lazy, _ = Project.init(tmp_path, backend="database", actor="tester@example.com",
                           session_id="s1")
    full = Project(FullDatabaseStore(lazy.root), cwd=tmp_path, actor="tester@example.com",
                   session_id="s1")
    return fixed(lazy), fixed(full)


@pytest.mark.parametrize("seed", range(6))
def test_views_equal_the_whole_plan_answers(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    n = 12
    lazy, full = open_pair(tmp_path)
    mem = MemoryStore(tmp_path / "memory")
    mem.initialize()
    ref = fixed(Project(mem, cwd=tmp_path, actor="tester@example.com", session_id="s1"))
    specs = plan_random(rng, n)
    lazy.plan_many(specs)
    ref.plan_many(specs)
    for round_ in range(4):
        for verb, target in random_ops(rng, n, 12):
            assert apply(lazy, verb, target) == apply(ref, verb, target), (verb, target)
        assert lazy.store.load().milestones == ref.store.load().milestones
        want = views(full, n)
        assert views(lazy, n) == want, f"round {round_}"
        assert views(lazy, n) == want  # again, from the query cache
        assert views(ref, n) == want  # and the memory store agrees


def test_views_agree_with_a_dependency_cycle(tmp_path: Path) -> None:
    """A cycle (allowed here by configuration) leaves every projection out, on both."""
    lazy, full = open_pair(tmp_path)
    (lazy.root / "config" / "config.yaml").write_text(
        "validation:\n  rules:\n    MS203: off\n", "utf-8")
    lazy._config = None
    lazy.plan_many(plan_random(random.Random(7), 6))
    lazy.plan("Loop A", tasks=["a"])
    lazy.plan("Loop B", tasks=["b"], depends_on=[])
    lazy.edit_task("7/1", depends_on=["8/1"])
    before = views(lazy, 8)
    lazy.edit_task("8/1", depends_on=["7/1"])  # the cycle: 7/1 -> 8/1 -> 7/1
    assert views(lazy, 8) == views(full, 8)
    assert views(lazy, 8)["status_3"]["milestones"][0]["projected_finish"] is None
    assert before["status_3"]["milestones"][0]["projected_finish"] is not None
    lazy.complete_task("1/1")  # an event that keeps the edges: still known cyclic
    assert views(lazy, 8) == views(full, 8)


def test_a_write_and_the_reads_that_follow_never_load_every_milestone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lazy, _ = open_pair(tmp_path)
    lazy.plan_many(plan_random(random.Random(3), 30))
    lazy.status_view()  # learn once that the plan has no cycle

    def refuse(self: DatabaseStore) -> State:
        raise AssertionError("load() reads every milestone")

    monkeypatch.setattr(DatabaseStore, "load", refuse)
    lazy.start_task("5/1", force=True)
    lazy.complete_task("5/1", force=True)
    lazy.status_view()
    lazy.status_view("5")
    lazy.show_view("5")
    lazy.show_view("5/1")
    lazy.next_view("5")
    lazy.list_view(status=["in_progress"])


def test_a_list_after_a_write_makes_again_only_the_rows_it_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A list read after a write keeps the rows of its answer at the head before, and
    makes again those of the milestone the write named and of those waiting on it
    (their projections follow it): at 100,000 tasks a cold `list --json` read all
    10,000 milestones again after any write. The answer is the whole plan's."""
    lazy, full = open_pair(tmp_path)
    specs = plan_random(random.Random(5), 20)
    # 12/1 waits on 10's one long task: when it is done, 12's projection moves weeks
    specs[9]["tasks"] = [{"title": "Long", "depends_on": [], "estimate": 200, "skills": []}]
    specs[11]["tasks"][0]["depends_on"] = ["10/1"]
    lazy.plan_many(specs)
    before = {r["id"]: r for r in lazy.list_view()["milestones"]}["milestone-012"]
    read: list[str] = []
    real = DatabaseStore.snapshots

    def counted(self: DatabaseStore, mids: Any) -> Any:
        read.extend(mids)
        return real(self, mids)

    monkeypatch.setattr(DatabaseStore, "snapshots", counted)
    lazy.start_task("10/1", force=True)
    lazy.complete_task("10/1", force=True)
    lazy.note("between")  # changes no milestone
    read.clear()
    got = lazy.list_view()
    waiting = lazy._downstream(["milestone-010"])
    assert waiting is not None and "milestone-012" in waiting
    assert set(read) <= waiting and "milestone-010" in read
    monkeypatch.setattr(DatabaseStore, "snapshots", real)
    assert got == full.list_view()
    # the projection of 12 moved with 10's work
    assert {r["id"]: r for r in got["milestones"]}["milestone-012"] != before
    assert lazy.list_view(all_=True) == full.list_view(all_=True)
    # A milestone planned (an event that may add a dependency): the list made whole.
    lazy.plan("Later", tasks=["a", "b"], depends_on=["milestone-012"])
    assert lazy.list_view() == full.list_view()
    lazy.complete_task("12/1", force=True)
    assert lazy.list_view() == full.list_view()
    lazy.delete("21", force=True)  # its row goes
    assert lazy.list_view() == full.list_view()
    assert lazy.list_view(status=["in_progress"]) == full.list_view(status=["in_progress"])


def test_every_ready_task_is_kept_across_writes_that_change_no_milestone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ready --json` (every ready task) is kept in the query cache by log head and
    carried across a note or a change of the current milestone; any write that
    changes a task asks the index again. Always the whole plan's answer."""
    from milestones.agents.coord import Agents

    lazy, _ = open_pair(tmp_path)
    lazy.plan_many(plan_random(random.Random(6), 15))

    def fresh() -> list[dict[str, Any]]:
        lazy.store._cache().clear()
        return Agents(lazy).ready()

    first = Agents(lazy).ready()
    assert first == fresh() and first
    asked: list[int] = []
    real = DatabaseStore.ready_tasks

    def counted(self: DatabaseStore, only: Any = None, limit: Any = None) -> Any:
        asked.append(1)
        return real(self, only, limit)

    monkeypatch.setattr(DatabaseStore, "ready_tasks", counted)
    lazy.note("nothing changes")
    lazy.set_current("3")
    assert Agents(lazy).ready() == first and asked == []
    lazy.start_task(first[0]["ref"])
    got = Agents(lazy).ready()
    assert asked and got != first
    asked.clear()
    assert Agents(lazy).ready() == got and asked == []  # from the cache at this head
    assert got == fresh()


def test_a_cli_write_and_its_scale_check_never_load_every_milestone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a command that wrote, the scale policy counts the milestones (and, once an
    hour, the team and the write rate): from the index, never by loading the plan
    (at 100,000 tasks that load took a second on every `task done`)."""
    from conftest import Runner

    lazy, _ = open_pair(tmp_path)
    lazy.plan_many(plan_random(random.Random(4), 30))
    loads: list[str] = []
    real = DatabaseStore.load

    def counted(self: DatabaseStore) -> State:
        loads.append("load")
        return real(self)

    monkeypatch.setattr(DatabaseStore, "load", counted)
    run = Runner(tmp_path)
    for args in (["task", "start", "5/1", "--force"], ["task", "done", "5/1", "--force"],
                 ["note", "after"], ["agent", "register", "--name", "a1"]):
        run.ok(*args)
    memo = tmp_path / ".milestones" / "performance" / "scale-state.json"
    assert memo.exists()  # the policy ran and measured
    assert loads == []


def test_status_counts_follow_every_change(tmp_path: Path) -> None:
    """The counts the triggers keep equal a count of the rows, after every kind of write."""
    lazy, _ = open_pair(tmp_path)
    lazy.plan_many(plan_random(random.Random(5), 10))
    lazy.complete_task("1/1", force=True)
    lazy.block_task("2/1", "x")
    lazy.delete("10", force=True)
    lazy.add_task("3", "extra")
    store = lazy.store
    assert isinstance(store, DatabaseStore)
    conn = store.connect()
    for kind, table in (("milestone", "milestones"), ("task", "tasks")):
        rows = dict(conn.execute(f"SELECT status, COUNT(*) FROM {table} GROUP BY status"))
        kept = {s: n for _, s, n in conn.execute(
            "SELECT kind, status, n FROM status_counts WHERE kind = ? AND n > 0", (kind,))}
        assert kept == rows


def stored_marks(store: DatabaseStore) -> dict[tuple[str, str], tuple[int, ...]]:
    return {(m, t): tuple(rest) for m, t, *rest in store.connect().execute(
        "SELECT milestone_id, id, chain, ready, rank, num FROM tasks")}


def recomputed_marks(store: DatabaseStore) -> dict[tuple[str, str], tuple[int, ...]]:
    """What every row's ready flag, rank, number and chain are when counted afresh."""
    from milestones.storage import sqlready

    conn = store.connect()
    conn.execute("BEGIN")
    try:
        sqlready.mark_all(conn)
        return stored_marks(store)
    finally:
        conn.execute("ROLLBACK")


@pytest.mark.parametrize("seed", range(4))
def test_the_kept_chains_equal_a_recount_after_structural_writes(
        tmp_path: Path, seed: int) -> None:
    """Every write keeps each task's stored ready flag, rank, number and chain (the
    work waiting on it) equal to a recount of the whole graph: tasks added with
    dependencies across milestones, dependencies changed and dropped, milestones
    deleted, re-prioritised, re-statused and re-linked, tasks finished and reopened;
    and the ready rows read from them equal the whole-plan answer."""
    rng = random.Random(seed)
    lazy, full = open_pair(tmp_path)
    n = 10
    lazy.plan_many(plan_random(rng, n))
    store = lazy.store
    assert isinstance(store, DatabaseStore)
    alive = list(range(1, n + 1))
    for step in range(60):
        mid = rng.choice(alive)
        other = rng.choice(alive)
        move = rng.choice(["add"] * 3 + ["deps"] * 3 + ["finish"] * 4 + ["reopen"] * 2
                          + ["undeps", "delete", "priority", "mdeps", "status"])
        try:
            if move == "add":
                lazy.add_task(str(mid), f"extra {step}", depends_on=[f"{other}/1"])
            elif move == "deps":
                lazy.edit_task(f"{mid}/{rng.randint(1, 3)}",
                               depends_on=[f"{other}/{rng.randint(1, 3)}"])
            elif move == "undeps":
                lazy.edit_task(f"{mid}/2", depends_on=[])
            elif move == "finish":
                lazy.complete_task(f"{mid}/{rng.randint(1, 3)}", force=True)
            elif move == "reopen":
                lazy.reopen_task(f"{mid}/{rng.randint(1, 3)}")
            elif move == "priority":
                lazy.update(str(mid), priority=rng.choice(["low", "high", "critical"]))
            elif move == "mdeps":
                lazy.update(str(mid), depends_on=[] if rng.random() < 0.3
                            else [f"milestone-{other:03d}"])
            elif move == "status":
                lazy.update(str(mid), status=rng.choice(["cancelled", "planned", "blocked"]))
            elif len(alive) > 6:
                lazy.delete(str(mid), force=True)
                alive.remove(mid)
        except MilestoneError:
            continue
        assert stored_marks(store) == recomputed_marks(store), (step, move)
        assert lazy.next_view() == full.next_view(), (step, move)
    assert lazy.next_view(limit=2) == full.next_view(limit=2)


def test_an_older_database_gains_the_chains_on_open(tmp_path: Path) -> None:
    """A database written before the chain column (schema 3) is brought forward when it
    is opened, the chains counted, and `next` answers as before."""
    lazy, full = open_pair(tmp_path)
    lazy.plan_many(plan_random(random.Random(11), 8))
    want = full.next_view()
    store = lazy.store
    assert isinstance(store, DatabaseStore)
    conn = store.connect()
    conn.execute("DROP INDEX idx_task_ready")
    for column in ("chain", "ready", "rank", "num"):
        conn.execute(f"ALTER TABLE tasks DROP COLUMN {column}")
    conn.execute("DELETE FROM schema_version WHERE version = 4")
    store.close()
    again = fixed(Project.open(tmp_path, actor="tester@example.com", session_id="s1"))
    assert again.next_view() == want
    reopened = again.store
    assert isinstance(reopened, DatabaseStore)
    marks = stored_marks(reopened)
    assert marks == recomputed_marks(reopened)
    assert max(chain for chain, *_ in marks.values()) > 1
    assert any(ready for _, ready, *_ in marks.values())


@pytest.mark.parametrize(("seed", "batch", "ratio", "reads"),
                         [(0, 1, 4, 2000), (1, 3, 4, 2000), (2, 3, 0, 2000), (3, 1, 0, 2000),
                          (4, 5, 1, 2000), (5, 2, 4, 3)])
def test_many_milestones_take_the_schedule_from_the_index(
        tmp_path: Path, seed: int, batch: int, ratio: int, reads: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the closure limit (here every view), feasibility comes from the task graph
    the index gives (no snapshot read for it); `list` projects its rows a batch at a
    time, from what each batch depends on, or from the whole plan's task graph once a
    batch's upstream outgrows it (``ratio`` 0: at once); every view equals the
    whole-plan answer."""
    from milestones.project import checks
    from milestones.project import views as views_module

    monkeypatch.setattr(checks, "CLOSURE_LIMIT", 0)
    monkeypatch.setattr(views_module, "CLOSURE_LIMIT", batch)
    monkeypatch.setattr(checks, "UPSTREAM_RATIO", ratio)
    monkeypatch.setattr(checks, "UPSTREAM_READ", reads)
    rng = random.Random(100 + seed)
    lazy, full = open_pair(tmp_path)
    lazy.plan_many(plan_random(rng, 12))
    for verb, target in random_ops(rng, 12, 20):
        apply(lazy, verb, target)
    assert views(lazy, 12) == views(full, 12)
    listed = lazy.list_view(all_=True)["milestones"]
    assert any(m["projected_finish"] for m in listed)


def test_a_migrated_database_holds_the_ready_rows_of_its_plan(tmp_path: Path) -> None:
    """A migration's import (in batches of 3 milestones, so dependencies cross them)
    counts every ready flag and chain once all rows are in: `next` on the new database
    equals `next` on the YAML project it came from."""
    from milestones.ops.migrate import migrate

    yaml_project, _ = Project.init(tmp_path, backend="file", actor="tester@example.com",
                                   session_id="s1")
    fixed(yaml_project).plan_many(plan_random(random.Random(21), 10))
    for verb, target in random_ops(random.Random(22), 10, 15):
        apply(yaml_project, verb, target)
    want = fixed(yaml_project).next_view()
    assert want["tasks"]  # something is ready, so unmarked rows would show
    migrate(tmp_path / ".milestones", "database", batch=3)
    moved = fixed(Project.open(tmp_path, actor="tester@example.com", session_id="s1"))
    store = moved.store
    assert isinstance(store, DatabaseStore)
    assert stored_marks(store) == recomputed_marks(store)
    assert moved.next_view() == want

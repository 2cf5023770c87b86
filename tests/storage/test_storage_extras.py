"""The storage issue's extras: `storage reindex`, `export yaml`, scheduled backups on
the database backend, and the in-process (L1) state cache, never stale."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from milestones.cli import cli
from milestones.errors import Conflict, InvalidInput
from milestones.model import Milestone
from milestones.ops.migrate import migrate
from milestones.project import Project
from milestones.project.session import utc_now
from milestones.storage import archive as ar
from milestones.storage import backup as bk
from milestones.storage import fsutil, open_store, yamlio

ACTOR = {"actor": "ann@example.com", "session_id": "s1"}
BACKENDS = ["file", "hybrid", "database", "postgres"]


# ------------------------------------------------------------------ helpers


def build(directory: Path, backend: str) -> Project:
    """Three milestones: one archived, one with a dependency, one in progress."""
    directory.mkdir(parents=True, exist_ok=True)
    p, _ = Project.init(directory, backend=backend, **ACTOR)
    p.plan("Alpha", tasks=["One", {"title": "Two", "depends_on": ["task-1"], "estimate": 2}],
           tags=["core"], owner="ann")
    p.plan("Beta", tasks=["Three"], depends_on=["1"], priority="high")
    p.plan("Gamma", tasks=["Four"])
    p.complete_task("3/1")
    p.archive("3", lessons=["Small is fast"])
    p.start_task("1/1")
    return p


def invoke(cwd: Path, *args: str) -> Any:
    return CliRunner(mix_stderr=False).invoke(cli, ["-C", str(cwd), *args],
                                              catch_exceptions=False)


def run_elsewhere(directory: Path, *args: str) -> None:
    """A `milestone` command in another process."""
    done = subprocess.run([sys.executable, "-m", "milestones", "-C", str(directory), *args],
                          capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert done.returncode == 0, done.stderr


def yaml_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for sub in ("active", "completed") if (folder / sub).is_dir()
            for p in sorted((folder / sub).glob("milestone-*.yaml"))}


def index_rows(root: Path) -> dict[str, str]:
    conn = sqlite3.connect(root / "database" / "index.db")
    try:
        return dict(conn.execute("SELECT id, status FROM milestones"))
    finally:
        conn.close()


def listed(cwd: Path) -> list[str]:
    data = json.loads(invoke(cwd, "list", "--all", "--json").stdout)
    return sorted(m["id"] for m in data["milestones"])


@pytest.fixture
def hold_lock() -> Iterator[Any]:
    """Hold a writer lock in another thread (locks are re-entrant within one)."""
    threads: list[tuple[threading.Thread, threading.Event]] = []

    def hold(lock: Any) -> None:
        taken, release = threading.Event(), threading.Event()

        def body() -> None:
            with lock:
                taken.set()
                release.wait(30)

        t = threading.Thread(target=body)
        t.start()
        assert taken.wait(10)
        threads.append((t, release))

    yield hold
    for t, release in threads:
        release.set()
        t.join(10)


# ------------------------------------------------------------------ reindex


@pytest.mark.parametrize("suffixes", [("", "-wal", "-shm"), ("",)])
def test_reindex_rebuilds_a_deleted_index(tmp_path: Path, suffixes: tuple[str, ...]) -> None:
    p = build(tmp_path, "hybrid")  # its connection keeps the index's -wal and -shm
    root = p.root
    for suffix in suffixes:
        Path(f"{root / 'database' / 'index.db'}{suffix}").unlink()
    result = invoke(tmp_path, "storage", "reindex")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "Indexed 3 milestones (database/index.db)"
    state = p.state()
    assert index_rows(root) == {mid: s["status"] for mid, s in state.milestones.items()}
    conn = sqlite3.connect(root / "database" / "index.db")
    head = conn.execute("SELECT value FROM meta WHERE key = 'last_event_id'").fetchone()[0]
    conn.close()
    assert int(head) == state.last_event_id
    assert json.loads(invoke(tmp_path, "storage", "reindex", "--json").stdout) == {
        "schema": 1, "ref": None, "milestone_id": None, "indexed": 3}


def test_reindex_repairs_a_stale_index(tmp_path: Path) -> None:
    build(tmp_path, "hybrid")
    root = tmp_path / ".milestones"
    assert listed(tmp_path) == ["milestone-001", "milestone-002", "milestone-003"]
    # Rows damaged behind the index's back; its head still says it is current.
    conn = sqlite3.connect(root / "database" / "index.db")
    with conn:
        conn.execute("DELETE FROM milestones WHERE id = 'milestone-002'")
        conn.execute("UPDATE milestones SET status = 'cancelled' WHERE id = 'milestone-001'")
    conn.close()
    for suffix in ("", "-wal", "-shm"):  # and the results cached at this head
        Path(f"{root / 'database' / 'cache.db'}{suffix}").unlink(missing_ok=True)
    assert listed(tmp_path) == ["milestone-001", "milestone-003"]  # served from the index
    assert invoke(tmp_path, "storage", "reindex").exit_code == 0
    assert listed(tmp_path) == ["milestone-001", "milestone-002", "milestone-003"]
    assert index_rows(root) == {"milestone-001": "in_progress", "milestone-002": "planned",
                                "milestone-003": "archived"}


def test_reindex_records_hand_edits_first_in_a_long_lived_project(tmp_path: Path) -> None:
    p = build(tmp_path, "hybrid")
    path = p.root / "active" / "milestone-002.yaml"
    path.write_text(path.read_text().replace("title: Beta", "title: Beta, renamed"))
    (p.root / "database" / "index.db").unlink()  # while this process has it open
    assert p.reindex() == 3
    conn = sqlite3.connect(p.root / "database" / "index.db")
    assert conn.execute("SELECT title FROM milestones WHERE id = 'milestone-002'"
                        ).fetchone() == ("Beta, renamed",)
    conn.close()
    assert any(e["event_type"] == "manual_edit_detected" for e in p.store.events())


@pytest.mark.parametrize("backend", ["file", "database"])
def test_reindex_is_only_for_the_hybrid_backend(tmp_path: Path, backend: str) -> None:
    p = build(tmp_path, backend)
    with pytest.raises(InvalidInput, match="only the hybrid backend has an index"):
        p.reindex()
    result = invoke(tmp_path, "storage", "reindex")
    assert result.exit_code == InvalidInput.exit_code
    assert result.stderr.startswith("milestone: error: only the hybrid backend has an index")
    assert " — " in result.stderr  # with a hint


def test_reindex_waits_for_the_writer_lock(tmp_path: Path, hold_lock: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    p = build(tmp_path, "hybrid")
    monkeypatch.setenv("MILESTONE_LOCK_TIMEOUT", "0.2")
    hold_lock(open_store(p.root).lock())
    with pytest.raises(Conflict):
        p.reindex()


# -------------------------------------------------------------- export yaml


def test_export_yaml_is_what_a_migration_to_file_writes(tmp_path: Path) -> None:
    p = build(tmp_path, "file")
    # A hand edit with comments (same data): the text, comments and all, survives.
    path = p.root / "active" / "milestone-002.yaml"
    commented = path.read_text() + "# reviewed by the team\n"
    path.write_text(commented)
    p.state()
    migrate(p.root, "database", actor="ann@example.com")
    q = Project.open(tmp_path, **ACTOR)
    q.add_task("1", "Five")  # changed since: written afresh
    out = tmp_path / "out"
    result = invoke(tmp_path, "export", "yaml", "--to", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)["export"]
    assert report["milestones"] == 3 and report["backend"] == "database"
    assert report["files"] == ["active/milestone-001.yaml", "active/milestone-002.yaml",
                               "completed/milestone-003.yaml"]
    exported = yaml_files(out)
    assert exported["active/milestone-002.yaml"].decode() == commented
    migrate(p.root, "file", actor="ann@example.com")
    assert yaml_files(p.root) == exported


@pytest.mark.parametrize("backend", BACKENDS)
def test_export_yaml_on_every_backend(tmp_path: Path, backend: str) -> None:
    p = build(tmp_path, backend)
    result = invoke(tmp_path, "export", "yaml")
    assert result.exit_code == 0, result.stderr
    out = p.root / "export"
    assert result.stdout.strip() == f"Exported 3 milestones to {out}"
    files = yaml_files(out)
    state = p.state()
    assert sorted(files) == ["active/milestone-001.yaml", "active/milestone-002.yaml",
                             "completed/milestone-003.yaml"]
    for rel, raw in files.items():
        snap = state.milestones[Path(rel).stem]
        assert raw.decode().startswith(yamlio.SCHEMA_COMMENT)
        assert Milestone.from_dict(yamlio.load_bytes(raw, rel)).to_dict() == snap
        assert raw.decode() == yamlio.dump_fast(snap)  # nothing hand-written here


def test_export_yaml_again_replaces_and_removes(tmp_path: Path) -> None:
    p = build(tmp_path, "database")
    out = tmp_path / "out"
    p.export_yaml(out)
    (out / "notes.txt").write_text("mine")
    p.delete("2", force=True)
    p.update("1", title="Alpha 2")
    report = p.export_yaml(out)
    assert report["removed"] == ["active/milestone-002.yaml"]
    assert sorted(yaml_files(out)) == ["active/milestone-001.yaml",
                                       "completed/milestone-003.yaml"]
    assert b"title: Alpha 2" in (out / "active" / "milestone-001.yaml").read_bytes()
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("where", [".", "active", "completed/x", "logs", "database"])
def test_export_yaml_never_writes_into_the_project_data(tmp_path: Path, where: str) -> None:
    p = build(tmp_path, "file")
    before = yaml_files(p.root)
    with pytest.raises(InvalidInput, match="the project's own data"):
        p.export_yaml(p.root / where)
    assert yaml_files(p.root) == before


# -------------------------------------------------------- scheduled backups


def set_backup_config(root: Path, **values: object) -> None:
    config = root / "config" / "config.yaml"
    lines = "".join(f"  {k}: {v}\n" for k, v in values.items())
    config.write_text(config.read_text() + f"backup:\n{lines}")


def automatic(root: Path) -> list[str]:
    folder = root / "database" / "backup"
    return sorted(n.name for n in folder.glob("backup-*-scheduled.tar.gz"))


def age(root: Path, name: str, hours: float) -> str:
    """Rename a backup as if it had been made ``hours`` ago."""
    stamp = (datetime.now(UTC) - timedelta(hours=hours)).strftime("%Y%m%dT%H%M%S.%fZ")
    new = f"backup-{stamp}-scheduled.tar.gz"
    folder = root / "database" / "backup"
    (folder / name).rename(folder / new)
    return new


def old_database_project(directory: Path, monkeypatch: pytest.MonkeyPatch,
                         days: float = 3) -> Project:
    """A database project whose first event is ``days`` old."""
    then = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with monkeypatch.context() as m:
        m.setattr("milestones.project.core.utc_now", lambda: then)
        p, _ = Project.init(directory, backend="database", **ACTOR)
    p.clock = utc_now
    return p


def test_a_new_project_waits_one_period_for_its_first(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    young, _ = Project.init(tmp_path / "young", backend="database", **ACTOR)
    young.plan("Alpha")
    assert automatic(young.root) == []
    older = old_database_project(tmp_path / "older", monkeypatch, days=0.5)
    set_backup_config(older.root, every_hours=12)
    older.plan("Alpha")
    assert len(automatic(older.root)) == 1


def test_scheduled_backup_once_per_period_and_pruned(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    p = old_database_project(tmp_path, monkeypatch)
    root = p.root
    assert automatic(root) == []  # creating the project is no reason for one
    manual = bk.create_backup(root).path
    p.plan("Alpha", tasks=["One"])
    first = automatic(root)
    assert len(first) == 1
    manifest = bk.verify_backup(root / "database" / "backup" / first[0])
    assert manifest.reason == "scheduled"
    assert manifest.last_event_id == p.state().last_event_id  # the write is in it
    p.plan("Beta")
    p.start_task("1/1")
    assert automatic(root) == first  # one per period
    old = age(root, first[0], 25)
    p.plan("Gamma")
    now = automatic(root)
    assert len(now) == 2 and old in now  # due again; retention (10) keeps both
    set_backup_config(root, retention=1, every_hours=1)
    age(root, max(now), 2)
    p.complete_task("1/1")
    after = automatic(root)
    assert len(after) == 1 and after[0] not in now  # the new one, the rest pruned
    assert manual.exists()  # manual backups are never pruned
    lines = (root / "logs" / "system-events.jsonl").read_text().splitlines()
    assert sum(json.loads(x).get("reason") == "scheduled" for x in lines) == 3


def test_scheduled_backups_off_and_on_other_backends(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    p = old_database_project(tmp_path / "db", monkeypatch)
    set_backup_config(p.root, every_hours=0)
    p.plan("Alpha")
    assert automatic(p.root) == []
    for backend in ("file", "hybrid"):
        q, _ = Project.init(tmp_path / backend, backend=backend, **ACTOR)
        q.plan("Alpha")
        assert automatic(q.root) == []


def test_scheduled_backup_skips_while_another_holds_the_lock(tmp_path: Path,
                                                              hold_lock: Any) -> None:
    p, _ = Project.init(tmp_path, backend="database", **ACTOR)
    hold_lock(fsutil.writer_lock(p.root / ar.LOCK_NAME))
    assert bk.scheduled_backup(p.root) is None  # that one (a backup, a restore) counts
    assert automatic(p.root) == []


@pytest.mark.parametrize("value", ["soon", -1, "true"])
def test_a_failed_scheduled_backup_never_fails_the_write(tmp_path: Path, value: object) -> None:
    p, _ = Project.init(tmp_path, backend="database", **ACTOR)
    set_backup_config(p.root, every_hours=value)
    with pytest.raises(InvalidInput, match=r"backup\.every_hours"):
        bk.every_hours(p.root)
    result = invoke(tmp_path, "plan", "Alpha")
    assert result.exit_code == 0, result.stderr
    assert "Alpha" in p.milestone("1").title
    warnings = result.stderr.splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith("milestone: warning: the scheduled backup failed: ")
    assert "backup.every_hours" in warnings[0]


def test_a_backup_error_is_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    p = old_database_project(tmp_path, monkeypatch)

    def broken(*_a: Any, **_k: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bk, "create_backup", broken)
    p.plan("Alpha")
    assert p.milestone("1").title == "Alpha"
    err = capsys.readouterr().err.splitlines()
    assert err == ["milestone: warning: the scheduled backup failed: "
                   "[Errno 28] No space left on device"]


def test_create_backup_under_the_migration_lock(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`create_backup` re-enters the file lock; on the database backend the lock is a
    BEGIN IMMEDIATE on the store's connection, which a backup opening its own store
    would wait for: a migration passes the store it holds (``held``)."""
    monkeypatch.setenv("MILESTONE_LOCK_TIMEOUT", "0.3")
    for backend in ("file", "hybrid", "database"):
        p = build(tmp_path / backend, backend)
        store = open_store(p.root)
        with store.lock():
            info = bk.create_backup(p.root, reason="pre-migration", held=store)
        assert info.manifest.last_event_id == p.state().last_event_id
        assert bk.verify_backup(info.path).backend == backend
    with store.lock(), pytest.raises(Conflict):
        bk.create_backup(p.root, reason="pre-migration")  # without it: it would wait


# ----------------------------------------------------------------- L1 cache


@pytest.mark.parametrize("backend", BACKENDS)
def test_l1_serves_repeated_reads_and_counts(tmp_path: Path, backend: str) -> None:
    p = build(tmp_path, backend)
    before = p.cache_stats()["l1"]
    first = p.state()
    second = p.state()
    assert second == first
    assert second.milestones is not first.milestones  # each caller gets its own mapping
    second.milestones.clear()
    assert p.state().milestones == first.milestones  # and cannot spoil the cache
    l1 = p.cache_stats()["l1"]
    assert (l1["misses"] - before["misses"], l1["hits"] - before["hits"]) == (1, 2)
    p.add_task("2", "Five")  # this object's own write moves the head
    assert [t["title"] for t in p.state().milestones["milestone-002"]["tasks"]] == [
        "Three", "Five"]
    assert p.cache_stats()["l1"]["misses"] == l1["misses"] + 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_l1_never_stale_after_another_process_writes(tmp_path: Path, backend: str) -> None:
    p = build(tmp_path, backend)
    for _ in range(3):
        assert "milestone-004" not in p.state().milestones
    hits = p.cache_stats()["l1"]["hits"]
    run_elsewhere(tmp_path, "plan", "Delta")
    assert p.state().milestones["milestone-004"]["title"] == "Delta"
    run_elsewhere(tmp_path, "task", "done", "1/1")
    assert p.state().milestones["milestone-001"]["tasks"][0]["status"] == "done"
    assert p.milestone("1").tasks[0].status == "done"
    assert p.cache_stats()["l1"]["hits"] == hits + 1  # only the read after the first miss


@pytest.mark.parametrize("backend", ["file", "hybrid"])
def test_l1_sees_hand_edits(tmp_path: Path, backend: str) -> None:
    p = build(tmp_path, backend)
    p.state()
    path = p.root / "active" / "milestone-002.yaml"
    path.write_text(path.read_text().replace("title: Beta", "title: Beta, edited"))
    assert p.state().milestones["milestone-002"]["title"] == "Beta, edited"


def test_l1_keeps_nothing_it_could_not_bring_up_to_date(tmp_path: Path,
                                                        hold_lock: Any) -> None:
    p = build(tmp_path, "file")
    p.state()
    path = p.root / "active" / "milestone-002.yaml"
    path.write_text(path.read_text().replace("title: Beta", "title: Beta, edited"))
    release = threading.Event()
    holder = open_store(p.root)
    taken = threading.Event()

    def body() -> None:
        with holder.lock():
            taken.set()
            release.wait(30)

    t = threading.Thread(target=body)
    t.start()
    try:
        assert taken.wait(10)
        misses = p.cache_stats()["l1"]["misses"]
        for _ in range(2):  # the edit cannot be recorded yet: never a hit meanwhile
            p.state()
        assert p.cache_stats()["l1"]["misses"] == misses + 2
    finally:
        release.set()
        t.join(10)
    assert p.state().milestones["milestone-002"]["title"] == "Beta, edited"


def test_l1_follows_a_migration_made_elsewhere(tmp_path: Path) -> None:
    p = build(tmp_path, "file")
    p.state()
    run_elsewhere(tmp_path, "storage", "migrate", "--to", "database")
    run_elsewhere(tmp_path, "plan", "Delta")
    assert p.state().milestones["milestone-004"]["title"] == "Delta"
    assert p.store.backend == "database"


@pytest.mark.parametrize("backend", BACKENDS)
def test_cache_stats_include_the_query_cache(tmp_path: Path, backend: str) -> None:
    p = build(tmp_path, backend)
    p.list_view()
    p.list_view()
    stats = p.cache_stats()
    if backend == "file":
        assert stats["l2"] is None
    else:
        assert stats["l2"]["hits"] >= 1 and stats["l2"]["misses"] >= 1
    assert stats["l1"]["hits"] >= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_long_lived_writer_sees_what_another_wrote_between_its_writes(
        tmp_path: Path, backend: str) -> None:
    """A store keeps what it wrote last (the YAML backends their state instead of
    re-reading state.json, the database the milestone's snapshot), only while nobody
    else wrote since."""
    one, _ = Project.init(tmp_path, backend=backend, actor="one", session_id="s1")
    one.plan("Shared", tasks=[{"title": "a"}, {"title": "b"}])
    one.start_task("1/1")
    other = Project.open(tmp_path, actor="other", session_id="s2")
    other.start_task("1/2")
    one.complete_task("1/1")  # must build on other's start of task 2, not undo it
    for reader in (Project.open(tmp_path), one):
        tasks = {t["id"]: t["status"] for t in reader.state().milestones["milestone-001"]["tasks"]}
        assert tasks == {"task-1": "done", "task-2": "in_progress"}
    events = [e["event_type"] for e in Project.open(tmp_path).store.events()]
    assert events.count("task_started") == 2 and events.count("task_completed") == 1


def test_a_database_writer_reads_back_what_it_wrote_without_decoding_task_rows(
        tmp_path: Path) -> None:
    """The database store keeps the snapshot of each milestone it wrote while that
    write is still the milestone's last event: the next step of a long-lived writer
    (``milestone execute``) finds it by one indexed lookup instead of reading every
    task row again, and a write from elsewhere sends it back to the rows."""
    one, _ = Project.init(tmp_path, backend="database", actor="one", session_id="s1")
    one.plan("Shared", tasks=[{"title": f"t{i}"} for i in range(1, 6)])
    one.start_task("1/1")
    statements: list[str] = []
    one.store.connect().set_trace_callback(statements.append)  # type: ignore[attr-defined]

    def task_reads() -> int:
        return sum("FROM tasks WHERE milestone_id IN" in sql for sql in statements)

    one.complete_task("1/1")
    one.start_task("1/2")
    assert task_reads() == 0
    assert one.state().milestones["milestone-001"]["tasks"][1]["status"] == "in_progress"
    Project.open(tmp_path, actor="other", session_id="s2").start_task("1/3")
    one.complete_task("1/2")
    assert task_reads() == 1  # another wrote since: read from the rows, once
    tasks = {t["id"]: t["status"] for t in one.state().milestones["milestone-001"]["tasks"]}
    assert tasks == {"task-1": "done", "task-2": "done", "task-3": "in_progress",
                     "task-4": "todo", "task-5": "todo"}


def test_state_json_reuses_task_text_and_reads_back_exactly(tmp_path: Path) -> None:
    """A state checkpoint holds every snapshot; its text reuses the JSON of unchanged
    task records and must read back as the very state it was written from."""
    from milestones.storage.file import state_text

    p = build(tmp_path, "file")
    p.plan("Empty")  # a milestone without tasks, and one whose tasks are all there
    state = p.store.read_stored()  # type: ignore[attr-defined]
    assert json.loads(state_text(state, reuse=True)) == state
    entry = state["milestones"]["milestone-002"]
    tasks = entry["state"]["tasks"]
    # A write shares the unchanged records and replaces the changed one.
    changed = {**state, "milestones": {**state["milestones"], "milestone-002": {
        **entry, "state": {**entry["state"], "tasks": [{**tasks[0], "status": "done"},
                                                       *tasks[1:]]}}}}
    assert json.loads(state_text(changed, reuse=True)) == changed
    # A record changed in place (nothing should, but) is written again, not served stale.
    tasks[-1]["title"] = "renamed in place"
    again = json.loads(state_text(state, reuse=True))["milestones"]["milestone-002"]
    assert again["state"]["tasks"][-1]["title"] == "renamed in place"
    assert json.loads(state_text({"milestones": {}}, reuse=True)) == {"milestones": {}}
    assert json.loads(state_text(changed)) == changed  # a one-shot write: plain JSON


def test_only_the_hybrid_index_commits_without_waiting_for_the_disk(tmp_path: Path) -> None:
    """The database is the data: every commit reaches the disk (synchronous FULL). The
    hybrid backend's index is derived from the files and rebuilt when it falls behind:
    WAL's NORMAL (one fsync less per write) is enough for it."""
    hybrid = build(tmp_path / "h", "hybrid")
    database = build(tmp_path / "d", "database")
    index = hybrid.store.index.connect()  # type: ignore[attr-defined]
    assert index.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert database.store.connect().execute(  # type: ignore[attr-defined]
        "PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_hybrid_index_that_lost_its_last_commits_is_rebuilt(tmp_path: Path) -> None:
    """What a power cut may do to the index (synchronous NORMAL): its last commits
    gone. Its head is then behind the files, and the next write rebuilds it."""
    build(tmp_path, "hybrid")
    root = tmp_path / ".milestones"
    conn = sqlite3.connect(root / "database" / "index.db")
    with conn:  # as if the commits of the last two writes never reached the disk
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) - 2 "
                     "WHERE key = 'last_event_id'")
        conn.execute("DELETE FROM milestones WHERE id = 'milestone-002'")
    conn.close()
    Project.open(tmp_path, **ACTOR).complete_task("1/1")
    assert index_rows(root) == {"milestone-001": "in_progress", "milestone-002": "planned",
                                "milestone-003": "archived"}
    assert listed(tmp_path) == ["milestone-001", "milestone-002", "milestone-003"]


def test_only_a_long_lived_writer_fills_the_text_caches(tmp_path: Path) -> None:
    """Copying every task record into the YAML and JSON text caches costs a write
    more than it saves unless the same object goes on writing from the state it
    wrote (milestone execute's writer, an agent's loop). One-shot commands, and
    processes taking turns, leave the caches alone."""
    from milestones.storage import file_state

    p, _ = Project.init(tmp_path, backend="file", **ACTOR)
    p.plan("Work", tasks=[f"t{i}" for i in range(1, 7)])
    caches = (yamlio._TASK_TEXT.texts, file_state._TASK_JSON.texts)
    for cache in caches:
        cache.clear()
    one = Project.open(tmp_path, **ACTOR)
    two = Project.open(tmp_path, **ACTOR)
    for ref in ("1/1", "1/2", "1/3"):  # taking turns: each writes from what it read
        (one if ref != "1/2" else two).start_task(ref)
    assert [len(c) for c in caches] == [0, 0]
    one.start_task("1/4")  # on from its own state once: not yet
    assert [len(c) for c in caches] == [0, 0]
    one.start_task("1/5")  # twice in a row: a writer that goes on writing
    assert all(len(c) >= 6 for c in caches)
    text = (tmp_path / ".milestones" / "active" / "milestone-001.yaml").read_text()
    assert text.count("status: in_progress") == 6  # the milestone and five tasks


@pytest.mark.parametrize("backend", ["file", "hybrid"])
@pytest.mark.parametrize("current", ["lilestone-001", "milestone-999", 7])
def test_a_state_json_naming_a_current_it_does_not_hold_is_rebuilt(
        tmp_path: Path, backend: str, current: object) -> None:
    """Found by the mutation property test: a damaged ``current`` in logs/state.json was
    an internal error (KeyError); the snapshot is damaged, so it is rebuilt from the log."""
    p, _ = Project.init(tmp_path, backend=backend, **ACTOR)
    p.plan("Alpha", tasks=["One"])
    state_path = p.root / "logs" / "state.json"
    state = json.loads(state_path.read_text())
    state["current"] = current
    state_path.write_text(json.dumps(state))
    result = invoke(tmp_path, "status", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads(result.stdout)["current"] == "milestone-001"

"""The hybrid backend's reads from its index give the answers of the file path.

A read on the hybrid backend, when ``database/index.db`` is at the state's head, serves
the snapshots from the index (lazily, as the database backend does) and checks for hand
edits without the snapshots: the state's file entries (path, size, mtime) are kept in the
index too (``storage.hybrid_files``), so a read costs the head, a row per file and a stat
per file. Here random projects are built through the service layer on the hybrid
backend and every view, read as a new process would (a fresh store), is compared with
what the file backend's code gives over the same files (every snapshot, no index); and a
hand edit, an index left behind, a migration's one-file state and another process's
write are each seen by the next read.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_query_paths import apply, fixed, plan_random, random_ops, views

from milestones.project import Project
from milestones.storage import open_store
from milestones.storage.base import is_lazy
from milestones.storage.file import FileStore
from milestones.storage.file_base import FileBase
from milestones.storage.hybrid import HybridStore

ACTOR = {"actor": "tester@example.com", "session_id": "s1"}


class PlainHybrid(FileStore):
    """The same hybrid project read by the file backend's code: every snapshot from the
    state files, no index, no cache."""

    backend = "hybrid"  # so that Project does not re-open it as the hybrid store


def fresh(root: Path) -> Project:
    """The project as a new process opens it."""
    return fixed(Project(open_store(root), cwd=root.parent, **ACTOR))


def plain(root: Path) -> Project:
    return fixed(Project(PlainHybrid(root), cwd=root.parent, **ACTOR))


def quick(p: Project) -> bool:
    """Did the last read of ``p`` check the files without the snapshots?"""
    store = p.store
    assert isinstance(store, HybridStore)
    return store.head() is not None and store.state_entries() == {}


def build(tmp_path: Path, seed: int, n: int = 10) -> Project:
    p, _ = Project.init(tmp_path, backend="hybrid", **ACTOR)
    fixed(p).plan_many(plan_random(random.Random(seed), n))
    return p


@pytest.mark.parametrize("seed", range(4))
def test_hybrid_views_equal_the_file_path(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    n = 10
    p = build(tmp_path, seed, n)
    root = p.root
    for round_ in range(3):
        for verb, target in random_ops(rng, n, 10):
            apply(p, verb, target)
        want = views(plain(root), n)
        reader = fresh(root)
        assert views(reader, n) == want, f"round {round_}"
        assert quick(reader)  # answered from the index, no snapshot read for the check
        with reader.reading() as st:
            assert is_lazy(st.milestones)
        assert views(fresh(root), n) == want  # again, from the query cache
        assert views(p, n) == want  # the writer's own object agrees


def test_a_read_reads_no_snapshot_of_the_state_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = build(tmp_path, 3, 12)
    p.start_task("2/1", force=True)
    fresh(p.root).status_view()  # the first read after the write

    def refuse(self: Any) -> Any:
        raise AssertionError("the whole state was read")

    monkeypatch.setattr(FileBase, "_read_state", refuse)
    monkeypatch.setattr(FileBase, "read_stored", refuse)
    reader = fresh(p.root)
    reader.status_view()
    reader.next_view(limit=3)
    reader.list_view(limit=5)
    reader.show_view("2")
    reader.show_view("2/1")
    reader.next_view("2")
    reader.resume_view()


@pytest.mark.parametrize("how", ["longer", "same-size", "removed", "renamed", "current"])
def test_a_hand_edit_is_noticed_by_the_next_read(tmp_path: Path, how: str) -> None:
    p = build(tmp_path, 5, 6)
    root = p.root
    fresh(root).status_view()
    assert quick(fresh_read(root))
    path = root / "active" / "milestone-002.yaml"
    text = path.read_text("utf-8")
    old_title = fresh(root).show_view("2")["milestone"]["title"]
    if how == "longer":
        path.write_text(text.replace(f"title: {old_title}", "title: Edited by hand"), "utf-8")
    elif how == "same-size":
        new_title = old_title[:-1] + ("X" if old_title[-1] != "X" else "Y")
        path.write_text(text.replace(f"title: {old_title}", f"title: {new_title}"), "utf-8")
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    elif how == "removed":
        path.unlink()
    elif how == "renamed":
        os.replace(path, root / "completed" / path.name)
    else:
        (root / "active" / "current.txt").write_text("milestone-004\n", "utf-8")
    reader = fresh(root)
    listed = {m["id"]: m for m in reader.list_view(all_=True)["milestones"]}
    events = [e["event_type"] for e in reader.store.events()]
    if how == "longer":
        assert listed["milestone-002"]["title"] == "Edited by hand"
    elif how == "same-size":
        assert listed["milestone-002"]["title"] != old_title
    elif how == "removed":
        assert "milestone-002" not in listed
    elif how == "current":
        assert reader.status_view()["current"] == "milestone-004"
    if how == "renamed":  # the same data in another folder: adopted quietly
        assert "milestone-002" in listed and "manual_edit_detected" not in events
    else:
        assert {"manual_edit_detected", "current_changed"} & set(events), events[-3:]
    # Recorded once: the reads after it are quick again and equal the file path.
    assert fresh(root).list_view(all_=True) == plain(root).list_view(all_=True)
    assert fresh(root).status_view() == plain(root).status_view()
    assert quick(fresh_read(root))


def fresh_read(root: Path) -> Project:
    reader = fresh(root)
    reader.status_view()
    return reader


def test_a_touched_file_is_refreshed_then_reads_are_quick(tmp_path: Path) -> None:
    p = build(tmp_path, 6, 4)
    root = p.root
    n = len(list(p.store.events()))
    path = root / "active" / "milestone-003.yaml"
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000))  # same bytes
    first = fresh_read(root)
    assert not quick(first)  # the whole state, to compare the file's hash
    assert len(list(first.store.events())) == n  # not an edit
    assert quick(fresh_read(root))  # the refreshed entry reached the index


def test_an_index_left_behind_is_brought_up_by_a_read(tmp_path: Path) -> None:
    p = build(tmp_path, 7, 6)
    root = p.root
    want = views(plain(root), 6)
    conn = sqlite3.connect(root / "database" / "index.db")
    with conn:  # as if a crash came between the log append and the index update
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'last_event_id'")
        conn.execute("DELETE FROM files")
    conn.close()
    assert views(fresh(root), 6) == want
    assert quick(fresh_read(root))
    conn = sqlite3.connect(root / "database" / "index.db")
    with conn:  # an index written before the files table
        conn.execute("DROP TABLE files")
        conn.execute("DELETE FROM meta WHERE key = 'files_point'")
    conn.close()
    assert views(fresh(root), 6) == want
    assert quick(fresh_read(root))


def test_a_migrated_project_reads_quick_from_its_one_file_state(tmp_path: Path) -> None:
    from milestones.ops.migrate import migrate

    db, _ = Project.init(tmp_path, backend="database", **ACTOR)
    fixed(db).plan_many(plan_random(random.Random(9), 8))
    for verb, target in random_ops(random.Random(10), 8, 12):
        apply(db, verb, target)
    want = views(db, 8)
    migrate(tmp_path / ".milestones", "hybrid", batch=3)
    root = tmp_path / ".milestones"
    head = json.loads((root / "logs" / "state.json").read_bytes().split(b"\n", 1)[0] + b"}}")
    assert head["version"] == 1  # the one-file state a migration writes
    reader = fresh_read(root)
    assert quick(reader)
    assert views(fresh(root), 8) == want
    path = root / "active" / "milestone-001.yaml"
    path.write_text(path.read_text("utf-8").replace("title: ", "title: Edited ", 1), "utf-8")
    edited = fresh(root).show_view("1")["milestone"]["title"]
    assert edited.startswith("Edited ")
    assert quick(fresh_read(root))


def test_another_processs_write_is_seen_by_a_long_lived_reader(tmp_path: Path) -> None:
    p = build(tmp_path, 11, 5)
    root = p.root
    reader = fresh(root)
    before = reader.status_view()
    writer = fresh(root)
    writer.plan("Late", tasks=["x"])
    after = reader.status_view()
    assert after != before
    assert [m["id"] for m in reader.list_view()["milestones"]][-1] == "milestone-006"
    assert reader.list_view() == plain(root).list_view()


def test_a_write_inside_a_read_keeps_the_index_in_step(tmp_path: Path) -> None:
    p = build(tmp_path, 12, 5)
    reader = fresh(p.root)
    with reader.reading() as st:
        assert is_lazy(st.milestones)  # the index's read transaction is open
        reader.start_task("1/1", force=True)
    assert reader.store.take_warnings() == []
    assert quick(fresh_read(p.root))
    assert fresh(p.root).show_view("1/1")["task"]["status"] == "in_progress"
    assert fresh(p.root).list_view() == plain(p.root).list_view()

"""Migration between backends: round trips, rollback at every step, no downtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli_on_a_terminal
from milestones.errors import InvalidInput, StorageError
from milestones.model import events as ev
from milestones.ops.migrate import STEPS, checksums, migrate, previous_backend
from milestones.project import Project
from milestones.storage import open_store


def build(tmp_path: Path) -> Project:
    p, _ = Project.init(tmp_path, actor="ann@example.com", session_id="s1")
    p.plan("Alpha", tasks=["One", {"title": "Two", "depends_on": ["task-1"], "estimate": 2}],
           due="2026-12-24", tags=["core"])
    p.plan("Beta", tasks=["Three"], depends_on=["1"])
    p.start_task("1/1")
    p.note("left off here")
    return p


def snapshot(root: Path) -> tuple[dict[str, str], list[dict[str, object]], str | None]:
    store = open_store(root)
    state = store.load()
    return checksums(state), list(store.events()), state.current


def test_round_trip_keeps_every_field_the_log_and_comments(tmp_path: Path) -> None:
    p = build(tmp_path)
    root = p.root
    path = root / "active" / "milestone-002.yaml"
    commented = path.read_text().replace("title: Beta", "title: Beta  # named by ann")
    path.write_text("# planning notes stay\n" + commented)
    Project.open(tmp_path).state()  # records the hand edit
    before = snapshot(root)
    text_before = path.read_text()
    migrate(root, "hybrid")
    assert (root / "database" / "index.db").is_file()
    assert snapshot(root) == before
    migrate(root, "database")
    assert (root / "config" / "storage-backend.txt").read_text() == "database\n"
    assert snapshot(root) == before
    migrate(root, "file")
    assert snapshot(root) == before
    assert path.read_text() == text_before  # the person's comments came back
    log = [json.loads(line) for line in (root / "logs" / "progress-events.jsonl").open()]
    assert log == before[1] and ev.verify_chain(log) is None
    assert Project.open(tmp_path).resume_view()["notes"][-1]["text"] == "left off here"


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    p = build(tmp_path)
    report = migrate(p.root, "database", dry_run=True)
    assert report["source"]["milestones"] == 2 and report["source"]["tasks"] == 3
    assert not (p.root / "database" / "milestones.db").exists()
    assert (p.root / "config" / "storage-backend.txt").read_text() == "file\n"


def test_same_backend_is_refused(tmp_path: Path) -> None:
    p = build(tmp_path)
    with pytest.raises(InvalidInput, match="already uses the file backend"):
        migrate(p.root, "file")


DIRECTIONS = [(a, b) for a in ("file", "hybrid", "database", "postgres")
              for b in ("file", "hybrid", "database", "postgres") if a != b]


@pytest.mark.parametrize("direction", DIRECTIONS, ids=lambda d: f"{d[0]}-to-{d[1]}")
@pytest.mark.parametrize("fail_at", ["backup", "copy", "verify", "switch"])
def test_failure_at_any_step_rolls_back(tmp_path: Path, direction: tuple[str, str],
                                        fail_at: str) -> None:
    source, target = direction
    p = build(tmp_path)
    if source != "file":
        migrate(p.root, source)
    before = snapshot(p.root)

    def boom(step: str) -> None:
        if step == fail_at:
            raise OSError(28, "No space left on device")

    with pytest.raises(StorageError, match=f"failed at the {fail_at} step"):
        migrate(p.root, target, on_step=boom)
    assert (p.root / "config" / "storage-backend.txt").read_text() == f"{source}\n"
    assert snapshot(p.root) == before
    log = (p.root / "performance" / "migration-log.jsonl").read_text().splitlines()
    last = json.loads(log[-1])
    assert last["event"] == "migration_rolled_back" and last["step"] == fail_at
    q = Project.open(tmp_path, actor="ann@example.com", session_id="s1")
    q.complete_task("1/1")  # the old backend keeps working
    assert q.milestone("1").task("task-1").status == "done"
    if target == "database":
        assert not (p.root / "database" / "milestones.db").exists()
    if target == "hybrid":
        assert not (p.root / "database" / "index.db").exists()


def test_corrupt_copy_is_caught_by_verification(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from milestones.storage.sqlite import DatabaseStore

    p = build(tmp_path)
    original = DatabaseStore.import_stream

    def corrupting(self: DatabaseStore, *args):  # type: ignore[no-untyped-def]
        original(self, *args)
        self.connect().execute("UPDATE tasks SET data = replace(data, 'One', 'Uno')")

    monkeypatch.setattr(DatabaseStore, "import_stream", corrupting)
    with pytest.raises(StorageError, match="checksum differs"):
        migrate(p.root, "database")
    assert (p.root / "config" / "storage-backend.txt").read_text() == "file\n"


STEP_KILL = """
import os, sys
from pathlib import Path
from milestones.ops.migrate import migrate
def die(step):
    if step == sys.argv[3]:
        os._exit(9)
migrate(Path(sys.argv[1]), sys.argv[2], on_step=die)
"""


@pytest.mark.parametrize("step", ["backup", "copy", "verify", "switch"])
def test_killed_migration_leaves_the_old_backend_in_use(tmp_path: Path, step: str) -> None:
    p = build(tmp_path)
    before = snapshot(p.root)
    out = subprocess.run([sys.executable, "-c", STEP_KILL, str(p.root), "database", step],
                         capture_output=True, text=True)
    assert out.returncode == 9, out.stderr
    assert (p.root / "config" / "storage-backend.txt").read_text() == "file\n"
    assert snapshot(p.root) == before
    q = Project.open(tmp_path, actor="ann@example.com", session_id="s1")
    q.complete_task("1/1")
    migrate(p.root, "database")  # a later attempt succeeds over the leftovers
    assert open_store(p.root).load().milestones["milestone-001"]["tasks"][0]["status"] == "done"


def test_rollback_returns_to_the_previous_backend_keeping_later_changes(tmp_path: Path) -> None:
    p = build(tmp_path)
    migrate(p.root, "database")
    q = Project.open(tmp_path, actor="ann@example.com", session_id="s1")
    q.complete_task("1/1")
    assert previous_backend(p.root) == "file"
    migrate(p.root, previous_backend(p.root) or "")
    r = Project.open(tmp_path)
    assert r.store.backend == "file"
    assert r.milestone("1").task("task-1").status == "done"


WORKER = """
import json, sys, time
from pathlib import Path
from milestones.project import Project
from milestones.errors import MilestoneError
root, role, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
p = Project.open(root, actor=f"{role}@example.com", session_id=role)
done = 0
errors = []
for i in range(n):
    try:
        if role.startswith("writer"):
            p.note(f"{role} {i}")
            done += 1
        else:
            st = p.status_view(all_=True)
            assert len(st["milestones"]) == 2, st
            done += 1
    except Exception as exc:  # noqa: BLE001
        errors.append(repr(exc))
    time.sleep(0.005)
print(json.dumps({"done": done, "errors": errors}))
"""


def test_no_command_fails_during_migrations_in_every_direction(tmp_path: Path) -> None:
    build(tmp_path)
    root = tmp_path / ".milestones"
    env = dict(os.environ, MILESTONE_LOCK_TIMEOUT="60")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), role, "120"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for role in ("writer1", "writer2", "reader1", "reader2")]
    for target in ("hybrid", "database", "file", "database", "hybrid", "file"):
        time.sleep(0.15)
        migrate(root, target)
    results = {}
    for role, proc in zip(("writer1", "writer2", "reader1", "reader2"), procs, strict=True):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results[role] = json.loads(out.strip().splitlines()[-1])
    for role, res in results.items():
        assert res["errors"] == [], (role, res["errors"][:3])
        assert res["done"] == 120
    notes = [e["data"]["note"] for e in open_store(root).events()
             if e["event_type"] == "note_added" and e["actor"] != "ann@example.com"]
    for writer in ("writer1", "writer2"):
        mine = [n for n in notes if n.startswith(writer)]
        assert mine == [f"{writer} {i}" for i in range(120)]  # no lost write, in order
    assert ev.verify_chain(list(open_store(root).events())) is None
    assert STEPS[0] == "lock"


@pytest.mark.parametrize(("source", "target"), [("file", "database"), ("database", "hybrid"),
                                                ("hybrid", "database"), ("database", "file")])
def test_pre_migration_backup_is_a_checked_archive_restore_takes_back(
        tmp_path: Path, source: str, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The automatic backup is a full archive (manifest, SHA-256 per member, databases
    copied through SQLite's online backup API) made under the migration's own lock,
    on the database backend too, without waiting for it."""
    from milestones.storage.backup import verify_backup
    from milestones.storage.restore import restore_backup

    monkeypatch.setenv("MILESTONE_LOCK_TIMEOUT", "2")
    p = build(tmp_path)
    if source != "file":
        migrate(p.root, source)
    before = snapshot(p.root)
    started = time.monotonic()
    report = migrate(p.root, target)
    assert time.monotonic() - started < 2  # never waited for its own lock
    archive = Path(report["backup"])
    assert archive.parent == p.root / "database" / "backup"
    assert archive.name.endswith("-pre-migration.tar.gz")
    manifest = verify_backup(archive)
    assert manifest.backend == source and manifest.reason == "pre-migration"
    assert (manifest.last_event_id, manifest.last_hash) == (before[1][-1]["event_id"],
                                                            before[1][-1]["hash"])
    names = {m.path for m in manifest.members}
    if source == "database":
        assert "database/milestones.db" in names
    else:
        assert "active/milestone-001.yaml" in names
    Project.open(tmp_path).plan("After the move")
    restore_backup(p.root, archive)
    assert (p.root / "config" / "storage-backend.txt").read_text().strip() == source
    assert snapshot(p.root) == before


def test_migration_from_a_relative_root_backs_up_under_its_own_lock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file lock is re-entered whatever the path it is named by (relative here)."""
    monkeypatch.setenv("MILESTONE_LOCK_TIMEOUT", "0.5")
    build(tmp_path)
    monkeypatch.chdir(tmp_path)
    migrate(Path(".milestones"), "hybrid")
    report = migrate(Path(".milestones"), "database")
    assert Path(report["backup"]).name.endswith("-pre-migration.tar.gz")


def test_cleanup_removes_only_what_no_backend_in_use_reads(tmp_path: Path) -> None:
    from milestones.ops.migrate import cleanup, leftovers

    p = build(tmp_path)
    root = p.root
    assert leftovers(root) == ("file", [])
    migrate(root, "hybrid")
    assert leftovers(root) == ("hybrid", [])  # the YAML files are hybrid's too
    migrate(root, "database")
    before = snapshot(root)
    backend, files = leftovers(root)
    names = {f.relative_to(root).as_posix() for f in files}
    assert backend == "database"
    assert {"active/milestone-001.yaml", "logs/progress-events.jsonl", "logs/state.json",
            "database/index.db"} <= names
    assert not names & {f.relative_to(root).as_posix() for f in open_store(root).data_files()}
    dry = cleanup(root, dry_run=True)
    assert set(dry["files"]) == names and all(f.exists() for f in files)
    done = cleanup(root)
    assert set(done["files"]) == names and not any(f.exists() for f in files)
    assert done["bytes"] > 0 and leftovers(root) == ("database", [])
    assert snapshot(root) == before  # the project lost nothing
    Project.open(tmp_path, actor="ann@example.com", session_id="s2").complete_task("1/1")
    assert list(root.glob("database/backup/*pre-migration*.tar.gz"))  # backups stay
    log = [json.loads(x) for x in (root / "performance" / "migration-log.jsonl").open()]
    assert log[-1]["event"] == "storage_cleaned" and log[-1]["backend"] == "database"
    # Rolling back copies from the database: nothing it needs was removed.
    migrate(root, previous_backend(root) or "")
    assert open_store(root).backend == "hybrid"
    assert [t["status"] for t in Project.open(tmp_path).state().milestones["milestone-001"][
        "tasks"]] == ["done", "todo"]
    assert {f.relative_to(root).as_posix() for f in leftovers(root)[1]} >= {
        "database/milestones.db"}


def test_cleanup_from_the_cli_asks_first(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from milestones.cli import cli

    p = build(tmp_path)
    migrate(p.root, "database")
    runner = CliRunner(mix_stderr=False)
    declined = runner.invoke(cli, ["-C", str(tmp_path), "storage", "cleanup"], input="n\n")
    assert declined.exit_code == 1 and (p.root / "active" / "milestone-001.yaml").exists()
    listed = runner.invoke(cli, ["-C", str(tmp_path), "storage", "cleanup", "--dry-run"])
    assert listed.exit_code == 0 and "active/milestone-001.yaml" in listed.stdout
    done = runner.invoke(cli, ["-C", str(tmp_path), "storage", "cleanup", "--yes", "--json"])
    assert done.exit_code == 0, done.stderr
    assert "active/milestone-001.yaml" in json.loads(done.stdout)["report"]["files"]
    assert not (p.root / "active" / "milestone-001.yaml").exists()
    again = runner.invoke(cli, ["-C", str(tmp_path), "storage", "cleanup", "--yes"])
    assert again.exit_code == 0 and "Nothing to remove" in again.stdout


# --------------------------------------------------------------- in batches


def build_many(tmp_path: Path, n: int = 7) -> Project:
    p = build(tmp_path)
    for i in range(n):
        p.plan(f"M{i}", tasks=[f"T{i}a", {"title": f"T{i}b", "depends_on": ["task-1"]}],
               tags=["bulk"] if i % 2 else [])
    p.start_task("3/1")
    p.complete_task("3/1")
    p.set_current("4")
    return p


def status_json(root: Path) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "milestones", "status", "--json"],
                         cwd=root.parent, capture_output=True, text=True, env=child_env())
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    data.pop("backend", None)
    return data


def child_env() -> dict[str, str]:
    env = dict(os.environ, MILESTONE_ACTOR="ann@example.com")
    env.pop("MILESTONE_DIR", None)
    return env


def every_snapshot(root: Path) -> list[dict[str, object]]:
    return [s for batch in open_store(root).snapshot_batches(3) for s in batch]


@pytest.mark.parametrize("direction", DIRECTIONS, ids=lambda d: f"{d[0]}-to-{d[1]}")
def test_a_copy_in_many_small_batches_is_the_same_project(tmp_path: Path,
                                                          direction: tuple[str, str]) -> None:
    source, target = direction
    p = build_many(tmp_path)
    if source != "file":
        migrate(p.root, source, batch=2)
    before, snaps, status = snapshot(p.root), every_snapshot(p.root), status_json(p.root)
    seen: list[tuple[str, int, int]] = []
    report = migrate(p.root, target, batch=2,
                     progress=lambda what, done, total: seen.append((what, done, total)))
    assert snapshot(p.root) == before  # checksums, every event, the current milestone
    assert every_snapshot(p.root) == snaps
    assert status_json(p.root) == status
    assert report["source"] == report["target"]
    assert report["source"]["milestones"] == 9 and report["source"]["events"] == len(before[1])
    assert ev.verify_chain(list(open_store(p.root).events())) is None
    if {source, target} != {"file", "hybrid"}:  # those two share the files: no copy
        # Batches of 2 milestones and 20 events: counted as they go, up to the totals.
        milestones = [(d, t) for w, d, t in seen if w == "milestones"]
        assert [d for d, _ in milestones] == [2, 4, 6, 8, 9]
        assert {t for _, t in milestones} == {9}
        assert [d for w, d, _ in seen if w == "events"][-1] == len(before[1])


@pytest.mark.parametrize("target", ["database", "hybrid", "file"])
def test_a_failure_in_the_middle_of_a_batch_rolls_back(tmp_path: Path, target: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from milestones.ops import migrate as ops_migrate

    p = build_many(tmp_path)
    source = "database" if target != "database" else "hybrid"
    migrate(p.root, source)
    before, status = snapshot(p.root), status_json(p.root)
    original = ops_migrate.Tally.snapshot_batches
    calls = []

    def failing(self, batches):  # type: ignore[no-untyped-def]
        for batch in original(self, batches):
            calls.append(len(batch))
            if len(calls) == 2:  # the second batch, half written
                yield batch[:1]
                raise OSError(28, "No space left on device")
            yield batch

    monkeypatch.setattr(ops_migrate.Tally, "snapshot_batches", failing)
    with pytest.raises(StorageError, match="failed at the copy step"):
        migrate(p.root, target, batch=3)
    monkeypatch.undo()
    assert (p.root / "config" / "storage-backend.txt").read_text() == f"{source}\n"
    assert snapshot(p.root) == before and status_json(p.root) == status
    log = (p.root / "performance" / "migration-log.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["event"] == "migration_rolled_back"
    if target == "database":
        assert not (p.root / "database" / "milestones.db").exists()
    else:
        assert not list((p.root / "active").glob("milestone-*.yaml"))
        assert not (p.root / "logs" / "state.json").exists()
    migrate(p.root, target, batch=3)  # then it goes through, and back
    assert snapshot(p.root) == before
    migrate(p.root, source, batch=3)
    assert snapshot(p.root) == before and status_json(p.root) == status


def run_on_a_terminal(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout a pipe): (code, out, err)."""
    return cli_on_a_terminal(argv, cwd, child_env())


def test_the_progress_bar_is_drawn_on_a_terminal_only(tmp_path: Path) -> None:
    build_many(tmp_path)
    code, out, err = run_on_a_terminal(["storage", "migrate", "--to", "database"], tmp_path)
    assert code == 0, err
    assert "Migrated file → database" in out
    assert "events" in err and "milestones" in err and "9/9" in err  # the bar, on stderr
    # On a pipe, or with --json on a terminal: no bar.
    piped = subprocess.run([sys.executable, "-m", "milestones", "storage", "rollback"],
                           cwd=tmp_path, capture_output=True, text=True, env=child_env())
    assert piped.returncode == 0, piped.stderr
    assert "events" not in piped.stderr and "━" not in piped.stderr
    code, out, err = run_on_a_terminal(["storage", "migrate", "--to", "hybrid", "--json"],
                                       tmp_path)
    assert code == 0, err
    assert json.loads(out)["ok"] is True
    assert "events" not in err and "━" not in err

"""Backup and restore on every backend: exact round trips, damaged archives refused,
pre-restore backups, retention, the CLI, consistency under a concurrent writer, and
restores interrupted by an error or a crash."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import milestones.cli.backup  # noqa: F401  (registers backup/restore, whatever _register says)
from milestones import __version__
from milestones.cli import cli
from milestones.errors import InvalidInput, StorageError
from milestones.model import events as ev
from milestones.project import Project
from milestones.storage import archive as ar
from milestones.storage import backup as bk
from milestones.storage import open_store
from milestones.storage import restore as rs
from milestones.storage import swap as sw

BACKENDS = ["file", "hybrid", "database", "postgres"]
ACTOR = {"actor": "ann@example.com", "session_id": "s1"}


# ------------------------------------------------------------------ helpers


def build(directory: Path, backend: str) -> Project:
    directory.mkdir(parents=True, exist_ok=True)
    p, _ = Project.init(directory, backend=backend, **ACTOR)
    p.plan("Alpha", tasks=["One", {"title": "Two", "depends_on": ["task-1"], "estimate": 2}],
           tags=["core"])
    p.plan("Beta", tasks=["Three"], depends_on=["1"])
    p.start_task("1/1")
    p.note("left off here")
    return p


def change(directory: Path) -> None:
    """Move the project on from where a backup saw it."""
    p = Project.open(directory, **ACTOR)
    p.complete_task("1/1")
    p.plan("Gamma", tasks=["Four"])
    p.add_task("2", "Five")
    p.note("later")


def snapshot(root: Path) -> dict[str, Any]:
    """Everything a restore must bring back: snapshots, the log, the resume record."""
    store = open_store(root)
    try:
        state = store.load()
        return {
            "backend": store.backend,
            "milestones": state.milestones,
            "current": state.current,
            "max_number": state.max_number,
            "head": (state.last_event_id, state.last_hash),
            "events": list(store.events()),
            "resume": store.read_resume(),
        }
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


DB_FILE = re.compile(r"\.db(-wal|-shm|-journal)?$")


def tree(root: Path) -> dict[str, str]:
    """Every file's SHA-256 (databases aside: their bytes move with checkpoints)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not DB_FILE.search(p.name)}


def backups(root: Path) -> list[str]:
    folder = root / "database" / "backup"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def read_members(archive: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(archive, "r:gz") as tar:
        out = []
        for info in tar.getmembers():
            f = tar.extractfile(info) if info.isfile() else None
            out.append((info, f.read() if f is not None else b""))
        return out


def write_members(out: Path, items: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(out, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in items:
            info = copy.copy(info)
            if info.isfile():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return out


def member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def with_manifest(items: list[tuple[tarfile.TarInfo, bytes]],
                  edit: Callable[[dict[str, Any]], None]) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The same members with manifest.json edited (as someone re-hashing would)."""
    info, raw = items[0]
    data = json.loads(raw)
    edit(data)
    return [member(info.name, json.dumps(data).encode()), *items[1:]]


def sysevents(root: Path) -> list[dict[str, Any]]:
    path = root / "logs" / "system-events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --------------------------------------------------------------- round trip


def test_backup_then_restore_brings_back_exactly_the_same_state(
        tmp_path: Path, backend: str) -> None:
    p = build(tmp_path, backend)
    root = p.root
    before = snapshot(root)
    info = bk.create_backup(root)
    assert info.path.parent == root / "database" / "backup"
    assert re.match(r"backup-\d{8}T\d{6}\.\d{6}Z-manual\.tar\.gz$", info.path.name)
    change(tmp_path)
    moved_on = snapshot(root)
    assert moved_on["head"] != before["head"]

    result = rs.restore_backup(root, info.path)

    after = snapshot(root)
    assert after == before  # milestones, current, the log (same hashes), resume record
    assert ev.verify_chain(after["events"]) is None
    assert result.manifest.event_count == len(before["events"])
    assert (result.manifest.last_event_id, result.manifest.last_hash) == before["head"]
    assert result.previous_backend == backend
    assert not (root / ar.RESTORE_DIR).exists()
    # The project works on from the restored head, and reads as unchanged (no hand edits).
    reopened = Project.open(tmp_path, **ACTOR)
    assert reopened.state().last_event_id == before["head"][0]
    reopened.note("after the restore")
    events = snapshot(root)["events"]
    assert events[-1]["prev_hash"] == before["head"][1]
    assert [e["event_type"] for e in events[len(before["events"]):]] == ["note_added"]


def test_file_backend_files_come_back_byte_for_byte(tmp_path: Path) -> None:
    p = build(tmp_path, "file")
    root = p.root
    data = {k: v for k, v in tree(root).items()
            if k.split("/")[0] in ("active", "completed", "config", "logs")}
    info = bk.create_backup(root)
    change(tmp_path)
    (root / "completed").rmdir()  # empty directories come back too
    rs.restore_backup(root, info.path)
    again = {k: v for k, v in tree(root).items()
             if k.split("/")[0] in ("active", "completed", "config", "logs")
             and k != "logs/system-events.jsonl"}
    assert again == data
    assert (root / "completed").is_dir() and (root / "logs" / "archive").is_dir()
    mtimes = {m.path: m.mtime_ns for m in info.manifest.members}
    assert (root / "active" / "milestone-001.yaml").stat().st_mtime_ns == \
        mtimes["active/milestone-001.yaml"]


def test_rotated_event_logs_are_backed_up_and_restored(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path, backend="file", **ACTOR)
    config = p.root / "config" / "config.yaml"
    config.write_text(config.read_text() + "logs:\n  rotate_bytes: 2000\n")
    p = Project.open(tmp_path, **ACTOR)
    p.plan("Alpha", tasks=["One"])
    for i in range(30):
        p.note(f"note {i} " + "x" * 40)
    rotated = sorted(n.name for n in (p.root / "logs" / "archive").iterdir())
    assert any(n.endswith(".jsonl.gz") for n in rotated)
    before = snapshot(p.root)
    assert ev.verify_chain(before["events"]) is None and len(before["events"]) > 30
    info = bk.create_backup(p.root)
    assert {f"logs/archive/{n}" for n in rotated} <= {m.path for m in info.manifest.members}
    shutil.rmtree(p.root / "logs" / "archive")
    change(tmp_path)
    rs.restore_backup(p.root, info.path)
    assert sorted(n.name for n in (p.root / "logs" / "archive").iterdir()) == rotated
    assert snapshot(p.root) == before


def test_manifest_lists_every_member_and_excludes_lock_temp_and_backups(
        tmp_path: Path, backend: str) -> None:
    p = build(tmp_path, backend)
    root = p.root
    (root / "config" / ".config.yaml.tmp-999").write_text("half a write")
    first = bk.create_backup(root)  # lands in database/backup/, which is never archived
    info = bk.create_backup(root)
    items = read_members(info.path)
    assert items[0][0].name == "manifest.json"
    manifest = json.loads(items[0][1])
    assert manifest["format"] == "milestone-backup" and manifest["format_version"] == 1
    assert manifest["backend"] == backend
    assert manifest["milestone_version"] == __version__
    assert manifest["reason"] == "manual" and manifest["created_at"].endswith("Z")
    state = open_store(root).load()
    assert manifest["event_count"] == state.last_event_id
    assert manifest["head"] == {"event_id": state.last_event_id, "hash": state.last_hash}
    names = [i.name for i, _ in items[1:]]
    assert names == [m["path"] for m in manifest["members"]]
    for (tinfo, data), m in zip(items[1:], manifest["members"], strict=True):
        assert m["size"] == tinfo.size == len(data)
        assert m["sha256"] == hashlib.sha256(data).hexdigest()
    assert "config/storage-backend.txt" in names and "config/config.yaml" in names
    assert not any(n.startswith("database/backup") or n.endswith(".lock") or ".tmp-" in n
                   or n.endswith(("-wal", "-shm")) for n in names)
    assert first.path.name not in "".join(names)
    if backend == "database":
        assert "database/milestones.db" in names
        db = dict((i.name, d) for i, d in items)["database/milestones.db"]
        assert db.startswith(b"SQLite format 3\x00")
    elif backend == "postgres":  # the rows, as a SQLite database
        db = dict((i.name, d) for i, d in items)["database/postgres-copy.db"]
        assert db.startswith(b"SQLite format 3\x00")
    else:
        assert {"active/milestone-001.yaml", "logs/progress-events.jsonl",
                "logs/state.json", "logs/session-resume.json"} <= set(names)
        assert {"active", "completed", "logs", "logs/archive", "config"} <= set(manifest["dirs"])
    assert bk.verify_backup(info.path).to_dict() == manifest


def test_backup_to_a_directory_or_a_file(tmp_path: Path) -> None:
    p = build(tmp_path / "proj", "file")
    out = tmp_path / "out"
    out.mkdir()
    into_dir = bk.create_backup(p.root, out)
    assert into_dir.path.parent == out and into_dir.path.name.endswith("-manual.tar.gz")
    named = bk.create_backup(p.root, tmp_path / "deep" / "plan.tar.gz")
    assert named.path == tmp_path / "deep" / "plan.tar.gz"
    with pytest.raises(InvalidInput, match="already exists"):
        bk.create_backup(p.root, named.path)
    with pytest.raises(InvalidInput, match="inside the project's data"):
        bk.create_backup(p.root, p.root / "logs" / "x.tar.gz")
    assert not list(out.glob(".*")) and not list((tmp_path / "deep").glob(".*"))  # no temp left


def test_backup_and_restore_are_system_events_not_progress_events(
        tmp_path: Path, backend: str) -> None:
    p = build(tmp_path, backend)
    root = p.root
    before = snapshot(root)
    info = bk.create_backup(root, actor="bob@example.com")
    assert snapshot(root)["events"] == before["events"]  # the chain is as it was
    result = rs.restore_backup(root, info.path, actor="bob@example.com")
    lines = sysevents(root)
    assert [e["event"] for e in lines] == ["backup_created", "backup_created", "backup_restored"]
    created, pre, restored = lines
    assert created["path"] == str(info.path) and created["backend"] == backend
    assert created["members"] == len(info.manifest.members)
    assert created["actor"] == "bob@example.com"
    assert pre["reason"] == "pre-restore" and pre["path"] == str(result.pre_restore.path)
    assert restored["path"] == str(info.path)
    assert restored["pre_restore_backup"] == str(result.pre_restore.path)
    assert set(restored) >= {"timestamp", "event", "path", "backend", "members", "actor"}
    types = {e["event_type"] for e in snapshot(root)["events"]}
    assert not types & {"backup_created", "backup_restored"}


# ------------------------------------------------------------ pre-restore


def test_restore_takes_a_pre_restore_backup_that_undoes_it(tmp_path: Path, backend: str) -> None:
    p = build(tmp_path, backend)
    root = p.root
    info = bk.create_backup(root)
    change(tmp_path)
    later = snapshot(root)
    result = rs.restore_backup(root, info.path)
    pre = result.pre_restore.path
    assert pre.parent == root / "database" / "backup" and pre.name.endswith("-pre-restore.tar.gz")
    manifest = bk.verify_backup(pre)
    assert (manifest.last_event_id, manifest.last_hash) == later["head"]
    assert manifest.reason == "pre-restore"
    rs.restore_backup(root, pre)  # undo the restore
    assert snapshot(root) == later


# ----------------------------------------------------------- cross-backend


@pytest.mark.parametrize(("source", "target"), [("database", "file"), ("file", "database")])
def test_restore_across_backends(tmp_path: Path, source: str, target: str) -> None:
    src = build(tmp_path / "src", source)
    wanted = snapshot(src.root)
    archive = bk.create_backup(src.root, tmp_path / "src.tar.gz").path
    dst = build(tmp_path / "dst", target)
    change(tmp_path / "dst")
    rs.restore_backup(dst.root, archive)
    assert (dst.root / "config" / "storage-backend.txt").read_text().strip() == source
    assert snapshot(dst.root) == wanted
    if source == "database":
        assert not (dst.root / "active").exists()  # the file backend's data went with it
    else:
        assert not (dst.root / "database" / "milestones.db").exists()
    Project.open(tmp_path / "dst", **ACTOR).note("works")


# ------------------------------------------------------------ damaged archives

FILE_MEMBER = "active/milestone-001.yaml"

Items = list[tuple[tarfile.TarInfo, bytes]]


def flip(name: str) -> Callable[[Items], Items]:
    def edit(items: Items) -> Items:
        out = []
        for info, data in items:
            if info.name == name:
                mid = len(data) // 2
                data = data[:mid] + bytes([data[mid] ^ 0x01]) + data[mid + 1:]
            out.append((info, data))
        return out
    return edit


def remove(name: str) -> Callable[[Items], Items]:
    return lambda items: [(i, d) for i, d in items if i.name != name]


def add(name: str, data: bytes = b"x") -> Callable[[Items], Items]:
    return lambda items: [*items, member(name, data)]


def symlink(items: Items) -> Items:
    info = tarfile.TarInfo("active/link.yaml")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    return [*items, (info, b"")]


def manifest_lists_evil(items: Items) -> Items:
    def edit(data: dict[str, Any]) -> None:
        data["members"].append({"path": "../evil", "size": 1, "mode": 420, "mtime_ns": 0,
                                "sha256": hashlib.sha256(b"x").hexdigest()})
    return [*with_manifest(items, edit), member("../evil", b"x")]


def manifest_last(items: Items) -> Items:
    return [*items[1:], items[0]]


def duplicate(items: Items) -> Items:
    first = next(x for x in items if x[0].name == "config/config.yaml")
    return [*items, first]


def bad_json(items: Items) -> Items:
    return [member("manifest.json", b"{not json"), *items[1:]]


DAMAGE: dict[str, tuple[Callable[[Items], Items], str]] = {
    "flipped byte": (flip(FILE_MEMBER), f"member {FILE_MEMBER} does not match its SHA-256"),
    "member removed": (remove(FILE_MEMBER), f"member {FILE_MEMBER} is missing"),
    "member added": (add("logs/extra.txt"), "member logs/extra.txt is not in the manifest"),
    "../evil": (add("../evil"), "member '../evil' has a '..'"),
    "absolute path": (add("/tmp/evil-abs"), "member '/tmp/evil-abs' has an absolute path"),
    "outside the data": (add("evil.sh"), "member 'evil.sh' is outside the data directories"),
    "../evil in the manifest too": (manifest_lists_evil, "member '../evil' has a '..'"),
    "symlink": (symlink, "member active/link.yaml is not a regular file"),
    "manifest not first": (manifest_last, "not manifest.json"),
    "member twice": (duplicate, "member config/config.yaml appears twice"),
    "manifest not json": (bad_json, "manifest.json: not valid JSON"),
}


def damaged(tmp_path: Path, backend: str, how: str) -> tuple[Project, Path]:
    p = build(tmp_path / "proj", backend)
    good = bk.create_backup(p.root, tmp_path / "good.tar.gz").path
    out = tmp_path / "bad.tar.gz"
    if how == "truncated":
        raw = good.read_bytes()
        out.write_bytes(raw[: len(raw) // 2])
    elif how == "not an archive":
        out.write_bytes(b"hello, I am not a tarball\n" * 10)
    else:
        write_members(out, DAMAGE[how][0](read_members(good)))
    change(tmp_path / "proj")  # so a wrongful restore would show
    return p, out


@pytest.mark.parametrize("how", [*DAMAGE, "truncated", "not an archive"])
def test_a_damaged_archive_is_refused_and_nothing_changes(tmp_path: Path, how: str) -> None:
    p, bad = damaged(tmp_path, "file", how)
    root = p.root
    files, state = tree(root), snapshot(root)
    expected = DAMAGE[how][1] if how in DAMAGE else "not a readable backup archive"
    with pytest.raises(StorageError) as verified:
        bk.verify_backup(bad)
    assert expected in str(verified.value) and str(bad) in str(verified.value)
    with pytest.raises(StorageError) as restored:
        rs.restore_backup(root, bad)
    assert expected in str(restored.value)
    assert tree(root) == files and snapshot(root) == state  # no pre-restore backup either
    assert not (root / ar.RESTORE_DIR).exists()
    assert not any(p.name.startswith("evil") for p in tmp_path.rglob("*"))
    assert not Path("/tmp/evil-abs").exists()


@pytest.mark.parametrize("how", ["flip", "remove"])
def test_a_damaged_database_member_is_refused(tmp_path: Path, how: str) -> None:
    p = build(tmp_path / "proj", "database")
    good = bk.create_backup(p.root, tmp_path / "good.tar.gz").path
    name = "database/milestones.db"
    edit = flip(name) if how == "flip" else remove(name)
    bad = write_members(tmp_path / "bad.tar.gz", edit(read_members(good)))
    change(tmp_path / "proj")
    state, files = snapshot(p.root), tree(p.root)
    with pytest.raises(StorageError, match=f"member {name}"):
        rs.restore_backup(p.root, bad)
    assert snapshot(p.root) == state and tree(p.root) == files


def test_a_manifest_that_disagrees_with_the_data_is_refused_on_restore(tmp_path: Path) -> None:
    p = build(tmp_path / "proj", "file")
    good = bk.create_backup(p.root, tmp_path / "good.tar.gz").path

    def edit(data: dict[str, Any]) -> None:
        data["head"]["event_id"] -= 1
        data["event_count"] -= 1

    bad = write_members(tmp_path / "bad.tar.gz", with_manifest(read_members(good), edit))
    bk.verify_backup(bad)  # every member matches its hash...
    state, files = snapshot(p.root), tree(p.root)
    with pytest.raises(StorageError, match="but the manifest says"):
        rs.restore_backup(p.root, bad)  # ...but the data does not match the manifest
    assert snapshot(p.root) == state and tree(p.root) == files


def test_a_missing_archive_is_not_found(tmp_path: Path) -> None:
    p = build(tmp_path, "file")
    with pytest.raises(InvalidInput):
        bk.verify_backup(tmp_path / "nope.tar.gz")
    with pytest.raises(InvalidInput):
        rs.restore_backup(p.root, tmp_path / "nope.tar.gz")


# --------------------------------------------------------------- retention


def set_retention(root: Path, value: object) -> None:
    config = root / "config" / "config.yaml"
    config.write_text(config.read_text() + f"backup:\n  retention: {value}\n")


def test_retention_keeps_the_newest_automatic_backups(tmp_path: Path) -> None:
    p = build(tmp_path, "file")
    root = p.root
    assert bk.retention(root) == ar.DEFAULT_RETENTION
    set_retention(root, 3)
    manual = [bk.create_backup(root).path.name for _ in range(2)]
    auto = [bk.create_backup(root, reason="auto").path.name for _ in range(5)]
    (root / "database" / "backup" / "notes.txt").write_text("not a backup")
    assert backups(root) == sorted([*manual, *auto[-3:], "notes.txt"])
    removed = bk.prune_backups(root, 1)
    assert [r.name for r in removed] == auto[-3:-1]
    assert backups(root) == sorted([*manual, auto[-1], "notes.txt"])


def test_pre_restore_backups_count_towards_retention(tmp_path: Path) -> None:
    p = build(tmp_path, "database")
    root = p.root
    set_retention(root, 1)
    info = bk.create_backup(root)
    first = rs.restore_backup(root, info.path).pre_restore.path
    second = rs.restore_backup(root, info.path).pre_restore.path
    assert not first.exists() and second.exists()
    assert backups(root) == sorted([info.path.name, second.name])


@pytest.mark.parametrize("value", [0, -1, "many", "true"])
def test_a_bad_retention_is_reported_and_prunes_nothing(tmp_path: Path, value: object) -> None:
    p = build(tmp_path, "file")
    set_retention(p.root, value)
    with pytest.raises(InvalidInput, match=r"backup\.retention"):
        bk.retention(p.root)
    for _ in range(2):
        bk.create_backup(p.root, reason="auto")
    assert len(backups(p.root)) == 2
    with pytest.raises(InvalidInput):
        bk.prune_backups(p.root, -1)
    with pytest.raises(InvalidInput, match="reason"):
        bk.create_backup(p.root, reason="../x")


# --------------------------------------------------------------------- CLI


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(mix_stderr=False)


def invoke(runner: CliRunner, cwd: Path, *args: str, input: str | None = None) -> Any:
    return runner.invoke(cli, ["-C", str(cwd), *args], input=input, catch_exceptions=False)


def test_cli_backup_and_restore(tmp_path: Path, runner: CliRunner, backend: str) -> None:
    build(tmp_path, backend)
    root = tmp_path / ".milestones"
    before = snapshot(root)
    result = invoke(runner, tmp_path, "backup", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["schema"] == 1
    path = Path(data["backup"]["path"])
    assert path.is_file() and data["backup"]["backend"] == backend
    assert data["backup"]["event_count"] == before["head"][0]

    fresh = invoke(runner, tmp_path, "backup", "--to", f"{tmp_path / 'new-dir'}/")
    assert fresh.exit_code == 0 and len(list((tmp_path / "new-dir").glob("backup-*"))) == 1
    text = invoke(runner, tmp_path, "backup", "--to", str(tmp_path / "copy.tar.gz"))
    assert text.exit_code == 0 and "Backed up" in text.stdout
    assert (tmp_path / "copy.tar.gz").is_file()
    again = invoke(runner, tmp_path, "backup", "--to", str(tmp_path / "copy.tar.gz"))
    assert again.exit_code == 4 and "already exists" in again.stderr

    change(tmp_path)
    moved_on, files = snapshot(root), tree(root)
    declined = invoke(runner, tmp_path, "restore", str(path), input="n\n")
    assert declined.exit_code == 1
    assert "Restore" in declined.stderr and "backed up first" in declined.stderr
    assert snapshot(root) == moved_on and tree(root) == files  # declining changes nothing

    restored = invoke(runner, tmp_path, "restore", str(path), "--yes", "--json")
    assert restored.exit_code == 0, restored.stderr
    report = json.loads(restored.stdout)["restore"]
    assert Path(report["pre_restore_backup"]).is_file()
    assert report["backend"] == backend and report["event_count"] == before["head"][0]
    assert snapshot(root) == before

    change(tmp_path)
    accepted = invoke(runner, tmp_path, "restore", str(path), input="y\n")
    assert accepted.exit_code == 0 and "Restored" in accepted.stdout
    assert snapshot(root) == before


def test_cli_refuses_damaged_and_missing_archives(tmp_path: Path, runner: CliRunner) -> None:
    p, bad = damaged(tmp_path, "file", "flipped byte")
    state = snapshot(p.root)
    result = invoke(runner, tmp_path / "proj", "restore", str(bad), "--yes")
    assert result.exit_code == 8
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("milestone: error: ")
    assert FILE_MEMBER in lines[0]
    missing = invoke(runner, tmp_path / "proj", "restore", str(tmp_path / "nope.tar.gz"))
    assert missing.exit_code == 4
    assert snapshot(p.root) == state


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_cli_help_has_an_example(runner: CliRunner, command: str) -> None:
    result = runner.invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Example" in result.output and "milestone " in result.output


# -------------------------------------------------------- concurrent writer

WRITER = textwrap.dedent("""
    import sys
    import time
    from pathlib import Path
    from milestones.project import Project

    directory, stop = Path(sys.argv[1]), Path(sys.argv[2])
    p = Project.open(directory, actor="writer@example.com", session_id="w")
    i = 0
    while not stop.exists():
        if i % 3 == 0:
            p.add_task("2", f"task {i}")
        else:
            p.note(f"note {i}")
        i += 1
        time.sleep(0.002)  # a busy agent, not a spin loop that starves every other writer
    print(i)
""")


def test_database_backup_is_consistent_while_another_process_writes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILESTONE_LOCK_TIMEOUT", "60")
    p = build(tmp_path / "proj", "database")
    root = p.root
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "proj"), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    start = snapshot(root)["head"][0]
    archives = []
    try:
        deadline = time.monotonic() + 30
        while snapshot(root)["head"][0] < start + 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        for i in range(3):
            archives.append(bk.create_backup(root, tmp_path / f"b{i}.tar.gz"))
            time.sleep(0.15)
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert int(out) > 10
    final = snapshot(root)["events"]
    counts = [a.manifest.event_count or 0 for a in archives]
    assert counts == sorted(counts) and counts[0] > start and counts[-1] < len(final)
    for i, info in enumerate(archives):
        manifest = bk.verify_backup(info.path)
        target = build(tmp_path / f"restored{i}", "database")
        rs.restore_backup(target.root, info.path)
        conn = sqlite3.connect(target.root / "database" / "milestones.db")
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            conn.close()
        events = snapshot(target.root)["events"]
        assert ev.verify_chain(events) is None
        assert len(events) == manifest.event_count
        assert events == final[: len(events)]  # a prefix of the live log, hash for hash
        assert events[-1]["hash"] == manifest.last_hash


def test_restore_while_another_process_writes(tmp_path: Path, backend: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer waits for the lock, then carries on from the restored head."""
    monkeypatch.setenv("MILESTONE_LOCK_TIMEOUT", "60")
    p = build(tmp_path / "proj", backend)
    info = bk.create_backup(p.root)
    base = snapshot(p.root)["events"]
    change(tmp_path / "proj")
    stop = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "proj"), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        for _ in range(3):
            rs.restore_backup(p.root, info.path)
            time.sleep(0.1)
    finally:
        stop.touch()
        _out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    events = snapshot(p.root)["events"]
    assert ev.verify_chain(events) is None
    assert events[: len(base)] == base
    assert {e["event_type"] for e in events[len(base):]} <= {"note_added", "task_added"}
    if backend == "file":
        from durability.helpers import assert_consistent

        assert_consistent(p.root)  # log, state.json and the YAML files agree


# ------------------------------------------------- interrupted restores


def test_an_error_mid_restore_undoes_it(tmp_path: Path, backend: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    p = build(tmp_path, backend)
    root = p.root
    info = bk.create_backup(root)
    change(tmp_path)
    state, files = snapshot(root), tree(root)
    real = sw._write_marker
    calls = []

    def failing(root_: Path, text: str | None) -> None:
        calls.append(text)
        if len(calls) == 1:  # the swap is done, the database not yet committed
            raise OSError(28, "No space left on device")
        real(root_, text)

    monkeypatch.setattr(sw, "_write_marker", failing)
    with pytest.raises(OSError, match="No space left"):
        rs.restore_backup(root, info.path)
    monkeypatch.setattr(sw, "_write_marker", real)  # not undo(): the URL stays set
    assert snapshot(root) == state
    now = tree(root)
    pre = [k for k in now if k.endswith("-pre-restore.tar.gz")]
    assert len(pre) == 1  # the safety backup stays, with its system event
    assert {k: v for k, v in now.items() if k not in pre and "system-events" not in k} == \
        {k: v for k, v in files.items() if "system-events" not in k}
    assert not (root / ar.RESTORE_DIR).exists()


@pytest.mark.parametrize(("source", "target"), [("database", "file"), ("file", "database")])
def test_an_error_mid_cross_backend_restore_undoes_it(
        tmp_path: Path, source: str, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    src = build(tmp_path / "src", source)
    archive = bk.create_backup(src.root, tmp_path / "src.tar.gz").path
    dst = build(tmp_path / "dst", target)
    (dst.root / "config" / "team-notes.txt").write_text("only here")  # not in the archive
    state, files = snapshot(dst.root), tree(dst.root)
    real = sw._write_marker
    calls = []

    def failing(root_: Path, text: str | None) -> None:
        calls.append(text)
        if len(calls) == 1:
            raise KeyboardInterrupt  # Ctrl-C, with every directory swapped
        real(root_, text)

    monkeypatch.setattr(sw, "_write_marker", failing)
    with pytest.raises(KeyboardInterrupt):
        rs.restore_backup(dst.root, archive)
    monkeypatch.undo()
    assert snapshot(dst.root) == state
    def data(files: dict[str, str]) -> dict[str, str]:  # the empty .lock may be new
        return {k: v for k, v in files.items()
                if "pre-restore" not in k and "system-events" not in k and k != ".lock"}

    assert data(tree(dst.root)) == data(files)
    assert (dst.root / "config" / "team-notes.txt").read_text() == "only here"
    assert (dst.root / "config" / "storage-backend.txt").read_text().strip() == target
    assert (dst.root / "database" / "milestones.db").exists() == (target == "database")
    assert not (dst.root / ar.RESTORE_DIR).exists()


CRASHER = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from milestones.storage import restore as rs, swap as sw
    root, archive, point = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    if point == "rollback":
        # An error once everything is swapped, then death while undoing it.
        real_marker, real_rename = sw._write_marker, sw.rename_durably
        state = {"failed": False}

        def fail_once(*args):
            if not state["failed"]:
                state["failed"] = True
                raise OSError(5, "I/O error")
            real_marker(*args)

        def rename_then_die(*args):
            if state["failed"]:
                real_rename(*args)
                os._exit(99)
            real_rename(*args)

        sw._write_marker, sw.rename_durably = fail_once, rename_then_die
    else:
        module = rs if point == "_check_staged" else sw  # where the step is looked up
        real = getattr(module, point)

        def die(*args, **kw):
            if point == "_swap_dir":
                real(*args, **kw)  # one directory swapped, the others not
            os._exit(99)

        setattr(module, point, die)
    rs.restore_backup(root, archive, actor="crash@example.com")
""")


@pytest.mark.parametrize(("backend", "point", "finished"), [
    ("file", "_swap_dir", True),  # died mid-swap: the journal finishes it
    ("database", "_write_marker", True),  # died before the database committed
    ("file", "_check_staged", False),  # died while staging: nothing had changed
    ("file", "rollback", False),  # died undoing a failed restore: the undo is finished
    ("database", "rollback", False),
])
def test_a_crash_mid_restore_is_finished_or_forgotten_never_mixed(
        tmp_path: Path, backend: str, point: str, finished: bool) -> None:
    p = build(tmp_path, backend)
    root = p.root
    info = bk.create_backup(root)
    wanted = snapshot(root)
    change(tmp_path)
    moved_on = snapshot(root)
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(root), str(info.path), point],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 99, proc.stderr
    assert (root / ar.RESTORE_DIR).exists()
    assert (root / ar.RESTORE_DIR / "journal.json").exists() == (finished or point == "rollback")
    if point == "rollback":
        assert rs.recover_restore(root) == ["undid a restore that had failed part-way"]
        assert snapshot(root) == moved_on
    elif backend == "file":
        repairs = bk.create_backup(root, tmp_path / "after.tar.gz")  # recovers first
        assert not (root / ar.RESTORE_DIR).exists()
        assert snapshot(root) == (wanted if finished else moved_on)
        assert bk.verify_backup(repairs.path).last_event_id == snapshot(root)["head"][0]
    else:
        done = rs.recover_restore(root)
        assert done == ["finished a restore that was interrupted"]
        assert snapshot(root) == wanted
        conn = sqlite3.connect(root / "database" / "milestones.db")
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
    assert rs.recover_restore(root) == []
    Project.open(tmp_path, **ACTOR).note("carry on")

"""Files stay inside `.milestones/`: no link followed, temp names unpredictable, restore
bounded before unpacking, input files read bounded (issue 12).

Links inside the project are refused with exit 4 naming them, and the file they point
at (outside the project) is left as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from milestones.project import Project
from milestones.storage import backup, fsutil

M = ".milestones"


def cli(cwd: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The real CLI in a process of its own: a regression that blocks (a FIFO, /dev/zero)
    fails on the timeout instead of hanging the suite."""
    return subprocess.run([sys.executable, "-m", "milestones", "-C", str(cwd), *args],
                          capture_output=True, text=True, timeout=timeout)


def refused(result: subprocess.CompletedProcess[str], name: str) -> None:
    assert result.returncode == 4, (result.returncode, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("milestone: error:") and len(err.splitlines()) == 1, err
    assert name in err, err
    assert "Traceback" not in result.stderr


@pytest.fixture(params=["file", "hybrid"])
def proj(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A project (YAML backends: their files are what a link could redirect) with one
    milestone of two tasks."""
    root = tmp_path / "proj"
    root.mkdir()
    Project.init(root, backend=request.param)
    assert cli(root, "plan", "First", "-t", "a", "-t", "b").returncode == 0
    return root


def move_out(proj: Path, rel: str) -> tuple[Path, bytes]:
    """Replace ``.milestones/REL`` by a link to a copy outside the project."""
    inside = proj / M / rel
    outside = proj.parent / ("outside-" + inside.name)
    os.replace(inside, outside)
    inside.symlink_to(outside)
    return outside, outside.read_bytes() if outside.is_file() else b""


def log_lines(proj: Path) -> int:
    return len((proj / M / "logs/progress-events.jsonl").read_bytes().splitlines())


# ------------------------------------------------------------- links inside .milestones/


def test_a_linked_event_log_is_refused_and_its_target_untouched(proj: Path) -> None:
    outside, before = move_out(proj, "logs/progress-events.jsonl")
    result = cli(proj, "plan", "Second")
    refused(result, f"{M}/logs/progress-events.jsonl is a symbolic link")
    assert outside.read_bytes() == before  # today the append followed the link out


def test_a_linked_logs_folder_is_refused(proj: Path) -> None:
    outside, _ = move_out(proj, "logs")
    listing = sorted(p.name for p in outside.iterdir())
    log = (outside / "progress-events.jsonl").read_bytes()
    refused(cli(proj, "plan", "Second"), f"{M}/logs is a symbolic link")
    assert sorted(p.name for p in outside.iterdir()) == listing
    assert (outside / "progress-events.jsonl").read_bytes() == log


def test_a_linked_milestone_file_is_refused(proj: Path) -> None:
    outside, before = move_out(proj, "active/milestone-001.yaml")
    refused(cli(proj, "status"), f"{M}/active/milestone-001.yaml is a symbolic link")
    refused(cli(proj, "task", "start", "task-1"), f"{M}/active/milestone-001.yaml")
    assert outside.read_bytes() == before


def test_a_linked_state_file_is_refused(proj: Path) -> None:
    outside, before = move_out(proj, "logs/state.json")
    lines = log_lines(proj)
    refused(cli(proj, "plan", "Second"), f"{M}/logs/state.json is a symbolic link")
    assert outside.read_bytes() == before
    assert log_lines(proj) == lines  # nothing appended either


def test_a_linked_agent_registry_is_refused(proj: Path) -> None:
    assert cli(proj, "agent", "register", "--name", "w1").returncode == 0
    outside, before = move_out(proj, "agents/agents.json")
    refused(cli(proj, "agent", "register", "--name", "w2"), f"{M}/agents/agents.json")
    assert outside.read_bytes() == before


def test_a_linked_archive_folder_gets_no_rotated_log(proj: Path) -> None:
    config = proj / M / "config/config.yaml"
    config.write_text("logs:\n  rotate_bytes: 1\n")
    outside = proj.parent / "elsewhere"
    outside.mkdir()
    archive = proj / M / "logs/archive"
    archive.rmdir()
    archive.symlink_to(outside)
    # The write is done before the rotation is tried (a failed rotation never fails a
    # commit); the rotation refuses the link, and every read of the archives names it.
    cli(proj, "plan", "Second")
    refused(cli(proj, "log"), f"{M}/logs/archive is a symbolic link")
    refused(cli(proj, "doctor"), f"{M}/logs/archive is a symbolic link")
    assert list(outside.iterdir()) == []


def test_a_linked_lock_file_is_refused(proj: Path) -> None:
    outside = proj.parent / "victim"
    lock = proj / M / ".lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(outside)
    refused(cli(proj, "plan", "Second"), f"{M}/.lock is a symbolic link")
    assert not outside.exists()  # the lock's O_CREAT made no file outside


# ------------------------------------------------------------------------ temp names


def test_temp_names_are_random_and_created_exclusively(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / M / "logs"
    folder.mkdir(parents=True)
    target = folder / "state.json"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    # The name the old code always used, and the first random name, are planted links.
    (folder / f".state.json.tmp-{os.getpid()}").symlink_to(victim)
    planted = fsutil.temp_name(target)
    planted.symlink_to(victim)
    names = iter([planted.name.rsplit("-", 1)[1]])
    real = fsutil._token
    monkeypatch.setattr(fsutil, "_token", lambda: next(names, None) or real())
    fsutil.atomic_write(target, b"{}\n")
    assert target.read_bytes() == b"{}\n"
    assert victim.read_bytes() == b"precious"  # O_EXCL|O_NOFOLLOW: the plant was skipped
    assert len({fsutil.temp_name(target).name for _ in range(50)}) == 50


def test_an_existing_link_at_the_target_is_refused_not_replaced(tmp_path: Path) -> None:
    folder = tmp_path / M / "active"
    folder.mkdir(parents=True)
    (folder / "current.txt").symlink_to(tmp_path / "victim")
    with pytest.raises(fsutil.InvalidInput, match=r"active/current\.txt is a symbolic link"):
        fsutil.atomic_write(folder / "current.txt", b"x")
    assert not (tmp_path / "victim").exists()


# ---------------------------------------------------------------------------- backup


def test_backup_copies_no_file_from_outside_through_a_link(proj: Path) -> None:
    secret = proj.parent / "secret.txt"
    secret.write_text("not the project's")
    (proj / M / "config/notes.yaml").symlink_to(secret)
    refused(cli(proj, "backup"), f"{M}/config/notes.yaml is a symbolic link")
    backups = proj / M / "database/backup"
    assert not backups.exists() or not any(backups.glob("*.tar.gz"))
    assert not any(n.startswith(".backup.tmp-") for n in os.listdir(proj / M))


def test_backup_refuses_a_linked_folder(proj: Path) -> None:
    elsewhere = proj.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.yaml").write_text("a: 1\n")
    (proj / M / "agents").mkdir(exist_ok=True)
    (proj / M / "agents/more").symlink_to(elsewhere)
    refused(cli(proj, "backup"), f"{M}/agents/more is a symbolic link")


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_killed_backups_leftovers_go_at_the_next_command(proj: Path) -> None:
    pid = _dead_pid()
    stage = proj / M / f".backup.tmp-{pid}-abc123"
    (stage / "active").mkdir(parents=True)
    (stage / "active/milestone-001.yaml").write_text("id: milestone-001\n")
    backups = proj / M / "database/backup"
    backups.mkdir(parents=True, exist_ok=True)
    half = backups / f".backup-20260101T000000.000000Z-manual.tar.gz.tmp-{pid}-0f0f"
    half.write_bytes(b"\x1f\x8b half an archive")
    live = proj / M / f".backup.tmp-{os.getpid()}-live"  # a running backup's: kept
    live.mkdir()
    assert cli(proj, "status").returncode == 0
    assert not stage.exists()
    assert live.exists()
    assert cli(proj, "backup").returncode == 0
    assert not half.exists()
    assert len(list(backups.glob("backup-*.tar.gz"))) == 1


def test_a_backup_killed_for_real_leaves_nothing_past_the_next_command(proj: Path) -> None:
    code = (
        "import os, signal, sys\n"
        "from milestones.storage import backup\n"
        "real = backup.write_archive\n"
        "def die(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "backup.write_archive = die\n"
        f"backup.create_backup(__import__('pathlib').Path({str(proj / M)!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -9
    assert any(n.startswith(".backup.tmp-") for n in os.listdir(proj / M))
    assert cli(proj, "status").returncode == 0
    assert not any(n.startswith(".backup.tmp-") for n in os.listdir(proj / M))


# --------------------------------------------------------------------------- restore


def _bomb(path: Path, size: int) -> None:
    """A milestone backup whose manifest and tar header truly declare one member of
    ``size`` zero bytes, compressed to a few MB without ever holding it: the
    compressed form of one MiB of zeros after a full flush repeats as is."""
    zeros = bytes(1 << 20)
    manifest = {
        "format": "milestone-backup", "format_version": 1, "created_at": "2026-01-01T00:00:00Z",
        "reason": "manual", "backend": "file", "milestone_version": "0", "event_count": 0,
        "head": None, "dirs": ["logs"],
        "members": [{"path": "logs/big.bin", "size": size, "sha256": "0" * 64,
                     "mode": 420, "mtime_ns": 0}],
    }
    data = json.dumps(manifest).encode()
    info = tarfile.TarInfo("manifest.json")
    info.size = len(data)
    big = tarfile.TarInfo("logs/big.bin")
    big.size = size
    # The manifest member (header, data, padding), then the big member's header alone.
    prefix = (info.tobuf(tarfile.PAX_FORMAT) + data + bytes(-len(data) % 512)
              + big.tobuf(tarfile.PAX_FORMAT))
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    first = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    with path.open("wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + first)
        for _ in range(size // len(zeros) - 1):
            f.write(block)
        f.write(comp.compress(bytes(1024)) + comp.flush())
        f.write(b"\x00" * 8)  # crc and size: never reached


def test_restore_refuses_a_gzip_bomb_before_unpacking_it(proj: Path) -> None:
    bomb = proj.parent / "bomb.tar.gz"
    _bomb(bomb, 2 * 1024**3)
    assert bomb.stat().st_size < 8 * 1024 * 1024
    before = hashlib.sha256((proj / M / "logs/progress-events.jsonl").read_bytes()).hexdigest()
    result = cli(proj, "restore", str(bomb), "--yes", timeout=20)
    refused(result, "member logs/big.bin declares 2,147,483,648 bytes")
    assert not (proj / M / ".restore").exists()
    after = hashlib.sha256((proj / M / "logs/progress-events.jsonl").read_bytes()).hexdigest()
    assert after == before
    # Checking an archive (`restore` asks first) is bounded the same way.
    with pytest.raises(fsutil.InvalidInput, match="over the"):
        backup.verify_backup(bomb)


def test_restore_bounds_all_members_together(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILESTONE_RESTORE_MAX_BYTES", str(3 * 1024 * 1024))
    bomb = tmp_path / "bomb.tar.gz"
    _bomb(bomb, 4 * 1024 * 1024)
    with pytest.raises(fsutil.InvalidInput, match="over the 3,145,728 bytes"):
        backup.verify_backup(bomb)


# --------------------------------------------------------------------- input files


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    return path


def test_plan_from_dev_zero_is_refused_at_once(proj: Path) -> None:
    refused(cli(proj, "plan", "--from-file", "/dev/zero", timeout=10), "/dev/zero is a device")


def test_plan_from_a_fifo_is_refused_at_once(proj: Path, fifo: Path) -> None:
    refused(cli(proj, "plan", "--from-file", str(fifo), timeout=10), "is a FIFO")


def test_kiro_import_of_a_fifo_is_refused(proj: Path, fifo: Path) -> None:
    refused(cli(proj, "import", "kiro", str(fifo), timeout=10), "is a FIFO")


@pytest.mark.parametrize("kind", ["fifo", "dir"])
def test_kiro_import_refuses_a_spec_file_that_is_no_file(proj: Path, kind: str) -> None:
    spec = proj.parent / "spec"
    spec.mkdir()
    (spec / "requirements.md").write_text("# Requirements\n")
    if kind == "fifo":
        os.mkfifo(spec / "tasks.md")
    else:
        (spec / "tasks.md").mkdir()
    what = "a FIFO" if kind == "fifo" else "a directory"
    refused(cli(proj, "import", "kiro", str(spec), timeout=10), f"tasks.md is {what}")


def test_restore_of_a_fifo_is_refused_at_once(proj: Path, fifo: Path) -> None:
    refused(cli(proj, "restore", str(fifo), "--yes", timeout=10), "is a FIFO")


def test_a_plan_file_may_be_a_link_outside_the_project(proj: Path) -> None:
    real = proj.parent / "plan.yaml"
    real.write_text("title: Linked\ntasks: [one]\n")
    (proj / "plan-link.yaml").symlink_to(real)
    assert cli(proj, "plan", "--from-file", str(proj / "plan-link.yaml")).returncode == 0


def test_a_plan_file_over_the_limit_is_refused_before_reading(proj: Path) -> None:
    big = proj.parent / "big.yaml"
    with big.open("wb") as f:
        f.truncate(11 * 1024 * 1024)  # sparse: no disk, no read
    refused(cli(proj, "plan", "--from-file", str(big)), "over the 10 MB")


# ------------------------------------------------------------------ other backends


def test_a_linked_database_is_refused(tmp_path: Path) -> None:
    Project.init(tmp_path, backend="database")
    assert cli(tmp_path, "plan", "First").returncode == 0
    db = tmp_path / M / "database/milestones.db"
    outside = tmp_path.parent / f"{tmp_path.name}-outside.db"
    os.replace(db, outside)
    db.symlink_to(outside)
    before = outside.read_bytes()
    refused(cli(tmp_path, "plan", "Second"), f"{M}/database/milestones.db is a symbolic link")
    assert outside.read_bytes() == before


def test_a_linked_project_folder_is_refused(tmp_path: Path) -> None:
    """`.milestones` itself a link (a cloned repository can carry one): refused too."""
    real = tmp_path / "real"
    real.mkdir()
    Project.init(real)
    work = tmp_path / "work"
    work.mkdir()
    (work / M).symlink_to(real / M)
    lines = log_lines(real)
    refused(cli(work, "plan", "Second"), f"{M} is a symbolic link")
    assert log_lines(real) == lines


def test_restore_does_not_unpack_through_a_planted_restore_link(proj: Path) -> None:
    assert cli(proj, "backup", "--to", str(proj.parent / "b.tar.gz")).returncode == 0
    outside = proj.parent / "elsewhere"
    outside.mkdir()
    (proj / M / ".restore").symlink_to(outside)
    result = cli(proj, "restore", str(proj.parent / "b.tar.gz"), "--yes")
    refused(result, f"{M}/.restore is a symbolic link")
    assert list(outside.iterdir()) == []


def test_project_detection_skips_a_fifo_named_like_a_manifest(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pyproject.toml")
    code = ("import sys; from milestones.plans.detect import detect_project; "
            "d = detect_project(sys.argv[1]); print(d.to_dict() if hasattr(d, 'to_dict') else d)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert "not a regular file; skipped" in proc.stdout


def test_the_store_level_backup_and_restore_follow_no_link(tmp_path: Path) -> None:
    """`Store.backup`/`restore` (the adapter interface; the CLI uses milestones.ops.backup)."""
    from milestones.storage.file import FileStore

    p, _ = Project.init(tmp_path)
    p.plan("First")
    store = FileStore(tmp_path / M)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    link = tmp_path / M / "config/notes.yaml"
    link.symlink_to(secret)
    with pytest.raises(fsutil.InvalidInput, match=r"config/notes\.yaml is a symbolic link"):
        store.backup(tmp_path / "b.tar.gz")
    link.unlink()
    store.backup(tmp_path / "b.tar.gz")
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("active/milestone-009.yaml")
        info.type = tarfile.SYMTYPE
        info.linkname = "../../secret.txt"
        tar.addfile(info)
    before = sorted(os.listdir(tmp_path / M / "active"))
    with pytest.raises(fsutil.InvalidInput, match="not a regular file"):
        store.restore(evil)
    assert sorted(os.listdir(tmp_path / M / "active")) == before

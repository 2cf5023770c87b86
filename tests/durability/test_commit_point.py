"""The commit point: a write that exits non-zero changed nothing; one that changed
something exits 0 (trouble after the commit point is a warning), and a retry of a
failed write never makes the change twice. Faults are injected at every step of a
write (``MILESTONE_FAULT``, see ``storage.fsutil.fault``) on every backend, and a
real full disk is made with a small tmpfs."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from milestones.project import Project
from milestones.storage.file import FileStore

FAIL, WARN, QUIET = "fail", "warn", "quiet"

# step -> what a write hit by it must do: fail (exit != 0, nothing changed), warn
# (exit 0, the change made, a warning line), quiet (exit 0, the change made).
FILE_STEPS = {
    "log-append": FAIL,
    "log-fsync": FAIL,
    "write:milestone-001.yaml": FAIL,
    "write:state.json": FAIL,
    # A disk that fills up at the YAML file or state.json: the undo needs no space.
    "write:milestone-001.yaml+": FAIL,
    "write:state.json+": FAIL,
    # The events cannot be taken back from the log: the write has happened.
    "write:state.json,log-undo": WARN,
    # The state's journal line (the entries the write changed), before the head.
    "write:state-journal": FAIL,
    "write:state-journal+": FAIL,
    "write:state-journal,log-undo": WARN,
    "write:milestone-001.yaml,log-undo": WARN,
    "resume": WARN,
    "write:session-resume.json": WARN,
    "rotate:marked": WARN,
    "rotate:compressed": WARN,
    "rotate:archived": WARN,
    "rotate:indexed": WARN,
    "rotate:emptied": WARN,
    "metrics": QUIET,
    "scale": QUIET,
}
STEPS = {
    "file": FILE_STEPS,
    "hybrid": {**FILE_STEPS, "index": WARN},
    "database": {
        "db-insert": FAIL,
        "db-commit": FAIL,
        "resume": WARN,
        "backup": WARN,
        "metrics": QUIET,
        "scale": QUIET,
    },
}
CASES = [(b, step, want) for b, steps in STEPS.items() for step, want in steps.items()]


def milestone(cwd: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MILESTONE_FAULT"}
    if fault:
        env["MILESTONE_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "milestones", "-C", str(cwd), *args],
                          capture_output=True, text=True, env=env, timeout=120)


def titles(cwd: Path) -> list[str]:
    proc = milestone(cwd, "show", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    return [t["title"] for t in json.loads(proc.stdout)["milestone"]["tasks"]]


def data(root: Path, backend: str) -> Any:
    """The project's data as it stands: the bytes of every file the file backends keep
    (log, state.json, YAML, current.txt), or the database's rows."""
    if backend == "database":
        conn = sqlite3.connect(root / "database" / "milestones.db")
        try:
            return {t: sorted(map(repr, conn.execute(f"SELECT * FROM {t}")))
                    for t in ("events", "milestones", "tasks", "meta")}
        finally:
            conn.close()
    out = {}
    for rel in ("logs/progress-events.jsonl", "logs/state.json", "active/current.txt"):
        p = root / rel
        out[rel] = p.read_bytes() if p.exists() else None
    out["state"] = FileStore(root).read_stored()  # with its checkpoint and journal
    for folder in ("active", "completed"):
        for p in sorted((root / folder).glob("milestone-*.yaml")):
            out[f"{folder}/{p.name}"] = p.read_bytes()
    return out


def new_project(d: Path, backend: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    Project.init(d, backend=backend)
    proc = milestone(d, "plan", "Alpha", "--task", "one", "--task", "two")
    assert proc.returncode == 0, proc.stderr
    return d


@pytest.mark.parametrize(("backend", "step", "want"), CASES,
                         ids=[f"{b}-{s}" for b, s, _ in CASES])
def test_a_fault_at_every_step_of_a_write(tmp_path: Path, backend: str, step: str,
                                          want: str) -> None:
    proj = new_project(tmp_path / "p", backend)
    root = proj / ".milestones"
    if step.startswith("rotate:"):  # every write rotates the log
        with (root / "config" / "config.yaml").open("a") as f:
            f.write("\nlogs:\n  rotate_bytes: 1\n")
    before = data(root, backend)

    proc = milestone(proj, "task", "add", "1", "Retry me", fault=step)

    if want == FAIL:
        assert proc.returncode == 8, (proc.returncode, proc.stderr)
        assert proc.stderr.startswith("milestone: error: "), proc.stderr
        assert "Traceback" not in proc.stderr
        assert data(root, backend) == before, "a failed write left something behind"
        assert titles(proj) == ["one", "two"]
        assert milestone(proj, "task", "add", "1", "Retry me").returncode == 0  # the retry
    else:
        assert proc.returncode == 0, (proc.returncode, proc.stderr)
        if want == WARN:
            assert "milestone: warning: " in proc.stderr, proc.stderr
        assert "milestone: error" not in proc.stderr, proc.stderr
    # Either way the change is there exactly once, and the project is healthy.
    assert titles(proj) == ["one", "two", "Retry me"]
    doctor = milestone(proj, "doctor")
    assert doctor.returncode == 0, doctor.stdout
    if backend != "database":
        leftovers = [p.name for d in ("active", "logs") for p in (root / d).iterdir()
                     if ".tmp-" in p.name]
        assert not leftovers, leftovers


def test_hybrid_index_behind_after_a_fault_is_rebuilt(tmp_path: Path) -> None:
    """The hybrid index is derived: left behind by a failed update, it catches up."""
    proj = new_project(tmp_path / "p", "hybrid")
    assert milestone(proj, "update", "1", "--tag", "web", fault="index").returncode == 0
    proc = milestone(proj, "list", "--tag", "web", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [m["id"] for m in json.loads(proc.stdout)["milestones"]] == ["milestone-001"]


# ------------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB tmpfs; skipped where mounting is not allowed (not root, a container)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                              capture_output=True, text=True)
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk but for about ``leave`` bytes."""
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as f:
        for chunk in (65536, 4096, 512, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    with filler.open("r+b") as f:  # then give back what is to be left
        size = os.fstat(f.fileno()).st_size
        f.truncate(max(size - leave, 0))
    return filler


@pytest.mark.parametrize("backend", ["file", "hybrid", "database"])
def test_full_disk_never_half_applies_a_write(small_disk: Path, backend: str) -> None:
    proj = new_project(small_disk / "proj", backend)
    root = proj / ".milestones"
    milestone(proj, "task", "add", "1", "warm-up")  # metrics, resume record, index exist
    outcomes = []
    expected = ["one", "two", "warm-up"]
    # From no space at all to enough for the write, in steps that land the failure
    # on each file in turn (the log, the YAML file, state.json, the database's WAL).
    steps = range(0, 80 * 1024, 4096) if backend == "database" else range(0, 24 * 1024, 1024)
    for leave in steps:
        title = f"T{leave}"
        filler = fill(small_disk, leave)
        before = data(root, backend)
        proc = milestone(proj, "task", "add", "1", title)
        after = data(root, backend)
        filler.unlink()  # space is freed
        outcomes.append(proc.returncode)
        assert "Traceback" not in proc.stderr, proc.stderr
        if proc.returncode != 0:
            assert proc.returncode == 8, (leave, proc.stderr)
            assert after == before, f"{leave} bytes free: a failed write left something"
            assert titles(proj) == expected, leave  # nothing of it comes back later
            retry = milestone(proj, "task", "add", "1", title)
            assert retry.returncode == 0, retry.stderr
        expected.append(title)
        assert titles(proj) == expected, (leave, proc.returncode, proc.stderr)
    assert 8 in outcomes and 0 in outcomes, outcomes  # both sides of the line were seen
    assert milestone(proj, "doctor").returncode == 0
    if backend != "database":
        assert not [p for p in root.rglob("*") if ".tmp-" in p.name]
        events = [e for e in FileStore(root).events() if e["event_type"] == "task_added"]
        assert len(events) == len(expected) - 2  # one event per task added, none twice


MOVES = [
    # current.txt: the marker file of the current milestone
    (("current", "2"), "write:current.txt"),
    (("current", "2"), "write:state.json+"),
    # archive: the file moves from active/ to completed/ (a write and a removal)
    (("archive", "1"), "write:milestone-001.yaml"),
    (("archive", "1"), "write:state.json"),
    (("archive", "1"), "write:state.json+"),
]


@pytest.mark.parametrize("backend", ["file", "hybrid"])
@pytest.mark.parametrize(("args", "step"), MOVES, ids=[f"{a[0]}-{s}" for a, s in MOVES])
def test_a_failed_move_or_current_change_is_undone(tmp_path: Path, backend: str,
                                                   args: tuple[str, ...], step: str) -> None:
    proj = new_project(tmp_path / "p", backend)
    root = proj / ".milestones"
    for cmd in (("plan", "Beta"), ("task", "done", "1/1"), ("task", "done", "1/2")):
        assert milestone(proj, *cmd).returncode == 0
    before = data(root, backend)
    proc = milestone(proj, *args, fault=step)
    assert proc.returncode == 8, proc.stderr
    assert data(root, backend) == before
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]
    assert milestone(proj, *args).returncode == 0  # the retry does it, once
    assert milestone(proj, "doctor").returncode == 0

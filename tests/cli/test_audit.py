"""`milestone audit`: the whole hash chain verified (archives, live log, every backend),
the first tampered, missing or reordered event named FILE:LINE with its id (exit 8),
and otherwise who changed what, per actor."""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import os
import pwd
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import Runner
from milestones.project import Project

LIVE = ".milestones/logs/progress-events.jsonl"
SECURITY = ".milestones/logs/security-events.jsonl"
ALICE, BOB = "alice@example.com", "bob@example.com"


def as_user(monkeypatch: pytest.MonkeyPatch, who: str) -> None:
    monkeypatch.setenv("MILESTONE_USER", who)


def history(tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch,
            rotate: int | None = None, rounds: int = 1) -> Runner:
    """A small history by two actors: alice plans and finishes, bob starts and notes."""
    as_user(monkeypatch, ALICE)
    Project.init(tmp_path, backend=backend)
    if rotate is not None:
        (tmp_path / ".milestones/config/config.yaml").write_text(
            f"logs:\n  rotate_bytes: {rotate}\n", encoding="utf-8")
    run = Runner(tmp_path)
    run.runner = CliRunner(mix_stderr=False)  # the error line is on stderr, alone
    for i in range(rounds):
        as_user(monkeypatch, ALICE)
        run.ok("plan", f"M{i}", "--task", "one", "--task", "two")
        run.ok("task", "done", f"{i + 1}/1")
        as_user(monkeypatch, BOB)
        run.ok("task", "start", f"{i + 1}/2")
        run.ok("note", f"bob was here {i}")
    return run


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under .milestones/ and its content's hash (audit must change none; the
    command timings of performance/ get a line from every command). The earlier
    commands ran in this process: their SQLite connections are closed first (closing
    the last one checkpoints its WAL into the database file, whenever it is collected)."""
    gc.collect()
    out = {}
    for path in sorted((root / ".milestones").rglob("*")):
        if path.is_file() and not path.name.endswith(("-wal", "-shm")) \
                and path.parent.name != "performance":
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def unchanged(root: Path, before: dict[str, str]) -> None:
    after = tree_digest(root)
    assert after == before, sorted(k for k in {*before, *after} if before.get(k) != after.get(k))


def audit_fails(run: Runner, tmp_path: Path) -> dict[str, Any]:
    """Run `audit` (text, then --json) on a tampered log: exit 8, one line, nothing
    changed; returns the JSON error's details."""
    before = tree_digest(tmp_path)
    text = run("audit")
    assert text.exit_code == 8, text.output
    assert text.stdout == ""
    assert len(text.stderr.strip().splitlines()) == 1, text.stderr
    result = run("audit", "--json")
    assert result.exit_code == 8
    error = json.loads(result.stderr)["error"]
    assert error["code"] == 8 and error["kind"] == "storage_error"
    details: dict[str, Any] = error["details"]
    where = f"{details['file']}:{details['line']}: event #{details['event_id']}"
    assert where in text.stderr and where in error["message"]
    unchanged(tmp_path, before)  # the audit changed nothing
    return details


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def flip_byte(line: bytes) -> bytes:
    """One byte of the event's content changed, the JSON still valid: a title's letter."""
    at = line.index(b'"title":"') + len(b'"title":"')
    return line[:at] + bytes([line[at] ^ 0x01]) + line[at + 1:]


def event_id(line: bytes) -> int:
    return int(json.loads(line)["event_id"])


# Each tampering: (edit of a file's lines, the index of the line reported, the kind).
def one_byte(lines: list[bytes]) -> tuple[list[bytes], int, str]:
    at = next(i for i, x in enumerate(lines) if b'"title":"' in x and i > 0)
    lines[at] = flip_byte(lines[at])
    return lines, at, "hash_mismatch"


def removed(lines: list[bytes]) -> tuple[list[bytes], int, str]:
    del lines[1]
    return lines, 1, "sequence_gap"


def swapped(lines: list[bytes]) -> tuple[list[bytes], int, str]:
    lines[1], lines[2] = lines[2], lines[1]
    return lines, 1, "out_of_order"


TAMPERINGS = [one_byte, removed, swapped]


@pytest.mark.parametrize("backend", ["file", "hybrid"])
@pytest.mark.parametrize("tamper", TAMPERINGS, ids=lambda f: f.__name__)
def test_tampered_live_log_is_named_file_line_and_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str,
        tamper: Callable[[list[bytes]], tuple[list[bytes], int, str]]) -> None:
    run = history(tmp_path, backend, monkeypatch, rounds=2)
    assert run("audit").exit_code == 0
    live = tmp_path / LIVE
    lines, at, kind = tamper(lines_of(live))
    live.write_bytes(b"".join(lines))
    details = audit_fails(run, tmp_path)
    assert details == {**details, "file": LIVE, "line": at + 1,
                       "event_id": event_id(lines[at]), "kind": kind}


@pytest.mark.parametrize("backend", ["file", "hybrid"])
@pytest.mark.parametrize("tamper", TAMPERINGS, ids=lambda f: f.__name__)
def test_tampered_rotated_archive_is_named_file_line_and_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str,
        tamper: Callable[[list[bytes]], tuple[list[bytes], int, str]]) -> None:
    run = history(tmp_path, backend, monkeypatch, rotate=2048, rounds=6)
    archives = sorted((tmp_path / ".milestones/logs/archive").glob("*.jsonl.gz"))
    assert len(archives) >= 2 and (tmp_path / LIVE).stat().st_size > 0
    clean = run.json("audit")
    assert clean["chain"]["files"][-1] == LIVE and len(clean["chain"]["files"]) >= 3
    old = archives[0]  # the oldest archive: its events are the oldest of the log
    lines, at, kind = tamper(gzip.decompress(old.read_bytes()).splitlines(keepends=True))
    old.write_bytes(gzip.compress(b"".join(lines), mtime=0))
    details = audit_fails(run, tmp_path)
    label = f".milestones/logs/archive/{old.name}"
    assert details == {**details, "file": label, "line": at + 1,
                       "event_id": event_id(lines[at]), "kind": kind}


def test_archive_and_live_log_must_link_across_the_rotation(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The newest archive's last event cut off: the live log's first event no longer
    links, reported at the live log's line 1."""
    run = history(tmp_path, "file", monkeypatch, rotate=2048, rounds=6)
    newest = sorted((tmp_path / ".milestones/logs/archive").glob("*.jsonl.gz"))[-1]
    lines = gzip.decompress(newest.read_bytes()).splitlines(keepends=True)
    newest.write_bytes(gzip.compress(b"".join(lines[:-1]), mtime=0))
    details = audit_fails(run, tmp_path)
    first = lines_of(tmp_path / LIVE)[0]
    assert details == {**details, "file": LIVE, "line": 1, "event_id": event_id(first),
                       "kind": "sequence_gap"}


def test_events_cut_from_the_end_are_missing(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    run = history(tmp_path, "file", monkeypatch)
    live = tmp_path / LIVE
    lines = lines_of(live)
    live.write_bytes(b"".join(lines[:-1]))
    details = audit_fails(run, tmp_path)
    assert details["kind"] == "truncated" and details["event_id"] == event_id(lines[-1])
    assert details["line"] == len(lines)


@pytest.mark.parametrize("sql, row, kind", [
    ("UPDATE events SET body = replace(body, '\"M1\"', '\"M2\"') WHERE event_id = {n}",
     0, "hash_mismatch"),
    ("DELETE FROM events WHERE event_id = {n}", 0, "sequence_gap"),
    ("UPDATE events SET event_id = -event_id WHERE event_id IN ({n}, {n} + 1);"
     "UPDATE events SET event_id = -event_id + 1 WHERE event_id = -{n};"
     "UPDATE events SET event_id = -event_id - 1 WHERE event_id = -{n} - 1", 0,
     "out_of_order"),
])
def test_tampered_database_events_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            sql: str, row: int, kind: str) -> None:
    """On the database backend the events table is the log: a changed body, a removed
    row and two rows swapped are each reported at the row and event id."""
    run = history(tmp_path, "database", monkeypatch, rounds=2)
    assert run("audit").exit_code == 0
    db = tmp_path / ".milestones/database/milestones.db"
    conn = sqlite3.connect(db)
    n = conn.execute("SELECT event_id FROM events WHERE body LIKE '%\"M1\"%' "
                     "ORDER BY event_id LIMIT 1").fetchone()[0]
    with conn:
        conn.executescript(sql.format(n=n))
    conn.close()
    details = audit_fails(run, tmp_path)
    expected_id = {"hash_mismatch": n, "sequence_gap": n + 1, "out_of_order": n + 1}[kind]
    assert details == {**details, "file": ".milestones/database/milestones.db (events table)",
                       "line": n, "event_id": expected_id, "kind": kind}


def test_summary_per_actor_with_hand_edit_and_denials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = history(tmp_path, "file", monkeypatch)
    # A hand edit (recorded by the next command, run by alice), then a synthetic denial.
    path = tmp_path / ".milestones/active/milestone-001.yaml"
    path.write_text(path.read_text("utf-8").replace("title: M0", "title: M0 edited"), "utf-8")
    as_user(monkeypatch, ALICE)
    run.ok("status")
    (tmp_path / SECURITY).write_text(
        json.dumps({"ts": "2026-01-02T03:04:05Z", "type": "access_denied", "actor": BOB,
                    "role": "viewer", "needed": "delete", "operation": "milestone.delete",
                    "target": "milestone-001"}) + "\n"
        + "{not json\n"
        + json.dumps({"ts": "2026-01-02T03:04:06Z", "type": "access_denied",
                      "actor": "mallory@example.com", "role": "<none>", "needed": "update",
                      "operation": "task.complete", "target": "1/2"}) + "\n",
        encoding="utf-8")
    before = tree_digest(tmp_path)
    data = run.json("audit")
    unchanged(tmp_path, before)
    by = {a["actor"]: a for a in data["actors"]}
    assert set(by) == {ALICE, BOB, "mallory@example.com"}
    alice, bob = by[ALICE], by[BOB]
    assert alice["by_type"] == {"project_initialized": 1, "milestone_created": 1,
                                "task_completed": 1, "milestone_started": 1,
                                "manual_edit_detected": 1}
    assert alice["events"] == 5
    me = pwd.getpwuid(os.getuid()).pw_name
    assert alice["manual_edits"] == {"count": 1, "os_users": {me: 1}}
    assert bob["by_type"] == {"task_started": 1, "note_added": 1} and bob["events"] == 2
    assert bob["access_denied"]["count"] == 1
    assert bob["access_denied"]["operations"] == {"milestone.delete": 1}
    assert by["mallory@example.com"]["events"] == 0
    assert by["mallory@example.com"]["access_denied"]["count"] == 1
    events = [json.loads(x) for x in lines_of(tmp_path / LIVE)]
    assert alice["first"] == events[0]["timestamp"]
    assert bob["last"] == max(e["timestamp"] for e in events if e["actor"] == BOB)
    assert data["totals"] == {"events": 7, "manual_edits": 1, "os_users": {me: 1},
                              "access_denied": 2}
    assert data["warnings"] == [f"{SECURITY}:2: not a security record (a JSON object with a "
                                '"type"); skipped']
    assert data["chain"] == {**data["chain"], "ok": True, "events": 7, "last_event_id": 7}
    text = run.ok("audit")
    assert f"{ALICE}: 5 events" in text and f"hand edits: 1 (OS user: {me} 1)" in text
    assert "access denied: 1 (milestone.delete 1)" in text and "warning:" in text

    only_bob = run.json("audit", "--actor", BOB)
    assert [a["actor"] for a in only_bob["actors"]] == [BOB]
    assert only_bob["totals"]["events"] == 2 and only_bob["totals"]["access_denied"] == 1
    later = run.json("audit", "--since", "2000-01-01")
    assert later["totals"]["access_denied"] == 2 and later["totals"]["events"] == 7
    none = run.json("audit", "--since", "1m", "--actor", "mallory@example.com")
    assert none["totals"] == {"events": 0, "manual_edits": 0, "os_users": {},
                              "access_denied": 0}
    bad = run("audit", "--since", "yesterday")
    assert bad.exit_code == 4 and "--since 'yesterday' is not a time" in bad.stderr


@pytest.mark.parametrize("backend", ["file", "hybrid", "database"])
def test_clean_history_on_every_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        backend: str) -> None:
    run = history(tmp_path, backend, monkeypatch, rounds=2)
    before = tree_digest(tmp_path)
    data = run.json("audit")
    unchanged(tmp_path, before)
    by = {a["actor"]: a for a in data["actors"]}
    assert by[BOB]["by_type"] == {"task_started": 2, "note_added": 2}
    assert by[ALICE]["by_type"]["task_completed"] == 2
    assert data["chain"]["events"] == sum(a["events"] for a in data["actors"])
    assert data["totals"]["access_denied"] == 0 and data["warnings"] == []


CRASH = """
import os, sys
from milestones.storage import logrotation
from milestones.cli import cli

def die_at(name):
    if name == sys.argv[1]:
        os._exit(99)

logrotation._after_step = die_at
cli.main(args=["-C", *sys.argv[2:]], prog_name="milestone")
"""


def test_interrupted_rotation_repeats_are_not_tampering_but_a_changed_repeat_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rotation cut short after the archive was written leaves its events in the live
    log too: the audit reads each once; one of those repeats changed is reported."""
    import subprocess
    import sys

    run = history(tmp_path, "file", monkeypatch, rotate=2048, rounds=3)
    (tmp_path / ".milestones/config/config.yaml").write_text("logs:\n  rotate_bytes: 1\n",
                                                             encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", CRASH, "indexed", str(tmp_path), "note", "x"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 99, proc.stderr
    newest = sorted((tmp_path / ".milestones/logs/archive").glob("*.jsonl.gz"))[-1]
    repeated = gzip.decompress(newest.read_bytes()).splitlines(keepends=True)
    live = tmp_path / LIVE
    lines = lines_of(live)
    assert lines == repeated  # the live log still holds the archived events
    data = run.json("audit")
    assert data["chain"]["events"] == event_id(lines[-1])  # each event once
    assert lines_of(live) == repeated  # left for the next write (or doctor) to finish
    lines[2] = lines[2].replace(b'"timestamp":"2', b'"timestamp":"1')
    live.write_bytes(b"".join(lines))
    details = audit_fails(run, tmp_path)
    assert details == {**details, "file": LIVE, "line": 3, "event_id": event_id(lines[2]),
                       "kind": "hash_mismatch"}


def test_audit_records_no_pending_hand_edit(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit is a read of the log only: a hand edit not yet recorded stays pending
    (the next other command records it), and the log is as it was."""
    run = history(tmp_path, "file", monkeypatch)
    path = tmp_path / ".milestones/active/milestone-001.yaml"
    path.write_text(path.read_text("utf-8").replace("title: M0", "title: M0 again"), "utf-8")
    before = tree_digest(tmp_path)
    data = run.json("audit")
    unchanged(tmp_path, before)
    assert data["totals"]["manual_edits"] == 0
    run.ok("status")
    assert run.json("audit")["totals"]["manual_edits"] == 1

"""A database file damaged on disk is a storage error (exit 8, one line), never a traceback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from milestones.cli import cli
from milestones.project import Project


def _damage(db: Path, how: str) -> None:
    raw = bytearray(db.read_bytes())
    if how == "header":
        raw[:16] = b"not a database!!"
    elif how == "schema":  # the page holding the schema, scrambled
        raw[100:600] = bytes(500)
    else:  # cut short
        raw = raw[: len(raw) // 3]
    db.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["header", "schema", "cut"])
@pytest.mark.parametrize("args", [("status",), ("list", "--json"), ("note", "x"),
                                  ("task", "start", "1/1")])
def test_a_damaged_database_is_a_storage_error(tmp_path: Path, how: str,
                                              args: tuple[str, ...]) -> None:
    p, _ = Project.init(tmp_path, backend="database")
    p.plan("Alpha", tasks=["one", "two"])
    p.store.close()  # type: ignore[attr-defined]
    db = tmp_path / ".milestones" / "database" / "milestones.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    _damage(db, how)
    damaged = db.read_bytes()
    result = CliRunner(mix_stderr=False).invoke(cli, ["-C", str(tmp_path), *args])
    assert result.exit_code == 8, (result.stdout, result.stderr, result.exception)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    if "--json" in args:
        error = json.loads(result.stderr)["error"]
        assert (error["code"], error["kind"]) == (8, "storage_error")
        assert "milestone doctor" in error["hint"]
    else:
        assert result.stderr.startswith("milestone: error: "), result.stderr
        assert "milestone doctor" in result.stderr
    assert db.read_bytes() == damaged


@pytest.mark.parametrize("backend", ["file", "hybrid", "database"])
def test_a_damaged_resume_record_is_rebuilt_by_the_next_change(tmp_path: Path,
                                                               backend: str) -> None:
    """The session-resume record is derived (rewritten after every change; notes are in
    the log): damaged, it reads as none and the next change writes it whole again."""
    p, _ = Project.init(tmp_path, backend=backend)
    p.plan("Alpha", tasks=["one"])
    if backend == "database":
        p.store.close()  # type: ignore[attr-defined]
        with sqlite3.connect(tmp_path / ".milestones" / "database" / "milestones.db") as conn:
            conn.execute("UPDATE resume SET data = '{not json'")
        conn.close()
    else:
        (tmp_path / ".milestones" / "logs" / "session-resume.json").write_text("{not json")
    runner = CliRunner(mix_stderr=False)
    for args in (("resume",), ("note", "after the damage"), ("resume", "--json")):
        result = runner.invoke(cli, ["-C", str(tmp_path), *args])
        assert result.exit_code == 0, (args, result.stderr, result.exception)
    assert json.loads(result.stdout)["current_milestone"] == "milestone-001"


@pytest.mark.parametrize(("sql", "args"), [
    ("UPDATE events SET body = 'not json' WHERE event_id = 2", ("log",)),
    ("UPDATE events SET body = '[1, 2]' WHERE event_id = 2", ("log", "--json")),
    ("UPDATE tasks SET data = 'x'", ("status",)),
])
def test_a_damaged_row_is_a_storage_error(tmp_path: Path, sql: str,
                                          args: tuple[str, ...]) -> None:
    """A row changed outside milestone (an event's body, a task's data) is named as
    damage, exit 8, never a TypeError from deep inside a read."""
    p, _ = Project.init(tmp_path, backend="database")
    p.plan("Alpha", tasks=["one", "two"])
    p.start_task("milestone-001/task-1")
    p.store.close()  # type: ignore[attr-defined]
    with sqlite3.connect(tmp_path / ".milestones" / "database" / "milestones.db") as conn:
        conn.execute(sql)
    conn.close()
    result = CliRunner(mix_stderr=False).invoke(cli, ["-C", str(tmp_path), *args])
    assert result.exit_code == 8, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stderr and "milestone doctor" in result.stderr

"""Random damage to the real files of a project: never a traceback, never a change elsewhere.

A project is built once per backend through the library; each example copies it,
damages one of its files at random (a byte flipped, a cut, a line deleted, doubled
or swapped, a value replaced by odd YAML, deep nesting, a huge number), then runs
the commands a person or an agent would. Each may succeed, refuse the damaged file
as invalid input (4) or report damaged storage (8) — `validate` may also report
what it found (5) — but none may end in a traceback, and none may change a file the
damage did not touch (the event log may only grow).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prop_strategies import examples

from milestones.agents.coord import Agents
from milestones.cli import cli
from milestones.project import Project

COMMANDS = [
    ("status", "--json"),
    ("list", "--all", "--ui", "simple"),
    ("show", "1", "--ui", "rich"),
    ("next", "--json"),
    ("log", "--limit", "5"),
    ("agent", "list", "--json"),
    ("validate",),
    ("doctor",),
    ("note", "after the damage"),
    ("task", "start", "1/2"),
]
ALLOWED = {0, 4, 8}
# validate reports what it finds (5); a damaged file may no longer hold the task or
# milestone a command names (3), or hold it in a state the command cannot move (5).
ALLOWED_BY_COMMAND = {"validate": ALLOWED | {5}, "task": ALLOWED | {3, 5}, "show": ALLOWED | {3}}

YAML_TARGETS = ["active/milestone-001.yaml", "active/milestone-002.yaml",
                "logs/progress-events.jsonl", "logs/state.json", "config/config.yaml",
                "active/current.txt", "agents/agents.json", "agents/messages.json"]
DATABASE_TARGETS = ["database/milestones.db", "config/config.yaml",
                    "config/storage-backend.txt"]

ODD_VALUES = [b"~", b"null", b"[]", b"{}", b"9" * 400, b"1e400", b".nan", b"-.inf",
              b"9999-12-31", b"0000-01-01", b"!!python/object:os.system", b"*alias",
              b"&a [*a, *a]", b"\"\\x1b[31m\"", b"'[/x]'", b"\xff\xfe", b"\x00",
              b"[" * 1000, b"- " * 500, b"{a: " * 300, b"\"\\ud800\"", b"yes", b"-1"]


def _build(directory: Path, backend: str) -> None:
    project, _ = Project.init(directory, backend=backend, actor="ann@example.com",
                              session_id="s1")
    project.plan("Alpha", tasks=[{"title": "Write"}, {"title": "Test", "depends_on": ["1"]},
                                 {"title": "Ship"}], due="2026-12-31")
    project.plan("Beta", tasks=["One", "Two"], depends_on=["milestone-001"])
    project.start_task("milestone-001/task-1")
    project.block_task("milestone-002/task-1", "waiting for Alpha")
    project.note("a note")
    Agents(project).register(name="w1", skills=["python"])
    project.set_current("milestone-001")
    # Every example copies these files and draws its damage from their bytes: they must
    # not change under the test (a database's write-ahead log checkpointed later would).
    close = getattr(project.store, "close", None)
    if close is not None:
        close()
        import sqlite3

        conn = sqlite3.connect(directory / ".milestones" / "database" / "milestones.db")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()


@pytest.fixture(scope="module", params=["file", "hybrid", "database"])
def template(request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    base = Path(tempfile.mkdtemp(prefix="ms-mutate-"))
    _build(base, request.param)
    yield request.param, base
    shutil.rmtree(base, ignore_errors=True)


@st.composite
def mutations(draw: st.DrawFn, raw: bytes) -> bytes:
    """``raw`` damaged in one of the ways a crash, a bad merge or a careless hand can."""
    lines = raw.split(b"\n")
    kind = draw(st.sampled_from(["flip", "cut", "insert", "delete-line", "double-line",
                                 "swap-lines", "value", "empty"]))
    if kind == "empty" or not raw:
        return b""
    at = draw(st.integers(0, max(0, len(raw) - 1)))
    if kind == "flip":
        return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1:]
    if kind == "cut":
        return raw[:at]
    if kind == "insert":
        return raw[:at] + draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "delete-line":
        return b"\n".join(lines[:i] + lines[i + 1:])
    if kind == "double-line":
        return b"\n".join(lines[:i + 1] + lines[i:])
    if kind == "swap-lines":
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
        return b"\n".join(lines)
    # "value": the text after the first ': ' of a line becomes an odd value
    line = lines[i]
    head, sep, _ = line.partition(b": ")
    lines[i] = head + (sep or b": ") + draw(st.sampled_from(ODD_VALUES))
    return b"\n".join(lines)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


# Files a command may rewrite without it being a change to the data: derived ones
# (rebuilt from the log), per-machine memos, and SQLite's side files.
DERIVED = ("logs/state.json", "logs/state-", "logs/session-resume.json", "performance/",
           "database/index.db", "database/cache.db", "logs/system-events.jsonl",
           "logs/not-read.json")


def _derived(rel: str) -> bool:
    return rel.startswith(DERIVED) or rel.endswith(("-wal", "-shm", "-journal"))


@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_files_are_refused_or_reported_never_a_crash(
    template: tuple[str, Path], data: st.DataObject
) -> None:
    backend, base = template
    work = Path(tempfile.mkdtemp(prefix="ms-mutated-"))
    try:
        shutil.copytree(base, work, dirs_exist_ok=True)
        root = work / ".milestones"
        targets = DATABASE_TARGETS if backend == "database" else YAML_TARGETS
        target = data.draw(st.sampled_from([t for t in targets if (root / t).exists()]))
        damaged = data.draw(mutations((root / target).read_bytes()))
        (root / target).write_bytes(damaged)
        runner = CliRunner(mix_stderr=False)
        for args in COMMANDS:
            before = _files(root)
            result = runner.invoke(cli, ["-C", str(work), *args])
            where = f"{backend}: {target} damaged; milestone {' '.join(args)}"
            exc = result.exception
            if exc is not None and not isinstance(exc, SystemExit):
                raise AssertionError(f"{where}: raised {exc!r}") from exc
            assert "Traceback" not in result.stderr, (where, result.stderr)
            allowed = ALLOWED_BY_COMMAND.get(args[0], ALLOWED)
            assert result.exit_code in allowed, (where, result.exit_code, result.stderr,
                                                 result.stdout[-300:])
            if result.exit_code != 0 and args[0] not in ("validate", "doctor"):  # reports
                if "--json" in args:  # the error as the JSON object scripts read
                    assert json.loads(result.stderr)["error"]["code"] == result.exit_code
                else:
                    assert result.stderr.startswith("milestone: error: "), (where,
                                                                            result.stderr)
            after = _files(root)
            for rel, raw in before.items():
                if rel == target or _derived(rel):
                    continue
                now = after.get(rel)
                if rel == "logs/progress-events.jsonl":
                    assert now is not None and now.startswith(raw), (
                        where, "the event log was rewritten, not appended to")
                elif rel.startswith(("active/", "completed/")) and result.exit_code == 0:
                    continue  # a write the damage allowed may rewrite a milestone it changed
                else:
                    assert now == raw, (where, f"{rel} changed")
    finally:
        shutil.rmtree(work, ignore_errors=True)

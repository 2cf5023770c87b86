"""Bad input: one clear line on stderr, the documented exit code, and every file as it was.

Each case runs one command that must fail and checks three things:

* the exit code is the documented one (3 not found, 4 invalid input, 5 validation
  failed / illegal transition / dependency, 8 storage error);
* stderr is exactly one line, ``milestone: error: <what> — <hint>``, naming the
  file (with ``:line`` where there is one), field or reference at fault;
* a snapshot of every file and directory in the project (path -> type, mode,
  inode, size, mtime and bytes) is identical before and after.

Hand-edited files are checked on the next command, so for those cases the file
the test broke differs from the original: the snapshot is taken after breaking
it, and nothing else may differ from the project as it was before the edit.

The read-only case really runs as root too: root ignores permission bits, so
there the CLI runs in a subprocess as ``nobody`` (and, separately, as root
without the capabilities that override file permissions).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import rich
import ruamel.yaml
import yaml
from click.testing import CliRunner, Result

import milestones
from milestones.cli import cli
from milestones.project import Project
from milestones.storage.yamlio import MAX_FILE_BYTES

NOT_FOUND, INVALID, VALIDATION, STORAGE = 3, 4, 5, 8
PREFIX = "milestone: error: "
M1 = ".milestones/active/milestone-001.yaml"


# ------------------------------------------------------------------ helpers

Entry = tuple[int, int, int, int, bytes | None]  # mode, inode, size, mtime_ns, bytes


def snapshot(root: Path) -> dict[str, Entry]:
    """Every file and directory under ``root`` (itself included): path -> what it is.

    Except ``.milestones/performance/``: every command, failed ones too, appends its
    wall time to ``metrics.jsonl`` there (scale detection); that is not project data.
    A SQLite database is compared by its content (its SQL dump), not its bytes, which a
    checkpoint of the write-ahead log rewrites without changing any data; its folder,
    its shared-memory and write-ahead files, which readers open and close, and the
    hybrid query cache (results keyed by the log head, so never stale) are left out.
    """
    out: dict[str, Entry] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        rel = path.relative_to(root).as_posix()
        if (rel.startswith((".milestones/performance", ".milestones/database/cache.db"))
                or rel.endswith(("-wal", "-shm", "-journal"))):
            continue
        st = path.lstat()
        if rel == ".milestones/database":
            continue
        if rel.endswith(".db"):
            out[rel] = (st.st_mode, st.st_ino, 0, 0, _dump(path))
            continue
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        out[rel] = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, data)
    return out


def _dump(path: Path) -> bytes:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump()).encode("utf-8")
    finally:
        conn.close()


def changed(before: dict[str, Entry], after: dict[str, Entry]) -> dict[str, str]:
    """Paths added, removed or different in any way -> how (not diffed: files can be 10 MB)."""
    fields = ("mode", "inode", "size", "mtime", "bytes")
    out = {}
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path), after.get(path)
        if old is None or new is None:
            out[path] = "added" if old is None else "removed"
        elif old != new:
            out[path] = ", ".join(f for f, a, b in zip(fields, old, new, strict=True) if a != b)
    return out


def assert_untouched(root: Path, before: dict[str, Entry]) -> None:
    diff = changed(before, snapshot(root))
    assert not diff, f"the failed command changed files: {diff}"


def assert_error(code: int, returncode: int, stdout: str, stderr: str, *names: str) -> str:
    """The documented exit code and one line ``milestone: error: <what> — <hint>``."""
    assert returncode == code, f"exit {returncode}, wanted {code}; stderr: {stderr!r}"
    assert stdout == "", f"a failed command printed to stdout: {stdout!r}"
    assert stderr.startswith(PREFIX), stderr
    assert stderr.endswith("\n") and stderr.count("\n") == 1, f"not one line: {stderr!r}"
    what, sep, hint = stderr[len(PREFIX) : -1].partition(" — ")
    assert what.strip(), stderr
    assert sep and hint.strip(), f"no hint on how to fix it: {stderr!r}"
    for name in names:
        assert name in stderr, f"{name!r} not named in {stderr!r}"
    return stderr


def check(result: Result, code: int, *names: str) -> str:
    return assert_error(code, result.exit_code, result.stdout, result.stderr, *names)


class Cli:
    """The CLI in-process, with stderr apart from stdout (click 8.1 needs mix_stderr=False)."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.runner = CliRunner(mix_stderr=False)

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(cli, ["-C", str(self.cwd), *args], catch_exceptions=False)

    def ok(self, *args: str) -> Result:
        result = self(*args)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        return result


def seed(c: Cli) -> None:
    """milestone-001 Alpha (task-2 waits on task-1), milestone-002 Beta (task-1 done)."""
    c.ok("plan", "Alpha", "--task", "Write parser")
    c.ok("task", "add", "1", "Test parser", "--depends-on", "1")
    c.ok("task", "add", "1", "Docs")
    c.ok("plan", "Beta", "--start", "2026-11-01", "--due", "2026-12-01",
         "--task", "Ship", "--task", "Announce")
    c.ok("task", "done", "2/1")
    c.ok("current", "1")
    c.ok("status")  # any lazy bookkeeping of a read happens here, not in the test


def _seeded(directory: Path, backend: str) -> Cli:
    Project.init(directory, backend=backend)
    c = Cli(directory)
    seed(c)
    return c


@pytest.fixture(params=["file", "hybrid", "database", "postgres"])
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    """The seeded project, on each backend: bad input is refused alike on all."""
    return _seeded(tmp_path, request.param)


@pytest.fixture(params=["file", "hybrid"])
def yaml_seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    """The seeded project on each backend whose milestone files people edit."""
    return _seeded(tmp_path, request.param)


# ------------------------------------------------------------ no project


@pytest.mark.parametrize(
    "args",
    [("status",), ("plan", "Alpha"), ("task", "start", "1/1"), ("show", "1"), ("note", "hi")],
    ids=lambda a: " ".join(a),
)
def test_missing_project(tmp_path: Path, args: tuple[str, ...]) -> None:
    assert not [p for p in tmp_path.parents if (p / ".milestones").is_dir()], "a parent is one"
    (tmp_path / "README").write_text("not a milestone project\n")
    before = snapshot(tmp_path)
    check(Cli(tmp_path)(*args), NOT_FOUND, "no .milestones/", str(tmp_path), "run `milestone init`")
    assert_untouched(tmp_path, before)
    assert not (tmp_path / ".milestones").exists()


def test_missing_project_named_by_milestone_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILESTONE_DIR", str(tmp_path / "elsewhere"))
    before = snapshot(tmp_path)
    check(Cli(tmp_path)("status"), NOT_FOUND, "elsewhere/.milestones", "run `milestone init`")
    assert_untouched(tmp_path, before)


# ------------------------------------------------- bad arguments on the CLI

LONG = "x" * 201
CLI_CASES = [
    # unknown references, with the closest matches suggested
    ("unknown-milestone", ["show", "9"], NOT_FOUND,
     ["unknown milestone '9' (milestone-009)", "did you mean", "milestone-001 (Alpha)"]),
    ("unknown-milestone-by-title", ["status", "alph"], NOT_FOUND,
     ["unknown milestone 'alph'", "did you mean", "milestone-001 (Alpha)"]),
    ("unknown-task", ["task", "start", "1/9"], NOT_FOUND,
     ["unknown task '1/9' in milestone-001", "did you mean milestone-001/task-"]),
    ("unknown-task-current-milestone", ["task", "done", "7"], NOT_FOUND,
     ["unknown task '7' in milestone-001", "did you mean"]),
    ("unknown-milestone-of-task", ["task", "done", "7/1"], NOT_FOUND,
     ["unknown milestone '7' (milestone-007) in task reference '7/1'", "did you mean"]),
    ("unknown-milestone-update", ["update", "7", "--title", "Gamma"], NOT_FOUND,
     ["unknown milestone '7'", "did you mean", "milestone-001 (Alpha)"]),
    ("unknown-milestone-delete", ["delete", "7", "--yes"], NOT_FOUND, ["unknown milestone '7'"]),
    ("unknown-milestone-add-task", ["task", "add", "8", "Review"], NOT_FOUND,
     ["unknown milestone '8'"]),
    # self and missing dependencies
    ("self-dependency-new-task", ["task", "add", "1", "Review", "--depends-on", "4"], VALIDATION,
     ["milestone-001/task-4 cannot depend on itself", "remove that dependency"]),
    ("self-dependency-edit", ["task", "edit", "1/3", "--depends-on", "3"], VALIDATION,
     ["milestone-001/task-3 cannot depend on itself"]),
    ("self-dependency-milestone", ["update", "1", "--depends-on", "1"], VALIDATION,
     ["milestone-001 cannot depend on itself"]),
    ("missing-task-dependency", ["task", "add", "1", "Review", "--depends-on", "9"], VALIDATION,
     ["milestone-001/task-4 depends on milestone-001/task-9, which does not exist",
      "tasks in milestone-001: task-1, task-2, task-3"]),
    ("missing-task-in-other-milestone", ["task", "edit", "1/3", "--depends-on", "2/5"],
     VALIDATION, ["depends on milestone-002/task-5, which does not exist",
                  "tasks in milestone-002: task-1, task-2"]),
    ("missing-milestone-of-dependency", ["task", "add", "1", "Review", "--depends-on", "7/1"],
     VALIDATION, ["milestone-001/task-4 depends on unknown milestone '7' (milestone-007)",
                  "did you mean", "milestone-001 (Alpha)"]),
    ("missing-milestone-dependency-plan", ["plan", "Gamma", "--depends-on", "7"], VALIDATION,
     ["milestone-003 depends on unknown milestone '7'", "did you mean"]),
    ("missing-milestone-dependency-update", ["update", "2", "--depends-on", "7"], VALIDATION,
     ["milestone-002 depends on unknown milestone '7'"]),
    ("dependency-cycle", ["task", "edit", "1/1", "--depends-on", "2"], VALIDATION,
     ["dependency cycle", "1/1 → ", "1/2"]),
    # invalid or impossible dates, due before start
    ("impossible-due-date", ["plan", "Gamma", "--due", "2026-02-30"], INVALID,
     ["due date '2026-02-30' is not a real date", "2026-02-28"]),
    ("impossible-start-month", ["plan", "Gamma", "--start", "2026-13-01"], INVALID,
     ["start date '2026-13-01' is not a real date"]),
    ("impossible-date-update", ["update", "1", "--due", "2026-04-31"], INVALID,
     ["due date '2026-04-31' is not a real date"]),
    ("not-a-date", ["plan", "Gamma", "--due", "next friday"], INVALID,
     ["due date 'next friday' is not a date", "YYYY-MM-DD"]),
    ("short-date", ["update", "1", "--start", "2026-2-3"], INVALID,
     ["start date '2026-2-3' is not a date"]),
    ("due-before-start-plan", ["plan", "Gamma", "--start", "2026-05-01", "--due", "2026-04-01"],
     INVALID, ["milestone 'Gamma' is due (2026-04-01) before it starts (2026-05-01)",
               "move --due after --start"]),
    ("due-before-start-update", ["update", "1", "--start", "2026-05-01", "--due", "2026-04-01"],
     INVALID, ["milestone-001 is due (2026-04-01) before it starts (2026-05-01)"]),
    ("start-after-stored-due", ["update", "2", "--start", "2026-12-24"], INVALID,
     ["milestone-002 is due (2026-12-01) before it starts (2026-12-24)"]),
    # empty and over-long titles
    ("no-title", ["plan"], INVALID, ["missing TITLE", 'milestone plan "Public beta"']),
    ("empty-title", ["plan", ""], INVALID, ["missing TITLE"]),
    ("blank-title", ["plan", "   "], INVALID, ["milestone title is empty"]),
    ("empty-task-title", ["task", "add", "1", ""], INVALID, ["task title is empty"]),
    ("empty-title-task-edit", ["task", "edit", "1/1", "--title", ""], INVALID,
     ["task title is empty"]),
    ("blank-title-update", ["update", "1", "--title", " \t "], INVALID,
     ["milestone title is empty"]),
    ("long-title", ["plan", LONG], INVALID,
     ["milestone title is 201 characters long", "keep it to 200 or fewer"]),
    ("long-task-title", ["task", "add", "1", LONG], INVALID, ["task title is 201 characters"]),
    ("long-title-update", ["update", "1", "--title", "z" * 300], INVALID,
     ["milestone title is 300 characters"]),
    ("long-title-task-edit", ["task", "edit", "1/1", "--title", "é" * 201], INVALID,
     ["task title is 201 characters"]),
    # control characters
    ("bell-in-title", ["plan", "Ga\x07mma"], INVALID,
     ["milestone title contains the control character '\\x07'", "remove it"]),
    ("escape-sequence", ["task", "add", "1", "\x1b[31mred"], INVALID,
     ["task title contains the control character '\\x1b'"]),
    ("newline-in-title", ["task", "add", "1", "two\nlines"], INVALID,
     ["task title contains the control character '\\n'", "one plain line"]),
    ("tab-in-title", ["update", "1", "--title", "a\tb"], INVALID, ["control character '\\t'"]),
    ("delete-char", ["task", "edit", "1/1", "--title", "a\x7f"], INVALID,
     ["control character '\\x7f'"]),
    ("c1-csi", ["plan", "a\x9b31mb"], INVALID, ["control character '\\x9b'"]),
    ("nul-in-reason", ["task", "block", "1/1", "--reason", "a\x00b"], INVALID,
     ["block reason contains the control character '\\x00'"]),
    ("escape-in-note", ["note", "a\x1b]0;owned\x07"], INVALID,
     ["note contains the control character '\\x1b'"]),
    ("escape-in-tag", ["plan", "Gamma", "--tag", "a\x1bb"], INVALID,
     ["tag contains the control character"]),
    # ids that try to become paths
    ("path-show", ["show", "../x"], NOT_FOUND,
     ["unknown milestone '..' in task reference '../x'", "known: milestone-001"]),
    ("path-show-absolute", ["show", "/etc/passwd"], NOT_FOUND,
     ["in task reference '/etc/passwd'"]),
    ("path-milestone", ["status", "../../etc"], NOT_FOUND, ["unknown milestone '../../etc'"]),
    ("path-task", ["task", "start", "1/../x"], NOT_FOUND,
     ["unknown task '1/../x' in milestone-001"]),
    ("path-bare-task", ["task", "done", "../x"], NOT_FOUND, ["in task reference '../x'"]),
    ("path-current", ["current", "../x"], NOT_FOUND, ["unknown milestone '../x'"]),
    ("path-update", ["update", "../x", "--title", "Gamma"], NOT_FOUND,
     ["unknown milestone '../x'"]),
    ("path-archive", ["archive", "../../x"], NOT_FOUND, ["unknown milestone '../../x'"]),
    ("path-delete", ["delete", "milestone-001/../../x", "--yes"], NOT_FOUND,
     ["unknown milestone 'milestone-001/../../x'"]),
    ("path-dependency", ["task", "add", "1", "Review", "--depends-on", "../x"], VALIDATION,
     ["milestone-001/task-4: unknown dependency '../x'", "use TASK or MILESTONE/TASK"]),
    ("path-milestone-dependency", ["plan", "Gamma", "--depends-on", "../x"], VALIDATION,
     ["milestone-003 depends on unknown milestone '../x'"]),
    ("path-log-filter", ["log", "--milestone", "../x"], INVALID,
     ["'../x' is not a milestone reference"]),
    # illegal transitions
    ("done-with-unmet-dependency", ["task", "done", "1/2"], VALIDATION,
     ["cannot complete milestone-001/task-2: waiting on milestone-001/task-1", "--force"]),
    ("start-with-unmet-dependency", ["task", "start", "1/2"], VALIDATION,
     ["cannot start milestone-001/task-2: waiting on milestone-001/task-1"]),
    ("stop-todo", ["task", "stop", "1/1"], VALIDATION,
     ["cannot stop milestone-001/task-1: it is todo", "start it first"]),
    ("reopen-todo", ["task", "reopen", "1/1"], VALIDATION,
     ["cannot reopen milestone-001/task-1: it is todo", "only a done or skipped task"]),
    ("unblock-todo", ["task", "unblock", "1/3"], VALIDATION,
     ["cannot unblock milestone-001/task-3: it is todo"]),
    ("done-twice", ["task", "done", "2/1"], VALIDATION,
     ["cannot complete milestone-002/task-1: it is done", "`task reopen` it first"]),
    ("start-done", ["task", "start", "2/1"], VALIDATION,
     ["cannot start milestone-002/task-1: it is done"]),
    ("progress-on-done", ["task", "progress", "2/1", "50"], VALIDATION,
     ["cannot set progress of milestone-002/task-1: it is done"]),
    ("complete-milestone-with-open-tasks", ["update", "1", "--status", "completed"], VALIDATION,
     ["cannot mark milestone-001 completed: it has open tasks"]),
    ("archive-open-milestone", ["archive", "1"], VALIDATION,
     ["cannot archive milestone-001: it is planned"]),
]


@pytest.mark.parametrize(
    ("args", "code", "names"), [pytest.param(*c[1:], id=c[0]) for c in CLI_CASES]
)
def test_bad_argument(seeded: Cli, args: list[str], code: int, names: list[str]) -> None:
    before = snapshot(seeded.cwd)
    check(seeded(*args), code, *names)
    assert_untouched(seeded.cwd, before)


def test_titles_of_exactly_200_characters_are_fine(seeded: Cli) -> None:
    seeded.ok("plan", "é" * 200)
    seeded.ok("task", "add", "1", "t" * 200)


def test_usage_errors_exit_2_and_change_nothing(seeded: Cli) -> None:
    before = snapshot(seeded.cwd)
    for args in (("task", "progress", "1/1", "150"), ("plan", "Gamma", "--priority", "urgent"),
                 ("task", "frobnicate", "1/1")):
        result = seeded(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stdout == ""
        # One line, as every other error: what is wrong, and where to read more.
        assert result.stderr.startswith("milestone: error: "), result.stderr
        assert result.stderr.count("\n") == 1 and "-h`" in result.stderr, result.stderr
    assert_untouched(seeded.cwd, before)


# ------------------------------------------------------- hand-edited files

# Breaks a file under .milestones/; returns the file it wrote and what the error must name.
Edit = Callable[[Path], tuple[str, list[str]]]


def _append(text: bytes | str, names: Callable[[int], list[str]]) -> Edit:
    """Append ``text`` to milestone-001.yaml; ``names(n)`` gets the first new line's number."""

    def edit(root: Path) -> tuple[str, list[str]]:
        path = root / "active" / "milestone-001.yaml"
        raw = path.read_bytes()
        assert raw.endswith(b"\n")
        path.write_bytes(raw + (text.encode() if isinstance(text, str) else text))
        return M1, names(raw.count(b"\n") + 1)

    return edit


def _replace(old: str, new: str, names: Callable[[int], list[str]]) -> Edit:
    """Replace one line's text ``old`` in milestone-001.yaml; ``names(n)`` gets its number."""

    def edit(root: Path) -> tuple[str, list[str]]:
        path = root / "active" / "milestone-001.yaml"
        text = path.read_text("utf-8")
        assert text.count(old) == 1, (old, text)
        line = text[: text.index(old)].count("\n") + 1
        path.write_text(text.replace(old, new), "utf-8")
        return M1, names(line)

    return edit


def _write(rel: str, content: bytes, names: list[str]) -> Edit:
    def edit(root: Path) -> tuple[str, list[str]]:
        (root / rel).write_bytes(content)
        return f".milestones/{rel}", names

    return edit


def _copy(src: str, dest: str, names: list[str]) -> Edit:
    def edit(root: Path) -> tuple[str, list[str]]:
        shutil.copy2(root / src, root / dest)
        return f".milestones/{dest}", names

    return edit


def _laughs() -> str:
    """The billion laughs: nine levels of nine aliases each."""
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


HAND_EDITS: list[tuple[str, Edit]] = [
    ("malformed-yaml", _append("notes: a: b\n", lambda n: [
        f"{M1}:{n}:", "mapping values are not allowed", "fix the YAML syntax"])),
    ("tab-indentation", _append("\tnotes: x\n", lambda n: [
        f"{M1}:{n}:1:", "(a tab)", "indent YAML with spaces, not tabs"])),
    ("unclosed-flow", _replace("title: Alpha", "title: [Alpha", lambda n: [
        f"{M1}:{n}:", "did not find expected ',' or ']'"])),
    ("not-utf8", _append(b"description: caf\xe9\n", lambda n: [
        f"{M1}:{n}: not UTF-8 (byte 0xe9)", "save the file as UTF-8"])),
    ("utf16-file", _write("active/milestone-001.yaml",
                          "id: milestone-001\ntitle: Alpha\n".encode("utf-16"),
                          [f"{M1}:1: not UTF-8 (byte 0xff)"])),
    ("not-a-mapping", _write("active/milestone-001.yaml", b"- just\n- a list\n",
                             [f"{M1}: expected a mapping of milestone fields"])),
    ("duplicate-key", _append("title: Again\n", lambda n: [
        f"{M1}:{n}:1: duplicate key 'title'", "keep one of them"])),
    ("duplicate-key-in-task", _replace("  title: Docs\n", "  title: Docs\n  title: Docs 2\n",
                                       lambda n: [f"{M1}:{n + 1}:3: duplicate key 'title'"])),
    # (edits change the file's size: a same-size edit within one mtime tick goes unseen)
    ("duplicate-task-id", _replace("- id: task-3", "- id:  task-1", lambda n: [
        M1, "duplicate task id task-1", "give each task its own id"])),
    ("non-text-key", _append("? [a, b]\n: c\n", lambda n: [
        f"{M1}:{n}:", "mapping keys must be plain text"])),
    ("anchor-and-alias", _append("x: &a [1]\ny: *a\n", lambda n: [
        f"{M1}:{n}:4: YAML anchors and aliases are not allowed", "write the value out in full"])),
    ("alias-bomb", _append(_laughs(), lambda n: [f"{M1}:{n}:", "anchors and aliases"])),
    ("over-10-mb", _append("description: " + "x" * MAX_FILE_BYTES + "\n", lambda n: [
        M1, "over the 10 MB", "split it into smaller files"])),
    ("impossible-date", _append("due_date: 2026-02-30\n", lambda n: [
        f"{M1}:{n}:11: '2026-02-30' is not a real date", "2026-02-28"])),
    ("impossible-quoted-date", _append("due_date: '2026-02-30'\n", lambda n: [
        M1, "due_date '2026-02-30' is not a real date"])),
    ("impossible-timestamp", _append("completed_at: 2026-11-25T25:00:00Z\n", lambda n: [
        f"{M1}:{n}:", "'2026-11-25T25:00:00Z' is not a real date"])),
    ("not-a-timestamp", _append("completed_at: !!timestamp soon\n", lambda n: [
        f"{M1}:{n}:", "'soon' is not a real date"])),
    ("due-before-start", _append("start_date: 2026-05-01\ndue_date: 2026-04-01\n", lambda n: [
        M1, "is due (2026-04-01) before it starts (2026-05-01)"])),
    ("empty-title", _replace("title: Alpha", "title: ''", lambda n: [M1, "title is empty"])),
    ("missing-title", _replace("title: Alpha\n", "", lambda n: [M1, "title is missing"])),
    ("long-title", _replace("title: Alpha", "title: " + LONG, lambda n: [
        M1, "title is 201 characters long", "200 or fewer"])),
    ("control-char-title", _replace("title: Alpha", 'title: "Al\\x1bpha"', lambda n: [
        M1, "title contains the control character '\\x1b'"])),
    ("newline-in-task-title", _replace("  title: Docs", '  title: "Do\\ncs"', lambda n: [
        M1, "task-3 title contains the control character '\\n'"])),
    ("milestone-id-as-path", _replace("id: milestone-001", "id: ../../etc/passwd", lambda n: [
        M1, "id '../../etc/passwd' does not match the file name", "set `id: milestone-001`"])),
    ("task-id-as-path", _replace("- id: task-3", "- id: ../x", lambda n: [
        M1, "id '../x' is not a task id", "task ids look like task-2"])),
    ("milestone-dependency-as-path", _append("depends_on: [../x]\n", lambda n: [
        M1, "depends_on '../x' is not a milestone id"])),
    ("task-dependency-as-path", _replace("  - task-1", "  - ../../x", lambda n: [
        M1, "task-2: depends_on '../../x' is not a task reference"])),
    ("file-name-and-id-differ", _copy("active/milestone-001.yaml", "active/milestone-007.yaml", [
        ".milestones/active/milestone-007.yaml: id 'milestone-001' does not match the file name",
        "set `id: milestone-007`"])),
    ("same-milestone-twice", _copy("active/milestone-001.yaml", "completed/milestone-001.yaml", [
        "milestone-001 exists twice", M1, ".milestones/completed/milestone-001.yaml",
        "delete one of them"])),
    ("current-marker-as-path", _write("active/current.txt", b"../../etc/passwd\n", [
        ".milestones/active/current.txt: '../../etc/passwd' is not a milestone",
        "write a milestone id there"])),
    ("current-marker-unknown", _write("active/current.txt", b"milestone-009\n", [
        ".milestones/active/current.txt: 'milestone-009' is not a milestone"])),
]


@pytest.mark.parametrize("command", [("status",), ("task", "start", "1/1")], ids=["read", "write"])
@pytest.mark.parametrize("edit", [pytest.param(e, id=i) for i, e in HAND_EDITS])
def test_bad_hand_edit(yaml_seeded: Cli, edit: Edit, command: tuple[str, ...]) -> None:
    original = snapshot(yaml_seeded.cwd)
    target, names = edit(yaml_seeded.cwd / ".milestones")
    broken = snapshot(yaml_seeded.cwd)
    check(yaml_seeded(*command), INVALID, *names)
    # Nothing at all changed, the broken file included (it is not "repaired")...
    assert_untouched(yaml_seeded.cwd, broken)
    # ...so apart from the file the test broke (and its folder's mtime, when the
    # file is new) the project is exactly as it was before the edit.
    diff = changed(original, snapshot(yaml_seeded.cwd))
    assert target in diff
    allowed = {target: diff[target], str(Path(target).parent): "mtime"}
    assert {p: how for p, how in diff.items() if allowed.get(p) != how} == {}


def test_fixing_the_hand_edit_lets_commands_run_again(yaml_seeded: Cli) -> None:
    path = yaml_seeded.cwd / M1
    good = path.read_bytes()
    path.write_bytes(good + b"title: Again\n")
    check(yaml_seeded("status"), INVALID, f"{M1}:")
    path.write_bytes(good)
    yaml_seeded.ok("task", "start", "1/1")


# ----------------------------------------------------------------- plan files


def _plan(name: str, content: bytes, code: int, names: Callable[[str], list[str]]) -> Any:
    return pytest.param(name, content, code, names, id=name)


PLAN_CASES = [
    _plan("plan.yaml", b"title: [Gamma\n", INVALID,
          lambda p: [f"{p}:1:", "did not find expected ',' or ']'"]),
    _plan("plan.yaml", b"title: Gamma\ndescription: caf\xe9\n", INVALID,
          lambda p: [f"{p}:2: not UTF-8"]),
    _plan("plan.md", b"# Gamma\n\n- [ ] caf\xe9\n", INVALID, lambda p: [f"{p}:3: not UTF-8"]),
    _plan("plan.yaml", b"title: Gamma\ntitle: Delta\n", INVALID,
          lambda p: [f"{p}:2:1: duplicate key 'title'"]),
    _plan("plan.yaml", b"title: &t Gamma\ndescription: *t\n", INVALID,
          lambda p: [f"{p}:1:8: YAML anchors and aliases"]),
    _plan("plan.yaml", b"title: Gamma\ndescription: " + b"x" * MAX_FILE_BYTES + b"\n", INVALID,
          lambda p: [p, "over the 10 MB"]),
    _plan("plan.yaml", b"title: Gamma\ndue: 2026-02-30\n", INVALID,
          lambda p: [f"{p}:2:6: '2026-02-30' is not a real date"]),
    _plan("plan.yaml", b"title: Gamma\nstart: 2026-05-01\ndue: 2026-04-01\n", INVALID,
          lambda p: ["is due (2026-04-01) before it starts (2026-05-01)"]),
    _plan("plan.yaml", b"title: ''\n", INVALID, lambda p: ["milestone title is empty"]),
    _plan("plan.yaml", b"title: " + LONG.encode() + b"\n", INVALID,
          lambda p: ["milestone title is 201 characters long"]),
    _plan("plan.yaml", b'title: "Gam\\x1bma"\n', INVALID,
          lambda p: ["milestone title contains the control character '\\x1b'"]),
    _plan("plan.yaml", b"id: ../x\ntitle: Gamma\n", INVALID,
          lambda p: [f"{p}: milestone #1 has unknown field(s) id"]),
    _plan("plan.yaml", b"title: Gamma\ntasks:\n- title: A\n  depends_on: [task-1]\n",
          VALIDATION, lambda p: ["milestone-003/task-1 cannot depend on itself"]),
    _plan("plan.yaml", b"title: Gamma\ntasks:\n- title: A\n  depends_on: [../x]\n",
          VALIDATION, lambda p: ["milestone-003/task-1: unknown dependency '../x'"]),
    _plan("plan.yaml", b"title: Gamma\ndepends_on: [7]\n", VALIDATION,
          lambda p: ["milestone-003 depends on unknown milestone '7'"]),
    _plan("plan.md", b"# Gamma\n\n- [ ] A after 5\n", VALIDATION,
          lambda p: ["milestone-003/task-1 depends on milestone-003/task-5, which does not exist"]),
]


@pytest.mark.parametrize(("name", "content", "code", "names"), PLAN_CASES)
def test_bad_plan_file(
    seeded: Cli, name: str, content: bytes, code: int, names: Callable[[str], list[str]]
) -> None:
    path = seeded.cwd / name
    path.write_bytes(content)
    before = snapshot(seeded.cwd)
    check(seeded("plan", "--from-file", str(path)), code, *names(str(path)))
    assert_untouched(seeded.cwd, before)


def test_missing_plan_file(seeded: Cli) -> None:
    before = snapshot(seeded.cwd)
    missing = seeded.cwd / "nope.yaml"
    check(seeded("plan", "--from-file", str(missing)), INVALID, f"plan file {missing}",
          "check the path")
    assert_untouched(seeded.cwd, before)


# ---------------------------------------------------------- read-only project

SRC = str(Path(milestones.__file__).resolve().parents[1])
# Where this test run's dependencies live (the venv's site-packages, normally).
SITE_PACKAGES = os.pathsep.join(dict.fromkeys(
    str(Path(m.__file__ or "").resolve().parents[n])
    for m, n in ((click, 1), (yaml, 1), (rich, 1), (ruamel.yaml, 2))
))
# -I -S: nothing from the environment or the interpreter's own site-packages; the
# package and its dependencies come from this checkout and this venv only.
_PATHS = (
    "import os, site, sys; sys.path.insert(0, sys.argv[1]); "
    "[site.addsitedir(d) for d in sys.argv[2].split(os.pathsep)]; "
)
LAUNCH = _PATHS + "from milestones.cli import main; main(sys.argv[3:])"
PROBE = (
    _PATHS
    + f"assert sys.version_info[:2] == {tuple(sys.version_info[:2])!r}, sys.version; "
    + "import milestones.cli, yaml, ruamel.yaml, click, rich"
)
NOBODY = 65534
PR_CAPBSET_DROP = 24
# CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: what lets root ignore modes.
DAC_CAPS = (1, 2, 3)

Runner = Callable[[Path, list[str]], subprocess.CompletedProcess[str]]


def _env(home: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        "MILESTONE_USER": "tester@example.com",
        "MILESTONE_SESSION_ID": "test-session",
    }


def _nobody_python() -> str:
    """An interpreter nobody can run that imports milestones from this checkout and venv.

    The venv's python is often a symlink into a 0700 home (pyenv under /root); a
    system python of the same version loads the venv's packages just as well.
    """
    v = sys.version_info
    candidates = [sys.executable, shutil.which(f"python{v.major}.{v.minor}", path="/usr/bin"),
                  shutil.which(f"python{v.major}.{v.minor}", path="/usr/local/bin")]
    tried = []
    for exe in dict.fromkeys(c for c in candidates if c):
        try:
            probe = subprocess.run(
                [exe, "-I", "-S", "-c", PROBE, SRC, SITE_PACKAGES],
                user=NOBODY, group=NOBODY, extra_groups=[], env=_env(Path("/tmp")),
                cwd="/", capture_output=True, text=True, timeout=60, check=False,
            )
        except OSError as exc:
            tried.append(f"{exe}: {exc}")
            continue
        if probe.returncode == 0:
            return exe
        tried.append(f"{exe}: {probe.stderr.strip().splitlines()[-1:]}")
    pytest.fail(
        "no Python interpreter that user nobody (65534) can run and import milestones with; "
        f"make {SRC} and {SITE_PACKAGES} (and the interpreter) world-readable. Tried: {tried}"
    )


def _drop_dac_caps() -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork

    def preexec() -> None:
        for cap in DAC_CAPS:
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap})")

    return preexec


def _runner(mode: str) -> Runner:
    """Run the CLI in a subprocess that the permission bits really apply to."""
    kw: dict[str, Any] = {}
    exe = sys.executable
    if mode == "nobody":
        exe = _nobody_python()
        kw = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    elif mode == "root-without-dac-override":
        kw = {"preexec_fn": _drop_dac_caps()}

    def run(cwd: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [exe, "-I", "-S", "-c", LAUNCH, SRC, SITE_PACKAGES, "-C", str(cwd), *args],
            cwd=cwd, env=_env(cwd), capture_output=True, text=True, timeout=120, check=False,
            **kw,
        )

    return run


def _set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        if writable:
            path.chmod(mode | stat.S_IWUSR)
        else:
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A 0755 directory under /tmp that another user can reach (tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="milestone-readonly-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        with contextlib.suppress(OSError):
            _set_writable(base, True)
        shutil.rmtree(base, ignore_errors=True)


MODES = ["nobody", "root-without-dac-override"] if os.geteuid() == 0 else ["user"]


@pytest.mark.parametrize("mode", MODES)
def test_read_only_project(shared_dir: Path, mode: str) -> None:
    project = shared_dir / "project"
    project.mkdir()
    c = Cli(project)
    c.ok("init")
    c.ok("plan", "Alpha", "--task", "Write parser", "--task", "Test parser")
    c.ok("status")
    empty = shared_dir / "empty"
    empty.mkdir()
    _set_writable(shared_dir, False)
    run = _runner(mode)
    before = snapshot(shared_dir)
    log = project / ".milestones" / "logs" / "progress-events.jsonl"

    for args in (["task", "start", "1/1"], ["plan", "Beta"], ["note", "hello"],
                 ["update", "1", "--title", "Gamma"]):
        r = run(project, args)
        assert_error(STORAGE, r.returncode, r.stdout, r.stderr,
                     f"cannot append to {log}", "Permission denied",
                     "check the directory's permissions")
    r = run(empty, ["init"])
    assert_error(STORAGE, r.returncode, r.stdout, r.stderr,
                 f"cannot create {empty / '.milestones'}", "Permission denied")
    # Reading a read-only project works, and writes nothing either.
    r = run(project, ["status", "--json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["milestones"][0]["title"] == "Alpha"
    assert_untouched(shared_dir, before)

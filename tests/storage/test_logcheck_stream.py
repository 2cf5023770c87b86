"""``check_log`` reads the log as a stream (one archive at a time, the live log line by
line) and gives the checks and events the whole-file reading gave, on a healthy log and
on every kind of damage it names; with a sink, the same events go to the sink."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from milestones.errors import StorageError
from milestones.model import events as ev
from milestones.project import Project
from milestones.storage import fsutil
from milestones.storage.fsutil import loads_json
from milestones.storage.logcheck import check, check_log
from milestones.storage.logfiles import LogFiles, Segment, read_gzip

ACTOR = "tester@example.com"


def segments_read_whole(log_files: LogFiles, root: Path) -> list[Segment]:
    """Every file of the log read whole, as ``LogFiles.segments`` did."""
    out: list[Segment] = []
    for seq, path in log_files.archives():
        label = f".milestones/{path.relative_to(root).as_posix()}"
        try:
            out.append(Segment(seq, path, label, read_gzip(path)))
        except StorageError as exc:
            out.append(Segment(seq, path, label, None, exc.message[len(str(path)) + 2:]))
    label = f".milestones/{log_files.live.relative_to(root).as_posix()}"
    try:
        out.append(Segment(0, log_files.live, label, fsutil.read_bytes(log_files.live)))
    except FileNotFoundError:
        out.append(Segment(0, log_files.live, label, None, "is missing"))
    return out


def check_log_as_it_was(store: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Check the raw log line by line, across the rotated archives and the live log;
    returns (checks, the events that parsed): the code before the log was streamed."""
    path = getattr(store, "log_path", None)
    checks: list[dict[str, Any]] = []
    if path is None:
        events = list(store.events())
        bad = ev.verify_chain(events)
        checks.append(
            check(
                "hash chain",
                bad is None,
                "valid" if bad is None else f"event #{bad[0] + 1}: {bad[1]}",
            )
        )
        return checks, events
    log_files = getattr(store, "log_files", None)
    if log_files is None:
        log_files = LogFiles(path)
    segments = segments_read_whole(log_files, store.root)
    live = segments[-1]
    if live.raw is None:
        checks.append(check("event log", False, f"{path} is missing"))
        return checks, []
    parsed: list[dict[str, Any]] = []
    where: list[tuple[str, int]] = []  # (file, line) of each parsed event
    unreadable = torn = repeated = None
    previous: dict[int, Any] = {}  # the previous file's event hashes, by id
    for seg in segments:
        if seg.raw is None:
            unreadable = f"{seg.label}: {seg.error}"
            break
        lines = seg.raw.split(b"\n")
        body = lines[:-1]
        if lines[-1] != b"":
            if seg.archive:
                unreadable = f"{seg.label}:{len(lines)}: torn last line in an archive"
            else:
                torn = f"{seg.label}:{len(lines)}: torn last line (an interrupted append)"
        hashes: dict[int, Any] = {}
        skipped: list[int] = []
        prefix = True  # still at the file's start, where repeats of the last file may be
        for no, line in enumerate(body, 1):
            if not line.strip():
                continue
            try:
                event = loads_json(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                unreadable = f"{seg.label}:{no}: not a JSON event"
                break
            eid, digest = event.get("event_id"), event.get("hash")
            if prefix and isinstance(eid, int) and isinstance(digest, str) and (
                previous.get(eid) == digest
            ):
                skipped.append(eid)  # an interrupted rotation: already in the archive
                continue
            prefix = False
            parsed.append(event)
            where.append((seg.label, no))
            if isinstance(eid, int):
                hashes[eid] = event.get("hash")
        if skipped:
            repeated = (
                f"{seg.label}:1: repeats events #{skipped[0]}..#{skipped[-1]} of the last "
                "archive (an interrupted log rotation; `milestone doctor --repair` finishes it)"
            )
        if unreadable:
            break
        previous = hashes
    counted = f"{len(parsed)} event{'' if len(parsed) == 1 else 's'}"
    if len(segments) > 1:
        counted += f" in {len(segments)} files"
    checks.append(check("event log readable", unreadable is None, unreadable or counted))
    checks.append(check("event log complete", torn is None, torn or "every line is whole"))
    bad = ev.verify_chain(parsed)
    if bad is None:
        detail = f"valid through event #{parsed[-1]['event_id']}" if parsed else "empty log"
    else:
        label, line = where[bad[0]]
        detail = f"{label}:{line}: {bad[1]}"
    checks.append(check("hash chain", bad is None, detail))
    if len(segments) > 1 or log_files.index_path.exists():
        problems = log_files.check_index(
            [(s.seq, s.label, None if s.raw is None else log_files.describe(s.seq, s.raw))
             for s in segments if s.archive]) + ([repeated] if repeated else [])
        archives = len(segments) - 1
        checks.append(
            check(
                "log archives",
                not problems,
                f"{archives} archive{'s' if archives != 1 else ''}, indexed"
                if not problems
                else problems[0] + (f" (and {len(problems) - 1} more)" if problems[1:] else ""),
            )
        )
    return checks, parsed


def build(tmp: Path, backend: str, rotate: int | None) -> Project:
    Project.init(tmp, backend=backend, actor=ACTOR, session_id="s1")
    if rotate is not None:
        (tmp / ".milestones" / "config" / "config.yaml").write_text(
            f"logs:\n  rotate_bytes: {rotate}\n", encoding="utf-8")
    p = Project.open(tmp, actor=ACTOR, session_id="s1")
    for i in range(6):
        mid = p.plan(f"M{i}", tasks=["one", "two"]).id
        p.start_task(f"{mid}/task-1")
        p.complete_task(f"{mid}/task-1")
    return p


def live(p: Project) -> Path:
    return p.root / "logs" / "progress-events.jsonl"


def archive(p: Project, n: int = 0) -> Path:
    return sorted((p.root / "logs" / "archive").glob("*.jsonl.gz"))[n]


def edit_live(fn: Callable[[list[bytes]], list[bytes]]) -> Callable[[Project], None]:
    def damage(p: Project) -> None:
        lines = live(p).read_bytes().split(b"\n")
        live(p).write_bytes(b"\n".join(fn(lines)))
    return damage


def edit_archive(fn: Callable[[list[bytes]], list[bytes]], n: int = 0
                 ) -> Callable[[Project], None]:
    def damage(p: Project) -> None:
        path = archive(p, n)
        lines = gzip.decompress(path.read_bytes()).split(b"\n")
        path.write_bytes(gzip.compress(b"\n".join(fn(lines))))
    return damage


def tamper(line: bytes) -> bytes:
    return line.replace(b'"M', b'"X', 1)


DAMAGES: dict[str, Callable[[Project], None]] = {
    "none": lambda p: None,
    "torn last line": lambda p: live(p).write_bytes(live(p).read_bytes()[:-7]),
    "not JSON": edit_live(lambda ls: [*ls[:2], b"{oops", *ls[2:]]),
    "not JSON and torn": edit_live(lambda ls: [*ls[:1], b"[1]", *ls[1:-1], b'{"a'] ),
    "blank lines": edit_live(lambda ls: [*ls[:2], b"", b"  ", *ls[2:]]),
    "tampered": edit_live(lambda ls: [*ls[:1], tamper(ls[1]), *ls[2:]]),
    "a line gone": edit_live(lambda ls: ls[:1] + ls[2:]),
    "live log missing": lambda p: live(p).unlink(),
    "live log empty": lambda p: live(p).write_bytes(b""),
}
ARCHIVE_DAMAGES: dict[str, Callable[[Project], None]] = {
    "archive not JSON": edit_archive(lambda ls: [*ls[:1], b"nope", *ls[1:]]),
    "archive tampered": edit_archive(lambda ls: [ls[0], tamper(ls[1]), *ls[2:]], 1),
    "archive torn": edit_archive(lambda ls: [*ls[:-1], b'{"event_id"']),
    "archive not gzip": lambda p: archive(p).write_bytes(b"plain"),
    "archive gone": lambda p: archive(p, 1).unlink(),
    "index gone": lambda p: (p.root / "logs" / "archive" / "index.json").unlink(),
    "repeated prefix": lambda p: live(p).write_bytes(
        gzip.decompress(archive(p, -1).read_bytes()).split(b"\n", 1)[0] + b"\n"
        + live(p).read_bytes()),
}


@pytest.mark.parametrize("backend", ["file", "hybrid", "database"])
@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_streamed_check_is_the_whole_file_check(tmp_path: Path, backend: str,
                                                damage: str) -> None:
    p = build(tmp_path, backend, None)
    if backend != "database":
        DAMAGES[damage](p)
    elif damage != "none":
        pytest.skip("the database keeps no log file")
    assert_same(p)


@pytest.mark.parametrize("damage", sorted(ARCHIVE_DAMAGES) + sorted(DAMAGES))
def test_streamed_check_across_archives(tmp_path: Path, damage: str) -> None:
    p = build(tmp_path, "file", 2048)
    assert len(list((p.root / "logs" / "archive").glob("*.gz"))) >= 3
    (ARCHIVE_DAMAGES | DAMAGES)[damage](p)
    assert_same(p)


def assert_same(p: Project) -> None:
    store = Project.open(p.root.parent, actor=ACTOR, session_id="s1").store
    expected = check_log_as_it_was(store)
    assert check_log(store) == expected
    fed: list[dict[str, Any]] = []
    checks, kept = check_log(store, sink=fed.append)
    assert (checks, fed, kept) == (expected[0], expected[1], [])

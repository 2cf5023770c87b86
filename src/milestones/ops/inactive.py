"""The YAML files of a backend no longer in use: marked as not read, watched for edits.

After a move from the YAML backends (file, hybrid) to the database, their files stay
where they were (``storage cleanup`` removes them) but nothing reads them. So that
they do not pass for live data, ``active/NOT-READ.txt`` says so, and
``logs/not-read.json`` records each file's size, mtime and SHA-256 at the switch.
Every command on the database backend compares (stat; content when the stat moved)
and warns, naming the file, when one was edited or added. A move back to files and
``storage cleanup`` keep such a file aside in ``kept-edits/<time>/`` instead of
writing over or removing it: a person's edit is reported, never silently dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from ..errors import MilestoneError
from ..storage import fsutil

NOTE = "active/NOT-READ.txt"
FINGERPRINT = "logs/not-read.json"
KEPT = "kept-edits"
_FILE_RE = re.compile(r"^milestone-[0-9]{3,}\.yaml$")

NOTE_TEXT = """\
These files are NOT READ. Since {since} this project keeps its data in the {backend}
backend (.milestones/database/milestones.db); the YAML files here are a copy as they
were at that switch. Editing them changes nothing: milestone warns about an edited
one on every command. To change the plan, use the milestone commands. To go back to
YAML files: `milestone storage migrate --to file` (a file edited here is then kept
aside in .milestones/{kept}/, not applied). `milestone storage cleanup` removes them.
"""


def _files(root: Path) -> list[str]:
    """The YAML backends' hand-editable files present: milestone files, current.txt."""
    out: list[str] = []
    for folder in ("active", "completed"):
        try:
            entries = os.scandir(root / folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with entries:
            out += [f"{folder}/{e.name}" for e in entries
                    if (_FILE_RE.match(e.name) or (folder == "active" and e.name == "current.txt"))
                    and e.is_file()]
    return sorted(out)


def _sha(path: Path) -> str:
    import hashlib  # only when a file's stat moved (or at a switch): most commands never hash

    return hashlib.sha256(fsutil.read_bytes(path)).hexdigest()


def _text(path: Path) -> str | None:
    try:
        return fsutil.read_bytes(path).decode("utf-8")
    except (OSError, UnicodeDecodeError, MilestoneError):
        return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mark(root: Path, backend: str) -> None:
    """After the switch to ``backend``: note that the YAML files are not read, and
    record what they hold."""
    files: dict[str, list[object]] = {}
    for rel in _files(root):
        st = (root / rel).stat()
        files[rel] = [st.st_size, st.st_mtime_ns, _sha(root / rel)]
    since = _now()
    record = {"backend": backend, "since": since, "files": files}
    fsutil.atomic_write(root / FINGERPRINT, json.dumps(record).encode("utf-8"))
    text = NOTE_TEXT.format(since=since, backend=backend, kept=KEPT)
    fsutil.atomic_write(root / NOTE, text.encode("utf-8"))


def unmark(root: Path) -> None:
    """The YAML files are read again (or gone): drop the note and the record."""
    for rel in (NOTE, FINGERPRINT):
        with contextlib.suppress(FileNotFoundError):
            (root / rel).unlink()


def marks(root: Path) -> list[Path]:
    """The note and the record, those that exist."""
    return [root / rel for rel in (NOTE, FINGERPRINT) if (root / rel).exists()]


def edited(root: Path, *, deep: bool = False,
           sources: Mapping[str, str] | None = None) -> list[str]:
    """The not-read files edited (or added) since the switch, relative to ``root``.
    A file whose size and mtime match is taken as unchanged unless ``deep`` (a move
    back to files, a cleanup: everything is hashed before anything is replaced).
    Without a record (a switch made before there was one), a milestone file that is
    not the text the database keeps for it (``sources``) counts as edited."""
    try:
        record = json.loads(fsutil.read_bytes(root / FINGERPRINT))
        known = record["files"]
        if not isinstance(known, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        if sources is None:
            return []  # nothing to compare with
        return [rel for rel in _files(root) if not rel.endswith("current.txt")
                and _text(root / rel) != sources.get(Path(rel).stem)]
    out: list[str] = []
    for rel in _files(root):
        rec = known.get(rel)
        path = root / rel
        try:
            if not isinstance(rec, list) or len(rec) != 3:
                out.append(rel)
                continue
            st = path.stat()
            if not deep and [st.st_size, st.st_mtime_ns] == rec[:2]:
                continue
            if _sha(path) != rec[2]:
                out.append(rel)
        except OSError:
            continue
    return out


def keep_aside(root: Path, rels: list[str]) -> Path | None:
    """Move ``rels`` into ``kept-edits/<time>/`` (same relative paths); returns it."""
    if not rels:
        return None
    folder = root / KEPT / datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    for rel in rels:
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(root / rel, dest)
    fsutil.fsync_dir(folder)
    return folder


def warnings(root: Path, backend: str) -> list[str]:
    """One line per edited not-read file (each command on ``backend`` prints them)."""
    return [f".milestones/{rel} was edited, but the {backend} backend does not read it: "
            f"the edit is not applied — make the change with milestone commands, or run "
            f"`milestone storage migrate --to file` (it keeps this file aside in "
            f".milestones/{KEPT}/ for you to copy back as a hand edit)"
            for rel in edited(root)]

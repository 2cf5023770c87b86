"""The crash-safe swap of a restore: a journal in ``.restore/``, directories swapped in
with renames, live databases replaced inside their own transaction, the backend
marker last; ``recover_locked`` rolls an interrupted swap forward or back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..errors import Conflict, MilestoneError, StorageError
from . import Store, fsutil
from .archive import (
    ATTACH_AS,
    DAMAGED,
    DB_DIR,
    MARKER,
    MAX_MANIFEST_BYTES,
    RESTORE_DIR,
    SYSTEM_LOG,
    Manifest,
    atomic_target,
    cleanup,
    close_quietly,
    default_dir,
    destination,
    discard,
    record_system_event,
    rename_durably,
    store_lock,
)
from .archive_files import (
    KEY_FILE,
    POSTGRES_COPY,
    Written,
    connect_existing,
    stage_project,
    write_archive,
)


@dataclass
class Plan:
    """What a restore swaps; written to the journal so a crash can finish it."""

    dirs_in: list[str]  # top-level data dirs (not config/) the archive has
    dirs_out: list[str]  # live top-level data dirs (not config/) the archive has not
    config_files: list[str]  # the archive's config files, but the backend marker
    config_dirs: list[str]  # the archive's config directories
    db_copy: list[str]  # databases whose live contents are replaced in a transaction
    db_rename: list[str]  # databases the project has not got: renamed into place
    db_drop: list[str]  # live databases the archive has not got
    marker: str | None  # the archive's storage-backend.txt, written last (None: remove)
    old_marker: str | None  # the live one, for an undo
    state: str = "swapping"  # or "rolling-back"

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=2).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, raw: bytes) -> Plan:
        data = json.loads(raw)
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})

def read_marker(root: Path) -> str | None:
    try:
        return fsutil.read_bytes(root / MARKER, 4096).decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StorageError(f"cannot read {root / MARKER}: {exc}",
                           hint="check the file's permissions") from None


def _write_marker(root: Path, text: str | None) -> None:
    if text is None:
        with contextlib.suppress(FileNotFoundError):
            (root / MARKER).unlink()
    else:
        atomic_target(root / MARKER, text.encode("utf-8"))

# ------------------------------------------------------------ restore: swap


def apply_restore(root: Path, store: Store, work: Path, manifest: Manifest, plan: Plan,
                   actor: str | None) -> Written:
    """Pre-restore backup, then the swap, under the writer lock (the caller holds .lock)."""
    from .sqlite import DatabaseStore

    new = work / "new"
    conn: sqlite3.Connection | None = None
    main_db = None
    if isinstance(store, DatabaseStore) and store.db_path.name in plan.db_copy:
        # The store's own connection replaces its database's contents inside its
        # writer transaction: other connections see the old data or the new,
        # whole. ATTACH and the foreign-keys switch cannot happen inside it.
        main_db = store.db_path.name
        try:
            conn = store.connect()
            conn.execute(f"ATTACH DATABASE ? AS {ATTACH_AS}", (str(new / DB_DIR / main_db),))
            conn.execute("PRAGMA foreign_keys=OFF")
        except sqlite3.Error as exc:
            discard(work)
            raise StorageError(f"cannot open the staged database: {exc}",
                               hint="check free space and permissions") from None
    journal = work / "journal.json"
    journaled = False
    try:
        with store_lock(store):
            staged = stage_project(root, store, default_dir(root), "pre-restore")
            with cleanup(staged.directory):
                pre = write_archive(staged, destination(root, None, "pre-restore"))
            record_system_event(root, "backup_created", pre.path, pre.manifest, actor,
                    {"reason": "pre-restore"})
            _carry_over(root, new)
            atomic_target(journal, plan.to_json())
            journaled = True
            _roll_forward(root, work, plan, stop_before_copy=True)
            if conn is not None:
                _replace_contents(conn, ATTACH_AS)
            if (plan.marker or "").strip() == "postgres":
                _fill_postgres(root, store, new / DB_DIR / POSTGRES_COPY)
            # Still under the lock: a writer that waited for it re-reads the marker
            # once it has it (Project.follow_backend), so it writes where the data is.
            _write_marker(root, plan.marker)
        # Committed: for the database backend, when the lock above was released.
    except BaseException as exc:
        if journaled:
            try:
                plan.state = "rolling-back"
                atomic_target(journal, plan.to_json())
                _roll_back(root, work, plan)
            except (OSError, MilestoneError) as undo:
                raise StorageError(
                    f"the restore failed ({exc}) and could not be undone ({undo}); the previous "
                    f"data is in {work / 'old'}", hint="run `milestone restore` again to undo it"
                ) from exc
        discard(work)
        raise
    finally:
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"DETACH DATABASE {ATTACH_AS}")
                conn.execute("PRAGMA foreign_keys=ON")
    close_quietly(store)
    if main_db is not None:
        plan.db_copy = [n for n in plan.db_copy if n != main_db]
    try:
        _roll_forward(root, work, plan)
    except MilestoneError as exc:
        raise StorageError(f"the restore did not finish: {exc.message}",
                           hint="run any `milestone backup` or `restore` to finish it") from None
    return pre


def _fill_postgres(root: Path, store: Store, copy: Path) -> None:
    """A postgres archive's rows (its SQLite copy) into the project's PostgreSQL
    database: inside the held writer transaction when the project is on postgres now
    (readers see the old rows or the new), else in the database the URL names."""
    from . import store_for

    target = store if store.backend == "postgres" else store_for(root, "postgres")
    assert target is not None
    target.restore(copy)


def _roll_forward(root: Path, work: Path, plan: Plan, stop_before_copy: bool = False) -> None:
    """Do (or finish) each step of the swap; every step may be repeated safely."""
    new, old = work / "new", work / "old"
    try:
        old.mkdir(exist_ok=True)
        _swap_config(root, new, old, plan)
        for d in plan.dirs_in:
            _swap_dir(root / d, new / d, old / d)
        for d in plan.dirs_out:
            if (root / d).exists():
                rename_durably(root / d, old / d)
        if plan.db_rename:
            (root / DB_DIR).mkdir(exist_ok=True)
        for n in plan.db_rename:
            if (new / DB_DIR / n).exists() and not (root / DB_DIR / n).exists():
                rename_durably(new / DB_DIR / n, root / DB_DIR / n)
        if stop_before_copy:
            return
        for n in plan.db_copy:
            if (new / DB_DIR / n).exists():
                _copy_into(root / DB_DIR / n, new / DB_DIR / n)
        _write_marker(root, plan.marker)
        # The marker names the archive's backend now: no new command opens a
        # database the archive has not got, so it (and its WAL) can go.
        for n in plan.db_drop:
            for suffix in ("", "-wal", "-shm", "-journal"):
                src = root / DB_DIR / f"{n}{suffix}"
                if src.exists():
                    (old / DB_DIR).mkdir(exist_ok=True)
                    rename_durably(src, old / DB_DIR / f"{n}{suffix}")
    except OSError as exc:
        raise fsutil.storage_error(exc, root, "restore into") from None
    discard(work)


def _swap_config(root: Path, new: Path, old: Path, plan: Plan) -> None:
    """File by file, so config/ and its backend marker never disappear, even briefly."""
    keep = {*plan.config_files, MARKER}
    for rel in _files_under(root, "config"):
        if rel not in keep and not rel.startswith(f"config/{KEY_FILE}"):  # not in archives
            (old / rel).parent.mkdir(parents=True, exist_ok=True)
            rename_durably(root / rel, old / rel)
    (root / "config").mkdir(exist_ok=True)
    for d in plan.config_dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for rel in plan.config_files:
        if not (new / rel).exists():
            continue  # replaced already
        if (root / rel).exists() and not (old / rel).exists():
            (old / rel).parent.mkdir(parents=True, exist_ok=True)
            fsutil.refuse_links(root / rel)
            shutil.copy2(root / rel, old / rel)  # for an undo; the live file stays put
        os.replace(new / rel, root / rel)
    fsutil.fsync_dir(root / "config")


def _swap_dir(live: Path, staged: Path, aside: Path) -> None:
    if not staged.exists():
        return  # swapped already
    if live.exists():
        if aside.exists():
            raise StorageError(f"cannot finish the interrupted restore: {live}, {staged} and "
                               f"{aside} all exist", hint="move the right one into place by hand")
        os.rename(live, aside)
    os.rename(staged, live)  # no fsync between the two: the gap stays microseconds
    for d in {live.parent, aside.parent, staged.parent}:
        fsutil.fsync_dir(d)


def _roll_back(root: Path, work: Path, plan: Plan) -> None:
    """Undo the renames of a swap that failed before its database transaction committed.

    Each step may be repeated: what is staged goes back to ``new/``, what was
    moved aside comes back from ``old/``.
    """
    new, old = work / "new", work / "old"
    _write_marker(root, plan.old_marker)
    for n in plan.db_rename:
        if (root / DB_DIR / n).exists() and not (new / DB_DIR / n).exists():
            rename_durably(root / DB_DIR / n, new / DB_DIR / n)
    for d in plan.dirs_out:
        if (old / d).exists() and not (root / d).exists():
            rename_durably(old / d, root / d)
    for d in reversed(plan.dirs_in):
        if (root / d).exists() and not (new / d).exists():
            rename_durably(root / d, new / d)
        if (old / d).exists() and not (root / d).exists():
            rename_durably(old / d, root / d)
    for rel in plan.config_files:
        if (new / rel).exists():
            continue  # never replaced
        if (root / rel).exists():
            rename_durably(root / rel, new / rel)
        if (old / rel).exists():
            rename_durably(old / rel, root / rel)
    for rel in _files_under(old, "config"):
        if rel not in plan.config_files and not (root / rel).exists():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            rename_durably(old / rel, root / rel)


def _files_under(base: Path, top: str) -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(base / top):
        rel_dir = Path(dirpath).relative_to(base).as_posix()
        out += [f"{rel_dir}/{f}" for f in files]
    return sorted(out)


def recover_locked(root: Path) -> list[str]:
    """Under .lock: finish a restore a crash interrupted, or undo one that failed."""
    work = root / RESTORE_DIR
    if not work.exists():
        return []
    try:
        raw = fsutil.read_bytes(work / "journal.json", MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        discard(work)  # staging never finished: the project was not touched
        return ["removed the staging of an interrupted restore (nothing had changed)"]
    except OSError as exc:
        raise fsutil.storage_error(exc, work / "journal.json", "read") from None
    try:
        plan = Plan.from_json(raw)
    except (ValueError, KeyError, TypeError):
        raise StorageError(f"{work / 'journal.json'} is unreadable",
                           hint="finish the restore by hand from .milestones/.restore/") from None
    if plan.state == "rolling-back":
        try:
            _roll_back(root, work, plan)
        except OSError as exc:
            raise fsutil.storage_error(exc, root, "undo the failed restore in") from None
        discard(work)
        return ["undid a restore that had failed part-way"]
    _roll_forward(root, work, plan)
    return ["finished a restore that was interrupted"]


def _replace_contents(conn: sqlite3.Connection, src: str) -> None:
    """Make ``main`` hold exactly the schema and rows of the attached ``src``.

    Runs inside the caller's write transaction (DDL is transactional in SQLite),
    with foreign keys off; the rows were checked by ``foreign_key_check`` when
    the archive was staged, and are checked again here before the commit.
    """
    q = _quote
    for kind, name in conn.execute(
            "SELECT type, name FROM main.sqlite_master WHERE type IN ('view', 'trigger') "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").fetchall():
        conn.execute(f"DROP {kind.upper()} IF EXISTS main.{q(name)}")
    for (name,) in conn.execute(
            "SELECT name FROM main.sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'").fetchall():
        conn.execute(f"DROP TABLE IF EXISTS main.{q(name)}")
    objects = conn.execute(
        f"SELECT type, name, sql FROM {src}.sqlite_master WHERE sql IS NOT NULL "
        f"AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid").fetchall()
    tables = [(n, s) for t, n, s in objects if t == "table"]
    for _name, sql in tables:
        conn.execute(sql)  # unqualified: created in main
    for name, _sql in tables:
        cols = [r[1] for r in conn.execute(f"PRAGMA {src}.table_xinfo({q(name)})") if r[6] == 0]
        try:
            conn.execute(f"SELECT rowid FROM {src}.{q(name)} LIMIT 0")
            cols = ["rowid", *cols] if "rowid" not in cols else cols
        except sqlite3.OperationalError:
            pass  # WITHOUT ROWID
        names = ", ".join(c if c == "rowid" else q(c) for c in cols)
        conn.execute(f"INSERT INTO main.{q(name)} ({names}) SELECT {names} FROM {src}.{q(name)}")
    has_seq = conn.execute(f"SELECT 1 FROM {src}.sqlite_master WHERE name = 'sqlite_sequence'"
                           ).fetchone()
    if has_seq and conn.execute("SELECT 1 FROM main.sqlite_master WHERE name = "
                                "'sqlite_sequence'").fetchone():
        conn.execute("DELETE FROM main.sqlite_sequence")
        conn.execute(f"INSERT INTO main.sqlite_sequence SELECT * FROM {src}.sqlite_sequence")
    for kind, _name, sql in objects:
        if kind != "table":
            conn.execute(sql)
    for pragma in ("user_version", "application_id"):
        value = int(conn.execute(f"PRAGMA {src}.{pragma}").fetchone()[0])
        conn.execute(f"PRAGMA main.{pragma} = {value}")
    orphans = conn.execute("PRAGMA main.foreign_key_check").fetchall()
    if orphans:
        raise StorageError(f"the restored database has rows whose foreign keys point nowhere "
                           f"(table {orphans[0][0]})", hint=DAMAGED)


def _copy_into(live: Path, staged: Path) -> None:
    """Replace a live database's contents with a staged one's, in one transaction."""
    try:
        conn = connect_existing(live)
        try:
            conn.execute(f"ATTACH DATABASE ? AS {ATTACH_AS}", (str(staged),))
            conn.execute("PRAGMA foreign_keys=OFF")
            conn.execute("BEGIN IMMEDIATE")
            try:
                _replace_contents(conn, ATTACH_AS)
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
            conn.execute(f"DETACH DATABASE {ATTACH_AS}")
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise Conflict(f"{live} stayed busy for over {fsutil.lock_timeout():g}s",
                           hint="retry, or raise MILESTONE_LOCK_TIMEOUT") from None
        raise StorageError(f"cannot restore {live}: {exc}", hint="run `milestone doctor`"
                           ) from None
    except sqlite3.Error as exc:
        raise StorageError(f"cannot restore {live}: {exc}", hint="run `milestone doctor`"
                           ) from None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _carry_over(root: Path, new: Path) -> None:
    """Keep the live audit trail of backups and restores rather than the archive's."""
    live = root / SYSTEM_LOG
    if live.is_file():
        (new / SYSTEM_LOG).parent.mkdir(parents=True, exist_ok=True)
        fsutil.refuse_links(live)
        shutil.copy2(live, new / SYSTEM_LOG)

"""``milestone encrypt init|rotate|off``: turning encryption at rest on, changing its key,
turning it off. Admin operations of the service layer (one method each).

Each rewrites the whole project as one step: under the writer lock, a staged copy of
the project is built in ``.restore/new`` (every snapshot, every event, the resume
record, through the backend's own ``import_stream``, as a migration copies), then
swapped in by the restore's crash-safe swap (``storage.swap``: a journal, renames,
a database replaced inside its own transaction, rolled forward or back by the next
command). Killed before the journal is written, nothing changed; after, the next
command finishes the swap. Either way every value is readable with the key the
marker (``config/encryption.json``) names.

History: the events keep their ids, types, times and actors; their protected values
are sealed anew, so their hashes change and the log is re-chained from the first
event. The new chain ends with an ``encryption_changed`` event naming the action and
the old chain's head (event id and hash): anyone holding a copy of the old log can
check that the new one continues it. The rotated archives are folded into the live log.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, StorageError
from ..model import events as ev
from . import crypto
from .constants import SCHEMA
from .unit import UnitOfWork

RECORDS = ("agents", "messages")  # the agents' records (milestones.agents.records)
# Files a file store writes in logs/ for its chain: made anew by the staged import.
_CHAIN_FILES = ("progress-events.jsonl", "session-resume.json")
BATCH = 1000

Fn = Callable[[Any], Any]


class Encryption(UnitOfWork):
    """Encryption at rest: ``encrypt_init``, ``encrypt_rotate``, ``encrypt_off``."""

    def encrypt_status(self) -> dict[str, Any]:
        crypt = self.crypt()
        key = crypto.load_key(self.root)
        return {
            "schema": SCHEMA,
            "enabled": crypt is not None,
            "key_id": crypt.sealed_under if crypt is not None else None,
            "key_here": key is not None,
            "key_matches": (crypt is not None and key is not None
                            and crypto.key_id(key) == crypt.sealed_under),
            "key_source": ("env" if os.environ.get(crypto.KEY_ENV) else
                           "file" if key is not None else None),
            "fields": sorted(crypto.protected_fields(self.config())),
            "algorithm": "AES-256-GCM",
        }

    def encrypt_init(self) -> dict[str, Any]:
        """Make (or take from $MILESTONE_KEY) a key and seal every protected value."""
        if self.crypt() is not None:
            raise InvalidInput("this project is encrypted already",
                               hint="`milestone encrypt rotate` changes the key")
        made = False
        key = crypto.load_key(self.root)
        if key is None:
            key = os.urandom(32)
            crypto.write_key_file(crypto.key_path(self.root), key)
            made = True
        cipher = crypto.Cipher(key)
        crypt = crypto.Crypt(self.root, cipher.kid, crypto.protected_fields(self.config()))
        crypt.use(cipher)
        crypt.memo = {}
        ignored = _ignore_key(self.root)
        extra = {} if os.environ.get(crypto.KEY_ENV) else {
            crypto.KEY_FILE: (crypto.encode_key(key) + "\n").encode("ascii")}
        try:
            out = self._rewrite("init", _sealer(crypt), crypto.marker_bytes(cipher.kid), extra)
        except BaseException:
            if made:  # nothing was sealed under it
                crypto.key_path(self.root).unlink(missing_ok=True)
            raise
        # The swap's safety copy holds the plain text just sealed: it goes. Earlier
        # backups are named, for the person to remove (or keep outside the project).
        Path(out.pop("backup")).unlink(missing_ok=True)
        from ..storage.archive import default_dir

        folder = default_dir(self.root)
        out["plain_backups"] = sorted(
            f"{folder.relative_to(self.root.parent)}/{n}" for n in
            (os.listdir(folder) if folder.is_dir() else ()) if n.endswith(".tar.gz"))
        return out | {"key_file": None if os.environ.get(crypto.KEY_ENV) else
                      f".milestones/config/{crypto.KEY_FILE}", "key_created": made,
                      "gitignore": ignored}

    def encrypt_rotate(self) -> dict[str, Any]:
        """Seal everything anew under a new key; the old one is kept aside."""
        old = self._need_key("rotate")
        new = crypto.Cipher(os.urandom(32))

        def reseal(token: str) -> str:
            _, label, _ = crypto.split_token(token)
            return new.seal(label, _open(old, token))

        extra = {crypto.KEY_FILE: (crypto.encode_key(new.key) + "\n").encode("ascii"),
                 f"{crypto.KEY_FILE}.old-{old.kid}":
                     (crypto.encode_key(old.key) + "\n").encode("ascii")}
        out = self._rewrite("rotate", _tokens(reseal), crypto.marker_bytes(new.kid), extra)
        return out | {"old_key_file": f".milestones/config/{crypto.KEY_FILE}.old-{old.kid}",
                      "key_in_env": bool(os.environ.get(crypto.KEY_ENV))}

    def encrypt_off(self) -> dict[str, Any]:
        """Open every protected value back into plain text; encryption is off after."""
        old = self._need_key("off")
        # The key is kept aside as encryption.key.old-<id> (the backup taken just before
        # is sealed under it); the live one goes once the swap is done.
        extra = {f"{crypto.KEY_FILE}.old-{old.kid}":
                 (crypto.encode_key(old.key) + "\n").encode("ascii")}
        out = self._rewrite("off", _tokens(lambda token: _open(old, token)), None, extra)
        crypto.key_path(self.root).unlink(missing_ok=True)
        return out | {"old_key_file": f".milestones/config/{crypto.KEY_FILE}.old-{old.kid}"}

    def _need_key(self, what: str) -> crypto.Cipher:
        crypt = self.crypt()
        if crypt is None:
            raise InvalidInput("this project is not encrypted",
                               hint="`milestone encrypt init` turns encryption on")
        cipher = crypt.cipher()
        if cipher is None:
            raise InvalidInput(f"`encrypt {what}` needs the project's key (key id "
                               f"{crypt.sealed_under}); nothing was changed",
                               hint=f"put it in .milestones/config/{crypto.KEY_FILE} or "
                                    f"${crypto.KEY_ENV}")
        assert isinstance(cipher, crypto.Cipher)
        return cipher

    # -------------------------------------------------------------- the rewrite

    def _rewrite(self, action: str, fn: tuple[Fn, Fn, Fn], marker: bytes | None,
                 extra: dict[str, bytes] | None = None) -> dict[str, Any]:
        """Rewrite every snapshot, event and the resume record through ``fn`` (one for
        each) into a staged copy, then swap it in (see the module's docstring)."""
        from ..storage import fsutil, open_store, store_for
        from ..storage.archive import LOCK_NAME, RESTORE_DIR
        from ..storage.swap import apply_restore, recover_locked

        root = self.root
        snap_fn, event_fn, resume_fn = fn
        with fsutil.writer_lock(root / LOCK_NAME):
            recover_locked(root)
            store = open_store(root)
            try:
                unit = type(self)(store, cwd=self.cwd, actor=self.actor,
                                  session_id=self.session_id)
                unit.sync()
                damage = getattr(store, "damage", None)
                if damage:
                    raise StorageError(f"{damage}; not re-encrypted", hint="restore a backup, "
                                       "or run `milestone doctor --repair` first")
                head = store.head_state()
                work = root / RESTORE_DIR
                new = work / "new"
                fsutil.refuse_links(work)
                _shutil().rmtree(work, ignore_errors=True)
                new.mkdir(parents=True)
                try:  # staging: a failure (a value that does not verify) leaves no trace
                    events = list(_rechain(store.events(), event_fn, self._closing(
                        action, marker, head)))
                    last = events[-1]
                    head.last_event_id, head.last_hash = last["event_id"], last["hash"]
                    staged = store_for(new, store.backend)
                    assert staged is not None
                    staged.import_stream(
                        (events[i:i + BATCH * 10] for i in range(0, len(events), BATCH * 10)),
                        ([snap_fn(s) for s in batch] for batch in store.snapshot_batches(BATCH)),
                        head, resume_fn(store.read_resume()), lambda mids: {})
                    for name in RECORDS:
                        if record := store.read_record(name):
                            staged.write_record(name, record)
                    close = getattr(staged, "close", None)
                    if close is not None:
                        close()
                    plan = _plan(root, new, store.backend, marker, extra or {})
                except BaseException:
                    _shutil().rmtree(work, ignore_errors=True)
                    raise
                pre = apply_restore(root, store, work, None, plan,  # type: ignore[arg-type]
                                    self.actor)
            finally:
                close = getattr(store, "close", None)
                if close is not None:
                    close()
        self.store = open_store(root)
        self._crypt, self._l1 = False, None
        return {"schema": SCHEMA, "action": action, "events": len(events),
                "key_id": crypto.read_marker(root), "previous_head": {
                    "event_id": events[-1]["details"]["previous_head"]["event_id"],
                    "hash": events[-1]["details"]["previous_head"]["hash"]},
                "backup": str(pre.path)}

    def _closing(self, action: str, marker: bytes | None, head: Any) -> dict[str, Any]:
        """The event that ends the new chain: the action and the old chain's head."""
        import json

        kid = json.loads(marker)["key_id"] if marker else None
        return ev.make_event(
            "encryption_changed", None, timestamp=self.clock(), actor=self.actor,
            session_id=self.session_id, summary=f"encrypt {action}", action=action,
            key_id=kid, previous_head={"event_id": head.last_event_id, "hash": head.last_hash})


def _open(cipher: crypto.Cipher, token: str) -> str:
    try:
        return cipher.open(token)
    except crypto.WrongKey as exc:
        raise crypto.wrong_key_error(exc.found, exc.have) from None
    except crypto.Tampered as exc:
        raise crypto.tampered_error(exc.label) from None


def _rechain(events: Any, fn: Fn, closing: dict[str, Any]) -> Iterator[dict[str, Any]]:
    prev, n = ev.GENESIS_HASH, 0
    try:
        for e in events:
            n += 1
            body = {k: v for k, v in e.items() if k not in ("event_id", "prev_hash", "hash")}
            sealed = ev.seal(fn(body), n, prev)
            prev = sealed["hash"]
            yield sealed
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
    yield ev.seal(closing, n + 1, prev)


def _tokens(fn: Callable[[str], str]) -> tuple[Fn, Fn, Fn]:
    """Every token anywhere, through ``fn`` (rotate: sealed anew; off: opened), the
    same token to the same result (a patch and the snapshot replaying it agree)."""
    memo: dict[str, str] = {}

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            if not x.startswith(crypto.PREFIX):
                return x
            got = memo.get(x)
            if got is None:
                got = memo[x] = fn(x)
            return got
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk, walk, walk


def _sealer(crypt: crypto.Crypt) -> tuple[Fn, Fn, Fn]:
    """``encrypt init``: the protected fields sealed where they are: snapshots, the
    events' patches and details, the resume record's notes and blockers."""

    def snap(s: dict[str, Any]) -> dict[str, Any]:
        return crypt.seal_snapshot(s, s["id"])

    def event(e: dict[str, Any]) -> dict[str, Any]:
        mid = e.get("milestone_id")
        data = dict(e.get("data") or {})
        if mid and isinstance(data.get("create"), dict):
            data["create"] = crypt.seal_snapshot(data["create"], mid)
        if mid and isinstance(data.get("set"), dict):
            data["set"] = crypt.seal_snapshot(data["set"], mid)
        if mid and isinstance(data.get("tasks_set"), dict):
            changes = {}
            for tid, ch in data["tasks_set"].items():
                got = crypt.seal_snapshot({"tasks": [{**ch, "id": tid}]}, mid)["tasks"][0]
                changes[tid] = got if "id" in ch else {k: v for k, v in got.items() if k != "id"}
            data["tasks_set"] = changes
        if mid and isinstance(data.get("tasks_add"), list):
            data["tasks_add"] = crypt.seal_snapshot({"tasks": data["tasks_add"]}, mid)["tasks"]
        out = {**e, "data": data, "details": dict(e.get("details") or {})}
        crypt.seal_event(out)
        return out

    def resume(r: dict[str, Any]) -> dict[str, Any]:
        r = dict(r)
        r["notes"] = [{**n, "text": crypt.seal_note(n.get("text"))} if isinstance(n, dict)
                      else n for n in r.get("notes") or []]
        if "task.blockers" in crypt.fields and isinstance(r.get("blockers"), list):
            r["blockers"] = [{**b, "blockers": crypt.seal_value(
                b.get("blockers") or [], f"{b.get('ref')}#blockers")} if isinstance(b, dict)
                else b for b in r["blockers"]]
        return r

    return snap, event, resume


def _plan(root: Path, new: Path, backend: str, marker: bytes | None,
          extra: dict[str, bytes]) -> Any:
    """What the swap moves: the staged data folders and databases, the live config
    files (the marker and keys as ``marker`` and ``extra`` say), the live files of
    logs/ and agents/ the staged store did not make (system and security records)."""
    from ..storage.archive import DATA_DIRS, MARKER
    from ..storage.archive_files import live_databases
    from ..storage.swap import Plan, read_marker

    for top in ("logs", "agents"):
        live = root / top
        if not live.is_dir():
            continue
        for dirpath, dirnames, files in os.walk(live):
            rel = Path(dirpath).relative_to(root)
            if rel.parts[:2] == ("logs", "archive"):
                dirnames[:] = []
                continue  # rotated logs: folded into the staged live log
            for name in files:
                if rel.as_posix() == "logs" and (name in _CHAIN_FILES or
                                                 name.startswith("state")):
                    continue
                if (new / rel / name).exists() or name.startswith("."):
                    continue
                (new / rel).mkdir(parents=True, exist_ok=True)
                _shutil().copy2(root / rel / name, new / rel / name)
    config_files = []
    (new / "config").mkdir(exist_ok=True)
    for dirpath, _dirs, files in os.walk(root / "config"):
        rel = Path(dirpath).relative_to(root)
        for name in files:
            path = f"{rel.as_posix()}/{name}"
            if (path == MARKER or name in extra or name.startswith(".")
                    or (rel.as_posix() == "config" and name in (crypto.MARKER_FILE,
                                                              crypto.KEY_FILE))):
                continue  # made anew below (or dropped: the marker, when off)
            (new / rel).mkdir(parents=True, exist_ok=True)
            _shutil().copy2(root / path, new / path)
            config_files.append(path)
    wanted = dict(extra)
    if marker is not None:
        wanted[crypto.MARKER_FILE] = marker
    for name, data in wanted.items():
        mode = 0o600 if name.startswith(crypto.KEY_FILE) else 0o644
        fd = os.open(new / "config" / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        config_files.append(f"config/{name}")
    staged_dbs = sorted(p.name for p in live_databases(new))
    live_dbs = [p.name for p in live_databases(root)]
    tops = [d for d in DATA_DIRS if d != "config" and (new / d).is_dir()]
    current = read_marker(root)
    return Plan(
        dirs_in=tops,
        dirs_out=[d for d in DATA_DIRS if d != "config" and d not in tops
                  and (root / d).exists()],
        config_files=sorted(config_files),
        config_dirs=sorted({str(Path(f).parent.as_posix()) for f in config_files}),
        db_copy=[n for n in staged_dbs if n in live_dbs],
        db_rename=[n for n in staged_dbs if n not in live_dbs],
        db_drop=[n for n in live_dbs if n not in staged_dbs],
        marker=current if current is not None else f"{backend}\n",
        old_marker=current,
    )


def _ignore_key(root: Path) -> str | None:
    """Add the key file to the .gitignore beside .milestones/ (once); its path."""
    gi = root.parent / ".gitignore"
    line = f"{root.name}/config/{crypto.KEY_FILE}*"
    try:
        text = gi.read_text("utf-8") if gi.is_file() and not gi.is_symlink() else ""
    except (OSError, UnicodeDecodeError):
        return None
    if gi.is_symlink():
        return None
    if line in text.splitlines():
        return str(gi)
    with open(gi, "a", encoding="utf-8") as f:
        f.write(("" if not text or text.endswith("\n") else "\n") +
                "# milestone: the encryption key never goes into git\n" + line + "\n")
    return str(gi)


def _shutil() -> Any:
    """shutil, on first use (with bz2 and lzma it is some 5 ms of every command)."""
    import shutil

    return shutil

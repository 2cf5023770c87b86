"""Encryption at rest: the key, the AEAD and where protected values are sealed.

A protected value is stored as one token, ``enc:v1:<key id>:<label>:<base64(nonce |
ciphertext | tag)>``: AES-256-GCM (the ``cryptography`` package), a fresh 96-bit
nonce per value, and ``label`` (the milestone or task it belongs to and the field,
e.g. ``milestone-003/task-2#description``) with the key id bound as associated data,
so a token moved to another label, or one flipped byte, does not verify.

The service layer seals values on their way in (``Txn.record`` seals the new
snapshot before the patch is taken, and the event's details), so every backend, the
event log, its rotated archives, the index, the caches and the backups hold tokens
without knowing it; it reveals them on their way out to a door (``reveal``).

Nothing here is imported by a project without encryption (``config/encryption.json``
absent), and ``cryptography`` is loaded on the first token (its Rust binding
directly: about 5 ms instead of 22).
"""

from __future__ import annotations

import binascii
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, StorageError

PREFIX = "enc:v1:"
PLACEHOLDER = "[encrypted]"
TAMPERED = "[tampered]"
KEY_FILE = "encryption.key"  # in config/
MARKER_FILE = "encryption.json"  # in config/: the key id the data is sealed under
KEY_ENV = "MILESTONE_KEY"
DEFAULT_FIELDS = ("milestone.description", "task.description", "task.blockers", "note")
# Details of an event that repeat a task's protected field (a block's reason, the
# blockers cleared): sealed under the field that protects them.
DETAIL_FIELDS = {"blockers": "task.blockers", "reason": "task.blockers",
                 "cleared": "task.blockers"}
# Patterns, compiled on first use by ``re`` (this module is loaded by every command).
FIELD_PATTERN = r"^(milestone|task)\.[A-Za-z0-9_-]+$|^note$"
TOKEN_PATTERN = r"enc:v1:[0-9a-f]{16}:[A-Za-z0-9_#/.-]+:[A-Za-z0-9+/=]+"
_AAD = b"milestone enc:v1\x00"


def key_id(key: bytes) -> str:
    """A public name for the key (a hash of it): which key the data is sealed under."""
    from ..model.events import sha256_hex

    return sha256_hex(b"milestone encryption key id\x00" + key)[:16]


def parse_key(text: str, where: str) -> bytes:
    """A 32-byte key from its text: 64 hex digits, or base64 (standard or URL-safe)."""
    s = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", s):
        return bytes.fromhex(s)
    try:
        raw = binascii.a2b_base64(s.replace("-", "+").replace("_", "/").encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise InvalidInput(f"{where} is not a 256-bit key",
                           hint="give 32 bytes as base64 (44 characters) or as 64 hex digits, "
                                "e.g. from `milestone encrypt init`")
    return raw


def encode_key(key: bytes) -> str:
    return binascii.b2a_base64(key, newline=False).decode("ascii")


def _aead_class() -> Any:
    try:  # the Rust binding directly: the public module loads the whole hazmat layer
        from cryptography.hazmat.bindings._rust import openssl

        return openssl.aead.AESGCM
    except (ImportError, AttributeError):  # pragma: no cover  (another build)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM


class Cipher:
    """AES-256-GCM under one key: ``seal`` a text under a label, ``open`` a token."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.kid = key_id(key)
        self._aead: Any = None

    def aead(self) -> Any:
        if self._aead is None:
            self._aead = _aead_class()(self.key)
        return self._aead

    def seal(self, label: str, text: str) -> str:
        nonce = os.urandom(12)
        ct = self.aead().encrypt(nonce, text.encode("utf-8"), _aad(self.kid, label))
        body = binascii.b2a_base64(nonce + ct, newline=False).decode("ascii")
        return f"{PREFIX}{self.kid}:{label}:{body}"

    def open(self, token: str) -> str:
        """The text of ``token``; raises ``Tampered`` (or ``WrongKey``)."""
        kid, label, body = split_token(token)
        if kid != self.kid:
            raise WrongKey(kid, self.kid)
        try:
            raw = binascii.a2b_base64(body.encode("ascii"))
            if len(raw) < 28:
                raise ValueError
            text = self.aead().decrypt(raw[:12], raw[12:], _aad(kid, label))
            return str(text.decode("utf-8"))
        except Exception:  # InvalidTag, bad base64, bad UTF-8: it was changed
            raise Tampered(label) from None


def _aad(kid: str, label: str) -> bytes:
    return _AAD + kid.encode("ascii") + b"\x00" + label.encode("utf-8")


def split_token(token: str) -> tuple[str, str, str]:
    """(key id, label, base64 body) of a token."""
    parts = token.split(":", 4)
    if len(parts) != 5:
        raise Tampered(token[:60])
    return parts[2], parts[3], parts[4]


def is_token(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def describe(label: str) -> str:
    """``milestone-003/task-2#description`` as ``milestone-003/task-2 description``."""
    return label.replace("#", " ")


class Tampered(Exception):
    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


class WrongKey(Exception):
    def __init__(self, found: str, have: str) -> None:
        super().__init__(found)
        self.found, self.have = found, have


def wrong_key_error(want: str, have: str) -> InvalidInput:
    return InvalidInput(
        f"the encryption key (key id {have}) is not this project's: its data is sealed "
        f"under key id {want}; nothing was changed",
        hint=f"use the right key in .milestones/config/{KEY_FILE} or ${KEY_ENV}")


def tampered_error(label: str) -> StorageError:
    return StorageError(
        f"the encrypted {describe(label)} does not verify: its ciphertext was changed or "
        "damaged", hint="restore the file from git or a backup (`milestone restore`)")


def moved_error(found: str, label: str) -> StorageError:
    return StorageError(
        f"the encrypted {describe(label)} holds the ciphertext of {describe(found)}: it "
        "was copied from there (ciphertext is bound to its field)",
        hint="put the field's own value back (git, a backup), or type the text in plain: "
             "it is sealed again")


# ------------------------------------------------------------------ the policy


class Crypt:
    """A project's encryption: which fields are protected, its key (if here), sealing
    values on their way in and revealing them on their way out."""

    def __init__(self, root: Path, sealed_under: str, fields: Iterable[str]) -> None:
        self.root = root
        self.sealed_under = sealed_under  # the key id config/encryption.json names
        self.fields = set(fields)
        self.mfields = sorted(f.split(".", 1)[1] for f in self.fields
                              if f.startswith("milestone."))
        self.tfields = sorted(f.split(".", 1)[1] for f in self.fields if f.startswith("task."))
        self._cipher: Cipher | None = None
        self._loaded = False
        self._told: set[str] = set()
        # (label, text) -> token, when set: a rewrite seals a value the same wherever it
        # stands (an event's patch and the snapshot replaying it must agree)
        self.memo: dict[tuple[str, str], str] | None = None

    @classmethod
    def open(cls, root: Path, config: Any) -> Crypt | None:
        """The project's encryption, or None when it has none (no marker file)."""
        marker = read_marker(root)
        if marker is None:
            return None
        return cls(root, marker, protected_fields(config))

    def use(self, cipher: Cipher) -> None:
        """Seal under ``cipher`` (``encrypt init``: before the marker names it)."""
        self._cipher, self._loaded = cipher, True

    def cipher(self, *, required: bool = False) -> Cipher | None:
        """The key, from $MILESTONE_KEY or config/encryption.key (None without one;
        ``required``: an error then). A key that is not the data's is an error."""
        if not self._loaded:
            self._loaded = True
            key = load_key(self.root)
            if key is not None:
                c = Cipher(key)
                if c.kid != self.sealed_under:
                    raise wrong_key_error(self.sealed_under, c.kid)
                self._cipher = c
        if self._cipher is None and required:
            raise InvalidInput(
                "this project's protected fields are encrypted and no key is here, so a new "
                "value for one cannot be stored; nothing was changed",
                hint=f"put the key in .milestones/config/{KEY_FILE} or ${KEY_ENV}")
        return self._cipher

    # ---------------------------------------------------------------- sealing

    def seal_value(self, value: Any, label: str) -> Any:
        """``value`` with its text sealed (a list: each item); the same object when there
        is nothing to seal (empty, or sealed already)."""
        if isinstance(value, str):
            if value.startswith(PREFIX):
                found = split_token(value)[1] if value.count(":") >= 4 else label
                if found != label:  # a token copied here from another field
                    raise moved_error(found, label)
                return value
            if not value:
                return value
            c = self.cipher(required=True)
            assert c is not None
            if self.memo is None:
                return c.seal(label, value)
            token = self.memo.get((label, value))
            if token is None:
                token = self.memo[(label, value)] = c.seal(label, value)
            return token
        if isinstance(value, list) and any(isinstance(x, str) and x and not
                                           x.startswith(PREFIX) for x in value):
            return [self.seal_value(x, label) for x in value]
        return value

    def seal_snapshot(self, snap: dict[str, Any], mid: str) -> dict[str, Any]:
        """A milestone snapshot with its protected fields sealed (a new dict when any
        was not; the task records that did not change are shared)."""
        out: dict[str, Any] | None = None
        for f in self.mfields:
            if f in snap:
                v = snap[f]
                nv = self.seal_value(v, f"{mid}#{f}")
                if nv is not v:
                    out = out if out is not None else dict(snap)
                    out[f] = nv
        tasks = snap.get("tasks") or []
        new_tasks: list[Any] | None = None
        for i, t in enumerate(tasks):
            nt: dict[str, Any] | None = None
            for f in self.tfields:
                if f in t:
                    v = t[f]
                    nv = self.seal_value(v, f"{mid}/{t.get('id')}#{f}")
                    if nv is not v:
                        nt = nt if nt is not None else dict(t)
                        nt[f] = nv
            if nt is not None:
                new_tasks = new_tasks if new_tasks is not None else list(tasks)
                new_tasks[i] = nt
        if new_tasks is not None:
            out = out if out is not None else dict(snap)
            out["tasks"] = new_tasks
        return out if out is not None else snap

    def seal_event(self, event: dict[str, Any]) -> None:
        """Seal an event's details that repeat a protected field, and a note, in place."""
        details = event.get("details") or {}
        mid = event.get("milestone_id") or "project"
        tid = details.get("task_id")
        where = f"{mid}/{tid}" if tid else mid
        for key, field in DETAIL_FIELDS.items():
            if field in self.fields and details.get(key):
                details[key] = self.seal_value(details[key], f"{where}#{field.split('.')[1]}")
        data = event.get("data") or {}
        if "note" in self.fields and isinstance(data.get("note"), str):
            data["note"] = self.seal_value(data["note"], "note")

    def seal_note(self, text: str | None) -> str | None:
        if text is None or "note" not in self.fields:
            return text
        return str(self.seal_value(text, "note"))

    # --------------------------------------------------------------- revealing

    def reveal(self, obj: Any, *, strict: bool = False) -> Any:
        """``obj`` (plain data) with every token opened: its text with the key,
        ``[encrypted]`` without. A token that does not verify shows ``[tampered]`` and
        is named on stderr (``strict``: raised as a StorageError, exit 8)."""
        cipher = self.cipher()

        def one(token: str) -> str:
            if cipher is None:
                return PLACEHOLDER
            try:
                return cipher.open(token)
            except WrongKey as exc:
                raise wrong_key_error(exc.found, exc.have) from None
            except Tampered as exc:
                if strict:
                    raise tampered_error(exc.label) from None
                if exc.label not in self._told:
                    self._told.add(exc.label)
                    print(f"milestone: warning: {tampered_error(exc.label).message}",
                          file=sys.stderr, flush=True)
                return TAMPERED

        def walk(x: Any) -> Any:
            if isinstance(x, str):
                if PREFIX not in x:
                    return x
                if x.startswith(PREFIX):
                    return one(x)
                return re.sub(TOKEN_PATTERN, lambda m: one(m.group()), x)
            if isinstance(x, dict):
                return {k: walk(v) for k, v in x.items()}
            if isinstance(x, list):
                return [walk(v) for v in x]
            if isinstance(x, tuple):
                return tuple(walk(v) for v in x)
            return x

        return walk(obj)


def protected_fields(config: Any) -> list[str]:
    enc = (config or {}).get("encryption") or {}
    fields = enc.get("fields") if isinstance(enc, dict) else None
    if not isinstance(fields, list):
        return list(DEFAULT_FIELDS)
    return [f for f in fields if isinstance(f, str) and re.match(FIELD_PATTERN, f)]


# ------------------------------------------------------------------ the files


def key_path(root: Path) -> Path:
    return root / "config" / KEY_FILE


def marker_path(root: Path) -> Path:
    return root / "config" / MARKER_FILE


def read_marker(root: Path) -> str | None:
    """The key id ``config/encryption.json`` names (None: the project is not encrypted)."""
    from ..storage import fsutil

    try:
        raw = fsutil.read_bytes(marker_path(root), 4096)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        kid = json.loads(raw)["key_id"]
        if not isinstance(kid, str) or not re.fullmatch(r"[0-9a-f]{16}", kid):
            raise ValueError
        return kid
    except (ValueError, KeyError, TypeError):
        raise StorageError(f".milestones/config/{MARKER_FILE} is damaged",
                           hint="restore it from git: it names the key id the data is "
                                "encrypted under") from None


def marker_bytes(kid: str) -> bytes:
    return (json.dumps({"schema": 1, "algorithm": "AES-256-GCM", "key_id": kid}, indent=2)
            + "\n").encode("utf-8")


def load_key(root: Path) -> bytes | None:
    """$MILESTONE_KEY, else config/encryption.key, else None."""
    env = os.environ.get(KEY_ENV)
    if env:
        return parse_key(env, f"${KEY_ENV}")
    from ..storage import fsutil

    try:
        raw = fsutil.read_bytes(key_path(root), 4096)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return parse_key(raw.decode("ascii", "replace"), f".milestones/config/{KEY_FILE}")


def write_key_file(path: Path, key: bytes) -> None:
    """Create the key file: mode 0600, O_EXCL (never over an existing file or link)."""
    from ..storage import fsutil

    fsutil.refuse_links(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
    except FileExistsError:
        raise InvalidInput(f"{fsutil.shown(path)} exists already",
                           hint="keep it; `milestone encrypt rotate` makes a new key") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (encode_key(key) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)

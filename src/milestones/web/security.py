"""The dashboard's access rules: the token (non-local binds), sessions, CSRF.

* On 127.0.0.1 (the default) reads are open to the machine; a write needs a
  same-origin session: the double-submit CSRF cookie ``ms_csrf`` echoed in the
  ``X-CSRF-Token`` header (a page sets the cookie), or the token when there is one.
* On any other host a token is generated at start-up and printed once; only its
  SHA-256 is stored (``config/dashboard-token.sha256``, mode 0600). Every request
  but ``/login`` and the assets then needs it: ``Authorization: Bearer TOKEN``, or the
  ``ms_session`` cookie that ``/login?token=TOKEN`` sets. A write by cookie needs the
  CSRF header too (a Bearer token is not sent by a browser on its own).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SESSION_COOKIE = "ms_session"
CSRF_COOKIE = "ms_csrf"
CSRF_HEADER = "x-csrf-token"


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token(root: Path) -> str:
    """A fresh access token; its hash replaces the stored one (mode 0600, written by
    the service layer as every file: no link followed)."""
    from ..project.access import keep_token_hash

    token = secrets.token_urlsafe(32)
    keep_token_hash(root, digest(token))
    return token


def read_hash(root: Path) -> str | None:
    from ..project.access import token_hash

    return token_hash(root)


def token_ok(given: str | None, stored_hash: str | None) -> bool:
    """Whether ``given`` is the token whose hash is stored (constant time)."""
    if not given or not stored_hash:
        return False
    return hmac.compare_digest(digest(given), stored_hash)


def bearer(header: str | None) -> str | None:
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def csrf_ok(cookie: str | None, header: str | None) -> bool:
    return bool(cookie) and bool(header) and hmac.compare_digest(str(cookie), str(header))


def new_csrf() -> str:
    return secrets.token_urlsafe(24)

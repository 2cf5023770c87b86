"""Values between Python and PostgreSQL's text format, as psycopg sends and loads
them (``storage/libpq.py``'s): parameters with their type OIDs, columns by theirs,
and ``?`` placeholders as ``$1``, ``$2`` ...
"""

from __future__ import annotations

import functools
from typing import Any


def bytea(v: bytes) -> bytes:
    if v.startswith(b"\\x"):
        return bytes.fromhex(v[2:].decode("ascii"))
    return v.decode("ascii").encode("latin-1").decode("unicode_escape").encode("latin-1")


def numeric(v: bytes) -> Any:
    from decimal import Decimal

    return Decimal(v.decode("ascii"))


def load_json(v: bytes) -> Any:
    import json

    return json.loads(v)


# A column's value from its text, by type OID, as psycopg loads it; any other type is
# its text (what psycopg gives for a type it has no loader for).
LOADERS: dict[int, Any] = {
    16: lambda v: v == b"t",                            # bool
    17: bytea,                                         # bytea
    20: int, 21: int, 23: int, 26: int,                 # int8, int2, int4, oid
    700: float, 701: float,                             # float4, float8
    1700: numeric,                                     # numeric: a Decimal
    114: load_json, 3802: load_json,                            # json, jsonb
}


def decode(v: bytes) -> str:
    return v.decode("utf-8")


def param(value: Any) -> tuple[int, bytes | None, int]:
    """A parameter as (type OID, bytes, format): the types psycopg gives ours (a ``str``
    is of unknown type, for the server to infer, as psycopg sends it)."""
    if value is None:
        return 0, None, 0
    if isinstance(value, str):
        return 0, value.encode("utf-8"), 0
    if isinstance(value, bool):
        return 16, b"t" if value else b"f", 0
    if isinstance(value, int):
        oid = (21 if -(2**15) <= value < 2**15 else 23 if -(2**31) <= value < 2**31
               else 20 if -(2**63) <= value < 2**63 else 1700)
        return oid, str(value).encode("ascii"), 0
    if isinstance(value, float):
        return 701, repr(value).encode("ascii"), 0
    if isinstance(value, (bytes, bytearray, memoryview)):
        return 17, bytes(value), 1
    raise TypeError(f"cannot pass a {type(value).__name__} to PostgreSQL")


@functools.lru_cache(maxsize=512)
def to_numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1``, ``$2`` ..., outside quotes."""
    out = []
    quoted = False
    n = 0
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "?" and not quoted:
            n += 1
            out.append(f"${n}")
        else:
            out.append(ch)
    return "".join(out)

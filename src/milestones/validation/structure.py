"""Structure rules (MS1xx): the milestone files against the schema generated from the model.

They read the files as written (``ctx.raw``), so one run reports every problem
in every file, each at its file:line:column, where loading would stop at the
first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from .. import model as md
from ..errors import InvalidInput
from ..model.schema import milestone_schema
from .registry import Context, Source, rule

_SCHEMA: dict[str, Any] | None = None


def _schema() -> dict[str, Any]:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = milestone_schema()
    return _SCHEMA


def _files(ctx: Context) -> list[tuple[str, Source, Any]]:
    """(file id from its name, source, parsed data) for files that parsed (once a run)."""
    if "structure.files" not in ctx.memo:
        ctx.memo["structure.files"] = _read_files(ctx)
    files: list[tuple[str, Source, Any]] = ctx.memo["structure.files"]
    return files


def _read_files(ctx: Context) -> list[tuple[str, Source, Any]]:
    out = []
    for rel, (text, data, error) in sorted(ctx.raw.items()):
        if error is None:
            fid = rel.rsplit("/", 1)[-1].removesuffix(".yaml")
            src = ctx.sources.get(fid)  # the same file: share its positions, compose once
            if src is None or src.rel != rel or src.text != text:
                src = Source(rel, text)
            out.append((fid, src, data))
    return out


def _at(
    ctx: Context,
    src: Source,
    path: Sequence[str | int],
    message: str,
    ref: str | None,
    hint: str | None = None,
) -> None:
    ctx.report(message, ref=ref, path=(src.rel, path), source=src, hint=hint)


def _objects(
    ctx: Context, data: Any
) -> list[tuple[str, Sequence[str | int], Mapping[str, Any], str]]:
    """(kind, path, mapping, ref) for the milestone and each task mapping (once a run)."""
    memo: dict[int, Any] = ctx.memo.setdefault("structure.objects", {})
    key = id(data)  # the data lives in ctx.raw for the whole run
    if key not in memo:
        memo[key] = _list_objects(data)
    found: list[tuple[str, Sequence[str | int], Mapping[str, Any], str]] = memo[key]
    return found


def _list_objects(data: Any) -> list[tuple[str, Sequence[str | int], Mapping[str, Any], str]]:
    if not isinstance(data, Mapping):
        return []
    mid = str(data.get("id", "?"))
    out: list[tuple[str, Sequence[str | int], Mapping[str, Any], str]] = [
        ("milestone", (), data, mid)
    ]
    tasks = data.get("tasks")
    if isinstance(tasks, list):
        for i, t in enumerate(tasks):
            if isinstance(t, Mapping):
                out.append(("task", ("tasks", i), t, f"{mid}/{t.get('id', f'#{i + 1}')}"))
    return out


def _props(kind: str) -> dict[str, Any]:
    s = _schema()
    props: dict[str, Any] = (s if kind == "milestone" else s["$defs"]["task"])["properties"]
    return props


_WITH: dict[tuple[str, tuple[str, ...]], list[tuple[str, dict[str, Any]]]] = {}


def _props_with(kind: str, *attrs: str) -> list[tuple[str, dict[str, Any]]]:
    """The fields of ``kind`` whose schema has one of ``attrs`` (a few, not all)."""
    key = (kind, attrs)
    if key not in _WITH:
        _WITH[key] = [(k, v) for k, v in _props(kind).items() if any(a in v for a in attrs)]
    return _WITH[key]


@rule(
    "MS100",
    "structure",
    "error",
    "a milestone file is not readable YAML",
    "fix the YAML syntax at that line (indentation, colons, quotes)",
)
def unreadable(ctx: Context) -> None:
    for rel, (_text, _data, error) in sorted(ctx.raw.items()):
        if error is not None:
            m = re.match(r"^(.*?):(\d+)(?::(\d+))?: (.*)$", error.split(" — ")[0])
            if m:
                ctx.report(
                    m.group(4),
                    file=rel,
                    line=int(m.group(2)),
                    column=int(m.group(3)) if m.group(3) else None,
                )
            else:
                ctx.report(error, file=rel)


@rule(
    "MS101",
    "structure",
    "error",
    "a required field is missing",
    "add the field (every milestone and task needs an id and a title)",
)
def required(ctx: Context) -> None:
    for _fid, src, data in _files(ctx):
        if not isinstance(data, Mapping):
            _at(
                ctx,
                src,
                (),
                "the file must be a mapping of milestone fields",
                None,
                "start the file with `id: milestone-001`",
            )
            continue
        for kind, path, obj, ref in _objects(ctx, data):
            for key in ("id", "title"):
                if obj.get(key) in (None, ""):
                    _at(ctx, src, path, f"{kind} {ref} has no {key}", ref)


_PY_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "array": list,
    "object": Mapping,
    "boolean": bool,
}


_TYPE_OK: dict[tuple[type, Any], bool] = {}


def _type_ok(value: Any, types: Any) -> bool:
    """Does ``value`` fit the schema ``types``? (It depends on the value's type alone.)"""
    key = (type(value), types if isinstance(types, (str, tuple)) else tuple(types))
    ok = _TYPE_OK.get(key)
    if ok is None:
        ok = _TYPE_OK[key] = _check_type(value, types)
    return ok


def _check_type(value: Any, types: Any) -> bool:
    wanted = types if isinstance(types, (list, tuple)) else [types]
    for t in wanted:
        if t == "null" and value is None:
            return True
        if (
            t in _PY_TYPES
            and isinstance(value, _PY_TYPES[t])
            and not (t in ("integer", "number") and isinstance(value, bool))
        ):
            return True
        if t == "string" and isinstance(value, (date, datetime)):
            return True  # unquoted YAML dates are strings to us
        if t == "number" and isinstance(value, int):
            return True
    return False


@rule(
    "MS102",
    "structure",
    "error",
    "a field has the wrong type",
    "give the field a value of the type the schema says",
)
def types(ctx: Context) -> None:
    for _fid, src, data in _files(ctx):
        for kind, path, obj, ref in _objects(ctx, data):
            typed = _typed(kind)
            for key, value in obj.items():
                spec = typed.get(key)
                if spec is None:
                    continue
                wanted, item_type, fits = spec
                ok = fits.get(type(value))
                if ok is None:
                    ok = fits[type(value)] = _type_ok(value, wanted)
                if not ok:
                    want = wanted if isinstance(wanted, str) else " or ".join(wanted)
                    _at(
                        ctx,
                        src,
                        (*path, key),
                        f"{ref} {key} must be {want}, not {type(value).__name__} {value!r}",
                        ref,
                    )
                elif item_type and isinstance(value, list):
                    for i, item in enumerate(value):
                        if not _type_ok(item, item_type):
                            _at(
                                ctx,
                                src,
                                (*path, key, i),
                                f"{ref} {key} items must be {item_type}",
                                ref,
                            )


_TYPED: dict[str, dict[str, tuple[Any, Any, dict[type, bool]]]] = {}


def _typed(kind: str) -> dict[str, tuple[Any, Any, dict[type, bool]]]:
    """The fields of ``kind`` with a schema type: field -> (type(s), type of its items
    when it is an array of them, whether a value of a Python type fits, as found)."""
    found = _TYPED.get(kind)
    if found is None:
        found = _TYPED[kind] = {}
        for key, spec in _props(kind).items():
            if "type" not in spec:
                continue
            wanted = spec["type"] if isinstance(spec["type"], str) else tuple(spec["type"])
            item_type = None
            if spec.get("type") == "array":
                items = spec.get("items") or {}
                item_type = items.get("type") or ("object" if "$ref" in items else None)
            found[key] = (wanted, item_type, {})
    return found


@rule(
    "MS103",
    "structure",
    "error",
    "a field's value is not one of the allowed values",
    "use one of the listed values",
)
def enums(ctx: Context) -> None:
    for _fid, src, data in _files(ctx):
        for kind, path, obj, ref in _objects(ctx, data):
            for key, spec in _props_with(kind, "enum"):
                allowed = spec.get("enum")
                if allowed and key in obj and obj[key] is not None and obj[key] not in allowed:
                    import difflib  # only for a finding (~0.5 ms of every write otherwise)

                    close = difflib.get_close_matches(
                        str(obj[key]), [str(a) for a in allowed if a], n=1
                    )
                    _at(
                        ctx,
                        src,
                        (*path, key),
                        f"{ref} {key} {obj[key]!r} is not one of "
                        f"{', '.join(str(a) for a in allowed if a)}",
                        ref,
                        f"did you mean {close[0]!r}?" if close else None,
                    )


@rule(
    "MS104",
    "structure",
    "error",
    "an id does not have the required form",
    "milestone ids look like milestone-003, task ids like task-2",
)
def ids(ctx: Context) -> None:
    for fid, src, data in _files(ctx):
        for kind, path, obj, ref in _objects(ctx, data):
            value = obj.get("id")
            pattern = md.MILESTONE_ID_RE if kind == "milestone" else md.TASK_ID_RE
            if isinstance(value, str) and value and not pattern.match(value):
                _at(ctx, src, (*path, "id"), f"{kind} id {value!r} is not a {kind} id", ref)
            deps = obj.get("depends_on")
            dep_re, what = (
                (md.MILESTONE_ID_RE, "a milestone id")
                if kind == "milestone"
                else (md.TASK_REF_RE, "a task reference")
            )
            for j, dep in enumerate(deps if isinstance(deps, list) else []):
                if isinstance(dep, str) and not dep_re.match(dep):
                    _at(
                        ctx,
                        src,
                        (*path, "depends_on", j),
                        f"{ref} depends_on {dep!r} is not {what}",
                        ref,
                        "use ids like milestone-002"
                        if kind == "milestone"
                        else "use task-2, or milestone-003/task-2 for a task of another milestone",
                    )
        if (
            isinstance(data, Mapping)
            and isinstance(data.get("id"), str)
            and md.MILESTONE_ID_RE.match(data["id"])
            and data["id"] != fid
        ):
            _at(
                ctx,
                src,
                ("id",),
                f"id {data['id']} does not match the file name {fid}.yaml",
                data["id"],
                f"set `id: {fid}` or rename the file",
            )


@rule(
    "MS105",
    "structure",
    "error",
    "two tasks in a milestone share an id",
    "give each task its own id (the next free one is shown)",
)
def duplicate_ids(ctx: Context) -> None:
    for _fid, src, data in _files(ctx):
        if not isinstance(data, Mapping) or not isinstance(data.get("tasks"), list):
            continue
        seen: dict[str, int] = {}
        tasks = [t for t in data["tasks"] if isinstance(t, Mapping)]
        numbers = [
            int(t["id"][5:])
            for t in tasks
            if isinstance(t.get("id"), str) and md.TASK_ID_RE.match(t["id"])
        ]
        for i, t in enumerate(data["tasks"]):
            tid = t.get("id") if isinstance(t, Mapping) else None
            if not isinstance(tid, str):
                continue
            if tid in seen:
                _at(
                    ctx,
                    src,
                    ("tasks", i, "id"),
                    f"duplicate task id {tid} (first at task #{seen[tid] + 1})",
                    f"{data.get('id')}/{tid}",
                    f"rename it, e.g. task-{max(numbers, default=0) + 1}",
                )
            seen.setdefault(tid, i)


@rule(
    "MS106",
    "structure",
    "warning",
    "a field is not one milestone knows",
    "check the spelling; unknown fields are kept but not used",
)
def unknown_keys(ctx: Context) -> None:
    for _fid, src, data in _files(ctx):
        for kind, path, obj, ref in _objects(ctx, data):
            props = _props(kind)
            for key in obj:
                if key not in props:
                    _at(ctx, src, (*path, key), f"unknown {kind} field {key!r}", ref,
                        _nearest_field(key, props))


def _nearest_field(key: Any, props: Mapping[str, Any]) -> str | None:
    import difflib

    close = difflib.get_close_matches(str(key), list(props), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def new_unknown_keys(
    before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> list[tuple[Sequence[str | int], str, str | None]]:
    """Fields a hand edit brought into a milestone (``after``) that no milestone or task
    has: (path, what, nearest known field) each; ones ``before`` had already are not new
    (the edit that added them was told)."""
    old = {ref: obj for _k, _p, obj, ref in _list_objects(before)} if before else {}
    out: list[tuple[Sequence[str | int], str, str | None]] = []
    for kind, path, obj, ref in _list_objects(after):
        props = _props(kind)
        known = old.get(ref) or {}
        for key in obj:
            if key not in props and key not in known:
                out.append(((*path, key), f"unknown {kind} field {key!r}",
                            _nearest_field(key, props)))
    return out


@rule(
    "MS107",
    "structure",
    "error",
    "a date or timestamp is not valid",
    "write dates as YYYY-MM-DD (a real date) and timestamps as ISO 8601",
)
def dates(ctx: Context) -> None:
    for _fid, src, data in _files(ctx):
        for kind, path, obj, ref in _objects(ctx, data):
            for key, spec in _props_with(kind, "format"):
                value = obj.get(key)
                if value is None or isinstance(value, (date, datetime)):
                    continue
                fmt = spec.get("format")
                if fmt == "date":
                    try:
                        md.check_date(value, key)
                    except Exception as exc:
                        _at(ctx, src, (*path, key), f"{ref} {key}: {exc}".split(" — ")[0], ref)
                elif fmt == "date-time" and isinstance(value, str):
                    try:
                        datetime.fromisoformat(value.replace("Z", "+00:00"))
                    except ValueError:
                        _at(
                            ctx,
                            src,
                            (*path, key),
                            f"{ref} {key} {value!r} is not an ISO 8601 timestamp",
                            ref,
                        )


@rule(
    "MS108",
    "structure",
    "error",
    "a title is empty, too long, or has control characters",
    f"use one plain line of 1 to {md.MAX_TITLE} characters",
)
def titles(ctx: Context) -> None:
    for _fid, src, data in _files(ctx):
        for _kind, path, obj, ref in _objects(ctx, data):
            value = obj.get("title")
            if not isinstance(value, str) or not value:
                continue
            try:
                md.check_title(value, "title")
            except Exception as exc:
                _at(ctx, src, (*path, "title"), f"{ref} {str(exc).split(' — ')[0]}", ref)


@rule(
    "MS109",
    "structure",
    "error",
    "a number is out of range",
    "progress is 0-100, estimates 0-10000 hours, time_spent 0 or more",
)
def ranges(ctx: Context) -> None:
    for _fid, src, data in _files(ctx):
        for kind, path, obj, ref in _objects(ctx, data):
            for key, spec in _props_with(kind, "minimum", "maximum"):
                value = obj.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                low, high = spec.get("minimum"), spec.get("maximum")
                if (low is not None and value < low) or (high is not None and value > high):
                    _at(ctx, src, (*path, key), f"{ref} {key} {value} is out of range", ref)


# Any C0 or C1 control character: a text without one passes ``model.check_text``.
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# The texts a write checks for control characters (``model.check_text``), by kind:
# the one that may hold several lines, those of one line, the lists of one-line items.
_TEXTS = {
    "milestone": ("description", ("owner", "workflow"),
                  ("assignees", "depends_on", "tags", "success_criteria")),
    "task": ("description", ("assignee", "run", "phase", "spec_ref"),
             ("depends_on", "skills", "blockers", "paths", "requirements")),
}


@rule(
    "MS110",
    "structure",
    "error",
    "a text has control characters",
    "remove them (terminal escapes, bells, NULs: an edit or a paste brought them in); "
    "only a description may hold line breaks and tabs",
)
def control_characters(ctx: Context) -> None:
    for _fid, src, data in _files(ctx):
        for kind, path, obj, ref in _objects(ctx, data):
            lines, single, lists = _TEXTS[kind]
            found: list[tuple[tuple[str | int, ...], Any, bool]] = []
            for key in (lines, *single):
                value = obj.get(key)
                if isinstance(value, str) and _ANY_CONTROL.search(value):
                    found.append(((key,), value, key == lines))
            for key in lists:
                items = obj.get(key)
                if isinstance(items, list):
                    found += [((key, i), item, False) for i, item in enumerate(items)
                              if isinstance(item, str) and _ANY_CONTROL.search(item)]
                elif isinstance(items, str) and _ANY_CONTROL.search(items):
                    found.append(((key,), items, False))
            for where, value, multiline in found:  # the few with a control character
                what = where[0] if len(where) == 1 else f"{where[0]}[{where[1]}]"
                try:
                    md.check_text(value, str(what), single_line=not multiline,
                                  limit=len(value) + 1)
                except InvalidInput as exc:
                    _at(ctx, src, (*path, *where), f"{ref} {str(exc).split(' — ')[0]}", ref)

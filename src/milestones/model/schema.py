"""The JSON Schema of a milestone file, generated from the model's records.

Types come from the records' annotations; enums, id patterns, date formats and
limits from the model's constants. Editors use it through the
``# yaml-language-server: $schema=…`` line the tool writes at the top of files.
"""

from __future__ import annotations

import typing
from typing import Any

from .. import model as md

SCHEMA_ID = "https://milestone.dev/schema/milestone-1.json"

_DATE = {"type": ["string", "null"], "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}

# Constraints the annotations cannot say.
MILESTONE_EXTRA: dict[str, dict[str, Any]] = {
    "id": {"pattern": md.MILESTONE_ID_RE.pattern},
    "title": {"minLength": 1, "maxLength": md.MAX_TITLE},
    "status": {"enum": list(md.MILESTONE_STATUSES)},
    "priority": {"enum": list(md.PRIORITIES)},
    "start_date": _DATE,
    "due_date": _DATE,
    "created_at": _TIMESTAMP,
    "updated_at": _TIMESTAMP,
    "completed_at": _TIMESTAMP,
    "depends_on": {"items": {"type": "string", "pattern": md.MILESTONE_ID_RE.pattern}},
    "workflow": {"enum": [None, "kiro", "standard"]},
}
TASK_EXTRA: dict[str, dict[str, Any]] = {
    "id": {"pattern": md.TASK_ID_RE.pattern},
    "title": {"minLength": 1, "maxLength": md.MAX_TITLE},
    "status": {"enum": list(md.TASK_STATUSES)},
    "progress": {"minimum": 0, "maximum": 100},
    "estimate": {"minimum": 0, "maximum": 10000},
    "time_spent": {"minimum": 0},
    "depends_on": {"items": {"type": "string", "pattern": r"^(milestone-\d{3,}/)?task-\d+$"}},
    "started_at": _TIMESTAMP,
    "completed_at": _TIMESTAMP,
    "timer_started_at": _TIMESTAMP,
}
DESCRIPTIONS = {
    "depends_on": "ids this waits for",
    "estimate": "hours",
    "time_spent": "seconds, accumulated over start/stop",
    "progress": "percent, 0-100",
    "run": "a command an agent runs for the task",
    "paths": "globs of the files the task touches",
}


def _json_type(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = [_json_type(a) for a in args if a is not type(None)]
        nullable = type(None) in args
        if len(parts) == 1:
            out = dict(parts[0])
            if nullable:
                t = out.get("type")
                out["type"] = [t, "null"] if isinstance(t, str) else [*(t or []), "null"]
            return out
        return {"anyOf": [*parts, {"type": "null"}] if nullable else parts}
    if origin is list:
        inner = args[0] if args else Any
        if inner is md.Task:
            return {"type": "array", "items": {"$ref": "#/$defs/task"}}
        return {"type": "array", "items": _json_type(inner)}
    if origin is dict or tp is dict:
        return {"type": "object"}
    if tp is str:
        return {"type": "string"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is bool:
        return {"type": "boolean"}
    return {}


def _object(cls: type, extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    for name in cls.FIELDS:  # type: ignore[attr-defined]
        if name == "extra":
            continue
        prop = _json_type(hints[name])
        for key, value in extra.get(name, {}).items():
            if key == "items":
                prop["items"] = value
            else:
                prop[key] = value
        if name in DESCRIPTIONS:
            prop["description"] = DESCRIPTIONS[name]
        props[name] = prop
    return {
        "type": "object",
        "required": ["id", "title"],
        "properties": props,
        "additionalProperties": False,
    }


def milestone_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one milestone YAML file."""
    schema = _object(md.Milestone, MILESTONE_EXTRA)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "milestone",
        **schema,
        "$defs": {"task": _object(md.Task, TASK_EXTRA)},
    }

"""Reading untrusted YAML safely and writing milestone YAML people can edit.

Reading: size limit, strict UTF-8, no anchors or aliases (so no alias bombs),
duplicate keys refused, errors as ``file:line:column: problem``. Writing: a fast
PyYAML dump for files only the tool has written, and a ruamel.yaml round trip
for files a person has edited, which keeps their comments and key order.
PyYAML and ruamel are imported on first use: read commands rarely need them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

from ..errors import InvalidInput
from ..model import MILESTONE_FIELDS, TASK_FIELDS, copy_record, utc_stamp

T = TypeVar("T")

MAX_FILE_BYTES = 10 * 1024 * 1024
# Deeper than any file of ours needs; shallow enough that nothing reading the data
# (copying, JSON, validation) ever meets Python's recursion limit.
MAX_DEPTH = 64
SCHEMA_FILE = "config/milestone.schema.json"
# Editors with the YAML language server check files against the schema as you type.
SCHEMA_COMMENT = f"# yaml-language-server: $schema=../{SCHEMA_FILE}"
_MAYBE_ANCHOR = re.compile(r"(?:^|[\s\[\{,:-])[&*][^\s,\]\}]")


def check_writable(size: int, where: str) -> None:
    """Refuse, before it is written, a file the tool could not read back (``decode``)."""
    if size > MAX_FILE_BYTES:
        raise InvalidInput(
            f"{where} would be {size:,} bytes, over the 10 MB ({MAX_FILE_BYTES:,} bytes) "
            f"limit for the files the tool reads back; nothing was changed",
            hint="shorten its longest texts (descriptions) or split it into more milestones",
        )


def decode(raw: bytes, where: str) -> str:
    if len(raw) > MAX_FILE_BYTES:
        raise InvalidInput(
            f"{where} is {len(raw):,} bytes, over the 10 MB ({MAX_FILE_BYTES:,} bytes) limit",
            hint="split it into smaller files",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"{where}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x})",
            hint="save the file as UTF-8",
        ) from None


def _loader() -> Any:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):  # type: ignore[misc, valid-type]
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    mark = key_node.start_mark
                    raise InvalidInput(
                        f"{{where}}:{mark.line + 1}:{mark.column + 1}: "
                        "mapping keys must be plain text",
                        hint="write the key as a plain word, e.g. `title:`",
                    )
                if key in seen:
                    mark = key_node.start_mark
                    raise InvalidInput(
                        f"{{where}}:{mark.line + 1}:{mark.column + 1}: duplicate key {key!r}",
                        hint="keep one of them",
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_timestamp(self, node: Any) -> Any:
            # PyYAML raises a bare ValueError for dates that do not exist (2026-02-30).
            try:
                value = super().construct_yaml_timestamp(node)
                if isinstance(value, datetime) and value.tzinfo is not None:
                    value.astimezone(UTC)  # 9999-12-31T23:00-12:00 is past the calendar in UTC
                return value
            except OverflowError:
                mark = node.start_mark
                raise InvalidInput(
                    f"{{where}}:{mark.line + 1}:{mark.column + 1}: {node.value!r} is outside "
                    "the calendar in UTC (years 1 to 9999)",
                    hint="give a time within years 1 to 9999, e.g. 2026-12-01T09:00:00Z",
                ) from None
            except (ValueError, AttributeError) as exc:  # AttributeError: `!!timestamp foo`
                mark = node.start_mark
                why = f" ({exc})" if isinstance(exc, ValueError) else ""
                raise InvalidInput(
                    f"{{where}}:{mark.line + 1}:{mark.column + 1}: "
                    f"{node.value!r} is not a real date{why}",
                    hint="use a date that exists, as YYYY-MM-DD, e.g. 2026-02-28",
                ) from None

    StrictLoader.add_constructor("tag:yaml.org,2002:map", StrictLoader.construct_yaml_map)
    StrictLoader.add_constructor(
        "tag:yaml.org,2002:timestamp", StrictLoader.construct_yaml_timestamp
    )
    return StrictLoader


_LOADER: Any = None


def _refuse_aliases(text: str, where: str) -> None:
    import yaml

    if not _MAYBE_ANCHOR.search(text):
        return
    try:
        for ev in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            anchor = getattr(ev, "anchor", None)
            if isinstance(ev, yaml.AliasEvent) or anchor:
                mark = ev.start_mark
                pos = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
                raise InvalidInput(
                    f"{where}{pos}: YAML anchors "
                    "and aliases are not allowed in milestone files",
                    hint="write the value out in full",
                )
    except yaml.YAMLError:
        return  # the real load below reports the syntax error with its position


class _TooDeep(Exception):
    pass


def jsonable(value: Any, _depth: int = 0) -> Any:
    """YAML's richer types (dates, timestamps) as the JSON-safe values we store."""
    if isinstance(value, Mapping):
        if _depth >= MAX_DEPTH:
            raise _TooDeep
        return {str(k): jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if _depth >= MAX_DEPTH:
            raise _TooDeep
        return [jsonable(v, _depth + 1) for v in value]
    if isinstance(value, datetime):
        return utc_stamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, set)):
        return str(value)
    return value


def load_text(text: str, where: str) -> Any:
    """Parse one YAML document safely; errors name ``where`` and the line."""
    import yaml

    global _LOADER
    if _LOADER is None:
        _LOADER = _loader()
    _refuse_aliases(text, where)
    try:
        data = yaml.load(text, Loader=_LOADER)
    except InvalidInput as exc:
        exc.message = exc.message.replace("{where}", where)
        exc.args = (exc.message,)
        raise
    except yaml.MarkedYAMLError as exc:
        mark, problem = _error_mark(exc, text)
        pos = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        if "maximum nesting depth" in problem:
            raise _too_deep(where, _deep_position(text) or pos) from None
        hint = "fix the YAML syntax (check indentation and colons)"
        lines = text.splitlines()
        if mark and mark.line < len(lines) and "\t" in lines[mark.line][: mark.column + 1]:
            problem, hint = f"{problem} (a tab)", "indent YAML with spaces, not tabs"
        raise InvalidInput(f"{where}{pos}: {problem}", hint=hint) from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{where}: malformed YAML ({exc})", hint="fix the YAML syntax") from None
    except RecursionError:
        raise _too_deep(where, _deep_position(text)) from None
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        # PyYAML's constructors raise these for explicit tags on values that do not
        # fit them: `!!int 08`, `!!float x`, `!!bool maybe`.
        raise InvalidInput(
            f"{where}: a value does not fit its YAML tag ({exc!r})",
            hint="remove the !!tag or fix the value",
        ) from None
    try:
        return jsonable(data)
    except _TooDeep:
        raise _too_deep(where, _deep_position(text)) from None
    except OverflowError as exc:  # an aware timestamp that leaves the calendar in UTC
        raise InvalidInput(
            f"{where}: a timestamp is out of range ({exc})", hint="use a date after year 1"
        ) from None


# An error the parser finds only on the next token (an unclosed bracket or quote, a
# key without its colon) is reported where the construct began, not a line late.
_OPENED_HERE = (
    "while parsing a flow", "while scanning a quoted scalar", "while scanning a simple key"
)


def _error_mark(exc: Any, text: str) -> tuple[Any, str]:
    """Where a YAML syntax error really is, and what it is."""
    problem = exc.problem or exc.context or "malformed YAML"
    mark, context = exc.problem_mark or exc.context_mark, exc.context or ""
    opened = exc.context_mark
    if (mark is not None and opened is not None and opened.line < mark.line
            and context.startswith(_OPENED_HERE)):
        return opened, f"{problem} ({context} that starts here)"
    if mark is not None and mark.line > 0 and mark.line >= len(text.rstrip().splitlines()):
        # Past the last line (end of stream): point at the last line with text.
        last = len(text.rstrip().splitlines()) - 1
        return type(mark)(mark.name, mark.index, last, 0, None, None), problem
    return mark, problem


def _too_deep(where: str, pos: str) -> InvalidInput:
    return InvalidInput(
        f"{where}{pos}: nested more than {MAX_DEPTH} levels deep",
        hint="flatten the document (no milestone file needs more than a few levels)",
    )


def _deep_position(text: str) -> str:
    """``:line:column`` where nesting first passes ``MAX_DEPTH``, from the event stream."""
    import yaml

    depth = 0
    try:  # the pure-Python parser: libyaml's stops at its own limit, further on
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                mark = ev.start_mark
                if depth > MAX_DEPTH and mark is not None:
                    return f":{mark.line + 1}:{mark.column + 1}"
            elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except (yaml.YAMLError, RecursionError):
        pass
    return ""


def key_line(text: str, path: Sequence[str | int]) -> int | None:
    """The line (1-based) of the key or item at ``path`` in the YAML ``text`` (its
    deepest part that exists), for messages about a value; None when unknown."""
    import yaml

    try:
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, RecursionError):
        return None
    line = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            hit = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
            if hit is None:
                break
            line, node = hit[0].start_mark.line + 1, hit[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def load_bytes(raw: bytes, where: str) -> Any:
    return load_text(decode(raw, where), where)


# ----------------------------------------------------------------- writing

_ALWAYS = ("id", "title", "status")
_ZERO_DEFAULTS = ("time_spent", "progress")


def prune(d: Mapping[str, Any], fields: Collection[str] = MILESTONE_FIELDS) -> dict[str, Any]:
    """Drop empty values so files stay short; loading fills the same defaults back.

    Only model ``fields`` are dropped: loading gives an absent one its empty
    default, but an unknown key (kept in ``extra``) or an empty mapping such as
    ``completion: {}`` would come back missing or as None.
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in _ALWAYS or k not in fields:
            out[k] = v
        elif v is None or v == "" or v == [] or (k in _ZERO_DEFAULTS and v == 0):
            continue
        elif k == "tasks":
            out[k] = [prune(t, TASK_FIELDS) for t in v]
        else:
            out[k] = v
    return out


def dump_fast(d: Mapping[str, Any], *, reuse: bool = False) -> str:
    """A milestone's YAML: PyYAML's text, written by ``yamlfast`` key by key and task
    by task, PyYAML itself writing only the keys and tasks ``yamlfast`` does not know
    (a block mapping's entries and a block sequence's items are written each on its
    own, so the pieces join into the text PyYAML gives for the whole). ``reuse``: a
    writer that writes again and again (a long-lived process) takes the text of task
    records it rendered before from a cache; a one-shot write renders every record
    (copying each for the cache would cost more than it saves)."""
    from . import yamlfast

    parts: list[str] = []
    for k, v in d.items():
        if k == "tasks" and v:
            parts.append("tasks:\n")
            parts.extend(f"{line}\n" for line in _task_lines(v, reuse))
            continue
        one = prune({k: v})
        if one:
            parts.append(yamlfast.dump(one) or _pyyaml_dump(one))
    text = "".join(parts) if parts else _pyyaml_dump(prune(d))
    return f"{SCHEMA_COMMENT}\n{text}"


def _task_lines(tasks: list[Any], reuse: bool) -> list[str]:
    """The YAML lines of a milestone's tasks; with ``reuse`` each task's from the
    cache when the same record was written before; PyYAML's for a task ``yamlfast``
    does not know how to write."""
    from . import yamlfast

    out: list[str] = []
    for t in tasks:
        lines = _TASK_TEXT.get(t) if reuse else None
        if lines is None:
            one = prune(t, TASK_FIELDS) if type(t) is dict else t
            try:
                lines = yamlfast.task_lines(one)
            except (yamlfast.Unsupported, AttributeError, TypeError):
                # "\n" only: a title may hold U+2028, which str.splitlines() splits at
                lines = _pyyaml_dump([one]).removesuffix("\n").split("\n")
            if reuse:
                _TASK_TEXT.put(t, lines)
        out.extend(lines)
    return out


class RecordText(Generic[T]):
    """What task records written before were rendered to (their YAML lines, their
    JSON): a milestone of 1,000 tasks rewritten because one of them changed renders
    that one.

    Keyed by the record itself: snapshots share the task records a write did not
    change with the snapshot before it (``events.apply``) and are never changed in
    place. A copy taken at rendering guards that: a record whose content changed
    is rendered again. (A value changing type but not ``==`` in place, ``1`` to
    ``1.0``, would slip through; nothing writes that way.)
    """

    LIMIT = 100_000

    def __init__(self) -> None:
        self.texts: dict[int, tuple[Any, Any, T]] = {}

    def get(self, record: Any) -> T | None:
        hit = self.texts.get(id(record))
        if hit is None or hit[0] is not record or hit[1] != record:
            return None
        return hit[2]

    def put(self, record: Any, text: T) -> None:
        if len(self.texts) >= self.LIMIT:
            self.texts.clear()
        self.texts[id(record)] = (record, copy_record(record), text)


_TASK_TEXT: RecordText[list[str]] = RecordText()


def _pyyaml_dump(data: Any) -> str:
    import yaml

    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(base):  # type: ignore[misc, valid-type]
        def ignore_aliases(self, data: Any) -> bool:
            return True  # a list met twice is written twice: we refuse to read &anchors

    text: str = yaml.dump(
        data,
        Dumper=Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return text


def _plain(value: Any) -> Any:
    """A ruamel value as plain Python, for comparison with ours."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return jsonable(value) if not isinstance(value, str) else str(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    return jsonable(value)


_RESOLVER: Any = None


def _yaml11_safe(value: Any) -> Any:
    """Quote the strings our YAML 1.1 reader would take for something else.

    ruamel writes YAML 1.2, where ``yes``, ``off``, ``1_000`` and ``12:30`` are
    plain text; PyYAML would read them back as a bool or a number.
    """
    global _RESOLVER
    if isinstance(value, str):
        import yaml
        from ruamel.yaml.scalarstring import DoubleQuotedScalarString

        if _RESOLVER is None:
            _RESOLVER = yaml.resolver.Resolver()
        tag = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))
        return value if tag == "tag:yaml.org,2002:str" else DoubleQuotedScalarString(value)
    if isinstance(value, Mapping):
        return {k: _yaml11_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml11_safe(v) for v in value]
    return value


def _merge_map(target: Any, new: Mapping[str, Any]) -> None:
    from ruamel.yaml.comments import CommentedMap

    for key in [k for k in target if k not in new]:
        del target[key]
    for key, value in new.items():
        if key in target and _plain(target[key]) == value:
            continue
        if key == "tasks" and key in target and isinstance(value, list):
            _merge_tasks(target[key], value)
        elif isinstance(value, Mapping) and isinstance(target.get(key), CommentedMap):
            _merge_map(target[key], value)
        else:
            target[key] = _yaml11_safe(value)


def _merge_tasks(seq: Any, tasks: list[dict[str, Any]]) -> None:
    from ruamel.yaml.comments import CommentedMap

    existing = {str(t.get("id")): t for t in seq if isinstance(t, Mapping)}
    rebuilt = []
    for task in tasks:
        node = existing.get(task["id"])
        if node is None:
            node = CommentedMap()
            for k, v in task.items():
                node[k] = _yaml11_safe(v)
        else:
            _merge_map(node, task)
        rebuilt.append(node)
    if [id(x) for x in seq] != [id(x) for x in rebuilt]:
        seq[:] = rebuilt


def dump_roundtrip(old_text: str, d: Mapping[str, Any]) -> str:
    """Write ``d`` into the person's file ``old_text``, keeping comments and key order."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.width = 100
    yaml.preserve_quotes = True
    try:
        doc = yaml.load(old_text)
    except Exception:
        doc = None
    if not isinstance(doc, Mapping):
        return dump_fast(d)
    pruned = prune(d)
    _merge_map(doc, pruned)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    text = buf.getvalue()
    # Whatever still reads back differently (say, a key like `yes:`): write it afresh.
    try:
        same = _canonical(load_text(text, "the rewritten file")) == _canonical(pruned)
    except InvalidInput:
        same = False
    return text if same else dump_fast(d)


def _canonical(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, ensure_ascii=False)

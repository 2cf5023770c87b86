"""The fast path: the commands people and agents run most, without click.

Loading click and the command group is about a fifth of a read's time. A command line
made only of the words and options below (``milestone ready --limit 5 --json``,
``milestone -C app status 3``, ``milestone task done 3/2``, ``milestone agent claim
--agent a1 --json``) is parsed here and runs the very function the click command runs
(``cli/reads.py``, ``cli/steps.py``), with the same output, error lines, exit codes and
metrics (``cli/output.py``). Anything else goes to click, which owns the rest: help,
a value it would convert or refuse (``--limit 0``, ``--limit=5``, ``-n5``, an unknown
option or status), an option given twice, ``--debug``. So this parser only ever says
yes to a command line click would read the same way, or no.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from .output import Interrupted, after_command, echo, failure, print_warnings, wants_json

_COUNT = re.compile(r"[1-9][0-9]{0,8}")  # what click's IntRange(min=1) takes, written plainly


class Spec(NamedTuple):
    """A command's words: flags, options with one value (``values``, or ``many`` for
    the repeatable ones), and its REF argument (None: takes none)."""

    run: Callable[..., None]
    flags: dict[str, str]
    values: dict[str, str]
    many: dict[str, str]
    ref: bool | None  # True: required, False: optional, None: none


def _specs() -> dict[str, Spec]:
    from functools import partial

    from . import reads, steps

    ui = {"--ui": "ui"}
    limit = {"--limit": "limit", "-n": "limit"}
    moved = {"--force": "force", "--json": "as_json"}
    return {
        "task start": Spec(partial(steps.task_move, verb="Started", method="start_task"),
                           moved, {}, {}, True),
        "task done": Spec(partial(steps.task_move, verb="Completed", method="complete_task"),
                          moved, {}, {}, True),
        "agent claim": Spec(steps.claim, {"--json": "as_json"},
                            {"--lease": "lease", "--agent": "agent"}, {}, False),
        "status": Spec(reads.status, {"--all": "all_", "-a": "all_", "--json": "as_json"},
                       ui, {}, False),
        "next": Spec(reads.next_, {"--all": "all_", "-a": "all_", "--json": "as_json"},
                     {**limit, **ui}, {}, False),
        "ready": Spec(reads.ready, {"--json": "as_json"}, limit, {}, False),
        "show": Spec(reads.show, {"--critical-path": "critical", "--json": "as_json"},
                     ui, {}, True),
        "list": Spec(reads.list_, {"--overdue": "overdue", "--all": "all_", "-a": "all_",
                                   "--json": "as_json"},
                     {**limit, **ui, "--owner": "owner", "--after": "after"},
                     {"--status": "statuses", "-s": "statuses", "--tag": "tags",
                      "--priority": "priorities", "-p": "priorities"}, None),
    }


def _parameters(spec: Spec) -> dict[str, Any]:
    """Every parameter of the command at its default, as click would pass it."""
    params: dict[str, Any] = dict.fromkeys(spec.flags.values(), False)
    params.update(dict.fromkeys(spec.values.values()))
    params.update(dict.fromkeys(spec.many.values(), ()))
    if spec.ref is not None:
        params["ref"] = None
    return params


def _valid(name: str, value: str) -> Any:
    """The value of option ``name`` as click would make it, or None when click should
    judge it (it may refuse it, or read it another way)."""
    if not value or value.startswith("-"):
        return None
    if name == "limit":
        return int(value) if _COUNT.fullmatch(value) else None
    if name == "lease":  # click's int; its own checks are the command's (check_lease)
        return int(value) if _COUNT.fullmatch(value) else None
    if name == "ui":
        return value if value in ("simple", "rich") else None
    if name in ("statuses", "priorities"):
        from ..project import MILESTONE_STATUSES, PRIORITIES

        return value if value in (MILESTONE_STATUSES if name == "statuses" else PRIORITIES) \
            else None
    return value


def parse(args: list[str]) -> tuple[str | None, str, Spec, dict[str, Any]] | None:
    """(directory, command, its spec, its parameters) when the fast path takes this
    command line, else None."""
    directory: str | None = None
    words = list(args)
    while words and words[0] in ("-C", "--directory"):
        if directory is not None or len(words) < 2 or not words[1] \
                or words[1].startswith("-") or os.path.isfile(words[1]):
            return None
        directory = words[1]
        del words[:2]
    if not words:
        return None
    specs = _specs()
    name, rest = words[0], words[1:]
    if name in ("task", "agent") and rest:  # a group's command: two words
        name, rest = f"{name} {rest[0]}", rest[1:]
    spec = specs.get(name)
    if spec is None:
        return None
    params = _parameters(spec)
    seen: set[str] = set()
    refs: list[str] = []
    i = 0
    while i < len(rest):
        word = rest[i]
        if word in spec.flags:
            params[spec.flags[word]] = True
        elif word in spec.values or word in spec.many:
            key = spec.values.get(word) or spec.many[word]
            value = _valid(key, rest[i + 1]) if i + 1 < len(rest) else None
            if value is None or (key in seen and word in spec.values):
                return None
            seen.add(key)
            params[key] = (*params[key], value) if word in spec.many else value
            i += 1
        elif word.startswith("-") or not word or spec.ref is None or refs:
            return None  # an option of another form, a second argument: click decides
        else:
            refs.append(word)
        i += 1
    if spec.ref is not None:
        if spec.ref and not refs:
            return None
        params["ref"] = refs[0] if refs else None
    return directory, name, spec, params


class _Opener:
    """The command's project, opened on first use (as the click path's ``State``)."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.project: Any = None

    def __call__(self) -> Any:
        if self.project is None:
            from pathlib import Path

            from ..project import Project

            self.project = Project.open(None if self.directory is None else
                                        Path(self.directory))
        return self.project


def prepare(args: list[str]) -> Callable[[], None] | None:
    """The command, loaded and ready to run, when the fast path takes ``args``."""
    parsed = parse(args)
    if parsed is None:
        return None
    directory, name, spec, params = parsed
    if name in ("ready", "agent claim"):
        from ..agents import coord  # noqa: F401  (loaded now, under the start-up gc rule)
    from .. import project  # noqa: F401

    def command() -> None:
        run(directory, name, spec, params, args)

    return command


def run(directory: str | None, name: str, spec: Spec, params: dict[str, Any],
        args: list[str]) -> None:
    """Run the command as the click group would: output, then warnings; an error one
    line and its exit code; the metric either way."""
    get = _Opener(directory)
    started = time.perf_counter()
    ok = False
    code = 0
    try:
        spec.run(get, **params)
        ok = True
        print_warnings(get.project)
    except KeyboardInterrupt:
        raise Interrupted from None
    except BrokenPipeError:
        raise
    except Exception as exc:
        as_json = wants_json(args)
        fail = failure(exc, as_json)
        if fail is None:
            raise
        echo(fail.text(as_json), err=True)
        code = fail.code
    finally:
        try:
            after_command(get.project, name, (time.perf_counter() - started) * 1000, ok)
        except KeyboardInterrupt:
            raise Interrupted from None
    if code:
        sys.exit(code)

"""The ``milestone`` console script: the CLI, started as a short-lived process should be.

Loading click and the CLI (or the fast path's modules, ``cli/fast.py``) makes some
20,000 long-lived objects and next to no garbage,
yet the cyclic collector walks them again and again while they are made, and once more
at exit. So the collector stays off while the CLI loads, and what loading made is
frozen out of its way (``gc.freeze``) before it runs. A command then imports what it
needs and makes little garbage, so young collections come every 50,000 allocations
instead of 700 (a long run is still collected), and at the end everything is frozen
again, so the exit skips its pass over it too. Together about 9 ms of a 50 ms
``milestone status``. Only the console script (and ``python -m milestones``) does
this; importing ``milestones.cli`` leaves the collector alone.

``milestone --version`` alone is answered here, before the CLI loads (see
``_version_only``): the same line, in half the time.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from types import FrameType
from typing import NoReturn

INTERRUPTED = 130  # the exit code of a run stopped by Ctrl-C or SIGTERM


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C and SIGTERM: KeyboardInterrupt, once. A second signal is ignored, so it
    cannot cut short the undo of a half-done write the first one started."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def catch_signals() -> None:
    """SIGINT and SIGTERM (unless ignored by whoever started us) become one
    KeyboardInterrupt; ``execute`` swaps in its own handlers while it runs."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_signal)


def interrupted(*, as_json: bool = False) -> NoReturn:
    """One line on stderr and exit code 130: no traceback, whatever was running (with
    ``as_json``, the JSON error object scripts read, of kind ``interrupted``)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    line = "milestone: interrupted\n"
    if as_json:
        line = ('{"schema": 1, "error": {"code": 130, "kind": "interrupted", '
                '"message": "interrupted", "hint": null}}\n')
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    raise SystemExit(INTERRUPTED)


def main() -> None:
    catch_signals()
    try:
        if _version_only(sys.argv[1:]):
            _print_version()
            return
        gc.disable()
        try:
            from .cli import load

            command = load()
        finally:
            gc.freeze()
            gc.set_threshold(50_000)
            gc.enable()
        try:
            command()
        finally:
            gc.freeze()
            _done()
    except KeyboardInterrupt:
        interrupted()


def _version_only(args: list[str]) -> bool:
    """``milestone --version`` (or ``-V``) and nothing else: the one answer that needs
    no CLI, so it loads none of it (click and ours: some 50 modules, 25 ms). Not when a
    MILESTONE_* variable is not UTF-8: the CLI reports that, on every command."""
    if args not in (["--version"], ["-V"]):
        return False
    try:
        for name, value in os.environ.items():
            if name.startswith("MILESTONE_"):
                value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _print_version() -> None:
    """What click's ``--version`` prints (tests/cli/test_startup.py compares them)."""
    from . import __version__

    if sys.stdout is None:  # started with stdout closed: click prints nothing either
        return
    try:
        sys.stdout.write(f"milestone, version {__version__}\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader is gone: exit 1 and no message, as click does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None


def _done() -> None:
    """The command is over: a signal now would only turn its exit status into a kill
    (the interpreter's own shutdown puts the default handlers back)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)

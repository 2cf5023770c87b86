"""The ``milestone`` console script: the CLI, started as a short-lived process should be.

Loading click and the CLI makes some 20,000 long-lived objects and next to no garbage,
yet the cyclic collector walks them again and again while they are made, and once more
at exit. So the collector stays off while the CLI loads, and what loading made is
frozen out of its way (``gc.freeze``) before it runs. A command then imports what it
needs and makes little garbage, so young collections come every 50,000 allocations
instead of 700 (a long run is still collected), and at the end everything is frozen
again, so the exit skips its pass over it too. Together about 9 ms of a 50 ms
``milestone status``. Only the console script (and ``python -m milestones``) does
this; importing ``milestones.cli`` leaves the collector alone.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    try:
        from .cli import main as cli_main
    finally:
        gc.freeze()
        gc.set_threshold(50_000)
        gc.enable()
    try:
        cli_main()
    finally:
        gc.freeze()

"""The ``milestone`` console script: the CLI, started as a short-lived process should be.

Loading click, the commands and the model makes some 15,000 long-lived objects and no
garbage, yet the cyclic collector walks them again and again while they are made, and
once more at exit. So the collector stays off while the CLI loads, and what loading
made is frozen out of its way (``gc.freeze``) before it runs: about 9 ms of a 55 ms
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
        gc.enable()
    cli_main()

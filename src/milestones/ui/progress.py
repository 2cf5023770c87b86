"""A progress bar on stderr for a long copy (``storage migrate``): one row per kind of
thing copied (events, milestones) with its count, rate and time left. Drawn only when
the caller says stderr is a terminal; rich is imported only then."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

# what, done so far, total
Advance = Callable[[str, int, int], None]


@contextlib.contextmanager
def copy_progress(enabled: bool, label: str = "copied") -> Iterator[Advance | None]:
    """Yield a ``(what, done, total)`` callback drawing the bar, or None when not
    ``enabled`` (a pipe, ``--json``): then nothing is drawn or imported."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f}/s" if speed else "", style="progress.data.speed")

    rows: dict[str, Any] = {}
    with Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                  Rate(), TimeRemainingColumn(), console=Console(stderr=True)) as bar:

        def advance(what: str, done: int, total: int) -> None:
            if what not in rows:
                rows[what] = bar.add_task(what, total=total or None)
            bar.update(rows[what], completed=done)

        yield advance

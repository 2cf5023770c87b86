"""What a door reports after each command: its timing and, after a write, the scale check.

Each command that opened a project appends one line to
``performance/metrics.jsonl`` (one ``O_APPEND`` write, no fsync: a lost line
costs nothing), which the scale policy reads for its latency signal
(``milestones.ops.scale``); the file is cut to its last lines past
``METRICS_MAX_LINES``. After a committed write, ``scale_check`` runs that policy.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ..storage.fsutil import fault, open_nofollow

METRICS_MAX_LINES = 2000  # metrics.jsonl is cut to its last 1000 lines past about this many


def record(project: Any, command: str, ms: float, ok: bool) -> None:
    """Append one line to performance/metrics.jsonl: one O_APPEND write, no fsync."""
    fault("metrics")
    line = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": command, "ms": round(ms, 1), "backend": project.store.backend, "ok": ok}
    data = (json.dumps(line) + "\n").encode("utf-8")
    folder = os.path.join(project.root, "performance")
    path = os.path.join(folder, "metrics.jsonl")
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0)
    try:  # a linked metrics file: the line is dropped
        fd = open_nofollow(path, flags)
    except FileNotFoundError:
        if not os.path.isdir(project.root):
            return
        os.makedirs(folder, exist_ok=True)
        fd = open_nofollow(path, flags)
    try:
        os.write(fd, data)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size == len(data):  # a new file: keep it (and the policy's memo) out of git
        with contextlib.suppress(OSError), open(os.path.join(folder, ".gitignore"), "x") as f:
            f.write("# per machine: command timings, the scale policy's memo\n"
                    "metrics.jsonl\nscale-state.json\n")
    if size > METRICS_MAX_LINES * len(data):  # lines are of about the same length
        from .activity import trim_metrics

        trim_metrics(Path(path))


def scale_check(project: Any) -> str | None:
    """After a committed write: the scale policy's one line for the user, if any."""
    from .scale import after_write

    fault("scale")
    return after_write(project)

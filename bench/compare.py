"""A/B start-up and read latency of two installed ``milestone`` scripts on one project.

Run it with ``python bench/compare.py OLD NEW --dir PROJECT [--runs 40]
[--commands "status --json,list,show 5,next,--version"]``, where OLD and NEW are paths of
``milestone`` console scripts (for example ``/tmp/before/.venv/bin/milestone`` from a
``git worktree`` of an older commit with its own virtualenv, and ``.venv/bin/milestone``).

Both scripts run every command on the same project, alternating which goes first round
by round, so a change in the machine's load falls on both. Only read commands belong
here (a write changes what the next run sees). The table shows each median and the ratio
NEW / OLD; between 0.95 and 1.05 is this machine's noise. Children run with
PYTHONDONTWRITEBYTECODE removed, as users run them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--dir", required=True, help="the project both run in")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--commands", default="status --json,list,show 5,next,--version")
    args = parser.parse_args(argv)
    commands = [c.split() for c in args.commands.split(",") if c.strip()]
    scripts = {"old": os.path.abspath(args.old), "new": os.path.abspath(args.new)}
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    times: dict[tuple[str, str], list[float]] = {
        (k, " ".join(c)): [] for k in scripts for c in commands}
    for r in range(args.runs):
        for c in commands:
            for k in ("new", "old") if r % 2 else ("old", "new"):
                start = time.perf_counter()
                subprocess.run([scripts[k], *c], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env, cwd=args.dir, check=False)
                times[(k, " ".join(c))].append((time.perf_counter() - start) * 1000)
    print(f"{'command':28s} {'old ms':>8s} {'new ms':>8s} {'new/old':>8s}")
    for c in commands:
        name = " ".join(c)
        old = statistics.median(times[("old", name)])
        new = statistics.median(times[("new", name)])
        print(f"{name:28s} {old:8.1f} {new:8.1f} {new / old:8.3f}")
    print(f"medians of {args.runs} runs; load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

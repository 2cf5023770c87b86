"""CLI latency benchmark: the installed ``milestone`` script against ``python -c pass``.

Run it with ``python bench/cli_latency.py [--runs N]`` from the project's virtualenv.

It builds a fresh project in a temporary directory (25 milestones x 10 tasks, made
through ``milestones.project.Project``), then times whole subprocess invocations of the
installed console script, the way a person or an agent runs them:

* reads: ``status --json``, ``list``, ``show 5``, ``next``
* a write: ``task done REF``, each run completing a different ready task

Each command is timed ``--runs`` times after a warm-up, interleaved round by round with
``python -c pass`` (the floor: starting the same interpreter and doing nothing), and the
table shows the medians and the ratio to that floor. Targets: reads at most 5x, writes at
most 7x; each row says PASS or FAIL.

The children run with PYTHONDONTWRITEBYTECODE removed from their environment: users
normally have bytecode caching, and the warm-up runs write the caches.

When Taskwarrior (``task``) is installed, the same table has its nearest commands on a
database of 250 tasks (25 projects x 10 tasks, imported once):

* ``task export`` for ``status --json``, ``task list`` for ``list``,
  ``task 5 info`` for ``show 5``, ``task next`` for ``next``, and
  ``task UUID done`` for ``task done`` (a different pending task each run).

Taskwarrior choices, to compare like with like:

* a private TASKRC and TASKDATA in the temporary directory: no user configuration,
  no hooks (``hooks=off``), no themes;
* ``confirmation=off`` and ``verbose=nothing``: no prompts or footnotes (milestone
  prints none either); ``news.version`` set so 2.6 prints no release-news nag;
* garbage collection stays ON (the default): it is part of the work Taskwarrior does on
  every command, as milestone checks its files for hand edits on every command. Because
  gc renumbers working ids after a completion, ``done`` addresses tasks by UUID;
  ``task 5 info`` always finds some pending task 5;
* ``recurrence`` stays on (the default; there are no recurring tasks).

``--encryption`` (issue 15) times the read commands (``status``, ``list``, ``show 5``,
``show 5/3``, ``next``, ``ready``, ``log --limit 50``) on two copies of one project:
as built, and after ``milestone encrypt init`` (the CLI, so every description, blocker
and note of its history is sealed), interleaved round by round; the table shows the
medians, the ratio encrypted / plain and the load average. Target: at most 1.2x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MILESTONES = 25
TASKS_PER_MILESTONE = 10
WARMUP = 3
READ_TARGET = 5.0
WRITE_TARGET = 7.0
ENCRYPTION_TARGET = 1.2
ENCRYPTED_READS = (("status", "--json"), ("list",), ("show", "5"), ("show", "5/3"),
                   ("next",), ("ready",), ("log", "--limit", "50"))


def child_env() -> dict[str, str]:
    """The caller's environment, with bytecode caching back on."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("MILESTONE_DEBUG", None)
    env.pop("MILESTONE_UI", None)
    env.pop("MILESTONE_DIR", None)
    return env


def find_script() -> str:
    """The ``milestone`` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("milestone")
    if beside.exists():
        return str(beside)
    found = shutil.which("milestone")
    if found is None:
        sys.exit("cli_latency: no `milestone` script found; run `pip install -e .` first")
    return found


# ------------------------------------------------------------------ the project


def build_project(directory: Path) -> list[str]:
    """25 milestones x 10 tasks; returns the refs of ready tasks, spread over milestones."""
    from milestones.project import Project

    project, _ = Project.init(directory, actor="bench@example.com", session_id="s-bench")
    for n in range(1, MILESTONES + 1):
        tasks: list[dict[str, Any]] = []
        for i in range(1, TASKS_PER_MILESTONE + 1):
            spec: dict[str, Any] = {
                "title": f"Task {i} of milestone {n}: implement part {i}",
                "estimate": float(1 + i % 4),
                "description": f"Work item {i} for milestone {n}.",
            }
            if i > 5:  # the second half waits on the first
                spec["depends_on"] = [str(i - 5)]
            tasks.append(spec)
        project.plan(
            f"Milestone {n}: feature area {n}",
            description=f"Deliver feature area {n}.",
            priority=("low", "medium", "high", "critical")[n % 4],
            tags=[f"area{n % 5}", "bench"],
            tasks=tasks,
        )
    # Some history, as a real project has: a few tasks done and some in progress.
    for n in range(1, 6):
        project.start_task(f"{n}/1")
        project.complete_task(f"{n}/1")
        project.start_task(f"{n}/2")
    # Tasks `task done` may complete, in an order where each one's dependency is done
    # first: the open ones of tasks 1..5 (no dependencies), then tasks 6..10.
    order = [(n, i) for i in (3, 4, 5) for n in range(1, MILESTONES + 1)]
    order += [(n, i) for i in (1, 2) for n in range(6, MILESTONES + 1)]
    order += [(n, i) for i in (8, 9, 10) for n in range(1, MILESTONES + 1)]
    order += [(n, i) for i in (6, 7) for n in range(6, MILESTONES + 1)]
    return [f"{n}/{i}" for n, i in order]


# ------------------------------------------------------------------ taskwarrior


def build_taskwarrior(directory: Path) -> tuple[dict[str, str], list[str]]:
    """A TASKRC/TASKDATA with 250 tasks; returns the environment and pending UUIDs."""
    data = directory / "taskdata"
    data.mkdir()
    rc = directory / "taskrc"
    version = subprocess.run(
        ["task", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    rc.write_text(
        "\n".join(
            [
                f"data.location={data}",
                "confirmation=off",
                "verbose=nothing",
                "hooks=off",
                f"news.version={version}",
                "color=off",
                "",
            ]
        ),
        "utf-8",
    )
    env = child_env() | {"TASKRC": str(rc), "TASKDATA": str(data)}
    rows: list[dict[str, Any]] = []
    first: list[str] = []  # tasks 1..5 of each project: nothing to wait for
    then: list[str] = []  # tasks 6..10, each waiting on one of those
    for n in range(1, MILESTONES + 1):
        ids = [str(uuid.uuid4()) for _ in range(TASKS_PER_MILESTONE)]
        for i, u in enumerate(ids, 1):
            row: dict[str, Any] = {
                "uuid": u,
                "description": f"Task {i} of milestone {n}: implement part {i}",
                "status": "pending",
                "entry": "20260101T000000Z",
                "project": f"ms{n:02d}",
                "priority": ("L", "M", "H", "H")[n % 4],
                "tags": [f"area{n % 5}", "bench"],
            }
            if i > 5:
                row["depends"] = [ids[i - 6]]
            rows.append(row)
        first.extend(ids[:5])
        then.extend(ids[5:])
    path = directory / "import.json"
    path.write_text(json.dumps(rows), "utf-8")
    subprocess.run(
        ["task", "import", str(path)], env=env, capture_output=True, check=True
    )
    return env, first + then


# ------------------------------------------------------------------ timing


class Row:
    def __init__(
        self,
        label: str,
        argv: Callable[[], list[str]],
        *,
        env: dict[str, str],
        cwd: Path,
        kind: str,
        tool: str,
    ) -> None:
        self.label = label
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.kind = kind  # "base", "read" or "write"
        self.tool = tool
        self.samples: list[float] = []

    def run_once(self) -> float:
        argv = self.argv()
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=self.env, cwd=self.cwd, capture_output=True)
        elapsed = (time.perf_counter() - t0) * 1000
        if proc.returncode != 0:
            sys.exit(
                f"cli_latency: {' '.join(argv)} exited {proc.returncode}:\n"
                + proc.stderr.decode("utf-8", "replace")
            )
        return elapsed


def measure(rows: Sequence[Row], runs: int) -> None:
    for _ in range(WARMUP):
        for row in rows:
            row.run_once()
    for _ in range(runs):  # interleaved, so drift hits every row alike
        for row in rows:
            row.samples.append(row.run_once())


def report(rows: Sequence[Row], base: Row, runs: int) -> bool:
    floor = statistics.median(base.samples)
    print(
        f"\nmedian of {runs} runs each after {WARMUP} warm-up runs; "
        "children run without PYTHONDONTWRITEBYTECODE (bytecode caching on)"
    )
    header = f"{'tool':<12} {'command':<28} {'median ms':>10} {'min ms':>8} {'x pass':>7}  target"
    print(header)
    print("-" * (len(header) + 8))
    ok = True
    for row in rows:
        med = statistics.median(row.samples)
        ratio = med / floor
        if row.kind == "base":
            verdict = "(floor)"
        else:
            target = READ_TARGET if row.kind == "read" else WRITE_TARGET
            passed = ratio <= target
            verdict = f"<= {target:g}x  {'PASS' if passed else 'FAIL'}"
            if row.tool == "milestone":
                ok = ok and passed
            else:
                verdict += " (reference)"
        print(
            f"{row.tool:<12} {row.label:<28} {med:>10.1f} {min(row.samples):>8.1f} "
            f"{ratio:>6.2f}x  {verdict}"
        )
    return ok


def encryption(runs: int) -> int:
    """Reads on the same project, plain and encrypted: medians and their ratio."""
    script = find_script()
    env = child_env()
    env.pop("MILESTONE_KEY", None)
    print(f"load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="milestone-bench-enc-") as tmp:
        plain, sealed = Path(tmp) / "plain", Path(tmp) / "sealed"
        plain.mkdir()
        build_project(plain)
        subprocess.run([script, "note", "a session note"], cwd=plain, env=env, check=True,
                       capture_output=True)
        subprocess.run([script, "task", "block", "7/3", "-r", "waiting on a vendor"],
                       cwd=plain, env=env, check=True, capture_output=True)
        shutil.copytree(plain, sealed)
        subprocess.run([script, "encrypt", "init"], cwd=sealed, env=env, check=True,
                       capture_output=True)
        print(f"built {MILESTONES} milestones x {TASKS_PER_MILESTONE} tasks; a copy encrypted "
              f"with `milestone encrypt init`; script {script}")
        pairs = []
        for words in ENCRYPTED_READS:
            label = " ".join(words)
            pairs.append((Row(label, lambda w=words: [script, *w], env=env, cwd=plain,
                              kind="read", tool="plain"),
                          Row(label, lambda w=words: [script, *w], env=env, cwd=sealed,
                              kind="read", tool="encrypted")))
        measure([r for pair in pairs for r in pair], runs)
    print(f"\nmedian of {runs} runs each after {WARMUP} warm-up runs, interleaved")
    header = f"{'command':<20} {'plain ms':>9} {'encrypted ms':>13} {'ratio':>7}  target"
    print(header)
    print("-" * (len(header) + 8))
    ok = True
    for a, b in pairs:
        pa, pb = statistics.median(a.samples), statistics.median(b.samples)
        passed = pb / pa <= ENCRYPTION_TARGET
        ok = ok and passed
        print(f"{a.label:<20} {pa:>9.1f} {pb:>13.1f} {pb / pa:>6.2f}x  "
              f"<= {ENCRYPTION_TARGET:g}x  {'PASS' if passed else 'FAIL'}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print("all rows PASS" if ok else "some rows FAIL")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21, help="timed runs per command (21)")
    parser.add_argument(
        "--no-taskwarrior", action="store_true", help="skip Taskwarrior even when installed"
    )
    parser.add_argument("--encryption", action="store_true",
                        help="reads with and without encryption at rest (target 1.2x)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.encryption:
        return encryption(args.runs)
    script = find_script()
    env = child_env()
    load = os.getloadavg()[0]
    print(f"load average {load:.2f} at start (other work on the machine makes the numbers noisy)")
    with tempfile.TemporaryDirectory(prefix="milestone-bench-") as tmp:
        root = Path(tmp)
        proj = root / "project"
        proj.mkdir()
        t0 = time.perf_counter()
        ready = build_project(proj)
        print(
            f"built {MILESTONES} milestones x {TASKS_PER_MILESTONE} tasks in {proj} "
            f"({(time.perf_counter() - t0):.1f}s); script {script}; python {sys.version.split()[0]}"
        )
        needed = WARMUP + args.runs
        if needed > len(ready):
            parser.error(f"--runs is at most {len(ready) - WARMUP}: one task done per run")
        todo = iter(ready)

        def ms(*words: str) -> Callable[[], list[str]]:
            return lambda: [script, *words]

        def row(label: str, a: Callable[[], list[str]], kind: str) -> Row:
            return Row(label, a, env=env, cwd=proj, kind=kind, tool="milestone")

        base = Row(
            "python -c pass",
            lambda: [sys.executable, "-c", "pass"],
            env=env,
            cwd=proj,
            kind="base",
            tool="python",
        )
        rows = [
            base,
            row("status --json", ms("status", "--json"), "read"),
            row("list", ms("list"), "read"),
            row("show 5", ms("show", "5"), "read"),
            row("next", ms("next"), "read"),
            row("task done REF", lambda: [script, "task", "done", next(todo)], "write"),
        ]
        tw = shutil.which("task")
        if tw and not args.no_taskwarrior:
            tw_env, uuids = build_taskwarrior(root)
            pending = iter(uuids)
            version = subprocess.run([tw, "--version"], capture_output=True, text=True).stdout
            print(
                f"taskwarrior {version.strip()}: {len(uuids)} tasks in a private TASKRC/TASKDATA "
                "(confirmation=off, verbose=nothing, hooks=off, color=off, gc on)"
            )

            def tw_row(label: str, a: Callable[[], list[str]], kind: str) -> Row:
                return Row(label, a, env=tw_env, cwd=proj, kind=kind, tool="taskwarrior")

            rows += [
                tw_row("export (status --json)", lambda: [tw, "export"], "read"),
                tw_row("list", lambda: [tw, "list"], "read"),
                tw_row("5 info (show 5)", lambda: [tw, "5", "info"], "read"),
                tw_row("next", lambda: [tw, "next"], "read"),
                tw_row("UUID done (task done)", lambda: [tw, next(pending), "done"], "write"),
            ]
        elif not tw:
            print("taskwarrior: not installed (apt-get install taskwarrior), skipped")
        measure(rows, args.runs)
        ok = report(rows, base, args.runs)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print("all milestone rows PASS" if ok else "some milestone rows FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

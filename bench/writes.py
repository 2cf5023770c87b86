"""Write benchmark of the YAML backends: what one ``task done`` costs as the project grows,
and what 16 writers at once get.

Run it with ``python bench/writes.py [--runs N] [--sizes 1000,10000] [--backends
file,hybrid] [--writers 16] [--each 5]`` from the project's virtualenv (a few minutes on 2
vCPUs; ``--quick`` does 1,000 milestones on the file backend only, with 4 writers).

Projects: N milestones x 10 tasks, every milestone planned with no dependencies (as
``Project.plan`` of plain task lists makes them), recorded by the tool's own ``Txn`` and
bulk-loaded through the backend's ``import_data`` (``bench/scale.py``'s ``generate`` and
``write_project``); the hybrid project gets its index. Each command is a whole subprocess
of the installed console script (PYTHONDONTWRITEBYTECODE removed: bytecode caches used),
run in the project directory:

* ``task done REF``: a different ready task each run, then ``status --json`` right after
  (the read that pays for whatever the write left behind); one warm-up pair, then
  ``--runs`` pairs. Printed: the median of each and the peak RSS of the children
  (``ru_maxrss`` of RUSAGE_CHILDREN, KiB; the largest child so far, so measure the small
  size first).
* ``--writers`` processes started at once, each running ``--each`` ``task done`` of its
  own tasks one after another: the wall time until all are done, the commands that
  failed with the lock timeout ("the project is busy", exit 7; ``MILESTONE_LOCK_TIMEOUT``
  is left at its default of 10 s) and any other failures.

The load average (1 min) is printed before and after each size: the machine is shared.
``--against OLD`` (another installed ``milestone`` script, e.g. of a ``git worktree`` of an
older commit with its own virtualenv) runs the same on a second copy of each project with
that script, the two taking turns run by run (the writers: one after the other), and
prints OLD's figures beside this one's: on a shared machine only such pairs compare.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

PER = 10


def _scale() -> Any:
    spec = importlib.util.spec_from_file_location("bench_scale", Path(__file__).with_name(
        "scale.py"))
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = mod
    spec.loader.exec_module(mod)
    return mod


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("MILESTONE_LOCK_TIMEOUT", None)
    return env


def _exe() -> str:
    found = shutil.which("milestone") or str(Path(sys.executable).with_name("milestone"))
    return found


def _run(exe: str, cwd: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run([exe, *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, check=False)
    return time.perf_counter() - t0, proc


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.1f} ms"


def bench_size(scale: Any, backend: str, n: int, runs: int, writers: int, each: int,
               keep: bool, scripts: dict[str, str]) -> None:
    top = Path(tempfile.mkdtemp(prefix=f"bench-writes-{backend}-{n}-"))
    try:
        t0 = time.perf_counter()
        events, state = scale.generate(n, PER, history=False, backend=backend)
        dirs = {}
        for label in scripts:
            dirs[label] = top / label
            dirs[label].mkdir()
            scale.write_project(dirs[label], backend, events, state)
        built = time.perf_counter() - t0
        refs = scale.ready_refs(state, PER, (runs + 1) + writers * each)
        if len(refs) < (runs + 1) + writers * each:
            sys.exit(f"only {len(refs)} ready tasks: use fewer runs or writers")
        print(f"\n{backend}, {n:,} milestones x {PER} tasks (built in {built:.1f} s), "
              f"load {_load()}")
        done: dict[str, list[float]] = {label: [] for label in scripts}
        read: dict[str, list[float]] = {label: [] for label in scripts}
        for k in range(runs + 1):
            for label, exe in scripts.items():
                t, proc = _run(exe, dirs[label], "task", "done", refs[k])
                if proc.returncode:
                    sys.exit(f"{label}: task done {refs[k]} failed: {proc.stderr.strip()}")
                r, proc = _run(exe, dirs[label], "status", "--json")
                if proc.returncode:
                    sys.exit(f"{label}: status --json failed: {proc.stderr.strip()}")
                if k:  # the first pair warms the caches
                    done[label].append(t)
                    read[label].append(r)
        for label in scripts:
            print(f"  [{label}] task done {_ms(done[label])}   status --json right after "
                  f"{_ms(read[label])}   (medians of {len(done[label])})")
        print(f"  peak RSS of a child so far (either script): {_child_rss():,} KiB")
        rest = refs[runs + 1:]
        groups = [rest[i * each:(i + 1) * each] for i in range(writers)]
        for label, exe in scripts.items():

            def writer(group: list[str], exe: str = exe, cwd: Path = dirs[label]
                       ) -> list[tuple[int, str]]:
                out = []
                for ref in group:
                    _t, proc = _run(exe, cwd, "task", "done", ref)
                    out.append((proc.returncode, proc.stderr.strip()))
                return out

            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=writers) as pool:
                results = [r for rs in pool.map(writer, groups) for r in rs]
            wall = time.perf_counter() - t0
            busy = sum(1 for code, err in results if code == 7 and "busy" in err)
            other = [err for code, err in results if code and not (code == 7 and "busy" in err)]
            print(f"  [{label}] {writers} writers x {each} task done: {wall:.1f} s in all, "
                  f"{busy} lock timeouts, {len(other)} other failures, load {_load()}")
            for err in other[:3]:
                print(f"    failed: {err[:200]}")
        if keep:
            print(f"  kept: {top}")
    finally:
        if not keep:
            shutil.rmtree(top, ignore_errors=True)


def _child_rss() -> int:
    """The largest child so far (KiB): RUSAGE_CHILDREN keeps the maximum, not the last."""
    return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--backends", default="file,hybrid")
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--each", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="1,000 milestones, file backend, 4 writers")
    parser.add_argument("--keep", action="store_true", help="keep the projects (prints where)")
    parser.add_argument("--against", metavar="OLD", help="another milestone script to compare")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    backends = args.backends.split(",")
    writers = args.writers
    if args.quick:
        sizes, backends, writers = [1000], ["file"], 4
    scripts = {"this": _exe()}
    if args.against:
        scripts["old"] = args.against
    print(f"milestone: {scripts}; load average {_load()}; {os.cpu_count()} CPUs")
    scale = _scale()
    for n in sorted(sizes):
        for backend in backends:
            bench_size(scale, backend, n, args.runs, writers, args.each, args.keep, scripts)
    print(f"\nload average at the end: {_load()}")


if __name__ == "__main__":
    main()

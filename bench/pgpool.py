"""Long-running processes on postgres: the dashboard's API latency and SSE delivery
(bench/dashboard.py's clients) and its connections to the server, and what
``milestone execute`` asks of the server while its agents wait on their commands.

Run it with ``python bench/pgpool.py [--milestones 200] [--tasks 10] [--clients 50]
[--requests 20] [--writes 5] [--exec-agents 8] [--idle 5] [--only dashboard|executor]
[--src DIR]`` from the project's
virtualenv (a throwaway server of its own, tests/pgserver.py, as bench/postgres.py).
``--src DIR``: run the ``milestone`` of another checkout's ``src/`` (``git archive
REV src | tar -x -C DIR``), to compare with the code before a change.

The project is built on the database backend as bench/scale.py builds it and moved to
postgres with ``milestone storage migrate --to postgres``. Dashboard: ``milestone
dashboard --port 0``; the latency and delivery of bench/dashboard.py; the server's
connections from the dashboard (``pg_stat_activity``, application ``milestone``)
once it answered, with no request running. Executor: ``milestone execute`` of a new
milestone of ``--exec-agents`` tasks that each sleep ``--idle`` + 2.5 s, with as
many agents; once every command has started, the statements per second the run
sends while they sleep (the server's log, ``log_statement = 'all'`` on the project's
database, over ``--idle`` seconds: the monitor's, the validator's and the detector's
reads); then the run's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import dashboard as dash  # noqa: E402
import scale as sc  # noqa: E402

import pgserver  # noqa: E402


def shim(tmp: Path, src: str | None) -> str:
    """The ``milestone`` to run: this environment's, or ``src``'s through a script."""
    if src is None:
        return sc.find_script()
    path = tmp / "milestone"
    path.write_text(f'#!/bin/sh\nPYTHONPATH="{Path(src).resolve()}" '
                    f'exec "{sys.executable}" -m milestones "$@"\n')
    path.chmod(0o755)
    return str(path)


def query(url: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchone()[0]


def connections(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND application_name = 'milestone'"))


def dashboard_part(script: str, d: Path, env: dict[str, str], url: str, state: Any,
                   a: argparse.Namespace) -> None:
    refs = sc.ready_refs(state, a.tasks, a.writes)
    mids = sorted(state.milestones)
    proc, port = dash.start_server(script, d, env)
    try:
        times = dash.latency(port, mids, a.clients, a.requests)
        time.sleep(0.5)
        held = connections(url)  # (this look's own has no application name)
        dash.print_latency(times, a.clients)
        print(f"dashboard's connections to the server after the load: {held}")
        got = dash.delivery(port, script, d, env, refs, a.clients)
        last = [x[0] * 1e3 for x in got]
        print(f"SSE delivery to {a.clients} streams after the CLI's exit ({len(got)} writes): "
              f"median {statistics.median(last):.0f} ms, worst {max(last):.0f} ms")
        print(f"dashboard peak RSS {dash.peak_rss_mb(proc.pid):.0f} MB")
    finally:
        proc.terminate()
        proc.wait(10)


def executor_part(script: str, d: Path, env: dict[str, str], url: str, log: Path,
                  a: argparse.Namespace) -> None:
    tasks = [arg for i in range(a.exec_agents) for arg in ("--task", f"sleeps {i}")]
    made = subprocess.run([script, "plan", "Executor bench", *tasks, "--json"], cwd=d,
                          env=env, capture_output=True, text=True, check=True)
    mid = json.loads(made.stdout)["milestone_id"]
    t0 = time.perf_counter()
    proc = subprocess.Popen([script, "execute", mid, "--agents", str(a.exec_agents),
                             "--command", f"touch started.$$; sleep {a.idle + 2.5:g}",
                             "--approve-commands",
                             "--json"], cwd=d, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list(d.glob("started.*"))) < a.exec_agents and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # every agent's command sleeping, the run's threads waiting
    held = connections(url)
    at, s0 = log.stat().st_size, time.perf_counter()
    time.sleep(a.idle)
    with log.open("rb") as f:
        f.seek(at)
        text = f.read()  # (a statement psycopg prepared, after 5 runs, is `execute`)
        sent = text.count(b" statement: ") + text.count(b" execute ")
    rate = sent / (time.perf_counter() - s0)
    out, err = proc.communicate(timeout=120)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"execute failed ({proc.returncode}): {err.strip()[-300:]}")
        return
    print(f"\nexecute: {a.exec_agents} agents, {a.exec_agents} tasks of `sleep {a.idle + 2.5:g}`: "
          f"wall {wall:.2f} s (the command's own {json.loads(out)['wall_seconds']:.2f} s)")
    print(f"  while the commands sleep: {held} connections of the run, "
          f"{rate:.1f} statements/s")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--milestones", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--writes", type=int, default=5)
    ap.add_argument("--exec-agents", type=int, default=8)
    ap.add_argument("--idle", type=float, default=5.0,
                    help="seconds the executor's statements are counted while it waits")
    ap.add_argument("--only", choices=("dashboard", "executor"), default=None)
    ap.add_argument("--src", default=None, help="another checkout's src/ to run")
    a = ap.parse_args()
    server = pgserver.start()
    if isinstance(server, str):
        print(f"cannot start a PostgreSQL server: {server}")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="milestone-pgpool-"))
    try:
        script = shim(tmp, a.src)
        env = sc.child_env()
        env["MILESTONE_USER"] = "bench@example.com"
        url = env["MILESTONE_DATABASE_URL"] = server.new_database(schema=False)
        d = tmp / "project"
        d.mkdir()
        events, state = sc.generate(a.milestones, a.tasks)
        sc.write_project(d, "database", events, state)
        subprocess.run([script, "storage", "migrate", "--to", "postgres", "--json"], cwd=d,
                       env=env, capture_output=True, text=True, check=True)
        print(f"{a.milestones} milestones x {a.tasks} tasks, {len(events)} events, on "
              f"postgres (server {server.port}, fsync=off); milestone from "
              f"{a.src or 'this checkout'}; load average {os.getloadavg()[0]:.2f}, "
              f"{os.cpu_count()} CPUs")
        if a.only != "executor":
            dashboard_part(script, d, env, url, state, a)
        # every statement of the run's connections in the server's log (from here on)
        server.admin(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET log_statement = 'all'")
        if a.only != "dashboard":
            executor_part(script, d, env, url, server.dir / "server.log", a)
        print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end")
    finally:
        server.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

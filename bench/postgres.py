"""PostgreSQL benchmark: the ``milestone`` CLI on a postgres project beside the SQLite
database backend and Taskwarrior (bench/scale.py's commands, projects and tables), and
claims per second with 1, 16 and 64 agents on both backends.

Run it with ``python bench/postgres.py`` from the project's virtualenv (needs Debian's
``postgresql`` package: it starts a throwaway server of its own, tests/pgserver.py, on a
free port with ``fsync=off`` as the tests do, so the write figures are the server's CPU
and round trips, not a disk's flush). ``--shapes`` (1000x10,10000x10: 10,000 and
100,000 tasks), ``--runs`` (3), ``--agents`` (1,16,64), ``--claim-tasks`` (2,000),
``--no-taskwarrior``, ``--driver`` (libpq: storage/libpq.py, what the commands use;
psycopg: what they used before, and what long-running processes use; both: the
postgres rows measured on each, the same project, psycopg's shown as ``pg-psycopg``).

Scale: each shape is generated and bulk-loaded on the database backend exactly as
bench/scale.py does, a copy is moved to postgres with ``milestone storage migrate --to
postgres`` (timed, peak RSS), and every command of bench/scale.py is timed on both
(warm and cold reads, ``task done``, ``agent claim``), with Taskwarrior's nearest
commands on as many tasks: medians and peak RSS per command, ratios to Taskwarrior.

Claims: a plan of ``--claim-tasks`` independent tasks; N agent processes
(tests/agents/worker.py: register, then claim → complete with the token until nothing
is open; ``claim_next`` on every other agent) work it to the end; claims per second
are the claims over the wall time from the first start to the last exit, printed with
the load average and the workers' peak RSS (the largest ``ru_maxrss`` of them, each
worker's own, from ``os.wait4``); the CPU time per claim (with its complete) of the
agents (their ``rusage``, start-up included) and of the server (the postmaster's and
its backends', from /proc), and how many agents wait on the writer's advisory lock on
average (``pg_stat_activity``, sampled every 10 ms): on a machine of few cores the
claims are bounded by the CPU both take, and by the time the lock is held.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

import scale as sc  # noqa: E402

import pgserver  # noqa: E402

WORKER = HERE.parent / "tests" / "agents" / "worker.py"


PSYCOPG = "pg-psycopg"  # the postgres project again, its commands on psycopg (--driver both)


def scale_part(server: Any, shapes: list[tuple[int, int]], runs: int, tw_on: bool,
               tmp: Path, both: bool = False) -> None:
    script = sc.find_script()
    tw = shutil.which("task") if tw_on else None
    spawner = sc.Spawner()
    results: dict[Any, Any] = {}
    migrations: list[tuple[Any, str, float | None, float | None, str]] = []
    builds: list[tuple[str, str]] = []
    backends = ["database", "postgres"] + ([PSYCOPG] if both else [])
    try:
        for shape in shapes:
            print(f"\n== {sc.size_label(shape)}", flush=True)
            t0 = time.perf_counter()
            events, state = sc.generate(*shape)
            db_dir = tmp / f"database-{sc.shape_name(shape)}"
            db_dir.mkdir()
            sc.write_project(db_dir, "database", events, state)
            builds.append((f"{sc.shape_name(shape)}: generate and load {len(events):,} "
                           "events", f"{time.perf_counter() - t0:.1f} s"))
            del events
            env = sc.child_env()
            env["MILESTONE_DATABASE_URL"] = server.new_database(schema=False)
            pg_dir = tmp / f"postgres-{sc.shape_name(shape)}"
            shutil.copytree(db_dir, pg_dir)
            took, mb, detail = sc.migrate_timed(spawner, script, env, pg_dir, "postgres")
            migrations.append((shape, "database -> postgres", took, mb, detail))
            print(f"migrated a copy to postgres: "
                  f"{'FAILED' if took is None else f'{took:.1f} s, {mb:.0f} MB'} ({detail})",
                  flush=True)
            roots = {"database": db_dir, "postgres": pg_dir}
            if both:
                roots[PSYCOPG] = pg_dir
            rows = sc.build_rows(shape, script, env, roots, backends, state, runs)
            for (tool, _, _), row in rows.items():
                if tool == PSYCOPG:
                    row.env = {**env, "MILESTONE_PG_DRIVER": "psycopg"}
            if tw:
                tw_dir = tmp / f"taskwarrior-{sc.shape_name(shape)}"
                scope = state.current or sorted(state.milestones)[0]
                tw_env, uuids, count, imp_s = sc.build_taskwarrior(tw_dir, state, depends=False)
                builds.append((f"{sc.shape_name(shape)}: task import of {count:,} tasks",
                               f"{imp_s:.1f} s"))
                rows |= sc.tw_rows(tw, tw_env, tw_dir, uuids, scope.replace("-", ""))
            for group in ({"warm", "-"}, {"cold"}, {"write"}):
                sc.measure([r for (_, _, m), r in rows.items() if m in group], runs, spawner)
            for row in rows.values():
                if row.error:
                    print(f"  FAILED {row.tool} {row.label} {row.mode}: {row.error}")
            results[shape] = rows
            del state
            for d in set(roots.values()):
                shutil.rmtree(d, ignore_errors=True)
    finally:
        spawner.close()
    sc.report(results, shapes, backends, runs, spawner.floor_kib / 1024)
    sc.report_rest(builds, migrations, [], [])


def server_cpu(server: Any) -> float:
    """CPU seconds the PostgreSQL server has used: the postmaster's own and its
    children's, those it reaped (each connection's backend, once it exits) and those
    still running (from /proc; 0.0 where there is none)."""
    try:
        pid = int((Path(server.dir) / "data" / "postmaster.pid").read_text().split()[0])
        tick = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    f = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(f[1]) == pid:
                    total += int(f[11]) + int(f[12])
        return total / tick
    except (OSError, ValueError, IndexError):
        return 0.0


class LockWaits(threading.Thread):
    """Samples ``pg_stat_activity`` every 10 ms: how many of the agents' connections
    wait on the writer's advisory lock, on average."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.samples, self.waiting = url, threading.Event(), 0, 0

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.wait(0.01):
                (n,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                    "'milestone' AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
                ).fetchone() or (0,)
                self.samples += 1
                self.waiting += int(n)

    def mean(self) -> float:
        self.stop.set()
        self.join()
        return self.waiting / max(self.samples, 1)


def claims_part(server: Any, agents_list: list[int], n_tasks: int, tmp: Path,
                both: bool = False) -> None:
    from milestones.project import Project

    print(f"\n== claims per second: {n_tasks:,} independent tasks worked to the end "
          "(claim, then complete with the token); CPU ms per claim (and its complete) "
          "of the agents and of the server; agents waiting on the writer lock, on average")
    print(f"{'backend':<10} {'agents':>6} {'seconds':>8} {'claims/s':>9} {'load avg':>9} "
          f"{'peak RSS MB':>12} {'agent CPU':>10} {'server CPU':>11} {'lock waits':>11}")
    for shown in ("database", "postgres") + ((PSYCOPG,) if both else ()):
        backend = "postgres" if shown == PSYCOPG else shown
        for n in agents_list:
            root = tmp / f"claims-{shown}-{n}"
            root.mkdir()
            env = sc.child_env()
            env["MILESTONE_LOCK_TIMEOUT"] = "600"
            if shown == PSYCOPG:
                env["MILESTONE_PG_DRIVER"] = "psycopg"
            if backend == "postgres":
                env["MILESTONE_DATABASE_URL"] = server.new_database()
                os.environ["MILESTONE_DATABASE_URL"] = env["MILESTONE_DATABASE_URL"]
            p, _ = Project.init(root, backend=backend, actor="bench", session_id="bench")
            per = 50
            p.plan_many([{"title": f"Part {m}", "tasks": [f"t{m}-{i}" for i in range(per)]}
                         for m in range(n_tasks // per)])
            getattr(p.store, "close", lambda: None)()
            waits = LockWaits(env["MILESTONE_DATABASE_URL"]) if backend == "postgres" else None
            if waits is not None:
                waits.start()
            cpu0 = server_cpu(server) if backend == "postgres" else 0.0
            t0 = time.perf_counter()
            procs = [subprocess.Popen(
                [sys.executable, str(WORKER), "dag", str(root), f"a{i}", "--deadline", "900",
                 "--seed", str(i)] + (["--next"] if i % 2 else []),
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for i in range(n)]
            failed, peak, cpu = [], 0.0, 0.0
            for proc in procs:  # each worker's own rusage: its peak RSS, not the bench's
                _, status, use = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                peak = max(peak, use.ru_maxrss / 1024)
                cpu += use.ru_utime + use.ru_stime
                if proc.returncode != 0:
                    failed.append(proc.pid)
            took = time.perf_counter() - t0
            waiting = f"{waits.mean():>11.1f}" if waits is not None else f"{'':>11}"
            time.sleep(0.2)  # the backends exit and are reaped
            served = (f"{1000 * (server_cpu(server) - cpu0) / n_tasks:>11.2f}"
                      if backend == "postgres" else f"{'':>11}")
            note = f"  ({len(failed)} workers failed)" if failed else ""
            print(f"{shown:<10} {n:>6} {took:>8.1f} {n_tasks / took:>9.1f} "
                  f"{os.getloadavg()[0]:>9.2f} {peak:>12.0f} {1000 * cpu / n_tasks:>10.2f}"
                  f"{served} {waiting}{note}", flush=True)
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--shapes", default="1000x10,10000x10")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--agents", default="1,16,64")
    ap.add_argument("--claim-tasks", type=int, default=2000)
    ap.add_argument("--no-taskwarrior", action="store_true")
    ap.add_argument("--no-scale", action="store_true", help="the claims only")
    ap.add_argument("--driver", choices=("libpq", "psycopg", "both"), default="libpq",
                    help="the commands' and agents' connection (MILESTONE_PG_DRIVER): "
                         "libpq through ctypes, psycopg, or both (postgres's rows again "
                         f"as {PSYCOPG}, on the same project)")
    args = ap.parse_args(argv)
    both = args.driver == "both"
    # (every child's environment is copied from this one)
    os.environ["MILESTONE_PG_DRIVER"] = "libpq" if both else args.driver
    server = pgserver.start()
    if isinstance(server, str):
        print(f"cannot start a PostgreSQL server: {server}")
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="milestone-pgbench-"))
    began = time.perf_counter()
    print(f"load average {os.getloadavg()[0]:.2f} at start; {os.cpu_count()} CPUs; "
          f"PostgreSQL server {server.pg_ctl} on port {server.port} (fsync=off); "
          f"driver {args.driver}")
    try:
        if not args.no_scale:
            scale_part(server, sc.parse_shapes(args.shapes), args.runs,
                       not args.no_taskwarrior, tmp, both)
        claims_part(server, [int(a) for a in args.agents.split(",")], args.claim_tasks, tmp,
                    both)
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; total "
          f"{time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

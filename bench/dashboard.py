"""Dashboard benchmark: API latency under 50 concurrent clients on a 1,000-milestone
project, and the delay from a CLI write to its event on 50 open SSE streams.

Run it with ``python bench/dashboard.py [--milestones 1000] [--tasks 10] [--clients 50]
[--requests 40] [--writes 5] [--backend database]`` from the project's virtualenv.

The project is built fast as ``bench/scale.py`` builds it (its ``generate`` and
``write_project``: the tool's own ``Txn`` records the history, bulk-loaded). A
``milestone dashboard --port 0`` process serves it. Latency: each client (a thread with
one keep-alive HTTP connection) sends ``--requests`` requests, cycling through the API
(``/api/milestones``, ``/api/milestones/{id}`` of any of the project's milestones at
random (``--distinct N``: of N picked at random, pages a team keeps open; each
milestone's first answer after a write is computed, later ones are kept), ``/api/tasks`` with
a filter, ``/api/events`` pages, ``/api/agents``) and the overview page; p50/p95/max per
endpoint and overall, after one untimed round. Delivery: ``--clients`` SSE streams open,
then ``--writes`` times ``milestone task done REF`` in another process; for each write
the delay from the CLI's exit (its write is committed before it exits) to the moment each
stream has the event, and from the command's start (CLI start-up included).
Targets: p95 under 100 ms, delivery under 500 ms. Prints the load average and the
server's peak RSS.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import child_env, find_script, generate, ready_refs, write_project


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def start_server(script: str, cwd: Path, env: dict[str, str]) -> tuple[Any, int]:
    proc = subprocess.Popen([script, "dashboard", "--port", "0"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"Dashboard on http://\S+?:(\d+)/", line)
        if m:
            port = int(m.group(1))
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, port
    sys.exit("dashboard did not start: " + (proc.stdout.read() or ""))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def latency(port: int, mids: list[str], clients: int, requests: int
            ) -> dict[str, list[float]]:
    paths = [lambda r: "/api/milestones",
             lambda r: f"/api/milestones/{r.choice(mids)}",
             lambda r: "/api/tasks?status=in_progress",
             lambda r: f"/api/events?after={r.randrange(1, 20000)}&limit=100",
             lambda r: "/api/agents",
             lambda r: "/"]
    times: dict[str, list[float]] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def client(k: int, timed: bool) -> None:
        r = random.Random(k)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[tuple[str, float]] = []
        barrier.wait()
        for i in range(requests if timed else len(paths)):
            path = paths[(i + k) % len(paths)](r)
            t0 = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            dt = time.perf_counter() - t0
            assert resp.status == 200, (path, resp.status)
            mine.append((path.split("?")[0].rsplit("/", 1)[0] + "/{id}"
                         if path.startswith("/api/milestones/") else path.split("?")[0], dt))
        conn.close()
        if timed:
            with lock:
                for name, dt in mine:
                    times.setdefault(name, []).append(dt)

    for timed in (False, True):  # one untimed round first
        threads = [threading.Thread(target=client, args=(k, timed)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return times


class Stream(threading.Thread):
    """One SSE client: the time each event id arrived."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.seen: dict[int, float] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request("GET", "/api/events/stream", headers={"Accept": "text/event-stream"})
        resp = conn.getresponse()
        self.ready.set()
        while True:
            line = resp.fp.readline()
            if not line:
                return
            if line.startswith(b"id:"):
                self.seen[int(line[3:].strip())] = time.perf_counter()


def print_latency(times: dict[str, list[float]], clients: int) -> list[float]:
    """The latency table (p50, p95, max per endpoint and for all); every time, in s."""
    every = [x for v in times.values() for x in v]
    print(f"\nAPI latency, {clients} concurrent clients, {len(every)} requests (ms):")
    print(f"  {'endpoint':<24} {'n':>5} {'p50':>8} {'p95':>8} {'max':>8}")
    for name, v in [*sorted(times.items()), ("ALL", every)]:
        print(f"  {name:<24} {len(v):>5} {pct(v, 50) * 1e3:>8.1f} "
              f"{pct(v, 95) * 1e3:>8.1f} {max(v) * 1e3:>8.1f}")
    return every


def delivery(port: int, script: str, cwd: Path, env: dict[str, str], refs: list[str],
             clients: int) -> list[tuple[float, float, float]]:
    streams = [Stream(port) for _ in range(clients)]
    for s in streams:
        s.start()
    for s in streams:
        s.ready.wait(30)
    time.sleep(1.0)  # every stream subscribed
    out = []
    for ref in refs:
        t0 = time.perf_counter()
        done = subprocess.run([script, "task", "done", ref, "--json"], cwd=cwd, env=env,
                              capture_output=True, text=True)
        t1 = time.perf_counter()
        assert done.returncode == 0, done.stderr
        log = subprocess.run([script, "log", "--limit", "1", "--json"], cwd=cwd, env=env,
                             capture_output=True, text=True)
        eid = json.loads(log.stdout)["events"][-1]["event_id"]
        deadline = time.perf_counter() + 10
        while any(eid not in s.seen for s in streams) and time.perf_counter() < deadline:
            time.sleep(0.005)
        arrived = [s.seen.get(eid, float("inf")) for s in streams]
        out.append((max(arrived) - t1, statistics.median(arrived) - t1, max(arrived) - t0))
        time.sleep(0.3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--milestones", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--writes", type=int, default=5)
    ap.add_argument("--distinct", type=int, default=None,
                    help="milestones whose pages the clients ask for (default: all)")
    ap.add_argument("--backend", default="database", choices=("database", "hybrid", "file"))
    a = ap.parse_args()
    script, env = find_script(), child_env()
    env["MILESTONE_USER"] = "bench@example.com"
    with tempfile.TemporaryDirectory(prefix="bench-dash-") as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        events, state = generate(a.milestones, a.tasks, backend=a.backend)
        write_project(d, a.backend, events, state)
        print(f"project: {a.milestones} milestones x {a.tasks} tasks, {len(events)} events, "
              f"{a.backend} backend, built in {time.perf_counter() - t:.1f} s")
        refs = ready_refs(state, a.tasks, a.writes)
        mids = sorted(state.milestones)
        mids = random.Random(7).sample(mids, a.distinct) if a.distinct else mids
        proc, port = start_server(script, d, env)
        try:
            times = latency(port, mids, a.clients, a.requests)
            every = print_latency(times, a.clients)
            p95 = pct(every, 95) * 1e3
            print(f"  target p95 < 100 ms: {'met' if p95 < 100 else 'MISSED'} ({p95:.1f} ms)")
            got = delivery(port, script, d, env, refs, a.clients)
            print(f"\nSSE delivery of a CLI write to {a.clients} open streams "
                  f"({len(got)} writes, ms):")
            for i, (last, med, whole) in enumerate(got, 1):
                print(f"  write {i}: after the CLI exits: median {med * 1e3:.0f}, last "
                      f"stream {last * 1e3:.0f}; from the command's start {whole * 1e3:.0f}")
            worst = max(x[0] for x in got) * 1e3
            med = statistics.median(x[0] for x in got) * 1e3
            print(f"  median of the last stream's delay {med:.0f} ms, worst {worst:.0f} ms; "
                  f"target < 500 ms: {'met' if worst < 500 else 'MISSED'}")
            print(f"\nserver peak RSS {peak_rss_mb(proc.pid):.0f} MB; load average "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()

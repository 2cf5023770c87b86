"""Audit benchmark: ``milestone audit`` on logs of 10,000 and 100,000 events (and more
with ``--sizes``), timed from outside, with each run's peak resident memory.

Run it with ``python bench/audit.py [--runs N] [--sizes 10000,100000]`` from the
project's virtualenv (about a minute on 2 vCPUs at the defaults; ``--quick``: 10,000 and
30,000 events, 3 runs).

Projects: ``milestone init`` (file backend), then a log of N events written through the
tool's own record format: ``events.make_event`` and ``events.seal`` continue the chain
from the init event (a mix of ``note_added`` and ``task_progress`` events by three
actors); all but the last 10 % go into gzipped archives of 10,000 events each
(``logs/archive/progress-events-NNNNNN.jsonl.gz``, as rotation writes them), so the
audit reads across rotation boundaries. The events are not applied to the snapshots
(the audit reads the log only; it checks that the chain reaches the applied head, which
is the init event here).

Each run times one whole CLI process of the installed console script, ``milestone audit
--json``, under a small wrapper process whose only child it is; the wrapper reports
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` (KiB on Linux): the audit's own peak.

Prints, per size, the median wall and CPU seconds, the median and largest peak RSS, the
events per second, and the load average. Target: the audit streams, so the peak RSS at
the largest size is at most 1.2x the one at the smallest (10x the events).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from child import WRAPPER
from scale import child_env, find_script

from milestones.model import events as ev
from milestones.project import Project

RSS_GROWTH_TARGET = 1.2
PER_ARCHIVE = 10_000
ACTORS = ("alice@example.com", "bob@example.com", "ci-agent")



def build(base: Path, events: int) -> Path:
    """A file-backend project whose log holds ``events`` events, 90 % of them archived."""
    Project.init(base, actor=ACTORS[0], session_id="bench")
    logs = base / ".milestones" / "logs"
    live = logs / "progress-events.jsonl"
    first = json.loads(live.read_bytes().splitlines()[0])
    prev_id, prev_hash = first["event_id"], first["hash"]
    lines = [live.read_bytes()]
    archived = int(events * 0.9) // PER_ARCHIVE * PER_ARCHIVE
    seq = 0
    (logs / "archive").mkdir(exist_ok=True)
    for i in range(events - prev_id):
        kind = "note_added" if i % 3 else "task_progress"
        e = ev.make_event(kind, None, timestamp=f"2026-11-{1 + i % 28:02d}T10:00:00Z",
                          actor=ACTORS[i % len(ACTORS)], session_id="bench",
                          data={"note": f"note {i}"} if kind == "note_added" else {},
                          summary=f"bench event {i}")
        ev.seal(e, prev_id + 1, prev_hash)
        prev_id, prev_hash = e["event_id"], e["hash"]
        lines.append((ev.canonical(e) + "\n").encode("utf-8"))
        if prev_id % PER_ARCHIVE == 0 and prev_id <= archived:
            seq += 1
            (logs / "archive" / f"progress-events-{seq:06d}.jsonl.gz").write_bytes(
                gzip.compress(b"".join(lines), compresslevel=6, mtime=0))
            lines = []
    live.write_bytes(b"".join(lines))
    return base


def run_audit(script: str, cwd: Path) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", WRAPPER, script, "audit", "--json"],
                         env=child_env(), cwd=cwd, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"audit failed (exit {result['rc']}): {str(result['stderr']).strip()}")
    return result


def main(argv: list[str] | None = None) -> int:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sizes = [10_000, 30_000] if args.quick else [int(x) for x in args.sizes.split(",")]
    runs = 3 if args.quick else args.runs
    script = find_script()
    rss: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        for size in sizes:
            proj = build(Path(tmp) / f"p{size}", size)
            results = [run_audit(script, proj) for _ in range(runs)]
            wall = statistics.median(float(str(r["seconds"])) for r in results)
            cpu = statistics.median(float(str(r["cpu"])) for r in results)
            peaks = [int(str(r["maxrss_kib"])) for r in results]
            rss[size] = statistics.median(peaks)
            print(f"{size:>9,} events: wall {wall:6.2f} s (median of {runs}), cpu {cpu:6.2f} s, "
                  f"{size / wall:9,.0f} events/s, peak RSS median {rss[size] / 1024:6.1f} MiB "
                  f"(max {max(peaks) / 1024:.1f})")
    growth = rss[sizes[-1]] / rss[sizes[0]]
    print(f"peak RSS {sizes[-1]:,} / {sizes[0]:,} events: {growth:.2f}x "
          f"(target <= {RSS_GROWTH_TARGET}x); load average {os.getloadavg()[0]:.2f}")
    return 0 if growth <= RSS_GROWTH_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

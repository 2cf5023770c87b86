"""Agent processes for the multi-process tests: ``python worker.py MODE ROOT NAME ...``.

``dag ROOT NAME [options]`` works the project at ``ROOT`` (the directory holding
``.milestones/``) the way any script agent does, through the library: register
under NAME, then claim → (a short pause) → complete with the claim's token, until
a claim says nothing is open. A ``Conflict`` on complete (a stale token: the lease
lapsed and another agent took the task) is expected after kills and slow steps:
it is counted and the loop goes on. When nothing is ready but work is still open,
it waits 10-50 ms, longer while it stays idle (``--backoff``).

A heartbeat thread (its own ``Project``, so its own store handle and lock) renews
the agent's leases whenever the main loop has been out of any step for half a
lease (a long pause, a long wait between polls).

Restarted under a name that already holds tasks (its predecessor was killed
mid-task), it resumes them first: completes each one it still holds.

Options:
  --lease S        register with this lease (seconds; default: the project's)
  --next           complete with ``claim_next`` (one write per task instead of two)
  --pause S        sleep up to S seconds (uniform) between claim and complete
  --deadline S     give up (exit 3) after S seconds
  --seed N         seed of the pauses
  --backoff K      idle polls back off from 10-50 ms up to K times that (8)
  --profile FILE   write a cProfile of the run to FILE
  --ready FILE     touch FILE once registered (and done resuming)
  --retry-storage  a step that fails with a StorageError (the PostgreSQL server
                   restarted, the network dropped) is retried after 0.2-0.5 s, and
                   the tasks the agent still holds are finished first (a claim whose
                   commit was cut may have gone through)

Prints one JSON line at the end: name, id, claims, completed, conflicts, waits
(empty claims), steps (calls that took the lock), resumed, heartbeats, and the
claim and complete latencies' sum and max (s).

``chat ROOT NAME GO PEERS COUNT`` registers NAME (kind ``chatter``), touches
``GO.NAME.ready``, waits for the file GO, then sends COUNT direct messages to the
comma-separated PEERS in turn (body ``NAME->PEER #j``) and one broadcast
(``NAME to all``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

from milestones.agents.coord import Agents
from milestones.errors import Conflict, StorageError
from milestones.project import Project


def open_project(root: str, name: str) -> Project:
    return Project.open(Path(root), actor=name, session_id=f"session-{name}-{os.getpid()}")


class Heartbeat(threading.Thread):
    """Renews the agent's leases when the main loop has been quiet for ``every`` s.

    Not while the main loop is in a step: that step renews them when it gets the
    lock, and a heartbeat would only queue for the same lock behind it."""

    def __init__(self, root: str, name: str, every: float) -> None:
        super().__init__(daemon=True)
        self.root, self.name, self.every = root, name, every
        self.last = time.monotonic()  # the main loop's last step (any step renews)
        self.busy = False  # the main loop is in a step (waiting for the lock or in it)
        self.beats = 0
        self.stop = threading.Event()

    def run(self) -> None:
        project = open_project(self.root, self.name)
        while not self.stop.wait(self.every / 4):
            if not self.busy and time.monotonic() - self.last >= self.every:
                with contextlib.suppress(Conflict, StorageError):  # busy or down: next time
                    Agents(project).heartbeat(self.name)
                    self.beats += 1
                self.last = time.monotonic()


def chat(root: str, name: str, go: str, peers: str, count: str) -> int:
    agents = Agents(open_project(root, name))
    agents.register(name, kind="chatter")
    Path(f"{go}.{name}.ready").touch()
    while not Path(go).exists():
        time.sleep(0.005)
    others = peers.split(",")
    for j in range(int(count)):
        peer = others[j % len(others)]
        agents.send(name, peer, f"{name}->{peer} #{j}")
    agents.send(name, "*", f"{name} to all")
    return 0


def dag(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("name")
    ap.add_argument("--lease", type=int, default=None)
    ap.add_argument("--next", dest="next_", action="store_true")
    ap.add_argument("--pause", type=float, default=0.0)
    ap.add_argument("--deadline", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backoff", type=int, default=8)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--ready", default=None)
    ap.add_argument("--retry-storage", action="store_true")
    args = ap.parse_args(argv)
    if args.profile:  # cProfile the whole run into this file (pstats format)
        import cProfile

        prof = cProfile.Profile()
        try:
            return prof.runcall(work, args)
        finally:
            prof.dump_stats(args.profile)
    return work(args)


def work(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    started = time.monotonic()
    while True:  # with --retry-storage, until the server answers
        try:
            project = open_project(args.root, args.name)
            agents = Agents(project)
            entry = agents.register(args.name, lease=args.lease)
            break
        except StorageError:
            if not args.retry_storage or time.monotonic() - started > args.deadline:
                raise
            time.sleep(rng.uniform(0.2, 0.5))
    stats: dict[str, Any] = {"name": args.name, "id": entry["id"], "claims": 0,
                             "completed": 0, "conflicts": 0, "waits": 0, "resumed": 0, "steps": 0,
                             "claim_s": 0.0, "claim_max": 0.0, "complete_s": 0.0,
                             "complete_max": 0.0}
    lease = float(entry.get("lease") or agents.conf["lease_seconds"])
    beat = Heartbeat(args.root, args.name, lease / 2)
    beat.start()

    def timed(kind: str, fn: Any, *a: Any, **kw: Any) -> Any:
        stats["steps"] += 1
        beat.busy = True
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            beat.busy = False
            took = time.perf_counter() - t0
            stats[f"{kind}_s"] += took
            stats[f"{kind}_max"] = max(stats[f"{kind}_max"], took)
            beat.last = time.monotonic()

    def resume() -> None:
        """Finish the tasks this name holds (no token: the claim is this agent's own,
        and it still stands unless it lapsed meanwhile)."""
        for ref in agents.heartbeat(args.name)["holds"]:
            try:
                timed("complete", agents.complete, args.name, ref, result="resumed")
                stats["resumed"] += 1
            except Conflict:
                stats["conflicts"] += 1

    # A predecessor under this name died holding tasks: finish them first.
    while True:
        try:
            resume()
            break
        except StorageError:
            if not args.retry_storage or time.monotonic() - started > args.deadline:
                raise
            time.sleep(rng.uniform(0.2, 0.5))
    if args.ready:
        Path(args.ready).touch()

    got: dict[str, Any] | None = None
    step = _step_factory(args, agents, stats, rng, timed, resume)
    while True:
        if time.monotonic() - started > args.deadline:
            print(json.dumps({**stats, "error": "deadline"}), flush=True)
            return 3
        try:
            if got is None:
                got = timed("claim", agents.claim, args.name)
            assert got is not None
            got = step(got)
        except StorageError:
            if not args.retry_storage:
                raise
            stats["storage_errors"] = stats.get("storage_errors", 0) + 1
            time.sleep(rng.uniform(0.2, 0.5))
            got = None
            with contextlib.suppress(StorageError, Conflict):
                resume()
            continue
        if got is _DONE:
            break
    beat.stop.set()
    beat.join(timeout=5)
    stats["heartbeats"] = beat.beats
    stats["elapsed"] = round(time.monotonic() - started, 3)
    print(json.dumps(stats), flush=True)
    return 0


_DONE: dict[str, Any] = {}


def _step_factory(args: argparse.Namespace, agents: Agents, stats: dict[str, Any],
                  rng: random.Random, timed: Any, resume: Any) -> Any:
    idle = [0]

    def step(got: dict[str, Any]) -> dict[str, Any] | None:
        """One claim's outcome: wait when nothing is ready, else complete it; the
        next claim (``claim_next``), None to claim again, or _DONE."""
        if got["ref"] is None:
            if got["open"] == 0:
                return _DONE
            stats["waits"] += 1
            idle[0] += 1
            if args.retry_storage and idle[0] % 16 == 0:
                resume()  # a claim whose commit was cut may have made this agent hold one
            # Every poll is a step under the project lock: back off while idle
            # (10-50 ms, doubling to at most 8x), so idle agents leave the lock to
            # those with work to report.
            time.sleep(rng.uniform(0.01, 0.05) * min(2 ** (idle[0] - 1), args.backoff))
            return None
        idle[0] = 0
        stats["claims"] += 1
        if args.pause:
            time.sleep(rng.uniform(0, args.pause))
        try:
            done = timed("complete", agents.complete, args.name, got["ref"],
                         token=got["token"], result=f"done by {args.name}",
                         claim_next=args.next_)
        except Conflict:
            stats["conflicts"] += 1
            return None
        stats["completed"] += 1
        nxt: dict[str, Any] | None = done.get("next")
        return nxt

    return step


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    sys.exit(dag(rest) if mode == "dag" else chat(*rest))

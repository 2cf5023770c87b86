"""The agent registry: register, heartbeat, cleanup, the roster.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import Conflict, InvalidInput
from .messages import Messages
from .records import check_lease, ts


class Registry(Messages):
    """Agents joining, staying alive and leaving."""

    # ----------------------------------------------------------- registry

    def register(self, name: str, *, kind: str = "worker", skills: Sequence[str] = (),
                 pid: int | None = None, host: str | None = None,
                 lease: int | None = None, identity: str | None = None) -> dict[str, Any]:
        """Register (or re-register, after a restart) an agent; returns its entry.

        The agent acts under ``identity`` (default: the person registering it) and
        that identity's role; naming someone whose role is above yours is refused."""
        name = (name or "").strip()
        if not name or len(name) > 100 or any(ch.isspace() for ch in name):
            raise InvalidInput(f"agent name {name!r} is not usable",
                               hint="give a short name without spaces, e.g. --name worker-1")
        kind = (kind or "worker").strip() or "worker"
        skills = sorted({s.strip().lower() for s in skills if s.strip()})
        if lease is not None:
            lease = check_lease(lease)
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int)
                                or not 1 <= pid < 2**31):
            raise InvalidInput(f"pid {pid!r} is not a process id",
                               hint="give the agent's process id (1 or more), or leave --pid out")
        me = self.p.actor
        identity = (identity or "").strip() or me
        if identity.casefold() != me.casefold():
            self.p.require_no_higher(identity, operation="agent.identity")
        with self._step("agent.register") as (tx, reg):
            agents = reg["agents"]
            entry: dict[str, Any] | None = next(
                (a for a in agents.values() if a["name"] == name), None)
            restarted = entry is not None
            if entry is None:
                aid = f"agent-{reg['next']}"
                reg["next"] += 1
                entry = {"id": aid, "name": name, "registered_at": tx.now}
                agents[aid] = entry
            entry.update({"kind": kind, "skills": skills, "pid": pid or os.getpid(),
                          "host": host or _hostname(), "last_seen": tx.now,
                          "status": "live", "lease": lease, "identity": identity})
            tx.actor = name  # registering is the registering person's update
            tx.record("agent_registered", None, None, agent=entry["id"], name=name, kind=kind,
                      skills=skills, restarted=restarted or None, identity=identity)
            return dict(entry)

    def heartbeat(self, who: str | None) -> dict[str, Any]:
        """Renew the agent's leases; says what it holds and how many messages wait."""
        with self._step("agent.heartbeat") as (tx, reg):
            entry = reg["agents"][self.resolve(who, reg)["id"]]
            if entry.get("status") == "gone":
                raise Conflict(f"{entry['id']} was cleaned up",
                               hint="register again with `milestone agent register`")
            revived = entry.get("status") == "dead"
            entry["last_seen"] = tx.now
            entry["status"] = "live"
            if revived:
                tx.record("agent_registered", None, None, agent=entry["id"],
                          name=entry["name"], kind=entry.get("kind"), restarted=True)
            held = [f"{mid}/{t['id']}" for mid, t in self._held(tx, entry["id"])]
        return {"agent": dict(entry), "holds": held, "inbox": len(self.inbox(entry["id"]))}

    def cleanup(self, who: str | None = None) -> dict[str, Any]:
        """Deregister an agent and release its claims; without one, release the claims
        of every dead agent (the sweep every step runs) and list who was dead."""
        with self._step("agent.cleanup") as (tx, reg):
            if who is None and not os.environ.get("MILESTONE_AGENT_ID"):
                dead = [a["id"] for a in reg["agents"].values() if a.get("status") == "dead"]
                return {"released": [], "dead": dead}
            entry = reg["agents"][self.resolve(who, reg)["id"]]
            released = []
            for mid, t in self._held(tx, entry["id"]):
                self._requeue(tx, mid, t["id"], f"{entry['id']} was cleaned up", lapsed=False,
                              event="task_released")
                released.append(f"{mid}/{t['id']}")
            entry["status"] = "gone"
            entry["last_seen"] = tx.now
            tx.record("agent_deregistered", None, None, agent=entry["id"], name=entry["name"],
                      released=released)
            return {"agent": dict(entry), "released": released}

    def roster(self) -> list[dict[str, Any]]:
        now = ts(self.p.clock())
        holds: dict[str, list[str]] = {}
        with self.p.reading() as st:  # on an index: only the tasks agents hold
            for mid, t in self.p.held_tasks(st.milestones):
                holds.setdefault(t["execution"]["agent"], []).append(f"{mid}/{t['id']}")
        rows = []
        for entry in self._registry()["agents"].values():
            row = dict(entry)
            if row.get("status") == "live" and not self._alive(row, now):
                row["status"] = "dead"
            row["holds"] = holds.get(row["id"], [])
            rows.append(row)
        rows.sort(key=lambda r: int(r["id"].rsplit("-", 1)[1]))
        return rows


def _hostname() -> str:
    """This machine's name (socket is imported here: only a registration needs it)."""
    import socket

    return socket.gethostname()

"""The coordination base: the project's agents seen through one ``Project``, the
helpers every operation uses, and messages between agents.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import Conflict, InvalidInput, NotFound

if TYPE_CHECKING:
    from ..project import Project, Txn
from .records import BROADCAST, ROLE_PREFIX, read_record, settings, ts


class Messages:
    """Shared plumbing and messages (send, inbox, ack)."""

    def __init__(self, project: Project) -> None:
        self.p = project
        self._batch: tuple[Txn, dict[str, Any]] | None = None

    # ------------------------------------------------------------ helpers

    @property
    def conf(self) -> dict[str, Any]:
        return settings(self.p.config())

    def _registry(self) -> dict[str, Any]:
        reg = read_record(self.p.store, "agents")
        reg.setdefault("next", 1)
        reg.setdefault("agents", {})
        return reg

    def _scope(self, snaps: Mapping[str, Any], only: str | None,
               statuses: Sequence[str]) -> list[str]:
        """The milestones a step must look at (``Project.scope``)."""
        return self.p.scope(snaps, only, statuses)

    def _alive(self, entry: Mapping[str, Any], now: float) -> bool:
        if entry.get("status") == "gone":
            return False
        lease = float(entry.get("lease") or self.conf["lease_seconds"])
        return now - ts(entry.get("last_seen")) <= lease

    def resolve(self, who: str | None, reg: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The registry entry of an agent id or name (``--agent``/``MILESTONE_AGENT_ID``)."""
        who = (who or os.environ.get("MILESTONE_AGENT_ID") or "").strip()
        if not who:
            raise InvalidInput("no agent given",
                               hint="pass --agent ID or set MILESTONE_AGENT_ID "
                                    "(`milestone agent register` prints the id)")
        agents = (reg if reg is not None else self._registry())["agents"]
        entry = agents.get(who) or next(
            (a for a in agents.values() if a.get("name") == who), None)
        if entry is None:
            raise NotFound(f"no agent {who!r} is registered",
                           hint="`milestone agent register --name NAME` first; "
                                "`milestone agent list` shows who is")
        return dict(entry)

    @contextmanager
    def _step(self, operation: str = "agent", *, late: bool = False
              ) -> Iterator[tuple[Txn, dict[str, Any]]]:
        """One coordination write: the project's write lock, the registry, and the
        sweep of lapsed claims and dead agents that every step starts with. Inside
        ``batch()``, the batch's write. An agent step is an update (``access``),
        checked against the agent's identity (``tx.identity``) before its record
        is written.

        ``late`` (a claim, a complete): where the store can (postgres), the registry
        is read and the sweep looked at before the writer lock, which the step takes
        itself (``Project.writer_lock``) once it has picked its row; with nothing to
        sweep the step writes only its own agent's fields of the registry, merged
        into the registry as it is under the lock. Anything to sweep: the whole step
        under the lock, as everywhere else."""
        if self._batch is not None:
            tx, reg = self._batch
            try:
                yield tx, reg
            except BaseException:
                tx.forget()  # the step may have changed a milestone it did not record
                raise
            return
        with self.p.acting(operation, "update"), self.p.transaction(late=late) as tx:
            tx.check = False  # status moves only (see Txn.check)
            reg = self._registry()
            if late and self._sweep(tx, reg, dry=True):
                late = False  # something to sweep: the whole step under the lock
                self.p.writer_lock(tx)
                reg = self._registry()
            read = copy.deepcopy(reg) if late else None
            before = repr(reg)
            if read is None:
                self._sweep(tx, reg)
            yield tx, reg
            if tx.events:
                self.p.check_write(tx)  # before the record: a refused step writes nothing
            if read is not None and (tx.events or tx.flushed or repr(reg) != before):
                self.p.writer_lock()
                reg, changed = self._merged(read, reg)
            else:
                changed = repr(reg) != before
            if changed:
                self.p.store.write_record("agents", reg)

    def _merged(self, read: dict[str, Any], mine: dict[str, Any]
                ) -> tuple[dict[str, Any], bool]:
        """Under the writer lock: the registry as it is now, with the fields this step
        changed in the one it ``read`` before the lock; and whether that changes it.
        An agent cleaned up since is a Conflict (the step is undone)."""
        fresh = self._registry()
        before = repr(fresh)
        agents = fresh["agents"]
        for aid, entry in mine["agents"].items():
            was, now = read["agents"].get(aid), agents.get(aid)
            if now is None or was is None:
                agents.setdefault(aid, entry)
                continue
            if now.get("status") == "gone" and was.get("status") != "gone":
                raise Conflict(f"{aid} was cleaned up",
                               hint="register again with `milestone agent register`")
            now.update({k: v for k, v in entry.items() if was.get(k) != v})
        fresh["next"] = max(int(fresh["next"]), int(mine["next"]))
        return fresh, repr(fresh) != before

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Several steps as one write (one lock, one sweep, one commit): what
        ``milestone execute`` does with the steps its agents queue up at once. A step
        that is refused (a ``MilestoneError`` its caller catches) leaves the others'
        work standing; any other error undoes the whole batch."""
        if self._batch is not None:
            yield
            return
        with self._step() as pair:
            self._batch = pair
            try:
                yield
            finally:
                self._batch = None

    def _sweep(self, tx: Txn, reg: dict[str, Any], *, dry: bool = False) -> bool:
        """Mark the agents past their lease dead and requeue the claims that lapsed;
        ``dry``: change nothing, say whether there is anything to do."""
        now = ts(tx.now)
        lease_default = self.conf["lease_seconds"]
        for entry in reg["agents"].values():
            if entry.get("status") == "live" and not self._alive(entry, now):
                if dry:
                    return True
                entry["status"] = "dead"
                tx.record("agent_expired", None, None, agent=entry["id"], name=entry["name"],
                          last_seen=entry.get("last_seen"))
        agents = reg["agents"]
        for mid, t in self.p.held_tasks(tx.snaps):
            ex = t["execution"]
            holder = ex["agent"]
            entry = agents.get(holder, {})
            renewed = max(ts(ex.get("claimed_at")),
                          ts(entry.get("last_seen")) if entry.get("status") == "live" else 0)
            if now - renewed > (ex.get("lease") or lease_default):
                if dry:
                    return True
                self._requeue(tx, mid, t["id"], f"lease expired: {holder} last seen "
                              f"{entry.get('last_seen') or 'never'}", lapsed=True)
        return False

    def _requeue(self, tx: Txn, mid: str, tid: str, reason: str, *, lapsed: bool,
                 event: str = "task_requeued", **details: Any) -> md.Task:
        m, before = tx.edit(mid)
        t = m.task(tid)
        ex = dict(t.execution or {})
        holder = ex.pop("agent", None)
        if lapsed:
            ex["lapsed"] = int(ex.get("lapsed", 0)) + 1
            ex["lapsed_from"] = holder  # its token stands until someone claims the task
        spent = md.requeue_task(t, tx.now)
        t.execution = ex
        tx.touch(m)
        tx.record(event, m, before, task=t, only=t, time_spent=spent, agent=holder, reason=reason,
                  token=ex.get("token"), **details)
        tx.follow_status(m)
        return t

    def _held(self, tx: Txn, agent_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(milestone id, task snapshot) of every task an agent holds (or ``agent_id``)."""
        return self.p.held_tasks(tx.snaps, agent_id)

    # ----------------------------------------------------------- messages

    def _post(self, tx: Txn, sender: str, recipients: Sequence[str], body: str, *,
              kind: str, to: str, about: str | None = None) -> dict[str, Any]:
        box = read_record(self.p.store, "messages")
        box.setdefault("next", 1)
        items: list[dict[str, Any]] = box.setdefault("items", [])
        msg = {"id": box["next"], "from": sender, "to": to, "kind": kind, "body": body,
               "sent_at": tx.now, "recipients": list(recipients), "acked": []}
        if about:
            msg["about"] = about
        box["next"] += 1
        items.append(msg)
        keep = int(self.conf["message_keep"])
        if len(items) > keep:  # drop the oldest fully read messages first
            done = [i for i, x in enumerate(items) if set(x["acked"]) >= set(x["recipients"])]
            for i in reversed(done[: len(items) - keep]):
                del items[i]
        self.p.store.write_record("messages", box)
        tx.record("message_sent", None, None, message_id=msg["id"], sender=sender, to=to,
                  recipients=list(recipients), body=body, kind=kind)
        return msg

    def send(self, who: str | None, to: str, body: str) -> dict[str, Any]:
        """Send to an agent (id or name), a role (``role:KIND``) or everyone (``*``)."""
        body = md.check_text(body, "message", required=True, limit=4000)
        to = (to or "").strip()
        if not to:
            raise InvalidInput("no addressee given",
                               hint="--to agent-3, --to role:reviewer, or `agent broadcast`")
        with self._step("agent.send") as (tx, reg):
            sender = self.resolve(who, reg)
            reg["agents"][sender["id"]]["last_seen"] = tx.now
            tx.actor = sender["name"]
            tx.identity = sender.get("identity")
            live = [a for a in reg["agents"].values() if a.get("status") == "live"]
            if to == BROADCAST:
                recipients = [a["id"] for a in live if a["id"] != sender["id"]]
                kind = "broadcast"
            elif to.startswith(ROLE_PREFIX):
                role = to[len(ROLE_PREFIX):]
                recipients = [a["id"] for a in live if a.get("kind") == role]
                kind = "role"
                if not recipients:
                    raise NotFound(f"no live agent has the role {role!r}",
                                   hint="`milestone agent list` shows each agent's kind")
            else:
                target = next((a for a in reg["agents"].values()
                               if to in (a["id"], a["name"])), None)
                recipients = [target["id"] if target else to]
                kind = "direct"
            return self._post(tx, sender["id"], recipients, body, kind=kind, to=to)

    def inbox(self, who: str | None, *, include_acked: bool = False) -> list[dict[str, Any]]:
        """Messages addressed to the agent (or a person, by name) it has not acked."""
        reg = self._registry()
        try:
            me = self.resolve(who, reg)
            names = {me["id"], me["name"]}
        except NotFound:
            names = {(who or os.environ.get("MILESTONE_AGENT_ID") or "").strip()}
        out = []
        for msg in read_record(self.p.store, "messages").get("items", []):
            mine = names & set(msg["recipients"])
            if mine and (include_acked or not mine & set(msg["acked"])):
                out.append(msg)
        return out

    def ack(self, who: str | None, ids: Sequence[int]) -> list[int]:
        """Mark messages read; returns the ids newly acked (acking twice is harmless)."""
        with self._step("agent.ack") as (tx, reg):
            try:
                me = self.resolve(who, reg)["id"]
            except NotFound:
                me = (who or os.environ.get("MILESTONE_AGENT_ID") or "").strip()
            box = read_record(self.p.store, "messages")
            by_id = {m["id"]: m for m in box.get("items", [])}
            unknown = [i for i in ids if i not in by_id or me not in by_id[i]["recipients"]]
            if unknown:
                raise NotFound(f"no message {unknown[0]} in {me}'s inbox",
                               hint="`milestone agent inbox` lists the ids")
            newly = [i for i in ids if me not in by_id[i]["acked"]]
            for i in newly:
                by_id[i]["acked"].append(me)
            if newly:
                self.p.store.write_record("messages", box)
                tx.record("message_acked", None, None, agent=me, message_ids=newly)
            return newly

"""Leased, fenced, exactly-once claims: ready work, claim, complete, fail, release,
blockers reported by agents.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import Conflict, InvalidInput
from ..model import refs

if TYPE_CHECKING:
    from ..project import Txn
from .records import OPEN, check_lease, paths_overlap
from .registry import Registry

CLAIM_PAGE = 64  # ready rows a claim reads first from an index


class Claims(Registry):
    """Claims and what ends them."""

    # ------------------------------------------------------------- claims

    def _candidates(self, snaps: Mapping[str, Any], only: str | None,
                    agent: Mapping[str, Any] | None, limit: int | None = None, *,
                    kept: bool = False) -> list[dict[str, Any]]:
        """Ready tasks, best first (as ``next``), with whether ``agent`` may claim each
        (at most ``limit`` when the store's index answers; every one otherwise).
        ``kept``: a read, which may take them from the query cache."""
        indexed = self.p.ready_index(snaps, only, limit, kept=kept)
        if indexed is not None:
            rows, held_paths = indexed
        else:
            rows, held_paths = self._ready_rows(snaps, only)
        return self._judge(rows, held_paths, agent)

    @staticmethod
    def _judge(rows: list[dict[str, Any]], held_paths: list[tuple[str, list[str]]],
               agent: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """Mark each row ``claimable`` by ``agent`` (its skills, the paths held), or why not."""
        skills = set(agent.get("skills") or ()) if agent is not None else None
        for row in rows:
            missing = sorted(set(row["skills"]) - skills) if skills is not None else []
            clash = [f"{ref} ({', '.join(hit)})" for ref, paths in held_paths
                     if (hit := paths_overlap(row["paths"], paths))] if row["paths"] else []
            row["claimable"] = not missing and not clash
            if missing:
                row["reason"] = f"needs skills {', '.join(missing)}"
            elif clash:
                row["reason"] = f"paths overlap a held task: {'; '.join(clash)}"
        return rows

    def _ready_rows(self, snaps: Mapping[str, Any], only: str | None
                    ) -> tuple[list[dict[str, Any]], list[tuple[str, list[str]]]]:
        """Ready tasks best first, and the paths agents hold, from the snapshots as
        they are (no model objects): over every task with open work."""
        mids = self._scope(snaps, only, OPEN)
        status: dict[str, str] = {}

        def learn(mid: str) -> None:
            snap = snaps.get(mid)
            if snap is None:
                status[mid] = "missing"
                return
            status[mid] = "done" if snap["status"] in ("completed", "archived") else "open"
            for t in snap["tasks"]:
                status[f"{mid}/{t['id']}"] = t["status"]

        def status_of(ref: str) -> str | None:
            if ref not in status and ref.split("/", 1)[0] not in status:
                learn(ref.split("/", 1)[0])  # outside the scope: all done, or gone
            return status.get(ref)

        for mid in mids:
            learn(mid)
        finished = md.FINISHED_TASK
        edges: dict[str, list[str]] = {}
        held_paths: list[tuple[str, list[str]]] = []
        rows: list[dict[str, Any]] = []
        for mid in mids:
            snap = snaps[mid]
            closed = snap["status"] in md.CLOSED_MILESTONE or (only is not None and mid != only)
            waiting = any(status_of(d) != "done" for d in snap.get("depends_on") or ())
            for t in snap["tasks"]:
                ref = f"{mid}/{t['id']}"
                st = t["status"]
                if st in finished:
                    continue
                deps = [d if "/" in d else f"{mid}/{d}" for d in t.get("depends_on") or ()]
                edges[ref] = deps
                if st == "in_progress" and t.get("paths") and (t.get("execution") or {}).get(
                        "agent"):
                    held_paths.append((ref, t["paths"]))
                if closed or waiting or st != "todo":
                    continue
                if any(status_of(d) not in finished for d in deps):
                    continue
                rows.append({"ref": ref, "milestone_id": mid, "task_id": t["id"],
                             "title": t["title"], "priority": snap["priority"],
                             "estimate": t.get("estimate"), "skills": list(t.get("skills") or ()),
                             "paths": list(t.get("paths") or ()),
                             "milestone_title": snap["title"]})
        # Work waiting on a task: only open tasks have edges, so the chain counts open work.
        chain = md.dependents_chain(edges, set(edges)) if rows else {}
        for row in rows:
            row["chain"] = chain.get(row["ref"], 1)
        rows.sort(key=lambda r: (md.priority_rank(r["priority"]), -r["chain"],
                                 r["milestone_id"], md.task_number(r["task_id"])))
        return rows, held_paths

    def ready(self, ref: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Tasks that can be claimed now, best first (any agent's skills): the best
        ``limit`` of them, or all."""
        with self.p.reading() as st:
            only = refs.resolve_milestone(ref, st.milestones) if ref is not None else None
            rows = self._candidates(st.milestones, only, None, limit, kept=True)
        return rows[:limit] if limit is not None else rows

    def claim(self, who: str | None, ref: str | None = None, *,
              lease: int | None = None) -> dict[str, Any]:
        """Hold the best ready task for this agent. When nothing can be claimed, ``ref``
        is None and ``open``/``held`` say whether to wait (work is still held or
        blocked) or stop (``open`` is 0: everything is done)."""
        if lease is not None:
            lease = check_lease(lease)
        with self._step("agent.claim", late=True) as (tx, reg):
            entry = reg["agents"][self.resolve(who, reg)["id"]]
            if entry.get("status") == "gone":
                raise Conflict(f"{entry['id']} was cleaned up",
                               hint="register again with `milestone agent register`")
            entry["last_seen"] = tx.now
            entry["status"] = "live"
            tx.actor = entry["name"]
            tx.identity = entry.get("identity")  # whose role the agent works with
            only = refs.resolve_milestone(ref, tx.snaps) if ref is not None else None
            got = self._take(tx, entry, only, lease)
        return got

    def _take(self, tx: Txn, entry: Mapping[str, Any], only: str | None,
              lease: int | None) -> dict[str, Any]:
        """Inside a step: give ``entry``'s agent the best task it may claim.

        Where the store locks rows (postgres), the best ready row is picked and locked
        first (``FOR UPDATE SKIP LOCKED``: a row another claim in flight holds is passed
        over), before the writer lock; any other way, and when that row is not this
        agent's to take, under the writer lock, each pick's row held for this write
        (``Project.reserve_task``) so no two writes ever take the same task."""
        pick = None
        indexed = self.p.ready_index(tx.snaps, only, 1, pick=True)
        if indexed is not None:
            first = self._judge(*indexed, entry)
            pick = first[0] if first and first[0]["claimable"] else None
        self.p.writer_lock(tx)  # (what the step read before it is read again)
        if pick is None:
            # The best few first: on an indexed store a claim reads a page of ready
            # rows, and all of them only when none of the page is this agent's to take.
            page = self._candidates(tx.snaps, only, entry, CLAIM_PAGE)
            pick = self._reserve(page)
            if pick is None and len(page) >= CLAIM_PAGE:
                pick = self._reserve(self._candidates(tx.snaps, only, entry))
        if pick is None:
            return {"ref": None, "agent": entry["id"], **self._backlog(tx.snaps, only)}
        m, before = tx.edit(pick["milestone_id"])
        t = m.task(pick["task_id"])
        md.start_task(t, tx.now, pick["ref"], [], False)
        ex = dict(t.execution or {})
        ex.pop("lapsed_from", None)
        ex.update({"agent": entry["id"], "token": int(ex.get("token", 0)) + 1,
                   "claimed_at": tx.now,
                   "lease": lease or entry.get("lease") or self.conf["lease_seconds"]})
        t.execution = ex
        t.assignee = entry["name"]
        tx.touch(m)
        tx.record("task_claimed", m, before, task=t, only=t, agent=entry["id"],
                  token=ex["token"],
                  lease=ex["lease"])
        tx.follow_status(m)
        # Plain text for the agent (protected fields opened: Project.reveal); written
        # here, under the lock: it reads the dependencies' snapshots, which on an
        # indexed store are fetched as needed.
        return dict(self.p.reveal({
            "ref": pick["ref"], "token": ex["token"], "lease": ex["lease"],
            "agent": entry["id"], "task": t.to_dict(),
            "prompt": task_prompt(tx.snaps, pick["milestone_id"], pick["task_id"])}))

    def _reserve(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The first claimable row that no other write holds, held for this one."""
        return next((r for r in rows if r["claimable"]
                     and self.p.reserve_task(r["milestone_id"], r["task_id"])), None)

    def _backlog(self, snaps: Mapping[str, Any], only: str | None) -> dict[str, int]:
        counts = {"open": 0, "held": 0, "blocked": 0}
        for mid in self._scope(snaps, only, OPEN):
            snap = snaps[mid]
            if (only and mid != only) or snap.get("status") in md.CLOSED_MILESTONE:
                continue
            for t in snap.get("tasks", ()):
                if t["status"] in md.FINISHED_TASK:
                    continue
                counts["open"] += 1
                counts["held"] += t["status"] == "in_progress"
                counts["blocked"] += t["status"] == "blocked"
        return counts

    @contextmanager
    def _holding(self, who: str | None, ref: str | None, token: int | None, verb: str
                 ) -> Iterator[tuple[Txn, dict[str, Any], str, str]]:
        """A step on a task the agent holds; a stale token or lost claim is refused."""
        with self._step(f"agent.{verb}", late=verb == "complete") as (tx, reg):
            self.p.writer_lock(tx)  # the registry and the sweep's look were read before it
            entry = reg["agents"][self.resolve(who, reg)["id"]]
            aid = entry["id"]
            if ref is None:
                held = self._held(tx, aid)
                if len(held) != 1:
                    raise InvalidInput(
                        f"{aid} holds {len(held)} tasks: name the one to {verb}",
                        hint="give the task reference, e.g. milestone-003/task-2")
                mid, tid = held[0][0], held[0][1]["id"]
            else:
                mid, tid = refs.resolve_task(ref, tx.snaps, tx.current)
            snap = next(x for x in tx.snaps[mid]["tasks"] if x["id"] == tid)
            ex = snap.get("execution") or {}
            status = snap["status"]
            latest = ex.get("token")
            if (not ex.get("agent") and status == "todo" and ex.get("lapsed_from") == aid
                    and token in (None, latest)):
                # Its lease lapsed but nobody claimed the task since: the claim (and its
                # token, still the latest) stands, so the late agent's work counts.
                t = self._retake(tx, mid, tid, entry)
                ex, status = t.execution or {}, t.status
            if token is not None and latest is None:
                raise Conflict(
                    f"cannot {verb} {mid}/{tid}: claim token {token} is stale: the task has "
                    f"never been claimed, so no token is current",
                    hint="check the task reference, or `milestone agent claim` it first")
            if token is not None and latest != token:
                holder = ex.get("agent")
                if holder == aid:  # its own later claim: an old token from an earlier one
                    holding, hint = f"{aid}'s own later claim", f"give --token {latest}"
                else:
                    holding = f"held by {holder}" if holder else "held by nobody now"
                    hint = ("your lease expired and the task was claimed again; drop this "
                            "work and `milestone agent claim` again")
                raise Conflict(
                    f"cannot {verb} {mid}/{tid}: claim token {token} is stale: the current "
                    f"token is {latest} ({holding})", hint=hint)
            if ex.get("agent") != aid or status != "in_progress":
                raise Conflict(
                    f"cannot {verb} {mid}/{tid}: {aid} does not hold it "
                    f"(held by {ex.get('agent') or 'nobody'}, status {status})",
                    hint="your lease may have expired; `milestone agent claim` again")
            entry["last_seen"] = tx.now
            entry["status"] = "live"
            tx.actor = entry["name"]
            tx.identity = entry.get("identity")  # whose role the agent works with
            yield tx, entry, mid, tid

    def _retake(self, tx: Txn, mid: str, tid: str, entry: Mapping[str, Any]) -> md.Task:
        m, before = tx.edit(mid)
        t = m.task(tid)
        md.start_task(t, tx.now, f"{mid}/{tid}", [], False)
        ex = dict(t.execution or {})
        ex.pop("lapsed_from", None)
        ex["agent"] = entry["id"]
        t.execution = ex
        t.assignee = entry["name"]
        tx.touch(m)
        tx.record("task_claimed", m, before, task=t, only=t, agent=entry["id"],
                  token=ex.get("token"),
                  lease=ex.get("lease"), retaken=True)
        tx.follow_status(m)
        return t

    def complete(self, who: str | None, ref: str | None = None, *, token: int | None = None,
                 result: str | None = None, time_spent: int | None = None,
                 claim_next: bool = False, scope: str | None = None) -> dict[str, Any]:
        """Finish a held task with a result summary; time spent defaults to the lease's
        clock (claim to now). With ``claim_next``, claim the next task (of milestone
        ``scope``, or any) in the same step: ``next`` is what ``claim`` returns."""
        if result is not None:
            result = md.check_text(result, "result", limit=4000)
        if time_spent is not None and not 0 <= time_spent <= 10**7:
            raise InvalidInput(f"time spent {time_spent} is out of range",
                               hint="give seconds, 0 to 10000000")
        with self._holding(who, ref, token, "complete") as (tx, entry, mid, tid):
            m, before = tx.edit(mid)
            t = m.task(tid)
            spent = md.complete_task(t, tx.now, f"{mid}/{tid}", tx.unmet(m, t), False)
            if time_spent is not None:
                t.time_spent += time_spent - spent
                spent = time_spent
            ex = dict(t.execution or {})
            ex.pop("agent", None)
            ex["completed_by"] = entry["id"]
            if result:
                ex["result"] = result
            t.execution = ex
            tx.touch(m)
            tx.record("task_completed", m, before, task=t, only=t, time_spent=spent,
                      agent=entry["id"],
                      token=ex.get("token"), result=result)
            tx.follow_status(m)
            done: dict[str, Any] = {
                "ref": f"{mid}/{tid}", "status": t.status, "token": ex.get("token"),
                "milestone_status": m.status, "time_spent": spent}
            if claim_next:
                if self._batch is None:  # (a batch's refused step must leave no trace)
                    tx.flush()  # the completion in the rows: the pick reads the index
                only = refs.resolve_milestone(scope, tx.snaps) if scope else None
                done["next"] = self._take(tx, entry, only, None)
        return done

    def fail(self, who: str | None, ref: str | None = None, *, token: int | None = None,
             reason: str = "") -> dict[str, Any]:
        """The agent could not do the task: back in the queue until it has failed
        ``max_attempts`` times, then blocked with the reason and escalated."""
        reason = md.check_text(reason, "fail reason", required=True, limit=1000,
                               single_line=True)
        with self._holding(who, ref, token, "fail") as (tx, entry, mid, tid):
            m, before = tx.edit(mid)
            t = m.task(tid)
            ex = dict(t.execution or {})
            ex.pop("agent", None)
            attempts = ex["attempts"] = int(ex.get("attempts", 0)) + 1
            ex["last_error"] = reason
            spent = md.requeue_task(t, tx.now)
            t.execution = ex
            blocked = attempts >= int(self.conf["max_attempts"])
            why = f"failed {attempts} times; last: {reason}"[:1000]
            if blocked:
                md.block_task(t, tx.now, f"{mid}/{tid}", why)
            tx.touch(m)
            tx.record("task_failed", m, before, task=t, only=t, time_spent=spent,
                      agent=entry["id"],
                      token=ex.get("token"), reason=reason, attempts=attempts,
                      blocked=blocked or None)
            if blocked:
                self._escalate(tx, m, tid, why, rule="repeated_failure")
            tx.follow_status(m)
            return {"ref": f"{mid}/{tid}", "attempts": attempts, "status": t.status,
                    "escalated": blocked}

    def release(self, who: str | None, ref: str | None = None, *,
                token: int | None = None) -> dict[str, Any]:
        """Give a held task back to the queue untouched."""
        with self._holding(who, ref, token, "release") as (tx, entry, mid, tid):
            t = self._requeue(tx, mid, tid, f"released by {entry['id']}", lapsed=False,
                              event="task_released")
            return {"ref": f"{mid}/{tid}", "status": t.status}

    def report_blocker(self, ref: str, reason: str, *, rule: str,
                       block: bool = True) -> dict[str, Any] | None:
        """A blocker rule fired on task ``ref`` (``milestone-003/task-2``): release any
        claim on it, mark it blocked with the reason (unless ``block`` is False), send
        a ``blocker_detected`` event and a message to the milestone's owner. Reporting
        what is already recorded (same task blocked for the same reason) does
        nothing and returns None."""
        reason = md.check_text(reason, "blocker reason", required=True, limit=1000,
                               single_line=True)
        with self._step("agent.report_blocker") as (tx, _reg):
            mid, tid = refs.resolve_task(ref, tx.snaps, tx.current)
            t = tx.milestone(mid).task(tid)
            if reason in t.blockers or t.finished:
                return None
            if block and (t.execution or {}).get("agent") and t.status == "in_progress":
                self._requeue(tx, mid, tid, f"blocker: {reason}", lapsed=False,
                              event="task_released")
            m = tx.milestone(mid)
            if block:
                before = m.to_dict()
                t = m.task(tid)
                spent = md.block_task(t, tx.now, f"{mid}/{tid}", reason)
                tx.touch(m)
                tx.record("task_blocked", m, before, task=t, time_spent=spent, reason=reason,
                          rule=rule)
            self._escalate(tx, m, tid, reason, rule=rule)
            tx.follow_status(m)
            return {"ref": f"{mid}/{tid}", "rule": rule, "reason": reason, "blocked": block,
                    "escalated_to": m.owner or self.p.actor}

    def _escalate(self, tx: Txn, m: md.Milestone, tid: str | None, reason: str, *,
                  rule: str) -> None:
        """A ``blocker_detected`` event and a message to the milestone's owner."""
        ref = f"{m.id}/{tid}" if tid else m.id
        owner = m.owner or self.p.actor
        tx.record("blocker_detected", None, None, mid=m.id, task_id=tid, rule=rule,
                  reason=reason, escalated_to=owner)
        self._post(tx, "milestone", [owner], f"blocker on {ref}: {reason}", kind="escalation",
                   to=owner, about=ref)


def task_prompt(snaps: Mapping[str, Any], mid: str, tid: str) -> str:
    """What an agent needs to do the task: the task, its milestone, what its
    dependencies produced, and what "done" means."""
    m = snaps[mid]  # the snapshots as they are: nothing here needs the model objects
    t = next(x for x in m["tasks"] if x["id"] == tid)
    lines = [f"# Task {mid}/{tid}: {t['title']}", ""]
    if t.get("description"):
        lines += [t["description"], ""]
    lines += [f"## Milestone {mid}: {m['title']}"]
    if m.get("description"):
        lines += ["", m["description"]]
    deps = []
    for d in t.get("depends_on") or ():
        dmid, dtid = md.split_task_ref(d, mid)
        dt = next((x for x in snaps.get(dmid, {}).get("tasks", ()) if x["id"] == dtid), None)
        if dt is None:
            continue
        result = (dt.get("execution") or {}).get("result") or "(no result recorded)"
        deps.append(f"- {dmid}/{dtid} {dt['title']} [{dt['status']}]: {result}")
    if deps:
        lines += ["", "## Results of the tasks this one depends on", *deps]
    if t.get("paths"):
        lines += ["", "## Files this task may change", *(f"- {p}" for p in t["paths"])]
    done = []
    if t.get("requirements"):
        done += [f"- requirement {r}" for r in t["requirements"]]
    if t.get("run"):
        done.append(f"- the command `{t['run']}` exits 0")
    done += [f"- {c}" for c in m.get("success_criteria") or ()]
    if not done:
        done.append(f"- the work described in the title is finished: {t['title']}")
    lines += ["", "## Done means", *done, "",
              "Report back with `milestone agent complete` (a one-line result) or "
              "`milestone agent fail --reason ...`."]
    return "\n".join(lines)

"""Ready work from the database's rows: the ``chain`` column (how long a chain of open
work waits on each task, kept up to date by every write) and the query of tasks that
can start now, best first, that ``next``, ``ready`` and ``agent claim`` read.

``chain`` is ``model.dependents_chain`` over every task's dependencies, stored: a write
refreshes the tasks it touched and those upstream of them (what they wait on, all the
way up), so a read never walks the graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .. import model as md
from .sqlquery import Connection, dialect_of, loads

Node = tuple[str, str]  # (milestone id, task id)

# Beyond this many changed tasks a write recomputes every chain (an import, a big plan).
FULL_REFRESH_AT = 400

_FINISHED = ", ".join(f"'{s}'" for s in md.FINISHED_TASK)
_CLOSED = ", ".join(f"'{s}'" for s in md.CLOSED_MILESTONE)
_RANK = " ".join(f"WHEN '{p}' THEN {i}" for p, i in md.PRIORITY_RANK.items())

# A task is ready when it is todo, its milestone is open and every milestone it depends
# on completed (or archived), and every task it depends on finished (a dependency that
# does not exist is never met): what ``project.rows.next_tasks`` says in Python. Kept
# in each row's ``ready`` flag, with its milestone's priority ``rank`` and its ``num``.
READY_EXPR = f"""(tasks.status = 'todo'
    AND (SELECT m.status FROM milestones m WHERE m.id = tasks.milestone_id)
        NOT IN ({_CLOSED})
    AND NOT EXISTS (SELECT 1 FROM milestone_deps x LEFT JOIN milestones y ON y.id = x.depends_on
                    WHERE x.milestone_id = tasks.milestone_id
                      AND (y.status IS NULL OR y.status NOT IN ('completed', 'archived')))
    AND NOT EXISTS (SELECT 1 FROM task_deps x LEFT JOIN tasks y
                      ON y.milestone_id = x.dep_milestone_id AND y.id = x.dep_task_id
                    WHERE x.milestone_id = tasks.milestone_id AND x.task_id = tasks.id
                      AND (y.status IS NULL OR y.status NOT IN ({_FINISHED}))))"""
_NEW_READY = f"CASE WHEN {READY_EXPR} THEN 1 ELSE 0 END"
_NEW_RANK = (f"(SELECT CASE m.priority {_RANK} ELSE {len(md.PRIORITIES)} END "
             "FROM milestones m WHERE m.id = tasks.milestone_id)")
_NEW_NUM = "CAST(substr(id, 6) AS INTEGER)"
_MARK = f"UPDATE tasks SET ready = {_NEW_READY}, rank = {_NEW_RANK}, num = {_NEW_NUM}"
# Only the rows whose flags change are written (and so locked): on PostgreSQL a write
# never waits on a ready row that a claim has locked (``ready_rows(lock=True)``) and
# whose flags it does not change.
_CHANGED = f" AND (ready <> {_NEW_READY} OR rank <> {_NEW_RANK} OR num <> {_NEW_NUM})"


def ready_rows(conn: Connection, only: str | None = None, limit: int | None = None,
               offset: int = 0, *, lock: bool = False) -> list[dict[str, Any]]:
    """The ready tasks (of milestone ``only``, or all), best first, at most ``limit``
    from ``offset``: the rows of ``next`` with each task's ``paths`` besides. Read
    through ``idx_task_ready`` in its order: the cost is the rows returned. With
    ``lock`` (inside a transaction), the rows returned are locked until it ends and
    those another transaction has locked are passed over (PostgreSQL's ``FOR UPDATE
    SKIP LOCKED``: a claim's pick)."""
    dialect = dialect_of(conn)
    sql_json = dialect.json_field
    sql = ("SELECT t.milestone_id, t.id, t.title, t.chain, t.assignee, t.estimate, "
           f"{sql_json('t.data', 'skills')}, {sql_json('t.data', 'paths')}, "
           "m.priority, m.title FROM tasks t JOIN milestones m ON m.id = t.milestone_id "
           "WHERE t.ready = 1")
    args: list[Any] = []
    if only is not None:
        sql += " AND t.milestone_id = ?"
        args.append(only)
    sql += " ORDER BY t.rank, t.chain DESC, t.milestone_id, t.num"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    if offset:
        sql += " OFFSET ?"
        args.append(offset)
    if lock:
        sql += dialect.skip_locked
    rows = []
    for (mid, tid, title, chain, assignee, estimate, skills, paths, priority,
         mtitle) in conn.execute(sql, args):
        rows.append({"ref": f"{mid}/{tid}", "milestone_id": mid, "task_id": tid,
                     "title": title, "priority": priority, "chain": chain,
                     "estimate": estimate, "skills": _list(skills),
                     "assignee": assignee, "milestone_title": mtitle,
                     "paths": _list(paths)})
    return rows


def _list(text: str | None) -> list[Any]:
    """A JSON array ``json_extract`` gave (None: the task has none)."""
    if not text or text == "[]":  # most tasks: nothing to decode
        return []
    value = loads(text)
    return list(value) if isinstance(value, list) else []


def ready_count(conn: Connection, only: str | None = None) -> int:
    sql = "SELECT COUNT(*) FROM tasks WHERE ready = 1"
    args: list[Any] = []
    if only is not None:
        sql += " AND milestone_id = ?"
        args.append(only)
    return int(conn.execute(sql, args).fetchone()[0])


def after_write(conn: Connection, mid: str, before: Mapping[str, Any] | None,
                after: Mapping[str, Any] | None) -> None:
    """Bring the ``ready`` flags and ``chain`` counts up to date after milestone
    ``mid``'s rows went from ``before`` to ``after`` (None: added, deleted): the rows
    whose readiness the change can reach, and the chains upstream of the tasks it
    touched."""
    old_head = {k: v for k, v in (before or {}).items() if k != "tasks"}
    new_head = {k: v for k, v in (after or {}).items() if k != "tasks"}
    whole = after is not None and (before is None or any(
        old_head.get(k) != new_head.get(k) for k in ("status", "priority", "depends_on")))
    done = ("completed", "archived")
    if (old_head.get("status") in done) != (new_head.get("status") in done):
        # milestones waiting on this one: every task of theirs may start, or no longer
        mark_milestones(conn, [m for (m,) in conn.execute(
            "SELECT milestone_id FROM milestone_deps WHERE depends_on = ?", (mid,))])
    if whole:
        mark_milestones(conn, [mid])
    old = {t["id"]: t for t in (before or {}).get("tasks", ())}
    new = {t["id"]: t for t in (after or {}).get("tasks", ())}
    tasks: set[Node] = set()
    for tid in old.keys() | new.keys():
        a, b = old.get(tid), new.get(tid)
        if a is not None and b is not None and a["status"] == b["status"] and a.get(
                "depends_on") == b.get("depends_on"):
            continue
        if b is not None and not whole:
            tasks.add((mid, tid))
        if a is None or b is None or (a["status"] in md.FINISHED_TASK) != (
                b["status"] in md.FINISHED_TASK):
            tasks.update(conn.execute(  # the tasks waiting on this one
                "SELECT milestone_id, task_id FROM task_deps WHERE dep_milestone_id = ? "
                "AND dep_task_id = ?", (mid, tid)).fetchall())
    mark_tasks(conn, tasks)
    refresh(conn, changed_nodes(mid, before, after))


def mark_milestones(conn: Connection, mids: Iterable[str]) -> None:
    conn.executemany(_MARK + " WHERE milestone_id = ?" + _CHANGED,
                     [(m,) for m in sorted(set(mids))])


def mark_tasks(conn: Connection, nodes: Iterable[Node]) -> None:
    conn.executemany(_MARK + " WHERE milestone_id = ? AND id = ?" + _CHANGED, sorted(set(nodes)))


def mark_all(conn: Connection) -> None:
    """Every row's ``ready``, ``rank`` and ``num``, and every ``chain``: after an import
    and when the schema gains them."""
    conn.execute(_MARK)
    refresh_all(conn)


# ------------------------------------------------------------------ the chain column

def changed_nodes(mid: str, before: Mapping[str, Any] | None,
                  after: Mapping[str, Any] | None) -> set[Node]:
    """The tasks whose chain a write of milestone ``mid`` may change: a task added,
    removed, opened or finished, or whose dependencies changed, and what it depends on
    (before and after). Their upstream is refreshed with them (``refresh``)."""
    old = {t["id"]: t for t in (before or {}).get("tasks", ())}
    new = {t["id"]: t for t in (after or {}).get("tasks", ())}
    seeds: set[Node] = set()
    for tid in old.keys() | new.keys():
        a, b = old.get(tid), new.get(tid)
        if a is not None and b is not None and (
                (a["status"] in md.FINISHED_TASK) == (b["status"] in md.FINISHED_TASK)
                and a.get("depends_on") == b.get("depends_on")):
            continue
        if b is not None:
            seeds.add((mid, tid))
        for t in (a, b):
            for d in (t or {}).get("depends_on") or ():
                dmid, dtid = d.split("/", 1) if "/" in d else (mid, d)
                seeds.add((dmid, dtid))
    return seeds


def refresh(conn: Connection, seeds: Iterable[Node]) -> None:
    """Bring ``chain`` up to date for ``seeds`` and every task upstream of them."""
    seeds = sorted(set(seeds))
    if not seeds:
        return
    if len(seeds) > FULL_REFRESH_AT:
        refresh_all(conn)
        return
    values = ", ".join("(?, ?)" for _ in seeds)
    args = [x for node in seeds for x in node]
    up = (f"WITH RECURSIVE up(m, t) AS (VALUES {values} UNION "
          "SELECT d.dep_milestone_id, d.dep_task_id FROM task_deps d "
          "JOIN up ON d.milestone_id = up.m AND d.task_id = up.t) ")
    status = {(m, t): s for m, t, s in conn.execute(
        up + "SELECT tk.milestone_id, tk.id, tk.status FROM up "
             "JOIN tasks tk ON tk.milestone_id = up.m AND tk.id = up.t", args)}
    waiters: dict[Node, list[tuple[Node, int]]] = {n: [] for n in status}
    for m, t, wm, wt, stored in conn.execute(
            up + "SELECT d.dep_milestone_id, d.dep_task_id, d.milestone_id, d.task_id, "
                 "w.chain FROM up JOIN task_deps d ON d.dep_milestone_id = up.m "
                 "AND d.dep_task_id = up.t JOIN tasks w ON w.milestone_id = d.milestone_id "
                 "AND w.id = d.task_id", args):
        if (m, t) in waiters:
            waiters[(m, t)].append(((wm, wt), int(stored)))
    # Kahn's order inside the affected set: a task once every waiter in it is known.
    left = {n: sum(1 for w, _ in ws if w in status) for n, ws in waiters.items()}
    todo = [n for n, k in left.items() if k == 0]
    upstream: dict[Node, list[Node]] = {n: [] for n in status}
    for n, ws in waiters.items():
        for w, _ in ws:
            if w in upstream:
                upstream[w].append(n)
    chain: dict[Node, int] = {}
    while todo:
        n = todo.pop()
        chain[n] = (max((chain.get(w, c) for w, c in waiters[n]), default=0)
                    + (status[n] not in md.FINISHED_TASK))
        for u in upstream[n]:
            left[u] -= 1
            if left[u] == 0:
                todo.append(u)
    if len(chain) < len(status):  # a cycle (a hand edit): the whole graph's way
        refresh_all(conn)
        return
    conn.executemany("UPDATE tasks SET chain = ? WHERE milestone_id = ? AND id = ? "
                     "AND chain <> ?", [(c, m, t, c) for (m, t), c in chain.items()])


def refresh_all(conn: Connection) -> None:
    """Recompute every task's ``chain`` (``model.dependents_chain`` of the whole graph)."""
    edges: dict[str, list[str]] = {}
    open_nodes: set[str] = set()
    stored: dict[str, int] = {}
    for mid, tid, status, chain in conn.execute(
            "SELECT milestone_id, id, status, chain FROM tasks"):
        ref = f"{mid}/{tid}"
        edges[ref] = []
        stored[ref] = chain
        if status not in md.FINISHED_TASK:
            open_nodes.add(ref)
    for mid, tid, dmid, dtid in conn.execute(
            "SELECT milestone_id, task_id, dep_milestone_id, dep_task_id FROM task_deps"):
        edges.setdefault(f"{mid}/{tid}", []).append(f"{dmid}/{dtid}")
    chain = md.dependents_chain(edges, open_nodes)
    conn.executemany("UPDATE tasks SET chain = ? WHERE milestone_id = ? AND id = ?",
                     [(c, *ref.split("/", 1)) for ref, c in chain.items()
                      if ref in stored and stored[ref] != c])

"""The bodies of the writes agents and people run most: ``task start``, ``task done``
(and the other one-word task moves) and ``agent claim``. The click commands
(``task.py``, ``agent.py``) and the fast path (``fast.py``) both call these, so the
two ways in print the same thing.

``get`` opens the command's project (once), as in ``reads.py``.
"""

from __future__ import annotations

from typing import Any

from ..ui import inert, plural
from .output import say
from .reads import Get, out


def task_moved(get: Get, verb: str, t: Any, as_json: bool, ref: str | None = None,
               mid: str | None = None) -> None:
    """Confirm a task's change: ``Completed 3/2: title [done]``, or its JSON."""
    p = get()
    if mid is None:  # the milestone the write resolved the reference to
        last = p.last_task
        mid = last[0] if last is not None else None
    changed = bool(p.commits)
    say(p, f"{verb + ' ' if changed else ''}{ref or t.id}: {inert(t.title)} [{t.status}]",
        {"task": t.to_dict()}, as_json, ref=f"{mid}/{t.id}" if mid else t.id,
        milestone_id=mid, changed=changed)


def task_move(get: Get, verb: str, method: str, ref: str, as_json: bool, **kw: Any) -> None:
    """``milestone task start|stop|done|unblock|reopen TASK``: ``method`` of Project."""
    task_moved(get, verb, getattr(get(), method)(ref, **kw), as_json, ref)


def claim(get: Get, ref: str | None, lease: int | None, agent: str | None,
          as_json: bool) -> None:
    """``milestone agent claim [REF]``: the best ready task, under a lease."""
    from ..agents.coord import Agents

    data = Agents(get()).claim(agent, ref, lease=lease)
    if data["ref"] is None:
        text = (f"nothing to claim: {plural(data['open'], 'open task')}, {data['held']} held by "
                f"agents, {data['blocked']} blocked")
    else:
        text = (f"claimed {data['ref']} (token {data['token']}, lease {data['lease']}s): "
                f"{data['task']['title']}")
    out(data, as_json, text, get())

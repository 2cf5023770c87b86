"""The bodies of the read commands people and agents run most: status, list, show, next
and ready. The click commands (``activity.py``, ``agent.py``) and the fast path
(``fast.py``) both call these, so the two ways in print the same thing.

``get`` opens the command's project (once: it is a ``State``'s ``project`` getter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ui import inert
from .output import echo, emit, revealed

NEXT_PAGE = 20  # tasks `next` prints unless --limit or --all says otherwise

Get = Callable[[], Any]


def status(get: Get, ref: str | None, all_: bool, as_json: bool, ui: str | None) -> None:
    emit(get().status_view(ref, all_=all_), "status", as_json, ui, get)


def list_(get: Get, statuses: tuple[str, ...], tags: tuple[str, ...], owner: str | None,
          priorities: tuple[str, ...], overdue: bool, all_: bool, limit: int | None,
          after: str | None, as_json: bool, ui: str | None) -> None:
    data = get().list_view(
        status=statuses, tags=tags, owner=owner, priority=priorities, overdue=overdue,
        all_=all_, limit=limit, after=after)
    emit(data, "list", as_json, ui, get)
    if not as_json and data.get("next_after"):
        echo(f"more: the same command with --after {data['next_after']} shows the "
             "next page", err=True)


def show(get: Get, ref: str, critical: bool, as_json: bool, ui: str | None) -> None:
    data = get().show_view(ref)
    data["show_critical_path"] = critical
    emit(data, "show", as_json, ui, get)


def next_(get: Get, ref: str | None, limit: int | None, all_: bool, as_json: bool,
          ui: str | None) -> None:
    if limit is None and not all_ and not as_json:
        limit = NEXT_PAGE
    emit(get().next_view(ref, limit=limit), "next", as_json, ui, get)


def ready(get: Get, ref: str | None, limit: int | None, as_json: bool) -> None:
    from ..agents.coord import Agents

    rows = Agents(get()).ready(ref, limit)
    # The lines for people are made only when printed (30,000 rows at 100,000 tasks).
    text = "" if as_json else (
        "\n".join(task_line(r) for r in rows) if rows else "nothing is ready to claim")
    out({"tasks": rows}, as_json, text, get())


def out(data: dict[str, Any], as_json: bool, text: str, project: Any) -> None:
    """An agent command's answer: the JSON contract (naming the task it touched), or
    ``text`` for people; protected text opened (an agent works on the plain text)."""
    if as_json:
        data = revealed(data, project)
    else:
        text = revealed(text, project)
    if as_json:
        from ..ui import jsontext

        ref = data.get("ref")  # the task a step touched; null when it touched none
        touched = {"ref": ref, "milestone_id": ref.split("/")[0] if ref else None}
        echo(jsontext.dumps({"schema": 1, **touched, **data}))
    else:
        echo(inert(text, keep_newlines=True))  # lines here are ours; stored text is inert


def task_line(r: dict[str, Any]) -> str:
    r = {k: inert(v) if isinstance(v, str) else v for k, v in r.items()}
    mark = "" if r.get("claimable", True) else f"  (not now: {r['reason']})"
    skills = f"  [skills: {', '.join(r['skills'])}]" if r.get("skills") else ""
    return f"{r['ref']:<24} {r['priority']:<8} chain {r['chain']:<3} {r['title']}{skills}{mark}"

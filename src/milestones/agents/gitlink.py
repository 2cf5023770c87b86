"""`milestone git link`: commits tied to tasks after the fact. Scans the commits for
task references (``[milestone-001/task-002]`` or trailers) and records or closes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import InvalidInput, MilestoneError, StorageError

if TYPE_CHECKING:
    from ..project import Project, Txn
from .git import (
    BRACKET_RE,
    DEFAULT_CLOSE_KEYWORD,
    FULL_REF,
    KEYWORD_RE,
    TRAILER_RE,
    last_line,
    repo_toplevel,
    run_git,
)

# ------------------------------------------------------------------------- link


def _utc(stamp: str) -> str:
    try:
        return md.utc_stamp(datetime.fromtimestamp(int(stamp), UTC))
    except (ValueError, OverflowError, OSError):  # OSError: out of the platform's range
        return stamp


def commit_refs(message: str, keyword: str) -> tuple[list[str], list[str], list[str]]:
    """What a commit message says about tasks: (linked refs, closed refs, refs that
    name no milestone). Trailers count in the message's last paragraph: ``Task:
    task-2`` with ``Milestone: milestone-003``, or ``Task: milestone-003/task-2``."""
    linked: list[str] = []
    closed: list[str] = []
    loose: list[str] = []

    def add(ref: str, into: list[str]) -> None:
        if ref not in into:
            into.append(ref)

    for ref in BRACKET_RE.findall(message):
        add(ref, linked)
    close_re = re.compile(rf"(?<![\w-]){re.escape(keyword)}:?\s+({FULL_REF})\b",
                          re.IGNORECASE)
    for ref in close_re.findall(message):
        add(ref, linked)
        add(ref, closed)
    paragraphs = [p for p in re.split(r"\n\s*\n", message.strip()) if p.strip()]
    if len(paragraphs) > 1:
        tasks: list[str] = []
        milestones: list[str] = []
        for line in paragraphs[-1].splitlines():
            m = TRAILER_RE.match(line.strip())
            if m:
                (tasks if m.group(1).lower() == "task" else milestones).append(m.group(2))
        for value in tasks:
            value = value.rstrip(".,;")
            if re.fullmatch(FULL_REF, value):
                add(value, linked)
            elif md.TASK_ID_RE.match(value) and len(milestones) == 1 \
                    and md.MILESTONE_ID_RE.match(milestones[0]):
                add(f"{milestones[0]}/{value}", linked)
            else:
                add(value, loose)
    return linked, closed, loose


def _scan(root: Path, since: str | None, keyword: str) -> list[dict[str, Any]]:
    """Commits of every ref (but those reachable from ``since``), oldest first, whose
    message may name a task (git filters them: no full parse of the history)."""
    args = ["log", "--all", "--reverse", "-z", "--format=%H%x00%an <%ae>%x00%at%x00%s%x00%B",
            "--regexp-ignore-case", "--extended-regexp",
            r"--grep=^(task|milestone)[[:space:]]*:",
            r"--grep=\[milestone-[0-9]+/task-[0-9]+\]",
            f"--grep={keyword}:?[[:space:]]+milestone-[0-9]+/task-[0-9]+"]
    if since:
        if since.startswith("-") or run_git(root, "rev-parse", "-q", "--verify",
                                            f"{since}^{{commit}}", check=False).returncode:
            raise InvalidInput(f"--since {since!r} is not a commit in {root}",
                               hint="give a branch, tag or commit, e.g. --since v1.0")
        args += ["--not", since, "--"]
    proc = run_git(root, *args, check=False)
    if proc.returncode != 0:
        if run_git(root, "rev-parse", "-q", "--verify", "HEAD", check=False).returncode:
            return []  # no commits yet: nothing to link
        raise StorageError(f"`git log` failed in {root}: {last_line(proc)}",
                           hint="check the repository with `git status`")
    fields = proc.stdout.split("\0")
    out = []
    for i in range(0, len(fields) - 4, 5):
        sha = fields[i].strip()
        if not sha:
            continue
        out.append({"sha": sha, "author": fields[i + 1], "date": _utc(fields[i + 2]),
                    "subject": fields[i + 3], "message": fields[i + 4]})
    return out


def close_keyword(config: Mapping[str, Any], keyword: str | None = None) -> str:
    word = keyword if keyword is not None else \
        (config.get("git") or {}).get("close_keyword") or DEFAULT_CLOSE_KEYWORD
    word = str(word).strip()
    if not KEYWORD_RE.match(word):
        raise InvalidInput(f"close keyword {word!r} is not one plain word",
                           hint="give letters, digits, - or _, e.g. --keyword Closes "
                                "(config: git.close_keyword)")
    return word


def link(project: Project, *, since: str | None = None, keyword: str | None = None,
         repo_root: Path | None = None) -> dict[str, Any]:
    """Record on each task the commits that name it; a closing commit completes it.

    Idempotent: a commit already on its task is not added again, and a finished
    task is not completed again, so a second run writes nothing."""
    word = close_keyword(project.config(), keyword)
    root = repo_toplevel(repo_root or project.root.parent)
    commits = _scan(root, since, word)
    linked: list[dict[str, Any]] = []
    completed: list[str] = []
    refused: list[dict[str, Any]] = []
    unknown: set[str] = set()
    skipped: set[str] = set()
    already = 0
    wanted = []
    for c in commits:
        refs_, closing, loose = commit_refs(c["message"], word)
        unknown.update(loose)
        if refs_:
            wanted.append((c, refs_, closing))
    if wanted:
        with project.acting("git.link", "update"), project.transaction() as tx:
            for c, refs_, closing in wanted:
                for ref in refs_:
                    mid, tid = ref.split("/", 1)
                    snap = tx.snaps.get(mid)
                    if snap is None or not any(t["id"] == tid for t in snap.get("tasks", ())):
                        unknown.add(ref)
                        continue
                    if snap.get("status") == "archived":
                        skipped.add(ref)
                        continue
                    m = tx.milestone(mid)
                    t = m.task(tid)
                    record = {"sha": c["sha"], "subject": c["subject"], "author": c["author"],
                              "date": c["date"]}
                    ex = dict(t.execution or {})
                    known = list(ex.get("commits") or [])
                    if any(k.get("sha") == c["sha"] for k in known):
                        already += 1
                    else:
                        before = m.to_dict()
                        ex["commits"] = [*known, record]
                        t.execution = ex
                        tx.touch(m)
                        tx.record("commit_linked", m, before, task=t, sha=c["sha"],
                                  subject=c["subject"], author=c["author"])
                        linked.append({"ref": ref, **record})
                    if ref in closing and not t.finished:
                        why = _close(tx, m, t, c["sha"])
                        if why is None:
                            completed.append(ref)
                        else:
                            refused.append({"ref": ref, "sha": c["sha"], "reason": why})
                    tx.follow_status(m)
    return {"schema": 1, "repository": str(root), "scanned": len(commits),
            "linked": linked, "completed": completed, "not_closed": refused,
            "already_linked": already,
            "unknown": sorted(unknown), "skipped_archived": sorted(skipped),
            "keyword": word}


def _close(tx: Txn, m: md.Milestone, t: md.Task, sha: str) -> str | None:
    """Complete a task a commit closes, under the same rules as ``task done`` (no
    force): None when done; else why not, noted on the task (its commit record's
    ``close_refused``, a ``task_close_refused`` event) and left open. Anyone who
    writes a commit message must not finish a task its dependencies hold back."""
    before = m.to_dict()
    t = m.task(t.id)
    try:
        spent = md.complete_task(t, tx.now, f"{m.id}/{t.id}", tx.unmet(m, t), False)
    except MilestoneError as exc:
        why = exc.message
        ex = dict(t.execution or {})
        known = [dict(k) for k in ex.get("commits") or []]
        for k in known:
            if k.get("sha") == sha:
                if k.get("close_refused") == why:
                    return why  # noted already: nothing to write again
                k["close_refused"] = why
        ex["commits"] = known
        t.execution = ex
        tx.touch(m)
        tx.record("task_close_refused", m, before, task=t, commit=sha, reason=why)
        return why
    ex = dict(t.execution or {})
    ex.pop("agent", None)
    ex["closed_by"] = sha
    # an earlier run's note that this commit could not close it is answered now
    ex["commits"] = [{k: v for k, v in c.items() if k != "close_refused"}
                     if c.get("sha") == sha else c for c in ex.get("commits") or []]
    t.execution = ex
    tx.touch(m)
    tx.record("task_completed", m, before, task=t, time_spent=spent, commit=sha)
    return None

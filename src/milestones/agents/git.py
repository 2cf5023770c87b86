"""Git integration for agents working a milestone, and commits linked to tasks.

Plain ``git`` subprocesses (no GitPython); every failure is one clear
``StorageError`` (git said no), ``InvalidInput`` (no repository, no commits, no
identity) or ``Conflict`` (a branch is checked out where we need it).

Layout, for milestone ``milestone-003`` in a repository at ``<repo>``:

* ``milestone/milestone-003``: the milestone's branch, made from HEAD (or
  ``base``) by ``prepare()`` and never checked out in the user's worktree;
* ``milestone/milestone-003-task-2``: one branch per task, started from the
  milestone branch when the task's worktree is made, so it holds the work of the
  dependencies merged so far. (Not ``milestone/milestone-003/task-2``: git cannot
  have both a ref and a folder of refs named ``milestone/milestone-003``.)
* ``<repo>/.milestone-worktrees/milestone-003-task-2``: the task's ``git
  worktree``, where its command runs. The folder is listed in the clone's own
  ``.git/info/exclude`` (local, nothing to commit), so it never shows up as
  untracked in the main tree. It is not under ``.git/`` because linters skip any
  path with a ``.git`` component, nor under ``.milestones/`` because backups copy
  that folder.
* ``<repo>/.milestone-worktrees/milestone-003``: the milestone branch's own
  worktree, where ``merge()`` runs ``git merge``: merging never needs the branch
  checked out in the user's worktree and never touches the user's files. A
  conflicting merge is aborted there, so the branch stays as it was.

A task's changes become one commit, ``feat(milestone-003): <title>`` with the
trailers ``Task: task-2`` and ``Milestone: milestone-003``; commits the task's own
command made are folded into it (their subjects listed in the body).

``link()`` scans ``git log --all`` (or what is not reachable from ``--since
REF``) for those trailers, ``[milestone-003/task-2]`` in a message, or ``Closes
milestone-003/task-2`` (the keyword is ``git.close_keyword`` in the config), and
records each commit on its task (``task.execution["commits"]``, a
``commit_linked`` event); a closing commit completes the task.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import model as md
from ..errors import Conflict, InvalidInput, NotFound, StorageError

if TYPE_CHECKING:
    from ..project import Project


WORKTREES_DIR = ".milestone-worktrees"
BRANCH_PREFIX = "milestone/"
DEFAULT_CLOSE_KEYWORD = "Closes"
GIT_TIMEOUT = 600  # seconds; a checkout of a large tree can take a while
# Inherited from a git hook, these would point every command at the wrong place.
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX",
                 "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY")
_UNMERGED = {"DD", "AU", "UD", "UA", "DU", "AA", "UU"}
FULL_REF = r"milestone-[0-9]{3,18}/task-[0-9]{1,18}"
BRACKET_RE = re.compile(r"\[(" + FULL_REF + r")\]")
TRAILER_RE = re.compile(r"^(task|milestone)\s*:\s*(\S+)\s*$", re.IGNORECASE)
KEYWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")


# ------------------------------------------------------------------ running git


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_MERGE_AUTOEDIT": "no", "LC_ALL": "C"})
    return env


def run_git(cwd: Path, *args: str, check: bool = True, input: str | None = None,
            timeout: float = GIT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``git -C cwd ARGS``; with ``check``, a non-zero exit is a StorageError naming
    the command and git's own last line."""
    cmd = ["git", "-C", str(cwd), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8",
                              errors="replace", input=input, env=_env(), timeout=timeout,
                              check=False)
    except FileNotFoundError:
        raise StorageError("git is not installed (no `git` on PATH)",
                           hint="install git, or run without git integration") from None
    except subprocess.TimeoutExpired:
        raise StorageError(f"`git {' '.join(args)}` did not finish in {timeout:.0f}s",
                           hint="check the repository (a lock held, a hook waiting?)") from None
    if check and proc.returncode != 0:
        raise StorageError(f"`git {' '.join(args)}` failed in {cwd}: {last_line(proc)}",
                           hint="see git's message; `git status` there shows the state")
    return proc


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [x.strip() for x in (proc.stderr or proc.stdout or "").splitlines() if x.strip()]
    return lines[-1] if lines else f"exit status {proc.returncode}"


def _z(text: str) -> list[str]:
    return [x for x in text.split("\0") if x]


def repo_toplevel(start: Path) -> Path:
    """The top of the git worktree holding ``start``; InvalidInput outside one."""
    proc = run_git(start, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise InvalidInput(f"{start} is not inside a git repository",
                           hint="run `git init` and make a first commit there, "
                                "or run without git integration")
    return Path(proc.stdout.strip()).resolve()


def unmerged_paths(root: Path) -> list[str]:
    """Paths ``git status`` shows as unmerged (UU, AA, DD, ...) in the worktree at
    ``root``: a merge or rebase stopped on conflicts there."""
    out = run_git(root, "status", "--porcelain", "-z", "--untracked-files=no").stdout
    paths: list[str] = []
    items = out.split("\0")
    i = 0
    while i < len(items):
        entry = items[i]
        i += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            i += 1  # a rename's source path follows as its own item
        if code in _UNMERGED:
            paths.append(path)
    return sorted(paths)


def _task_id(task_ref: str, milestone_id: str) -> str:
    mid, tid = md.split_task_ref(str(task_ref).strip(), milestone_id)
    if mid != milestone_id or not md.TASK_ID_RE.match(tid):
        raise InvalidInput(f"{task_ref!r} is not a task of {milestone_id}",
                           hint=f"give task-2 or {milestone_id}/task-2")
    return tid


# -------------------------------------------------------------- the integration


class GitIntegration:
    """Branches, worktrees, commits and merges of one milestone's tasks.

    Thread-safe: the calls that change the repository hold one lock, so an
    executor may call it from several threads."""

    def __init__(self, repo_root: Path, milestone_id: str, *, base: str | None = None) -> None:
        if not md.MILESTONE_ID_RE.match(milestone_id):
            raise InvalidInput(f"{milestone_id!r} is not a milestone id",
                               hint="give an id like milestone-003")
        self.start = Path(repo_root)
        self.milestone_id = milestone_id
        self.base = base
        self.branch = f"{BRANCH_PREFIX}{milestone_id}"
        self._root: Path | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------- names

    @property
    def root(self) -> Path:
        """The top of the repository's worktree."""
        if self._root is None:
            self._root = repo_toplevel(self.start)
        return self._root

    @property
    def worktrees_dir(self) -> Path:
        return self.root / WORKTREES_DIR

    def task_branch(self, task_ref: str) -> str:
        return f"{self.branch}-{_task_id(task_ref, self.milestone_id)}"

    def worktree_path(self, task_ref: str) -> Path:
        return self.worktrees_dir / f"{self.milestone_id}-{_task_id(task_ref, self.milestone_id)}"

    @property
    def merge_worktree(self) -> Path:
        return self.worktrees_dir / self.milestone_id

    def _git(self, *args: str, cwd: Path | None = None, check: bool = True,
             input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_git(cwd or self.root, *args, check=check, input=input)

    def _ok(self, *args: str, cwd: Path | None = None) -> bool:
        return self._git(*args, cwd=cwd, check=False).returncode == 0

    def _sha(self, rev: str) -> str | None:
        proc = self._git("rev-parse", "-q", "--verify", f"{rev}^{{commit}}", check=False)
        if proc.returncode != 0:
            return None
        return proc.stdout.strip() or None

    def _branch_exists(self, branch: str) -> bool:
        return self._ok("show-ref", "-q", "--verify", f"refs/heads/{branch}")

    def _worktrees(self) -> dict[Path, str | None]:
        """Registered worktrees: path -> branch checked out (None when detached)."""
        out = self._git("worktree", "list", "--porcelain").stdout
        found: dict[Path, str | None] = {}
        path: Path | None = None
        for line in out.splitlines():
            if line.startswith("worktree "):
                path = Path(line[len("worktree "):]).resolve()
                found[path] = None
            elif line.startswith("branch ") and path is not None:
                found[path] = line[len("branch "):].removeprefix("refs/heads/")
        return found

    # ----------------------------------------------------------- prepare

    def prepare(self) -> str:
        """Create (or reuse) the milestone branch from HEAD or ``base``; its name."""
        with self._lock:
            root = self.root
            if self._sha("HEAD") is None:
                raise InvalidInput(f"the git repository at {root} has no commits yet",
                                   hint="make a first commit, then run again")
            if not self._ok("var", "GIT_COMMITTER_IDENT"):
                raise InvalidInput("git does not know who commits in this repository",
                                   hint="git config user.name 'Your Name' && "
                                        "git config user.email you@example.com")
            if not self._branch_exists(self.branch):
                start = self.base or "HEAD"
                if start.startswith("-") or self._sha(start) is None:
                    raise InvalidInput(f"base {start!r} is not a commit in {root}",
                                       hint="give a branch, tag or commit, e.g. --base main")
                self._git("branch", self.branch, start)
            self._exclude_worktrees()
            mine = self.merge_worktree.resolve()
            for path, branch in self._worktrees().items():
                if branch == self.branch and path != mine:
                    raise Conflict(f"{self.branch} is checked out in {path}",
                                   hint="switch that worktree to another branch: the "
                                        "milestone branch is merged into in its own worktree")
            return self.branch

    def _exclude_worktrees(self) -> None:
        rel = self._git("rev-parse", "--git-path", "info/exclude").stdout.strip()
        path = Path(rel) if os.path.isabs(rel) else self.root / rel
        line = f"/{WORKTREES_DIR}/"
        try:
            text = path.read_text("utf-8") if path.exists() else ""
            if line in text.splitlines():
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            sep = "" if not text or text.endswith("\n") else "\n"
            with path.open("a", encoding="utf-8") as f:
                f.write(f"{sep}# task worktrees of `milestone execute --git`\n{line}\n")
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}",
                               hint="check the repository's permissions") from None

    # --------------------------------------------------------- worktrees

    def worktree(self, task_ref: str) -> Path:
        """A worktree of its own for the task, on its own branch started from the
        milestone branch as it is now; made fresh (an earlier attempt's leftovers
        are discarded), reusing the branch when it already holds the task's commits."""
        with self._lock:
            if not self._branch_exists(self.branch):
                self.prepare()
            branch = self.task_branch(task_ref)
            path = self.worktree_path(task_ref)
            registered = self._worktrees()
            here = registered.get(path.resolve(), "missing")
            if not self._branch_exists(branch):
                self._git("branch", branch, self.branch)
            elif self._ok("merge-base", "--is-ancestor", branch, self.branch):
                # no work of its own yet: restart it from the milestone branch
                if here == branch:
                    self._git("reset", "-q", "--hard", self.branch, cwd=path)
                else:
                    self._git("branch", "-f", branch, self.branch)
            if here == branch:
                self._git("reset", "-q", "--hard", "HEAD", cwd=path)
                self._git("clean", "-q", "-fd", cwd=path)
                return path
            if here != "missing":  # something else is checked out there
                self._git("worktree", "remove", "--force", str(path))
            elif path.exists():
                self._git("worktree", "prune")
                shutil.rmtree(path)  # ours: a leftover no git worktree knows
            for other, br in registered.items():
                if br == branch and other != path.resolve():
                    raise Conflict(f"{branch} is checked out in {other}",
                                   hint="switch that worktree to another branch")
            path.parent.mkdir(parents=True, exist_ok=True)
            self._git("worktree", "add", "-q", str(path), branch)
            return path

    def remove_worktree(self, task_ref: str) -> None:
        """Remove the task's worktree (its branch stays)."""
        with self._lock:
            self._remove(self.worktree_path(task_ref))

    def _remove(self, path: Path) -> None:
        if path.resolve() in self._worktrees():
            self._git("worktree", "remove", "--force", str(path))
        elif path.exists():
            shutil.rmtree(path)
        self._git("worktree", "prune")

    def finish(self) -> None:
        """Remove every worktree of this milestone (the merge one too); keep the branches."""
        with self._lock:
            prefix = self.milestone_id
            for path in list(self._worktrees()):
                if path.parent == self.worktrees_dir.resolve() and (
                        path.name == prefix or path.name.startswith(prefix + "-task-")):
                    self._git("worktree", "remove", "--force", str(path))
            self._git("worktree", "prune")
            with contextlib.suppress(OSError):  # only when nothing else is left in it
                self.worktrees_dir.rmdir()

    # ----------------------------------------------------- commit, merge

    def commit_task(self, task_ref: str, title: str) -> str | None:
        """Everything the task changed in its worktree as one commit
        ``feat(milestone-003): <title>`` with ``Task:`` and ``Milestone:`` trailers;
        its sha, or None when the task changed nothing."""
        tid = _task_id(task_ref, self.milestone_id)
        subject = " ".join(str(title).split()) or tid
        with self._lock:
            path = self.worktree_path(task_ref)
            if path.resolve() not in self._worktrees():
                raise NotFound(f"no worktree for {self.milestone_id}/{tid} at {path}",
                               hint="make it with worktree() before committing")
            body: list[str] = []
            start = self._git("merge-base", "HEAD", self.branch, cwd=path).stdout.strip()
            ours = self._git("rev-list", "-n1", "--all-match", f"--grep=^Task: {tid}$",
                             f"--grep=^Milestone: {self.milestone_id}$", f"{start}..HEAD",
                             cwd=path).stdout.strip()
            start = ours or start  # a commit of ours already there: fold only what follows
            if self._git("rev-parse", "HEAD", cwd=path).stdout.strip() != start:
                # the task's command committed itself: fold its commits into one
                subjects = self._git("log", "--reverse", "--format=%s", f"{start}..HEAD",
                                     cwd=path).stdout.splitlines()
                body = [f"- {s}" for s in subjects if s.strip()]
                self._git("reset", "-q", "--soft", start, cwd=path)
            self._git("add", "-A", cwd=path)
            if self._ok("diff", "--cached", "--quiet", cwd=path):
                return None
            lines = [f"feat({self.milestone_id}): {subject}", ""]
            if body:
                lines += [*body, ""]
            lines += [f"Task: {tid}", f"Milestone: {self.milestone_id}", ""]
            self._git("commit", "-q", "--cleanup=whitespace", "-F", "-", cwd=path,
                      input="\n".join(lines))
            return self._git("rev-parse", "HEAD", cwd=path).stdout.strip()

    def merge(self, task_ref: str) -> list[str]:
        """Merge the task's branch into the milestone branch (in the milestone's own
        worktree). [] when merged (or nothing to merge); else the conflicting paths,
        with the merge aborted and the milestone branch as it was."""
        tid = _task_id(task_ref, self.milestone_id)
        branch = self.task_branch(tid)
        with self._lock:
            if not self._branch_exists(branch):
                raise NotFound(f"no branch {branch}", hint="worktree() makes it")
            if self._ok("merge-base", "--is-ancestor", branch, self.branch):
                return []
            wt = self._merge_worktree()
            proc = self._git("merge", "-q", "--no-edit", "-m",
                             f"Merge {self.milestone_id}/{tid} into {self.branch}", branch,
                             cwd=wt, check=False)
            if proc.returncode == 0:
                return []
            conflicts = sorted(set(_z(self._git("diff", "--name-only", "-z", "--diff-filter=U",
                                                cwd=wt).stdout)))
            self._clean_merge_worktree(wt)
            if not conflicts:
                raise StorageError(f"`git merge {branch}` failed: {last_line(proc)}",
                                   hint=f"try the merge by hand in {wt}")
            return conflicts

    def _merge_worktree(self) -> Path:
        path = self.merge_worktree
        here = self._worktrees().get(path.resolve(), "missing")
        if here == self.branch:
            self._clean_merge_worktree(path)
            return path
        if here != "missing":
            self._git("worktree", "remove", "--force", str(path))
        elif path.exists():
            self._git("worktree", "prune")
            shutil.rmtree(path)
        self.prepare()  # the branch exists and is not checked out anywhere else
        path.parent.mkdir(parents=True, exist_ok=True)
        self._git("worktree", "add", "-q", str(path), self.branch)
        return path

    def _clean_merge_worktree(self, path: Path) -> None:
        """Ours alone: a merge left half done (a crash, a conflict) is undone."""
        if self._ok("rev-parse", "-q", "--verify", "MERGE_HEAD", cwd=path):
            self._git("merge", "--abort", cwd=path, check=False)
        if self._git("status", "--porcelain", cwd=path).stdout.strip():
            self._git("reset", "-q", "--hard", "HEAD", cwd=path)
            self._git("clean", "-q", "-fd", cwd=path)

    # -------------------------------------------------------------- link

    def link(self, project: Project, since: str | None = None,
             keyword: str | None = None) -> dict[str, Any]:
        """``link()`` over this repository."""
        from .gitlink import link

        return link(project, since=since, keyword=keyword, repo_root=self.root)


__all__ = [
    "BRANCH_PREFIX",
    "DEFAULT_CLOSE_KEYWORD",
    "WORKTREES_DIR",
    "GitIntegration",
    "repo_toplevel",
    "run_git",
    "unmerged_paths",
]

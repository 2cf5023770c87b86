"""Git integration (milestones.agents.git): branches, worktrees, commits with trailers,
merges in dependency order, conflicts; and `git link` recording commits on tasks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import Runner
from milestones.agents.git import GitIntegration, unmerged_paths
from milestones.agents.gitlink import commit_refs, link
from milestones.errors import Conflict, InvalidInput
from milestones.project import Project

MID = "milestone-001"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    git(path, "config", "commit.gpgsign", "false")
    (path / "README.md").write_text("hello\n")
    (path / "a.txt").write_text("one\ntwo\nthree\n")
    git(path, "add", "README.md", "a.txt")
    git(path, "commit", "-q", "-m", "first commit")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def sha(cwd: Path, rev: str) -> str:
    return git(cwd, "rev-parse", rev).strip()


def branches(cwd: Path) -> set[str]:
    return set(git(cwd, "branch", "--format=%(refname:short)").split())


def worktrees(cwd: Path) -> dict[Path, str]:
    found: dict[Path, str] = {}
    path = None
    for line in git(cwd, "worktree", "list", "--porcelain").splitlines():
        if line.startswith("worktree "):
            path = Path(line[9:]).resolve()
        elif line.startswith("branch ") and path is not None:
            found[path] = line[7:].removeprefix("refs/heads/")
    return found


# ------------------------------------------------------------------ GitIntegration


def test_branch_worktrees_commits_and_merges_in_order(repo: Path) -> None:
    head = sha(repo, "HEAD")
    g = GitIntegration(repo, MID)
    assert g.prepare() == "milestone/milestone-001"
    assert g.prepare() == "milestone/milestone-001"  # reused, not moved
    assert sha(repo, "milestone/milestone-001") == head

    w1, w2 = g.worktree("task-1"), g.worktree(f"{MID}/task-2")
    assert w1 != w2 and w1.is_dir() and w2.is_dir()
    wts = worktrees(repo)
    assert wts[w1.resolve()] == "milestone/milestone-001-task-1"
    assert wts[w2.resolve()] == "milestone/milestone-001-task-2"
    # the worktrees never show up in the main tree, which stays on its own branch
    (w1 / "one.txt").write_text("task one\n")
    (w2 / "two.txt").write_text("task two\n")
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert git(repo, "branch", "--show-current").strip() == "main"

    s1 = g.commit_task("task-1", "Write the first file")
    s2 = g.commit_task("task-2", "Write the second file")
    assert s1 and s2 and s1 != s2
    assert git(repo, "log", "-1", "--format=%B", s1) == (
        "feat(milestone-001): Write the first file\n\nTask: task-1\nMilestone: milestone-001\n\n")
    trailers = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", s2)
    assert trailers.split("\n")[:2] == ["Task: task-2", "Milestone: milestone-001"]
    assert git(repo, "show", "--name-only", "--format=", s1).split() == ["one.txt"]
    assert g.commit_task("task-2", "Nothing more") is None  # nothing changed

    # task-3 depends on task-1: after task-1 is merged, its worktree holds task-1's work
    assert g.merge("task-1") == []
    w3 = g.worktree("task-3")
    assert (w3 / "one.txt").read_text() == "task one\n"
    assert not (w3 / "two.txt").exists()
    (w3 / "three.txt").write_text((w3 / "one.txt").read_text() + "and three\n")
    s3 = g.commit_task("task-3", "Build on the first")
    assert g.merge("task-2") == []
    assert g.merge("task-3") == []
    assert g.merge("task-3") == []  # merged already: nothing to do
    tip = "milestone/milestone-001"
    log = git(repo, "log", "--format=%H", tip).split()
    assert {s1, s2, s3} <= set(log)
    assert git(repo, "merge-base", "--is-ancestor", s1, s3) == ""
    files = set(git(repo, "ls-tree", "--name-only", tip).split())
    assert {"one.txt", "two.txt", "three.txt", "README.md"} <= files
    # the user's branch and files were not touched
    assert sha(repo, "main") == head and sha(repo, "HEAD") == head
    assert not (repo / "one.txt").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""

    g.finish()
    assert not (repo / ".milestone-worktrees").exists()
    assert set(worktrees(repo)) == {repo.resolve()}
    assert {"milestone/milestone-001", "milestone/milestone-001-task-1",
            "milestone/milestone-001-task-2", "milestone/milestone-001-task-3"} <= branches(repo)


def test_conflicting_tasks_name_the_paths_and_leave_the_branch_clean(repo: Path) -> None:
    g = GitIntegration(repo, MID)
    g.prepare()
    wa, wb = g.worktree("task-1"), g.worktree("task-2")
    (wa / "a.txt").write_text("one\nTWO by task 1\nthree\n")
    (wb / "a.txt").write_text("one\ntwo by task 2\nthree\n")
    (wb / "b.txt").write_text("fine\n")
    g.commit_task("task-1", "Edit a")
    g.commit_task("task-2", "Edit a too")
    assert g.merge("task-1") == []
    tip = sha(repo, "milestone/milestone-001")
    assert g.merge("task-2") == ["a.txt"]
    assert sha(repo, "milestone/milestone-001") == tip
    merge_wt = g.merge_worktree
    assert git(merge_wt, "status", "--porcelain") == ""
    assert unmerged_paths(merge_wt) == []
    # a later task still merges
    wc = g.worktree("task-3")
    (wc / "c.txt").write_text("c\n")
    g.commit_task("task-3", "Add c")
    assert g.merge("task-3") == []
    assert "c.txt" in git(repo, "ls-tree", "--name-only", "milestone/milestone-001").split()


def test_unmerged_paths_of_a_stopped_merge(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "a.txt").write_text("other\n")
    git(repo, "commit", "-qam", "other side")
    git(repo, "checkout", "-q", "main")
    (repo / "a.txt").write_text("main\n")
    git(repo, "commit", "-qam", "main side")
    subprocess.run(["git", "-C", str(repo), "merge", "other"], capture_output=True, check=False)
    assert unmerged_paths(repo) == ["a.txt"]


def test_commits_the_task_made_itself_are_folded_into_one(repo: Path) -> None:
    g = GitIntegration(repo, MID)
    w = g.worktree("task-4")  # prepare() on first use
    (w / "x.txt").write_text("x\n")
    git(w, "add", "x.txt")
    git(w, "commit", "-q", "-m", "agent: add x")
    (w / "y.txt").write_text("y\n")
    s = g.commit_task("task-4", "Add x and y")
    assert s is not None
    assert git(repo, "log", "-1", "--format=%B", s) == (
        "feat(milestone-001): Add x and y\n\n- agent: add x\n\n"
        "Task: task-4\nMilestone: milestone-001\n\n")
    assert git(repo, "rev-list", "--count", f"milestone/milestone-001..{s}").strip() == "1"


def test_a_new_attempt_gets_a_clean_worktree(repo: Path) -> None:
    g = GitIntegration(repo, MID)
    w = g.worktree("task-1")
    (w / "junk.txt").write_text("half done\n")
    (w / "a.txt").write_text("broken\n")
    again = g.worktree("task-1")
    assert again == w and not (w / "junk.txt").exists()
    assert (w / "a.txt").read_text() == "one\ntwo\nthree\n"
    g.remove_worktree("task-1")
    assert not w.exists() and "milestone/milestone-001-task-1" in branches(repo)
    assert g.worktree("task-1").is_dir()


def test_base_and_refusals(tmp_path: Path, repo: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InvalidInput, match="not inside a git repository"):
        GitIntegration(plain, MID).prepare()
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(InvalidInput, match="no commits yet"):
        GitIntegration(empty, MID).prepare()
    with pytest.raises(InvalidInput, match="not a commit"):
        GitIntegration(repo, MID, base="no-such-branch").prepare()
    with pytest.raises(InvalidInput, match="not a task of milestone-001"):
        GitIntegration(repo, MID).worktree("milestone-002/task-1")
    first = sha(repo, "HEAD")
    (repo / "a.txt").write_text("later\n")
    git(repo, "commit", "-qam", "later")
    assert GitIntegration(repo, "milestone-002", base=first).prepare() == \
        "milestone/milestone-002"
    assert sha(repo, "milestone/milestone-002") == first
    # the milestone branch checked out in the user's tree: merging there is refused
    git(repo, "checkout", "-q", "milestone/milestone-002")
    with pytest.raises(Conflict, match="checked out in"):
        GitIntegration(repo, "milestone-002").prepare()


# ------------------------------------------------------------------------- link


def commit(cwd: Path, message: str, name: str = "f.txt") -> str:
    p = cwd / name
    p.write_text((p.read_text() if p.exists() else "") + message + "\n")
    git(cwd, "add", name)
    subprocess.run(["git", "-C", str(cwd), "commit", "-q", "-F", "-"], input=message,
                   text=True, check=True, capture_output=True)
    return sha(cwd, "HEAD")


def task_of(project: Project, ref: str) -> dict[str, Any]:
    mid, tid = ref.split("/")
    return next(t for t in project.state().milestones[mid]["tasks"] if t["id"] == tid)


def kinds(project: Project) -> list[str]:
    return [e["event_type"] for e in project.store.events()]


def test_link_records_every_commit_and_closes(project: Project, tmp_path: Path) -> None:
    make_repo(tmp_path)
    project.plan("Ship", tasks=[{"title": "First"}, {"title": "Second", "depends_on": ["task-1"]},
                                {"title": "Third"}, {"title": "Fourth"}])
    g = GitIntegration(tmp_path, MID)
    g.prepare()
    made = {}
    for tid, title in (("task-1", "First"), ("task-2", "Second")):
        w = g.worktree(tid)
        (w / f"{tid}.txt").write_text(title)
        made[tid] = g.commit_task(tid, title)
        assert g.merge(tid) == []
    bracket = commit(tmp_path, "Tidy up [milestone-001/task-3]")
    short = commit(tmp_path, "Fourth part\n\nTask: task-4\nMilestone: milestone-001")
    closing = commit(tmp_path, "Finish it\n\nCloses milestone-001/task-3 and more")
    stray = commit(tmp_path, "Unrelated [milestone-009/task-1]\n\nTask: task-7")

    out = link(project)
    got = {(r["ref"], r["sha"]) for r in out["linked"]}
    assert got == {(f"{MID}/task-1", made["task-1"]), (f"{MID}/task-2", made["task-2"]),
                   (f"{MID}/task-3", bracket), (f"{MID}/task-4", short),
                   (f"{MID}/task-3", closing)}
    assert out["completed"] == [f"{MID}/task-3"]
    assert "milestone-009/task-1" in out["unknown"] and "task-7" in out["unknown"]
    assert stray not in {r["sha"] for r in out["linked"]}

    t3 = task_of(project, f"{MID}/task-3")
    assert t3["status"] == "done"
    assert [c["sha"] for c in t3["execution"]["commits"]] == [bracket, closing]
    c = t3["execution"]["commits"][0]
    assert c["subject"] == "Tidy up [milestone-001/task-3]"
    assert c["author"] == "Dev <dev@example.com>" and c["date"].endswith("Z")
    t1 = task_of(project, f"{MID}/task-1")
    assert t1["status"] == "todo"  # linked, not closed
    assert t1["execution"]["commits"][0]["subject"] == "feat(milestone-001): First"
    assert kinds(project).count("commit_linked") == 5
    done = [e for e in project.store.events() if e["event_type"] == "task_completed"]
    assert done[-1]["details"]["commit"] == closing

    shown = project.show_view(MID)["milestone"]["tasks"]
    assert [c["sha"] for c in shown[2]["execution"]["commits"]] == [bracket, closing]
    assert project.show_view(f"{MID}/task-1")["task"]["execution"]["commits"][0]["sha"] == \
        made["task-1"]

    before = len(kinds(project))
    again = link(project)
    assert again["linked"] == [] and again["completed"] == []
    assert again["already_linked"] == 5
    assert len(kinds(project)) == before


def test_link_since_and_configured_keyword(project: Project, tmp_path: Path) -> None:
    make_repo(tmp_path)
    project.plan("Ship", tasks=[{"title": "One"}, {"title": "Two"}])
    old = commit(tmp_path, "Old [milestone-001/task-1]")
    mark = sha(tmp_path, "HEAD")
    new = commit(tmp_path, "New work\n\nFixes milestone-001/task-2")
    project._config = {**project.config(), "git": {"close_keyword": "Fixes"}}
    out = link(project, since=mark)
    assert [r["sha"] for r in out["linked"]] == [new]
    assert out["completed"] == [f"{MID}/task-2"]
    assert old not in json.dumps(task_of(project, f"{MID}/task-1"))
    with pytest.raises(InvalidInput, match="not a commit"):
        link(project, since="nope")
    with pytest.raises(InvalidInput, match="not one plain word"):
        link(project, keyword="two words")


def test_commit_refs_parsing() -> None:
    assert commit_refs("x\n\nTask: milestone-003/task-2", "Closes") == (
        ["milestone-003/task-2"], [], [])
    # trailers only count in the last paragraph
    assert commit_refs("Task: task-2\nMilestone: milestone-003\n\nbody", "Closes")[0] == []
    assert commit_refs("closes milestone-003/task-9", "Closes")[1] == ["milestone-003/task-9"]
    assert commit_refs("encloses milestone-003/task-9", "Closes")[1] == []


def test_cli_git_link_and_show(project_dir: Path) -> None:
    make_repo(project_dir)
    run = Runner(project_dir)
    run.ok("plan", "Ship", "--task", "Alpha", "--task", "Beta")
    a = commit(project_dir, "Alpha work\n\nTask: task-1\nMilestone: milestone-001")
    b = commit(project_dir, "Beta done\n\nCloses milestone-001/task-2")
    data = run.json("git", "link")
    assert {r["sha"] for r in data["linked"]} == {a, b}
    assert data["completed"] == [f"{MID}/task-2"]
    shown = run.json("show", "1")["milestone"]["tasks"]
    assert [c["sha"] for c in shown[0]["execution"]["commits"]] == [a]
    assert shown[1]["status"] == "done"
    text = run.ok("show", "1/1", "--ui", "simple")
    assert "commits:" in text and a[:10] in text and "Alpha work" in text
    assert "1 commit" in run.ok("show", "1", "--ui", "simple")
    assert a[:7] in run.ok("show", "1", "--ui", "rich")
    assert "linked 0 commits" in run.ok("git", "link")
    assert run.json("git", "link")["already_linked"] == 2

    bad = run("git", "link", "--since", "nope")
    assert bad.exit_code == 4 and "not a commit" in bad.output


def test_cli_git_link_outside_a_repository(project_dir: Path) -> None:
    bad = Runner(project_dir)("git", "link")
    assert bad.exit_code == 4 and "not inside a git repository" in bad.output

"""The sample project ``milestone demo`` builds: three milestones in several states."""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path

from ..project import Project


def build_demo(directory: Path | None = None) -> Project:
    base = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="milestone-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    project, _ = Project.init(base, actor="demo@example.com", session_id="demo-session")
    if project.state().milestones:
        return project
    today = date.today()

    def d(n: int) -> str:
        return (today + timedelta(days=n)).isoformat()

    project.plan(
        "Command-line MVP",
        description="The first usable release of the CLI.",
        start=d(-10),
        due=d(4),
        priority="high",
        owner="alice@example.com",
        tags=["cli", "mvp"],
        category="feature",
        success_criteria=["A new user plans a milestone in under a minute"],
        tasks=[
            {"title": "Design the data model", "estimate": 3},
            {"title": "Write the YAML store", "estimate": 5, "depends_on": ["task-1"]},
            {
                "title": "Build the commands",
                "estimate": 8,
                "depends_on": ["task-2"],
                "skills": ["python"],
            },
            {"title": "Write the README", "estimate": 2, "depends_on": ["task-1"]},
        ],
    )
    project.plan(
        "Web dashboard",
        description="Progress at a glance in the browser.",
        start=d(0),
        due=d(21),
        priority="medium",
        depends_on=["milestone-001"],
        tags=["web"],
        tasks=["Sketch the pages", "Serve the API", "Draw the charts"],
    )
    project.plan(
        "Release 1.0",
        due=d(30),
        priority="critical",
        category="release",
        tasks=[
            {"title": "Tag and publish", "estimate": 1},
            {"title": "Announce", "estimate": 1, "depends_on": ["task-1"]},
        ],
    )
    project.complete_task("1/1")
    project.start_task("1/2")
    project.set_progress("1/2", 60)
    project.block_task("3/1", "waiting for the dashboard")
    project.note("Store half done: the atomic writes work, hand edits next.")
    return project

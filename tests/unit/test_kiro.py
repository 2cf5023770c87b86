"""Kiro specs: tasks.md and requirements.md parsing, the plan mapping, export, tracing."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milestones.errors import InvalidInput
from milestones.model import Milestone, Task
from milestones.plans import kiro
from milestones.plans.kiro import (
    KiroTask,
    Requirement,
    export_tasks,
    export_tasks_md,
    find_specs,
    is_ears,
    parse_requirements_md,
    parse_tasks_md,
    read_spec,
    tasks_to_specs,
    trace,
)
from milestones.project import Project

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "kiro"
SPEC_DIR = FIXTURES / "offline-sync"
TASK_FILES = ["offline-sync/tasks.md", "tasks_flat.md", "tasks_plain.md"]


def fixture(name: str) -> str:
    """A fixture's exact text (no newline translation)."""
    return (FIXTURES / name).read_bytes().decode("utf-8")


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def milestone_from(specs: list[dict[str, Any]], *, keep_refs: bool = True) -> dict[str, Any]:
    """What Project.plan_many makes of the specs, as ``Milestone.to_dict()``."""
    tasks = [
        Task(
            id=f"task-{i}",
            title=s["title"],
            description=s["description"],
            status=s["status"],
            depends_on=list(s["depends_on"]),
            requirements=list(s["requirements"]) if keep_refs else [],
            spec_ref=s["spec_ref"] if keep_refs else None,
        )
        for i, s in enumerate(specs, 1)
    ]
    return Milestone(id="milestone-001", title="Spec", tasks=tasks, workflow="kiro").to_dict()


def imported(text: str, **kw: Any) -> dict[str, Any]:
    return milestone_from(tasks_to_specs(parse_tasks_md(text)), **kw)


def by_ref(m: dict[str, Any], ref: str) -> dict[str, Any]:
    return next(t for t in m["tasks"] if t["spec_ref"] == ref)


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.split("\n"), after.split("\n")
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


# ------------------------------------------------------------ parse_tasks_md


def test_parse_nested_spec_tasks() -> None:
    tasks = parse_tasks_md(fixture("offline-sync/tasks.md"), "tasks.md")
    assert [t.number for t in tasks] == ["1", "2", "2.1", "2.2", "2.3", "3", "3.1", "3.2", "4"]
    first = tasks[0]
    assert first.title == "Set up the local queue store"
    assert first.done and first.mark == "x" and not first.optional
    assert first.requirements == ("1.1", "1.3")
    assert first.details == (
        "- Create the `sync_queue` table with an autoincrement sequence column",
        "- Add a migration that runs on first launch",
    )
    assert (first.line, first.end_line, first.parent, first.parent_line) == (3, 6, None, None)
    t21 = tasks[2]
    assert (t21.parent, t21.parent_line, t21.indent, t21.done) == ("2", 8, 2, True)
    assert t21.title == "Write edits to the Sync_Queue when offline"
    t22 = tasks[3]
    assert t22.details == ("- Add a `pending` flag to the record list view model",)
    t23 = tasks[4]
    assert t23.optional and not t23.done and t23.requirements == ("1.3",)
    assert t23.details == (
        "- **Property 2: Queue survives restart**",
        "- **Validates: Requirements 1.3**",
    )
    t3 = tasks[5]
    assert (t3.mark, t3.done, t3.details) == ("-", False, ("- Drain the queue in sequence order",))
    assert tasks[7].mark == "~" and tasks[7].parent == "3"
    assert tasks[8].title == "Checkpoint - Ensure all tests pass" and tasks[8].requirements == ()


def test_parse_flat_subtasks_join_their_parent_by_number() -> None:
    tasks = parse_tasks_md(fixture("tasks_flat.md"))
    numbers = {t.number: t for t in tasks}
    assert numbers["1.1"].parent == "1" and numbers["1.1"].parent_line == numbers["1"].line
    assert numbers["1.1"].indent == 0
    assert numbers["1.1"].optional  # escaped by a Markdown formatter: [ ]\*
    assert numbers["3.2"].optional  # Kiro's other optional form: 3.2*
    assert numbers["3.2"].title == "Property test: CSV round trip"
    assert numbers["2"].requirements == ("2.1", "2.2", "2.3")  # a range
    assert numbers["3.1"].requirements == ("3.1", "3.2")  # "(partial)" is dropped
    assert numbers["4"].requirements == () and numbers["4"].all_requirements


def test_parse_unnumbered_nested_checkboxes_and_fenced_code() -> None:
    tasks = parse_tasks_md(fixture("tasks_plain.md"))
    assert [(t.number, t.title) for t in tasks] == [
        ("1", "Create the CLI entry point"),
        ("2", "Read the input file"),
        (None, "Handle a missing file"),
        (None, "Handle an empty file"),
    ]
    assert tasks[2].parent == "2" and tasks[3].parent_line == tasks[1].line
    assert tasks[1].requirements == ("1.2", "1.3")
    assert tasks[1].details == (
        "- Example input:",
        "",
        "  ```",
        "  - [ ] this is not a task",
        "  ```",
    )


def test_parse_marks_columns_and_crlf() -> None:
    text = "- [X] 1. Upper-case done\r\n  - [ ] 1.1 Child\r\n"
    tasks = parse_tasks_md(text)
    assert tasks[0].done and tasks[0].column == 3 and tasks[1].column == 5
    assert tasks[1].title == "Child"  # no trailing \r
    bom = parse_tasks_md("\ufeff- [ ] 1. First\n")
    assert bom[0].title == "First" and bom[0].column == 4


def test_parse_other_lines_are_not_tasks() -> None:
    text = (
        "# Plan\n"
        "See [x](https://example.com) and - [docs](d.md).\n"
        "- [x](https://example.com) is a link, not a checkbox\n"
        "- a plain bullet\n"
        "```markdown\n"
        "- [ ] 9. An example inside a fence\n"
        "```\n"
        "- [ ] 1. Only task\n"
        "  - [link](x.md) in a detail\n"
        "Trailing prose ends the task.\n"
        "  - an indented line after prose belongs to no task\n"
    )
    tasks = parse_tasks_md(text)
    assert [t.title for t in tasks] == ["Only task"]
    assert tasks[0].details == ("- [link](x.md) in a detail",)
    assert tasks[0].end_line == 9


def test_parse_requirement_line_variants() -> None:
    text = (
        "- [ ] 1. Task\n"
        "  - _Requirements: 1.1,2.2 ,  3_\n"
        "  - \\_Requirements: 4.1\\_\n"
        "  - _Requirement: 5.1-5.3, 6.2 and 7.1_\n"
        "  - _Requirements: REQ-9, 8.1, 1.3-2.1_\n"
        "  - _Requirements: 1.1_\n"
        "  - **Validates:** Requirements 8.2\n"
        "  - _Validates: 8.3_\n"
    )
    (task,) = parse_tasks_md(text)
    assert task.requirements == (
        "1.1", "2.2", "3", "4.1", "5.1", "5.2", "5.3", "6.2", "7.1", "1.3", "2.1", "8.1", "8.2",
        "8.3",
    )  # fmt: skip
    assert task.details == ("- **Validates:** Requirements 8.2", "- _Validates: 8.3_")


def test_parse_empty_text() -> None:
    assert parse_tasks_md("") == []
    assert parse_tasks_md("# Implementation Plan\n\nNothing yet.\n") == []


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("# Plan\n\n- [y] 1. Title\n", 3, "unknown checkbox [y]"),
        ("- [] 1. Title\n", 1, "unknown checkbox []"),
        ("- [ ] 1. Fine\n- [ ]\n", 2, "checkbox has no title"),
        ("- [ ] 1.\n", 1, "task 1 has no title"),
        ("- [ ] 1. A\n- [ ] 2. B\n  - [ ] 1. C\n", 3, "task 1 is numbered twice (first on line 1)"),
        ("- [ ]1. Title\n", 1, "no space after the checkbox"),
        ("# Plan\n_Requirements: 1.1_\n- [ ] 1. Title\n", 2, "requirements line outside any task"),
        ("- [ ] 1. Title\n  - _Requirements: _\n", 2, "names no requirement"),
    ],
)
def test_parse_tasks_errors_name_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_tasks_md(text, ".kiro/specs/x/tasks.md")
    assert err.value.message.startswith(f".kiro/specs/x/tasks.md:{line}: ")
    assert words in err.value.message
    assert err.value.hint


# ----------------------------------------------------------- tasks_to_specs


def test_tasks_to_specs_mapping() -> None:
    specs = tasks_to_specs(parse_tasks_md(fixture("offline-sync/tasks.md")))
    assert [s["spec_ref"] for s in specs] == ["1", "2", "2.1", "2.2", "2.3", "3", "3.1", "3.2", "4"]
    assert specs[0] == {
        "title": "Set up the local queue store",
        "status": "done",
        "description": "- Create the `sync_queue` table with an autoincrement sequence column\n"
        "- Add a migration that runs on first launch",
        "requirements": ["1.1", "1.3"],
        "spec_ref": "1",
        "depends_on": [],
        "optional": False,
    }
    assert specs[1]["depends_on"] == ["task-3", "task-4", "task-5"]  # 2 waits for 2.1-2.3
    assert specs[5]["depends_on"] == ["task-7", "task-8"]
    assert specs[5]["status"] == "todo"  # [-] is Kiro's "running": not done
    assert specs[7]["status"] == "todo"  # [~] queued
    assert specs[4]["optional"] is True
    assert all(s["depends_on"] == [] for s in specs if "." in s["spec_ref"])


def test_tasks_to_specs_unnumbered_children_and_long_titles() -> None:
    specs = tasks_to_specs(parse_tasks_md(fixture("tasks_plain.md")))
    assert specs[1]["depends_on"] == ["task-3", "task-4"]
    assert specs[2]["spec_ref"] is None
    long = "Implement " + "the very long step " * 20
    (spec,) = tasks_to_specs(parse_tasks_md(f"- [ ] 1. {long}\n  - detail\n"))
    assert len(spec["title"]) == 200 and spec["title"].endswith("…")
    assert spec["description"] == f"{long.strip()}\n\n- detail"
    (tabbed,) = tasks_to_specs(parse_tasks_md("- [ ] 1. Tab\there\n"))
    assert tabbed["title"] == "Tab here"


def test_tasks_to_specs_feed_plan_many(project: Project) -> None:
    text = fixture("offline-sync/tasks.md")
    specs = tasks_to_specs(parse_tasks_md(text))
    (m,) = project.plan_many([{"title": "Offline sync", "tasks": specs}])
    assert [t.id for t in m.tasks] == [f"task-{i}" for i in range(1, 10)]
    assert m.task("task-2").depends_on == ["task-3", "task-4", "task-5"]
    assert m.task("task-1").status == "done" and m.task("task-6").status == "todo"
    assert export_tasks_md(m.to_dict(), text) == text


# ---------------------------------------------------------------- export


def variants(text: str) -> list[str]:
    """The file as saved on Linux, on Windows, with a BOM, and without a final newline."""
    return [text, crlf(text), "\ufeff" + text, text.rstrip("\n"), crlf(text.rstrip("\n"))]


@pytest.mark.parametrize("name", TASK_FILES)
@pytest.mark.parametrize("variant", range(5))
def test_round_trip_keeps_the_file(name: str, variant: int) -> None:
    text = variants(fixture(name))[variant]
    assert export_tasks_md(imported(text), text) == text
    assert export_tasks_md(imported(text, keep_refs=False), text) == text  # by title


def test_round_trip_keeps_odd_whitespace() -> None:
    text = (
        "# Implementation Plan   \n"
        "\n\n"
        "- [ ] 1. Trailing spaces after the title   \n"
        "\t- a tab-indented detail\n"
        "    \n"
        "  - _Requirements: 1.1_  \n"
        "\n"
        "- [x]  2.   Extra spaces inside  \n"
        "\n\n\n"
    )
    assert export_tasks_md(imported(text), text) == text
    assert export_tasks_md(imported(crlf(text)), crlf(text)) == crlf(text)


def test_export_flips_only_changed_boxes() -> None:
    text = fixture("offline-sync/tasks.md")
    m = imported(text)
    by_ref(m, "1")["status"] = "todo"
    by_ref(m, "2.2")["status"] = "done"
    by_ref(m, "3")["status"] = "in_progress"  # [-] stays: still not done
    by_ref(m, "3.2")["status"] = "done"  # [~] becomes [x]
    by_ref(m, "2.3")["status"] = "skipped"  # not done: stays [ ]
    by_ref(m, "4")["title"] = "Renamed in the tracker"  # titles are not written back
    out = export_tasks(m, text)
    assert changed_lines(text, out.text) == [
        ("- [x] 1. Set up the local queue store", "- [ ] 1. Set up the local queue store"),
        ("  - [ ] 2.2 Show the pending badge", "  - [x] 2.2 Show the pending badge"),
        (
            "  - [~] 3.2 Disable manual sync while replaying",
            "  - [x] 3.2 Disable manual sync while replaying",
        ),
    ]
    assert out.flipped == ("task-1", "task-4", "task-8") and out.appended == ()
    assert out.numbers["task-4"] == "2.2"
    back = {t.number: t.done for t in parse_tasks_md(out.text)}
    assert back["1"] is False and back["2.2"] is True and back["3.2"] is True


def test_export_flips_keep_crlf_bom_and_optional_markers() -> None:
    text = "\ufeff" + crlf("- [ ]* 1. Optional\n- [ ]\\* 2. Escaped\n")
    m = imported(text)
    for t in m["tasks"]:
        t["status"] = "done"
    assert export_tasks_md(m, text) == "\ufeff" + crlf("- [x]* 1. Optional\n- [x]\\* 2. Escaped\n")


def test_export_deleted_tasks_stay_in_the_file() -> None:
    text = fixture("tasks_flat.md")
    m = imported(text)
    m["tasks"] = [t for t in m["tasks"] if t["spec_ref"] != "2"]
    assert export_tasks_md(m, text) == text


def new_task(tid: str, title: str, **kw: Any) -> dict[str, Any]:
    return Task(id=tid, title=title, **kw).to_dict()


def test_export_appends_new_tasks_after_the_last_task() -> None:
    text = fixture("offline-sync/tasks.md") + "\n## Notes\n\nKeep this section last.\n"
    m = imported(text)
    m["tasks"].append(
        new_task(
            "task-10",
            "Add sync metrics",
            description="Count replays\n\nCount failures",
            requirements=["2.1"],
        )
    )
    m["tasks"].append(new_task("task-11", "Document offline mode", status="done"))
    out = export_tasks(m, text)
    assert out.appended == ("task-10", "task-11")
    assert out.numbers["task-10"] == "5" and out.numbers["task-11"] == "6"
    expected = text.replace(
        "questions arise.\n",
        "questions arise.\n"
        "\n"
        "- [ ] 5. Add sync metrics\n"
        "  - Count replays\n"
        "  - Count failures\n"
        "  - _Requirements: 2.1_\n"
        "\n"
        "- [x] 6. Document offline mode\n",
    )
    assert out.text == expected
    back = parse_tasks_md(out.text)
    assert [t.number for t in back][-2:] == ["5", "6"]
    assert back[-2].requirements == ("2.1",)
    # After the importer records the numbers, exporting again changes nothing.
    for t in m["tasks"]:
        t["spec_ref"] = out.numbers.get(t["id"], t["spec_ref"])
    assert export_tasks_md(m, out.text) == out.text
    # And without them the titles still match: nothing is appended twice.
    m["tasks"][-1]["spec_ref"] = m["tasks"][-2]["spec_ref"] = None
    assert export_tasks_md(m, out.text) == out.text


def test_export_appends_in_the_files_style() -> None:
    text = crlf("- [x] 1. One\n    - detail\n- [ ] 2. Two\n    - [ ] 2.1 Sub")  # compact, 4 spaces
    m = imported(text)
    m["tasks"].append(new_task("task-4", "Three", description="- first\n  - nested"))
    assert export_tasks_md(m, text) == crlf(
        "- [x] 1. One\n    - detail\n- [ ] 2. Two\n    - [ ] 2.1 Sub\n"
        "- [ ] 3. Three\n    - first\n      - nested"
    )


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ("", "- [ ] 1. First\n"),
        ("# Implementation Plan\n", "# Implementation Plan\n\n- [ ] 1. First\n"),
        ("# Implementation Plan\n\n\n", "# Implementation Plan\n\n- [ ] 1. First\n\n\n"),
        ("# Implementation Plan", "# Implementation Plan\n\n- [ ] 1. First"),
        ("# Plan\r\n", "# Plan\r\n\r\n- [ ] 1. First\r\n"),
    ],
)
def test_export_appends_to_a_file_without_tasks(original: str, expected: str) -> None:
    m = milestone_from([])
    m["tasks"].append(new_task("task-1", "First"))
    assert export_tasks_md(m, original) == expected


def test_export_rejects_a_malformed_milestone_or_original() -> None:
    with pytest.raises(InvalidInput):
        export_tasks_md({"id": "milestone-001", "tasks": "nope"}, "")
    with pytest.raises(InvalidInput):
        export_tasks_md({"id": "milestone-001", "tasks": [{"title": ""}]})
    with pytest.raises(InvalidInput):
        export_tasks_md([], None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=r"^spec/tasks.md:1: "):
        export_tasks_md(milestone_from([]), "- [?] 1. x\n", where="spec/tasks.md")


def test_export_clean() -> None:
    m = imported(fixture("offline-sync/tasks.md"))
    by_ref(m, "2.2")["status"] = "done"
    m["tasks"].append(new_task("task-10", "Added later"))
    out = export_tasks(m, None)
    assert out.text.startswith("# Implementation Plan\n\n- [x] 1. Set up the local queue store\n")
    assert (
        "- [ ] 2. Queue edits while offline\n"
        "  - [x] 2.1 Write edits to the Sync_Queue when offline\n"
        "    - Wrap the record repository so that writes go to the queue without a network\n"
        "    - _Requirements: 1.1_\n"
        "\n"
        "  - [x] 2.2 Show the pending badge\n"
    ) in out.text
    assert out.text.endswith("\n\n- [ ] 5. Added later\n")
    assert out.numbers["task-10"] == "5"
    back = parse_tasks_md(out.text)
    assert [(t.number, t.parent) for t in back] == [
        ("1", None),
        ("2", None),
        ("2.1", "2"),
        ("2.2", "2"),
        ("2.3", "2"),
        ("3", None),
        ("3.1", "3"),
        ("3.2", "3"),
        ("4", None),
        ("5", None),
    ]


def test_export_clean_renumbers_tasks_without_a_usable_ref() -> None:
    m = milestone_from([])
    m["tasks"] = [
        new_task("task-1", "Orphan child", spec_ref="7.1"),  # no task 7 before it
        new_task("task-2", "Top", spec_ref="2"),
        new_task("task-3", "Duplicate ref", spec_ref="2"),
        new_task("task-4", "No ref"),
        new_task("task-5", "Child", spec_ref="2.1", status="done"),
        {**new_task("task-6", "Optional", spec_ref="2.2"), "optional": True},
    ]
    out = export_tasks(m)
    assert out.numbers == {
        "task-1": "3",
        "task-2": "2",
        "task-3": "4",
        "task-4": "5",
        "task-5": "2.1",
        "task-6": "2.2",
    }
    assert out.text == (
        "# Implementation Plan\n\n"
        "- [ ] 3. Orphan child\n\n"
        "- [ ] 2. Top\n"
        "  - [x] 2.1 Child\n\n"
        "  - [ ]* 2.2 Optional\n\n"
        "- [ ] 4. Duplicate ref\n\n"
        "- [ ] 5. No ref\n"
    )
    assert export_tasks_md(milestone_from([])) == "# Implementation Plan\n\n"


# --------------------------------------------------- round trips, generated

_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789`_()", min_size=1, max_size=8)
_TITLE = st.lists(_WORD, min_size=1, max_size=6).map(" ".join)
_REQ_ID = st.builds(lambda a, b: f"{a}.{b}", st.integers(1, 12), st.integers(1, 9))


@st.composite
def task_trees(draw: Callable[..., Any], depth: int = 0) -> list[dict[str, Any]]:
    count = draw(st.integers(1 if depth == 0 else 0, 4 if depth == 0 else 3))
    nodes = []
    for _ in range(count):
        nodes.append(
            {
                "title": draw(_TITLE),
                "mark": draw(st.sampled_from([" ", " ", "x", "X", "-", "~"])),
                "star": draw(st.sampled_from(["", "", "*", "\\*"])),
                "details": draw(st.lists(_TITLE, max_size=3)),
                "reqs": draw(st.lists(_REQ_ID, max_size=3, unique=True)),
                "children": draw(task_trees(depth + 1)) if depth < 2 else [],
            }
        )
    return nodes


@st.composite
def tasks_files(draw: Callable[..., Any]) -> str:
    """A tasks.md written the way people and Kiro write them, in many styles."""
    unit = draw(st.sampled_from(["  ", "    "]))
    blank = draw(st.sampled_from(["", "\n"]))
    trailing = st.sampled_from(["", "", "  ", " \t"])
    out = [draw(st.sampled_from(["", "# Implementation Plan\n\n", "# Plan\n\nIntro text.\n\n"]))]

    def write(nodes: list[dict[str, Any]], prefix: str, level: int) -> None:
        for i, node in enumerate(nodes, 1):
            number = f"{prefix}{i}"
            dot = "." if level == 0 else draw(st.sampled_from(["", "."]))
            pad = unit * level
            out.append(
                f"{pad}- [{node['mark']}]{node['star']} {number}{dot} {node['title']}"
                f"{draw(trailing)}\n"
            )
            for d in node["details"]:
                out.append(f"{pad}{unit}- {d}{draw(trailing)}\n")
            if node["reqs"]:
                out.append(f"{pad}{unit}- _Requirements: {', '.join(node['reqs'])}_\n")
            write(node["children"], f"{number}.", level + 1)
            out.append(blank)

    write(draw(task_trees()), "", 0)
    text = "".join(out)
    if draw(st.booleans()):
        text = text.rstrip("\n")
    if draw(st.booleans()):
        text = crlf(text)
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=tasks_files(), keep_refs=st.booleans())
def test_generated_round_trip(text: str, keep_refs: bool) -> None:
    tasks = parse_tasks_md(text)
    assert len(tasks) == len(re.findall(r"(?m)^[ \t]*- \[", text))
    assert export_tasks_md(imported(text, keep_refs=keep_refs), text) == text


@settings(max_examples=150, deadline=None)
@given(text=tasks_files(), data=st.data())
def test_generated_flips_touch_only_their_boxes(text: str, data: st.DataObject) -> None:
    m = imported(text)
    want = {}
    for t in m["tasks"]:
        t["status"] = data.draw(st.sampled_from(["todo", "done", "in_progress", "skipped"]))
        want[t["spec_ref"]] = t["status"] == "done"
    out = export_tasks_md(m, text)
    back = parse_tasks_md(out)
    assert {t.number: t.done for t in back} == want
    before = parse_tasks_md(text)
    for old, new in changed_lines(text, out):
        assert len(old) == len(new)
        assert sum(a != b for a, b in zip(old, new, strict=True)) == 1
    for old_t, new_t in zip(before, back, strict=True):
        assert (old_t.title, old_t.requirements, old_t.details) == (
            new_t.title,
            new_t.requirements,
            new_t.details,
        )
        if old_t.done == new_t.done:
            assert old_t.mark == new_t.mark


@settings(max_examples=100, deadline=None)
@given(text=tasks_files())
def test_generated_clean_export_parses_back(text: str) -> None:
    tasks = parse_tasks_md(text)
    out = export_tasks_md(imported(text))
    back = parse_tasks_md(out)
    assert [(t.number, t.title, t.done, t.requirements, t.details, t.parent) for t in back] == [
        (t.number, t.title.strip(), t.done, t.requirements, t.details, t.parent) for t in tasks
    ]


# ---------------------------------------------------- requirements.md


def test_parse_requirements_fixture() -> None:
    reqs = parse_requirements_md(fixture("offline-sync/requirements.md"), "requirements.md")
    assert [r.id for r in reqs] == ["1.1", "1.2", "1.3", "2.1", "2.2", "2.3", "2.4", "3.1", "3.2"]
    first = reqs[0]
    assert first.requirement == "1" and first.title == "Queue edits while offline"
    assert first.text == (
        "WHEN the device has no network connection THEN the app SHALL store each edit in the "
        "Sync_Queue"
    )
    assert first.ears and first.line == 22
    assert first.story is not None and first.story.startswith("As a field technician, I want")
    assert reqs[3].text.endswith("in the order the edits were made")  # a wrapped criterion
    assert [r.id for r in reqs if not r.ears] == ["2.4"]
    assert reqs[-1].story is not None and reqs[-1].story.startswith("As an office coordinator")


def test_parse_requirements_variants() -> None:
    text = (
        "# Requirements Document\n\n"
        "## Introduction\n\n"
        "1. Numbered lists outside acceptance criteria are ignored\n\n"
        "### Requirement 4：Bulk import\n\n"
        "**User Story:**\n"
        "As an admin, I want to import users\n"
        "in bulk.\n\n"
        "Not part of the story.\n\n"
        "#### Acceptance Criteria\n\n"
        "- WHEN a file is uploaded THEN the system SHALL validate every row\n"
        "- THE system SHALL report row numbers of errors\n"
        "  - including the column name\n\n"
        "```text\n"
        "3. not a criterion\n"
        "```\n\n"
        "### Requirement 5\n\n"
        "#### Acceptance criteria\n\n"
        "2) IF the quota is exceeded THEN the system SHALL refuse the import\n"
        "\n"
        "Prose after a blank line is not part of the criterion.\n"
        "## Non-functional\n\n"
        "1. Ignored: no requirement is open\n"
    )
    reqs = parse_requirements_md(text)
    assert [(r.id, r.title, r.story) for r in reqs] == [
        ("4.1", "Bulk import", "As an admin, I want to import users in bulk."),
        ("4.2", "Bulk import", "As an admin, I want to import users in bulk."),
        ("5.2", "", None),
    ]
    assert (
        reqs[1].text == "THE system SHALL report row numbers of errors - including the column name"
    )
    assert all(r.ears for r in reqs)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (
            "### Requirement 1\n### Requirement 1\n",
            2,
            "requirement 1 appears twice (first on line 1)",
        ),
        (
            "### Requirement 1\n#### Acceptance Criteria\n1. THE x SHALL y\n1. THE x SHALL z\n",
            4,
            "acceptance criterion 1.1 appears twice",
        ),
        ("# Doc\n\n#### Acceptance Criteria\n", 3, "acceptance criteria before any"),
    ],
)
def test_parse_requirements_errors(text: str, line: int, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_requirements_md(text, "req.md")
    assert err.value.message.startswith(f"req.md:{line}: ") and words in err.value.message


@pytest.mark.parametrize(
    "text",
    [
        "THE System SHALL encrypt all data at rest",
        "the checkout service shall log every order",
        "WHEN a user signs in, THE System SHALL record the time",
        "WHEN the user presses Save THEN the editor SHALL write the file",
        "WHEN um usuário pressiona Tab THEN o sistema SHALL mover o foco",
        "WHILE the device is offline THE app SHALL queue edits",
        "While charging, the phone shall show the battery level",
        "IF the token has expired THEN the API SHALL answer 401",
        "WHERE dark mode is enabled, THE app SHALL use the dark palette",
        "**WHEN** a file is saved **THEN** the system **SHALL** lint it",
        "WHEN a build fails THEN the CI SHALL NOT deploy",
    ],
)
def test_is_ears_accepts_the_patterns(text: str) -> None:
    assert is_ears(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The sync should be fast",
        "Users can export invoices",
        "WHEN a user signs in the time is recorded",
        "IF the token expired the API SHALL answer 401",  # unwanted needs THEN
        "WHEN the token expires THE API SHALL",  # nothing after SHALL
        "System SHALL support four roles",  # ubiquitous needs THE <system>
        "Whenever it rains THE roof SHALL hold",
    ],
)
def test_is_ears_refuses_other_text(text: str) -> None:
    assert not is_ears(text)


# ------------------------------------------------------------------ trace


def req(rid: str) -> Requirement:
    return Requirement(id=rid, requirement=rid.split(".")[0], text="", ears=True, line=1)


def test_trace_the_fixture_spec() -> None:
    spec = read_spec(SPEC_DIR)
    result = trace(spec.requirements, spec.tasks)
    assert result.uncovered == ("2.4", "3.1", "3.2")
    assert result.unknown == ()
    assert [t.number for t in result.untraced] == ["4"]  # 2 and 3 are traced by subtasks
    assert not result.ok


def test_trace_rules() -> None:
    tasks = parse_tasks_md(
        "- [ ] 1. Parent\n"
        "  - [ ] 1.1 Child\n"
        "    - _Requirements: 1.1, 9.9_\n"
        "  - [ ] 1.2 Untraced child\n"
        "- [ ] 2. Whole requirement\n"
        "  - _Requirements: 2_\n"
        "- [ ] 3. Everything\n"
        "  - _Requirements: All_\n"
        "- [ ] 4. Unknown requirement\n"
        "  - _Requirements: 7, 9.9, 1.1.1_\n"
        "- [ ] 5. Lonely\n"
        "  - [ ] Nested unnumbered\n"
    )
    result = trace([req("1.1"), req("1.2"), req("2.1"), req("2.2"), req("3.1")], tasks)
    assert result.uncovered == ("1.2", "3.1")
    assert result.unknown == ("9.9", "7", "1.1.1")
    assert [t.title for t in result.untraced] == ["Untraced child", "Lonely", "Nested unnumbered"]
    assert trace([], []).ok


# ------------------------------------------------------------------ files


def test_read_spec_directory_and_tasks_file() -> None:
    spec = read_spec(SPEC_DIR)
    assert spec.name == "offline-sync" and spec.directory == SPEC_DIR
    assert spec.requirements_md == fixture("offline-sync/requirements.md")
    assert spec.design_md is not None and spec.design_md.startswith("# Design Document")
    assert spec.tasks_md == fixture("offline-sync/tasks.md")
    assert len(spec.requirements) == 9 and len(spec.tasks) == 9
    assert spec.tasks_path == SPEC_DIR / "tasks.md"
    assert read_spec(SPEC_DIR / "tasks.md") == spec
    assert read_spec(str(SPEC_DIR / "requirements.md")) == spec


def test_read_spec_reads_what_exists(tmp_path: Path) -> None:
    d = tmp_path / ".kiro" / "specs" / "only-tasks"
    d.mkdir(parents=True)
    (d / "tasks.md").write_bytes(crlf("- [ ] 1. Only\n").encode())
    spec = read_spec(d)
    assert (spec.name, spec.requirements_md, spec.design_md) == ("only-tasks", None, None)
    assert spec.tasks_md == "- [ ] 1. Only\r\n" and spec.requirements == ()
    assert [t.title for t in spec.tasks] == ["Only"]


def test_read_spec_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        read_spec(tmp_path / "missing")
    (tmp_path / "notes.md").write_text("x")
    with pytest.raises(InvalidInput, match="not a Kiro spec file"):
        read_spec(tmp_path / "notes.md")
    with pytest.raises(InvalidInput, match=r"holds no requirements\.md, design\.md or tasks\.md"):
        read_spec(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tasks.md").write_bytes(b"- [ ] 1. ok\n- [ ] 2. caf\xe9\n")
    with pytest.raises(InvalidInput, match=r"bad/tasks.md:2: not UTF-8"):
        read_spec(bad)
    (bad / "tasks.md").write_text("- [ ] 1. ok\n  - _Requirements: _\n")
    with pytest.raises(InvalidInput, match=r"bad/tasks.md:2: a requirements line names"):
        read_spec(bad)
    big = tmp_path / "big"
    big.mkdir()
    with (big / "requirements.md").open("wb") as f:
        f.truncate(kiro.yamlio.MAX_FILE_BYTES + 1)
    with pytest.raises(InvalidInput, match="over the 10 MB"):
        read_spec(big)
    (tmp_path / "tasks.md").mkdir()  # a directory named like the file is refused, not read
    with pytest.raises(InvalidInput, match=r"tasks\.md is a directory"):
        read_spec(tmp_path)


def test_find_specs(tmp_path: Path) -> None:
    assert find_specs(tmp_path) == []
    specs = tmp_path / ".kiro" / "specs"
    specs.mkdir(parents=True)
    for name, files in {
        "b-spec": ["tasks.md"],
        "a-spec": ["requirements.md", "design.md"],
        "empty": [],
        ".hidden": ["tasks.md"],
    }.items():
        (specs / name).mkdir()
        for f in files:
            (specs / name / f).write_text("")
    (specs / "README.md").write_text("not a spec")
    assert find_specs(tmp_path) == [specs / "a-spec", specs / "b-spec"]
    assert find_specs(str(tmp_path)) == [specs / "a-spec", specs / "b-spec"]


def test_kiro_task_defaults() -> None:
    t = KiroTask(number="1", title="x", done=False)
    assert (t.requirements, t.details, t.parent, t.optional) == ((), (), None, False)


# ------------------------------------------- the import, as it was before issue 14

TRICKY_TASKS_MD = """# Implementation Plan

- [x] 1. Set up
  - [x] 1.1 Write the schema
  - [x] 1.2 Write the schema
    - _Requirements: 1.1, 1.2_
- [ ] 2. Build
  - [ ] 2.1 Write the schema
    - Details here
    - [ ] An unnumbered nested box
      - [ ] Deeper still
  - [ ]* 2.2 Optional part
  - [-] 2.3 Running
- [ ] 3. Build
  - _Requirements: 2.1-2.3_
- [~] Unnumbered top
  - [ ] 3.1 Write the schema
"""


def test_import_of_duplicate_titles_and_nesting_is_unchanged(tmp_path: Path) -> None:
    """Duplicate titles, numbered and unnumbered nesting, ticked, optional, running and
    queued boxes: the tasks (and the progress) the import made before the dict lookups
    of issue 14, recorded from that version."""
    spec = tmp_path / ".kiro" / "specs" / "dup"
    spec.mkdir(parents=True)
    (spec / "tasks.md").write_text(TRICKY_TASKS_MD)
    p, _ = Project.init(tmp_path, actor="a@example.com", session_id="s")
    m = p.import_kiro(spec)
    got = [(t.id, t.title, t.status, t.spec_ref, t.depends_on, t.requirements, t.description)
           for t in m.tasks]
    schema = "Write the schema"
    assert got == [
        ("task-1", "Set up", "done", "1", ["task-2", "task-3"], [], ""),
        ("task-2", schema, "done", "1.1", [], [], ""),
        ("task-3", schema, "done", "1.2", [], ["1.1", "1.2"], ""),
        ("task-4", "Build", "todo", "2", ["task-5", "task-8", "task-9"], [], ""),
        ("task-5", schema, "todo", "2.1", ["task-6"], [], "- Details here"),
        ("task-6", "An unnumbered nested box", "todo", None, ["task-7"], [], ""),
        ("task-7", "Deeper still", "todo", None, [], [], ""),
        ("task-8", "Optional part", "todo", "2.2", [], [], ""),
        ("task-9", "Running", "todo", "2.3", [], [], ""),
        ("task-10", "Build", "todo", "3", ["task-12"], ["2.1", "2.2", "2.3"], ""),
        ("task-11", "Unnumbered top", "todo", None, [], [], ""),
        ("task-12", schema, "todo", "3.1", [], [], ""),
    ]
    assert (m.kiro or {})["imported_done"] == ["task-1", "task-2", "task-3"]
    assert p.status_view()["milestones"][0]["progress"] == 16.2


def test_kiro_progress_matches_a_lookup_per_task() -> None:
    """kiro_progress (a dict of the tasks) gives what looking each task up gave."""
    from milestones.model import kiro_progress, task_fraction, task_weights

    statuses = ["done", "todo", "in_progress", "skipped", "done", "blocked"]
    tasks = [Task(id=f"task-{i}", title=f"T{i}", status=s, estimate=(i % 3) or None,
                  progress=40 if s == "in_progress" else (100 if s == "done" else 0))
             for i, s in enumerate(statuses * 20, 1)]
    m = Milestone(id="milestone-001", title="Spec", tasks=tasks, workflow="kiro",
                  kiro={"reviews": [{"phase": "requirements", "decision": "approve",
                                     "role": "owner"}]})
    tw = task_weights(m.tasks)
    execute = sum(w * task_fraction(m.task(tid)) for tid, w in tw.items()) / sum(tw.values())
    assert kiro_progress(m) == round(100.0 * (10 + 65 * execute) / 100, 1)

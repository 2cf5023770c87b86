"""Every rule has a fixture that triggers it and one that does not, asserted by code and location.

A *case* is registered per rule code with ``@case(code, severity)``: a function of
``(tmp_path, trigger)`` that builds a project (``Project.init`` and the library,
then hand edits of ``.milestones/active/*.yaml`` where the rule is about file
content) or a ``Context``, validates it, and returns the findings with the
location the trigger variant must report. Locations are computed from the text
the case wrote (``at(text, needle)``), never taken from the output.

Adding the rules of a new family (MS6xx templates, MS7xx Kiro) means adding
cases below and removing the family from ``PENDING_FAMILIES``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from milestones.cli import cli as milestone_cli
from milestones.project import Project
from milestones.validation import all_rules, engine

TODAY = "2026-06-01"  # a Monday, ISO week 2026-W23
ACTOR = "tester@example.com"
M1, M2 = "milestone-001", "milestone-002"
F1, F2 = ".milestones/active/milestone-001.yaml", ".milestones/active/milestone-002.yaml"
LOG = "logs/progress-events.jsonl"

# Families whose cases are written together with their rules, elsewhere for now.
PENDING_FAMILIES: dict[str, str] = {}


# ----------------------------------------------------------------- helpers


def at(text: str, needle: str, rel: str = F1, nth: int = 1) -> str:
    """``rel:line:column`` (1-based) of the ``nth`` occurrence of ``needle`` in ``text``."""
    idx = -1
    for _ in range(nth):
        idx = text.index(needle, idx + 1)
    line = text.count("\n", 0, idx) + 1
    column = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return f"{rel}:{line}:{column}"


def milestone_yaml(
    mid: str = M1,
    *,
    title: str = "Alpha",
    top: str = "",
    task1: str = "",
    task2: str = "",
    estimates: tuple[float | None, float | None] = (2, 2),
) -> str:
    """A valid milestone file with two tasks; ``top``/``task1``/``task2`` add lines."""
    e1, e2 = (f"  estimate: {e:g}\n" if e is not None else "" for e in estimates)
    return (
        f"id: {mid}\n"
        f"title: {title}\n"
        "status: planned\n"
        f"{top}"
        "tasks:\n"
        "- id: task-1\n"
        "  title: One\n"
        f"{e1}"
        f"{task1}"
        "- id: task-2\n"
        "  title: Two\n"
        f"{e2}"
        f"{task2}"
    )


def team_config(*members: Mapping[str, Any]) -> str:
    """config/config.yaml with these ``team.members`` (for capacity: roles not checked,
    so the tests' actor, not a member, may write)."""
    team = {"members": [dict(m) for m in members], "enforce_roles": False}
    return json.dumps({"team": team})  # JSON is YAML


def new_project(tmp: Path, *, milestones: int = 2, config: str | None = None) -> Project:
    """A project made through the library: ``milestones`` milestones of two tasks each."""
    p, _ = Project.init(tmp, actor=ACTOR, session_id="test-session")
    if config is not None:
        (tmp / ".milestones" / "config" / "config.yaml").write_text(config, "utf-8")
        p = reopen(tmp)
    for i in range(milestones):
        p.plan(f"M{i + 1}", tasks=[{"title": t, "estimate": 2} for t in ("One", "Two")])
    return p


def reopen(tmp: Path) -> Project:
    p = Project.open(tmp, actor=ACTOR, session_id="test-session")
    p.today = lambda: TODAY
    return p


def hand_edit(tmp: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        (tmp / rel).write_text(text, "utf-8")


def scan(
    tmp: Path,
    files: Mapping[str, str] | None = None,
    *,
    milestones: int = 2,
    config: str | None = None,
    tamper: Callable[[Path], None] | None = None,
    types: Sequence[str] = ("all",),
) -> list[dict[str, Any]]:
    """Build a project, hand-edit ``files``, tamper, and validate it as on disk."""
    new_project(tmp, milestones=milestones, config=config)
    hand_edit(tmp, files or {})
    if tamper is not None:
        tamper(tmp / ".milestones")
    data = reopen(tmp).validate(None, types)
    findings: list[dict[str, Any]] = data["findings"]
    return findings


def run_context(milestones: Mapping[str, Mapping[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    ctx = engine.Context(milestones, kw.pop("today", TODAY), **kw)
    return [f.to_dict() for f in engine.run(ctx, ("all",))]


def of(code: str, findings: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [f for f in findings if f["code"] == code]


# ------------------------------------------------------------- the cases


@dataclass
class Outcome:
    findings: list[dict[str, Any]]
    locations: list[str]  # where the trigger variant must report, in the engine's order


Build = Callable[[Path, bool], Outcome]
CASES: dict[str, tuple[str, Build]] = {}


def case(code: str, severity: str) -> Callable[[Build], Build]:
    """Register the fixture pair of rule ``code`` (``severity``: what it reports by default)."""

    def register(fn: Build) -> Build:
        assert code not in CASES, code
        CASES[code] = (severity, fn)
        return fn

    return register


def file_case(
    tmp: Path, trigger: bool, bad: str, good: str, needle: str, *, nth: int = 1, **kw: Any
) -> Outcome:
    """Milestone-001's file hand-edited to ``bad`` (trigger) or ``good``."""
    text = bad if trigger else good
    return Outcome(scan(tmp, {F1: text}, **kw), [at(text, needle, nth=nth)] if trigger else [])


# MS1xx structure: the file as written --------------------------------------


@case("MS100", "error")
def _unreadable(tmp: Path, trigger: bool) -> Outcome:
    bad = "id: milestone-001\ntitle: Alpha\nstatus: planned\ntitle: Again\n"
    good = "id: milestone-001\ntitle: Alpha\nstatus: planned\n"
    return file_case(tmp, trigger, bad, good, "title:", nth=2)


@case("MS101", "error")
def _required(tmp: Path, trigger: bool) -> Outcome:
    good = milestone_yaml()
    bad = good.replace("  title: Two\n", "  status: todo\n")
    return file_case(tmp, trigger, bad, good, "id: task-2")


@case("MS102", "error")
def _types(tmp: Path, trigger: bool) -> Outcome:
    bad = milestone_yaml(task2="  time_spent: lots\n")
    good = milestone_yaml(task2="  time_spent: 30\n")
    return file_case(tmp, trigger, bad, good, "time_spent:")


@case("MS103", "error")
def _enums(tmp: Path, trigger: bool) -> Outcome:
    good = milestone_yaml()
    bad = good.replace("status: planned", "status: planed")
    return file_case(tmp, trigger, bad, good, "status:")


@case("MS104", "error")
def _ids(tmp: Path, trigger: bool) -> Outcome:
    good = milestone_yaml()
    bad = good.replace("id: task-2", "id: task-two")
    return file_case(tmp, trigger, bad, good, "id: task-two")


@case("MS105", "error")
def _duplicate_ids(tmp: Path, trigger: bool) -> Outcome:
    good = milestone_yaml()
    bad = good.replace("id: task-2", "id: task-1")
    return file_case(tmp, trigger, bad, good, "id: task-1", nth=2)


@case("MS106", "warning")
def _unknown_keys(tmp: Path, trigger: bool) -> Outcome:
    bad = milestone_yaml(task1="  estimat: 3\n")
    good = milestone_yaml()
    return file_case(tmp, trigger, bad, good, "estimat:")


@case("MS107", "error")
def _dates(tmp: Path, trigger: bool) -> Outcome:
    bad = milestone_yaml(top="due_date: '2026-02-30'\n")
    good = milestone_yaml(top="due_date: '2026-02-28'\n")
    return file_case(tmp, trigger, bad, good, "due_date:")


@case("MS108", "error")
def _titles(tmp: Path, trigger: bool) -> Outcome:
    bad = milestone_yaml().replace("title: Two", "title: '" + "x" * 201 + "'")
    good = milestone_yaml().replace("title: Two", "title: '" + "x" * 200 + "'")
    return file_case(tmp, trigger, bad, good, "title: 'x")


@case("MS109", "error")
def _ranges(tmp: Path, trigger: bool) -> Outcome:
    bad = milestone_yaml(task1="  progress: 150\n")
    good = milestone_yaml(task1="  progress: 100\n")
    return file_case(tmp, trigger, bad, good, "progress:")


@case("MS110", "error")
def _control_characters(tmp: Path, trigger: bool) -> Outcome:
    bad = milestone_yaml(task1='  assignee: "bob\\a"\n  description: "two\\nlines"\n')
    good = milestone_yaml(task1='  assignee: "bob"\n  description: "two\\nlines"\n')
    return file_case(tmp, trigger, bad, good, 'assignee:')


# MS2xx dependencies ----------------------------------------------------------


@case("MS201", "error")
def _dangling_task(tmp: Path, trigger: bool) -> Outcome:
    dep = "task-9" if trigger else "task-1"
    text = milestone_yaml(task2=f"  depends_on: [{dep}]\n")
    return Outcome(scan(tmp, {F1: text}), [at(text, dep)])


@case("MS202", "error")
def _dangling_milestone(tmp: Path, trigger: bool) -> Outcome:
    dep = "milestone-099" if trigger else M2
    text = milestone_yaml(top=f"depends_on: [{dep}]\n")
    return Outcome(scan(tmp, {F1: text}), [at(text, dep)])


@case("MS203", "error")
def _task_cycle(tmp: Path, trigger: bool) -> Outcome:
    extra = "  depends_on: [task-2]\n" if trigger else ""
    text = milestone_yaml(task1=extra, task2="  depends_on: [task-1]\n")
    found = scan(tmp, {F1: text})
    if trigger:
        [hit] = of("MS203", found)
        assert hit["message"] == "dependency cycle: 1/1 → 1/2 → 1/1"
        assert hit["ref"] == "milestone-001/task-1"
    return Outcome(found, [at(text, "depends_on:")])


@case("MS204", "error")
def _milestone_cycle(tmp: Path, trigger: bool) -> Outcome:
    one = milestone_yaml(top="depends_on: [milestone-002]\n")
    two = milestone_yaml(M2, top="depends_on: [milestone-001]\n" if trigger else "")
    found = scan(tmp, {F1: one, F2: two})
    if trigger:
        assert [f["message"] for f in of("MS204", found)] == ["dependency cycle: 1 → 2 → 1"]
    return Outcome(found, [at(one, "depends_on:")])


@case("MS205", "warning")
def _closed_target(tmp: Path, trigger: bool) -> Outcome:
    one = milestone_yaml(top="depends_on: [milestone-002]\n")
    status = "cancelled" if trigger else "planned"
    two = milestone_yaml(M2).replace("status: planned", f"status: {status}")
    return Outcome(scan(tmp, {F1: one, F2: two}), [at(one, "milestone-002")])


@case("MS206", "warning")
def _later_dependency(tmp: Path, trigger: bool) -> Outcome:
    one = milestone_yaml(
        top="due_date: '2026-07-01'\n", task2="  depends_on: [milestone-002/task-1]\n"
    )
    due2 = "2026-08-01" if trigger else "2026-06-20"
    two = milestone_yaml(M2, top=f"due_date: '{due2}'\n")
    return Outcome(scan(tmp, {F1: one, F2: two}), [at(one, "milestone-002/task-1")])


@case("MS207", "error")
def _self_dependency(tmp: Path, trigger: bool) -> Outcome:
    dep = "task-2" if trigger else "task-1"
    text = milestone_yaml(task2=f"  depends_on: [{dep}]\n")
    return Outcome(scan(tmp, {F1: text}), [at(text, dep, nth=2)])


@case("MS208", "error")
def _cross_level_cycle(tmp: Path, trigger: bool) -> Outcome:
    one = milestone_yaml(top="depends_on: [milestone-002]\n")
    dep = "milestone-001/task-1" if trigger else "task-1"
    two = milestone_yaml(M2, task2=f"  depends_on: [{dep}]\n")
    return Outcome(scan(tmp, {F1: one, F2: two}), [at(one, "depends_on:")])


# MS3xx timeline ----------------------------------------------------------------


@case("MS301", "error")
def _due_before_start(tmp: Path, trigger: bool) -> Outcome:
    due = "2026-06-10" if trigger else "2026-06-30"
    text = milestone_yaml(top=f"start_date: '2026-06-20'\ndue_date: '{due}'\n")
    return Outcome(scan(tmp, {F1: text}), [at(text, "due_date:")])


@case("MS302", "warning")
def _task_window(tmp: Path, trigger: bool) -> Outcome:
    began = "2026-04-20" if trigger else "2026-05-04"
    text = milestone_yaml(
        top="start_date: '2026-05-01'\n",
        task1=f"  status: in_progress\n  started_at: '{began}T09:00:00Z'\n",
    )
    return Outcome(scan(tmp, {F1: text}), [at(text, "started_at:")])


@case("MS303", "warning")
def _due_before_dependency(tmp: Path, trigger: bool) -> Outcome:
    one = milestone_yaml(top="due_date: '2026-07-01'\ndepends_on: [milestone-002]\n")
    due2 = "2026-08-01" if trigger else "2026-06-20"
    two = milestone_yaml(M2, top=f"due_date: '{due2}'\n")
    return Outcome(scan(tmp, {F1: one, F2: two}), [at(one, "milestone-002")])


@case("MS304", "warning")
def _overdue(tmp: Path, trigger: bool) -> Outcome:
    due = "2026-05-29" if trigger else TODAY
    text = milestone_yaml(top=f"due_date: '{due}'\n")
    return Outcome(scan(tmp, {F1: text}), [at(text, "due_date:")])


@case("MS305", "warning")
def _at_risk(tmp: Path, trigger: bool) -> Outcome:
    # One member at 40h a week: 8h a day. 2 + 30h is four working days from Monday.
    hours = 30 if trigger else 2
    text = milestone_yaml(top="due_date: '2026-06-03'\n", estimates=(hours, 2))
    config = team_config({"name": "ann", "capacity": 40})
    found = scan(tmp, {F1: text}, config=config)
    if trigger:
        [hit] = of("MS305", found)
        assert "projected to finish 2026-06-05" in hit["message"], hit
    return Outcome(found, [at(text, "due_date:")])


@case("MS306", "info")
def _missing_estimates(tmp: Path, trigger: bool) -> Outcome:
    bad, good = milestone_yaml(estimates=(2, None)), milestone_yaml(estimates=(2, 0.5))
    return file_case(tmp, trigger, bad, good, "tasks:")


# MS4xx resources (team from config) -------------------------------------------------

ANN = {"name": "ann", "role": "owner", "skills": ["python", "sql"], "capacity": 10}


@case("MS401", "warning")
def _missing_skill(tmp: Path, trigger: bool) -> Outcome:
    skill = "rust" if trigger else "SQL"
    text = milestone_yaml(task2=f"  skills: [python, {skill}]\n")
    return Outcome(scan(tmp, {F1: text}, config=team_config(ANN)), [at(text, skill)])


@case("MS402", "warning")
def _not_member(tmp: Path, trigger: bool) -> Outcome:
    who = "bob" if trigger else "ann"
    text = milestone_yaml(task1=f"  assignee: {who}\n")
    return Outcome(scan(tmp, {F1: text}, config=team_config(ANN)), [at(text, "assignee:")])


@case("MS403", "warning")
def _over_allocated(tmp: Path, trigger: bool) -> Outcome:
    # Monday to Friday of one week; ann has 10h a week.
    hours = 12 if trigger else 4
    text = milestone_yaml(
        top="start_date: '2026-06-01'\ndue_date: '2026-06-05'\n",
        task1="  assignee: ann\n",
        task2="  assignee: ann\n",
        estimates=(hours, 2),
    )
    found = scan(tmp, {F1: text}, config=team_config(ANN))
    if trigger:
        [hit] = of("MS403", found)
        assert hit["message"] == "ann has 14.0h of work in 2026-W23, over a capacity of 10h"
    return Outcome(found, ["ann"])


# MS5xx storage (the `hybrid` type) ----------------------------------------------------


def _break_chain(root: Path) -> None:
    log = root / LOG
    lines = log.read_bytes().splitlines(keepends=True)
    event = json.loads(lines[1])
    event["summary"] = "rewritten history"
    lines[1] = json.dumps(event).encode() + b"\n"
    log.write_bytes(b"".join(lines))


def _tamper_snapshot(root: Path) -> None:
    """A stored snapshot the log does not account for: the state written back as one
    state.json (the format the file backend reads as it is), one title changed."""
    from milestones.storage.file import FileStore

    state = FileStore(root).read_stored()
    assert state is not None
    state.pop("checkpoint", None)
    state["version"] = 1
    state["milestones"][M1]["state"]["title"] = "Not what the log says"
    (root / "logs" / "state.json").write_text(json.dumps(state), "utf-8")


def _tear_log(root: Path) -> None:
    with (root / LOG).open("ab") as f:
        f.write(b'{"event_id": 99, "event_type": "task_')


@case("MS501", "error")
def _chain(tmp: Path, trigger: bool) -> Outcome:
    found = scan(tmp, tamper=_break_chain if trigger else None, types=("hybrid",))
    return Outcome(found, [LOG])


@case("MS502", "error")
def _snapshots(tmp: Path, trigger: bool) -> Outcome:
    found = scan(tmp, tamper=_tamper_snapshot if trigger else None, types=("hybrid",))
    return Outcome(found, [M1])


@case("MS503", "warning")
def _pending(tmp: Path, trigger: bool) -> Outcome:
    files = {F1: milestone_yaml(title="Renamed by hand")} if trigger else {}
    return Outcome(scan(tmp, files, types=("hybrid",)), [".milestones"])


@case("MS504", "error")
def _torn(tmp: Path, trigger: bool) -> Outcome:
    found = scan(tmp, tamper=_tear_log if trigger else None, types=("hybrid",))
    return Outcome(found, [LOG])


# MS6xx template (the `quick` type) -----------------------------------------------------

SPIKE = (
    "description: A short spike\nduration: 3\nphases:\n"
    "  - name: try\n    tasks:\n      - title: Try it\n        estimate: 2\n"
    "  - name: decide\n    tasks:\n      - title: Write it up\n        estimate: 1\n"
    "requires:\n  phases: [try, decide]\n  min_tasks: 1\n"
)


def _spike_project(tmp: Path) -> Project:
    p, _ = Project.init(tmp, actor=ACTOR, session_id="test-session")
    (p.root / "templates").mkdir()
    (p.root / "templates" / "spike.yaml").write_text(SPIKE, "utf-8")
    p.plan_from_template("spike", title="Caching", start=TODAY)
    return reopen(tmp)


@case("MS601", "warning")
def _template_gone(tmp: Path, trigger: bool) -> Outcome:
    p = _spike_project(tmp)
    if trigger:
        (p.root / "templates" / "spike.yaml").unlink()
    found = reopen(tmp).validate(None, ("quick",))["findings"]
    text = (tmp / F1).read_text("utf-8")
    return Outcome(found, [at(text, "template:")])


@case("MS602", "error")
def _template_requirement(tmp: Path, trigger: bool) -> Outcome:
    p = _spike_project(tmp)
    if trigger:
        p.skip_task("1/2")  # the only task of phase `decide`
    found = reopen(tmp).validate(None, ("quick",))["findings"]
    text = (tmp / F1).read_text("utf-8")
    return Outcome(found, [at(text, "tasks:")])


# MS7xx kiro (the `kiro` type) ------------------------------------------------------------

KIRO_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kiro" / "offline-sync"
SPEC = ".kiro/specs/offline-sync"


def _kiro_project(tmp: Path, enforcement: str = "flexible") -> Project:
    import shutil

    shutil.copytree(KIRO_FIXTURE, tmp / SPEC)
    p, _ = Project.init(tmp, actor=ACTOR, session_id="test-session")
    p.import_kiro(tmp / SPEC, policy="mandatory", enforcement=enforcement)
    return reopen(tmp)


def _kiro_findings(tmp: Path) -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = reopen(tmp).validate(None, ("kiro",))["findings"]
    return findings


@case("MS701", "error")
def _spec_missing(tmp: Path, trigger: bool) -> Outcome:
    import shutil

    _kiro_project(tmp, "strict")
    if trigger:
        shutil.rmtree(tmp / SPEC)
    text = (tmp / F1).read_text("utf-8")
    return Outcome(_kiro_findings(tmp), [at(text, "path: .kiro")])


@case("MS702", "error")
def _requirements_missing(tmp: Path, trigger: bool) -> Outcome:
    _kiro_project(tmp, "strict")
    if trigger:
        (tmp / SPEC / "requirements.md").write_text("# Requirements\n", "utf-8")
    return Outcome(_kiro_findings(tmp), [f"{SPEC}/requirements.md"])


@case("MS703", "warning")
def _not_ears(tmp: Path, trigger: bool) -> Outcome:
    _kiro_project(tmp)
    path = tmp / SPEC / "requirements.md"
    if not trigger:
        path.write_text(path.read_text("utf-8").replace(
            "4. The sync should be fast", "4. WHEN a replay starts THE app SHALL finish it "
            "within 10 seconds"), "utf-8")
    return Outcome(_kiro_findings(tmp), [f"{SPEC}/requirements.md:36"])


@case("MS704", "error")
def _design_missing(tmp: Path, trigger: bool) -> Outcome:
    p = _kiro_project(tmp, "strict")
    p.review(M1, "requirements", "approve")
    if trigger:
        (tmp / SPEC / "design.md").unlink()
    return Outcome(_kiro_findings(tmp), [f"{SPEC}/design.md"])


@case("MS705", "warning")
def _design_unapproved(tmp: Path, trigger: bool) -> Outcome:
    p = _kiro_project(tmp)
    if not trigger:
        p.review(M1, "requirements", "approve")
        p.review(M1, "design", "approve")
    p.start_task("1/4")  # not ticked in tasks.md
    return Outcome(_kiro_findings(tmp), [M1])


@case("MS706", "warning")
def _untraced(tmp: Path, trigger: bool) -> Outcome:
    _kiro_project(tmp)
    text = (tmp / F1).read_text("utf-8")
    if not trigger:  # trace the checkpoint task by hand
        text = text.replace("title: Checkpoint - Ensure all tests pass\n",
                            "title: Checkpoint - Ensure all tests pass\n"
                            "  requirements: ['1.1']\n")
        hand_edit(tmp, {F1: text})
    return Outcome(_kiro_findings(tmp), [at(text, "id: task-9")])


@case("MS707", "warning")
def _uncovered(tmp: Path, trigger: bool) -> Outcome:
    _kiro_project(tmp)
    path = tmp / SPEC / "requirements.md"
    if not trigger:  # drop requirement 3 and criterion 2.4, which no task covers
        text = path.read_text("utf-8").replace("4. The sync should be fast\n", "")
        path.write_text(text[: text.index("### Requirement 3")], "utf-8")
    return Outcome(_kiro_findings(tmp), [f"{SPEC}/requirements.md:{n}" for n in (36, 44, 45)])


@case("MS708", "warning")
def _unknown_requirement(tmp: Path, trigger: bool) -> Outcome:
    _kiro_project(tmp)
    if trigger:
        text = (tmp / F1).read_text("utf-8").replace("title: Checkpoint - Ensure all tests "
                                                     "pass\n", "title: Checkpoint - Ensure "
                                                     "all tests pass\n  requirements: ['9.9']\n")
        hand_edit(tmp, {F1: text})
    return Outcome(_kiro_findings(tmp), [f"{M1}/task-9"])


@case("MS710", "error")
def _tasks_gate(tmp: Path, trigger: bool) -> Outcome:
    p = _kiro_project(tmp, "strict")
    if not trigger:
        for phase in ("requirements", "design", "tasks"):
            p.review(M1, phase, "approve")
    text = (tmp / F1).read_text("utf-8")
    task4 = text.index("id: task-4")
    hand_edit(tmp, {F1: text[:task4] + text[task4:].replace("status: todo",
                                                            "status: in_progress", 1)})
    text = (tmp / F1).read_text("utf-8")
    nth = text[: text.index("id: task-4")].count("status: in_progress") + 1
    return Outcome(_kiro_findings(tmp),
                   [at(text, "status: in_progress", nth=nth)] if trigger else [])


# --------------------------------------------------------------- the tests


@pytest.mark.parametrize("code", sorted(CASES))
def test_rule_triggers_at_its_location(code: str, tmp_path: Path) -> None:
    severity, build = CASES[code]
    out = build(tmp_path, True)
    hits = of(code, out.findings)
    assert [(f["severity"], f["location"]) for f in hits] == [
        (severity, loc) for loc in out.locations
    ], out.findings
    family = engine.RULES[code].family
    for f in hits:
        assert f["family"] == family and f["message"] and f["hint"]


@pytest.mark.parametrize("code", sorted(CASES))
def test_rule_is_quiet_on_the_clean_variant(code: str, tmp_path: Path) -> None:
    _severity, build = CASES[code]
    out = build(tmp_path, False)
    assert of(code, out.findings) == [], out.findings


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r.code)
def test_every_registered_rule_has_a_fixture(rule: engine.Rule) -> None:
    if rule.code not in CASES and rule.family in PENDING_FAMILIES:
        pytest.xfail(PENDING_FAMILIES[rule.family])
    assert rule.code in CASES, f"{rule.code} ({rule.title}) has no fixture in {__file__}"
    assert CASES[rule.code][0] == rule.severity


def test_every_fixture_names_a_registered_rule() -> None:
    assert set(CASES) <= {r.code for r in all_rules()}


# ----------------------------------------------------- more than one finding per rule


def test_structure_rules_report_every_problem_in_every_file(tmp_path: Path) -> None:
    one = milestone_yaml(task1="  progress: 150\n", task2="  progress: -1\n")
    two = milestone_yaml(M2).replace("status: planned", "status: planed")
    found = scan(tmp_path, {F1: one, F2: two})
    assert [f["location"] for f in of("MS109", found)] == [
        at(one, "progress:"),
        at(one, "progress:", nth=2),
    ]
    [enum] = of("MS103", found)
    assert enum["location"] == at(two, "status:", F2)
    assert enum["hint"] == "did you mean 'planned'?"


def test_id_must_match_the_file_name(tmp_path: Path) -> None:
    text = milestone_yaml(M2)
    found = scan(tmp_path, {F1: text}, milestones=1)
    [hit] = of("MS104", found)
    assert hit["location"] == at(text, "id: milestone-002")
    assert hit["hint"] == "set `id: milestone-001` or rename the file"


def test_unreadable_file_names_the_line_of_a_tab(tmp_path: Path) -> None:
    text = "id: milestone-001\ntitle: Alpha\ntasks:\n\t- id: task-1\n"
    [hit] = of("MS100", scan(tmp_path, {F1: text}))
    assert hit["location"].startswith(f"{F1}:4:")
    assert hit["severity"] == "error"


def test_unknown_field_suggests_the_known_one(tmp_path: Path) -> None:
    text = milestone_yaml(top="titel: Typo\n")
    [hit] = of("MS106", scan(tmp_path, {F1: text}))
    assert hit["location"] == at(text, "titel:")
    assert hit["hint"] == "did you mean 'title'?"


def test_milestone_depending_on_itself(tmp_path: Path) -> None:
    text = milestone_yaml(top="depends_on: [milestone-001]\n")
    [hit] = of("MS207", scan(tmp_path, {F1: text}))
    assert hit["location"] == at(text, "milestone-001", nth=2)
    assert hit["message"] == "milestone-001 depends on itself"


@pytest.mark.parametrize(
    ("edit", "needle", "code"),
    [
        ({"task2": "  depends_on: ['1']\n"}, "'1'", "MS104"),
        ({"task1": "  depends_on: [milestone-2/task-1]\n"}, "milestone-2/", "MS104"),
        ({"top": "depends_on: ['2']\n"}, "'2'", "MS104"),
        ({"top": "start_date: '2026-07-01'\ndue_date: '2026-06-30'\n"}, "due_date:", "MS301"),
    ],
)
def test_a_file_every_command_refuses_fails_validation(
    tmp_path: Path, edit: dict[str, str], needle: str, code: str
) -> None:
    """A hand edit the tool cannot load must not pass `validate` silently."""
    text = milestone_yaml(**edit)
    errors = [f for f in scan(tmp_path, {F1: text}) if f["severity"] == "error"]
    assert [(f["code"], f["location"]) for f in errors] == [(code, at(text, needle))], errors


@pytest.mark.parametrize(
    ("text", "needle", "message"),
    [
        ("id: milestone-001\ntitle: A\ntasks: {a: 1}\n", "tasks:", "tasks must be array"),
        ("id: milestone-001\ntitle: A\ntasks:\n- just text\n", "just", "tasks items must be"),
    ],
)
def test_tasks_must_be_a_list_of_mappings(
    tmp_path: Path, text: str, needle: str, message: str
) -> None:
    [hit] = of("MS102", scan(tmp_path, {F1: text}))
    assert hit["location"] == at(text, needle) and message in hit["message"]


def test_context_without_files_reports_references(tmp_path: Path) -> None:
    """Built directly (no files), findings are located by reference."""
    ms = {
        M1: {
            "id": M1,
            "title": "A",
            "status": "planned",
            "tasks": [
                {"id": "task-1", "title": "x", "status": "todo", "depends_on": ["task-2"]},
                {"id": "task-2", "title": "y", "status": "todo", "depends_on": ["task-7"]},
            ],
        }
    }
    found = run_context(ms)
    [hit] = of("MS201", found)
    assert hit["location"] == "milestone-001/task-2" and hit["file"] is None
    [miss] = of("MS306", found)
    assert miss["location"] == M1 and miss["severity"] == "info"


def test_scope_limits_per_milestone_rules() -> None:
    ms = {
        mid: {"id": mid, "title": "A", "status": "planned", "due_date": "2026-01-01", "tasks": []}
        for mid in (M1, M2)
    }
    ctx = engine.Context(ms, TODAY, scope={M2})
    assert [f.ref for f in engine.run(ctx, ("standard",)) if f.code == "MS304"] == [M2]


# --------------------------------------------------------------- configuration


def test_config_regrades_a_rule(tmp_path: Path) -> None:
    text = milestone_yaml(top="due_date: '2026-05-01'\n")
    found = scan(tmp_path, {F1: text}, config="validation:\n  rules:\n    MS304: error\n")
    [hit] = of("MS304", found)
    assert (hit["severity"], hit["location"]) == ("error", at(text, "due_date:"))
    data = reopen(tmp_path).validate(None, ("standard",))
    assert not data["ok"] and data["counts"]["error"] == 1


@pytest.mark.parametrize("off", ["off", "'off'", "false"])
def test_config_turns_a_rule_off(tmp_path: Path, off: str) -> None:
    text = milestone_yaml(top="titel: Typo\n", task1="  estimat: 3\n")
    found = scan(tmp_path, {F1: text}, config=f"validation:\n  rules:\n    MS106: {off}\n")
    assert of("MS106", found) == []
    assert of("MS106", scan(tmp_path / "on", {F1: text}))  # on by default


def test_rules_off_are_not_run_on_write(tmp_path: Path) -> None:
    config = "validation:\n  rules:\n    MS203: off\n"
    p = new_project(tmp_path, milestones=1, config=config)
    p.edit_task("1/2", depends_on=["1"])
    p.edit_task("1/1", depends_on=["2"])  # a cycle, but the rule is off
    assert p.milestone("1").task("task-1").depends_on == ["task-2"]


# --------------------------------------------------------------------------- CLI


def cli(cwd: Path, *args: str) -> Result:
    runner = CliRunner(mix_stderr=False)
    return runner.invoke(milestone_cli, ["-C", str(cwd), *args], catch_exceptions=False)


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    cli(tmp_path, "init")
    for title, due in (("Alpha", "2099-02-01"), ("Beta", "2099-03-01")):
        assert cli(tmp_path, "plan", title, "--due", due, "-t", "One", "-t", "Two").exit_code == 0
    return tmp_path


def test_cli_exit_codes_and_json_fields(proj: Path) -> None:
    ok = cli(proj, "validate")
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines()[-1].startswith("ok: 0 error(s), 0 warning(s)")

    text = milestone_yaml(task2="  depends_on: [task-9]\n")
    hand_edit(proj, {F1: text})
    bad = cli(proj, "validate", "--json")
    assert bad.exit_code == 5
    data = json.loads(bad.output)
    assert data["ok"] is False and data["counts"]["error"] == 1 and data["types"] == ["standard"]
    [f] = of("MS201", data["findings"])
    assert {"code", "family", "severity", "message", "location", "hint"} <= set(f)
    assert f["code"] == "MS201" and f["family"] == "dependency" and f["severity"] == "error"
    assert f["location"] == at(text, "task-9")
    assert f["message"] == (
        "milestone-001/task-2 depends on milestone-001/task-9, which does not exist"
    )
    assert f["hint"] == engine.RULES["MS201"].hint

    plain = cli(proj, "validate")
    assert plain.exit_code == 5
    line = f"{at(text, 'task-9')}: error MS201 {f['message']} — {f['hint']}"
    assert line in plain.output.splitlines()
    assert plain.output.splitlines()[-1].startswith("FAILED: 1 error(s)")

    # Scoped to another milestone the problem is out of sight.
    assert cli(proj, "validate", "2").exit_code == 0


def test_cli_strict_fails_on_warnings(proj: Path) -> None:
    hand_edit(proj, {F1: milestone_yaml(top="titel: Typo\n")})
    assert cli(proj, "validate").exit_code == 0
    strict = cli(proj, "validate", "--strict", "--json")
    assert strict.exit_code == 5
    data = json.loads(strict.output)
    assert data["ok"] is True and data["strict"] is True and data["counts"]["warning"] >= 1
    assert cli(proj, "validate", "--strict").output.splitlines()[-1].startswith("FAILED:")


def test_cli_info_never_fails_even_strict(proj: Path) -> None:
    result = cli(proj, "validate", "--strict", "--json")  # tasks without estimates: MS306 info
    assert result.exit_code == 0
    assert of("MS306", json.loads(result.output)["findings"])


def test_cli_type_selects_families(proj: Path) -> None:
    hand_edit(proj, {F1: milestone_yaml(title="Renamed")})
    standard = json.loads(cli(proj, "validate", "--json").output)
    assert not of("MS503", standard["findings"])
    hybrid = cli(proj, "validate", "--type", "hybrid", "--json")
    data = json.loads(hybrid.output)
    assert data["types"] == ["hybrid"] and {f["family"] for f in data["findings"]} == {"storage"}
    assert [f["location"] for f in of("MS503", data["findings"])] == [".milestones"]
    every = json.loads(cli(proj, "validate", "--type", "all", "--json").output)
    assert of("MS503", every["findings"]) and every["types"] == ["all"]


def test_cli_list_rules(proj: Path) -> None:
    data = json.loads(cli(proj, "validate", "--list-rules", "--json").output)
    codes = [r["code"] for r in data["rules"]]
    assert codes == sorted(codes) == [r.code for r in all_rules()]
    assert set(CASES) <= set(codes)
    for r in data["rules"]:
        assert set(r) == {"code", "family", "severity", "title", "hint", "on_write"}
    text = cli(proj, "validate", "--list-rules")
    assert text.exit_code == 0
    lines = text.output.splitlines()
    assert any(ln.startswith("MS203  dependency error") and "[on write]" in ln for ln in lines)
    assert any(ln.startswith("MS304  timeline") and "[on write]" not in ln for ln in lines)


def test_cycle_path_prints_short_refs(tmp_path: Path) -> None:
    p = new_project(tmp_path, milestones=2)
    p.plan("M3", tasks=["a", "b", "c", "d", "e"])
    p.plan("M4", tasks=["x"])
    three = (tmp_path / ".milestones/active/milestone-003.yaml").read_text("utf-8")
    four = (tmp_path / ".milestones/active/milestone-004.yaml").read_text("utf-8")
    three = three.replace("  title: b\n", "  title: b\n  depends_on: [task-5]\n")
    three = three.replace("  title: e\n", "  title: e\n  depends_on: [milestone-004/task-1]\n")
    four = four.replace("  title: x\n", "  title: x\n  depends_on: [milestone-003/task-2]\n")
    f3, f4 = ".milestones/active/milestone-003.yaml", ".milestones/active/milestone-004.yaml"
    hand_edit(tmp_path, {f3: three, f4: four})

    result = cli(tmp_path, "validate")
    assert result.exit_code == 5
    where = at(three, "depends_on: [task-5]", f3)
    assert (
        f"{where}: error MS203 dependency cycle: 3/2 → 3/5 → 4/1 → 3/2 — "
        "remove one dependency of the cycle"
    ) in result.output.splitlines()


# ------------------------------------------------------------------ the write path


def _disk(proj: Path) -> dict[str, bytes]:
    root = proj / ".milestones"
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in (".lock", "session-resume.json")
        and p.parent.name != "performance"  # metrics: every command, failed ones too
    }


def test_write_creating_a_cycle_is_refused_and_nothing_written(proj: Path) -> None:
    assert cli(proj, "task", "edit", "1/2", "--depends-on", "1").exit_code == 0
    before = _disk(proj)
    result = cli(proj, "task", "edit", "1/1", "--depends-on", "2")
    assert result.exit_code == 5
    assert result.stderr.startswith("milestone: error: MS203 dependency cycle: 1/1 → 1/2 → 1/1")
    assert _disk(proj) == before
    cross = cli(proj, "task", "edit", "2/1", "--depends-on", "1/2")
    assert cross.exit_code == 0
    refused = cli(proj, "task", "edit", "1/1", "--depends-on", "2/1")
    assert refused.exit_code == 5
    assert "MS203 dependency cycle: 1/1 → 2/1 → 1/2 → 1/1" in refused.stderr


def test_write_creating_a_milestone_cycle_is_refused(proj: Path) -> None:
    assert cli(proj, "update", "2", "--depends-on", "1").exit_code == 0
    before = _disk(proj)
    result = cli(proj, "update", "1", "--depends-on", "2")
    assert result.exit_code == 5
    assert "MS204 dependency cycle: 1 → 2 → 1" in result.stderr
    assert _disk(proj) == before


def test_pre_existing_problem_does_not_block_unrelated_writes(proj: Path) -> None:
    text = (proj / F1).read_text("utf-8").replace(
        "  title: Two\n", "  title: Two\n  depends_on: [task-9]\n"
    )
    hand_edit(proj, {F1: text})
    assert cli(proj, "validate").exit_code == 5  # the hand edit is an error...
    # ...yet work elsewhere, and elsewhere in the same milestone, goes on.
    assert cli(proj, "task", "add", "2", "Three").exit_code == 0
    assert cli(proj, "task", "edit", "1/1", "--title", "One, renamed").exit_code == 0
    assert cli(proj, "update", "1", "--title", "Alpha, renamed").exit_code == 0
    # A new error of the same kind is still refused.
    result = cli(proj, "task", "edit", "1/1", "--depends-on", "2/7")
    assert result.exit_code == 5
    assert "does not exist" in result.stderr
    assert cli(proj, "validate", "--json").exit_code == 5


def test_new_warning_is_printed_and_stored(proj: Path) -> None:
    assert cli(proj, "update", "2", "--depends-on", "1").exit_code == 0
    result = cli(proj, "update", "2", "--due", "2099-01-15")
    assert result.exit_code == 0, result.stderr
    message = (
        "milestone-002 is due 2099-01-15, before milestone-001 (which it depends on) "
        "is due 2099-02-01"
    )
    hint = engine.RULES["MS303"].hint
    assert result.stderr.splitlines() == [
        f"milestone: warning: milestone-002: MS303 {message} — {hint}"
    ]
    events = [json.loads(x) for x in (proj / ".milestones" / LOG).read_text().splitlines()]
    assert events[-1]["event_type"] == "milestone_updated"
    assert events[-1]["details"]["warnings"] == [f"MS303 {message}"]
    # Known now: the next write to that milestone does not repeat it.
    again = cli(proj, "update", "2", "--title", "Beta, renamed")
    assert again.exit_code == 0 and again.stderr == ""
    assert cli(proj, "validate", "--json").exit_code == 0


def test_library_write_keeps_new_warnings(tmp_path: Path) -> None:
    p = new_project(tmp_path, milestones=2)
    p.update("1", due="2099-02-01")
    p.update("2", due="2099-03-01", depends_on=["1"])
    assert p.warnings == []
    p.update("2", due="2099-01-01")
    assert [(w.code, w.location, w.severity) for w in p.warnings] == [
        ("MS303", M2, "warning")
    ]


# ---------------------------------------------------------------- the engine itself

POSITIONS_DOC = """\
# a comment first
id: milestone-001
'title': Quoted key
depends_on: [milestone-002, milestone-003]
1: a number as key
tasks:
- id: task-1
  depends_on:
    - task-2
    - milestone-002/task-1
  estimate: 2.5
-   id: task-2
    title: {a: 1}
"""


@pytest.mark.parametrize(
    ("path", "needle", "nth"),
    [
        ((), "id:", 1),
        (("id",), "id:", 1),
        (("title",), "'title'", 1),
        (("depends_on",), "depends_on", 1),
        (("depends_on", 1), "milestone-003", 1),
        (("depends_on", 7), "depends_on", 1),  # no such item: the nearest parent
        (("1",), "1:", 1),
        (("tasks", 0), "id: task-1", 1),
        (("tasks", 0, "depends_on", 1), "milestone-002/task-1", 1),
        (("tasks", 0, "estimate"), "estimate", 1),
        (("tasks", 1), "id: task-2", 1),
        (("tasks", 1, "title", "a"), "a: 1", 1),
        (("tasks", 1, "nope"), "id: task-2", 1),
        (("tasks", "x"), "tasks:", 1),
        (("missing", "deeper"), "id:", 1),
    ],
)
def test_source_positions(path: tuple[str | int, ...], needle: str, nth: int) -> None:
    src = engine.Source("f.yaml", POSITIONS_DOC)
    assert src.position(path) == tuple(
        int(x) for x in at(POSITIONS_DOC, needle, "f.yaml", nth).split(":")[1:]
    )
    src.forget()
    assert src.position(path) is not None  # composed again on demand


def test_source_of_unparseable_text_has_no_positions() -> None:
    assert engine.Source("f.yaml", "a: [unclosed\n").position(("a",)) is None
    assert engine.Source("f.yaml", "").position(("a",)) is None


def test_run_leaves_the_garbage_collector_as_it_found_it() -> None:
    import gc

    ms = {M1: {"id": M1, "title": "A", "status": "planned", "tasks": []}}
    assert gc.isenabled()
    run_context(ms)
    assert gc.isenabled()
    gc.disable()
    try:
        run_context(ms)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_findings_of_one_file_are_located_together(tmp_path: Path) -> None:
    """Rules of several families report in one file; each gets its own position."""
    text = milestone_yaml(
        top="due_date: '2026-05-01'\ntitel: Typo\nworkflow: kiroo\n",
        task1="  depends_on: [task-9]\n",
    )
    found = scan(tmp_path, {F1: text})
    got = {f["code"]: f["location"] for f in found if f["file"] == F1}
    assert got == {
        "MS103": at(text, "workflow:"),
        "MS106": at(text, "titel:"),
        "MS201": at(text, "task-9"),
        "MS304": at(text, "due_date:"),
        "MS305": at(text, "due_date:"),  # past due with work left: at risk too
    }
    # Errors first, then by file, line and column, then code.
    order = [f["code"] for f in found if f["file"] == F1]
    assert order == ["MS103", "MS201", "MS304", "MS305", "MS106"]


def test_severities_keeps_only_those_findings(tmp_path: Path) -> None:
    p, _ = Project.init(tmp_path, actor=ACTOR, session_id="s")
    p.plan("No dates", tasks=["a"])
    every = p.validate()["findings"]
    assert {f["severity"] for f in every} - {"error"}, every  # something below an error
    only = p.validate(severities=("error",))
    assert [f for f in only["findings"] if f["severity"] != "error"] == []
    assert only["ok"] is p.validate()["ok"]


def test_a_long_lived_project_validates_another_s_write_without_parsing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """milestone execute's validator holds a Project for the whole run while the
    executor writes: a file the tool wrote is taken from the state, not parsed again
    (a hand edit still is)."""
    from milestones.storage import yamlio

    reader, _ = Project.init(tmp_path, actor=ACTOR, session_id="s")
    reader.plan("Shared", tasks=["a", "b"])
    assert reader.validate(M1)["ok"]
    Project.open(tmp_path, actor="other", session_id="s2").start_task("1/1")
    parsed: list[str] = []
    load_text = yamlio.load_text

    def counting(text: str, shown: str) -> Any:
        parsed.append(shown)
        return load_text(text, shown)

    monkeypatch.setattr(yamlio, "load_text", counting)
    assert reader.validate(M1)["ok"]
    assert parsed == []
    path = tmp_path / F1
    path.write_text(path.read_text().replace("title: b", "title: b edited by hand"))
    reader.validate(M1)
    assert parsed == [F1]

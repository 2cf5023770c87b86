"""Every rule family over one plan with many kinds of problems: the findings (codes,
messages, locations, order, counts) equal those the engine gave before it read the
plan through one shared index (``golden_findings.json``, derived once from that code).

The plan: 24 generated milestones of 8 tasks (dates, estimates, a team of three with
skills and capacities, work overdue, at risk, outside its window, on cancelled or
later milestones), cycles of tasks, of milestones and across the two levels, dangling
and self dependencies, a milestone made from a template that lost what the template
requires, a Kiro milestone whose spec is partly missing, then hand edits that break
the files (YAML that does not parse, wrong types, unknown keys, bad dates, control
characters, out-of-range numbers, a duplicate task id, an id that is not the file's).
It is validated by type, by scope, by severity, as a bare context, on a lazily read
plan (a write's check), after three kinds of log damage, and on the database and
hybrid backends.

To derive the golden file again (only when a finding is meant to change):
``MILESTONE_GOLDEN=write pytest tests/validation/test_golden.py``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from milestones import model as md
from milestones.project import Project
from milestones.storage import yamlio
from milestones.validation import engine

GOLDEN = Path(__file__).with_name("golden_findings.json")
TODAY = "2026-06-01"
ACTOR = "tester@example.com"
KIRO_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kiro" / "offline-sync"
SPEC = ".kiro/specs/offline-sync"
TEAM = [
    {"name": "ann@example.com", "skills": ["python", "sql"], "capacity": 20},
    {"name": "bob@example.com", "skills": ["frontend"], "capacity": 12},
    {"name": "cy@example.com", "skills": ["ops", "python"]},
]
PEOPLE = ["ann@example.com", "bob@example.com", "cy@example.com", "eve@example.com"]
SPIKE = (
    "description: A short spike\nduration: 3\nphases:\n"
    "  - name: try\n    tasks:\n      - title: Try it\n        estimate: 2\n"
    "  - name: decide\n    tasks:\n      - title: Write it up\n        estimate: 1\n"
    "requires:\n  phases: [try, decide]\n  min_tasks: 1\n"
)
N, TASKS = 24, 8


def generate(seed: int = 14, *, cycles: bool = True) -> dict[str, dict[str, Any]]:
    """``N`` milestone snapshots, the same every run, with problems for most rules."""
    rnd = random.Random(seed)
    out: dict[str, dict[str, Any]] = {}
    for k in range(1, N + 1):
        mid = md.milestone_id(k)
        status = ("completed" if k <= 5 else "in_progress" if k <= 9
                  else "cancelled" if k in (12, 17) else "planned")
        start = f"2026-{1 + k // 3:02d}-{1 + k % 20:02d}"
        due = f"2026-{2 + k // 3:02d}-{5 + k % 20:02d}"
        m: dict[str, Any] = {"id": mid, "title": f"Milestone {k}", "status": status}
        if k % 5:
            m["start_date"], m["due_date"] = start, due
        if k > 1 and rnd.random() < 0.4:
            m["depends_on"] = [md.milestone_id(rnd.randint(max(1, k - 4), k - 1))]
        tasks = []
        for j in range(1, TASKS + 1):
            t: dict[str, Any] = {"id": f"task-{j}", "title": f"Task {j} of {k}"}
            deps = []
            if j > 1 and rnd.random() < 0.5:
                deps.append(f"task-{rnd.randint(1, j - 1)}")
            if k > 1 and rnd.random() < 0.15:
                deps.append(f"{md.milestone_id(rnd.randint(max(1, k - 4), k - 1))}/task-"
                            f"{rnd.randint(1, TASKS)}")
            if deps:
                t["depends_on"] = deps
            if rnd.random() < 0.85:
                t["estimate"] = rnd.choice([1, 2, 4, 8, 16])
            if rnd.random() < 0.7:
                t["assignee"] = rnd.choice(PEOPLE)
            if rnd.random() < 0.4:
                t["skills"] = [rnd.choice(["python", "sql", "frontend", "ops", "rust"])]
            if status == "completed" or (status == "in_progress" and j <= 3):
                t.update(status="done", progress=100, started_at=f"{start}T09:00:00Z",
                         completed_at=f"2026-{2 + k // 3:02d}-{1 + j:02d}T17:00:00Z")
            elif status == "in_progress" and j == 4:
                t.update(status="in_progress", progress=30, started_at=f"{start}T09:00:00Z")
            tasks.append(t)
        m["tasks"] = tasks
        out[mid] = m
    out["milestone-002"]["tasks"][7]["depends_on"] = ["milestone-024/task-8"]  # due later
    snaps = {mid: md.Milestone.from_dict(m, window=False).to_dict() for mid, m in out.items()}
    if not cycles:
        return snaps
    out = snaps
    # Cycles: of tasks within 10 and across 10/11, of milestones 13 -> 14 -> 13, across
    # levels (15 depends on 16, a task of 16 waits on one of 15); dangling and self.
    out["milestone-010"]["tasks"][0]["depends_on"] = ["task-2"]
    out["milestone-010"]["tasks"][1]["depends_on"] = ["task-1"]
    out["milestone-010"]["tasks"][4]["depends_on"] = ["milestone-011/task-1"]
    out["milestone-011"]["tasks"][0]["depends_on"] = ["milestone-010/task-5"]
    out["milestone-013"]["depends_on"] = ["milestone-014"]
    out["milestone-014"]["depends_on"] = ["milestone-013"]
    out["milestone-015"]["depends_on"] = ["milestone-016"]
    out["milestone-016"]["tasks"][2]["depends_on"] = ["milestone-015/task-3"]
    out["milestone-018"]["tasks"][3]["depends_on"] = ["task-99", "milestone-077/task-1"]
    out["milestone-019"]["depends_on"] = ["milestone-019", "milestone-088", "milestone-017"]
    out["milestone-020"]["tasks"][5]["depends_on"] = ["task-6", "milestone-012/task-1"]
    return {mid: md.Milestone.from_dict(m, window=False).to_dict() for mid, m in out.items()}


BROKEN = {  # hand edits after the plan is recorded (file name -> text)
    "milestone-021": "id: milestone-021\ntitle: Broken\ntasks:\n\t- id: task-1\n",
    "milestone-022": (
        "id: milestone-022\ntitle: 7\nstatus: planed\npriority: urgent\ntitel: Typo\n"
        "start_date: '2026-02-30'\ndue_date: 2026-01-01\ndepends_on: ['2', milestone-001]\n"
        "tasks:\n- id: task-1\n  title: \"Bell \\a here\"\n  progress: 150\n"
        "  estimat: 3\n  estimate: -2\n  started_at: yesterday\n  depends_on: ['1']\n"
        "- id: task-1\n  title: ''\n  status: todo\n  description: \"red \\e[31m\"\n"
        "- title: No id\n  skills: python\n"
        "- just text\n"
    ),
    "milestone-020": ("id: milestone-020\ntitle: Backwards\nstart_date: '2026-09-01'\n"
                      "due_date: '2026-08-01'\ntasks: []\n"),
    "milestone-023": "id: milestone-002\ntitle: Wrong file\ntasks: {a: 1}\n",
}


def build(tmp: Path, *, broken: bool = True, cycles: bool = True) -> Path:
    """The plan in a file-backend project at ``tmp``; returns its ``.milestones``."""
    p, _ = Project.init(tmp, actor=ACTOR, session_id="golden")
    config = {"team": {"members": TEAM}, "validation": {"rules": {"MS306": "warning"}}}
    (p.root / "config" / "config.yaml").write_text(json.dumps(config), "utf-8")
    for mid, snap in generate(cycles=cycles).items():
        (p.root / "active" / f"{mid}.yaml").write_text(yamlio.dump_fast(snap), "utf-8")
    p = reopen(tmp)
    p.state()  # records the files, as a hand edit is
    (p.root / "templates").mkdir()
    (p.root / "templates" / "spike.yaml").write_text(SPIKE, "utf-8")
    p.plan_from_template("spike", title="Caching", start=TODAY)
    p.skip_task(f"{N + 1}/2")  # the only task of phase `decide`
    shutil.copytree(KIRO_FIXTURE, tmp / SPEC)
    p.import_kiro(tmp / SPEC, policy="mandatory", enforcement="strict")
    kiro = tmp / SPEC / "requirements.md"
    kiro.write_text(kiro.read_text("utf-8") + "\n### Requirement 9\n\n#### Acceptance "
                    "Criteria\n\n1. The app should be nice\n", "utf-8")
    (tmp / SPEC / "design.md").unlink()
    if broken:
        for mid, text in BROKEN.items():
            (p.root / "active" / f"{mid}.yaml").write_text(text, "utf-8")
    return p.root


def reopen(tmp: Path) -> Project:
    p = Project.open(tmp, actor=ACTOR, session_id="golden")
    p.today = lambda: TODAY
    return p


class Lazy(Mapping[str, Any]):
    """A plan read on demand, as a write's check reads a large store."""

    lazy = True

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.reads: list[str] = []

    def __getitem__(self, mid: str) -> Any:
        self.reads.append(mid)
        return self.data[mid]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("a lazily read plan is never listed")

    def __len__(self) -> int:
        raise AssertionError("a lazily read plan is never counted")

    def __contains__(self, mid: object) -> bool:
        return mid in self.data


def findings(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"ok": data["ok"], "counts": data["counts"], "findings": data["findings"]}


def on_context(found: list[engine.Finding]) -> dict[str, Any]:
    return {"findings": [f.to_dict() for f in found]}


def results(tmp: Path) -> dict[str, Any]:
    """Every run of the golden file, by name."""
    out: dict[str, Any] = {}
    build(tmp / "file")
    p = reopen(tmp / "file")
    for types in (("all",), ("standard",), ("hybrid",), ("quick",), ("kiro",)):
        out[f"file {'+'.join(types)}"] = findings(p.validate(None, types))
    out["file errors"] = findings(p.validate(None, ("standard",), severities={"error"}))
    for ref in ("10", "15", "22", str(N + 2)):
        out[f"file scope {ref}"] = findings(p.validate(ref, ("all",)))
    clean = build(tmp / "clean", broken=False)
    q = reopen(tmp / "clean")
    snaps, config = dict(q.state().milestones), q.config()
    out["context all"] = on_context(engine.run(engine.Context(snaps, TODAY, config), ("all",)))
    for scope in ({"milestone-010"}, {"milestone-015", "milestone-019"}, {"milestone-003"}):
        lazy = Lazy(snaps)
        ctx = engine.Context(lazy, TODAY, config, scope=set(scope))
        key = f"lazy write {'+'.join(sorted(scope))}"
        out[key] = on_context(engine.run(ctx, ("all",), write_only=True))
    build(tmp / "acyclic", cycles=False)
    a = reopen(tmp / "acyclic")
    out["acyclic file all"] = findings(a.validate(None, ("all",)))
    out["acyclic file scope 7"] = findings(a.validate("7", ("standard",)))
    plan = generate(cycles=False)
    plan["milestone-023"] = {**plan["milestone-023"], "start_date": "2026-12-01"}
    acyclic = engine.Context(plan, TODAY, a.config())
    out["acyclic context all"] = on_context(engine.run(acyclic, ("all",)))
    for name, tamper in (("chain", break_chain), ("snapshot", tamper_snapshot),
                         ("torn", tear_log)):
        copy = tmp / f"tamper-{name}"
        shutil.copytree(tmp / "clean", copy)
        tamper(copy / ".milestones")
        out[f"tamper {name}"] = findings(reopen(copy).validate(None, ("hybrid",)))
    from milestones.ops.migrate import migrate

    for backend in ("database", "hybrid"):
        copy = tmp / backend
        shutil.copytree(tmp / "clean", copy)
        migrate(copy / ".milestones", backend, actor=ACTOR)
        q = reopen(copy)
        out[f"{backend} all"] = findings(q.validate(None, ("all",)))
        out[f"{backend} scope 16"] = findings(q.validate("16", ("standard",)))
    assert clean.exists()
    return out


LOG = "logs/progress-events.jsonl"


def break_chain(root: Path) -> None:
    log = root / LOG
    lines = log.read_bytes().splitlines(keepends=True)
    event = json.loads(lines[1])
    event["summary"] = "rewritten history"
    lines[1] = json.dumps(event).encode() + b"\n"
    log.write_bytes(b"".join(lines))


def tamper_snapshot(root: Path) -> None:
    """A stored snapshot the log does not account for: the state written back as one
    state.json (the format the file backend reads as it is), one title changed."""
    from milestones.storage.file import FileStore

    state = FileStore(root).read_stored()
    assert state is not None
    state.pop("checkpoint", None)
    state["version"] = 1
    state["milestones"]["milestone-004"]["state"]["title"] = "Not what the log says"
    (root / "logs" / "state.json").write_text(json.dumps(state), "utf-8")


def tear_log(root: Path) -> None:
    with (root / LOG).open("ab") as f:
        f.write(b'{"event_id": 99999, "event_type": "task_')


def dump(runs: Mapping[str, Any]) -> str:
    """JSON with one finding a line (a change shows as the lines of its findings)."""
    out = []
    for name, run in sorted(runs.items()):
        head = {k: v for k, v in run.items() if k != "findings"} if isinstance(run, dict) else {}
        found = run["findings"] if isinstance(run, dict) else run
        rows = ",\n".join(json.dumps(f, ensure_ascii=False) for f in found)
        body = json.dumps(head)[:-1] + (", " if head else "")
        out.append(f"{json.dumps(name)}: {body}\"findings\": [\n{rows}\n]}}")
    return "{\n" + ",\n".join(out) + "\n}\n"


def test_findings_equal_the_golden_ones(tmp_path: Path) -> None:
    got = json.loads(json.dumps(results(tmp_path)))
    if os.environ.get("MILESTONE_GOLDEN") == "write":
        GOLDEN.write_text(dump(got), "utf-8")
    want = json.loads(GOLDEN.read_text("utf-8"))
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name
        assert json.dumps(got[name]) == json.dumps(want[name]), name  # fields in order too


def test_the_golden_plan_has_every_rule_family(tmp_path: Path) -> None:
    """The golden file is worth something: most rules find something in it."""
    want = json.loads(GOLDEN.read_text("utf-8"))
    codes = {f["code"] for run in want.values() for f in run["findings"]}
    assert {r.family for r in engine.all_rules() if r.code in codes} == set(engine.FAMILIES)
    assert len(codes) >= 37, sorted(codes)


def test_replay_of_own_events_equals_the_copying_one(tmp_path: Path) -> None:
    """MS502 replays the events MS501 parsed without copying them again: the same
    milestones as the copying replay, and the events are left as they were."""
    import copy

    from milestones.model import events as ev

    build(tmp_path, broken=False)
    p = reopen(tmp_path)
    p.edit_task("3/2", title="Renamed", estimate=5)
    p.skip_task("22/3")
    events = list(p.store.events())
    before = copy.deepcopy(events)
    fresh = ev.replay(events, fresh=True)
    assert events == before
    assert fresh.milestones == ev.replay(before).milestones == dict(p.state().milestones)
    assert (fresh.current, fresh.max_number, fresh.last_id) == (
        p.state().current, p.state().max_number, p.state().last_event_id)

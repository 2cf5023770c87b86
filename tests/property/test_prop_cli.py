"""The CLI as a user or an agent drives it, at random, on every backend.

A hypothesis state machine runs real ``milestone`` commands (in-process, through
click) with arbitrary text — controls, markup, bidi marks, lone surrogates — in
every text field and reference, and checks each result against a small model of
tasks and their transitions: the exit code is the one the model predicts (or, for
text the tool may refuse, success or exit 4), a refused command changes nothing,
no command ever ends in a traceback, and after every step the hash chain verifies
and replaying the log gives back exactly what the backend holds.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from prop_strategies import TRICKY_TITLES, examples

from milestones.cli import cli
from milestones.model import events as ev
from milestones.project import Project
from milestones.storage import open_store

# Text a person or an agent might send: anything at all, now and then.
wild_text = st.text(st.characters(), min_size=0, max_size=20)  # lone surrogates included
markup = st.sampled_from(["[/x]", "[bold]b[/bold]", "[red]x", "\x1b[31mred\x1b[0m", "a\x07b",
                          "\u202eevil", "tab\there", "cr\rhere", "\x9bcsi", "nul\x00"])
plain = st.from_regex(r"[A-Za-z][A-Za-z0-9 .,'-]{0,15}", fullmatch=True)
text_in = st.one_of(plain, plain, st.sampled_from(TRICKY_TITLES), markup, wild_text)
ref_junk = st.one_of(wild_text, st.sampled_from([
    "1/task-1/x", "1/", "/1", "-1", "9" * 300, "1\x00", "1\n2", "milestone-1/../x",
    "milestone-001/task-999999999999999999999/", "..", "1//1", "\u0661", "1/\u0661",
    "milestone-\u0661", "\uff11"]))

# What a reference to a real milestone or task can look like (tried elsewhere).
REAL_REF = re.compile(r"\s*(m|M|milestone-)?[0-9]{1,6}\s*(/\s*(t|task-)?[0-9]{1,6}\s*)?",
                      re.ASCII)

OK, USAGE, NOT_FOUND, INVALID, RULE = 0, 2, 3, 4, 5


@dataclass
class Task:
    title: str
    deps: list[int] = field(default_factory=list)  # task numbers in the same milestone
    status: str = "todo"
    started: bool = False
    timer: bool = False


@dataclass
class Milestone:
    title: str
    tasks: list[Task] = field(default_factory=list)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class CliMachine(RuleBasedStateMachine):
    backend = "file"

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="ms-cli-prop-"))
        Project.init(self.tmp, backend=self.backend)
        self.root = self.tmp / ".milestones"
        self.runner = CliRunner(mix_stderr=False)
        self.model: list[Milestone] = []

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ----------------------------------------------------------- helpers

    def _state(self) -> tuple[str, int]:
        store = open_store(self.root)
        try:
            st_ = store.load()
            return ev.canonical({"m": dict(st_.milestones), "c": st_.current}), st_.last_event_id
        finally:
            getattr(store, "close", lambda: None)()

    def run(self, *args: str, expect: set[int]) -> Result:
        """Run one command; its exit code must be one of ``expect``, never a traceback,
        and a command that failed must have changed nothing."""
        before = self._state()
        result = self.runner.invoke(cli, ["-C", str(self.tmp), *args])
        where = f"milestone {' '.join(map(repr, args))}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{where}: raised {result.exception!r}") from result.exception
        assert "Traceback" not in result.stderr, (where, result.stderr)
        assert result.exit_code in expect, (where, result.exit_code, result.stderr)
        if result.exit_code != 0:
            assert self._state() == before, f"{where}: failed with {result.exit_code} " \
                "but changed the data"
            assert result.stderr.count("\n") == 1, (where, result.stderr)
            if "--json" in args:
                assert json.loads(result.stderr)["error"]["code"] == result.exit_code
            else:
                assert result.stderr.startswith("milestone: error: "), (where, result.stderr)
        return result

    def task_ref(self, m: int, t: int) -> str:
        return f"{m + 1}/{t + 1}"

    def deps_met(self, ms: Milestone, task: Task) -> bool:
        return all(ms.tasks[d].status in ("done", "skipped") for d in task.deps)

    def text_expect(self, *texts: str, positional: str | None = None) -> set[int]:
        """Plain text must be taken; arbitrary text may be refused as invalid input (and
        an argument that starts with '-' reads as an option: a usage error)."""
        usage = {USAGE} if positional is not None and positional.startswith("-") else set()
        if all(_plainly_valid(t) for t in texts):
            return {OK} | usage
        return {OK, INVALID} | usage

    # ---------------------------------------------------------- commands

    @initialize(title=plain, tasks=st.lists(plain, min_size=1, max_size=4))
    def seed(self, title: str, tasks: list[str]) -> None:
        self.run("plan", title, *[a for t in tasks for a in ("--task", t)], expect={OK})
        self.model.append(Milestone(title.strip(), [Task(t.strip()) for t in tasks]))

    @rule(title=text_in, tasks=st.lists(text_in, max_size=3))
    def plan(self, title: str, tasks: list[str]) -> None:
        r = self.run("plan", title, *[a for t in tasks for a in ("--task", t)],
                     expect=self.text_expect(title, *tasks, positional=title))
        if r.exit_code == 0:
            self.model.append(Milestone(title, [Task(t) for t in tasks]))
            self.check_titles(len(self.model) - 1)

    @rule(data=st.data(), title=text_in)
    def add_task(self, data: st.DataObject, title: str) -> None:
        m = data.draw(st.integers(0, len(self.model) - 1))
        ms = self.model[m]
        deps = data.draw(st.lists(st.integers(0, len(ms.tasks) - 1), max_size=2, unique=True)
                         ) if ms.tasks else []
        args = ["task", "add", str(m + 1), title]
        for d in deps:
            args += ["--depends-on", str(d + 1)]
        r = self.run(*args, expect=self.text_expect(title, positional=title))
        if r.exit_code == 0:
            ms.tasks.append(Task(title, deps=deps))
            self.check_titles(m)

    def pick(self, data: st.DataObject) -> tuple[int, int] | None:
        pairs = [(m, t) for m, ms in enumerate(self.model) for t in range(len(ms.tasks))]
        return data.draw(st.sampled_from(pairs)) if pairs else None

    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        pick = self.pick(data)
        if pick is None:
            return
        m, t = pick
        ms, task = self.model[m], self.model[m].tasks[pick[1]]
        ok = (task.status == "todo" or (task.status == "in_progress" and not task.timer)) \
            and self.deps_met(ms, task)
        r = self.run("task", "start", self.task_ref(m, t), expect={OK} if ok else {RULE})
        if r.exit_code == 0:
            task.status, task.started, task.timer = "in_progress", True, True

    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        pick = self.pick(data)
        if pick is None:
            return
        m, t = pick
        ms, task = self.model[m], self.model[m].tasks[t]
        ok = task.status in ("todo", "in_progress") and self.deps_met(ms, task)
        r = self.run("task", "done", self.task_ref(m, t), expect={OK} if ok else {RULE})
        if r.exit_code == 0:
            task.status, task.started, task.timer = "done", True, False

    @rule(data=st.data(), reason=text_in)
    def block(self, data: st.DataObject, reason: str) -> None:
        pick = self.pick(data)
        if pick is None:
            return
        m, t = pick
        task = self.model[m].tasks[t]
        if task.status in ("done", "skipped"):
            expect = {RULE, INVALID} if not _plainly_valid(reason) else {RULE}
        else:
            expect = self.text_expect(reason)
        r = self.run("task", "block", self.task_ref(m, t), "--reason", reason, expect=expect)
        if r.exit_code == 0:
            task.status, task.timer = "blocked", False

    @rule(data=st.data())
    def unblock(self, data: st.DataObject) -> None:
        pick = self.pick(data)
        if pick is None:
            return
        m, t = pick
        task = self.model[m].tasks[t]
        r = self.run("task", "unblock", self.task_ref(m, t),
                     expect={OK} if task.status == "blocked" else {RULE})
        if r.exit_code == 0:
            task.status = "in_progress" if task.started else "todo"

    @rule(data=st.data())
    def skip(self, data: st.DataObject) -> None:
        pick = self.pick(data)
        if pick is None:
            return
        m, t = pick
        task = self.model[m].tasks[t]
        ok = task.status in ("todo", "in_progress", "blocked")
        r = self.run("task", "skip", self.task_ref(m, t), expect={OK} if ok else {RULE})
        if r.exit_code == 0:
            task.status, task.timer = "skipped", False

    @rule(data=st.data())
    def reopen(self, data: st.DataObject) -> None:
        pick = self.pick(data)
        if pick is None:
            return
        m, t = pick
        task = self.model[m].tasks[t]
        ok = task.status in ("done", "skipped")
        r = self.run("task", "reopen", self.task_ref(m, t), expect={OK} if ok else {RULE})
        if r.exit_code == 0:
            task.status = "todo"

    @rule(text=text_in)
    def note(self, text: str) -> None:
        self.run("note", text, expect=self.text_expect(text, positional=text))

    @rule(ref=ref_junk, command=st.sampled_from([("show",), ("task", "start"), ("task", "done"),
                                                  ("update", "--title", "x"), ("ready",)]))
    def junk_reference(self, ref: str, command: tuple[str, ...]) -> None:
        """A malformed or unknown reference: not found or invalid, never a crash."""
        args = [*command[:1], ref, *command[1:]] if command[0] == "update" else [*command, ref]
        if command == ("ready",):
            args = ["ready", ref]
        if REAL_REF.fullmatch(ref):
            return  # it may well name a real task: not junk
        expect = {NOT_FOUND, INVALID} | ({USAGE} if ref.startswith("-") else set())
        self.run(*args, expect=expect)

    @rule(data=st.data(), view=st.sampled_from(["status", "list", "next", "log"]),
          ui=st.sampled_from(["simple", "rich", "json"]))
    def read(self, data: st.DataObject, view: str, ui: str) -> None:
        """Every view at every level prints stored text inert: no escape byte reaches it."""
        args = [view, "--json"] if ui == "json" else [view, "--ui", ui]
        r = self.run(*args, expect={OK})
        if ui == "json":
            json.loads(r.stdout)
        else:
            for bad in ("\x1b", "\x07", "\x9b", "\u202e", "\x00"):
                assert bad not in r.stdout, (args, bad, r.stdout)

    # -------------------------------------------------------- invariants

    def check_titles(self, m: int) -> None:
        """What the tool stored is exactly the text it was given (JSON keeps it exact)."""
        shown = json.loads(self.run("show", str(m + 1), "--json", expect={OK}).stdout)
        ms = self.model[m]
        assert shown["milestone"]["title"] == ms.title.strip()
        assert [t["title"] for t in shown["milestone"]["tasks"]] == [
            t.title.strip() for t in ms.tasks]

    @invariant()
    def statuses_match_the_model(self) -> None:
        store = open_store(self.root)
        try:
            state = store.load()
            milestones = dict(state.milestones)
            events = list(store.events())
        finally:
            getattr(store, "close", lambda: None)()
        assert ev.verify_chain(events) is None
        replayed = ev.replay(events)
        assert ev.canonical(replayed.milestones) == ev.canonical(milestones)
        assert (replayed.last_id, replayed.last_hash) == (state.last_event_id, state.last_hash)
        for i, ms in enumerate(self.model):
            snap = milestones[f"milestone-{i + 1:03d}"]
            assert [t["status"] for t in snap["tasks"]] == [t.status for t in ms.tasks], (
                f"milestone-{i + 1:03d}")


def _plainly_valid(text: str) -> bool:
    """Text every text field must take: printable, not blank, one line, short."""
    return (bool(text.strip()) and len(text) <= 200 and _encodable(text)
            and text.isprintable() and text == text.strip()
            and not any(c in text for c in "\u2028\u2029\u202e\ufeff"))


class HybridCliMachine(CliMachine):
    backend = "hybrid"


class DatabaseCliMachine(CliMachine):
    backend = "database"


SETTINGS = settings(
    max_examples=examples(12),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("machine", [CliMachine, HybridCliMachine, DatabaseCliMachine],
                         ids=lambda m: str(m.backend))
def test_random_cli_sessions_match_the_model(machine: type[CliMachine]) -> None:
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(machine, settings=SETTINGS)

"""Odd values get one clear line (issue 12): every door, every class of odd value.

The classes, each swept over the doors that take it:

* YAML nested deeper than anyone writes (hand-edited milestone files, plan files,
  config.yaml, user templates): exit 4 naming the file, never a RecursionError;
* YAML syntax errors at the line they are on (not one line late);
* dates at the calendar's ends (9999-12-31, 0001-01-01), offsets and spans past
  them, time zones that push a time out of it: stored dates work everywhere, and
  what would leave the calendar is refused (exit 4), never an OverflowError;
* numbers given NaN, infinity, -1, 1e400 or hundreds of digits;
* malformed references (``1/task-1/x``, NUL, newlines, hundreds of digits): 3 or 4;
* config.yaml values of the wrong type, out of range or unknown choice, and
  unknown keys: a warning naming ``config.yaml:LINE`` and the key, the default used;
* an unknown field in a hand-edited file (``prioirty:``): a warning naming the
  nearest field; ``validate`` reports it (MS106);
* an unknown ``MILESTONE_UI``: a warning naming it.

Every failing case also checks: one line on stderr, no traceback, no file changed.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from milestones.cli import cli
from milestones.project import Project

NOT_FOUND, INVALID = 3, 4
M1 = ".milestones/active/milestone-001.yaml"
CONFIG = ".milestones/config/config.yaml"
ERROR = "milestone: error: "
WARNING = "milestone: warning: "


# ------------------------------------------------------------------ helpers


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` -> (mode, bytes); the per-command metrics aside."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".milestones/performance"):
            continue
        st = path.lstat()
        out[rel] = (st.st_mode, path.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return out


class Cli:
    """The CLI in-process, stderr apart from stdout."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        try:
            self.runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]
        except TypeError:  # click 8.2+: always apart
            self.runner = CliRunner()

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.runner.invoke(cli, ["-C", str(self.cwd), *args], env=env,
                                  catch_exceptions=False)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Result:
        result = self(*args, env=env)
        assert result.exit_code == 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json").stdout)


def one_error(result: Result, codes: tuple[int, ...], *names: str) -> str:
    """Exit code in ``codes``, nothing on stdout, one line ``milestone: error: … — …``."""
    err = result.stderr
    assert result.exit_code in codes, (result.exit_code, err)
    assert "Traceback" not in err and "Error:" not in err.replace(ERROR, ""), err
    assert err.count("\n") == 1, f"not one line: {err!r}"
    if err.startswith("{"):  # the command had --json: the same error as a JSON object
        error = json.loads(err)["error"]
        assert error["code"] == result.exit_code and error["hint"], err
        err = f"{ERROR}{error['message']} — {error['hint']}\n"
    assert err.startswith(ERROR), f"not one line: {err!r}"
    assert " — " in err, f"no hint: {err!r}"
    for name in names:
        assert name in err, f"{name!r} not in {err!r}"
    return err


def warnings_of(result: Result) -> list[str]:
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in lines if line.startswith(WARNING)]


@pytest.fixture
def c(tmp_path: Path) -> Cli:
    """milestone-001 Alpha (task-1, task-2 waiting on task-1), current."""
    Project.init(tmp_path)
    c = Cli(tmp_path)
    c.ok("plan", "Alpha", "--task", "Write", "--task", "Test")
    c.ok("task", "edit", "1/2", "--depends-on", "1")
    c.ok("status")
    return c


def nested_flow(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_block(depth: int) -> str:
    return "\n" + "".join("  " * i + "- \n" for i in range(1, depth + 1))


DEEP = [
    pytest.param(lambda: nested_flow(100), id="flow-100"),
    pytest.param(lambda: nested_flow(900), id="flow-900"),  # libyaml takes it; Python did not
    pytest.param(lambda: nested_flow(1000), id="flow-1000"),
    pytest.param(lambda: nested_block(200), id="block-200"),
]


# ------------------------------------------------------------ YAML nesting


@pytest.mark.parametrize("value", DEEP)
def test_deep_yaml_in_a_hand_edited_milestone_file(c: Cli, value: Any) -> None:
    path = c.cwd / M1
    path.write_text(path.read_text() + "notes: " + value() + "\n")
    before = snapshot(c.cwd)
    for args in (("status",), ("show", "1", "--json"), ("task", "start", "1/1")):
        one_error(c(*args), (INVALID,), M1, "nested more than 64 levels deep")
    report = c("validate")  # validate reports a broken file as a finding
    assert report.exit_code == 5 and "Traceback" not in report.stderr, report.stderr
    assert M1 in report.stdout and "nested more than 64 levels deep" in report.stdout
    assert snapshot(c.cwd) == before


@pytest.mark.parametrize("value", DEEP)
def test_deep_yaml_in_a_plan_file(c: Cli, value: Any) -> None:
    plan = c.cwd / "plan.yaml"
    plan.write_text("title: Gamma\ntasks:\n- title: a\n  description: " + value() + "\n")
    before = snapshot(c.cwd)
    one_error(c("plan", "--from-file", str(plan)), (INVALID,), str(plan), "nested more than 64")
    assert snapshot(c.cwd) == before


@pytest.mark.parametrize("value", DEEP)
def test_deep_yaml_in_config_yaml(c: Cli, value: Any) -> None:
    (c.cwd / CONFIG).write_text("ui:\n  default: auto\nteam: " + value() + "\n")
    before = snapshot(c.cwd)
    one_error(c("status"), (INVALID,), CONFIG, "nested more than 64")
    assert snapshot(c.cwd) == before


@pytest.mark.parametrize("value", DEEP)
def test_deep_yaml_in_a_user_template(c: Cli, value: Any, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "xdg"
    (home / "milestone" / "templates").mkdir(parents=True)
    tpl = home / "milestone" / "templates" / "deep.yaml"
    tpl.write_text("name: deep\ndescription: d\nduration: 5\nnotes: " + value() + "\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    before = snapshot(c.cwd)
    one_error(c("plan", "--template", "deep"), (INVALID,), str(tpl), "nested more than 64")
    assert snapshot(c.cwd) == before


def test_nesting_at_the_limit_is_fine(c: Cli) -> None:
    plan = c.cwd / "plan.yaml"
    plan.write_text("title: Gamma\ndescription: " + nested_flow(63) + "\n")
    c.ok("plan", "--from-file", str(plan))


def test_the_deep_position_is_where_the_limit_is_passed(c: Cli) -> None:
    plan = c.cwd / "plan.yaml"
    plan.write_text("title: Gamma\nnotes: " + nested_flow(1000) + "\n")
    # The top mapping is level 1; the 64th bracket (column 7 + 64) is level 65.
    one_error(c("plan", "--from-file", str(plan)), (INVALID,), f"{plan}:2:71:")


def test_a_kiro_tasks_md_nested_1000_deep_imports_and_exports(c: Cli) -> None:
    spec = c.cwd / ".kiro" / "specs" / "deep"
    spec.mkdir(parents=True)
    lines = ["# Tasks", ""] + ["  " * i + f"- [ ] {i + 1}. step {i + 1}" for i in range(1000)]
    (spec / "tasks.md").write_text("\n".join(lines) + "\n")
    c.ok("import", "kiro", str(spec))
    c.ok("status", "2")
    c.ok("show", "2", "--critical-path")
    c.ok("validate", "2")
    c.ok("export", "kiro", "2", "--to", str(c.cwd / "out.md"))
    assert (c.cwd / "out.md").read_text().count("- [ ]") == 1000


@pytest.mark.parametrize("name", ["pyproject.toml", "Cargo.toml"])
def test_project_detection_survives_deep_toml(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("[package]\nname = \"x\"\n[project]\nname = \"x\"\n"
                                 "dependencies = " + nested_flow(100_000) + "\n")
    Cli(tmp_path).ok("quickstart", "--yes")


# -------------------------------------------------- YAML error positions

LINE_CASES = [
    ("unclosed-bracket", "title: Gamma\ndescription: d\ntags: [a, b\nowner: ann\n", 3),
    ("unclosed-bracket-at-end", "title: Gamma\ntags: [a, b\n", 2),
    ("unclosed-brace", "title: Gamma\nx: {a: 1\nowner: ann\n", 2),
    ("unclosed-double-quote", "title: Gamma\ndescription: d\nowner: \"ann\n", 3),
    ("unclosed-single-quote", "title: Gamma\nowner: 'ann\n\n\n", 2),
    ("key-without-colon", "title: Gamma\nowner\ndescription: d\n", 2),
    ("indented-key", "title: Gamma\ndescription: d\n  owner: ann\n", 3),
    ("value-with-colon", "title: Gamma\nowner: a: b\n", 2),
    ("tab", "title: Gamma\n\towner: ann\n", 2),
    ("dedented-item", "title: Gamma\ntasks:\n  - a\n - b\n", 4),
]


@pytest.mark.parametrize(("text", "line"), [pytest.param(*x[1:], id=x[0]) for x in LINE_CASES])
def test_yaml_errors_name_their_line_in_a_plan_file(c: Cli, text: str, line: int) -> None:
    plan = c.cwd / "plan.yaml"
    plan.write_text(text)
    before = snapshot(c.cwd)
    one_error(c("plan", "--from-file", str(plan)), (INVALID,), f"{plan}:{line}:")
    assert snapshot(c.cwd) == before


@pytest.mark.parametrize(("text", "line"), [pytest.param(*x[1:], id=x[0]) for x in LINE_CASES])
def test_yaml_errors_name_their_line_in_a_milestone_file(c: Cli, text: str, line: int) -> None:
    head = "id: milestone-001\nstatus: planned\n"  # two lines more
    (c.cwd / M1).write_text(head + text)
    one_error(c("status"), (INVALID,), f"{M1}:{line + 2}:")


@pytest.mark.parametrize(("text", "line"), [pytest.param(*x[1:], id=x[0]) for x in LINE_CASES])
def test_yaml_errors_name_their_line_in_config_yaml(c: Cli, text: str, line: int) -> None:
    (c.cwd / CONFIG).write_text(text)
    one_error(c("status"), (INVALID,), f"{CONFIG}:{line}:")


# ------------------------------------------------------- far dates, big numbers


@pytest.fixture(params=["file", "hybrid", "database"])
def far(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    """A milestone from 9999-12-01 to 9999-12-31 with two 10,000-hour tasks in a chain,
    and one due 0001-01-01."""
    Project.init(tmp_path, backend=request.param)
    c = Cli(tmp_path)
    c.ok("plan", "Far", "--start", "9999-12-01", "--due", "9999-12-31",
         "--task", "Huge", "--task", "Huger")
    c.ok("task", "edit", "1/1", "--estimate", "10000")
    c.ok("task", "edit", "1/2", "--estimate", "10000", "--depends-on", "1")
    c.ok("plan", "Ancient", "--start", "0001-01-01", "--due", "0001-01-01", "--task", "Old")
    c.ok("current", "1")
    return c


FAR_READS = [
    ("status",), ("status", "--all"), ("status", "--json"), ("status", "--ui", "rich"),
    ("list",), ("list", "--json"), ("show", "1"), ("show", "1", "--json"),
    ("show", "1", "--critical-path"), ("show", "1/2"), ("show", "2", "--json"),
    ("next",), ("next", "--json"), ("ready",), ("validate",), ("validate", "--json"),
    ("resume",), ("log",), ("log", "--since", "0001-01-01"), ("log", "--since", "9999-12-31"),
    ("export", "yaml", "--to", "{tmp}/exported/"),
]


@pytest.mark.parametrize("args", FAR_READS, ids=" ".join)
def test_far_dates_and_huge_estimates_read_everywhere(far: Cli, args: tuple[str, ...]) -> None:
    result = far(*[a.format(tmp=far.cwd) for a in args])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "OverflowError" not in result.stderr


def test_a_projection_past_the_calendar_is_null_and_at_risk(far: Cli) -> None:
    m = far.json("show", "1")["milestone"]
    assert m["projected_finish"] is None
    assert m["feasibility"]["projected_finish"] is None and m["feasibility"]["at_risk"]
    assert m["health"] == "at_risk"
    assert "projected finish after 9999-12-31" in far.ok("show", "1", "--critical-path").stdout
    findings = far.json("validate")["findings"]
    assert any(f["code"] == "MS305" and "after 9999-12-31" in f["message"] for f in findings)


def test_far_dates_survive_writes(far: Cli) -> None:
    far.ok("task", "start", "1/1")
    far.ok("task", "progress", "1/1", "50")
    far.ok("task", "done", "1/1")
    far.ok("update", "1", "--due", "9999-12-31", "--start", "9999-12-31")
    far.ok("status", "--json")


def test_a_hand_edited_milestone_with_far_dates(c: Cli) -> None:
    path = c.cwd / M1
    text = path.read_text().replace("tasks:\n", "start_date: 9999-12-01\ndue_date: 9999-12-31\n"
                                    "tasks:\n", 1)
    path.write_text(text.replace("  title: Write\n", "  title: Write\n  estimate: 10000\n"))
    for args in (("status", "--json"), ("list",), ("show", "1"), ("next",), ("validate",)):
        c.ok(*args)


HUGE = "9" * 5000  # int() refuses strings over 4300 digits
BAD_VALUES = [
    # relative dates past the calendar's end
    ("due-offset-days", ["plan", "Gamma", "--due", "+99999999d"], INVALID,
     ["due date '+99999999d'", "outside the calendar"]),
    ("due-offset-weeks", ["plan", "Gamma", "--due", "+9999999999999999999w"], INVALID,
     ["due date", "outside the calendar"]),
    ("due-offset-5000-digits", ["plan", "Gamma", "--due", f"+{HUGE}d"], INVALID,
     ["outside the calendar"]),
    ("start-offset", ["plan", "Gamma", "--start", "+2914000d"], INVALID,
     ["start date '+2914000d'"]),
    ("update-due-offset", ["update", "1", "--due", "+99999999d"], INVALID, ["due date"]),
    ("template-past-9999", ["plan", "--template", "bugfix", "--start", "9999-12-30"], INVALID,
     ["template bugfix", "9999-12-30 +", "outside the calendar"]),
    ("year-10000", ["plan", "Gamma", "--due", "10000-01-01"], INVALID, ["is not a date"]),
    ("year-0", ["plan", "Gamma", "--due", "0000-12-31"], INVALID, ["not a real date"]),
    # log --since: spans and time zones outside the calendar
    ("since-days", ["log", "--since", "99999999999d"], INVALID,
     ["--since", "outside the calendar"]),
    ("since-minutes-5000-digits", ["log", "--since", f"{HUGE}m"], INVALID, ["--since"]),
    ("since-before-year-1-in-utc", ["log", "--since", "0001-01-01T00:00:00+14:00"], INVALID,
     ["outside the calendar"]),
    ("since-after-9999-in-utc", ["log", "--since", "9999-12-31T23:59:59-12:00"], INVALID,
     ["outside the calendar"]),
    ("since-offset-25h", ["log", "--since", "2026-01-01T00:00:00+25:00"], INVALID,
     ["is not a time"]),
    ("since-nan", ["log", "--since", "nan"], INVALID, ["is not a time"]),
    # numbers
    *[(f"estimate-{v}", ["task", "edit", "1/1", "--estimate", v], INVALID,
       ["estimate", "out of range"])
      for v in ("nan", "inf", "-inf", "-1", "1e400", "1" + "0" * 30)],
    *[(f"add-estimate-{v}", ["task", "add", "1", "X", "--estimate", v], INVALID, ["estimate"])
      for v in ("nan", "inf", "1e400")],
    *[(f"progress-{v}", ["task", "progress", "1/1", v], 2, ["PERCENT"])
      for v in ("nan", "inf", "101", HUGE[:30])],
    *[(f"timeout-{v}", ["execute", "1", "--timeout", v], INVALID, ["--timeout"])
      for v in ("nan", "inf", "-1", "0", "1e400")],
    *[(f"grace-{v}", ["execute", "1", "--grace", v], INVALID, ["--grace"])
      for v in ("nan", "inf", "-1")],
    *[(f"lease-{v}", ["agent", "register", "--name", "w", "--lease", v], INVALID, ["lease"])
      for v in ("-1", "0", "604801", HUGE[:30])],
    *[(f"pid-{v}", ["agent", "register", "--name", "w", f"--pid={v}"], INVALID, ["pid"])
      for v in ("-1", "0", HUGE[:30])],
    *[(f"limit-{v}", ["log", "--limit", v], 2, ["--limit"]) for v in ("nan", "-1", "1e400")],
    *[(f"next-limit-{v}", ["next", "--limit", v], 2, ["--limit"]) for v in ("nan", "0", "-1")],
]


@pytest.mark.parametrize(("args", "code", "names"),
                         [pytest.param(*x[1:], id=x[0]) for x in BAD_VALUES])
def test_bad_values_are_one_line(c: Cli, args: list[str], code: int, names: list[str]) -> None:
    before = snapshot(c.cwd)
    one_error(c(*args), (code,), *names)
    assert snapshot(c.cwd) == before


@pytest.mark.parametrize("args", [("log", "--limit", HUGE[:30]), ("next", "--limit", HUGE[:30]),
                                  ("plan", "Gamma", "--due", "9999-12-31"),
                                  ("plan", "Gamma", "--start", "0001-01-01"),
                                  ("log", "--since", "0001-01-01T00:00:00-12:00"),
                                  ("log", "--since", "9999-12-31T23:59:59+14:00")], ids=" ".join)
def test_extremes_inside_the_range_work(c: Cli, args: tuple[str, ...]) -> None:
    c.ok(*args)
    c.ok("status", "--all")


@pytest.mark.parametrize("tz", ["Pacific/Kiritimati", "Etc/GMT+12", "UTC", "Nowhere/Invalid",
                                "<+1445>-14:45", ""])
def test_odd_time_zones(c: Cli, tz: str) -> None:
    env = {"TZ": tz}
    c.ok("plan", "Gamma", "--due", "+1w", env=env)
    c.ok("task", "start", "1/1", env=env)
    c.ok("log", "--since", "1d", env=env)
    c.ok("status", "--all", "--json", env=env)


# ------------------------------------------------------ timestamps in files


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"])
def test_a_timestamp_that_leaves_the_calendar_in_utc(c: Cli, stamp: str) -> None:
    path = c.cwd / M1
    lines = path.read_text().splitlines(keepends=True)
    line = next(i for i, s in enumerate(lines, 1) if s.startswith("created_at:"))
    lines[line - 1] = f"created_at: {stamp}\n"
    path.write_text("".join(lines))
    one_error(c("status"), (INVALID,), f"{M1}:{line}:", "outside the calendar")
    plan = c.cwd / "plan.yaml"
    plan.write_text(f"title: Gamma\ndue: {stamp}\n")
    one_error(c("plan", "--from-file", str(plan)), (INVALID,), f"{plan}:2:")


def test_a_timer_started_in_year_1_stops_within_what_a_file_holds(c: Cli) -> None:
    c.ok("task", "start", "1/1")
    path = c.cwd / M1
    text = path.read_text()
    start = text.index("timer_started_at: ")
    end = text.index("\n", start)
    path.write_text(text[:start] + "timer_started_at: '0001-01-01T00:00:00Z'" + text[end:])
    c.ok("task", "stop", "1/1")
    task = c.json("show", "1/1")["task"]
    assert task["time_spent"] == 10**9
    c.ok("doctor")
    path.write_text(path.read_text() + "\n")  # a hand edit: the file loads again
    c.ok("status")


# ------------------------------------------------------------- references

BAD_REFS = ["1/task-1/x", "milestone-001/task-1/x", "task-1/x", "1/\x00", "\x00", "1\n2",
            "1/1\n/1", "9" * 300, "1/" + "9" * 300, "task-" + "9" * 300,
            "milestone-" + "9" * 300, "1/task-" + "9" * 5000, "m1/t1/t1", "1//1", "/1", "1/"]
REF_COMMANDS = [("show",), ("task", "start"), ("task", "done"), ("task", "edit"),
                ("task", "progress"), ("agent", "release"), ("current",), ("update",),
                ("archive",), ("delete", "--yes"), ("status",), ("ready",),
                ("log", "--milestone"), ("export", "kiro")]


@pytest.mark.parametrize("command", REF_COMMANDS, ids=" ".join)
def test_malformed_references(c: Cli, command: tuple[str, ...]) -> None:
    c.ok("agent", "register", "--name", "w")
    before = snapshot(c.cwd)
    for ref in BAD_REFS:
        args = [*command, ref]
        if command == ("task", "progress"):
            args.append("10")
        if command == ("update",):
            args += ["--title", "X"]
        if command == ("agent", "release"):
            args += ["--agent", "w"]
        one_error(c(*args), (NOT_FOUND, INVALID))
    assert snapshot(c.cwd) == before


def test_a_malformed_dependency_is_refused(c: Cli) -> None:
    before = snapshot(c.cwd)
    for ref in BAD_REFS:
        result = c("task", "add", "1", "X", "--depends-on", ref)
        one_error(result, (NOT_FOUND, INVALID, 5))
    assert snapshot(c.cwd) == before


# ------------------------------------------------------------- config.yaml

CONFIG_CASES = [
    ("ui-choice", "ui:\n  default: fancy\n", 2, ["ui.default", "'fancy'", "auto, simple, rich"]),
    ("ui-count-nan", "ui:\n  rich_from_milestones: .nan\n", 2, ["ui.rich_from_milestones"]),
    ("ui-count-text", "ui:\n  rich_from_milestones: many\n", 2, ["ui.rich_from_milestones"]),
    ("ui-not-a-mapping", "team:\n  members: []\nui: 5\n", 3, ["ui must be a mapping"]),
    ("team-not-a-mapping", "team: [a, b]\n", 1, ["team must be a mapping"]),
    ("members-not-a-list", "team:\n  members: 7\n", 2, ["team.members must be a list"]),
    ("capacity-negative", "team:\n  members:\n  - name: ann\n    capacity: -5\n", 4,
     ["team.members[0].capacity"]),
    ("capacity-inf", "team:\n  members:\n  - name: ann\n  - name: bob\n    capacity: .inf\n", 5,
     ["team.members[1].capacity"]),
    ("capacity-text", "team:\n  members:\n  - {name: ann, capacity: lots}\n", 3,
     ["team.members[0].capacity"]),
    ("lease-negative", "agents:\n  lease_seconds: -1\n", 2, ["agents.lease_seconds", "300"]),
    ("attempts-text", "agents:\n  max_attempts: x\n", 2, ["agents.max_attempts"]),
    ("keep-float", "agents:\n  message_keep: 2.5\n", 2, ["agents.message_keep"]),
    ("rotate-huge", "logs:\n  rotate_bytes: " + "9" * 40 + "\n", 2, ["logs.rotate_bytes"]),
    ("blockers-nan", "blockers:\n  stale_hours: .nan\n", 2, ["blockers.stale_hours"]),
    ("blockers-negative", "blockers:\n  lease_lapses: -2\n", 2, ["blockers.lease_lapses"]),
    ("kiro-choice", "kiro:\n  policy: sometimes\n", 2, ["kiro.policy", "optional, mandatory"]),
    ("validation-rules", "validation:\n  rules: [MS304]\n", 2, ["validation.rules"]),
    ("unknown-section", "ui:\n  default: auto\nuii:\n  default: rich\n", 3,
     ["unknown key 'uii'", "did you mean ui?"]),
    ("unknown-key", "agents:\n  leese_seconds: 30\n", 2,
     ["unknown key agents.leese_seconds", "did you mean lease_seconds?"]),
]


@pytest.mark.parametrize(("text", "line", "names"),
                         [pytest.param(*x[1:], id=x[0]) for x in CONFIG_CASES])
def test_bad_config_values_warn_with_their_line(c: Cli, text: str, line: int,
                                                names: list[str]) -> None:
    (c.cwd / CONFIG).write_text(text)
    result = c.ok("validate")  # a command that reads the settings
    found = warnings_of(result)
    assert len(found) == 1, result.stderr
    assert found[0].startswith(f"{WARNING}{CONFIG}:{line}: "), found
    for name in names:
        assert name in found[0], (name, found[0])
    # The default applies, on every command that reads the setting; the file stays.
    c.ok("task", "start", "1/1")
    c.ok("status", "--all", "--ui", "rich")
    c.ok("show", "1", "--critical-path")
    c.ok("agent", "register", "--name", "w")
    c.ok("agent", "claim", "--agent", "w")


def test_a_bad_lease_setting_falls_back_to_the_default(c: Cli) -> None:
    (c.cwd / CONFIG).write_text("agents:\n  lease_seconds: .nan\n  max_attempts: -1\n")
    c.ok("agent", "register", "--name", "w")
    claim = c.json("agent", "claim", "--agent", "w")
    assert claim["lease"] == 300


def test_a_config_that_is_not_a_mapping_is_an_error(c: Cli) -> None:
    """A bad value is a warning and its default; a file that is no mapping at all is
    broken, not a preference: refused (see test_door_rules for the other commands)."""
    (c.cwd / CONFIG).write_text("- ui\n- team\n")
    result = c("validate")
    assert result.exit_code == 4 and CONFIG in result.stderr and "holds a list" in result.stderr


def test_a_bad_backup_retention_names_its_line(c: Cli) -> None:
    from milestones.errors import InvalidInput
    from milestones.storage import backup as bk

    (c.cwd / CONFIG).write_text("ui:\n  default: auto\nbackup:\n  retention: 0\n")
    with pytest.raises(InvalidInput, match=r"config\.yaml:4: backup\.retention"):
        bk.retention(c.cwd / ".milestones")


# ------------------------------------------------------- unknown fields


def test_an_unknown_field_in_a_hand_edit_warns_with_the_nearest(c: Cli) -> None:
    path = c.cwd / M1
    lines = path.read_text().splitlines(keepends=True)
    at = next(i for i, s in enumerate(lines, 1) if s.startswith("priority:"))
    lines[at - 1] = "prioirty: high\n"
    task_at = next(i for i, s in enumerate(lines, 1) if s.startswith("  title: Write"))
    lines.insert(task_at, "  asignee: ann\n")
    path.write_text("".join(lines))
    found = warnings_of(c.ok("status"))
    assert any(f"{M1}:{at}: MS106 unknown milestone field 'prioirty'" in w
               and "did you mean 'priority'?" in w for w in found), found
    assert any(f"{M1}:{task_at + 1}: MS106 unknown task field 'asignee'" in w
               and "'assignee'" in w for w in found), found
    assert not warnings_of(c.ok("status"))  # said once, for the edit that brought it
    findings = c.json("validate")["findings"]
    ms106 = sorted(f["message"] for f in findings if f["code"] == "MS106")
    assert ms106 == ["unknown milestone field 'prioirty'", "unknown task field 'asignee'"]


# ---------------------------------------------------------- MILESTONE_UI


@pytest.mark.parametrize("value", ["fancy", "RICH ", "\u202etxet"])
def test_an_unknown_milestone_ui_warns(c: Cli, value: str) -> None:
    result = c.ok("status", env={"MILESTONE_UI": value})
    found = warnings_of(result)
    assert len(found) == 1 and repr(value) in found[0] and "simple, rich" in found[0], found
    assert result.stdout  # the default level still prints


@pytest.mark.parametrize("value", ["simple", "rich", "auto", ""])
def test_known_milestone_ui_values_are_quiet(c: Cli, value: str) -> None:
    assert not warnings_of(c.ok("status", env={"MILESTONE_UI": value}))


# ---------------------------------------------------------- templates


@pytest.mark.parametrize(("body", "names"), [
    ("duration: .nan\n", ["duration", "not a whole number"]),
    ("duration: .inf\n", ["duration"]),
    ("duration: " + "9" * 40 + "\n", ["duration", "out of range"]),
    ("duration: 5\nphases:\n- name: a\n  tasks:\n  - title: x\n    estimate: .nan\n",
     ["estimate"]),
    ("duration: 5\nphases:\n- name: a\n  days: .inf\n  tasks: [x]\n", ["days"]),
])
def test_odd_numbers_in_a_user_template(c: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        body: str, names: list[str]) -> None:
    home = tmp_path / "xdg"
    (home / "milestone" / "templates").mkdir(parents=True)
    tpl = home / "milestone" / "templates" / "odd.yaml"
    tpl.write_text("name: odd\ndescription: d\n" + body)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    before = snapshot(c.cwd)
    one_error(c("plan", "--template", "odd"), (INVALID,), str(tpl), *names)
    assert snapshot(c.cwd) == before


# ------------------------------------------------------- plan files, Kiro

PLAN_FILE_CASES = [
    ("plan.yaml", "title: P\ntasks:\n- title: a\n  estimate: .nan\n",
     ["{p}: milestone #1 task #1 estimate nan is out of range"]),
    ("plan.yaml", "title: P\ntasks:\n- a\n- title: b\n  estimate: 1e400\n",
     ["{p}: milestone #1 task #2 estimate"]),
    ("plan.yaml", "- title: P\n- title: Q\n  tasks:\n  - {title: b, estimate: -1}\n",
     ["{p}: milestone #2 task #1 estimate -1"]),
    ("plan.yaml", "title: P\nprioirty: high\n", ["{p}: milestone #1", "did you mean priority?"]),
    ("plan.yaml", "title: P\ndue: '+3d'\n", ["{p}: milestone #1 due_date '+3d' is not a date"]),
    ("plan.yaml", "title: P\ndue: 9999-12-31T23:00:00-12:00\n", ["{p}:2:6:", "calendar"]),
    ("plan.md", "# P\n\n- [ ] a (2h)\n- [ ] b (" + "9" * 40 + "h)\n", ["{p}:4: estimate"]),
    ("plan.md", "# P\ndue: 2026-02-30\n", ["{p}:2: due date '2026-02-30' is not a real date"]),
    ("plan.md", "# P\nstart: 0000-01-01\n", ["{p}:2: start date"]),
]


@pytest.mark.parametrize(("name", "text", "names"), PLAN_FILE_CASES)
def test_odd_values_in_plan_files_name_the_file(c: Cli, name: str, text: str,
                                                names: list[str]) -> None:
    plan = c.cwd / name
    plan.write_text(text)
    before = snapshot(c.cwd)
    one_error(c("plan", "--from-file", str(plan)), (INVALID,),
              *[n.format(p=plan) for n in names])
    assert snapshot(c.cwd) == before


KIRO_LONG = "9" * 5000
KIRO_CASES = [
    ("tasks.md", f"# Tasks\n\n- [ ] 1. a\n- [ ] {KIRO_LONG}. b\n", 4),
    ("tasks.md", f"# Tasks\n\n- [ ] 1. a\n  - _Requirements: 1.1-1.{KIRO_LONG}_\n", 4),
    ("tasks.md", f"# Tasks\n\n- [ ] 1.{KIRO_LONG} a\n", 3),
    ("requirements.md", f"# Requirements\n\n### Requirement {KIRO_LONG}\n\n"
                        "1. WHEN x THEN the system SHALL y\n", 3),
    ("requirements.md", "# Requirements\n\n### Requirement 1\n\n#### Acceptance Criteria\n\n"
                        f"{KIRO_LONG}. WHEN x THEN the system SHALL y\n", 7),
]


@pytest.mark.parametrize(("name", "text", "line"), KIRO_CASES)
def test_kiro_numbers_with_thousands_of_digits(c: Cli, name: str, text: str, line: int) -> None:
    spec = c.cwd / ".kiro" / "specs" / "odd"
    spec.mkdir(parents=True)
    if name != "tasks.md":
        (spec / "tasks.md").write_text("# Tasks\n\n- [ ] 1. a\n")
    (spec / name).write_text(text)
    before = snapshot(c.cwd)
    one_error(c("import", "kiro", str(spec)), (INVALID,),
              f".kiro/specs/odd/{name}:{line}:", "too long")
    assert snapshot(c.cwd) == before


def test_a_kiro_export_renumbers_a_spec_ref_too_long_to_be_a_number() -> None:
    from milestones.plans.kiro import export_tasks_md

    tasks = [{"id": "task-1", "title": "a", "status": "todo", "spec_ref": "1"},
             {"id": "task-2", "title": "b", "status": "todo", "spec_ref": "9" * 5000}]
    out = export_tasks_md({"id": "milestone-001", "title": "M", "tasks": tasks})
    assert "- [ ] 1. a" in out and "- [ ] 2. b" in out


def test_over_allocation_over_a_window_out_to_9999_is_quick(c: Cli) -> None:
    import time

    config = c.cwd / CONFIG
    config.write_text("team:\n  members:\n  - {name: ann, capacity: 10}\n")
    c.ok("plan", "Far", "--due", "9999-12-31", "--task", "A")
    c.ok("task", "assign", "2/1", "ann")
    c.ok("plan", "Soon", "--due", "+1w", "--task", "B")
    c.ok("task", "edit", "3/1", "--estimate", "200")
    c.ok("task", "assign", "3/1", "ann")
    began = time.perf_counter()
    findings = c.json("validate")["findings"]
    assert time.perf_counter() - began < 3  # it walked every day to 9999-12-31 (4 s each)
    assert any(f["code"] == "MS403" and "ann has" in f["message"] for f in findings)


@pytest.mark.parametrize("stamp", ["'2026-12-06T00:00:00'", "'2026-12-06T00:00:00+14:00'",
                                   "'2026-12-06'", "'2026-12-06T10:00:00.123456789Z'",
                                   "2026-12-06T00:00:00-12:00", "'0001-01-01T00:00:00-12:00'",
                                   "0500-01-01T00:00:00Z"])
def test_hand_written_timestamps_in_any_zone_work(c: Cli, stamp: str) -> None:
    c.ok("task", "start", "1/1")
    path = c.cwd / M1
    text = path.read_text()
    start = text.index("timer_started_at: ")
    end = text.index("\n", start)
    path.write_text(text[:start] + f"timer_started_at: {stamp}" + text[end:])
    c.ok("task", "stop", "1/1")  # subtracting a time without a zone raised TypeError
    c.ok("task", "done", "1/1")
    c.ok("status", "--json")
    c.ok("doctor")


def test_since_before_year_1000_keeps_every_event(c: Cli) -> None:
    events = c.json("log")["events"]
    assert c.json("log", "--since", "0500-01-01")["events"] == events
    assert c.json("log", "--since", "0001-01-01T00:00:00-12:00")["events"] == events


# ----------------------------------------------------- JSON nested deep

DEEP_JSON = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize("rel", ["logs/state.json", "logs/session-resume.json",
                                 "logs/archive/index.json"])
def test_deep_json_is_read_as_damaged_json(c: Cli, rel: str) -> None:
    path = c.cwd / ".milestones" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEEP_JSON)
    for args in (("status",), ("resume",), ("log",), ("next",)):
        c.ok(*args)  # state.json is rebuilt from the log, the others read as missing


def test_a_deep_json_line_in_the_event_log_is_named_by_doctor(c: Cli) -> None:
    log = c.cwd / ".milestones" / "logs" / "progress-events.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    lines.insert(1, DEEP_JSON + "\n")
    log.write_text("".join(lines))
    result = c("doctor")
    assert result.exit_code == 8 and "Traceback" not in result.stderr, result.stderr
    assert "progress-events.jsonl:2: not a JSON event" in result.stdout


# ----------------------------------------------------- hand-edited numbers


@pytest.mark.parametrize(("field", "value"), [
    ("progress", ".nan"), ("progress", ".inf"), ("progress", "-1"), ("time_spent", "1e400"),
    ("time_spent", ".inf"), ("estimate", "!!float 1e400"), ("estimate", "-.inf"),
    ("execution", "{token: " + "9" * 30 + "}"), ("execution", "{attempts: .nan}"),
    ("execution", "{lease: .inf}"), ("execution", "{lapsed: -1}"),
    ("execution", "{claimed_at: yesterday}"), ("execution", "{claimed_at: 42}"),
])
def test_odd_numbers_in_a_hand_edited_task(c: Cli, field: str, value: str) -> None:
    path = c.cwd / M1
    lines = path.read_text().splitlines(keepends=True)
    at = next(i for i, s in enumerate(lines) if s.startswith("  title: Write"))
    lines.insert(at + 1, f"  {field}: {value}\n")
    path.write_text("".join(lines))
    before = snapshot(c.cwd)
    for args in (("status",), ("show", "1/1", "--json"), ("agent", "register", "--name", "w")):
        one_error(c(*args), (INVALID,), M1, f"task-1 {field}")
    assert snapshot(c.cwd) == before


@pytest.mark.parametrize("ref", ["\u0661", "1/\u0661", "milestone-\u0661", "\uff11",
                                 "\u0661/\u0661", "m\u0967"])
def test_digits_of_other_scripts_are_no_reference(c: Cli, ref: str) -> None:
    """Python's int() reads Arabic-Indic or full-width digits; a reference never does:
    `show ١` is not `show 1` (ids on disk are ASCII, and so are the refs that name them)."""
    c.ok("plan", "Alpha", "--task", "one")
    one_error(c("show", ref), (3, 4))
    one_error(c("task", "done", ref), (3, 4))

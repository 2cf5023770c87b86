"""Templates: built-ins, user YAML templates, variables, rendering, requirements."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from milestones import model as md
from milestones.errors import InvalidInput, NotFound
from milestones.plans import templates as tpl
from milestones.project import Project

START = date(2026, 3, 2)
NEEDS = {"release": {"version": "1.4.0"}}  # built-ins with a required variable


@pytest.fixture(autouse=True)
def _config_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Keep the real ~/.config out: user templates come from tmp_path/config."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def user_dir(tmp_path: Path) -> Path:
    d = tmp_path / "config" / "milestone" / "templates"
    d.mkdir(parents=True, exist_ok=True)
    return d


def project_dir(tmp_path: Path) -> Path:
    d = tmp_path / "repo" / ".milestones" / "templates"
    d.mkdir(parents=True, exist_ok=True)
    return d


def minimal(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "description": "A small template",
        "duration": 5,
        "phases": [
            {"name": "one", "tasks": [{"title": "First"}, {"title": "Second"}]},
            {"name": "two", "tasks": [{"title": "Third"}]},
        ],
    }
    data.update(extra)
    return data


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------- built-ins

EXPECTED = ("personal", "team", "api", "frontend", "bugfix", "feature", "release", "research",
            "kiro-spec", "documentation")


def test_every_expected_builtin_exists_and_is_substantial() -> None:
    builtins = tpl.builtin_templates()
    assert set(EXPECTED) <= set(builtins)
    for name, t in builtins.items():
        assert t.builtin and t.source == "built-in" and t.name == name
        assert t.description and t.title and t.category
        assert len(t.phases) >= 3, name
        assert len(t.tasks) >= 8, name
        assert all(task.estimate for _, task in t.tasks), name
        assert t.success_criteria, name
        assert t.requires.due_date and t.requires.min_tasks and t.requires.phases, name
        assert sum(p.days for p in t.phases) <= t.duration, name
        json.dumps(t.to_dict())


def test_builtin_durations() -> None:
    b = tpl.builtin_templates()
    assert b["personal"].duration == 7
    assert b["team"].duration == 14
    assert b["bugfix"].duration == 2
    assert [p.name for p in b["kiro-spec"].phases] == ["requirements", "design", "tasks",
                                                       "execute"]
    assert b["bugfix"].category == "bugfix" and b["release"].category == "release"
    assert b["research"].category == "research"
    assert b["documentation"].category == "documentation"


@pytest.mark.parametrize("name", EXPECTED)
def test_builtin_renders_and_round_trips_through_plan_many(name: str, tmp_path: Path) -> None:
    t = tpl.get_template(None, name)
    spec = tpl.render(t, start=START, variables=NEEDS.get(name))
    assert spec["start_date"] == "2026-03-02"
    assert spec["due_date"] == (START + timedelta(days=t.duration)).isoformat()
    assert spec["template"]["name"] == name
    assert "{{" not in json.dumps(spec)
    # tasks in phase order, each with its phase
    phases = [task["phase"] for task in spec["tasks"]]
    order = [p.name for p in t.phases]
    assert phases == sorted(phases, key=order.index)
    assert set(phases) == set(order)

    project, created = Project.init(tmp_path)
    assert created
    [m] = project.plan_many([spec])
    assert m.title == spec["title"]
    assert m.due_date == spec["due_date"] and m.category == t.category
    assert m.template == spec["template"]
    assert [task.phase for task in m.tasks] == phases
    assert [task.title for task in m.tasks] == [task["title"] for task in spec["tasks"]]
    assert [task.depends_on for task in m.tasks] == [task["depends_on"] for task in
                                                     spec["tasks"]]
    md.topological_order({task.id: task.depends_on for task in m.tasks})  # acyclic
    # Stored and read back by a fresh Project.
    again = Project.open(tmp_path).milestone(m.id)
    assert again.template == spec["template"]
    assert tpl.check_requirements(again.to_dict(), t) == []


def test_render_title_variables_and_dates() -> None:
    t = tpl.get_template(None, "release")
    spec = tpl.render(t, start="2026-05-01", variables={"version": "2.0.0"})
    assert spec["title"] == "Release 2.0.0"
    assert spec["priority"] == "high"
    assert spec["template"]["variables"] == {"version": "2.0.0"}
    assert any("2.0.0" in task["title"] for task in spec["tasks"])
    assert spec["success_criteria"][0].startswith("2.0.0 is published")
    windows = spec["template"]["phases"]
    assert windows[0]["start"] == "2026-05-01"
    assert windows[-1]["due"] <= spec["due_date"]


def test_explicit_title_is_literal_and_usable_as_placeholder() -> None:
    t = tpl.parse_template(minimal(
        milestone_description="About {{ title }} from {{ start }} to {{ due }}",
    ), "t.yaml", name="t")
    spec = tpl.render(t, title="Ship {{ it }}", start=START)
    assert spec["title"] == "Ship {{ it }}"
    assert spec["description"] == "About Ship {{ it }} from 2026-03-02 to 2026-03-07"


def test_title_defaults_to_pattern_or_name() -> None:
    t = tpl.parse_template(minimal(), "x", name="my-thing")
    assert tpl.render(t, start=START)["title"] == "My thing"
    t2 = tpl.parse_template(minimal(title="Week of {{ start }}"), "x", name="w")
    assert tpl.render(t2, start=START)["title"] == "Week of 2026-03-02"


# ------------------------------------------------------------- dependencies


def test_phase_rule_and_explicit_dependencies() -> None:
    t = tpl.parse_template({
        "description": "d", "duration": 10,
        "phases": [
            {"name": "a", "tasks": [
                {"title": "A1", "key": "a1"},
                {"title": "A2", "depends_on": ["a1"]},
                {"title": "A3"},
            ]},
            {"name": "b", "tasks": [
                {"title": "B1"},
                {"title": "B2", "depends_on": ["B1"]},
                {"title": "B3", "depends_on": ["a1"]},  # starts early, by choice
            ]},
            {"name": "c", "tasks": [{"title": "C1"}]},
        ],
    }, "t", name="t")
    deps = [task["depends_on"] for task in tpl.render(t, start=START)["tasks"]]
    assert deps == [
        [],  # A1
        ["task-1"],  # A2 after A1
        [],  # A3: first phase, no explicit deps
        ["task-2", "task-3"],  # B1 waits for phase a's final tasks (A2, A3)
        ["task-4"],  # B2 after B1
        ["task-1"],  # B3 only what it lists
        ["task-5", "task-6"],  # C1 waits for phase b's finals (B2, B3)
    ]


@pytest.mark.parametrize("tasks, field, words", [
    ([{"title": "X", "depends_on": ["Y"]}, {"title": "Y"}], "tasks[1].depends_on",
     "listed after it"),
    ([{"title": "X", "depends_on": ["X"]}], "tasks[1].depends_on", "listed after it"),
    ([{"title": "X", "depends_on": ["nope"]}], "tasks[1].depends_on", "not the key"),
    ([{"title": "X", "key": "k"}, {"title": "Y", "key": "k"}], "tasks[2].key", "used twice"),
    ([{"title": "X"}, {"title": "X"}, {"title": "Z", "depends_on": ["X"]}],
     "tasks[3].depends_on", "share"),
])
def test_bad_dependencies_name_the_field(tasks: list[dict[str, Any]], field: str,
                                         words: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        tpl.parse_template({"description": "d", "duration": 1,
                            "phases": [{"name": "p", "tasks": tasks}]}, "f.yaml", name="f")
    assert f"f.yaml: phases[1].{field}" in exc.value.message
    assert words in exc.value.message


# ---------------------------------------------------------------- variables


def vt(**variables: Any) -> tpl.Template:
    return tpl.parse_template(minimal(
        title="{{ thing }} for {{ who }}",
        variables=variables or [
            {"name": "thing", "default": "Widget"},
            {"name": "who", "required": True, "description": "who it is for"},
        ],
        phases=[{"name": "p", "tasks": [{"title": "Build {{ thing }}",
                                         "description": "For {{ who }} ({{ title }})"}]}],
    ), "v.yaml", name="v")


def test_variables_defaults_and_values() -> None:
    spec = tpl.render(vt(), variables={"who": "ops"}, start=START)
    assert spec["title"] == "Widget for ops"
    assert spec["tasks"][0]["title"] == "Build Widget"
    assert spec["tasks"][0]["description"] == "For ops (Widget for ops)"
    assert spec["template"]["variables"] == {"thing": "Widget", "who": "ops"}
    spec = tpl.render(vt(), variables={"who": "ops", "thing": 42}, start=START)
    assert spec["title"] == "42 for ops"


def test_missing_required_variable_names_it() -> None:
    with pytest.raises(InvalidInput) as exc:
        tpl.render(vt(), start=START)
    assert "'who'" in exc.value.message and "who it is for" in exc.value.message
    with pytest.raises(InvalidInput, match="'version'"):
        tpl.render(tpl.get_template(None, "release"), start=START)
    with pytest.raises(InvalidInput, match="'who'"):
        tpl.render(vt(), variables={"who": "  "}, start=START)


def test_unknown_given_variable_is_refused() -> None:
    with pytest.raises(InvalidInput) as exc:
        tpl.render(vt(), variables={"who": "x", "thnig": "y"}, start=START)
    assert "'thnig'" in exc.value.message
    assert exc.value.hint and "did you mean thing" in exc.value.hint


def test_values_are_literal_not_rescanned() -> None:
    spec = tpl.render(vt(), variables={"who": "{{ thing }}"}, start=START)
    assert spec["title"] == "Widget for {{ thing }}"


def test_value_with_control_character_is_refused() -> None:
    with pytest.raises(InvalidInput):
        tpl.render(vt(), variables={"who": "a\nb"}, start=START)


@pytest.mark.parametrize("text, words", [
    ("Do {{ nope }}", "unknown placeholder {{ nope }}"),
    ("Do {{ 1bad }}", "malformed placeholder"),
    ("Do {{ open", "unbalanced"),
    ("Do }} x", "unbalanced"),
])
def test_bad_placeholders_in_a_template_name_file_and_field(text: str, words: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        tpl.parse_template(minimal(phases=[{"name": "p", "tasks": [{"title": text}]}]),
                           "bad.yaml", name="bad")
    assert "bad.yaml" in exc.value.message
    assert "phases[1].tasks[1].title" in exc.value.message
    assert words in exc.value.message


def test_title_pattern_cannot_use_title() -> None:
    with pytest.raises(InvalidInput, match=r"title: unknown placeholder \{\{ title \}\}"):
        tpl.parse_template(minimal(title="{{ title }}!"), "t.yaml", name="t")


def test_substitute_directly() -> None:
    assert tpl.substitute("a {{x}} {{ x }}", {"x": "1"}) == "a 1 1"
    with pytest.raises(InvalidInput, match="unknown placeholder"):
        tpl.substitute("{{ y }}", {"x": "1"}, "here")


@pytest.mark.parametrize("variables, words", [
    ([{"name": "title"}], "reserved"),
    ([{"name": "bad name"}], "not a variable name"),
    ([{"name": "a"}, {"name": "a"}], "declared twice"),
    ([{"name": "a", "colour": 1}], "unknown field(s) colour"),
    ([{"name": "a", "required": "yes"}], "not true or false"),
    ("nope", "must be a list or a mapping"),
])
def test_bad_variables(variables: Any, words: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        tpl.parse_template(minimal(variables=variables), "v.yaml", name="v")
    assert "v.yaml: variables" in exc.value.message
    assert words in exc.value.message


def test_variables_as_a_mapping() -> None:
    t = tpl.parse_template(minimal(variables={"a": "x", "b": {"required": True}}), "v", name="v")
    assert [(v.name, v.default, v.required) for v in t.variables] == [("a", "x", False),
                                                                      ("b", None, True)]


# ------------------------------------------------------------ schema checks


@pytest.mark.parametrize("change, field, words", [
    ({"duration": "ten"}, "duration", "not a whole number"),
    ({"duration": -1}, "duration", "out of range"),
    ({"priority": "urgent"}, "priority", "not one of"),
    ({"colour": "red"}, "template", "unknown field(s) colour"),
    ({"descripton": "x"}, "template", "did you mean description"),
    ({"phases": []}, "phases", "non-empty list"),
    ({"phases": "build"}, "phases", "must be a list"),
    ({"phases": [{"name": "p", "tasks": []}]}, "phases[1].tasks", "non-empty list"),
    ({"phases": [{"name": "p", "tasks": [{"title": ""}]}]}, "phases[1].tasks[1].title",
     "empty"),
    ({"phases": [{"name": "p", "tasks": [{"title": "t", "estimate": "lots"}]}]},
     "phases[1].tasks[1].estimate", "not a number"),
    ({"phases": [{"name": "p", "tasks": ["a"]}, {"name": "P", "tasks": ["b"]}]},
     "phases[2].name", "listed twice"),
    ({"phases": [{"name": "p", "days": 9, "tasks": ["a"]}]}, "phases",
     "add up to 9, more than the duration (5)"),
    ({"requires": {"phases": ["zzz"]}}, "requires.phases[1]", "not a phase"),
    ({"requires": {"min_task": 3}}, "requires", "did you mean min_tasks"),
    ({"name": "Other"}, "name", "does not match the file name"),
])
def test_schema_errors_name_the_field(change: dict[str, Any], field: str, words: str) -> None:
    data = minimal()
    data.update(change)
    with pytest.raises(InvalidInput) as exc:
        tpl.parse_template(data, "/x/t.yaml", name="t")
    assert exc.value.message.startswith(f"/x/t.yaml: {field}: "), exc.value.message
    assert words in str(exc.value)  # the message or its hint


def test_missing_fields() -> None:
    for key in ("description", "duration", "phases"):
        data = minimal()
        del data[key]
        with pytest.raises(InvalidInput, match=f"t.yaml: {key}: "):
            tpl.parse_template(data, "t.yaml", name="t")


def test_phase_days_share_what_is_left() -> None:
    t = tpl.parse_template(minimal(duration=10, phases=[
        {"name": "a", "days": 3, "tasks": ["x"]},
        {"name": "b", "tasks": ["y"]},
        {"name": "c", "tasks": ["z"]},
    ]), "t", name="t")
    assert [p.days for p in t.phases] == [3, 3, 4]
    assert [task.title for _, task in t.tasks] == ["x", "y", "z"]  # plain strings are titles


def test_requires_forms() -> None:
    t = tpl.parse_template(minimal(requires={"phases": True, "success_criteria": True,
                                             "min_tasks": 2, "estimates": True}), "t", name="t")
    assert t.requires.phases == ("one", "two")
    assert t.requires.success_criteria == 1 and t.requires.estimates
    t = tpl.parse_template(minimal(requires={"phases": ["TWO"]}), "t", name="t")
    assert t.requires.phases == ("two",)


# ----------------------------------------------------------- user templates

USER_YAML = """\
description: Our API flavour
title: "{{ service }} service"
category: infrastructure
duration: 3
variables:
  - name: service
    required: true
phases:
  - name: build
    tasks:
      - title: Build {{ service }}
        estimate: 2
        skills: [go]
success_criteria: ["{{ service }} runs"]
requires:
  phases: true
  due_date: true
"""


def test_user_template_overrides_builtin(tmp_path: Path) -> None:
    write(user_dir(tmp_path), "api", USER_YAML)
    t = tpl.get_template(None, "api")
    assert not t.builtin and t.source.endswith("api.yaml")
    assert t.category == "infrastructure"
    spec = tpl.render(t, variables={"service": "billing"}, start=START)
    assert spec["title"] == "billing service"
    assert spec["due_date"] == "2026-03-05"
    assert spec["tasks"] == [{"title": "Build billing", "description": "", "estimate": 2.0,
                              "skills": ["go"], "depends_on": [], "phase": "build"}]
    listed = {x.name: x for x in tpl.list_templates(None)}
    assert listed["api"].category == "infrastructure"
    assert set(EXPECTED) <= set(listed)


def test_project_template_beats_user_template(tmp_path: Path) -> None:
    write(user_dir(tmp_path), "mine", USER_YAML)
    write(project_dir(tmp_path), "mine", USER_YAML.replace("duration: 3", "duration: 4"))
    repo = tmp_path / "repo"
    assert tpl.get_template(repo, "mine").duration == 4
    assert tpl.get_template(repo / ".milestones", "mine").duration == 4  # Project.root works
    assert tpl.get_template(None, "mine").duration == 3
    names = [t.name for t in tpl.list_templates(repo)]
    assert names == sorted(names) and names.count("mine") == 1
    assert next(t for t in tpl.list_templates(repo) if t.name == "mine").duration == 4


def test_user_template_round_trips_through_plan_many(tmp_path: Path) -> None:
    write(project_dir(tmp_path), "mine", USER_YAML)
    project, _ = Project.init(tmp_path / "repo")
    t = tpl.get_template(project.root, "mine")
    [m] = project.plan_many([tpl.render(t, variables={"service": "auth"}, start=START)])
    assert m.template is not None and m.template["name"] == "mine"
    assert tpl.check_requirements(m.to_dict(), t) == []


def test_broken_user_template_is_reported_with_file(tmp_path: Path) -> None:
    path = write(project_dir(tmp_path), "broken", "description: [unclosed\n")
    with pytest.raises(InvalidInput) as exc:
        tpl.list_templates(tmp_path / "repo")
    assert str(path) in exc.value.message
    with pytest.raises(InvalidInput, match=r"broken\.yaml"):
        tpl.get_template(tmp_path / "repo", "broken")
    # Other templates are still reachable by name.
    assert tpl.get_template(tmp_path / "repo", "bugfix").builtin


def test_user_template_field_error_names_file_and_field(tmp_path: Path) -> None:
    path = write(user_dir(tmp_path), "bad", USER_YAML.replace("estimate: 2", "estimate: -3"))
    with pytest.raises(InvalidInput) as exc:
        tpl.get_template(None, "bad")
    assert exc.value.message.startswith(f"{path}: phases[1].tasks[1].estimate: ")


def test_empty_and_badly_named_template_files(tmp_path: Path) -> None:
    d = project_dir(tmp_path)
    write(d, "empty", "")
    with pytest.raises(InvalidInput, match=r"empty\.yaml: the file is empty"):
        tpl.get_template(tmp_path / "repo", "empty")
    (d / "empty.yaml").unlink()
    write(d, "Bad Name", USER_YAML)
    with pytest.raises(InvalidInput, match="not a template name"):
        tpl.list_templates(tmp_path / "repo")
    assert tpl.get_template(tmp_path / "repo", "api").builtin  # lookups by name still work
    with pytest.raises(NotFound):
        tpl.get_template(tmp_path / "repo", "bad name")


def test_yaml_and_yml_of_one_name_conflict(tmp_path: Path) -> None:
    d = project_dir(tmp_path)
    write(d, "dup", USER_YAML)
    (d / "dup.yml").write_text(USER_YAML, encoding="utf-8")
    with pytest.raises(InvalidInput, match="also defined"):
        tpl.list_templates(tmp_path / "repo")
    with pytest.raises(InvalidInput, match="also defined"):
        tpl.get_template(tmp_path / "repo", "dup")


def test_config_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert tpl.user_config_dir() == tmp_path / "home" / ".config" / "milestone" / "templates"
    assert tpl.user_config_dir({"XDG_CONFIG_HOME": "/xdg"}) == Path(
        "/xdg/milestone/templates")
    assert tpl.user_config_dir({"XDG_CONFIG_HOME": "relative"}).parts[-3:] == (
        ".config", "milestone", "templates")


def test_unknown_template_suggests_close_names() -> None:
    with pytest.raises(NotFound) as exc:
        tpl.get_template(None, "kiro")
    assert "'kiro'" in exc.value.message
    assert exc.value.hint and "kiro-spec" in exc.value.hint.split("?")[0]
    with pytest.raises(NotFound):
        tpl.get_template(None, "../../etc/passwd")
    assert tpl.get_template(None, "BugFix").name == "bugfix"


# ------------------------------------------------------------- requirements


def planned(tmp_path: Path, name: str = "team") -> tuple[Project, md.Milestone, tpl.Template]:
    project, _ = Project.init(tmp_path)
    t = tpl.get_template(None, name)
    [m] = project.plan_many([tpl.render(t, start=START, variables=NEEDS.get(name))])
    return project, m, t


def test_requirements_met_then_broken(tmp_path: Path) -> None:
    _, m, t = planned(tmp_path)
    d = m.to_dict()
    assert tpl.check_requirements(d, t) == []
    d["due_date"] = None
    d["success_criteria"] = []
    for task in d["tasks"]:
        if task["phase"] == "review":
            task["status"] = "skipped"
    d["tasks"][0]["estimate"] = None
    problems = tpl.check_requirements(d, t)
    whats = [p.what for p in problems]
    assert whats == ["phase review", "due_date", "success_criteria", "estimates"]
    for p in problems:
        assert m.id in p.message and "team" in p.message and p.hint
        assert set(p.to_dict()) == {"what", "message", "hint"}
    assert "task-1" in problems[-1].message


def test_requirements_min_tasks_and_finished_tasks(tmp_path: Path) -> None:
    _, m, t = planned(tmp_path, "bugfix")
    d = m.to_dict()
    d["tasks"] = [x for x in d["tasks"] if x["phase"] in ("reproduce", "verify")][:2]
    problems = tpl.check_requirements(d, t)
    assert [p.what for p in problems] == ["phase verify", "tasks"]
    assert "at least 3" in problems[-1].message
    # Estimates only matter for open tasks.
    team = tpl.get_template(None, "team")
    d2 = {"id": "milestone-009", "due_date": "2026-01-01", "success_criteria": ["x"],
          "tasks": [{"id": f"task-{i}", "phase": p.name, "status": "done", "estimate": None}
                    for i, p in enumerate(team.phases * 2, 1)]}
    assert tpl.check_requirements(d2, team) == []


def test_requirements_on_a_real_edit(tmp_path: Path) -> None:
    project, m, t = planned(tmp_path, "kiro-spec")
    design = [task.id for task in m.tasks if task.phase == "design"]
    for tid in design:
        project.skip_task(f"{m.id}/{tid}")
    problems = tpl.check_requirements(project.milestone(m.id).to_dict(), t)
    assert [p.what for p in problems] == ["phase design"]

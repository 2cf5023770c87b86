"""The PyYAML-free writer gives PyYAML's text exactly, or steps aside (None)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from milestones import model as md
from milestones.storage import yamlfast, yamlio


def pyyaml(data: dict[str, Any]) -> str:
    return yamlio._pyyaml_dump(data)


def same_or_none(data: dict[str, Any]) -> str | None:
    fast = yamlfast.dump(data)
    if fast is not None:
        assert fast == pyyaml(data), data
    return fast


TRICKY = [
    "", " ", "a", "yes", "Yes", "YES", "yEs", "no", "y", "n", "on", "Off", "null", "Null", "NULL",
    "nULL", "~", "true", "False", "2026-11-25", "2026-11-25T06:02:13Z", "2026-1-5", "1.5", "1",
    "0x1F", "1_000", "+1", "-1", ".5", ".inf", "<<", "=", "- a", "-a", "a -", "a: b", "a:b",
    "a:", ":a", ": a", "?", "? a", "?a", "a #b", "a#b", "#a", "---", "---x", "...", "...x",
    " lead", "trail ", "it's", "'q'", '"q"', "%x", "@x", "`x", "!x", "&x", "*x", "|x", ">x",
    "[x]", "{x}", "a,b", "a[b]", "tab\there", "line\nbreak", "line\u2028sep", "café",
    "em — dash", "a  b",
    "Milestone 12: feature area 12", "Task 3 of milestone 12: implement part 3",
    "1.1", "1.1.2", "1 Write docs", "2nd pass", "12:30", "1:30:15.5", "0o7", "07", "09",
    "1e5", "1.0e+5", "2026-1-2 3:04:05", "-.Inf", "+", "1.", "1-2", "3/2",
]
words = st.one_of(
    st.sampled_from(TRICKY),
    st.text(alphabet=st.sampled_from(list("abcXYZ019 :#-'\"?!&*,[]{}|>%@`.~<=+_/()\té\n")),
            max_size=12),
    st.text(alphabet=st.sampled_from(list("abcdefgh ")), min_size=80, max_size=110),
)
scalars = st.one_of(
    words,
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
keys = st.one_of(
    st.sampled_from(["id", "title", "tasks", "depends_on", "x_1", "Key", "on", "null", "y"]),
    words,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=12,
)


# Mostly what the fast writer handles, so most examples take its path.
ascii_words = st.one_of(
    st.sampled_from([w for w in TRICKY if w.isascii() and w.isprintable()]),
    st.text(alphabet=st.sampled_from(list("abcXYZ019 :#-'\"?!&*,[]{}|>%@`.~<=+_/()")),
            min_size=1, max_size=12),
    st.from_regex(r"[a-z][a-z ]{0,20}(: | #|:|#| -|')?[a-z ]{0,20}", fullmatch=True),
)
plain_values = st.recursive(
    st.one_of(ascii_words, st.integers(), st.floats(-1e6, 1e6), st.booleans(), st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), inner,
                        max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, min_size=1, max_size=6))
def test_same_text_as_pyyaml_or_none(data: dict[str, Any]) -> None:
    same_or_none(data)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.from_regex(r"[a-zA-Z_][a-z0-9_]{0,10}", fullmatch=True),
                       plain_values, min_size=1, max_size=6))
def test_same_text_as_pyyaml_on_its_own_ground(data: dict[str, Any]) -> None:
    same_or_none(data)


@settings(max_examples=300)
@given(st.lists(st.text(alphabet="ab :'#", min_size=1, max_size=4), min_size=1, max_size=30))
def test_line_width_edge(parts: list[str]) -> None:
    text = "x" + "".join(parts)
    for pad in range(80, 104):
        same_or_none({"title": (text + "y" * pad)[:pad]})
        same_or_none({"tasks": [{"id": "task-1", "title": (text + "z" * pad)[:pad]}]})


def test_a_milestone_the_tool_writes_takes_the_fast_path() -> None:
    m = md.Milestone(
        id="milestone-012",
        title="Milestone 12: feature area 12",
        description="Deliver feature area 12.",
        status="in_progress",
        tags=["area2", "bench"],
        depends_on=["milestone-003"],
        due_date="2026-12-01",
        created_at="2026-11-25T06:02:13Z",
        updated_at="2026-11-25T06:02:13Z",
        deliverables=[{"name": "docs", "done": False}],
        completion={"lessons": ["it's fine"], "time_spent": 3, "ratio": 0.5},
    )
    for i in range(1, 4):
        m.tasks.append(
            md.Task(
                id=f"task-{i}",
                title=f"Task {i} of milestone 12: implement part {i}",
                estimate=1.5 if i == 2 else i,
                depends_on=["task-1"] if i > 1 else [],
                status="done" if i == 1 else "todo",
                progress=100 if i == 1 else 0,
                started_at="2026-11-25T06:02:13Z" if i == 1 else None,
                completed_at="2026-11-25T06:02:13Z" if i == 1 else None,
                skills=["python"],
            )
        )
    data = yamlio.prune(m.to_dict())
    assert same_or_none(data) is not None
    assert yamlio.dump_fast(m.to_dict()) == f"{yamlio.SCHEMA_COMMENT}\n{pyyaml(data)}"


def test_what_it_does_not_know_goes_to_pyyaml() -> None:
    for data in (
        {"title": "café"},
        {"description": "two\nlines"},
        {"title": "x" * 120},
        {"estimate": 1e20},
        {"n": float("inf")},
        {"m": [[1, 2]]},
        {1: "non-string key"},
        {"title": ""},
    ):
        assert yamlfast.dump(data) is None, data
        assert yamlio.dump_fast(data).endswith(pyyaml(data))


def test_strings_that_start_like_numbers_take_the_fast_path() -> None:
    """A Kiro spec's ``spec_ref: '1.1'``, a title "2nd pass": quoted where PyYAML's
    resolvers would read a number, a date or a merge key, plain otherwise."""
    for text in ("2026", "1.1", "1.1.2", "2nd pass", "1 Write docs", "12:30", "0x1F",
                 "2026-11-25", "1e5", "07", "-x", "<<", "="):
        data = {"spec_ref": text}
        assert yamlfast.dump(data) == pyyaml(data), text


def test_a_milestone_written_again_reuses_its_tasks_text_and_only_theirs() -> None:
    m = md.Milestone.from_dict({"id": "milestone-001", "title": "Cache", "tasks": [
        {"id": f"task-{i}", "title": f"step {i}", "estimate": 1} for i in range(1, 6)]})
    d = m.to_dict()
    first = yamlio.dump_fast(d, reuse=True)
    assert first == f"{yamlio.SCHEMA_COMMENT}\n{pyyaml(yamlio.prune(d))}"
    # The next snapshot shares the unchanged task records and replaces the changed one.
    after = {**d, "tasks": [*d["tasks"][:2], {**d["tasks"][2], "status": "done"},
                            *d["tasks"][3:]]}
    second = yamlio.dump_fast(after, reuse=True)
    assert second == f"{yamlio.SCHEMA_COMMENT}\n{pyyaml(yamlio.prune(after))}"
    assert second.count("status: done") == 1
    # A record changed in place (nothing should, but) is rendered again, not served stale.
    after["tasks"][0]["title"] = "renamed in place"
    third = yamlio.dump_fast(after, reuse=True)
    assert "renamed in place" in third
    assert third == f"{yamlio.SCHEMA_COMMENT}\n{pyyaml(yamlio.prune(after))}"


milestone_like = st.fixed_dictionaries(
    {"id": st.just("milestone-001"), "title": words, "status": st.just("planned")},
    optional={
        "description": words,
        "tags": st.lists(words, max_size=3),
        "kiro": st.dictionaries(st.sampled_from(["spec", "tasks_source", "path"]), values,
                                max_size=3),
        "tasks": st.lists(st.fixed_dictionaries(
            {"id": st.sampled_from(["task-1", "task-2"]), "title": words,
             "status": st.just("todo")},
            optional={"description": words, "spec_ref": words,
                      "depends_on": st.lists(words, max_size=2)}), max_size=4),
    })


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(milestone_like)
def test_a_file_written_in_pieces_is_pyyaml_s_text(data: dict[str, Any]) -> None:
    """Keys and tasks yamlfast cannot write (a multi-line spec text, a title in
    another script) go to PyYAML one by one; the pieces join into PyYAML's text of
    the whole file."""
    assert yamlio.dump_fast(data) == f"{yamlio.SCHEMA_COMMENT}\n{pyyaml(yamlio.prune(data))}"


def test_a_multi_line_spec_text_leaves_the_rest_on_the_fast_path() -> None:
    data = {"id": "milestone-001", "title": "Spec", "status": "planned",
            "kiro": {"spec": "big", "tasks_source": "# Plan\n\n- [ ] 1. Do\n"},
            "tasks": [{"id": f"task-{i}", "title": f"{i}. Do", "status": "todo",
                       "spec_ref": f"{i}.1"} for i in range(1, 4)]}
    assert yamlio.dump_fast(data) == f"{yamlio.SCHEMA_COMMENT}\n{pyyaml(yamlio.prune(data))}"

"""Parsers on hostile input: references and YAML raise InvalidInput or nothing."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from prop_strategies import TRICKY_TITLES, examples, milestones

from milestones import model as md
from milestones.errors import InvalidInput
from milestones.model import events as ev
from milestones.model import refs
from milestones.storage import yamlio

digits = st.text("0123456789", min_size=1, max_size=30)
ref_like = st.one_of(
    st.text(max_size=20),
    st.tuples(
        st.sampled_from(["", "m", "M", "milestone-", "milestone", "task-", "task", "t", "T", "-"]),
        st.one_of(digits, st.text("0123456789٣۳߃", min_size=1, max_size=4)),
        st.sampled_from(["", " ", "\n", "x", "/2", "-", "\t"]),
    ).map("".join),
    st.integers(-5, 10**6).map(str),
)


@settings(max_examples=examples(400), deadline=None)
@given(ref_like)
@example("1" * 5000)
@example("milestone-" + "9" * 4400)
@example("task-" + "9" * 4400)
@example("0" * 5000 + "7")
@example("task-" + "0" * 5000 + "7")
def test_reference_parsers_raise_only_invalid_input(text: str) -> None:
    for parse, id_re, number in (
        (refs.parse_milestone, md.MILESTONE_ID_RE, md.milestone_number),
        (refs.parse_task, md.TASK_ID_RE, md.task_number),
    ):
        try:
            out = parse(text)
        except InvalidInput:
            continue
        # Whatever is accepted comes out as a canonical id that parses to itself.
        assert id_re.fullmatch(out), out
        assert out.isascii()
        assert parse(out) == out
        assert number(out) >= 0
    for number in (md.milestone_number, md.task_number):
        with contextlib.suppress(InvalidInput):
            number(text)


@settings(max_examples=examples(200), deadline=None)
@given(st.integers(0, 10**9))
def test_ids_round_trip(n: int) -> None:
    mid = md.milestone_id(n)
    assert md.milestone_number(mid) == n
    for form in (str(n), mid, f"m{n}", f"M{n}", f"milestone{n}", f"  {n} ", f"0{n}"):
        assert refs.parse_milestone(form) == mid, form
    tid = f"task-{n}"
    assert md.task_number(tid) == n
    for form in (str(n), tid, f"t{n}", f"TASK-{n}", f"task{n}", f" {tid}\n"):
        assert refs.parse_task(form) == tid, form
    other = md.milestone_id(n + 1)
    snaps = {mid: {"title": "x", "tasks": [{"id": tid, "title": "t"}]}, other: {"tasks": []}}
    assert refs.resolve_task(f"{n}/{n}", snaps, None) == (mid, tid)
    assert refs.resolve_task(str(n), snaps, mid) == (mid, tid)


yaml_fragments = st.sampled_from(
    [
        "key: value\n", "- item\n", "  nested: [1, 2]\n", "a: {b: c}\n", "? complex\n", ": v\n",
        "&a x\n", "*a\n", "<<: {a: 1}\n", "!!binary aGVsbG8=\n", "!!set {a, b}\n",
        "!!timestamp x\n", "!!python/object:os.system x\n", "d: 2026-02-30\n",
        "t: 2026-01-01 10:00:00 +99:00\n", "t: 0001-01-01 00:00:00 +05:00\n",
        "t: 9999-12-31 23:59:59 -05:00\n", "t: 2026-01-01t10:00:00.123456789z\n",
        "n: 1_000\n", "n: 0x_1\n", "n: 1e99999\n", "n: -.inf\n", ".nan: 1\n", "1: a\n",
        "true: x\n", "~: y\n", "%YAML 1.1\n---\n", "--- |\n  text\n", "...\n", "\t\n",
        "'unterminated\n", '"\\uD800"\n', '"\\x00"\n', "\ufeff", "\x85", "\u2028", "[" * 50,
        "{" * 30, "]" * 3, "key: 'a''b'\n", "k: !!int 09\n", "k: !!float x\n", "k: !!bool maybe\n",
        "k: !!str\n", "k: !!map []\n", "k: !!seq {}\n", "k: !!null x\n", "? [a]\n: b\n",
        "? {a: 1}\n: b\n", "k: 1\nk: 2\n", "1: a\n1.0: b\n", "true: a\n1: b\n",
    ]
)
TAGS = ["int", "float", "bool", "null", "str", "binary", "timestamp", "set", "omap", "pairs",
        "seq", "map", "merge", "value", "yaml"]
tagged = st.tuples(
    st.sampled_from(["k: ", "- ", "? ", ""]),
    st.sampled_from(TAGS).map(lambda t: f"!!{t}"),
    st.sampled_from(["", " ", " 08", " 0b2", " x", " -", " 1e", " 1:2:3", " [1]", " {a: 1}",
                     " 2026-02-30", " =", " <<", " ~", " 0x", " .", " _"]),
    st.sampled_from(["\n", ""]),
).map("".join)
yaml_texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(yaml_fragments, tagged, st.text(max_size=5)), max_size=8).map("".join),
)


@settings(max_examples=examples(500), deadline=None)
@given(yaml_texts)
@example("[" * 20_000)
@example("- " * 20_000)
@example("a:\n" + "".join(" " * i + "b:\n" for i in range(1, 3000)))
@example("t: 0001-01-01 00:00:00 +05:00\n")
@example("t: 9999-12-31 23:59:59 -05:00\n")
def test_load_text_raises_only_invalid_input(text: str) -> None:
    try:
        data = yamlio.load_text(text, "f.yaml")
    except InvalidInput as exc:
        assert "f.yaml" in exc.message
        return
    ev.canonical(data)  # what loads is plain JSON-able data


TRICKY_EXTRAS = st.dictionaries(
    st.sampled_from(["x_" + t for t in TRICKY_TITLES[:10]] + list(TRICKY_TITLES[:20])),
    st.sampled_from([*TRICKY_TITLES, None, "", 0, 1.5, True, [], {}]),
    max_size=3,
)


def _reload(d: dict[str, Any]) -> dict[str, Any]:
    text = yamlio.dump_fast(d)
    data = yamlio.load_text(text, "f.yaml")
    assert isinstance(data, dict)
    out: dict[str, Any] = md.Milestone.from_dict(data).to_dict()
    return out


@settings(max_examples=examples(200), deadline=None)
@given(milestones())
def test_dump_fast_then_load_gives_the_milestone_back(m: md.Milestone) -> None:
    d = m.to_dict()
    assert ev.canonical(_reload(d)) == ev.canonical(d)


@settings(max_examples=examples(150), deadline=None)
@given(st.sampled_from(TRICKY_TITLES), st.lists(st.sampled_from(TRICKY_TITLES), max_size=3),
       TRICKY_EXTRAS)
def test_titles_that_look_like_other_types_stay_text(
    title: str, task_titles: list[str], extra: dict[str, Any]
) -> None:
    known = set(md.MILESTONE_FIELDS)
    d = md.Milestone.from_dict(
        {
            "id": "milestone-004",
            "title": title,
            "tags": task_titles,
            "tasks": [
                {"id": f"task-{i}", "title": t, "assignee": t} for i, t in enumerate(task_titles, 1)
            ],
            **{k: v for k, v in extra.items() if k not in known},
        }
    ).to_dict()
    assert ev.canonical(_reload(d)) == ev.canonical(d)
    if d["title"] == title:
        assert _reload(d)["title"] == title


@settings(max_examples=examples(60), deadline=None)
@given(milestones(), milestones())
def test_dump_roundtrip_writes_the_new_state(old: md.Milestone, new: md.Milestone) -> None:
    """Writing a new state into a person's file keeps the data exact."""
    b = new.to_dict()
    old_text = "# my notes\n" + yamlio.dump_fast(old.to_dict())
    text = yamlio.dump_roundtrip(old_text, b)
    data = yamlio.load_text(text, "f.yaml")
    assert ev.canonical(md.Milestone.from_dict(data).to_dict()) == ev.canonical(b)
    free_form = [new.extra, new.deliverables, new.risks, new.completion]
    free_form += [getattr(new, f, None) for f in ("template", "kiro")]
    free_form += [t.extra for t in new.tasks]
    if not any(free_form):
        # Free-form data (odd keys, floats) may force a fresh write; our fields keep the comment.
        assert text.startswith("# my notes\n")

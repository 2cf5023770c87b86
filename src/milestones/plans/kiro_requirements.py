"""Kiro requirements.md, read: acceptance criteria as ``N.M`` ids, and the EARS check.

Each criterion keeps its requirement's title and user story; ``is_ears`` tells
whether a criterion follows one of the EARS patterns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput
from .kiro_tasks import FENCE, check_number, indent_width, text_lines

_HEADING = re.compile(r"^ {0,3}(?P<level>#{1,6})(?:[ \t]+(?P<text>.*?))?[ \t#]*$")
_REQ_HEAD = re.compile(r"^Requirement\s+(?P<n>[0-9]+)\b\s*[:：.\-–—]?\s*(?P<title>.*)$", re.I)
_AC_HEAD = re.compile(r"^Acceptance\s+Criteria\b", re.IGNORECASE)
_STORY = re.compile(r"^[*_]*\s*User\s+Story\s*[*_]*\s*:\s*[*_]*\s*(?P<story>.*?)\s*$", re.I)
_CRITERION = re.compile(r"^(?P<indent>[ \t]*)(?:(?P<n>[0-9]+)[.)]|[-*+])[ \t]+(?P<text>\S.*?)\s*$")

_SHALL = r"\bshall\b\s+\S"
_EARS = (
    re.compile(rf"^the\s+\S.*?{_SHALL}", re.IGNORECASE | re.DOTALL),  # ubiquitous
    re.compile(rf"^when\b.+?\bthe\s+\S.*?{_SHALL}", re.IGNORECASE | re.DOTALL),  # event
    re.compile(rf"^when\b.+?\bthen\b.+?{_SHALL}", re.IGNORECASE | re.DOTALL),  # Kiro event
    re.compile(rf"^while\b.+?{_SHALL}", re.IGNORECASE | re.DOTALL),  # state
    re.compile(rf"^if\b.+?\bthen\b.+?{_SHALL}", re.IGNORECASE | re.DOTALL),  # unwanted
    re.compile(rf"^where\b.+?{_SHALL}", re.IGNORECASE | re.DOTALL),  # optional feature
)


@dataclass(frozen=True)
class Requirement:
    """One acceptance criterion: requirement N, criterion M -> id ``N.M``."""

    id: str
    requirement: str
    text: str
    ears: bool
    line: int
    title: str = ""
    story: str | None = None


# ----------------------------------------------------------- requirements.md


def parse_requirements_md(text: str, where: str = "requirements.md") -> list[Requirement]:
    """Every acceptance criterion, as ``N.M`` ids with its requirement's user story."""
    out: list[Requirement] = []
    seen_reqs: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    req: str | None = None
    req_level = 0
    title = ""
    story: str | None = None
    story_open = False  # the user story may wrap onto the next lines
    in_ac = False
    cur: dict[str, Any] | None = None  # the criterion being read
    cur_indent = 0
    blank = False
    fence: str | None = None
    criteria: list[dict[str, Any]] = []

    def close() -> None:
        nonlocal cur
        if cur is not None:
            criteria.append(cur)
            cur = None

    def flush() -> None:
        close()
        for c in criteria:
            text_ = " ".join(c["text"])
            out.append(
                Requirement(
                    id=c["id"],
                    requirement=c["req"],
                    text=text_,
                    ears=is_ears(text_),
                    line=c["line"],
                    title=c["title"],
                    story=story,
                )
            )
        criteria.clear()

    for no, (line, _) in enumerate(text_lines(text), 1):
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        fenced = FENCE.match(line)
        if fenced:
            close()
            fence = fenced.group("fence")
            continue
        heading = _HEADING.match(line)
        if heading:
            close()
            story_open = False
            level = len(heading.group("level"))
            name = (heading.group("text") or "").strip().strip("*_").strip()
            head = _REQ_HEAD.match(name)
            if head:
                flush()
                n = str(int(check_number(head.group("n"), no, where)))
                if n in seen_reqs:
                    raise InvalidInput(
                        f"{where}:{no}: requirement {n} appears twice "
                        f"(first on line {seen_reqs[n]})",
                        hint="number each requirement once",
                    )
                seen_reqs[n] = no
                req, req_level, title, story = n, level, head.group("title").strip(), None
                story_open = in_ac = False
            elif _AC_HEAD.match(name):
                if req is None:
                    raise InvalidInput(
                        f"{where}:{no}: acceptance criteria before any `Requirement N` heading",
                        hint="put them under a heading like `### Requirement 1`",
                    )
                in_ac = True
            else:
                in_ac = False
                if req is not None and level <= req_level:
                    flush()
                    req = None
            blank = False
            continue
        if not stripped:
            blank = True
            story_open = story_open and story is None
            continue
        if req is not None and not in_ac:
            found = _STORY.match(stripped)
            if found and story is None:
                story, story_open = found.group("story") or None, True
            elif story_open:
                story = f"{story} {stripped}" if story else stripped
            continue
        if not in_ac or req is None:
            continue
        item = _CRITERION.match(line)
        if item and (cur is None or indent_width(item.group("indent")) <= cur_indent):
            close()
            if item.group("n") is not None:
                m = str(int(check_number(item.group("n"), no, where)))
            else:
                m = str(sum(1 for c in criteria if c["req"] == req) + 1)
            cid = f"{req}.{m}"
            if cid in seen_ids:
                raise InvalidInput(
                    f"{where}:{no}: acceptance criterion {cid} appears twice "
                    f"(first on line {seen_ids[cid]})",
                    hint="number the criteria of a requirement 1, 2, 3, …",
                )
            seen_ids[cid] = no
            cur = {"id": cid, "req": req, "text": [item.group("text")], "line": no, "title": title}
            cur_indent = indent_width(item.group("indent"))
        elif cur is not None and (not blank or indent_width(line) > cur_indent):
            cur["text"].append(stripped)
        blank = False
    flush()
    return out


def is_ears(text: str) -> bool:
    """True when ``text`` follows an EARS pattern (keywords in any case)."""
    plain = " ".join(text.replace("**", "").replace("__", "").split())
    return any(p.match(plain) for p in _EARS)

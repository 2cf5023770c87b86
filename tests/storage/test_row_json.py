"""Database rows are decoded by json for the first rows of a process, then by orjson:
both give the same values, including for what orjson refuses (json decides then)."""

from __future__ import annotations

import json

import pytest

from milestones.storage import sqlquery

ROWS = ['{"id":"task-1","title":"Ship ✓","estimate":2.5,"depends_on":[]}',
        '{"n":123456789012345678901234567890}', '{"x":NaN}', '"\\ud800"', "[]"]


@pytest.mark.parametrize("json_rows", [sqlquery.JSON_ROWS, 0], ids=["json", "orjson"])
def test_rows_decode_to_json_s_values(monkeypatch: pytest.MonkeyPatch, json_rows: int) -> None:
    monkeypatch.setattr(sqlquery, "_json_rows", json_rows)
    monkeypatch.setattr(sqlquery, "_orjson", None)
    for text in ROWS:
        got, want = sqlquery.loads(text), json.loads(text)
        assert got == want or (got != got and want != want)  # NaN is not equal to itself
        assert sqlquery.loads(text.encode()) == got or got != got
    with pytest.raises(ValueError):
        sqlquery.loads('{"broken": ')


def test_the_switch_comes_after_json_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlquery, "_json_rows", 2)
    monkeypatch.setattr(sqlquery, "_orjson", None)
    for _ in range(3):
        assert sqlquery.loads("[1]") == [1]
    assert sqlquery._orjson is not None

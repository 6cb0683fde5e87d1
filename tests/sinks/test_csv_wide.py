"""csv-wide in our own style: one row per session or participant, keyed result columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from aml_exportkit.errors import TemplateError
from aml_exportkit.tabular.table import read_exportkit_csv
from sinks.tabular_data import run


def _load(path: Path) -> tuple[list[str], list[dict[str, str | None]]]:
    header, rows = read_exportkit_csv(path)
    assert all(len(r) == len(header) for r in rows)  # every row has the whole header
    return header, [dict(zip(header, r, strict=True)) for r in rows]


SMALL = """
[[sinks]]
type = "csv-wide"
path = "w.csv"
columns.block = []
columns.session = ["id"]
columns.participant = ["id"]
columns.result = ["question_key", "given_response"]
columns.section = []
columns.song = []
[sinks.flatten]
include = ["decision_time"]
"""


def test_one_row_per_session_numbered_in_creation_order(tmp_path: Path) -> None:
    report = run(SMALL, tmp_path)
    header, rows = _load(tmp_path / "w.csv")
    assert report.outputs[0].rows == len(rows) == 3  # session 12 has no results, still a row
    assert header == [
        "session_id", "participant_id",
        "1.result_question_key", "1.result_given_response", "1.result_json.decision_time",
        "2.result_question_key", "2.result_given_response", "2.result_json.decision_time",
        "3.result_question_key", "3.result_given_response", "3.result_json.decision_time",
    ]  # fmt: skip
    by_session = {r["session_id"]: r for r in rows}
    # result 102 was created first, so it is number 1 in session 10
    assert by_session["10"]["1.result_given_response"] is None
    assert by_session["10"]["2.result_json.decision_time"] == "0.31099987030029297"
    assert by_session["10"]["3.result_given_response"] == ""
    assert by_session["11"]["1.result_given_response"] == "TIMEOUT"
    assert by_session["11"]["2.result_question_key"] is None
    assert all(v is None for k, v in by_session["12"].items() if k.startswith(("1.", "2.")))


def test_keyed_by_question_key_with_repeats(tmp_path: Path) -> None:
    run(SMALL + "[sinks.wide]\nkey_by = 'question_key'\n", tmp_path)
    header, rows = _load(tmp_path / "w.csv")
    assert "choice.result_given_response" in header
    assert "choice~2.result_given_response" in header
    assert "choice~3.result_given_response" in header
    assert "speed.result_given_response" in header
    assert len(rows) == 3


def test_one_row_per_participant(tmp_path: Path) -> None:
    text = SMALL.replace('columns.session = ["id"]', 'columns.session = ["id", "final_score"]')
    run(text + "[sinks.wide]\nrow_per = 'participant'\n", tmp_path)
    header, rows = _load(tmp_path / "w.csv")
    assert len(rows) == 2
    assert header[0] == "participant_id"
    assert "s1.session_id" in header
    assert "s2.session_id" in header
    assert "s1.1.result_given_response" in header
    p5 = next(r for r in rows if r["participant_id"] == "5")
    assert p5["s1.session_id"] == "10"
    assert p5["s2.session_id"] == "12"
    assert p5["s1.2.result_json.decision_time"] == "0.31099987030029297"


def test_profile_columns_per_row(tmp_path: Path) -> None:
    run(SMALL.replace("[sinks.flatten]", 'profile = "columns"\n[sinks.flatten]'), tmp_path)
    header, rows = _load(tmp_path / "w.csv")
    assert header.index("profile.msi_01") < header.index("1.result_question_key")
    assert {r["session_id"]: r["profile.age"] for r in rows} == {"10": "", "11": None, "12": ""}


def test_explode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"sinks\[0\].*explode"):
        run(SMALL.replace('include = ["decision_time"]', 'lists = "explode"'), tmp_path)


def test_header_even_for_an_empty_block(tmp_path: Path) -> None:
    run(SMALL, tmp_path, empty=True)
    header, rows = _load(tmp_path / "w.csv")
    assert header == ["session_id", "participant_id"]
    assert rows == []


def test_dashboard_style_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"sinks\[0\].*csv-long"):
        run('[[sinks]]\ntype = "csv-wide"\npath = "x.csv"\nstyle = "muscle-dashboard"\n', tmp_path)

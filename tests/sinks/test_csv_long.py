"""csv-long in our own style: columns, order, values read back, null vs empty, errors."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from aml_exportkit.errors import SinkError, TemplateError
from aml_exportkit.tabular.table import read_exportkit_csv
from sinks.tabular_data import T0, run, tables

BOTH = """
[[sinks]]
type = "csv-long"
path = "out.csv"
rows = "both"
session_json = "columns"
profile = "columns"
"""


def _load(path: Path) -> tuple[list[str], list[dict[str, str | None]]]:
    header, rows = read_exportkit_csv(path)
    return header, [dict(zip(header, r, strict=True)) for r in rows]


def test_one_row_per_trial_result_by_default(tmp_path: Path) -> None:
    report = run('[[sinks]]\ntype = "csv-long"\npath = "out.csv"\n', tmp_path)
    _, rows = _load(tmp_path / "out.csv")
    trial_results = [r for r in tables()[1] if r.session is not None]
    assert report.outputs[0].rows == len(rows) == len(trial_results) == 4
    assert {r["result_id"] for r in rows} == {"100", "101", "102", "103"}
    assert {r["result_kind"] for r in rows} == {"trial"}


def test_header_is_template_order_then_sorted_paths(tmp_path: Path) -> None:
    run(BOTH, tmp_path)
    header, _ = _load(tmp_path / "out.csv")
    fixed = header[: header.index("song_name") + 1]
    assert fixed == [
        "block_slug", "session_id", "session_started_at", "session_finished_at",
        "session_final_score", "participant_id", "participant_id_url",
        "participant_country_code", "result_id", "result_kind", "result_created_at",
        "result_question_key", "result_expected_response", "result_given_response",
        "result_score", "result_scoring_rule", "result_comment", "section_id", "section_tag",
        "section_group", "song_artist", "song_name",
    ]  # fmt: skip
    dynamic = header[len(fixed) :]
    assert dynamic == [
        "session_json", "session_json.experiment", "session_json.n",
        "profile.age", "profile.msi_01", "profile_score.age", "profile_score.msi_01",
        "result_json", "result_json.choices", "result_json.config.listen_first",
        "result_json.decision_time", "result_json.empty", "result_json.key\\.with\\.dots",
        "result_json.value", "result_json.ünï ♪",
    ]  # fmt: skip
    # the same data in another order gives the same header
    run(BOTH.replace("out.csv", "again.csv"), tmp_path)
    assert _load(tmp_path / "again.csv")[0] == header


def test_values_read_back_equal(tmp_path: Path) -> None:
    run(BOTH, tmp_path)
    _, rows = _load(tmp_path / "out.csv")
    by_id = {r["result_id"]: r for r in rows}
    first = by_id["100"]
    assert float(first["result_json.decision_time"] or "") == 0.31099987030029297
    assert float(by_id["101"]["result_json.decision_time"] or "") == 1e-300
    assert datetime.fromisoformat(first["session_started_at"] or "") == T0
    assert datetime.fromisoformat(by_id["103"]["session_started_at"] or "") == T0
    assert (first["session_started_at"] or "").endswith("+00:00")
    assert first["result_json.config.listen_first"] == "true"
    assert first["result_json.choices"] == '[{"value":"A"},{"value":"B"}]'
    assert first["song_artist"] == "Dvořák, A."
    assert first["song_name"] == 'Slavonic "No. 1"'
    assert by_id["103"]["result_comment"] == "line\nbreak"
    assert by_id["103"]["result_json.decision_time"] == "12345678901234567890"
    assert by_id["103"]["result_score"] == "-2.5"
    assert by_id["103"]["session_finished_at"] is None
    assert math.isclose(float(first["session_final_score"] or ""), 3.0)


def test_null_and_empty_string_stay_distinct(tmp_path: Path) -> None:
    run(BOTH, tmp_path)
    _, rows = _load(tmp_path / "out.csv")
    by_id = {r["result_id"]: r for r in rows}
    assert by_id["101"]["result_given_response"] == ""  # answered with ""
    assert by_id["102"]["result_given_response"] is None  # never answered
    assert by_id["100"]["result_json.empty"] == ""
    # a JSON null in a column that other rows lack: JSON text, so the two stay apart
    assert by_id["100"]["result_json.ünï ♪"] == "null"
    assert by_id["101"]["result_json.ünï ♪"] is None
    assert by_id["201"]["profile.age"] == ""
    raw = (tmp_path / "out.csv").read_bytes()
    assert b',"",' in raw


def test_rfc4180_utf8_crlf(tmp_path: Path) -> None:
    run(BOTH, tmp_path)
    raw = (tmp_path / "out.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    raw.decode("utf-8")
    assert raw.endswith(b"\r\n")
    assert raw.count(b"\r\n") == 1 + 7  # header + rows; the newline in a cell is quoted
    assert b'"line\nbreak"' in raw


def test_duckdb_reads_nulls_apart_from_empty_strings(tmp_path: Path) -> None:
    run(BOTH, tmp_path)
    rows = duckdb.sql(
        f"SELECT result_id, result_given_response FROM read_csv('{tmp_path / 'out.csv'}',"
        " header=true, allow_quoted_nulls=false, all_varchar=true) ORDER BY result_id"
    ).fetchall()
    assert dict(rows)["101"] == ""
    assert dict(rows)["102"] is None
    assert len(rows) == 7


def test_profile_rows_only(tmp_path: Path) -> None:
    run('[[sinks]]\ntype = "csv-long"\npath = "p.csv"\nrows = "profile"\n', tmp_path)
    _, rows = _load(tmp_path / "p.csv")
    assert [r["result_id"] for r in rows] == ["200", "201", "202"]
    assert all(r["session_id"] is None for r in rows)
    assert rows[2]["participant_id_url"] == "prolific-ü"


def test_flatten_rules_from_the_template(tmp_path: Path) -> None:
    text = """
[[sinks]]
type = "csv-long"
path = "f.csv"
columns.result = ["id"]
columns.session = []
columns.block = []
columns.participant = []
columns.section = []
columns.song = []
[sinks.flatten]
separator = "/"
lists = "index"
include = ["decision_time", "choices"]
exclude = ["choices[1]*"]
rename = { "result_json/decision_time" = "rt_s" }
"""
    run(text, tmp_path)
    header, rows = _load(tmp_path / "f.csv")
    assert header == ["result_id", "result_json/choices[0]/value", "rt_s"]
    assert rows[0]["rt_s"] == "0.31099987030029297"


def test_explode_gives_a_row_per_list_element(tmp_path: Path) -> None:
    text = """
[[sinks]]
type = "csv-long"
path = "e.csv"
columns.result = ["id"]
[sinks.flatten]
lists = "explode"
include = ["choices"]
"""
    run(text, tmp_path)
    _, rows = _load(tmp_path / "e.csv")
    mine = [r for r in rows if r["result_id"] == "100"]
    assert [(r["result_json.choices[#]"], r["result_json.choices.value"]) for r in mine] == [
        ("0", "A"),
        ("1", "B"),
    ]


def test_collision_message_names_both_origins(tmp_path: Path) -> None:
    text = """
[[sinks]]
type = "csv-long"
path = "c.csv"
columns.result = ["id", "comment"]
[sinks.prefix]
result = "result"
[sinks.flatten]
separator = "_"
include = ["value", "comment"]
rename = { "result_value" = "result_comment" }
"""
    with pytest.raises(SinkError, match=r"result_comment.*result 'comment'.*result_json 'value'"):
        run(text, tmp_path)


def test_header_even_when_nothing_is_selected(tmp_path: Path) -> None:
    text = '[[sinks]]\ntype = "csv-long"\npath = "n.csv"\n'
    report = run(text, tmp_path, empty=True)
    assert report.outputs[0].rows == 0
    header, rows = _load(tmp_path / "n.csv")
    assert header[:2] == ["block_slug", "session_id"]
    assert rows == []


def test_bad_option_names_its_key_path(tmp_path: Path) -> None:
    text = '[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n[sinks.flatten]\nlists = "rows"\n'
    with pytest.raises(TemplateError) as info:
        run(text, tmp_path)
    assert "sinks[0].flatten.lists" in str(info.value)
    assert "'explode'" in str(info.value)

"""The variable-name rules of the README."""

from __future__ import annotations

import re

import pytest
from exportkit_readstat.names import MAX_LENGTH, clean_name, variable_names


@pytest.mark.parametrize(
    ("column", "spss", "stata"),
    [
        ("session_id", "session_id", "session_id"),
        ("profile.msi_01", "profile_msi_01", "profile_msi_01"),
        ("01.result_score", "v01_result_score", "v01_result_score"),
        ("s1.choice~2.result_score", "s1_choice_2_result_score", "s1_choice_2_result_score"),
        ("café.crème", "cafe_creme", "cafe_creme"),
        ("with", "v_with", "v_with"),
        ("to", "v_to", "to"),
        ("str12", "str12", "v_str12"),
        ("_private", "v_private", "v_private"),
        ("", "v", "v"),
        ("二胡", "v", "v"),
    ],
)
def test_one_name(column: str, spss: str, stata: str) -> None:
    assert clean_name(column, "spss") == spss
    assert clean_name(column, "stata") == stata


@pytest.mark.parametrize("fmt", ["spss", "stata"])
def test_names_are_valid_and_distinct(fmt: str) -> None:
    columns = [
        "a.b",
        "a_b",
        "A_B",
        "x" * 80,
        "x" * 81,
        "x" * 82,
        "1",
        "v1",
        *[f"{n:03d}.result_json.audio_latency_ms" for n in range(1, 13)],
    ]
    names = variable_names(columns, fmt)  # type: ignore[arg-type]
    assert len({n.lower() for n in names}) == len(columns)
    for name in names:
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name), name
        assert len(name) <= MAX_LENGTH[fmt]  # type: ignore[index]
    # the first column keeps the clean name; later ones are numbered
    assert names[:3] == ["a_b", "a_b_2", "A_B_3"]
    assert names[6:8] == ["v1", "v1_2"]

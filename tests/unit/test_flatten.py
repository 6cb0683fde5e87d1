"""Flattening: pure functions, round trips (hypothesis), names, rules and collisions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aml_exportkit.flatten import (
    ColumnRegistry,
    Flattener,
    FlattenError,
    FlattenOptions,
    column_name,
    flatten,
    flatten_rows,
    iter_leaves,
    parse_column,
    unflatten,
    unflatten_rows,
)

KEYS = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["a.b", "with space", "ünï©ødé ♪", "", "x\\y", "[0]", "a[1]", "..", "__"]),
)
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=10,
)
SEPARATORS = st.sampled_from([".", "__", "/", " ", "→", "]"])
PREFIXES = st.sampled_from(["", "result_json", "p.q"])
MODES = st.sampled_from(["json", "index"])
DEPTHS = st.none() | st.integers(0, 3)
PATHS = st.lists(st.integers(0, 20) | KEYS, max_size=5).map(tuple)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, with key order and int/float/bool kept apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@given(PATHS, SEPARATORS, PREFIXES)
def test_column_names_parse_back_to_their_path(
    path: tuple[Any, ...], sep: str, prefix: str
) -> None:
    if not prefix and path[:1] == ("",):
        return  # documented: with no prefix, a leading empty key is invisible
    name = column_name(path, sep, prefix)
    assert parse_column(name, sep, prefix) == path


@given(JSON, SEPARATORS, st.sampled_from(["result_json", "p.q"]), MODES, DEPTHS)
def test_flatten_then_unflatten_gives_the_value_back(
    value: Any, sep: str, prefix: str, lists: Any, depth: int | None
) -> None:
    options = FlattenOptions(separator=sep, lists=lists, max_depth=depth)
    columns = flatten(value, options, prefix)
    assert _same(unflatten(columns, options, prefix), value)


@given(JSON, SEPARATORS, st.sampled_from(["r", "p.q"]))
def test_explode_then_unflatten_rows_gives_the_value_back(
    value: Any, sep: str, prefix: str
) -> None:
    options = FlattenOptions(separator=sep, lists="explode")
    rows = flatten_rows(value, options, prefix)
    assert rows
    assert _same(unflatten_rows(rows, options, prefix), value)


@given(st.lists(JSON, min_size=1, max_size=4), SEPARATORS, MODES)
def test_distinct_paths_never_share_a_column(values: list[Any], sep: str, lists: Any) -> None:
    options = FlattenOptions(separator=sep, lists=lists)
    owner: dict[str, tuple[Any, ...]] = {}
    for value in values:
        leaves = iter_leaves(value, options)
        for path, _ in leaves:
            name = column_name(path, sep, "r")
            assert owner.setdefault(name, path) == path
        # the sinks' Flattener claims every column in a registry, which raises on a clash
        flattener = Flattener(options, "r", "result_json", ColumnRegistry())
        (row,) = flattener.flatten(value)
        assert len(row) == len(leaves)


def test_keys_with_dots_spaces_and_unicode() -> None:
    value = {"a.b": 1, "a": {"b": 2}, "with space": {"ünï ♪": [True, None]}, "[x]": ""}
    columns = flatten(value, FlattenOptions(lists="index"), "j")
    assert columns == {
        "j.a\\.b": 1,
        "j.a.b": 2,
        "j.with space.ünï ♪[0]": True,
        "j.with space.ünï ♪[1]": None,
        "j.\\[x]": "",
    }
    assert unflatten(columns, FlattenOptions(lists="index"), "j") == value


def test_lists_modes() -> None:
    value = {"choices": [{"v": "A"}, {"v": "B"}], "n": 1}
    assert flatten(value, FlattenOptions(), "") == {"choices": [{"v": "A"}, {"v": "B"}], "n": 1}
    assert flatten(value, FlattenOptions(lists="index"), "") == {
        "choices[0].v": "A",
        "choices[1].v": "B",
        "n": 1,
    }
    assert flatten_rows(value, FlattenOptions(lists="explode"), "") == [
        {"choices[#]": 0, "choices.v": "A", "n": 1},
        {"choices[#]": 1, "choices.v": "B", "n": 1},
    ]


def test_empty_containers_and_null_are_kept() -> None:
    value = {"a": {}, "b": [], "c": None}
    assert flatten(value, FlattenOptions(lists="index")) == {"a": {}, "b": [], "c": None}
    assert flatten(None, FlattenOptions(), "p") == {"p": None}
    assert flatten({}, FlattenOptions(), "p") == {"p": {}}


def test_max_depth_keeps_the_rest_whole() -> None:
    value = {"config": {"a": {"b": 1}}, "x": 2}
    assert flatten(value, FlattenOptions(max_depth=1)) == {"config": {"a": {"b": 1}}, "x": 2}
    assert flatten(value, FlattenOptions(max_depth=2)) == {"config.a": {"b": 1}, "x": 2}
    assert flatten(value, FlattenOptions(max_depth=0), "all") == {"all": value}


def test_include_exclude_and_rename() -> None:
    value = {"config": {"a": 1, "b": 2}, "decision_time": 0.5, "form": {"x": 1}}
    options = FlattenOptions(
        include=("config", "decision_time"),
        exclude=("config.b",),
        rename={"r.decision_time": "rt_s"},
    )
    assert flatten(value, options, "r") == {"r.config.a": 1, "rt_s": 0.5}


def test_a_rename_onto_another_column_names_both_paths() -> None:
    options = FlattenOptions(rename={"a": "b"})
    with pytest.raises(FlattenError, match=r"'b'.*'a'.*'b'|'b'.*'b'.*'a'"):
        flatten({"a": 1, "b": 2}, options)


def test_two_origins_on_one_column_are_an_error_naming_both() -> None:
    registry = ColumnRegistry()
    registry.claim("result_score", "result", "score")
    flattener = Flattener(FlattenOptions(separator="_"), "result", "result_json", registry)
    with pytest.raises(FlattenError) as info:
        flattener.flatten({"score": 3})
    message = str(info.value)
    assert "result 'score'" in message
    assert "result_json 'score'" in message


def test_bad_separators_are_refused() -> None:
    for sep in ("", "[", "\\"):
        with pytest.raises(ValueError, match="separator"):
            FlattenOptions(separator=sep)


def test_parse_column_rejects_foreign_names() -> None:
    with pytest.raises(FlattenError):
        parse_column("other.x", ".", "result_json")
    with pytest.raises(FlattenError):
        parse_column("a[x]", ".", "")

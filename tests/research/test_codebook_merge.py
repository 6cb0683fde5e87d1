"""The codebook's column statistics, taken a part at a time and merged, are what adding
every cell in order gives (so that parts of a table can be described apart), and the
memory they keep is bounded."""

from __future__ import annotations

import csv
import io
import itertools
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aml_exportkit import codebook
from aml_exportkit.codebook import ColumnStats, _summary
from aml_exportkit.scan import DataScan, note_question

CELLS = st.one_of(
    st.sampled_from(["", "true", "false", "True", "False", "a", "b", "x|y"]),
    st.integers(-5, 30).map(str),
    st.floats(-3, 3, allow_nan=False).map(repr),
    st.sampled_from(
        ["2024-07-22T10:26:50.911000+00:00", "2023-01-01T00:00:00+00:00", "2024-07-22 10:26:50"]
    ),
    st.text(max_size=3),
)


def _state(column: ColumnStats) -> tuple[Any, ...]:
    return (
        column.values,
        column.missing,
        dict(column.kinds),
        dict(column.distinct),
        column.overflow,
        repr(column.numbers),
        repr(column.datetimes),
        repr(column.low),
        repr(column.high),
        column.unique,
        column.type,
        _summary(column),
    )


@settings(max_examples=300, deadline=None)
@example(cells=["5", "2024-07-22T10:26:50.911000+00:00", "3"], cuts=[1], name="answer")
@example(cells=["3", "3.0", "1", "1.0"], cuts=[1, 3], name="result_score")
@given(
    cells=st.lists(CELLS, max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=4),
    name=st.sampled_from(["result_id", "result_score", "session_id", "answer"]),
)
def test_merged_parts_equal_one_pass(cells: list[str], cuts: list[int], name: str) -> None:
    whole = ColumnStats(name)
    for cell in cells:
        whole.add(cell)
    bounds = [0, *sorted(min(c, len(cells)) for c in cuts), len(cells)]
    merged = ColumnStats(name)
    for start, end in itertools.pairwise(bounds):
        part = ColumnStats(name)
        for cell in cells[start:end]:
            part.add(cell)
        merged.merge(part)
    assert _state(merged) == _state(whole)


@settings(max_examples=300, deadline=None)
@example(cells=["5", "2024-07-22T10:26:50.911000+00:00", "3", "3.0", "5"], cut=2, name="answer")
@given(
    cells=st.lists(st.one_of(CELLS, st.none()), max_size=60),
    cut=st.integers(0, 60),
    name=st.sampled_from(["result_id", "result_score", "answer"]),
)
def test_cells_counted_at_once_equal_one_by_one(
    cells: list[str | None], cut: int, name: str
) -> None:
    one_by_one, at_once = ColumnStats(name), ColumnStats(name)
    for cell in cells:
        one_by_one.add(cell)
    at_once.add_many(cells[:cut])
    at_once.add_many(cells[cut:])
    assert _state(at_once) == _state(one_by_one)


def test_only_key_columns_remember_their_values(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = ColumnStats("result_given_response")
    for n in range(100):
        answer.add(str(n))
    assert answer._seen is None  # nothing kept per value beyond the 20 distinct
    monkeypatch.setattr(codebook, "MAX_SEEN", 10)
    key, parts = ColumnStats("result_id"), [ColumnStats("result_id") for _ in range(2)]
    for n in range(11):
        key.add(str(n))
        parts[n % 2].add(str(n))
    assert key._seen is None
    assert key.unique is False
    parts[0].merge(parts[1])
    at_once = ColumnStats("result_id")
    at_once.add_many(str(n) for n in range(11))
    assert at_once._seen is None
    assert at_once.unique is False
    assert parts[0]._seen is None
    assert parts[0].unique is False


@settings(max_examples=200, deadline=None)
@given(
    docs=st.lists(
        st.tuples(
            st.sampled_from(["q1", "q2", "q3"]),
            st.fixed_dictionaries(
                {},
                optional={
                    "text": st.sampled_from(["", "A?", "B?"]),
                    "question": st.sampled_from(["C?", "D?"]),
                    "choices": st.one_of(
                        st.dictionaries(st.sampled_from("abc"), st.sampled_from("XYZ")),
                        st.lists(
                            st.fixed_dictionaries(
                                {
                                    "value": st.sampled_from([1, 2, "a"]),
                                    "label": st.text(max_size=2),
                                }
                            ),
                            max_size=3,
                        ),
                    ),
                },
            ),
        ),
        max_size=30,
    ),
    cut=st.integers(0, 30),
)
def test_questions_merged_in_order_equal_one_pass(
    docs: list[tuple[str, dict[str, Any]]], cut: int
) -> None:
    whole, first, later = DataScan(), DataScan(), DataScan()
    for n, (key, data) in enumerate(docs):
        for found in (whole, first if n < cut else later):
            found.question_keys[key] += 1
            note_question(found, key, data)
    first.merge_questions(later)
    assert first.question_keys == whole.question_keys
    assert first.questions == whole.questions
    assert {k: list(v.items()) for k, v in first.choices.items()} == {
        k: list(v.items()) for k, v in whole.choices.items()
    }


def test_parquet_read_back_by_value_equals_cell_by_cell(tmp_path: Path) -> None:
    """Columns counted value by value (ints, text, booleans, timestamps) or text by text
    (floats: 0.0 and -0.0 are equal but written apart; lists) give what adding every cell
    does."""
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    when = datetime(2024, 7, 22, 10, 26, 50, 911000, tzinfo=UTC)
    rows = 50
    table = pa.table(
        {
            "result_id": [n % 7 for n in range(rows)],
            "score": [[0.0, -0.0, 1.5, None][n % 4] for n in range(rows)],
            "answer": [["a", "b", None, "10"][n % 4] for n in range(rows)],
            "flag": [[True, False, None][n % 3] for n in range(rows)],
            "created": [when + timedelta(seconds=n % 5) for n in range(rows)],
            "items": [[n % 3] if n % 2 else None for n in range(rows)],
        }
    )
    path = tmp_path / "t.parquet"
    parquet.write_table(table, path, row_group_size=16)
    columns, count = codebook.profile_parquet(path)
    assert count == rows
    for column, name in zip(columns, table.column_names, strict=True):
        expected = ColumnStats(name, keyed=False)  # (no primary key for Parquet tables)
        for value in table.column(name).to_pylist():
            expected.add(None if value is None else codebook._text(value))
        assert _state(column) == _state(expected), name


#: Texts of every kind, many distinct: numbers as repr and str write them and as people
#: type them, dates good and bad, and text that only looks like them.
TEXTS = st.one_of(
    CELLS,
    st.integers(-(10**20), 10**20).map(str),
    st.integers(0, 999).map(lambda n: f"{n:05d}"),
    st.sampled_from(["+5", " 5", "5 ", "1_000", "-0", "0.0", "-0.0", "1e999", "-1e999", "inf"]),
    st.sampled_from(["nan", "1E5", "1e-05", "1.5e+16", ".5", "5.", "00.5", "٣", "1-2", "Infinity"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.floats(-1e6, 1e6, allow_nan=False).map(str),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])).map(
        lambda d: d.isoformat()
    ),
    st.sampled_from(["2024-02-30T10:00:00+00:00", "2024-07-22T10:26:50+00:00", "2024-07-22x"]),
    st.text(min_size=1, max_size=6),
)


@settings(max_examples=200, deadline=None)
@given(
    cells=st.lists(st.one_of(TEXTS, st.none()), max_size=250),
    fill=st.integers(0, 120),
    name=st.sampled_from(["result_id", "result_score", "answer"]),
)
def test_texts_counted_by_arrow_equal_one_by_one(
    cells: list[str | None], fill: int, name: str
) -> None:
    """count_texts (pyarrow's value_counts, the plain integers and decimals classified by
    pattern when a part has many distinct texts) gives what adding every cell does."""
    pa = pytest.importorskip("pyarrow")
    cells = cells + [f"{n}.25" if n % 3 else str(n) for n in range(fill)]
    cells = cells[fill // 2 :] + cells[: fill // 2]
    one_by_one, at_once = ColumnStats(name), ColumnStats(name)
    for cell in cells:
        one_by_one.add(cell)
    codebook.count_texts(at_once, pa.array(cells, pa.string()))
    assert _state(at_once) == _state(one_by_one)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {"result_id": st.integers(0, 10**6).map(str), "score": TEXTS},
            optional={"result_json.a": TEXTS, "result_json.b": st.sampled_from(["x", 'y,\n"z'])},
        ),
        max_size=150,
    ),
    cuts=st.lists(st.integers(0, 150), max_size=6),
)
def test_chunks_counted_apart_and_merged_equal_the_whole_table(
    rows: list[dict[str, str]], cuts: list[int], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The engine's way: each chunk's CSV text counted apart, with only the columns the
    chunk knows (a json path found later is missing in the earlier chunks' rows), merged
    in order (TableStats): the codebook's stats of the whole file read back."""
    header = ["result_id", "score", "result_json.a", "result_json.b"]
    bounds = [0, *sorted(min(c, len(rows)) for c in cuts), len(rows)]
    merged = codebook.TableStats()
    for start, end in itertools.pairwise(bounds):
        chunk = rows[start:end]
        known = [n for n in header if any(n in row for row in chunk) or n in header[:2]]
        merged.add(
            codebook.csv_text_stats(known, _csv([[r.get(n, "") for n in known] for r in chunk])),
            len(chunk),
        )
    path = tmp_path_factory.mktemp("whole") / "t.csv"
    path.write_bytes(_csv([header, *([r.get(n, "") for n in header] for r in rows)]))
    whole, count = codebook.profile_csv(path)
    columns, merged_rows = merged.result(header)
    assert merged_rows == count == len(rows)
    assert [_state(c) for c in columns] == [_state(c) for c in whole]


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")


@settings(max_examples=100, deadline=None)
@given(
    scores=st.one_of(
        # (no zero, no NaN: counted at once; else value by value)
        st.lists(st.one_of(st.none(), st.floats(allow_nan=False).filter(bool)), max_size=200),
        st.lists(
            st.one_of(st.none(), st.floats(), st.sampled_from([0.0, -0.0, 1.0])), max_size=200
        ),
    ),
    times=st.lists(
        st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))), min_size=200, max_size=200
    ),
    ids=st.lists(
        st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=200, max_size=200
    ),
    cut=st.integers(0, 200),
)
def test_arrow_tables_counted_in_parts_equal_value_by_value(
    scores: list[float | None],
    times: list[datetime | None],
    ids: list[int | None],
    cut: int,
) -> None:
    """A chunk's Arrow table (the Parquet file's values), in two parts merged: floats,
    timestamps and integers counted at once give what adding every value's text does."""
    pa = pytest.importorskip("pyarrow")
    n = len(scores)
    table = pa.table(
        {
            "result_score": pa.array(scores, pa.float64()),
            "created": pa.array(times[:n], pa.timestamp("us", tz="UTC")),
            "result_id": pa.array(ids[:n], pa.int64()),
            "n": pa.array(ids[:n], pa.int64()),
        }
    )
    merged = codebook.TableStats(keyed=False)
    for part in (table.slice(0, cut), table.slice(cut)):
        merged.add(codebook.arrow_table_stats(part), part.num_rows)
    columns, rows = merged.result(table.column_names)
    assert rows == n
    for column, name in zip(columns, table.column_names, strict=True):
        expected = ColumnStats(name, keyed=False)
        for value in table.column(name).to_pylist():
            expected.add(None if value is None else codebook._text(value))
        expected.done()
        assert _state(column) == _state(expected), name


def _classify_by_trying(text: str) -> tuple[str, Any]:
    """What _classify gives by trying int() and float() on every text."""
    if text in ("true", "false", "True", "False"):
        return "boolean", text
    try:
        return "integer", int(text)
    except ValueError:
        pass
    try:
        number = float(text)
        if math.isfinite(number):
            return "number", number
    except ValueError:
        pass
    if len(text) >= 19 and text[4:5] == "-" and text[10:11] in ("T", " "):
        try:
            value = datetime.fromisoformat(text)
            if value.tzinfo is not None:
                return "datetime", value
        except ValueError:
            pass
    return "string", text


@settings(max_examples=1000, deadline=None)
@example(text="    -12345         ")
@example(text="١٢٣")
@example(text="Infinity")
@example(text="1_000")
@given(
    text=st.one_of(
        TEXTS.filter(bool),
        st.text(alphabet="0123456789 -+._eEiInNfaty١T:", min_size=1, max_size=25),
    )
)
def test_classify_tries_numbers_only_where_they_may_be(text: str) -> None:
    """_classify skips int() and float() for texts neither takes; the kind and value are
    what trying both gives."""
    kind, value = codebook._classify(text)
    expected_kind, expected = _classify_by_trying(text)
    assert (kind, repr(value)) == (expected_kind, repr(expected))

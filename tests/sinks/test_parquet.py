"""parquet: types, metadata, row groups; read with pyarrow, DuckDB and pandas, values equal
to the CSV's."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import aml_exportkit
from aml_exportkit.errors import SinkError
from aml_exportkit.tabular.table import read_exportkit_csv, text_of
from sinks.tabular_data import run

BOTH = """
[[sinks]]
type = "csv-long"
path = "t.csv"
rows = "both"
session_json = "columns"
profile = "columns"
[sinks.flatten]
lists = "index"

[[sinks]]
type = "parquet"
path = "t.parquet"
rows = "both"
session_json = "columns"
profile = "columns"
row_group_size = 2
[sinks.flatten]
lists = "index"
"""


def _csv(path: Path) -> tuple[list[str], list[list[str | None]]]:
    return read_exportkit_csv(path)


def _same_cell(value: Any, cell: str | None) -> bool:
    """A Parquet value equals a CSV cell: the same text, or the same instant."""
    if value is None or (isinstance(value, float) and value != value and cell is None):
        return cell is None
    if isinstance(value, datetime):
        return cell is not None and datetime.fromisoformat(cell) == value
    if hasattr(value, "to_pydatetime"):
        return _same_cell(value.to_pydatetime(), cell)
    return text_of(value) == cell


@pytest.fixture
def written(tmp_path: Path) -> Path:
    report = run(BOTH, tmp_path)
    assert [o.rows for o in report.outputs] == [7, 7]
    return tmp_path


def test_types(written: Path) -> None:
    schema = pq.read_schema(written / "t.parquet")
    assert schema.field("session_started_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("result_created_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("result_score").type == pa.float64()
    assert schema.field("session_id").type == pa.int64()
    assert schema.field("result_given_response").type == pa.string()
    assert schema.field("result_json.config.listen_first").type == pa.bool_()
    assert schema.field("result_json.value").type == pa.string()  # "A" and 7: mixed → text
    # 1e-300 and a 20-digit integer: the integer would not survive float64
    assert schema.field("result_json.decision_time").type == pa.string()
    assert schema.field("session_json.n[0]").type == pa.int64()


def test_metadata_holds_template_and_version(written: Path) -> None:
    meta = pq.read_schema(written / "t.parquet").metadata
    assert meta[b"exportkit.version"].decode() == aml_exportkit.__version__
    assert meta[b"exportkit.template"].decode() == BOTH
    kinds = json.loads(meta[b"exportkit.column_kinds"])
    assert kinds["session_started_at"] == "datetime"


def test_row_groups_are_streamed(written: Path) -> None:
    assert pq.ParquetFile(written / "t.parquet").num_row_groups == 4  # 7 rows, 2 per group


def test_pyarrow_values_equal_the_csv(written: Path) -> None:
    header, rows = _csv(written / "t.csv")
    table = pq.read_table(written / "t.parquet")
    assert table.column_names == header
    got = table.to_pylist()
    assert len(got) == len(rows) == 7
    for prow, crow in zip(got, rows, strict=True):
        for name, cell in zip(header, crow, strict=True):
            assert _same_cell(prow[name], cell), (name, prow[name], cell)


def test_duckdb_values_equal_the_csv(written: Path) -> None:
    header, rows = _csv(written / "t.csv")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    result = con.execute(f"SELECT * FROM read_parquet('{written / 't.parquet'}')")
    names = [d[0] for d in result.description]
    assert names == header
    got = result.fetchall()
    assert len(got) == 7
    for prow, crow in zip(got, rows, strict=True):
        for value, cell in zip(prow, crow, strict=True):
            assert _same_cell(value, cell), (value, cell)


def test_pandas_values_equal_the_csv(written: Path) -> None:
    header, rows = _csv(written / "t.csv")
    frame = pd.read_parquet(written / "t.parquet")
    assert list(frame.columns) == header
    assert len(frame) == 7
    assert str(frame["session_started_at"].dtype) == "datetime64[us, UTC]"
    for (_, prow), crow in zip(frame.iterrows(), rows, strict=True):
        for name, cell in zip(header, crow, strict=True):
            value = prow[name]
            if value is pd.NaT or (not isinstance(value, str) and pd.isna(value)):
                assert cell is None, name
            elif (
                isinstance(value, float) and float(value).is_integer() and cell and "." not in cell
            ):
                assert int(value) == int(cell)  # a nullable int column read as float
            else:
                assert _same_cell(value, cell), (name, value, cell)


def test_wide_layout(tmp_path: Path) -> None:
    text = """
[[sinks]]
type = "parquet"
path = "w.parquet"
layout = "wide"
[[sinks]]
type = "csv-wide"
path = "w.csv"
"""
    run(text, tmp_path)
    header, rows = _csv(tmp_path / "w.csv")
    table = pq.read_table(tmp_path / "w.parquet")
    assert table.column_names == header
    assert table.num_rows == len(rows) == 3
    assert table.schema.field("1.result_created_at").type == pa.timestamp("us", tz="UTC")
    for prow, crow in zip(table.to_pylist(), rows, strict=True):
        for name, cell in zip(header, crow, strict=True):
            assert _same_cell(prow[name], cell), (name, prow[name], cell)


def test_without_pyarrow_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    with pytest.raises(
        SinkError, match="needs pyarrow, which is not installed: pip install pyarrow"
    ):
        run('[[sinks]]\ntype = "parquet"\npath = "x.parquet"\n', tmp_path)
    assert not (tmp_path / "x.parquet").exists()

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


def _run_with_json(text: str, out: Path, json_data: dict[int, Any]) -> None:
    """Run ``text`` on the graph of ``tabular_data`` with these results' ``json_data``."""
    import attrs

    from aml_exportkit.pipeline import run_export
    from aml_exportkit.plugins import get_plugin_manager, load_registry
    from aml_exportkit.template.load import parse_template
    from memory_source import MemoryPlugin, MemorySource
    from sinks.tabular_data import tables

    data, results = tables()
    results = [
        attrs.evolve(r, json_data=json_data[r.pk]) if r.pk in json_data else r for r in results
    ]
    pm = get_plugin_manager(
        load_entrypoints=False, plugins=[MemoryPlugin(MemorySource(data, results))]
    )
    template = parse_template(text, file="t.toml", folder=out, sinks=load_registry(pm).sink_specs)
    run_export(template, source="memory:", out_dir=out, plugin_manager=pm)


def test_whole_and_fractional_numbers_are_a_double_column(tmp_path: Path) -> None:
    """A decision time of exactly 2 beside 2.5 keeps the column numbers: a double in
    Parquet and float64 in pandas, while the CSV spells each value as it was."""
    text = '[[sinks]]\ntype = "parquet"\npath = "t.parquet"\n'
    text += '[[sinks]]\ntype = "csv-long"\npath = "t.csv"\n'
    # result 102 keeps json_data None: it lacks the key (an empty cell, a Parquet null)
    _run_with_json(
        text,
        tmp_path,
        {100: {"t": 2}, 101: {"t": 2.5}, 103: {"t": -0.0, "big": 2**60}},
    )
    assert pq.read_schema(tmp_path / "t.parquet").field("result_json.t").type == pa.float64()
    frame = pd.read_parquet(tmp_path / "t.parquet").set_index("result_id")
    assert str(frame["result_json.t"].dtype) == "float64"
    assert frame.loc[100, "result_json.t"] == 2.0
    assert frame.loc[101, "result_json.t"] == 2.5
    assert str(frame.loc[103, "result_json.t"]) == "-0.0"
    assert pd.isna(frame.loc[102, "result_json.t"])
    header, rows = _csv(tmp_path / "t.csv")
    cells = {row[header.index("result_id")]: row[header.index("result_json.t")] for row in rows}
    assert cells == {"100": "2", "101": "2.5", "102": None, "103": "-0.0"}
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    for output in manifest["outputs"]:
        column = next(c for c in output["columns"] if c["name"] == "result_json.t")
        assert column["json_types"] == ["absent", "integer", "number"]
        assert not column.get("json_cells")


def test_a_big_integer_beside_a_float_stays_json_text(tmp_path: Path) -> None:
    """2**60 + 1 is not a double: a column holding it and 0.5 stays JSON text."""
    _run_with_json(
        '[[sinks]]\ntype = "parquet"\npath = "t.parquet"\n',
        tmp_path,
        {100: {"t": 2**60 + 1}, 101: {"t": 0.5}},
    )
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.schema.field("result_json.t").type == pa.string()
    by_id = dict(
        zip(
            table.column("result_id").to_pylist(),
            table.column("result_json.t").to_pylist(),
            strict=True,
        )
    )
    assert by_id[100] == str(2**60 + 1)
    assert by_id[101] == "0.5"

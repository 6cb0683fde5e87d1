"""The library call: a template's table as a pandas DataFrame or an Arrow table, in memory.

Every frame is compared with the file the sinks write for the same template: the Parquet file
read back by pandas and pyarrow (equal, types included), and the CSV cell by cell (each value
rendered as text equals the cell).
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from aml_exportkit import Filter, SinkError, TemplateError, to_arrow, to_dataframe
from aml_exportkit.flatten import FlattenOptions
from aml_exportkit.frames import TableBuilder, text_of
from aml_exportkit.pipeline import load_template, run_export
from aml_exportkit.plugins import PluginManager
from aml_exportkit.tabular.options import CsvWideOptions, TableOptions, WideOptions
from aml_exportkit.tabular.table import read_exportkit_csv

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ZIP = ROOT / "examples" / "tafc-dvorak.zip"

TEMPLATE = """
[source]
uri = "{zip}"

[[sinks]]
type = "csv-long"
path = "long.csv"
profile = "columns"

[[sinks]]
type = "parquet"
path = "long.parquet"
profile = "columns"

[[sinks]]
type = "csv-wide"
path = "wide.csv"
profile = "columns"
[sinks.wide]
key_by = "question_key"

[[sinks]]
type = "parquet"
path = "wide.parquet"
layout = "wide"
profile = "columns"
[sinks.wide]
key_by = "question_key"

[[sinks]]
type = "fixture-json"
path = "fixtures.zip"
"""


def write_template(folder: Path, zip_path: Path, text: str = TEMPLATE) -> Path:
    path = folder / "tables.toml"
    path.write_text(text.replace("{zip}", str(zip_path)), encoding="utf-8")
    return path


@pytest.fixture
def exported(
    tmp_path: Path, reference_dir: Path, plugin_manager: PluginManager
) -> tuple[Path, Path]:
    """The template over MUSCLE HEAD's hooked-eurovision zip (profiles and trials), and the
    folder the sinks wrote to."""
    template = write_template(tmp_path, reference_dir / "head" / "block_hooked-eurovision.zip")
    out = tmp_path / "out"
    run_export(load_template(str(template)), out_dir=out, plugin_manager=plugin_manager)
    return template, out


def assert_same_as_csv(arrow: Any, path: Path) -> None:
    """Each value's text equals the CSV's cell; in a float column (ints and floats seen
    together, docs/parquet.md) the CSV keeps an int's text, so numbers are compared."""
    header, rows = read_exportkit_csv(path)
    assert arrow.column_names == header
    floats = [str(arrow.schema.field(n).type) == "double" for n in header]
    got = arrow.to_pylist()
    assert len(got) == len(rows)
    for values, cells in zip(got, rows, strict=True):
        for value, cell, is_float in zip(values.values(), cells, floats, strict=True):
            if is_float and cell is not None:
                assert value == float(cell)
            else:
                assert text_of(value) == cell


def test_the_long_frame_equals_the_parquet_file(
    exported: tuple[Path, Path], plugin_manager: PluginManager
) -> None:
    template, out = exported
    frame = to_dataframe(template, plugin_manager=plugin_manager)
    expected = pd.read_parquet(out / "long.parquet")
    assert len(frame) == 95
    pd.testing.assert_frame_equal(frame, expected)
    arrow = to_arrow(template, plugin_manager=plugin_manager)
    assert arrow.equals(pq.read_table(out / "long.parquet"))


@pytest.mark.parametrize("backend", ["numpy_nullable", "pyarrow"])
def test_dtype_backends_match_pandas_reading_the_file(
    exported: tuple[Path, Path], plugin_manager: PluginManager, backend: Any
) -> None:
    template, out = exported
    frame = to_dataframe(template, dtype_backend=backend, plugin_manager=plugin_manager)
    expected = pd.read_parquet(out / "long.parquet", dtype_backend=backend)
    pd.testing.assert_frame_equal(frame, expected)
    if backend == "numpy_nullable":
        assert str(frame["session_id"].dtype) == "Int64"


def test_the_wide_frame_equals_the_wide_files(
    exported: tuple[Path, Path], plugin_manager: PluginManager
) -> None:
    template, out = exported
    # the template's first table sink is long; table= picks the wide layout, and the wide
    # keys come from the parquet sink chosen by index
    frame = to_dataframe(template, sink=3, plugin_manager=plugin_manager)
    pd.testing.assert_frame_equal(frame, pd.read_parquet(out / "wide.parquet"))
    wide = to_arrow(template, sink=2, plugin_manager=plugin_manager)
    assert_same_as_csv(wide, out / "wide.csv")
    assert "recognize.result_given_response" in wide.column_names


def test_every_cell_equals_the_csv(
    exported: tuple[Path, Path], plugin_manager: PluginManager
) -> None:
    template, out = exported
    assert_same_as_csv(to_arrow(template, plugin_manager=plugin_manager), out / "long.csv")


def test_a_source_alone_gives_the_default_long_table(
    tmp_path: Path, plugin_manager: PluginManager
) -> None:
    text = f'[source]\nuri = "{EXAMPLE_ZIP}"\n[[sinks]]\ntype = "parquet"\npath = "t.parquet"\n'
    (tmp_path / "t.toml").write_text(text, encoding="utf-8")
    run_export(load_template(str(tmp_path / "t.toml")), plugin_manager=plugin_manager)
    frame = to_dataframe(str(EXAMPLE_ZIP), plugin_manager=plugin_manager)
    pd.testing.assert_frame_equal(frame, pd.read_parquet(tmp_path / "t.parquet"))
    assert to_dataframe(EXAMPLE_ZIP, blocks="tafc-dvorak", plugin_manager=plugin_manager).equals(
        frame
    )


def test_options_and_filter_replace_the_templates(
    tmp_path: Path, plugin_manager: PluginManager
) -> None:
    everyone = to_dataframe(EXAMPLE_ZIP, table="wide", plugin_manager=plugin_manager)
    finished = to_dataframe(
        EXAMPLE_ZIP,
        options=CsvWideOptions(wide=WideOptions(row_per="participant")),
        filter=Filter(finished_only=True),
        plugin_manager=plugin_manager,
    )
    assert everyone["session_id"].is_unique
    assert finished["participant_id"].is_unique
    assert "session_id" not in finished.columns
    assert len(finished) <= everyone["participant_id"].nunique()


def test_muscle_classic_frames_hold_the_classic_csv(
    tmp_path: Path, reference_dir: Path, plugin_manager: PluginManager
) -> None:
    zip_path = reference_dir / "head" / "block_tafc-dvorak.zip"
    template = load_template("muscle-classic:long", registry=None)
    run_export(template, source=str(zip_path), out_dir=tmp_path, plugin_manager=plugin_manager)
    (written,) = tmp_path.glob("*.csv")
    with written.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    frame = to_dataframe("muscle-classic:long", source=str(zip_path), plugin_manager=plugin_manager)
    assert list(frame.columns) == header
    assert frame.astype(object).where(frame.notna(), "").values.tolist() == rows


def test_privacy_applies_to_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin_manager: PluginManager
) -> None:
    monkeypatch.setenv("FRAMES_TEST_KEY", "a key of at least sixteen characters")
    text = (
        f'[source]\nuri = "{EXAMPLE_ZIP}"\n'
        '[privacy]\npseudonymise = ["participant_id_url"]\ndrop = ["access_info"]\n'
        'key_env = "FRAMES_TEST_KEY"\n'
        '[[sinks]]\ntype = "parquet"\npath = "p.parquet"\n'
        '[sinks.columns]\nparticipant = ["id", "unique_hash", "participant_id_url"]\n'
    )
    (tmp_path / "p.toml").write_text(text, encoding="utf-8")
    template = load_template(str(tmp_path / "p.toml"))
    run_export(template, plugin_manager=plugin_manager)
    frame = to_dataframe(template, plugin_manager=plugin_manager)
    pd.testing.assert_frame_equal(frame, pd.read_parquet(tmp_path / "p.parquet"))
    plain = to_dataframe(EXAMPLE_ZIP, plugin_manager=plugin_manager)
    assert set(frame["participant_id"]) == set(plain["participant_id"])


def test_no_file_is_left_behind(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    exported: tuple[Path, Path],
    plugin_manager: PluginManager,
) -> None:
    template, _ = exported
    spill = tmp_path / "tmpdir"
    spill.mkdir()
    before = sorted(p.name for p in template.parent.rglob("*"))
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    to_dataframe(template, plugin_manager=plugin_manager)
    to_dataframe(template, table="wide", plugin_manager=plugin_manager)
    assert list(spill.iterdir()) == []
    assert sorted(p.name for p in template.parent.rglob("*")) == before


def test_errors_are_exportkit_errors(
    exported: tuple[Path, Path], plugin_manager: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    template, _ = exported
    with pytest.raises(TemplateError, match=r"sinks\[4\].*'fixture-json' does not make a table"):
        to_dataframe(template, sink=4, plugin_manager=plugin_manager)
    with pytest.raises(TemplateError, match="no sink number 9"):
        to_dataframe(template, sink=9, plugin_manager=plugin_manager)
    with pytest.raises(SinkError, match="explode"):
        to_dataframe(
            template,
            options=TableOptions(flatten=FlattenOptions(lists="explode")),
            table="wide",
            plugin_manager=plugin_manager,
        )
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(SinkError) as missing:
        to_dataframe(template, plugin_manager=plugin_manager)
    assert str(missing.value) == (
        "to_dataframe: needs pandas, which is not installed: pip install pandas"
    )


def test_the_builder_is_closed_after_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, plugin_manager: PluginManager
) -> None:
    from aml_exportkit.pipeline import open_source
    from aml_exportkit.selection import Selection

    spill = tmp_path / "tmpdir"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    with (
        open_source(str(EXAMPLE_ZIP)) as source,
        source.read(Selection(blocks=())) as graph,
    ):
        builder = TableBuilder(graph, layout="wide")
        for batch in graph.trial_results():
            builder.add_results(batch)
        assert list(spill.iterdir())  # the wide builder's SQLite spill
        builder.close()
        builder.close()
    assert list(spill.iterdir()) == []
    with pytest.raises(RuntimeError, match="finished or closed"):
        builder.finish()


def test_the_example_script_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "notebook.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT.parent,
    )
    assert "58 trial results" in done.stdout
    assert "tafc-dvorak" in done.stdout


def test_whole_and_fractional_numbers_are_doubles(
    reference_dir: Path, plugin_manager: PluginManager
) -> None:
    """HOOKED's continuation_offset holds 0 beside 10.08…: a double column in to_arrow, as
    in the Parquet file, and numbers in pandas."""
    zip_path = reference_dir / "head" / "block_hooked-eurovision.zip"
    table = to_arrow(str(zip_path), plugin_manager=plugin_manager)
    assert str(table.schema.field("result_json.continuation_offset").type) == "double"
    values = [
        v for v in table.column("result_json.continuation_offset").to_pylist() if v is not None
    ]
    assert {type(v) for v in values} == {float}
    assert 0.0 in values
    assert any(not v.is_integer() for v in values)
    frame = to_dataframe(str(zip_path), plugin_manager=plugin_manager)
    assert str(frame["result_json.continuation_offset"].dtype) == "float64"

"""MUSCLE's CSV styles on the engine (decision 0027): the same bytes as the sink's own row
builder (``tabular/muscle.py``, the reference for MUSCLE's cells) fed the engine's batches, with
sessions without trial results before, between and after the chunks, and every cell quoted
by Python's csv writer."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import generate
from aml_exportkit import engine
from aml_exportkit.engine.muscle import _MARK, csv_cells
from aml_exportkit.plugins import get_plugin_manager, load_registry
from aml_exportkit.sources import fixture_zip_chunks, muscle_db_chunks

from .test_engine import built_alike

SPECS = load_registry(get_plugin_manager(load_entrypoints=False)).template_specs
BUILTINS = sorted(SPECS)


def _builtin(name: str, extra: str = "") -> str:
    """A builtin template's text, ``extra`` options added to its sink."""
    text = SPECS[name].text
    for style in ("muscle-classic", "muscle-dashboard"):
        text = text.replace(f'style = "{style}"\n', f'style = "{style}"\n{extra}')
    return text


_MS_GUARDED = 'timestamps = "ms"\nformula_guard = true\n'

#: Options the builtin templates do not use, on MUSCLE's styles.
VARIANTS = {
    "classic-long-ms-guarded": _builtin("muscle-classic:long", _MS_GUARDED),
    "classic-wide-ms-guarded": _builtin("muscle-classic:wide_json", _MS_GUARDED),
    "dashboard-ms-guarded": _builtin("muscle-dashboard:long", _MS_GUARDED),
    # our own style's long table with times to the millisecond (its Parquet file gets
    # record batches)
    "long-ms": '[[sinks]]\ntype = "csv-long"\npath = "{block}-long.csv"\ntimestamps = "ms"\n'
    '[[sinks]]\ntype = "parquet"\npath = "{block}-long.parquet"\ntimestamps = "ms"\n',
    # MUSCLE's styles beside our own long table and a second classic table
    "beside-long": """
[[sinks]]
type = "csv-long"
path = "long.csv"

[[sinks]]
type = "csv-long"
path = "classic.csv"
style = "muscle-classic"

[[sinks]]
type = "csv-wide"
path = "classic-wide.csv"
style = "muscle-classic"
[sinks.classic]
options = ["export_profile", "session_data", "convert_session_json"]
""",
}


@pytest.fixture(scope="module")
def gappy_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated block whose first, last and some middle sessions have no trial
    results (so that with small chunks some lie between two chunks)."""
    source = tmp_path_factory.mktemp("gappy") / "full.zip"
    generate.write_zip(source, generate.Size(30))
    target = source.with_name("block_gappy.zip")
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("results.json"):
                kept = [
                    r
                    for r in json.loads(data)
                    if r["fields"].get("session") not in {1, 7, 8, 15, 30}
                ]
                data = json.dumps(kept).encode("utf-8")
            dst.writestr(info.filename, data, compress_type=info.compress_type)
    return target


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_templates_small_chunks(
    name: str, gappy_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many chunks, sessions without results between them: the engine's bytes."""
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 20_000)
    monkeypatch.setattr(fixture_zip_chunks, "SAMPLE_BYTES", 3_000)
    built_alike(_builtin(name), gappy_zip, tmp_path, monkeypatch)
    assert engine.LAST_RUN["chunks"] > 10


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_options_on_muscle_styles(
    name: str, gappy_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 20_000)
    built_alike(VARIANTS[name], gappy_zip, tmp_path, monkeypatch)


def test_muscle_style_as_parquet_gets_batches(
    gappy_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Parquet file in MUSCLE's style is not the engine's: it gets record batches while
    the engine writes the CSV."""
    text = _builtin("muscle-classic:long") + (
        '\n[[sinks]]\ntype = "parquet"\npath = "{block}-classic.parquet"\n'
        'style = "muscle-classic"\n'
    )
    built_alike(text, gappy_zip, tmp_path, monkeypatch)
    assert engine.LAST_RUN["batch_sinks"] == 1


@pytest.mark.pg
@pytest.mark.parametrize(
    "name", ["muscle-classic:long_json", "muscle-classic:wide", "muscle-dashboard:long", "long-ms"]
)
def test_database_small_chunks(
    name: str, muscle_head_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(muscle_db_chunks, "CHUNK_SESSIONS", 2)
    for block in ("hooked-eurovision", "tafc-dvorak"):
        text = VARIANTS[name] if name in VARIANTS else _builtin(name)
        built_alike(text, muscle_head_db, tmp_path / block, monkeypatch, (block,))


def _written(rows: list[list[str]], line_end: str) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator=line_end).writerows(rows)
    return out.getvalue()


_TEXT = st.text(alphabet=st.sampled_from(["a", ",", '"', "\r", "\n", " ", "é", "\x1f", "x"]))


@given(
    rows=st.lists(
        st.lists(
            _TEXT | st.sampled_from([_MARK, f"a,{_MARK}\r\nb", f",{_MARK}\n"]),
            min_size=2,
            max_size=4,
        ),
        max_size=6,
    ),
    line_end=st.sampled_from(["\r\n", "\n"]),
)
def test_csv_cells_join_as_the_writer_writes(rows: list[list[str]], line_end: str) -> None:
    """Rows joined from cells quoted one batch at a time are the csv writer's rows, also
    when a cell holds the mark that ends a row of the batch."""
    quoted = csv_cells([v for row in rows for v in row], line_end)
    joined = "".join(",".join(quoted[v] for v in row) + line_end for row in rows)
    assert joined == _written(rows, line_end)

"""Parquet in MUSCLE's classic and dashboard styles: a column whose every cell spells one
type (an integer, a float, a boolean, a time) is stored typed, and spelling the Parquet
values as the style does gives back the CSV's cells exactly."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from aml_exportkit.pipeline import load_template, run_export
from aml_exportkit.tabular.muscle import classic_text, dashboard_text

TEMPLATES = ("muscle-classic:long", "muscle-classic:long_json", "muscle-dashboard:long")


@pytest.mark.parametrize("ms", [False, True])
@pytest.mark.parametrize("name", TEMPLATES)
def test_typed_columns_spell_the_csv_cells(
    name: str, ms: bool, reference_dir: Path, tmp_path: Path
) -> None:
    zip_path = reference_dir / "head" / "block_hooked-eurovision.zip"
    stamp = 'timestamps = "ms"\n' if ms else ""
    template = tmp_path / "t.toml"
    template.write_text(
        f'extends = "{name}"\n[[sinks]]\n{stamp}'
        f'[[sinks]]\ntype = "parquet"\npath = "{{block}}.parquet"\n{stamp}',
        encoding="utf-8",
    )
    # the second sink takes the builtin's style and form through a copy of its keys
    base = load_template(name)
    options = base.sinks[0].options
    text = template.read_text(encoding="utf-8")
    text += f'style = "{options.style}"\n'
    if options.style == "muscle-classic":
        classic = options.classic
        text += (
            "[sinks.classic]\n"
            f"session_fields = {list(classic.session_fields)}\n"
            f"result_fields = {list(classic.result_fields)}\n"
            f"options = {list(classic.options)}\n"
        )
    template.write_text(text.replace("'", '"'), encoding="utf-8")
    out = tmp_path / "out"
    run_export(load_template(str(template)), source=str(zip_path), out_dir=out)
    # the builtin names its CSV after itself
    written = out / base.sinks[0].path.replace("{block}", "hooked-eurovision")
    rows = list(csv.reader(io.StringIO(written.read_text("utf-8"), newline="")))
    table = pq.read_table(out / "hooked-eurovision.parquet")
    assert table.column_names == rows[0]
    types = {f.name: str(f.type) for f in table.schema}
    spell = dashboard_text if options.style == "muscle-dashboard" else classic_text
    time = "timestamp[ms, tz=UTC]" if ms else "timestamp[us, tz=UTC]"
    if options.style == "muscle-dashboard":
        assert types["created_at"] == time
        assert types["session__id"] == "int64"
        assert types["score"] == "double"
    else:
        assert types["session_start"] == time
        assert types["block_id"] == "int64"
        assert types["final_score"] == "double"
    for index, column in enumerate(table.column_names):
        cells = [
            "" if value is None else spell(value, ms) if types[column] != "string" else value
            for value in table.column(column).to_pylist()
        ]
        assert cells == [row[index] for row in rows[1:]], column

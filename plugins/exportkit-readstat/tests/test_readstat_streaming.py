"""The spss and stata sinks stream the table: they hold a chunk of rows at a time, and
pyreadstat reads the spilled columns from a memory-mapped file. Whatever the chunk, the
file is the same."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path
from typing import Any

import exportkit_readstat
import pyarrow as pa
import pyreadstat
import pytest
from exportkit_readstat import sink as readstat_sink

from aml_exportkit import SinkError, get_plugin_manager, load_registry, load_template, run_export
from aml_exportkit.plugins import PluginManager


@pytest.fixture
def manager() -> PluginManager:
    """The builtins and this plugin, registered without its entry point."""
    return get_plugin_manager(load_entrypoints=False, plugins=[exportkit_readstat])


def _mutated(muscle_zip: Path, target: Path, last_response: str = "B") -> Path:
    """The demo zip whose results' ``json_data`` change their kind late: ``late`` is a
    number in every result but the last (text there), ``early`` text in the first only,
    ``nothing`` a JSON null beside a missing key."""
    with zipfile.ZipFile(muscle_zip) as source, zipfile.ZipFile(target, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "results.json":
                results = json.loads(data)
                last = len(results) - 1
                for i, result in enumerate(results):
                    fields = result["fields"]
                    extra: dict[str, Any] = {
                        "late": 2 if i < last else "2",
                        "early": "x" if i == 0 else 3.5,
                    }
                    if i == 1:
                        extra["nothing"] = None
                    fields["json_data"] = {**fields["json_data"], **extra}
                results[last]["fields"]["given_response"] = last_response
                data = json.dumps(results).encode()
            out.writestr(info, data)
    return target


def _export(tmp_path: Path, manager: PluginManager, source: Path, name: str) -> Path:
    out = tmp_path / name
    text = (
        f'[source]\nuri = "{source}"\n'
        f'[[sinks]]\ntype = "spss"\npath = "{out}/long.sav"\nlayout = "long"\n'
        'result_json = "columns"\nrows = "both"\n'
        f'[[sinks]]\ntype = "stata"\npath = "{out}/long.dta"\nlayout = "long"\n'
        'result_json = "columns"\n'
        f'[[sinks]]\ntype = "spss"\npath = "{out}/wide.sav"\nprofile = "columns"\n'
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    run_export(load_template(str(path), registry=load_registry(manager)), plugin_manager=manager)
    return out


def _read(path: Path) -> Any:
    read = pyreadstat.read_sav if path.suffix == ".sav" else pyreadstat.read_dta
    frame, meta = read(str(path), disable_datetime_conversion=True)
    values = {
        c: [None if isinstance(v, float) and math.isnan(v) else v for v in frame[c]]
        for c in frame.columns
    }
    return (
        values,
        meta.column_names_to_labels,
        meta.readstat_variable_types,
        meta.variable_value_labels,
    )


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_any_chunk_writes_the_same_files(
    chunk: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    muscle_zip: Path,
    manager: PluginManager,
) -> None:
    source = _mutated(muscle_zip, tmp_path / "block_demo.zip")
    whole = _export(tmp_path, manager, source, "whole")
    seen: list[int] = []
    convert = readstat_sink.Column.convert

    def spy(self: readstat_sink.Column, cells: Any, start: int) -> list[list[Any]]:
        seen.append(len(cells))
        return convert(self, cells, start)

    monkeypatch.setattr(readstat_sink, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(readstat_sink.Column, "convert", spy)
    chunked = _export(tmp_path, manager, source, "chunked")
    # never more than a chunk of rows converted at once, and the long table took several
    assert max(seen) == chunk
    assert seen.count(chunk) >= 2
    for name in ("long.sav", "long.dta", "wide.sav"):
        assert _read(chunked / name) == _read(whole / name), name
    # the kinds decided over the whole column, whichever chunk changed them
    values, _, types, _ = _read(whole / "long.dta")
    late = next(c for c in values if c.endswith("_late"))
    early = next(c for c in values if c.endswith("_early"))
    assert types[late] == "string"
    assert values[late][-1] == '"2"'
    assert types[early] == "string"


@pytest.mark.parametrize("chunk", [2, readstat_sink.CHUNK_ROWS])
def test_a_nul_is_named_by_its_row_whatever_the_chunk(
    chunk: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    muscle_zip: Path,
    manager: PluginManager,
) -> None:
    monkeypatch.setattr(readstat_sink, "CHUNK_ROWS", chunk)
    source = _mutated(muscle_zip, tmp_path / "block_demo.zip", last_response="a\0b")
    with pytest.raises(SinkError, match=r"'result_given_response', row 14: text with a NUL"):
        _export(tmp_path, manager, source, "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_pyreadstat_reads_the_mapped_spill_not_a_copy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, muscle_zip: Path, manager: PluginManager
) -> None:
    # The table handed to pyreadstat is Arrow-backed pandas over the mapped file: its
    # text and number columns' bytes are not in memory Arrow allocated.
    seen: list[tuple[int, int]] = []
    write_sav = pyreadstat.write_sav

    def spy(frame: Any, *args: Any, **kwargs: Any) -> Any:
        arrow = sum(
            frame[c].array.__arrow_array__().nbytes
            for c in frame.columns
            if hasattr(frame[c].array, "__arrow_array__")
        )
        seen.append((arrow, pa.total_allocated_bytes()))
        return write_sav(frame, *args, **kwargs)

    monkeypatch.setattr(pyreadstat, "write_sav", spy)
    big = tmp_path / "block_big.zip"
    with zipfile.ZipFile(muscle_zip) as source, zipfile.ZipFile(big, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "results.json":
                results = json.loads(data)
                for result in results:
                    result["fields"]["json_data"]["words"] = "many words " * 20_000
                data = json.dumps(results).encode()
            out.writestr(info, data)
    _export(tmp_path, manager, big, "out")
    assert len(seen) == 2
    for arrow, allocated in seen:
        assert arrow > 1_000_000  # the words: 220 kB each, in every row of the long table
        assert allocated < arrow / 4, (arrow, allocated)

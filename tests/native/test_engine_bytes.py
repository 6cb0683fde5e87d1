"""The engine gives the same bytes with the native kernel and without it (the engine in
Python), and they are the bytes of the sink's own row builder (``tabular/``) fed the
engine's batches; a chunk the kernel refuses is read by the Python reference reading."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from aml_exportkit import engine
from aml_exportkit.engine import native
from aml_exportkit.pipeline import registry_for, run_export
from aml_exportkit.tabular.sink import TableSink
from aml_exportkit.template.load import parse_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = {
    "bench": (ROOT / "benchmarks" / "long.toml").read_text(encoding="utf-8"),
    "index": '[[sinks]]\ntype = "csv-long"\npath = "a.csv"\n[sinks.flatten]\nlists = "index"\n'
    '[[sinks]]\ntype = "parquet"\npath = "a.parquet"\n[sinks.flatten]\nlists = "index"\n',
    "depth": '[[sinks]]\ntype = "csv-long"\npath = "a.csv"\n[sinks.flatten]\nmax_depth = 1\n',
}

# (test_kernel.py fails the run under CI=true when the kernel is missing)
pytestmark = pytest.mark.skipif(not native.available(), reason="the native kernel is not built")


def _run(text: str, source: Path, out: Path) -> dict[str, bytes]:
    template = parse_template(
        "manifest = false\n" + text, file="t.toml", folder=out, sinks=registry_for().sink_specs
    )
    run_export(template, source=str(source), out_dir=out)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _built(text: str, source: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """The files of the tables' row builders, fed the engine's batches."""
    with monkeypatch.context() as patch:
        patch.setattr(TableSink, "engine_table", lambda self: None)
        files = _run(text, source, out)
        assert engine.LAST_RUN["batch_sinks"] == text.count("[[sinks]]")
    return files


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_kernel_python_lane_and_row_builder_agree(
    name: str, small_generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = TEMPLATES[name]
    built = _built(text, small_generated_zip, tmp_path / "builder", monkeypatch)
    with_kernel = _run(text, small_generated_zip, tmp_path / "kernel")
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    without = _run(text, small_generated_zip, tmp_path / "python")
    assert with_kernel == built
    assert without == built


def test_refused_json_data_goes_to_the_reference_reading(
    small_generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk the kernel refuses is read by the Python reference (that chunk only); the
    engine keeps the run."""
    # a duplicate key inside json_data: Python keeps the last value, the kernel refuses
    broken = tmp_path / "dup.zip"
    with zipfile.ZipFile(small_generated_zip) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "results.json":
                data = data.replace(b'"json_data": {', b'"json_data": {"dup": 1, "dup": 2, ', 1)
            dst.writestr(info, data)
    text = TEMPLATES["bench"]
    fast = _run(text, broken, tmp_path / "fast")
    assert fast == _built(text, broken, tmp_path / "builder", monkeypatch)
    assert b"result_json.dup" in fast["results.csv"].split(b"\r\n", 1)[0]

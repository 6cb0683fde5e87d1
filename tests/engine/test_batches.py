"""The engine beside sinks it does not write: they get each chunk's trial results as an
Arrow record batch (``write_result_batch``), as rows through the adapter when they want
rows, or encode them in the workers (``encode_result_batch``): the very records the
source's reader makes (the reference), and the tables are those of one chunk, byte for
byte."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import attrs
import pytest

import dummy_sink_module
from aml_exportkit import (
    BaseSink,
    OutputReport,
    ResultBatch,
    SinkContext,
    SinkSpec,
    engine,
    get_plugin_manager,
    hookimpl,
)
from aml_exportkit.contracts import SourceOptions
from aml_exportkit.engine import batches, workers
from aml_exportkit.errors import ExportkitError, SinkError
from aml_exportkit.graph import RecordGraph
from aml_exportkit.pipeline import registry_for, run_export
from aml_exportkit.records import Result
from aml_exportkit.selection import Selection
from aml_exportkit.sources import fixture_zip_chunks
from aml_exportkit.sources.fixture_zip import FixtureZipSource
from aml_exportkit.template.load import parse_template

from .test_engine import BAD, BAD_ERRORS, _rewrite_results

LONG = '[[sinks]]\ntype = "csv-long"\npath = "long.csv"\n'
LINES = '[[sinks]]\ntype = "lines"\npath = "lines.txt"\n'
#: every sink the engine does not write, beside the long table it writes
MIXED = (
    LONG
    + LINES
    + '[[sinks]]\ntype = "columns"\npath = "columns.txt"\n'
    + '[[sinks]]\ntype = "bare"\npath = "bare.txt"\n'
    + '[[sinks]]\ntype = "encoded"\npath = "encoded.txt"\n'
    + '[[sinks]]\ntype = "csv-wide"\npath = "wide.csv"\n[sinks.wide]\nrow_per = "participant"\n'
    + '[[sinks]]\ntype = "csv-long"\npath = "long-exploded.csv"\n[sinks.flatten]\n'
    + 'lists = "explode"\n'
)


@attrs.frozen
class _NoOptions:
    pass


class ColumnsSink(BaseSink):
    """Takes batches as columns: one line per result, and the batches' column names in
    ``seen``."""

    seen: ClassVar[list[tuple[str, ...]]] = []
    sizes: ClassVar[list[int]] = []

    def begin(self, graph: RecordGraph) -> None:
        self.file = self.context.temp_path().open("w", encoding="utf-8")
        self.rows = 0

    def write_result_batch(self, batch: ResultBatch) -> None:
        ColumnsSink.seen.append(tuple(batch.schema.names))  # type: ignore[attr-defined]
        ColumnsSink.sizes.append(batch.num_rows)
        for pk, score in zip(
            batch.column("pk").to_pylist(), batch.column("score").to_pylist(), strict=True
        ):
            self.file.write(f"{pk} {score}\n")
        self.rows += batch.num_rows

    def finish(self) -> Sequence[OutputReport]:
        self.file.close()
        return (OutputReport(path=self.context.target, rows=self.rows),)

    def abort(self) -> None:
        self.file.close()


class BareSink:
    """A sink written to the protocol alone, before ``write_result_batch`` existed."""

    def __init__(self, context: SinkContext) -> None:
        self.context = context

    def begin(self, graph: RecordGraph) -> None:
        self.file = self.context.temp_path().open("w", encoding="utf-8")

    def write_profiles(self, batch: Sequence[Result]) -> None:
        pass

    def write_results(self, batch: Sequence[Result]) -> None:
        for result in batch:
            self.file.write(f"{result.pk} {result.created_at.isoformat()} {result.json_data}\n")

    def finish(self) -> Sequence[OutputReport]:
        self.file.close()
        return (OutputReport(path=self.context.target, rows=0),)

    def abort(self) -> None:
        self.file.close()


class EncodedSink(BaseSink):
    """Encodes its batches in the workers (an ``EncodingSink``): one line per result; the
    sinks made are in ``made``. A result whose pk is ``fail_at`` makes it raise."""

    made: ClassVar[list[EncodedSink]] = []
    fail_at: ClassVar[int | None] = None
    #: what write_encoded raises, if anything
    write_fails: ClassVar[Exception | None] = None

    def begin(self, graph: RecordGraph) -> None:
        self.file = self.context.temp_path().open("wb")
        self.rows = 0
        self.encoded_here = False
        self.aborted = False
        EncodedSink.made.append(self)

    def encode_result_batch(self, batch: ResultBatch) -> bytes:
        self.encoded_here = True  # (on a worker's copy: not seen by the parent's sink)
        return self.encode(batch.column("pk").to_pylist(), batch.column("score").to_pylist())

    def encode(self, pks: Sequence[int], scores: Sequence[float | None]) -> bytes:
        if self.fail_at in pks:
            raise ValueError(f"no line for result {self.fail_at}\n(a second line)")
        return "".join(f"{pk} {s}\n" for pk, s in zip(pks, scores, strict=True)).encode()

    def write_encoded(self, data: bytes, rows: int) -> None:
        if self.write_fails is not None:
            raise self.write_fails
        self.file.write(data)
        self.rows += rows

    def write_results(self, batch: Sequence[Result]) -> None:
        self.write_encoded(self.encode([r.pk for r in batch], [r.score for r in batch]), len(batch))

    def finish(self) -> Sequence[OutputReport]:
        self.file.close()
        return (OutputReport(path=self.context.target, rows=self.rows),)

    def abort(self) -> None:
        self.aborted = True
        self.file.close()


class HalfSink(BaseSink):
    """Defines half of an encoding sink (``write_encoded`` is missing): its batches would
    go nowhere."""

    def encode_result_batch(self, batch: ResultBatch) -> bytes:
        return b""  # pragma: no cover - the run refuses the sink first


class _Plugin:
    @hookimpl
    def exportkit_register_sinks(self) -> list[SinkSpec]:
        return [
            SinkSpec(name=name, description=name, options=_NoOptions, factory=factory)
            for name, factory in (
                ("columns", ColumnsSink),
                ("bare", BareSink),
                ("encoded", EncodedSink),
                ("half", HalfSink),
            )
        ]


def _run(text: str, source: Path, out: Path) -> dict[str, bytes]:
    pm = get_plugin_manager(load_entrypoints=False, plugins=[dummy_sink_module, _Plugin()])
    registry = registry_for(pm)
    template = parse_template(
        "manifest = false\n" + text, file="t.toml", folder=out, sinks=registry.sink_specs
    )
    run_export(template, source=str(source), out_dir=out, plugin_manager=pm)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture(autouse=True)
def _many_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 40_000)


def _given(source: Path) -> dict[str, bytes]:
    """What the plugin sinks must write: their lines for every trial result the source's
    reader gives (the records a sink that takes rows is meant to get)."""
    with FixtureZipSource(source, SourceOptions()) as src, src.read(Selection()) as graph:
        results = [r for batch in graph.trial_results() for r in batch]
    return {
        "lines.txt": "".join(f"{r.pk}\n" for r in results).encode(),
        "columns.txt": "".join(f"{r.pk} {r.score}\n" for r in results).encode(),
        "encoded.txt": "".join(f"{r.pk} {r.score}\n" for r in results).encode(),
        "bare.txt": "".join(
            f"{r.pk} {r.created_at.isoformat()} {r.json_data}\n" for r in results
        ).encode(),
    }


def _check(
    got: dict[str, bytes], source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin sinks' files are :func:`_given`'s; the tables those of one chunk."""
    given = _given(source)
    for name, data in got.items():
        if name in given:
            assert data == given[name], name
    with monkeypatch.context() as patch:
        patch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 4 << 20)
        whole = _run(MIXED, source, tmp_path / "whole")
    assert whole.keys() == got.keys()
    for name in whole:
        if name not in given:
            assert got[name] == whole[name], name


def test_other_sinks_get_batches(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ColumnsSink.seen.clear()
    got = _run(MIXED, generated_zip, tmp_path / "cut")
    assert engine.LAST_RUN["batch_sinks"] == 6
    assert engine.LAST_RUN["encoding_sinks"] == 1
    chunks = engine.LAST_RUN["chunks"]
    assert chunks > 10
    # one batch per chunk, with the documented columns
    names = tuple(name for name, _ in engine.BATCH_COLUMNS)
    assert ColumnsSink.seen == [names] * chunks
    assert got["lines.txt"].count(b"\n") == engine.LAST_RUN["rows"]
    _check(got, generated_zip, tmp_path, monkeypatch)


def test_batches_without_a_spool_folder(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batches travel in the workers' messages when there is no spool folder."""
    monkeypatch.setattr(workers, "_spool_folder", lambda: None)
    got = _run(MIXED, generated_zip, tmp_path / "cut")
    assert engine.LAST_RUN["chunks"] > 10
    _check(got, generated_zip, tmp_path, monkeypatch)


def test_a_chunks_batch_is_handed_in_slices(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No sink gets more rows at once than ``BATCH_ROWS`` (a database chunk holds 200
    sessions), and the files are the same."""
    monkeypatch.setattr(batches, "BATCH_ROWS", 100)
    ColumnsSink.sizes.clear()
    got = _run(MIXED, generated_zip, tmp_path / "cut")
    assert max(ColumnsSink.sizes) == 100
    assert len(ColumnsSink.sizes) > engine.LAST_RUN["chunks"]
    assert sum(ColumnsSink.sizes) == engine.LAST_RUN["rows"]
    _check(got, generated_zip, tmp_path, monkeypatch)


def test_only_sinks_the_engine_does_not_write_take_the_engine(
    generated_zip: Path, tmp_path: Path
) -> None:
    """A run without an engine sink is the engine's too: its sinks get the batches."""
    got = _run(LINES, generated_zip, tmp_path / "cut")
    assert engine.LAST_RUN["batch_sinks"] == 1
    assert got == {"lines.txt": _given(generated_zip)["lines.txt"]}


@pytest.mark.parametrize("what", sorted(BAD))
def test_bad_data_beside_a_plugin_sink(
    what: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source's error or the files: a sink the engine does not write gets its batches
    as the chunks arrive; bad input ends the run with the source's error, and no
    temporary file is left."""
    broken = tmp_path / "broken.zip"
    _rewrite_results(generated_zip, broken, BAD[what])
    out = tmp_path / "out"
    if what in BAD_ERRORS:
        kind, message, _ = BAD_ERRORS[what]
        with pytest.raises(ExportkitError) as caught:
            _run(LONG + LINES, broken, out)
        assert type(caught.value).__name__ == kind
        assert str(caught.value).endswith(message.replace("{src}", str(broken)))
    else:
        got = _run(LONG + LINES, broken, out)
        assert got["lines.txt"] == _given(broken)["lines.txt"]
    assert not list(out.glob(".*")), list(out.iterdir())


def test_a_sink_encodes_its_batches_in_the_workers(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``encode_result_batch`` runs in the workers (the parent's sink never runs it), the
    parent writes the bytes in order and tells the sink their rows."""
    text = LONG + '[[sinks]]\ntype = "encoded"\npath = "encoded.txt"\n'
    EncodedSink.made.clear()
    got = _run(text, generated_zip, tmp_path / "fast")
    assert got["encoded.txt"] == _given(generated_zip)["encoded.txt"]
    assert engine.LAST_RUN["encoding_sinks"] == 1
    assert engine.LAST_RUN["chunks"] > 10
    (sink,) = EncodedSink.made
    assert not sink.encoded_here
    assert sink.rows == engine.LAST_RUN["rows"] == got["encoded.txt"].count(b"\n")


def test_a_sinks_error_in_a_worker_ends_the_run_with_its_error(
    generated_zip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """An exception of ``encode_result_batch`` (in a worker) ends the run with a one-line
    SinkError naming the sink and its file; the parent's sink is aborted, nothing is
    written, and the other workers end quietly (no traceback of a reply the parent no
    longer reads)."""
    text = LONG + '[[sinks]]\ntype = "encoded"\npath = "encoded.txt"\n'
    EncodedSink.made.clear()
    _run(text, generated_zip, tmp_path / "ok")
    pks = [
        int(line.split()[0]) for line in (tmp_path / "ok" / "encoded.txt").read_text().splitlines()
    ]
    monkeypatch.setattr(EncodedSink, "fail_at", pks[len(pks) // 2])  # (a chunk in the middle)
    EncodedSink.made.clear()
    out = tmp_path / "failed"
    with pytest.raises(SinkError) as raised:
        _run(text, generated_zip, out)
    error = raised.value
    assert error.sink == "encoded"
    assert error.path == str(out / "encoded.txt")
    assert error.message == (
        f"cannot encode trial results: ValueError: no line for result {pks[len(pks) // 2]}"
        " (a second line)"
    )
    assert "\n" not in str(error)
    (sink,) = EncodedSink.made
    assert sink.aborted
    assert 0 < sink.rows < len(pks)  # (the chunks before it were written, then dropped)
    assert not out.exists() or not list(out.iterdir())
    assert "Traceback" not in capfd.readouterr().err


def test_half_an_encoding_sink_is_its_error(generated_zip: Path, tmp_path: Path) -> None:
    """A sink with ``encode_result_batch`` but no ``write_encoded`` (a misspelt name) ends
    the run with its error before anything is read, rather than losing its batches."""
    out = tmp_path / "out"
    with pytest.raises(SinkError) as raised:
        _run(LONG + '[[sinks]]\ntype = "half"\npath = "half.txt"\n', generated_zip, out)
    assert raised.value.sink == "half"
    assert raised.value.message == (
        "defines encode_result_batch but not write_encoded; an encoding sink needs both"
    )
    assert not out.exists() or not list(out.iterdir())


def test_a_sinks_error_in_write_encoded_names_the_sink(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception of the sink's ``write_encoded`` (in the main process) is the sink's
    one-line error, not an internal one; the sink is aborted and nothing is written."""
    monkeypatch.setattr(EncodedSink, "write_fails", ValueError("no room\nfor it"))
    EncodedSink.made.clear()
    out = tmp_path / "out"
    with pytest.raises(SinkError) as raised:
        _run(LONG + '[[sinks]]\ntype = "encoded"\npath = "encoded.txt"\n', generated_zip, out)
    assert raised.value.sink == "encoded"
    assert raised.value.message == "cannot write: ValueError: no room for it"
    (sink,) = EncodedSink.made
    assert sink.aborted
    assert not out.exists() or not list(out.iterdir())

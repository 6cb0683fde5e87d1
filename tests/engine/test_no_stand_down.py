"""The engine takes every run (decisions 0028 and 0035): what the source's reader accepts,
the engine reads, and what it refuses, the engine refuses with the reader's error (type,
one line naming the file and the record, exit code). The reference is the source's own
record-by-record reading (``RecordGraph.trial_results``, which a chunk the columnar reading
refuses is read again with): its error, or its records, which the fixture zip's copy holds
and the row sinks get; the long table is compared with the sink's row builder fed the
engine's batches. What spans chunks is checked in the parent."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dummy_sink_module
import generate
from aml_exportkit import (
    BaseSink,
    OutputReport,
    ResultBatch,
    SinkSpec,
    engine,
    get_plugin_manager,
    hookimpl,
)
from aml_exportkit.cli import cli
from aml_exportkit.engine import from_records, native
from aml_exportkit.errors import EXIT_INTERNAL, ExportkitError
from aml_exportkit.graph import RecordGraph
from aml_exportkit.pipeline import open_source, registry_for, run_export
from aml_exportkit.selection import Selection
from aml_exportkit.sources import fixture_zip_chunks, muscle_db_chunks
from aml_exportkit.tabular.sink import TableSink
from aml_exportkit.template.load import parse_template
from conftest import REFERENCE

LONG = '[[sinks]]\ntype = "csv-long"\npath = "long.csv"\n'
FIXTURE = '[[sinks]]\ntype = "fixture-json"\npath = "copy.zip"\n'
#: (rows per participant: a table the engine does not render, fed its batches)
WIDE = '[[sinks]]\ntype = "csv-wide"\npath = "wide.csv"\n[sinks.wide]\nrow_per = "participant"\n'
BATCHES = '[[sinks]]\ntype = "gate"\npath = "gate.txt"\n'


#: every case: no stand-down may reach the run (tests/engine/conftest.py)


@attrs.frozen
class _NoOptions:
    pass


class GateSink(BaseSink):
    """Writes one line per result from the batches, and opens ``gate`` at its first batch
    (a worker waits for it before it reads the last chunk)."""

    gate: ClassVar[Any] = None

    def begin(self, graph: RecordGraph) -> None:
        self.file = self.context.temp_path().open("w", encoding="utf-8")
        self.rows = 0

    def write_result_batch(self, batch: ResultBatch) -> None:
        if GateSink.gate is not None:
            GateSink.gate.set()
        for pk, session in zip(
            batch.column("pk").to_pylist(), batch.column("session").to_pylist(), strict=True
        ):
            self.file.write(f"{pk} {session}\n")
        self.rows += batch.num_rows

    def finish(self) -> Sequence[OutputReport]:
        self.file.close()
        return (OutputReport(path=self.context.target, rows=self.rows),)

    def abort(self) -> None:
        self.file.close()


class _Plugin:
    @hookimpl
    def exportkit_register_sinks(self) -> list[SinkSpec]:
        return [SinkSpec(name="gate", description="gate", options=_NoOptions, factory=GateSink)]


def _run(text: str, source: Path, out: Path) -> dict[str, bytes]:
    pm = get_plugin_manager(load_entrypoints=False, plugins=[dummy_sink_module, _Plugin()])
    registry = registry_for(pm)
    template = parse_template(
        "manifest = false\n" + text, file="t.toml", folder=out, sinks=registry.sink_specs
    )
    run_export(template, source=str(source), out_dir=out, plugin_manager=pm)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _outcome(text: str, source: Path, out: Path) -> Any:
    try:
        return _run(text, source, out)
    except ExportkitError as exc:
        return (type(exc), str(exc).replace(str(out), "OUT"), exc.exit_code)


def _read(uri: str, blocks: Sequence[str] = ()) -> Any:
    """The source's own reading, record by record: its trial results, or its error as
    :func:`_outcome` gives it (``OUT`` is no part of a reading's error)."""
    try:
        with (
            open_source(uri) as source,
            source.read(Selection(blocks=tuple(blocks))) as graph,
        ):
            for _ in graph.profile_results():
                pass
            return [r for batch in graph.trial_results() for r in batch]
    except ExportkitError as exc:
        return (type(exc), str(exc), exc.exit_code)


def _members(data: bytes) -> Any:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return json.loads(zf.read("results.json"))


def _check(text: str, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The engine's outcome, checked against the source's reading: the same error, or the
    files its records make (the fixture zip's copy holds the source's objects, the row
    sink one line per record, the long table is its row builder's); the outcome."""
    got = _outcome(text, source, tmp_path / "engine")
    assert not list((tmp_path / "engine").glob(".*"))
    read = _read(str(source))
    if isinstance(read, tuple):
        assert got == read
        return got
    assert isinstance(got, dict), got
    if "copy.zip" in got:
        with zipfile.ZipFile(source) as zf:
            assert _members(got["copy.zip"]) == json.loads(zf.read("results.json"))
    if "gate.txt" in got:
        assert got["gate.txt"] == "".join(f"{r.pk} {r.session}\n" for r in read).encode()
    with monkeypatch.context() as patch:
        patch.setattr(TableSink, "engine_table", lambda self: None)
        built = _run(text, source, tmp_path / "builder")
    for name in ("long.csv", "wide.csv"):
        if name in got:
            assert got[name] == built[name], name
    return got


def _rewrite(
    source: Path,
    target: Path,
    change: Callable[[bytes], bytes] = lambda data: data,
    compress: int = zipfile.ZIP_STORED,
) -> None:
    """Copy a zip, changing the text of results.json (and how it is stored)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "results.json":
                data = change(data)
                info.compress_type = compress
            zout.writestr(info, data)


def _edit(change: Callable[[list[Any]], None]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        items = json.loads(data)
        change(items)
        return json.dumps(items, ensure_ascii=False).encode("utf-8")

    return edit


def _json_data(index: int, text: str) -> Callable[[bytes], bytes]:
    """Put ``text`` (JSON as written) as the json_data of result ``index``."""

    def edit(data: bytes) -> bytes:
        items = json.loads(data)
        items[index]["fields"]["json_data"] = "@@HERE@@"
        return (
            json.dumps(items, ensure_ascii=False)
            .encode("utf-8")
            .replace(b'"@@HERE@@"', text.encode("utf-8"))
        )

    return edit


@pytest.fixture(autouse=True)
def _many_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 40_000)


#: Inputs the source's reader accepts and the engine used to stand down for.
ACCEPTED: dict[str, tuple[Callable[[bytes], bytes], int]] = {
    "deflated results.json": (lambda data: data, zipfile.ZIP_DEFLATED),
    "a surrogate pair": (_json_data(700, '{"face": "\\ud83d\\ude00"}'), zipfile.ZIP_STORED),
    "json_data 230 levels deep": (
        _json_data(700, "[" * 230 + "]" * 230),
        zipfile.ZIP_STORED,
    ),
    "a field beyond MUSCLE's": (
        _edit(lambda items: items[700]["fields"].update(newer={"a": [1, 2]})),
        zipfile.ZIP_STORED,
    ),
    "created_at with an offset": (
        _edit(lambda items: items[700]["fields"].update(created_at="2024-07-22T12:26:50+02:00")),
        zipfile.ZIP_STORED,
    ),
}


@pytest.mark.parametrize("text", [LONG + FIXTURE, LONG + WIDE + BATCHES], ids=["long", "batches"])
@pytest.mark.parametrize("what", sorted(ACCEPTED))
def test_what_the_reader_accepts_the_engine_reads(
    what: str, text: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    change, method = ACCEPTED[what]
    changed = tmp_path / "changed.zip"
    _rewrite(generated_zip, changed, change, method)
    assert isinstance(_check(text, changed, tmp_path, monkeypatch), dict)


def test_without_the_native_kernel(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Python reference of the kernel's columnar functions takes every chunk."""
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert isinstance(_check(LONG + FIXTURE, generated_zip, tmp_path, monkeypatch), dict)


def test_json_texts_without_the_kernel_take_the_python_reference(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that kept JSON texts for the kernel, and a renderer that finds none (the
    kernel is optional): the Python reference flattens the texts' values, the same bytes
    (a column written as JSON text cells included: ``"7"`` beside ``7``)."""

    def mixed(items: list[Any]) -> None:
        items[700]["fields"]["json_data"] = {"mixed": "7"}
        items[701]["fields"]["json_data"] = {"mixed": 7}

    changed = tmp_path / "changed.zip"
    _rewrite(generated_zip, changed, _edit(mixed))
    text = LONG + FIXTURE + '[[sinks]]\ntype = "parquet"\npath = "long.parquet"\n'
    with_kernel = _run(text, changed, tmp_path / "kernel")
    assert native.kernel() is not None
    monkeypatch.setattr(native, "kernel", lambda: None)

    def no_reference_reading(self: Any, task: Any) -> Any:
        raise AssertionError("a chunk went to the reference reading")

    # (the renderer's reference takes the texts, not the source's reading record by record)
    monkeypatch.setattr(fixture_zip_chunks.ZipTrialResults, "reference", no_reference_reading)
    reference = _run(text, changed, tmp_path / "reference")
    assert b',"""7""",' in with_kernel["long.csv"]
    assert reference == with_kernel


def _flip_crc(source: Path, target: Path) -> None:
    """A stored results.json whose bytes no longer match its CRC-32 (still valid JSON)."""
    _rewrite(source, target)
    data = bytearray(target.read_bytes())
    with zipfile.ZipFile(target) as zf:
        start = zf.getinfo("results.json").header_offset
    at = data.find(b'"question_key": "', start) + len('"question_key": "')
    data[at] = ord("Z") if data[at] != ord("Z") else ord("Y")
    target.write_bytes(bytes(data))


#: Inputs the source's reader refuses and the engine used to stand down for.
REFUSED: dict[str, Callable[[bytes], bytes]] = {
    "malformed JSON in a later chunk": lambda data: data.replace(b'"pk": 900,', b'"pk": 900,,'),
    "truncated": lambda data: data[: len(data) // 2],
    "trailing data": lambda data: data + b" x",
    "not an array": lambda data: b'{"model": "result.result"}',
    "empty": lambda data: b"",
    "empty array": lambda data: b"[ ]",
    "a lone surrogate": _json_data(700, '{"half": "\\ud83d"}'),
    "json_data too deep": _json_data(700, "[" * 300 + "]" * 300),
    "a number beyond a double": _json_data(700, "1e999"),
    "NaN": _json_data(700, "NaN"),
    "a wrong model": _edit(lambda items: items[700].update(model="session.session")),
    "a pk that is text": _edit(lambda items: items[700].update(pk="700")),
    "a missing field": _edit(lambda items: items[700]["fields"].pop("comment")),
    "a null question key": _edit(lambda items: items[700]["fields"].update(question_key=None)),
    "disorder across chunks": _edit(lambda items: items.insert(900, items.pop(10))),
    "a duplicate across chunks": _edit(lambda items: items[900].update(pk=items[10]["pk"])),
}


@pytest.mark.parametrize("text", [LONG + FIXTURE, LONG + WIDE + BATCHES], ids=["long", "batches"])
@pytest.mark.parametrize("what", sorted(REFUSED))
def test_what_the_reader_refuses_the_engine_refuses_alike(
    what: str, text: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.zip"
    _rewrite(generated_zip, broken, REFUSED[what])
    got = _check(text, broken, tmp_path, monkeypatch)
    assert isinstance(got, dict if what == "empty array" else tuple), got


def test_a_crc_error_is_the_zip_readers(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "broken.zip"
    _flip_crc(generated_zip, broken)
    got = _check(LONG, broken, tmp_path, monkeypatch)
    assert isinstance(got, tuple), got
    assert "Bad CRC-32" in got[1]


def test_batches_reach_a_sink_while_the_workers_still_run(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker that reads the last chunk waits until the sink has its first batch: were
    the batches handed only after the workers finished, it would wait in vain and the run
    would fail."""
    gate = multiprocessing.get_context("fork").Event()
    monkeypatch.setattr(GateSink, "gate", gate)
    work = fixture_zip_chunks.ZipTrialResults.work

    def waiting(self: Any, task: tuple[int, int, int, int]) -> Any:
        if task[1] == self.size and task[0] > 0:  # the last of several chunks
            assert gate.wait(timeout=120), "no batch reached the sink before the last chunk"
        return work(self, task)

    monkeypatch.setattr(fixture_zip_chunks.ZipTrialResults, "work", waiting)
    out = _run(LONG + BATCHES, generated_zip, tmp_path / "fast")
    assert engine.LAST_RUN["chunks"] > 2
    assert gate.is_set()
    assert out["gate.txt"].count(b"\n") == engine.LAST_RUN["rows"]


def test_the_engine_takes_a_run_without_an_engine_sink(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = _outcome(BATCHES + WIDE, generated_zip, tmp_path / "engine")
    assert engine.LAST_RUN["batch_sinks"] == 2
    assert isinstance(_check(BATCHES + WIDE, generated_zip, tmp_path, monkeypatch), dict)
    assert isinstance(got, dict)


# -- worker processes -------------------------------------------------------------------------


def _failing_worker(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Make the worker that reads the last of several chunks end or fail ``how``: killed
    by SIGKILL, exiting with code 3, or raising an exception that is no error of the data."""
    work = fixture_zip_chunks.ZipTrialResults.work

    def failing(self: Any, task: tuple[int, int, int, int]) -> Any:
        if task[1] == self.size and task[0] > 0:  # (only workers read chunks)
            if how == "signal":
                os.kill(os.getpid(), signal.SIGKILL)
            elif how == "exit":
                os._exit(3)
            raise ZeroDivisionError("a bug\nin a worker")  # (two lines: the error keeps one)
        return work(self, task)

    monkeypatch.setattr(fixture_zip_chunks.ZipTrialResults, "work", failing)


WORKER_FAILS = {
    "signal": "a worker process ended unexpectedly (killed by signal 9, SIGKILL)",
    "exit": "a worker process ended unexpectedly (exit code 3)",
    "exception": "a worker process failed: ZeroDivisionError: a bug in a worker",
}


@pytest.mark.parametrize("how", sorted(WORKER_FAILS))
def test_a_failed_worker_is_an_error_of_the_run(
    how: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process that dies (a real kill of the real process) or raises an exception
    of another type ends the run with an error saying so, the exit or the exception's type
    and message; nothing is written and no run falls back to another path."""
    _failing_worker(monkeypatch, how)
    out = tmp_path / "out"
    with pytest.raises(engine.WorkerError) as caught:
        _run(LONG + FIXTURE + BATCHES, generated_zip, out)
    assert str(caught.value) == WORKER_FAILS[how]
    if how == "exception":  # (the worker's traceback, for EXPORTKIT_DEBUG)
        assert "in failing" in caught.value.traceback
    assert not out.exists() or not list(out.iterdir())


def test_a_killed_worker_fails_the_command(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``exportkit run``: one line, the internal error's exit code, no output."""
    _failing_worker(monkeypatch, "signal")
    template = tmp_path / "t.toml"
    template.write_text(f'manifest = false\n[source]\nuri = "{generated_zip}"\n' + LONG)
    result = CliRunner().invoke(cli, ["run", str(template)])
    assert result.exit_code == EXIT_INTERNAL
    assert result.stderr.count("\n") == 1, result.stderr
    assert WORKER_FAILS["signal"] in result.stderr
    assert not (tmp_path / "long.csv").exists()


def test_a_failed_workers_traceback_under_exportkit_debug(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``EXPORTKIT_DEBUG=1``: the worker's own traceback is printed (where the bug is), not
    only the main process's; without it, one line."""
    _failing_worker(monkeypatch, "exception")
    template = tmp_path / "t.toml"
    template.write_text(f'manifest = false\n[source]\nuri = "{generated_zip}"\n' + LONG)
    result = CliRunner(env={"EXPORTKIT_DEBUG": "1"}).invoke(cli, ["run", str(template)])
    assert result.exit_code == EXIT_INTERNAL
    assert "in failing" in result.stderr  # (the worker's frame)
    assert WORKER_FAILS["exception"] in result.stderr


# -- the database source ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_db(pg_database: Callable[[Path | None], str]) -> str:
    dsn = pg_database(REFERENCE / "head" / "muscle_head.sql")
    generate.fill_database(dsn, generate.Size(20))
    return dsn


#: A change to one trial result of a middle session, which the source's reader refuses.
DB_REFUSED = {
    "a score that is NaN": "score = 'NaN'",
    "json_data too deep": (
        "json_data = ('{\"a\": ' || repeat('[', 300) || repeat(']', 300) || '}')::jsonb"
    ),
    "an integer too long to read": ("json_data = ('{\"a\": ' || repeat('9', 5000) || '}')::jsonb"),
}


@pytest.mark.parametrize("what", sorted(DB_REFUSED))
def test_bad_database_rows_give_the_readers_error(
    what: str, small_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(muscle_db_chunks, "CHUNK_SESSIONS", 3)
    with psycopg.connect(small_db, autocommit=True) as conn:
        row = conn.execute(
            "SELECT r.id, r.score, r.json_data::text FROM result_result r JOIN session_session s"
            " ON s.id = r.session_id JOIN experiment_block b ON b.id = s.block_id"
            " WHERE b.slug = %s ORDER BY r.session_id DESC, r.id LIMIT 1 OFFSET 40",
            (generate.BLOCK_SLUG,),
        ).fetchone()
        assert row is not None
        conn.execute(f"UPDATE result_result SET {DB_REFUSED[what]} WHERE id = %s", (row[0],))
        try:
            read = _read(small_db, (generate.BLOCK_SLUG,))
            assert isinstance(read, tuple), read
            with pytest.raises(ExportkitError) as caught:
                _run_db(LONG + BATCHES, small_db, tmp_path / "engine")
            error = caught.value
            assert (type(error), str(error), error.exit_code) == read
        finally:
            conn.execute(
                "UPDATE result_result SET score = %s, json_data = %s::jsonb WHERE id = %s",
                (row[1], row[2], row[0]),
            )


def _run_db(text: str, dsn: str, out: Path) -> None:
    pm = get_plugin_manager(load_entrypoints=False, plugins=[dummy_sink_module, _Plugin()])
    registry = registry_for(pm)
    template = parse_template(
        "manifest = false\n" + text, file="t.toml", folder=out, sinks=registry.sink_specs
    )
    run_export(template, source=dsn, out_dir=out, blocks=(generate.BLOCK_SLUG,), plugin_manager=pm)


@pytest.fixture
def no_snapshot_role(small_db: str) -> Iterator[str]:
    """The URI of ``small_db`` for a role that may read MUSCLE's tables but not export a
    snapshot (``pg_export_snapshot`` revoked from PUBLIC in that database): the server
    refuses the export, as a server in recovery or a pooler's role may."""
    role = f"exportkit_nosnap_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(small_db, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"')
        conn.execute("REVOKE EXECUTE ON FUNCTION pg_export_snapshot() FROM PUBLIC")
        try:
            yield small_db.replace("://postgres@", f"://{role}@")
        finally:
            conn.execute("GRANT EXECUTE ON FUNCTION pg_export_snapshot() TO PUBLIC")
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


@pytest.mark.parametrize("extra", [False, True], ids=["muscle", "a column beyond MUSCLE's"])
def test_a_database_that_exports_no_snapshot(
    extra: bool,
    small_db: str,
    no_snapshot_role: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without an exported snapshot, the parent reads the trial results in its own
    transaction (one consistent reading) and the engine cuts them into chunks: the same
    bytes as the workers' reading of the snapshot."""
    assert "postgres@" not in no_snapshot_role
    with psycopg.connect(no_snapshot_role) as conn, pytest.raises(psycopg.Error):
        conn.execute("SELECT pg_export_snapshot()")
    monkeypatch.setattr(muscle_db_chunks, "CHUNK_SESSIONS", 3)
    monkeypatch.setattr(from_records, "CHUNK_RESULTS", 100)
    with psycopg.connect(small_db, autocommit=True) as conn:
        if extra:
            conn.execute("ALTER TABLE result_result ADD COLUMN newer text DEFAULT 'kept'")
        try:
            outcome = []
            for dsn in (small_db, no_snapshot_role):
                out = tmp_path / str(len(outcome))
                _run_db(LONG + FIXTURE + BATCHES, dsn, out)
                assert engine.LAST_RUN["chunks"] > 1
                outcome.append({p.name: p.read_bytes() for p in out.iterdir()})
        finally:
            if extra:
                conn.execute("ALTER TABLE result_result DROP COLUMN newer")
    assert outcome[0] == outcome[1]
    if extra:
        with zipfile.ZipFile(tmp_path / "1" / "copy.zip") as zf:
            assert b'"newer": "kept"' in zf.read("results.json")


def test_a_database_column_beyond_muscles(
    small_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column of result_result that MUSCLE does not have is each record's extra: the
    fixture zip of the engine holds it in every object, and the long table and the row
    sink's lines, which show MUSCLE's fields only, are those without the column."""
    monkeypatch.setattr(muscle_db_chunks, "CHUNK_SESSIONS", 3)
    text = LONG + FIXTURE + BATCHES
    _run_db(text, small_db, tmp_path / "without")
    with psycopg.connect(small_db, autocommit=True) as conn:
        conn.execute("ALTER TABLE result_result ADD COLUMN newer text DEFAULT 'kept'")
        try:
            _run_db(text, small_db, tmp_path / "with")
        finally:
            conn.execute("ALTER TABLE result_result DROP COLUMN newer")
    got, without = (
        {p.name: p.read_bytes() for p in (tmp_path / name).iterdir()}
        for name in ("with", "without")
    )
    copied, before = _members(got["copy.zip"]), _members(without["copy.zip"])
    assert all(item["fields"].pop("newer") == "kept" for item in copied)
    assert copied == before
    assert got["long.csv"] == without["long.csv"]
    assert got["gate.txt"] == without["gate.txt"]


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_mutated_results_give_the_readers_outcome(
    small_generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: Any
) -> None:
    """Random edits of results.json's bytes: the engine's outcome is the source reader's,
    its error or its records. (One chunk: across chunks, a JSON syntax error after a bad
    record in the same 4 MiB read window of the reader is reported by the reader first, by
    the engine second; decision 0028.)"""
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 4 << 20)
    with zipfile.ZipFile(small_generated_zip) as zf:
        text = bytearray(zf.read("results.json"))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text) - 1))
        kind = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if kind == "flip":
            text[at] = data.draw(st.sampled_from(b'{}[],:"\\0123456789x -.eE'))
        elif kind == "insert":
            text[at:at] = data.draw(st.sampled_from([b",", b"]", b'"', b"0", b" ", b"\xff"]))
        else:
            del text[at : at + data.draw(st.integers(1, 40))]
    case = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    case.mkdir()
    broken = case / "broken.zip"
    _rewrite(small_generated_zip, broken, lambda _: bytes(text))
    _check(LONG + FIXTURE, broken, case, monkeypatch)

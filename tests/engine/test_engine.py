"""The engine writes what the recorded snapshots say (the plain path's bytes, recorded
before it went: decision 0035) however it cuts a run into chunks, applies the graph's
checks, and reports bad input with the source's error."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import generate
import snapshot_cases
from aml_exportkit import engine
from aml_exportkit.engine import native, workers
from aml_exportkit.errors import ExportkitError
from aml_exportkit.pipeline import registry_for, run_export
from aml_exportkit.sources import fixture_zip_chunks, muscle_db_chunks
from aml_exportkit.tabular.sink import TableSink
from aml_exportkit.template.load import parse_template
from conftest import REFERENCE, ROOT
from snapshot import Source

#: MUSCLE's dashboard zips (not the gzip-wrapped ones of ``manage.py exportblock``).
MUSCLE_ZIPS = sorted(REFERENCE.glob("*/block_*.zip"))
BENCH = (ROOT / "benchmarks" / "long.toml").read_text(encoding="utf-8")

LONG_PARQUET = """
[[sinks]]
type = "csv-long"
path = "a.csv"
{extra}
[[sinks]]
type = "parquet"
path = "a.parquet"
{extra}
"""

FIXTURE = '[[sinks]]\ntype = "fixture-json"\npath = "export.zip"\n'

TEMPLATES = {
    "bench": BENCH,
    "defaults": LONG_PARQUET.format(extra=""),
    "index": LONG_PARQUET.format(
        extra='[sinks.flatten]\nlists = "index"\nexclude = ["style*"]\n'
        'rename = { "result_json.value" = "answer" }\n'
    ),
    "depth": LONG_PARQUET.format(extra="[sinks.flatten]\nmax_depth = 1\n"),
    "include": LONG_PARQUET.format(extra='[sinks.flatten]\ninclude = ["config.*", "value"]\n'),
    "json": LONG_PARQUET.format(extra='result_json = "json"\n'),
    "omit": LONG_PARQUET.format(extra='result_json = "omit"\n'),
    "finished": "[filter]\nfinished_only = true\n" + LONG_PARQUET.format(extra=""),
    "parquet-only": '[[sinks]]\ntype = "parquet"\npath = "p.parquet"\nrow_group_size = 1000\n',
    "two-csv": LONG_PARQUET.format(extra="")
    .replace("a.parquet", "b.csv")
    .replace('type = "parquet"', 'type = "csv-long"'),
    "fixture": FIXTURE,
    # two zips and the long tables: every sink's part rendered from one parse of a chunk
    "fixture-long": FIXTURE
    + FIXTURE.replace("export.zip", "deflated.zip")
    + 'compression = "deflate"\n'
    + LONG_PARQUET.format(extra=""),
}


def _run(
    text: str, source: Path | str, out: Path, blocks: tuple[str, ...] | None = None
) -> dict[str, bytes]:
    registry = registry_for()
    template = parse_template(
        "manifest = false\n" + text, file="t.toml", folder=out, sinks=registry.sink_specs
    )
    report = run_export(template, source=str(source), out_dir=out, blocks=blocks)
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    rows = {o.path.name: o.rows for o in report.outputs}
    assert set(rows) == set(files)
    return files


def _compare(
    text: str,
    source: Path | str,
    tmp_path: Path,
    change: Callable[[], object],
    blocks: tuple[str, ...] | None = None,
) -> dict[str, bytes]:
    """Run ``text`` on ``source`` as a run is made by default (one chunk for these small
    sources, a sample that holds every column: what the snapshot cases pin), then again
    after ``change()`` (many chunks, a short sample, no spool folder); the files must be
    the same. Returns them."""
    whole = _run(text, source, tmp_path / "whole", blocks)
    assert engine.LAST_RUN["chunks"] <= 1, engine.LAST_RUN
    change()
    cut = _run(text, source, tmp_path / "cut", blocks)
    assert cut.keys() == whole.keys()
    for name in whole:
        assert cut[name] == whole[name], name
    return whole


def _small(
    monkeypatch: pytest.MonkeyPatch, chunk: int, sample: int | None = None
) -> Callable[[], None]:
    """A change for :func:`_compare`: the zip's chunks (and its sample) this small."""

    def change() -> None:
        monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", chunk)
        if sample is not None:
            monkeypatch.setattr(fixture_zip_chunks, "SAMPLE_BYTES", sample)

    return change


def built_alike(
    text: str,
    source: Path | str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    blocks: tuple[str, ...] | None = None,
) -> dict[str, bytes]:
    """The engine's files, and the same written by each table's row builder from the
    engine's batches (no table handed to the engine): they must be the same."""
    rendered = _run(text, source, tmp_path / "engine", blocks)
    stats = dict(engine.LAST_RUN)
    with monkeypatch.context() as patch:
        patch.setattr(TableSink, "engine_table", lambda self: None)
        built = _run(text, source, tmp_path / "builder", blocks)
        assert engine.LAST_RUN["batch_sinks"] == text.count("[[sinks]]")
    assert rendered.keys() == built.keys()
    for name in built:
        assert rendered[name] == built[name], name
    engine.LAST_RUN.clear()
    engine.LAST_RUN.update(stats)  # (what the engine's own run did)
    return rendered


#: The snapshot cases of long tables and fixture zips, run again cut into many chunks.
CHUNKED_CASES = [
    "long",
    "long-result-json",
    "long-flatten-options",
    "long-every-field-no-json",
    "fixture-json-long",
]


@pytest.mark.parametrize("case", CHUNKED_CASES)
@pytest.mark.parametrize("seed", sorted(snapshot_cases.GENERATED))
def test_small_chunks_and_a_short_sample(
    case: str,
    seed: str,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many chunks (cut at session boundaries), and a sample too small to hold every
    column: the chunks that did not know a column are rendered again, Parquet rebuilt, and
    the files are the recorded snapshot's."""
    source = tmp_path_factory.mktemp(seed) / f"block_{generate.BLOCK_SLUG}.zip"
    generate.write_zip(source, snapshot_cases.GENERATED[seed])
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 4_000)
    monkeypatch.setattr(fixture_zip_chunks, "SAMPLE_BYTES", 1_000)
    snapshot_cases.check_case(case, Source.zip(seed, source), tmp_path / "out")
    assert engine.LAST_RUN["chunks"] > 10


@pytest.mark.parametrize("name", ["bench", "index", "depth", "include", "finished", "two-csv"])
def test_small_chunks_of_other_options(
    name: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Options no snapshot case has: many chunks and a short sample give the files of one
    chunk."""
    _compare(TEMPLATES[name], generated_zip, tmp_path, _small(monkeypatch, 40_000, 3_000))
    assert engine.LAST_RUN["chunks"] > 10


#: Two long tables whose options make different columns of one chunk.
TWO_TABLES = """
[[sinks]]
type = "csv-long"
path = "a.csv"

[[sinks]]
type = "csv-long"
path = "b.csv"
[sinks.flatten]
lists = "index"
"""


@pytest.mark.parametrize("zip_path", MUSCLE_ZIPS, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_two_tables_rendered_again_each_with_its_own_columns(
    zip_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk rendered again for one table gets that table's final columns only: another
    table's columns once made the engine stand down ("a chunk changed between two
    readings")."""
    _compare(TWO_TABLES, zip_path, tmp_path, _small(monkeypatch, 4_000, 2_000))


@pytest.mark.parametrize("zip_path", MUSCLE_ZIPS, ids=lambda p: f"{p.parent.name}-{p.stem}")
@pytest.mark.parametrize("case", ["long", "long-flatten-options", "codebook"])
def test_reference_zips_in_chunks(
    case: str, zip_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MUSCLE's zips cut into chunks write their recorded snapshots (the codebook's
    questions and statistics merged in order)."""
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 20_000)
    source = Source.zip(snapshot_cases.zip_name(zip_path), zip_path)
    snapshot_cases.check_case(case, source, tmp_path / "out")


@pytest.mark.parametrize("name", ["bench", "defaults", "json"])
def test_codebook_runs_in_chunks(
    name: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The codebook's questions come from the engine's chunks, merged in order, after the
    profile answers': datapackage.json and codebook.md are those of one chunk, byte for
    byte (many chunks, so that merging matters)."""
    text = "codebook = true\n" + TEMPLATES[name]
    _compare(text, generated_zip, tmp_path, _small(monkeypatch, 40_000))
    assert engine.LAST_RUN["chunks"] > 10


def _no_read_back(path: Path) -> Any:
    raise AssertionError(f"read back: {path.name}")


def _counted_in_the_workers(
    text: str, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aml_exportkit import codebook

    monkeypatch.setattr(codebook, "profile_csv", _no_read_back)
    monkeypatch.setattr(codebook, "profile_parquet", _no_read_back)
    # many chunks, and a sample too short to hold every column
    _compare("codebook = true\n" + text, source, tmp_path, _small(monkeypatch, 4_000, 2_000))


@pytest.mark.parametrize("name", ["bench", "defaults", "index", "json", "parquet-only", "two-csv"])
def test_codebook_statistics_counted_in_the_workers(
    name: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's workers count the codebook's column statistics of the chunks they
    render; the parent merges them in order and reads no file it wrote back. Columns that
    only later chunks hold count as missing in the earlier ones; chunks rendered again and
    Parquet files rebuilt give the statistics of one chunk too (which the snapshot case
    ``codebook`` pins)."""
    _counted_in_the_workers(TEMPLATES[name], generated_zip, tmp_path, monkeypatch)
    assert engine.LAST_RUN["chunks"] > 10
    # (the json column is one: no later chunk finds another)
    assert bool(engine.LAST_RUN.get("rerendered_chunks")) is (name != "json")


@pytest.mark.parametrize("zip_path", MUSCLE_ZIPS, ids=lambda p: f"{p.parent.name}-{p.stem}")
@pytest.mark.parametrize("text", [BENCH, TWO_TABLES], ids=["bench", "two-tables"])
def test_codebook_statistics_of_chunks_rendered_again(
    text: str, zip_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MUSCLE's zips, whose sample misses columns whose cells are JSON text: every chunk is
    rendered again (for each table apart, with two tables), and its statistics counted
    again."""
    _counted_in_the_workers(text, zip_path, tmp_path, monkeypatch)


def test_an_admin_page_job_takes_the_engine_for_its_codebook(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admin page's worker always writes the codebook (and the manifest): its job runs
    on the engine, and the statistics come from the workers, not from reading back."""
    from aml_exportkit import codebook
    from aml_exportkit.contrib.django.jobstore import JobStore
    from aml_exportkit.contrib.django.worker import run_job

    store = JobStore(tmp_path / "jobs")
    job_id = store.create(
        {"template": {"kind": "upload", "ref": "t.toml", "label": "t.toml"}, "blocks": []},
        upload_text=BENCH,
    )
    monkeypatch.setattr(codebook, "profile_csv", _no_read_back)
    monkeypatch.setattr(codebook, "profile_parquet", _no_read_back)
    status = run_job(store, job_id, "export", str(generated_zip))
    assert status["state"] == "done", status
    assert engine.LAST_RUN["rows"] > 0, engine.LAST_RUN
    with zipfile.ZipFile(store.folder(job_id) / "export.zip") as archive:
        assert {"datapackage.json", "codebook.md"} <= set(archive.namelist())


@pytest.mark.parametrize("zip_path", MUSCLE_ZIPS, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_codebook_of_reference_zips(
    zip_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _compare("codebook = true\n" + BENCH, zip_path, tmp_path, _small(monkeypatch, 20_000))


def test_other_styles_get_the_engines_batches(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table the engine does not render itself is written from its record batches (the
    snapshot case ``other-sinks`` pins such tables' bytes), the same in many chunks."""
    text = '[[sinks]]\ntype = "csv-long"\npath = "a.csv"\nprofile = "columns"\n'
    _compare(text, generated_zip, tmp_path, _small(monkeypatch, 40_000))
    assert engine.LAST_RUN["batch_sinks"] == 1


def _rewrite_results(source: Path, target: Path, change: Callable[[list[Any]], None]) -> None:
    """Copy a zip, changing the parsed results.json (written back in Django's format)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "results.json":
                items = json.loads(data)
                change(items)
                data = json.dumps(items, ensure_ascii=False).encode("utf-8")
            zout.writestr(info, data)


def _set(index: int, key: str, value: Any) -> Callable[[list[Any]], None]:
    def change(items: list[Any]) -> None:
        where = items[index] if key == "pk" else items[index]["fields"]
        where[key] = value(items) if callable(value) else value

    return change


def _swap(items: list[Any]) -> None:
    items[0], items[-1] = items[-1], items[0]


BAD = {
    "duplicate pk": _set(300, "pk", lambda items: items[100]["pk"]),
    "session order": _swap,
    "unknown session": _set(200, "session", 99_999),
    "participant and session": _set(200, "participant", 1),
    "unknown section": _set(200, "section", 99_999),
    "bad timestamp": _set(200, "created_at", "2024-02-30T10:00:00.000Z"),
    "long question key": _set(200, "question_key", "q" * 65),
    "score text": _set(200, "score", "1.0"),
    "big integer in json": _set(200, "json_data", {"n": 12345678901234567890123}),
    "extra field": _set(200, "x", 1),
}


#: The error of each bad input of :data:`BAD` (the graph's and the source's, as the plain
#: path reported them before it went): class, message (``{src}`` the zip) and exit code.
BAD_ERRORS = {
    "duplicate pk": ("IntegrityError", "result 425: duplicate primary key", 5),
    "session order": (
        "SourceError",
        "result 326: results are not ordered by (session, pk): this one (session 1) comes"
        " after result 4817 (session 60)",
        4,
    ),
    "unknown session": (
        "IntegrityError",
        "result 525: session 99999 not found in {src}: sessions.json",
        5,
    ),
    "participant and session": (
        "IntegrityError",
        "result 525: a trial result needs a session and no participant; it has both",
        5,
    ),
    "unknown section": (
        "IntegrityError",
        "result 525: section 99999 not found in {src}: sections.json (MUSCLE exports only the"
        " sections of the playlists attached to the block now; set [source] missing_sections"
        ' = "keep" to keep the reference)',
        5,
    ),
    "bad timestamp": (
        "SourceError",
        "result 525: field 'created_at': expected an ISO 8601 timestamp, got"
        " '2024-02-30T10:00:00.000Z'",
        4,
    ),
    "long question key": (
        "SourceError",
        "result 525: field 'question_key' has 65 characters; MUSCLE's column holds at most 64",
        4,
    ),
    "score text": ("SourceError", "result 525: field 'score': expected float, got a string", 4),
}


@pytest.mark.parametrize("chunk_bytes", [4 << 20, 20_000], ids=["one-chunk", "many-chunks"])
@pytest.mark.parametrize("what", sorted(BAD))
def test_bad_data_gives_the_sources_error(
    what: str,
    chunk_bytes: int,
    generated_zip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine gives the source's error (type, text, record, exit code) or the output:
    the chunk at fault is read again record by record, what spans chunks (a duplicate
    key, the order) is checked in the parent. A value the table holds exactly (a big
    integer) or does not show (a field beyond MUSCLE's) is no error."""
    broken = tmp_path / "broken.zip"
    _rewrite_results(generated_zip, broken, BAD[what])
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", chunk_bytes)
    if what not in BAD_ERRORS:
        files = _run(BENCH, broken, tmp_path / "out")
        monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 4 << 20)
        whole = _run(BENCH, generated_zip, tmp_path / "whole")
        if what == "extra field":  # (the long table shows MUSCLE's fields only)
            assert files == whole
        else:
            assert files["results.csv"] != whole["results.csv"]
            assert b",12345678901234567890123," in files["results.csv"]
        return
    kind, message, code = BAD_ERRORS[what]
    with pytest.raises(ExportkitError) as caught:
        _run(BENCH, broken, tmp_path / "out")
    error = caught.value
    assert type(error).__name__ == kind
    expected = f"{{src}}: results.json: {message}".replace("{src}", str(broken))
    assert str(error) == expected
    assert error.exit_code == code
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    "what", ["duplicate pk", "bad timestamp", "big integer in json", "extra field", "deep json"]
)
def test_bad_data_in_a_fixture_zip_run(
    what: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fixture-json on the engine: the source's error or the zip (an error may come after
    its workers wrote part of results.json's text), and the engine's temporary text is
    gone either way; the zip keeps a big integer and fields beyond MUSCLE's as they were."""
    change = BAD.get(what) or _set(200, "json_data", json.loads("[" * 300 + "]" * 300))
    broken = tmp_path / "broken.zip"
    _rewrite_results(generated_zip, broken, change)
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 40_000)
    out = tmp_path / "out"
    if what in ("big integer in json", "extra field"):
        files = _run(FIXTURE, broken, out)
        with zipfile.ZipFile(io.BytesIO(files["export.zip"])) as zf:
            written = json.loads(zf.read("results.json"))
        with zipfile.ZipFile(broken) as zf:
            given = json.loads(zf.read("results.json"))
        assert written[200] == given[200]
    else:
        with pytest.raises(ExportkitError) as caught:
            _run(FIXTURE, broken, out)
        if what in BAD_ERRORS:
            kind, message, _ = BAD_ERRORS[what]
            assert type(caught.value).__name__ == kind
            assert str(caught.value).endswith(message.replace("{src}", str(broken)))
        else:  # deeper than MUSCLE's reader goes
            assert "result 525" in str(caught.value), caught.value
    assert not list(out.glob(".*")), list(out.iterdir())


def test_a_fixture_zip_of_many_chunks(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many chunks joined into one member: it parses, and holds every trial result once,
    in (session, pk) order; a dead run's text is swept like its temporary zip."""
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 40_000)
    # the text a run killed mid-way left beside its temporary zip goes with it
    stale = tmp_path / "out" / ".export.zip.exportkit-999999999-0badcafe.tmp.r"
    stale.parent.mkdir()
    stale.write_bytes(b"{}")
    files = _run(FIXTURE, generated_zip, tmp_path / "out")
    assert not stale.exists()
    assert engine.LAST_RUN["chunks"] > 10
    with zipfile.ZipFile(io.BytesIO(files["export.zip"])) as zf:
        assert zf.testzip() is None
        results = json.loads(zf.read("results.json"))
    with zipfile.ZipFile(generated_zip) as zf:
        source = json.loads(zf.read("results.json"))
    assert len(results) == len(source) == engine.LAST_RUN["rows"]
    keys = [(r["fields"]["session"], r["pk"]) for r in results]
    assert keys == sorted(keys)


def test_a_trial_key_repeating_a_profile_key(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile answers are read beside the engine (in a thread); their keys and the
    trial results' meet only at the end, and a clash is the graph's error (the trial
    result, read after the profile answers, is the duplicate), which the engine raises."""
    with zipfile.ZipFile(generated_zip) as zf:
        profile_pk = json.loads(zf.read("profiles.json"))[0]["pk"]
    broken = tmp_path / "clash.zip"
    _rewrite_results(generated_zip, broken, _set(200, "pk", profile_pk))
    with pytest.raises(ExportkitError) as caught:
        _run(BENCH, broken, tmp_path / "out")
    assert type(caught.value).__name__ == "IntegrityError"
    assert str(caught.value) == (
        f"{broken}: results.json: result {profile_pk}: duplicate primary key"
    )


def test_crc32_combine() -> None:
    a, b = b"hello, " * 1000, b"world" * 777
    assert fixture_zip_chunks.crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(
        a + b
    )
    assert fixture_zip_chunks.crc32_combine(zlib.crc32(a), 0, 0) == zlib.crc32(a)


def test_corrupt_member_fails_its_crc(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stored member whose bytes changed fails zipfile's CRC check; the engine checks it
    too (combining the chunks' CRCs) and reports it as the zip reader does."""
    data = bytearray(generated_zip.read_bytes())
    with zipfile.ZipFile(generated_zip) as zf:  # in results.json, which the engine reads
        start = zf.getinfo("results.json").header_offset
    at = data.find(b'"question_key": "', start) + 17
    data[at] = ord("Q") if data[at] != ord("Q") else ord("R")
    broken = tmp_path / "crc.zip"
    broken.write_bytes(bytes(data))
    with pytest.raises(ExportkitError, match="CRC") as caught:
        _run(BENCH, broken, tmp_path / "out")
    assert str(caught.value).startswith(f"{broken}: results.json: "), caught.value


# -- the database source ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bench", "defaults", "index", "finished", "parquet-only"])
def test_database_in_chunks(
    name: str,
    generated_db: tuple[str, dict[str, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database's sessions in groups of 7: the files of one group."""

    def change() -> None:
        monkeypatch.setattr(muscle_db_chunks, "CHUNK_SESSIONS", 7)

    _compare(TEMPLATES[name], generated_db[0], tmp_path, change, (generate.BLOCK_SLUG,))
    assert engine.LAST_RUN["chunks"] > 5


@pytest.mark.parametrize("case", ["long", "codebook"])
@pytest.mark.parametrize("block", snapshot_cases.HEAD_BLOCKS)
def test_reference_database_in_chunks(
    case: str, block: str, muscle_head_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MUSCLE HEAD's blocks read two sessions a chunk write their recorded snapshots (the
    codebook's questions from the chunks' jsonb texts)."""
    monkeypatch.setattr(muscle_db_chunks, "CHUNK_SESSIONS", 2)
    source = Source.database(f"db-head-{block}", muscle_head_db, block)
    snapshot_cases.check_case(case, source, tmp_path / "out")


@pytest.mark.parametrize("small", [False, True], ids=["sample", "chunks"])
def test_a_column_clash_is_the_sinks_error(
    small: bool, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename onto a column the data also makes: the engine raises the error of the
    first sink that has the clash (the snapshot case ``long-rename-clash`` records its
    wording), whether the sample shows the clash or only a worker's chunk (or the final
    columns) does."""
    if small:  # the sample too short to hold both columns
        monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 4_000)
        monkeypatch.setattr(fixture_zip_chunks, "SAMPLE_BYTES", 300)
    text = LONG_PARQUET.format(
        extra='[sinks.flatten]\nrename = { "result_json.value" = "result_json.view" }\n'
    )
    out = tmp_path / "out"
    with pytest.raises(ExportkitError) as caught:
        _run(text, generated_zip, out)
    assert type(caught.value).__name__ == "SinkError"
    message = str(caught.value)
    assert message.startswith(f"{out / 'a.csv'} (csv-long): two values would share the column")
    assert "result_json.view" in message
    assert not list(out.glob("*.csv"))


@pytest.mark.parametrize("name", ["bench", "two-csv"])
@pytest.mark.parametrize("small", [False, True], ids=["chunks", "rewritten"])
def test_manifest_digests_of_the_lanes_files(
    name: str, small: bool, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine hashes its CSV as it writes it; the manifest's digests are the files'."""
    import hashlib

    if small:  # chunks rendered again with the final columns: the manifest hashes them
        monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 40_000)
        monkeypatch.setattr(fixture_zip_chunks, "SAMPLE_BYTES", 3_000)
    registry = registry_for()
    template = parse_template(
        TEMPLATES[name], file="t.toml", folder=tmp_path, sinks=registry.sink_specs
    )
    run_export(template, source=str(generated_zip), out_dir=tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["outputs"]
    for entry in manifest["outputs"]:
        data = (tmp_path / entry["path"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), entry["path"]


@pytest.mark.parametrize("name", ["bench", "two-csv", "fixture-long"])
def test_without_a_spool_folder(
    name: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No spool folder (or a full one): the chunks' text and Arrow bytes come in the
    workers' messages, and the files are the same."""

    def change() -> None:
        _small(monkeypatch, 40_000)()
        monkeypatch.setattr(workers, "_spool_folder", lambda: None)

    _compare(TEMPLATES[name], generated_zip, tmp_path, change)


def test_spool_folders_of_ended_runs_are_swept(tmp_path: Path) -> None:
    """A run killed with SIGKILL leaves its spool folder; the next run removes it, and
    leaves the folders of runs still alive."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = tmp_path / f"exportkit-engine-{int(done.stdout)}-abc"
    dead.mkdir()
    (dead / "1-1").write_bytes(b"x" * 100)
    alive = tmp_path / f"exportkit-engine-{os.getpid()}-def"
    alive.mkdir()
    other = tmp_path / "exportkit-engine-notapid"
    other.mkdir()
    workers._sweep_spools(str(tmp_path))
    assert not dead.exists()
    assert alive.exists()
    assert other.exists()
    made = workers._spool_folder()
    assert made is not None
    assert Path(made).name.startswith(f"exportkit-engine-{os.getpid()}-")
    Path(made).rmdir()


def test_profiles_checked_in_one_go_when_no_sink_uses_them(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The benchmark's table omits profile answers: they are checked by the native
    kernel (not turned into records), and the run writes and counts what it does when
    the graph reads them."""
    registry = registry_for()
    template = parse_template(
        "manifest = false\n" + BENCH, file="t.toml", folder=tmp_path, sinks=registry.sink_specs
    )
    reports = {}
    reports["check"] = run_export(template, source=str(generated_zip), out_dir=tmp_path / "check")
    assert (engine.LAST_RUN.get("profiles") == "engine") is native.available()
    monkeypatch.setattr(engine, "check_profiles", lambda graph: False)  # the graph reads them
    reports["graph"] = run_export(template, source=str(generated_zip), out_dir=tmp_path / "graph")
    assert "profiles" not in engine.LAST_RUN
    for name in ("results.csv", "results.parquet"):
        assert (tmp_path / "check" / name).read_bytes() == (tmp_path / "graph" / name).read_bytes()
    with zipfile.ZipFile(generated_zip) as z:
        answers = len(json.loads(z.read("profiles.json")))
    assert reports["check"].result_counts == reports["graph"].result_counts
    assert reports["check"].result_counts["profile"] == answers


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ('"participant": ', '"participant": 999999999'),  # an unknown participant
        ('"score": ', '"score": NaN'),  # NaN: Python reads it, the kernel does not
    ],
)
def test_odd_profiles_go_through_the_graph(
    change: str,
    error: str,
    generated_zip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Profile answers the engine's check does not take are read by the graph, which reports
    (or accepts) them exactly as when nothing checks them in one go."""
    broken = tmp_path / "odd.zip"
    with zipfile.ZipFile(generated_zip) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "profiles.json":
                head, _, tail = data.partition(change.encode())  # the first answer's value
                data = head + error.encode() + b", " + tail.split(b", ", 1)[1]
            dst.writestr(info, data)
    outcomes = []
    for mode in ("check", "graph"):
        if mode == "graph":
            monkeypatch.setattr(engine, "check_profiles", lambda graph: False)
        try:
            files = _run(BENCH, broken, tmp_path / mode)
            outcomes.append(("ok", files["results.csv"]))
        except ExportkitError as exc:
            outcomes.append(("error", str(exc).replace(str(tmp_path / mode), "OUT")))
        if mode == "check" and native.available():
            assert engine.LAST_RUN.get("profiles", "").startswith("graph: ")
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == "error", outcomes[0]  # (an unknown participant; a NaN score)


def _late_mixed(items: list[Any]) -> None:
    """The last result's json_data holds a number as text, a null where others lack the
    key, and a big integer: after the sample, so the engine meets them in a late chunk."""
    data = items[-1]["fields"]["json_data"]
    data["decision_time"] = "7"
    data["late_null"] = None
    data["huge"] = 2**70
    items[0]["fields"]["json_data"]["late_null"] = 1.5


@pytest.mark.parametrize("native_on", ["1", "0"])
@pytest.mark.parametrize("name", ["bench", "defaults"])
def test_json_text_columns_found_after_the_sample(
    name: str,
    native_on: str,
    generated_zip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A column that needs JSON text cells only in a late chunk: every chunk is rendered
    again with JSON text there, byte for byte as one chunk whose sample saw it."""
    source = tmp_path / "late.zip"
    _rewrite_results(generated_zip, source, _late_mixed)
    monkeypatch.setenv("EXPORTKIT_NATIVE", native_on)
    _compare(TEMPLATES[name], source, tmp_path, _small(monkeypatch, 40_000, 3_000))
    assert engine.LAST_RUN["rerendered_chunks"] == engine.LAST_RUN["chunks"]
    written = b"".join(p.read_bytes() for p in (tmp_path / "cut").glob("*.csv"))
    assert b'"""7"""' in written  # the text among numbers, as JSON text
    assert b",null," in written or b",null\r\n" in written


def _late_whole_numbers(items: list[Any]) -> None:
    """Late results hold a whole decision time (2, and 2**53 exactly) among fractional
    ones: the column stays a number column."""
    items[-1]["fields"]["json_data"]["decision_time"] = 2
    items[-2]["fields"]["json_data"]["decision_time"] = 2**53


@pytest.mark.parametrize("native_on", ["1", "0"])
def test_whole_numbers_found_after_the_sample(
    native_on: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Integers among floats (found in a late chunk) leave the column numbers: no JSON
    text, a double in Parquet, the same bytes as one chunk whose sample saw them."""
    import pyarrow.parquet as pq

    source = tmp_path / "late.zip"
    _rewrite_results(generated_zip, source, _late_whole_numbers)
    monkeypatch.setenv("EXPORTKIT_NATIVE", native_on)
    _compare(TEMPLATES["defaults"], source, tmp_path, _small(monkeypatch, 40_000, 3_000))
    schema = pq.read_schema(tmp_path / "cut" / "a.parquet")
    assert str(schema.field("result_json.decision_time").type) == "double"
    written = (tmp_path / "cut" / "a.csv").read_bytes()
    assert b",2," in written or b",2\r\n" in written
    assert f",{2**53},".encode() in written or f",{2**53}\r\n".encode() in written

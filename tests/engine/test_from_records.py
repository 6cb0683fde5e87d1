"""The engine takes the trial results of any source: a plugin's (records in memory) and
several sources pooled into one graph, through the reader of records
(:mod:`aml_exportkit.engine.from_records`), byte for byte as the engine writes the same
results read from their zip by the zip's own chunk reader (whose outputs the snapshot cases
pin)."""

from __future__ import annotations

import contextlib
import json
import zipfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dummy_sink_module
from aml_exportkit import engine
from aml_exportkit.contracts import SourceOptions
from aml_exportkit.engine import batches, from_records
from aml_exportkit.errors import ExportkitError, SourceError
from aml_exportkit.graph import GraphBuilder, RecordGraph, SourceInfo
from aml_exportkit.pipeline import registry_for, run_export
from aml_exportkit.plugins import get_plugin_manager
from aml_exportkit.records import Result
from aml_exportkit.selection import Selection
from aml_exportkit.sources.fixture_zip import FixtureZipSource
from aml_exportkit.template.load import parse_template
from memory_source import PROVIDED, MemoryPlugin, MemorySource
from testdata import guide_sink

from .test_batches import _Plugin

#: Every kind of output the engine writes, and sinks it hands batches (a plugin's rows, a
#: columns-taking sink, csv-wide).
TEMPLATE = """
manifest = false

[[sinks]]
type = "csv-long"
path = "long.csv"

[[sinks]]
type = "parquet"
path = "long.parquet"

[[sinks]]
type = "fixture-json"
path = "export.zip"

[[sinks]]
type = "jsonl"
path = "results.jsonl"

[[sinks]]
type = "bare"
path = "bare.txt"

[[sinks]]
type = "columns"
path = "columns.txt"

[[sinks]]
type = "csv-wide"
path = "wide.csv"
"""


#: every case: no stand-down may reach the run (tests/engine/conftest.py)


class BatchedSource(MemorySource):
    """A :class:`MemorySource` that gives its trial results in batches of ``size`` (the
    last ones replaced by ``fail`` raising, when set)."""

    def __init__(
        self,
        tables: dict[str, Sequence[Any]],
        results: Sequence[Result],
        size: int = 50,
        fail: Exception | None = None,
    ) -> None:
        super().__init__(tables, results)
        self.size = size
        self.fail = fail
        self.given: list[int] = []

    @contextlib.contextmanager
    def read(self, selection: Selection) -> Iterator[RecordGraph]:
        builder = GraphBuilder(
            SourceInfo(kind="memory", location="memory:", schema_version="test", provided=PROVIDED)
        )
        for key, records in self.tables.items():
            for record in records:
                builder.add(key, record, f"memory {key}")
        profiles = sorted(
            (r for r in self.results if r.session is None), key=lambda r: (r.participant, r.pk)
        )
        trials = [r for r in self.results if r.session is not None]

        def batches() -> Iterator[list[Result]]:
            for start in range(0, len(trials), self.size):
                if self.fail is not None and start >= len(trials) // 2:
                    raise self.fail
                self.given.append(len(trials[start : start + self.size]))
                yield trials[start : start + self.size]

        yield builder.build(profile_results=lambda: [profiles], trial_results=batches)


def _records(zip_path: Path) -> tuple[dict[str, list[Any]], list[Result]]:
    """A zip's records, to serve from memory."""
    with FixtureZipSource(zip_path, SourceOptions()) as src, src.read(Selection()) as graph:
        tables = {key: list(graph.table(key).values()) for key in PROVIDED}
        results = [r for batch in graph.profile_results() for r in batch]
        results += [r for batch in graph.trial_results() for r in batch]
    return tables, results


def _run(source: MemorySource, out: Path, text: str = TEMPLATE) -> dict[str, bytes]:
    pm = get_plugin_manager(
        load_entrypoints=False,
        plugins=[MemoryPlugin(source), dummy_sink_module, _Plugin(), guide_sink()],
    )
    registry = registry_for(pm)
    template = parse_template(text, file="t.toml", folder=out, sinks=registry.sink_specs)
    run_export(template, source="memory:", out_dir=out, plugin_manager=pm)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _from_zip(zip_path: Path, out: Path, text: str = TEMPLATE) -> dict[str, bytes]:
    """What the same template writes from the zip the records came from."""
    pm = get_plugin_manager(
        load_entrypoints=False, plugins=[dummy_sink_module, _Plugin(), guide_sink()]
    )
    registry = registry_for(pm)
    template = parse_template(text, file="t.toml", folder=out, sinks=registry.sink_specs)
    run_export(template, source=str(zip_path), out_dir=out, plugin_manager=pm)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def _outcome(source: MemorySource, out: Path, text: str = TEMPLATE) -> Any:
    try:
        return _run(source, out, text)
    except ExportkitError as exc:
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture
def records(generated_zip: Path) -> tuple[dict[str, list[Any]], list[Result]]:
    return _records(generated_zip)


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(from_records, "CHUNK_RESULTS", 300)


def test_a_plugin_source_goes_through_the_engine(
    records: tuple[dict[str, list[Any]], list[Result]],
    generated_zip: Path,
    tmp_path: Path,
) -> None:
    tables, results = records
    source = BatchedSource(tables, results)
    zipped = _from_zip(generated_zip, tmp_path / "zip")
    assert _run(source, tmp_path / "engine") == zipped
    assert engine.LAST_RUN["chunks"] > 5
    # (the guide's sink encodes in the workers, on a reader of records as on a zip: its
    # bytes are handed to it with the chunks' batches, in order)
    assert engine.LAST_RUN["encoding_sinks"] == 1
    assert engine.LAST_RUN["rows"] == sum(source.given)
    assert sum(source.given) == sum(r.session is not None for r in results)


def test_one_worker_or_three_write_the_same(
    records: tuple[dict[str, list[Any]], list[Result]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tables, results = records
    outputs = []
    for jobs in ("1", "3"):
        monkeypatch.setenv(engine.JOBS_ENV, jobs)
        outputs.append(_run(BatchedSource(tables, results), tmp_path / jobs))
        assert engine.LAST_RUN["workers"] == int(jobs)
    assert outputs[0] == outputs[1]


def _with_extra(results: list[Result]) -> list[Result]:
    return [
        attrs.evolve(r, extra={"reaction": {"ms": r.pk, "big": 1 << 70}, "note": "ü"})
        if r.pk % 3 == 0
        else r
        for r in results
    ]


def test_fields_beyond_muscles_are_carried(
    records: tuple[dict[str, list[Any]], list[Result]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Result.extra`` reaches the fixture zip and the sinks that take rows; the tables,
    which show MUSCLE's fields only, are those of the results without it."""
    tables, results = records
    got = _run(BatchedSource(tables, _with_extra(results)), tmp_path / "extra")
    without = _run(BatchedSource(tables, results), tmp_path / "without")
    # (results.json is a stored member: its text is in the zip's bytes)
    assert b'"reaction": {"ms": 3, "big": 1180591620717411303424}' in got["export.zip"]
    assert b'"reaction"' not in without["export.zip"]
    assert got["long.csv"] == without["long.csv"]
    assert got["wide.csv"] == without["wide.csv"]
    # (the guide's sink writes MUSCLE's fields only)
    assert got["results.jsonl"] == without["results.jsonl"]


def test_a_batch_carries_extra_and_gives_it_back() -> None:
    checks = engine.Checks(
        sessions=frozenset({1}),
        excluded=frozenset(),
        sections=frozenset(),
        check_sections=False,
        keep_missing=False,
    )
    plain = [_result(1, 1), _result(2, 1)]
    cols, _ = batches.record_columns(plain, checks)
    assert cols.extra is None
    assert batches.result_batch(cols).schema.names == [n for n, _ in engine.BATCH_COLUMNS]
    mixed = [_result(1, 1), attrs.evolve(_result(2, 1), extra={"x": [1, 2.5]})]
    cols, _ = batches.record_columns(mixed, checks)
    table = batches.result_batch(cols)
    assert table.schema.names[-1] == "extra"
    assert table.column("extra").to_pylist() == [None, '{"x":[1,2.5]}']
    (batch,) = table.to_batches()
    assert batches.batch_results(batch) == mixed


@pytest.mark.parametrize("where", ["source", "spill"])
def test_the_sources_error_and_records_pickle_cannot_take(
    where: str,
    records: tuple[dict[str, list[Any]], list[Result]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The source's error, met while the engine reads, ends the run as it is; records that
    pickle cannot take stay in the parent's memory, where the workers find them, and the
    run writes what it writes for the same value in a plain dict."""
    tables, results = records
    fail = SourceError("the source broke", file="memory:") if where == "source" else None
    middle = results[len(results) // 2].pk

    def with_extra(extra: Any) -> list[Result]:
        return [attrs.evolve(r, extra=extra) if r.pk == middle else r for r in results]

    text = (
        '[[sinks]]\ntype = "bare"\npath = "b.txt"\n[[sinks]]\ntype = "csv-long"\npath = "l.csv"\n'
    )
    if where == "spill":  # a mapping pickle cannot take, halfway through
        results = with_extra(MappingProxyType({"x": 1}))
    source = BatchedSource(tables, results, fail=fail)
    got = _outcome(source, tmp_path / "engine", text)
    if where == "source":
        assert got == "SourceError: memory:: the source broke"
        trials = sum(r.session is not None for r in results)
        # every batch before the failure read once
        first_half = range(0, trials // 2, source.size)
        assert source.given == [min(source.size, trials - start) for start in first_half]
    else:
        expected = _run(BatchedSource(tables, with_extra({"x": 1})), tmp_path / "dict", text)
        # (the manifests differ only in the plugins' names: pluggy names a plugin object
        # registered without a name by its id)
        manifests = [json.loads(files.pop("manifest.json")) for files in (got, expected)]
        for manifest in manifests:
            manifest.pop("plugins")
        assert manifests[0] == manifests[1]
        assert got == expected
        trials = sum(r.session is not None for r in results)
        assert sum(source.given) == trials  # every batch read once


def test_bad_records_get_the_graphs_error(
    records: tuple[dict[str, list[Any]], list[Result]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Results out of order, an unknown session, a key held twice: the engine's reader
    applies the graph's checks and raises its error, naming the record; a text longer than
    MUSCLE's column, which the graph does not check, is written."""
    tables, results = records
    trials = [i for i, r in enumerate(results) if r.session is not None]
    middle = trials[len(trials) // 2]
    cases = {
        "order": [
            *results[: middle - 1],
            results[middle],
            results[middle - 1],
            *results[middle + 1 :],
        ],
        "session": [
            attrs.evolve(r, session=999_999) if i == middle else r for i, r in enumerate(results)
        ],
        "duplicate": [
            attrs.evolve(r, pk=results[trials[0]].pk) if i == trials[-1] else r
            for i, r in enumerate(results)
        ],
        "too long": [
            attrs.evolve(r, question_key="k" * 200) if i == middle else r
            for i, r in enumerate(results)
        ],
    }
    errors = {
        "order": "SourceError: trial results: result 2570: results are not ordered by"
        " (session, pk): this one (session 31) comes after result 2571 (session 31)",
        "session": "IntegrityError: trial results: result 2571: session 999999 not found in"
        " memory session",
        "duplicate": "IntegrityError: trial results: result 325: duplicate primary key",
    }
    for name, bad in cases.items():
        got = _outcome(BatchedSource(tables, bad), tmp_path / name)
        if name in errors:
            assert got == errors[name], name
        else:
            assert isinstance(got, dict), got
            assert b"k" * 200 in got["long.csv"]


def test_the_profile_answers_error_comes_first(
    records: tuple[dict[str, list[Any]], list[Result]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bad profile answer and a bad trial result: the profile answers are read first,
    and their error comes before the trial result's (which the engine's reader meets
    before its workers start)."""
    tables, results = records
    profiles = [i for i, r in enumerate(results) if r.session is None]
    trials = [i for i, r in enumerate(results) if r.session is not None]
    bad = [
        attrs.evolve(r, participant=888_888)
        if i == profiles[0]
        else attrs.evolve(r, session=999_999)
        if i == trials[3]
        else r
        for i, r in enumerate(results)
    ]
    got = _outcome(BatchedSource(tables, bad), tmp_path / "engine")
    assert got == (
        "IntegrityError: profile results: result 1: participant 888888 not found in memory"
        " participant"
    )


def test_pooled_sources_go_through_the_engine(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    zips = [
        str(reference_dir / "head/block_tafc-dvorak.zip"),
        str(reference_dir / "head/block_hooked-eurovision.zip"),
    ]
    text = TEMPLATE.replace('[[sinks]]\ntype = "bare"\npath = "bare.txt"\n\n', "")
    assert "bare" not in text
    outputs = []
    for chunk in (1_000_000, 20):  # one chunk, then many: the same files
        monkeypatch.setattr(from_records, "CHUNK_RESULTS", chunk)
        pm = get_plugin_manager(
            load_entrypoints=False, plugins=[dummy_sink_module, _Plugin(), guide_sink()]
        )
        out = tmp_path / str(chunk)
        registry = registry_for(pm)
        template = parse_template(text, file="t.toml", folder=out, sinks=registry.sink_specs)
        run_export(template, source=zips, out_dir=out, plugin_manager=pm)
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert engine.LAST_RUN["chunks"] > 1
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 6


def _result(pk: int, session: int, **kw: Any) -> Result:
    values: dict[str, Any] = {
        "pk": pk,
        "session": session,
        "participant": None,
        "section": None,
        "created_at": datetime(2024, 7, 22, tzinfo=UTC),
        "question_key": "q",
        "expected_response": None,
        "given_response": None,
        "comment": "",
        "score": None,
        "scoring_rule": "",
        "json_data": None,
    }
    values.update(kw)
    return Result(**values)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 80), max_value=1 << 80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(minutes=-330))])


@st.composite
def _results(draw: st.DrawFn) -> list[Result]:
    count = draw(st.integers(min_value=1, max_value=12))
    out = []
    pk = 0
    for _ in range(count):
        pk += draw(st.integers(min_value=1, max_value=3))
        moment = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)))
        out.append(
            _result(
                pk,
                draw(st.integers(min_value=1, max_value=3)),
                section=draw(st.none() | st.just(7)),
                created_at=moment.replace(tzinfo=draw(_ZONES)),
                question_key=draw(st.text(max_size=8)),
                given_response=draw(st.none() | st.text(max_size=8)),
                comment=draw(st.text(max_size=4)),
                score=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
                json_data=draw(_JSON),
                extra=draw(st.just({}) | st.dictionaries(st.text(max_size=3), _JSON, max_size=2)),
            )
        )
    return sorted(out, key=lambda r: (r.session, r.pk))


@settings(max_examples=200, deadline=None)
@given(_results())
def test_records_to_columns_and_back(results: list[Result]) -> None:
    """The records a source gives, made columns, are the records a sink that takes rows
    gets (:func:`~aml_exportkit.engine.batches.result_records`), and so is their batch."""
    checks = engine.Checks(
        sessions=frozenset({1, 2, 3}),
        excluded=frozenset(),
        sections=frozenset({7}),
        check_sections=True,
        keep_missing=False,
    )
    cols, meta = batches.record_columns(results, checks)
    assert batches.result_records(cols) == results
    assert meta["first"] == (results[0].session, results[0].pk)
    (batch,) = batches.result_batch(cols).to_batches()
    assert batches.batch_results(batch) == results


@pytest.mark.pg
def test_a_database_pooled_with_zips_goes_through_the_engine(
    muscle_head_db: str, reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database with its own block's zip (each object kept once, with the database's
    finer timestamps) and another block's zip."""
    sources = [
        muscle_head_db,
        str(reference_dir / "head" / "block_tafc-dvorak.zip"),
        str(reference_dir / "head" / "block_hooked-eurovision.zip"),
    ]
    text = TEMPLATE.replace('[[sinks]]\ntype = "bare"\npath = "bare.txt"\n\n', "")
    outputs = []
    for chunk in (1_000_000, 20):  # one chunk, then many: the same files
        monkeypatch.setattr(from_records, "CHUNK_RESULTS", chunk)
        pm = get_plugin_manager(
            load_entrypoints=False, plugins=[dummy_sink_module, _Plugin(), guide_sink()]
        )
        out = tmp_path / str(chunk)
        registry = registry_for(pm)
        template = parse_template(text, file="t.toml", folder=out, sinks=registry.sink_specs)
        run_export(template, source=sources, blocks=["tafc-dvorak"], out_dir=out, plugin_manager=pm)
        outputs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert engine.LAST_RUN["chunks"] > 1
    assert outputs[0] == outputs[1]


def test_a_plugin_sources_codebook_on_the_engine(
    records: tuple[dict[str, list[Any]], list[Result]],
    generated_zip: Path,
    tmp_path: Path,
) -> None:
    """The codebook's questions come from the chunks, merged in order: the codebook of
    the same results read from their zip."""
    tables, results = records
    text = "codebook = true\n" + TEMPLATE.replace("manifest = false\n", "")
    got = _run(BatchedSource(tables, results), tmp_path / "engine", text)
    zipped = _from_zip(generated_zip, tmp_path / "zip", text)
    assert "codebook.md" in got
    manifest = "manifest.json"  # it names the source and the output folder, which differ
    assert {k: v for k, v in got.items() if k != manifest} == {
        k: v for k, v in zipped.items() if k != manifest
    }


def _deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


#: Values MUSCLE's columns cannot hold, in a plugin source's records: the change to one trial
#: result, and the error's start after ``result <pk>: `` (the graph's own, where it checks).
UNFIT: dict[str, tuple[dict[str, Any], str]] = {
    "a text field that is not text": ({"question_key": 5}, "field 'question_key': expected text"),
    "a score that is text": ({"score": "1.5"}, "field 'score': expected a number, got str"),
    "a score that is a boolean": ({"score": True}, "field 'score': expected a number, got bool"),
    "a score that is NaN": (
        {"score": float("nan")},
        "field 'score': expected a finite number, got nan",
    ),
    "an infinite score": (
        {"score": float("-inf")},
        "field 'score': expected a finite number, got -inf",
    ),
    "a section that is text": ({"section": "7"}, "section 7 not found in memory section"),
    "json_data too deep": (
        {"json_data": {"a": _deep(300)}},
        "field 'json_data': nested more than 252 levels deep; refusing it",
    ),
    "json_data JSON cannot hold": (
        {"json_data": {"a": {1, 2}}},
        "field 'json_data': JSON cannot hold it (Object of type set is not JSON serializable)",
    ),
    "extra JSON cannot hold": (
        {"extra": {"newer": object()}},
        "field 'extra': JSON cannot hold it (Object of type object is not JSON serializable)",
    ),
    "created_at without an offset": (
        {"created_at": datetime(2024, 7, 1, 12)},
        "field 'created_at': expected a timestamp with a UTC offset, got one without",
    ),
    "a pk that is text": ({"pk": "x7"}, "field 'pk': expected an integer, got str"),
}


@pytest.mark.parametrize("what", sorted(UNFIT))
def test_a_value_muscles_columns_cannot_hold_is_the_sources_error(
    what: str,
    records: tuple[dict[str, list[Any]], list[Result]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine takes the run and ends it with one line naming
    the source, the record and the field; nothing is written. (The row-by-row path, removed
    in decision 0035, crashed on most of these, or wrote a value no reader of ours
    accepts.)"""
    tables, results = records
    change, message = UNFIT[what]
    trials = [i for i, r in enumerate(results) if r.session is not None]
    middle = trials[len(trials) // 2]
    bad = [attrs.evolve(r, **change) if i == middle else r for i, r in enumerate(results)]
    out = tmp_path / "out"
    with pytest.raises(SourceError) as caught:
        _run(BatchedSource(tables, bad), out)
    pk = bad[middle].pk
    assert str(caught.value).startswith(f"trial results: result {pk}: {message}")
    assert "\n" not in str(caught.value)
    assert not out.exists() or not list(out.iterdir())


def test_a_time_zone_is_written_with_its_offset_at_the_instant(
    records: tuple[dict[str, list[Any]], list[Result]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``created_at`` in a zone whose offset changes (``zoneinfo``) is written with the
    offset it has at that instant, as ``isoformat`` writes it; a sink that takes rows gets
    the same instant."""
    zone = ZoneInfo("Europe/Amsterdam")
    tables, results = records
    trials = [i for i, r in enumerate(results) if r.session is not None]
    summer, winter = trials[10], trials[-10]
    times = {
        summer: datetime(2024, 7, 1, 12, 0, 0, 250000, tzinfo=zone),
        winter: datetime(2024, 1, 1, 12, 0, tzinfo=zone),
    }
    zoned = [
        attrs.evolve(r, created_at=times[i]) if i in times else r for i, r in enumerate(results)
    ]
    got = _run(BatchedSource(tables, zoned), tmp_path / "out")
    long = got["long.csv"].decode()
    for text in ("2024-07-01T12:00:00.250000+02:00", "2024-01-01T12:00:00.000000+01:00"):
        assert long.count(f",{text},") == 1, text
    lines = [json.loads(line) for line in got["results.jsonl"].splitlines()]
    jsonl = {line["result"]: line for line in lines}
    for i in (summer, winter):
        assert datetime.fromisoformat(jsonl[results[i].pk]["created_at"]) == times[i]


def test_a_mapping_as_extra_is_carried(
    records: tuple[dict[str, list[Any]], list[Result]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``extra`` may be any mapping (one pickle cannot take stays in the parent's memory,
    where the forked workers find it); the fixture zip and a batch hold it as a JSON
    object."""
    tables, results = records
    trials = [i for i, r in enumerate(results) if r.session is not None]
    middle = trials[len(trials) // 2]
    held = [
        attrs.evolve(r, extra=MappingProxyType({"newer": [1, "a"]})) if i == middle else r
        for i, r in enumerate(results)
    ]
    text = '[[sinks]]\ntype = "fixture-json"\npath = "export.zip"\n'
    _run(BatchedSource(tables, held), tmp_path / "out", text)
    with zipfile.ZipFile(tmp_path / "out" / "export.zip") as zf:
        items = json.loads(zf.read("results.json"))
    (item,) = [item for item in items if item["pk"] == results[middle].pk]
    assert item["fields"]["newer"] == [1, "a"]


def test_a_value_the_fixture_zip_cannot_hold_names_the_zip(
    records: tuple[dict[str, list[Any]], list[Result]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A NaN inside ``json_data`` (which the columns carry, and JSON cannot): the fixture
    sink's error names its zip and member, as the sink names it, though a worker met it."""
    tables, results = records
    trials = [i for i, r in enumerate(results) if r.session is not None]
    middle = trials[len(trials) // 2]
    bad = [
        attrs.evolve(r, json_data={"a": float("nan")}) if i == middle else r
        for i, r in enumerate(results)
    ]
    out = tmp_path / "out"
    got = _outcome(BatchedSource(tables, bad), out)
    assert got == (
        f"SinkError: {out}/export.zip: results.json (fixture-json): result {results[middle].pk}:"
        " Out of range float values are not JSON compliant; JSON cannot hold it"
    )

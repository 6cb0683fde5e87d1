"""The engine writes the wide table (csv-wide, wide Parquet) byte for byte as the sink's
own row builder (``tabular/wide.py``, the reference: the snapshot cases pin its bytes, and
it writes the wide tables the engine does not render) writes it from the engine's batches:
many chunks, sessions without results before, between and after them, JSON-text cells in
one key and not in another, and arbitrary ``json_data`` (hypothesis)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import generate
from aml_exportkit import engine
from aml_exportkit.contracts import SourceOptions
from aml_exportkit.engine import workers
from aml_exportkit.engine.batches import record_columns
from aml_exportkit.engine.chunks import make_checks
from aml_exportkit.engine.tables import make_renderer
from aml_exportkit.engine.wide import WideRenderer
from aml_exportkit.errors import SinkError, SourceError
from aml_exportkit.flatten import FlattenError
from aml_exportkit.selection import Selection
from aml_exportkit.sources import fixture_zip_chunks
from aml_exportkit.sources.fixture_zip import FixtureZipSource
from aml_exportkit.tabular.options import CsvWideOptions

from .test_engine import _rewrite_results, _run
from .test_engine import built_alike as _compare

WIDE = """
[[sinks]]
type = "csv-wide"
path = "w.csv"
{extra}
[[sinks]]
type = "parquet"
path = "w.parquet"
layout = "wide"
{extra}
"""

LAYOUTS = {
    "number": "",
    "question-key": '[sinks.wide]\nkey_by = "question_key"\n',
    "section": '[sinks.wide]\nkey_by = "section"\n',
    "index-lists": '[sinks.flatten]\nlists = "index"\n',
    "json": 'result_json = "json"\n',
    "no-json": 'result_json = "omit"\n',
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_generated_zip_same_bytes(
    layout: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _compare(WIDE.format(extra=LAYOUTS[layout]), generated_zip, tmp_path, monkeypatch)


#: Beside other tables, and with a filter (only finished sessions are rows).
MIXED = {
    "beside-long": WIDE.format(extra="")
    + '[[sinks]]\ntype = "csv-long"\npath = "l.csv"\n'
    + '[[sinks]]\ntype = "csv-wide"\npath = "q.csv"\n[sinks.wide]\nkey_by = "question_key"\n',
    "finished-only": "[filter]\nfinished_only = true\n" + WIDE.format(extra=""),
}


@pytest.mark.parametrize("name", sorted(MIXED))
def test_beside_other_tables_and_filtered(
    name: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 50_000)
    _compare(MIXED[name], generated_zip, tmp_path, monkeypatch)


def test_a_second_reading_sends_small_messages(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every chunk of a wide table is read twice; the second reading's final columns (the
    thousands of a real block's wide table) reach the workers in a file, so that each task's
    message stays far below what a pipe holds. (Sent with every task, they made a parent
    blocked sending to a worker that was blocked sending its chunk back: a hang.)"""
    sizes: list[int] = []
    real = workers._Workers.map

    def spy(self: Any, payloads: Any, idle: Any = None) -> Any:
        sizes.extend(len(pickle.dumps(p)) for p in payloads)
        return real(self, payloads, idle)

    monkeypatch.setattr(workers._Workers, "map", spy)
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 30_000)
    _compare(WIDE.format(extra=""), generated_zip, tmp_path, monkeypatch)
    assert engine.LAST_RUN["rerendered_chunks"] > 10
    assert max(sizes) < 2048


def _drop_sessions(items: list[Any]) -> None:
    """Drop every result of the first and the last session and of two in the middle: their
    rows come from the parent (between chunks) or from a worker (inside a chunk)."""
    sessions = sorted({i["fields"]["session"] for i in items})
    gone = {sessions[0], sessions[-1], sessions[len(sessions) // 2], sessions[5]}
    items[:] = [i for i in items if i["fields"]["session"] not in gone]


def _mixed_in_one_key(items: list[Any]) -> None:
    """Text where every other result has a number, in one result only: its key's column
    (and no other key's) gets JSON-text cells."""
    for item in items[40:]:
        data = item["fields"]["json_data"]
        if isinstance(data, dict) and isinstance(data.get("decision_time"), int | float):
            data["decision_time"] = "slow"
            return
    raise AssertionError("no decision_time to change")


@pytest.mark.parametrize("change", [_drop_sessions, _mixed_in_one_key], ids=["gaps", "mixed"])
@pytest.mark.parametrize("layout", ["number", "question-key"])
def test_many_chunks(
    change: Any,
    layout: str,
    generated_zip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = tmp_path / "changed.zip"
    _rewrite_results(generated_zip, source, change)
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 30_000)
    _compare(WIDE.format(extra=LAYOUTS[layout]), source, tmp_path, monkeypatch)
    assert engine.LAST_RUN["chunks"] > 10


@pytest.mark.parametrize(
    "extra",
    ['[sinks.wide]\nrow_per = "participant"\n', 'timestamps = "ms"\n'],
    ids=["participant", "ms"],
)
def test_tables_the_engine_hands_batches(
    extra: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows per participant, and times to the millisecond (which number a session's
    results by their cut times): the sink's own builder makes the table, fed the engine's
    batches, the same in one chunk and in many."""
    text = WIDE.format(extra=extra)
    whole = _run(text, generated_zip, tmp_path / "whole")
    assert engine.LAST_RUN["batch_sinks"] >= 1
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 30_000)
    assert _run(text, generated_zip, tmp_path / "cut") == whole
    assert engine.LAST_RUN["chunks"] > 10


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six sessions of ten results: fast enough for a hypothesis test of whole runs."""
    path = tmp_path_factory.mktemp("tiny") / "muscle_6.zip"
    generate.write_zip(path, generate.Size(6, trials=10))
    return path


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c.d"]), inner, max_size=3),
    ),
    max_leaves=6,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(_VALUES, min_size=1, max_size=60), layout=st.sampled_from(["", "index"]))
def test_any_json_data_same_bytes(
    values: list[Any],
    layout: str,
    tiny_zip: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever the results' ``json_data`` hold (nested, ragged, mixed types, big
    integers), the engine's columnar wide rows are the row builder's rows."""
    tmp_path = tmp_path_factory.mktemp("any")
    source = tmp_path / "any.zip"

    def change(items: list[Any]) -> None:
        for item, value in zip(items, values, strict=False):
            item["fields"]["json_data"] = value

    _rewrite_results(tiny_zip, source, change)
    extra = '[sinks.flatten]\nlists = "index"\n' if layout else ""
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 2_000)
    _compare(WIDE.format(extra=extra), source, tmp_path, monkeypatch)


def test_a_json_column_with_a_result_fields_name_is_a_clash(
    tiny_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``json_data`` column renamed to a result field's name is the table's clash, as in
    the long table (on the row-by-row path, removed in decision 0035, the row builder wrote
    the json value over the field's, so that one of the two was lost): no output."""
    text = WIDE.format(
        extra='[sinks.flatten]\nrename = { "result_json.decision_time" = "result_score" }\n'
    )
    with pytest.raises(SinkError) as caught:
        _run(text, tiny_zip, tmp_path / "out")
    assert str(caught.value).endswith(
        "w.csv (csv-wide): two values would share the column 'result_score': result 'score'"
        " and result_json 'decision_time'; change a prefix, the separator or a rename"
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_survey_refuses_a_json_column_with_a_result_fields_name(tiny_zip: Path) -> None:
    """The survey's own check (the flattener meets the clash first): the table's clash
    error, which the engine reports as the sink's."""
    with FixtureZipSource(tiny_zip, SourceOptions()) as src, src.read(Selection()) as graph:
        options = CsvWideOptions()
        renderer = make_renderer(options, graph)
        assert isinstance(renderer, WideRenderer)
        results = [r for batch in graph.trial_results() for r in batch][:5]
        chunk, _ = record_columns(results, make_checks(graph, frozenset()))
        with pytest.raises(FlattenError, match="two values would share the column 'result_score'"):
            renderer.survey(chunk, {"result_score": [1] * len(chunk)})


def test_a_chunk_that_changed_between_two_readings_is_the_sources_error(
    tiny_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk whose second reading holds a column its first did not (the source changed
    during the export, simulated here by a survey that forgets one) ends the run with the
    source's error naming the file and the chunk's sessions: no output, no fallback."""
    real = WideRenderer.survey

    def forgetful(
        self: WideRenderer, chunk: Any, dyn: Any
    ) -> tuple[tuple[str, ...], dict[str, set[type]]]:
        found, types = real(self, chunk, dyn)
        lost = {n for n in found if self.item(n)[1] == "result_json.decision_time"}
        return tuple(n for n in found if n not in lost), {
            n: t for n, t in types.items() if n not in lost
        }

    monkeypatch.setattr(WideRenderer, "survey", forgetful)
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 2_000)
    with pytest.raises(SourceError) as caught:
        _run(WIDE.format(extra=""), tiny_zip, tmp_path / "out")
    error = caught.value
    assert error.file == str(tiny_zip)
    assert error.model == "session"
    message = str(error)
    assert "\n" not in message
    assert "changed while they were exported: a second reading found the column" in message
    assert "'result_json.decision_time' under the key [[\"n\", 1]]" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

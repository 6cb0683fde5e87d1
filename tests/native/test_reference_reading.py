"""The three readings of a chunk of ``results.json`` agree: the native kernel's columns, the
Python reference of the same columnar functions (``EXPORTKIT_NATIVE=0``) and the reference
reading record by record (the source's own reader and the graph's checks), on random
chunks. A columnar reading may refuse a chunk (the worker then uses the reference reading);
whatever it accepts, it reads as the reference does."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aml_exportkit.contracts import SourceOptions
from aml_exportkit.engine import StandDown, make_checks, native
from aml_exportkit.engine.batches import result_records
from aml_exportkit.errors import SourceError
from aml_exportkit.graph import RecordGraph
from aml_exportkit.records import Result
from aml_exportkit.selection import Selection
from aml_exportkit.sources.fixture_zip import FixtureZipSource
from aml_exportkit.sources.fixture_zip_chunks import ZipTrialResults

pytestmark = pytest.mark.skipif(not native.available(), reason="the native kernel is not built")


@pytest.fixture(scope="module")
def graph(small_generated_zip: Path) -> Iterator[RecordGraph]:
    with (
        FixtureZipSource(small_generated_zip, SourceOptions()) as source,
        source.read(Selection()) as graph,
    ):
        yield graph


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=6),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
texts = st.text(max_size=8)
times = st.datetimes(datetime(2000, 1, 1), datetime(2030, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)


def _created(moment: datetime, style: int) -> str:
    if style == 0:  # Django's own
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if style == 1:
        return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return moment.astimezone(datetime.now(UTC).astimezone().tzinfo or UTC).isoformat()


@st.composite
def chunks(draw: st.DrawFn, sessions: list[int], sections: list[int]) -> list[dict[str, Any]]:
    """Results of a few sessions, each session's run in any pk order, as Django writes."""
    owners = draw(st.lists(st.sampled_from(sessions), min_size=1, max_size=4, unique=True))
    pks = iter(draw(st.permutations(range(1, 200))))
    items = []
    for owner in sorted(owners):
        for _ in range(draw(st.integers(1, 4))):
            fields: dict[str, Any] = {
                "session": owner,
                "participant": None,
                "section": draw(st.one_of(st.none(), st.sampled_from(sections))),
                "created_at": _created(draw(times), draw(st.integers(0, 2))),
                "question_key": draw(texts),
                "expected_response": draw(st.one_of(st.none(), texts)),
                "given_response": draw(st.one_of(st.none(), texts)),
                "comment": draw(texts),
                "score": draw(
                    st.one_of(
                        st.none(),
                        st.floats(allow_nan=False, allow_infinity=False),
                        st.integers(-(2**40), 2**40),
                    )
                ),
                "scoring_rule": draw(texts),
                "json_data": draw(json_values),
            }
            if draw(st.integers(0, 9)) == 0:
                fields["newer"] = draw(json_values)  # a field beyond MUSCLE's
            items.append({"model": "result.result", "pk": 10_000 + next(pks), "fields": fields})
    return items


def _reader(graph: RecordGraph, path: Path) -> ZipTrialResults:
    """A reader of ``path`` as if it were a stored results.json."""
    info = zipfile.ZipInfo("results.json")
    info.file_size = info.compress_size = path.stat().st_size
    fd = os.open(path, os.O_RDONLY)
    reader = ZipTrialResults(fd, info, frozenset(), where="x.zip: results.json")
    reader.graph = graph
    reader.checks = make_checks(graph, frozenset())
    return reader


def _reading(reader: ZipTrialResults, kernel: bool) -> list[Result] | None:
    """The columnar reading's records (None: it refused the chunk)."""
    task = reader.tasks()[0]
    data = reader._read(task[0], task[1] - task[0])
    old = os.environ.get(native.ENV_SWITCH)
    os.environ[native.ENV_SWITCH] = "1" if kernel else "0"
    try:
        cols, _ = reader._columns(data, task)
        return result_records(cols)
    except StandDown:
        return None
    finally:
        if old is None:
            del os.environ[native.ENV_SWITCH]
        else:
            os.environ[native.ENV_SWITCH] = old


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data(), st.booleans())
def test_kernel_python_and_reference_readings_agree(
    graph: RecordGraph, data: st.DataObject, ascii_only: bool
) -> None:
    items = data.draw(chunks(sorted(graph.sessions), sorted(graph.sections)))
    text = json.dumps(items, ensure_ascii=ascii_only).encode("utf-8")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.json"
        path.write_bytes(text)
        reader = _reader(graph, path)
        try:
            task = reader.tasks()[0]
            cols, _ = reader.reference(task)
            reference = result_records(cols)
            assert len(reference) == len(items)
            for kernel in (True, False):
                reading = _reading(reader, kernel)
                if reading is not None:
                    assert reading == reference, kernel
        finally:
            os.close(reader.fd)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_a_broken_chunk_gives_the_readers_error(graph: RecordGraph, data: st.DataObject) -> None:
    """A chunk with a byte changed: the columnar readings refuse it or read what the
    reference reads; the reference reads it or raises a SourceError naming the file."""
    items = data.draw(chunks(sorted(graph.sessions), sorted(graph.sections)))
    text = bytearray(json.dumps(items).encode("utf-8"))
    at = data.draw(st.integers(0, len(text) - 1))
    text[at] = data.draw(st.sampled_from(b'{}[],:"\\0x '))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.json"
        path.write_bytes(bytes(text))
        reader = _reader(graph, path)
        try:
            task = reader.tasks()[0]
            try:
                cols, _ = reader.reference(task)
            except SourceError as exc:
                error: SourceError | None = exc
            else:
                error = None
            if error is not None:
                assert error.location().startswith("x.zip: results.json")
                for kernel in (True, False):
                    assert _reading(reader, kernel) is None
                return
            reference = result_records(cols)
            for kernel in (True, False):
                reading = _reading(reader, kernel)
                if reading is not None:
                    assert reading == reference
        finally:
            os.close(reader.fd)


def test_created_at_of_every_style_is_the_same_moment() -> None:
    moment = datetime(2024, 7, 22, 10, 26, 50, 911000, tzinfo=UTC)
    for style in range(3):
        assert datetime.fromisoformat(_created(moment, style)) - moment <= timedelta(seconds=1)

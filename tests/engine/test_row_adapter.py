"""The row adapter (``result_rows``) is lossless: a batch's rows are the source's records,
equal field by field and of the same types, whatever form the batch's JSON texts take (the
engine's compact ones, or a source's raw text as the native kernel passes it on), in any
slice of the batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from aml_exportkit import engine, result_rows
from aml_exportkit.engine import batches
from aml_exportkit.records import Result

#: JSON values with what a reader may get wrong: integers beyond 64 bits (orjson would make
#: them floats), floats that equal integers, booleans (equal to 0 and 1), text beyond ASCII.
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 80), max_value=1 << 80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)
_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(minutes=-330))])


def typed(value: Any) -> Any:
    """``value`` with every type spelled out, so that ``1``, ``1.0`` and ``True`` differ
    (``==`` holds them equal) and an object's key order counts."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, datetime):
        return ("datetime", value.isoformat(), value.utcoffset())
    return (type(value).__name__, repr(value))


def typed_record(record: Result) -> list[Any]:
    return [(f.name, typed(getattr(record, f.name))) for f in Result.__attrs_attrs__]


@st.composite
def _records(draw: st.DrawFn) -> list[Result]:
    out = []
    pk = 0
    for _ in range(draw(st.integers(min_value=1, max_value=12))):
        pk += draw(st.integers(min_value=1, max_value=3))
        moment = draw(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)))
        out.append(
            Result(
                pk=pk,
                session=draw(st.integers(min_value=1, max_value=3)),
                participant=None,
                section=draw(st.none() | st.just(7)),
                created_at=moment.replace(tzinfo=draw(_ZONES)),
                question_key=draw(st.text(max_size=8)),
                expected_response=draw(st.none() | st.text(max_size=3)),
                given_response=draw(st.none() | st.text(max_size=8)),
                comment=draw(st.text(max_size=4)),
                score=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
                scoring_rule=draw(st.text(max_size=3)),
                json_data=draw(_JSON),
            )
        )
    return sorted(out, key=lambda r: (r.session, r.pk))


def _raw_batch(records: list[Result], texts: list[str]) -> pa.RecordBatch:
    """The batch of ``records`` with ``texts`` as its JSON texts (a source's own spelling,
    as the engine passes it on from the native kernel)."""
    columns: dict[str, list[Any]] = {
        "created_at": [r.created_at.isoformat() for r in records],
        "json_data": texts,
        "extra": [None] * len(records),
    }
    for name, _ in engine.BATCH_COLUMNS:
        if name not in columns:
            columns[name] = [getattr(r, name) for r in records]
    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in engine.BATCH_COLUMNS])
    return pa.RecordBatch.from_pydict(columns, schema=schema)


@settings(max_examples=300, deadline=None)
@given(_records(), st.sampled_from(["compact", "spaced", "ascii"]), st.data())
def test_the_row_adapter_gives_the_sources_records(
    records: list[Result], spelling: str, data: st.DataObject
) -> None:
    if spelling == "compact":  # the engine's own texts, for a source without a chunk reader
        checks = engine.Checks(
            sessions=frozenset({1, 2, 3}),
            excluded=frozenset(),
            sections=frozenset({7}),
            check_sections=True,
            keep_missing=False,
        )
        cols, _ = batches.record_columns(records, checks)
        (batch,) = batches.result_batch(cols).to_batches()
    else:  # a source's text: MUSCLE's spelling, or every character beyond ASCII escaped
        ascii_only = spelling == "ascii"
        batch = _raw_batch(
            records, [json.dumps(r.json_data, ensure_ascii=ascii_only) for r in records]
        )
    # a slice, as the engine hands a sink its chunks' batches (the column's buffers then
    # hold texts before and after it)
    start = data.draw(st.integers(min_value=0, max_value=len(records) - 1))
    stop = data.draw(st.integers(min_value=start + 1, max_value=len(records)))
    rows = result_rows(batch.slice(start, stop - start))
    assert [typed_record(r) for r in rows] == [typed_record(r) for r in records[start:stop]]
    created, values = engine.batch_values(batch)
    assert [typed(v) for v in values] == [typed(r.json_data) for r in records]
    assert [typed(c) for c in created] == [typed(r.created_at) for r in records]

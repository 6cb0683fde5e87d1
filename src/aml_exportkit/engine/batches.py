"""Trial results as Arrow record batches, for sinks that the engine does not write itself.

A worker turns a chunk's checked columns (:class:`~.chunks.ResultColumns`) into one record
batch (:func:`result_batch`, sent to the parent as IPC stream bytes); the parent hands the
batches, in order, to every sink of the run that is not an engine sink
(:meth:`~aml_exportkit.contracts.Sink.write_result_batch`). A sink that wants rows gets
them from :func:`batch_results`: the very :class:`~aml_exportkit.records.Result` records the
source's reader makes (:func:`result_records`, which the fixture zip's rendering uses
too: one conversion from columns to records).

The batch's columns (:data:`BATCH_COLUMNS`): ``pk``, ``session`` and ``section`` (int64),
``created_at`` (string: ISO 8601 with the source's UTC offset, as the CSV writes it; an
Arrow timestamp would keep one zone per column, not the offset of each value),
``question_key``, ``expected_response``, ``given_response``, ``comment``,
``scoring_rule`` (string), ``score`` (float64), ``json_data`` (string: the value's JSON
text) and ``extra`` (string: the JSON object of a result's fields beyond MUSCLE's, null when
it has none; a source's newer columns, kept as the record's ``extra``).

The way back, records to columns (:func:`record_columns`), is how the engine takes the trial
results of a source that offers no chunk reader of its own (:mod:`.from_records`).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from operator import attrgetter, lt
from typing import TYPE_CHECKING, Any, cast

import attrs
import orjson

from ..errors import SourceError
from ..jsonstream import MAX_JSON_DATA_NESTING, nesting_ok
from ..records import Result
from ..schema import RESULT
from .chunks import (
    Checks,
    ChunkMeta,
    ResultColumns,
    StandDown,
    datetime_texts,
    finish_columns,
    json_value,
    wide_integers,
)

if TYPE_CHECKING:
    from ..contracts import ResultBatch
    from .workers import ArrowTable

#: The columns of a trial result batch, in order, with their Arrow types.
BATCH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("pk", "int64"),
    ("session", "int64"),
    ("section", "int64"),
    ("created_at", "string"),
    ("question_key", "string"),
    ("expected_response", "string"),
    ("given_response", "string"),
    ("comment", "string"),
    ("score", "float64"),
    ("scoring_rule", "string"),
    ("json_data", "string"),
    ("extra", "string"),
)
#: The columns taken from :attr:`ResultColumns.fields` as they are.
_FIELDS = (
    "question_key",
    "expected_response",
    "given_response",
    "comment",
    "score",
    "scoring_rule",
)


_RECORD_FIELDS = attrgetter(
    "pk",
    "session",
    "participant",
    "section",
    "created_at",
    "question_key",
    "expected_response",
    "given_response",
    "comment",
    "score",
    "scoring_rule",
    "json_data",
    "extra",
)


def _pyarrow() -> Any:
    return importlib.import_module("pyarrow")


def _schema() -> Any:
    pa = _pyarrow()
    return pa.schema([(name, getattr(pa, kind)()) for name, kind in BATCH_COLUMNS])


def json_values(cols: ResultColumns) -> list[Any]:
    """The chunk's ``json_data`` values (the kernel's texts parsed as the reader parses
    them, and checked for depth as ``finish_columns`` checks parsed values).

    :raises StandDown: for a text the kernel's parser took and the reader's refuses.
    """
    if not cols.json_raw:
        return cols.json_data
    texts: list[bytes] = cols.json_data
    return _json_values(texts)


def _json_values(texts: list[bytes]) -> list[Any]:
    """The JSON ``texts`` parsed as :func:`~.chunks.json_value` parses each.

    One look for a wide integer over the whole column (joined by a byte that is not a digit,
    so no run of digits spans two texts), not one per text; then each text is parsed on its
    own (never as one array: a text that is not one value must fail alone).

    :raises StandDown: for a text the source's reference reading must judge.
    """
    try:
        if wide_integers(b",".join(texts)):
            data = [json_value(t) for t in texts]
        else:
            data = list(map(orjson.loads, texts))
    except (ValueError, RecursionError):
        raise StandDown("json_data: a text the reader's JSON parser refuses") from None
    if not nesting_ok(data, 1):
        raise StandDown("json_data nested too deeply")
    return data


def result_records(cols: ResultColumns) -> list[Result]:
    """A chunk's trial results as the records the source's reader makes."""
    fields = cols.fields
    # (created_at holds the CSV's text, ISO 8601 with the source's offset kept: it reads
    # back as the datetime the source's reader makes)
    records = [
        Result(
            pk=pk,
            session=session,
            participant=None,
            section=section,
            created_at=created,
            question_key=key,
            expected_response=expected,
            given_response=given,
            comment=comment,
            score=score,
            scoring_rule=rule,
            json_data=value,
        )
        for pk, session, section, created, key, expected, given, comment, score, rule, value in zip(
            cols.pk,
            cols.session,
            cols.section,
            map(datetime.fromisoformat, cols.created_at),
            fields["question_key"],
            fields["expected_response"],
            fields["given_response"],
            fields["comment"],
            fields["score"],
            fields["scoring_rule"],
            json_values(cols),
            strict=True,
        )
    ]
    if cols.extra is not None:
        records = [
            attrs.evolve(record, extra=extra) if extra else record
            for record, extra in zip(records, cols.extra, strict=True)
        ]
    return records


def record_columns(results: Sequence[Result], checks: Checks) -> tuple[ResultColumns, ChunkMeta]:
    """A chunk of trial results as a source's graph gives them (records) as checked
    columns in output order: the inverse of :func:`result_records`.

    The records passed the graph's checks (:class:`~aml_exportkit.graph.ResultChecker`,
    in the parent); what those do not check, a value MUSCLE's column cannot hold, is the
    source's error here, naming the first such record (:func:`unfit_record`).

    :raises SourceError: for a value of a field that MUSCLE's column cannot hold.
    """
    try:
        return _record_columns(results, checks)
    except StandDown as exc:
        unfit_record(results, checks)
        # (every value fits, yet the columns refused them: the engine's fault, not the data's)
        raise RuntimeError(f"{checks.origin}: the engine refused fit records ({exc})") from None


def _record_columns(results: Sequence[Result], checks: Checks) -> tuple[ResultColumns, ChunkMeta]:
    if not results:
        return finish_columns([], [], [], [], [], {}, [], [], checks)
    (
        pks,
        sessions,
        participants,
        sections,
        created,
        key,
        expected,
        given,
        comment,
        score,
        rule,
        data,
        extra,
    ) = zip(*map(_RECORD_FIELDS, results), strict=True)
    strings = {
        "question_key": key,
        "expected_response": expected,
        "given_response": given,
        "comment": comment,
        "scoring_rule": rule,
    }
    if not all(isinstance(e, Mapping) for e in extra):
        raise StandDown("extra: a value that is not a mapping")
    # (the zip reader sorts each session's run by pk, as its source does; records come
    # from the graph's source, which must give them in order)
    keys = list(zip(sessions, pks, strict=True))
    try:
        ordered = all(map(lt, keys, keys[1:]))
    except TypeError:  # a session or pk that is not a number: finish_columns names it
        ordered = True
    if not ordered:
        raise StandDown("results are not ordered by (session, pk)")
    if not _writable(data) or (any(extra) and not _writable(list(map(_plain, extra)))):
        # (a batch and the fixture zip hold each value's JSON text)
        raise StandDown("a value JSON cannot hold")
    return finish_columns(
        pks,
        sessions,
        participants,
        sections,
        datetime_texts(created),
        strings,
        score,
        list(data),
        checks,
        extra=list(extra) if any(extra) else None,
    )


#: The text fields of a result, and whether each may be null (MUSCLE's columns).
_TEXTS = tuple(
    (name, RESULT.field(name).nullable)
    for name in ("question_key", "expected_response", "given_response", "comment", "scoring_rule")
)


def unfit_record(results: Sequence[Result], checks: Checks) -> None:
    """Raise the source's error for the first record with a value MUSCLE's columns cannot
    hold (the rules every reader applies, docs/bad-input.md): a text field that is not
    text, a score that is not a finite number (decision 0019: PostgreSQL's double
    precision holds NaN and infinity, a fixture zip and JSON do not, and every reader
    refuses them), a section that is not an integer, a ``created_at`` that is not a
    ``datetime`` with a UTC offset, a ``json_data`` nested deeper than a fixture record's
    may be or that JSON cannot write, ``extra`` that is not a mapping or that JSON cannot
    write.

    :raises SourceError: naming the source, the record and the field.
    """
    for result in results:
        problem = _unfit(result)
        if problem is not None:
            field, message = problem
            raise SourceError(
                f"field {field!r}: {message}", file=checks.origin, model="result", pk=result.pk
            )


def _unfit(result: Result) -> tuple[str, str] | None:
    """The field of ``result`` whose value MUSCLE's columns cannot hold, and why."""
    for name, nullable in _TEXTS:
        value = getattr(result, name)
        if type(value) is not str and not (nullable and value is None):
            return name, f"expected text, got {_kind(value)}"
    score = result.score
    if score is not None:
        if type(score) is not float and type(score) is not int:
            return "score", f"expected a number, got {_kind(score)}"
        if not math.isfinite(score):
            return "score", f"expected a finite number, got {score!r}"
    section = result.section
    if section is not None and type(section) is not int:
        return "section", f"expected an integer, got {_kind(section)}"
    if type(result.created_at) is not datetime:
        return "created_at", f"expected a timestamp, got {_kind(result.created_at)}"
    if result.created_at.utcoffset() is None:
        return "created_at", "expected a timestamp with a UTC offset, got one without"
    if not nesting_ok(result.json_data, 2):
        return "json_data", (f"nested more than {MAX_JSON_DATA_NESTING} levels deep; refusing it")
    extra = result.extra
    if not isinstance(extra, Mapping):
        return "extra", f"expected a mapping, got {_kind(extra)}"
    for name, value in (("json_data", result.json_data), ("extra", _plain(extra))):
        try:
            _json_text(value)
        except (TypeError, ValueError, RecursionError) as exc:
            return name, f"JSON cannot hold it ({exc})"
    return None


def _writable(values: Sequence[Any]) -> bool:
    """Whether JSON can hold every value (:func:`_json_text` writes each)."""
    try:
        orjson.dumps(values)
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits, say: each
        try:
            for value in values:
                _json_text(value)
        except (TypeError, ValueError, RecursionError):
            return False
    return True


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _plain(extra: Mapping[str, Any]) -> Mapping[str, Any]:
    """A record's ``extra`` as a dict (it may be any mapping, which JSON writes as an
    object)."""
    return extra if type(extra) is dict else dict(extra)


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):  # an integer beyond 64 bits, deep nesting
        return json.dumps(value, ensure_ascii=False)


def _json_texts(cols: ResultColumns) -> list[str]:
    if not cols.json_raw:
        return [_json_text(v) for v in cols.json_data]
    json_values(cols)  # refuse here, in the worker, not when the parent hands the rows
    try:
        return [t.decode() for t in cols.json_data]
    except UnicodeDecodeError:  # pragma: no cover - the kernel reads UTF-8 only
        raise StandDown("json_data: a text that is not UTF-8") from None


def result_batch(cols: ResultColumns) -> ArrowTable:
    """The chunk's trial results as a table of :data:`BATCH_COLUMNS` in one record batch
    (a worker sends it to the parent as an Arrow IPC stream, written straight into its
    spool file)."""
    pa = _pyarrow()
    schema = _schema()
    values = {
        "pk": cols.pk,
        "session": cols.session,
        "section": cols.section,
        "created_at": cols.created_at,
        "json_data": _json_texts(cols),
        "extra": (
            [None] * len(cols)
            if cols.extra is None
            else [_json_text(_plain(e)) if e else None for e in cols.extra]
        ),
        **{name: cols.fields[name] for name in _FIELDS},
    }
    arrays = [pa.array(values.pop(f.name), f.type) for f in schema]
    return cast("ArrowTable", pa.Table.from_arrays(arrays, schema=schema))


#: The most rows of a batch handed to a sink: a chunk's batch is cut into slices (without a
#: copy) so that a sink that takes rows holds no more records at once than the graph's batches.
BATCH_ROWS = 4096


def read_batches(data: bytes) -> Iterator[ResultBatch]:
    """The record batches of an IPC stream of :func:`result_batch`'s tables, in slices of at
    most :data:`BATCH_ROWS` rows."""
    for batch in _pyarrow().ipc.open_stream(data):
        for start in range(0, batch.num_rows, BATCH_ROWS):
            yield batch.slice(start, BATCH_ROWS)


def table_batches(table: ArrowTable) -> Iterator[ResultBatch]:
    """The record batches of one of :func:`result_batch`'s tables (in a worker), in slices
    of at most :data:`BATCH_ROWS` rows, as :func:`read_batches` gives them."""
    for batch in cast("Any", table).to_batches():
        for start in range(0, batch.num_rows, BATCH_ROWS):
            yield batch.slice(start, BATCH_ROWS)


def _columns(batch: ResultBatch) -> ResultColumns:
    def column(name: str) -> list[Any]:
        return batch.column(name).to_pylist()

    cols = ResultColumns(
        pk=column("pk"),
        session=column("session"),
        section=column("section"),
        created_at=column("created_at"),
        fields={name: column(name) for name in _FIELDS},
        json_data=_json_values(_json_texts_of(batch)),
    )
    extra = column("extra")
    if any(e is not None for e in extra):
        cols.extra = [{} if e is None else json_value(e.encode()) for e in extra]
    return cols


def batch_results(batch: ResultBatch) -> list[Result]:
    """The batch's trial results as :class:`~aml_exportkit.records.Result` records, equal
    to those the source's reader makes: the row adapter of
    :meth:`~aml_exportkit.contracts.BaseSink.write_result_batch`."""
    return result_records(_columns(batch))


def batch_values(batch: ResultBatch) -> tuple[list[datetime], list[Any]]:
    """The batch's ``created_at`` and ``json_data`` as the values of the records
    :func:`batch_results` makes (datetimes; parsed JSON values), for a sink that takes the
    other columns as they are."""
    created = list(map(datetime.fromisoformat, batch.column("created_at").to_pylist()))
    return created, _json_values(_json_texts_of(batch))


def _json_texts_of(batch: ResultBatch) -> list[bytes]:
    # the column's UTF-8 bytes as they are (viewed as binary): not decoded to str only to
    # be encoded back for orjson (a tenth of the adapter's time, with text beyond ASCII)
    texts: list[bytes] = (
        _pyarrow().Array.view(batch.column("json_data"), _pyarrow().binary()).to_pylist()
    )
    return texts

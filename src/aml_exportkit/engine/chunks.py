"""Chunks of raw trial results as checked columns: the graph's rules, applied per chunk.

The engine (:mod:`aml_exportkit.engine`) never makes a
:class:`~aml_exportkit.records.Result`. A source's raw reader (a byte range of a zip's
``results.json``, a group of sessions of a database) turns a chunk into columns and hands
them to :func:`finish_columns`, which applies what :class:`~aml_exportkit.graph.RecordGraph`
checks for every result (types, foreign keys, duplicate keys, order, MUSCLE's column
lengths) and puts the rows in output order. Anything it does not accept raises
:class:`StandDown`, and the source reads that chunk again record by record
(:meth:`ResultChunks.reference`), which gives the chunk's plain values or the source's
error (its reader's, naming the file and the record): no input makes a :class:`StandDown`
reach the run.

A source offers its raw results to the engine as a :class:`ResultChunks` (and its profile
answers as a :class:`ProfileCheck`); those protocols, :class:`ResultColumns`,
:class:`ChunkMeta` and the helpers below are the whole of what a source uses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from operator import itemgetter, lt
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, TypeVar

import attrs
import orjson

from ..jsonstream import finite_float, nesting_ok
from ..scan import DataScan, note_question
from ..schema import RESULT, parse_datetime
from . import native

if TYPE_CHECKING:
    from ..graph import PkSet, RecordGraph

#: Bytes mapped so that a run of 19 digits (an integer that may exceed 64 bits) is a run of "0".
DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
NINETEEN_DIGITS = b"0" * 19
_MAX_LENGTH = {f.name: f.max_length for f in RESULT.fields if f.max_length is not None}
#: The length of ``datetime.isoformat(timespec="microseconds")`` without an offset.
_NAIVE_LENGTH = 26
_CREATED = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(?:\.\d{3})?Z"
)


class StandDown(Exception):
    """The columns (or the kernel) cannot take this: inside a worker, this chunk must be read
    by the source's reference reading (:meth:`ResultChunks.reference`); a profile check that
    raises it leaves the answers to the graph's reading. One that reaches the run is an
    internal error (``RuntimeError``), never a reason to read the run another way."""


class ChunkMeta(TypedDict, total=False):
    """What a source reports about one chunk besides its columns.

    ``first``/``last``: the (session, pk) of the first and last result kept (None when
    none is); ``missing``: results whose section is missing (kept as MUSCLE keeps them);
    ``edges``: the first and last session met, kept or not (a session must not span two
    chunks); ``crc``: the CRC-32 and length of the bytes read, when the source checks one
    at the end (:meth:`ResultChunks.finish`); ``position``: how far through its input the
    chunk ends (0 to 1), for the progress estimate.
    """

    first: tuple[int, int] | None
    last: tuple[int, int] | None
    missing: int
    edges: tuple[int | None, int | None]
    crc: tuple[int, int]
    position: float


TaskT = TypeVar("TaskT")


class ResultChunks(Protocol[TaskT]):
    """A source's trial results, readable chunk by chunk in worker processes.

    The engine calls :meth:`open` and :meth:`tasks` in the parent, :meth:`sample` once
    for the first columns, :meth:`work` in a worker (forked: the object is inherited,
    each task pickled) and :meth:`finish` with the chunks' CRCs once all are read. A task
    is the source's own description of a chunk (a byte range, a group of sessions); a
    chunk never splits a session.
    """

    def open(self, graph: RecordGraph) -> None:
        """Get ready to read the trial results of ``graph``'s selection."""

    def tasks(self) -> list[TaskT]:
        """The chunks, in output order."""

    def sample(self) -> ResultColumns | None:
        """Checked results from the start, for the first columns (None: none fit)."""

    def work(self, task: TaskT) -> tuple[ResultColumns, ChunkMeta]:
        """Read, parse and check one chunk (in a worker), with the native kernel where it
        takes the chunk; a chunk the columnar checks refuse is read by :meth:`reference`.

        :raises SourceError: the source's error (its reader's) for the chunk's first bad
            record.
        """

    def reference(self, task: TaskT) -> tuple[ResultColumns, ChunkMeta]:
        """Read one chunk without the native kernel, record by record, with the source's
        reader and the graph's checks (:class:`~aml_exportkit.graph.ResultChecker`): its
        plain values (``json_raw`` false), or the source's error.

        :raises SourceError: the error, naming the file (or table) and the record.
        :raises StandDown: only for what the columns cannot carry.
        """

    def finish(self, crcs: Sequence[tuple[int, int]]) -> None:
        """Check what spans the chunks' bytes (a zip member's CRC-32), in the parent."""


class ProfileCheck(Protocol):
    """A source's check of its profile answers, for runs whose sinks do not use them."""

    def check(self, graph: RecordGraph) -> tuple[PkSet, int, int]:
        """The answers' keys, their number and the number whose question is missing.

        :raises StandDown: when the graph must read them, record by record
            (:meth:`~aml_exportkit.graph.RecordGraph.profile_results`).
        """


#: What a ``json_data`` text holds if :func:`~aml_exportkit.scan.note_question` may find
#: anything in it: one of the keys it reads, or an escape that could spell one.
_QUESTION_MARKS = (b'"text"', b'"question"', b'"choices"', b"\\u")


def questions_of(cols: ResultColumns) -> DataScan:
    """A chunk's questions as the codebook notes them from each result in order: how
    often each ``question_key`` occurs, the question texts and choice labels in
    ``json_data`` (:meth:`~aml_exportkit.scan.DataScan.merge_questions` joins chunks).

    A JSON text is parsed only when it holds one of the keys read (or an escape).
    """
    found = DataScan()
    keys = cols.fields.get("question_key", [])  # (an empty chunk has no columns)
    found.question_keys.update(keys)
    for key, data in zip(keys, cols.json_data, strict=True):
        if cols.json_raw:
            if not any(mark in data for mark in _QUESTION_MARKS):
                continue
            data = json_value(data)
        note_question(found, key, data)
    return found


def json_value(text: bytes) -> Any:
    """A ``json_data`` text (one the native kernel read and checked) as its value: orjson's,
    or the standard library's when an integer may exceed 64 bits (kept exact, as the source's
    reader keeps it)."""
    if wide_integers(text):
        return json.loads(text, parse_float=finite_float)
    return orjson.loads(text)


def wide_integers(text: bytes) -> bool:
    """Whether ``text`` may hold an integer beyond 64 bits (a run of 19 digits)."""
    return text.translate(DIGITS_TO_ZERO).find(NINETEEN_DIGITS) >= 0


class ResultColumns:
    """One chunk of trial results, as columns, checked and in output order.

    :param pk: primary keys.
    :param session: session pks.
    :param section: section pks or None.
    :param created_at: creation times as our CSV writes them
        (``2024-07-22T10:26:50.911000+00:00``).
    :param fields: the other result fields by name (``question_key``, ``score``, …), score
        as floats or None.
    :param json_data: the parsed ``json_data`` values, or their JSON texts (bytes) when
        ``json_raw``.
    :param json_raw: ``json_data`` holds JSON texts, which the native kernel flattens.
    :param extra: each result's fields beyond MUSCLE's (a record's ``extra``), or None when
        no result of the chunk has any.
    """

    __slots__ = (
        "created_at",
        "extra",
        "fields",
        "json_data",
        "json_raw",
        "pk",
        "section",
        "session",
    )

    def __init__(
        self,
        *,
        pk: list[int],
        session: list[int],
        section: list[int | None],
        created_at: list[str],
        fields: Mapping[str, list[Any]],
        json_data: list[Any],
        json_raw: bool = False,
        extra: list[Mapping[str, Any]] | None = None,
    ) -> None:
        self.pk = pk
        self.session = session
        self.section = section
        self.created_at = created_at
        self.fields = fields
        self.json_data = json_data
        self.json_raw = json_raw
        self.extra = extra

    def __len__(self) -> int:
        return len(self.pk)


@attrs.frozen
class Checks:
    """The graph's rules for trial results (or profile answers), as the engine applies them.

    :param sessions: the owners a result may have: sessions (participants for profile
        answers, ``owner == "participant"``).
    :param excluded: owners the filter dropped (their results are left out).
    """

    sessions: frozenset[int]
    excluded: frozenset[int]
    sections: frozenset[int]
    check_sections: bool
    keep_missing: bool
    owner: str = "session"
    #: whether a text longer than MUSCLE's column is refused (a source's raw columns); the
    #: records of a graph passed the graph's checks, which make no such check
    lengths: bool = True
    #: where the results come from, as the graph's errors name it
    origin: str = "trial results"


def make_checks(graph: RecordGraph, excluded: frozenset[int], owner: str = "session") -> Checks:
    """The checks of trial results (``owner="session"``) or profile answers
    (``owner="participant"``) of ``graph``."""
    return Checks(
        sessions=frozenset(graph.sessions if owner == "session" else graph.participants),
        excluded=excluded,
        sections=frozenset(graph.sections),
        check_sections="section" in graph.info.provided,
        keep_missing=graph.missing_sections == "keep",
        owner=owner,
    )


def ordered(
    sessions: Sequence[int], pks: Sequence[int], checks: Checks
) -> tuple[list[int] | None, int]:
    """The order in which a chunk's results leave the source (None: as they are), and the
    number kept: each run of one session sorted by pk, excluded sessions left out, as
    ``FixtureZipSource._results`` does. The result must be ordered by (session, pk)."""
    excluded = checks.excluded
    drop = bool(excluded) and not excluded.isdisjoint(sessions)
    if not drop:
        keys = list(zip(sessions, pks, strict=True))
        if all(map(lt, keys, keys[1:])):
            return None, len(keys)
    run = -1
    last: Any = object()
    runs: list[int] = []
    for s in sessions:
        if s != last:
            run += 1
            last = s
        runs.append(run)
    kept = [i for i, s in enumerate(sessions) if s not in excluded] if drop else range(len(pks))
    order = sorted(kept, key=lambda i: (runs[i], pks[i]))
    keys = [(sessions[i], pks[i]) for i in order]
    if not all(map(lt, keys, keys[1:])):
        raise StandDown("results are not ordered by (session, pk)")
    return order, len(order)


def pick(values: Sequence[Any], order: list[int] | None) -> list[Any]:
    if order is None:
        return values if isinstance(values, list) else list(values)
    if not order:
        return []
    if len(order) == 1:
        return [values[order[0]]]
    return list(itemgetter(*order)(values))


def check_strings(name: str, values: Sequence[Any], nullable: bool, lengths: bool = True) -> None:
    types = set(map(type, values))
    allowed = {str, type(None)} if nullable else {str}
    if not types <= allowed:
        raise StandDown(f"{name}: a value of another type")
    limit = _MAX_LENGTH.get(name) if lengths else None
    if limit is not None:
        texts = values if types == {str} else [v for v in values if v is not None]
        if texts and max(map(len, texts)) > limit:
            raise StandDown(f"{name}: longer than MUSCLE's column")


def check_scores(values: Sequence[Any]) -> list[Any]:
    types = set(map(type, values))
    if not types <= {float, int, type(None)}:
        raise StandDown("score: a value of another type")
    if int in types:
        values = [float(v) if type(v) is int else v for v in values]
    numbers = values if types == {float} else [v for v in values if v is not None]
    if not all(map(math.isfinite, numbers)):
        raise StandDown("score: not a finite number")
    return values if isinstance(values, list) else list(values)


def created_texts(values: Sequence[Any]) -> list[str]:
    """Django's timestamps as our CSV writes them (``…T10:26:50.911000+00:00``)."""
    kernel = native.kernel()
    if kernel is not None and type(values) is list:
        texts = kernel.created_texts(values)  # None unless every value is the plain form
        if texts is not None:
            return texts  # type: ignore[no-any-return]
    if set(map(type, values)) != {str}:
        raise StandDown("created_at: a value that is not text")
    match = _CREATED.fullmatch
    if all(map(match, values)):
        for day in {v[:10] for v in values}:
            try:
                date.fromisoformat(day)
            except ValueError:
                raise StandDown(f"created_at: no such day {day}") from None
        return [v[:23] + "000+00:00" if len(v) == 24 else v[:19] + ".000000+00:00" for v in values]
    try:
        return [parse_datetime(v).isoformat(timespec="microseconds") for v in values]
    except ValueError as exc:
        raise StandDown(f"created_at: {exc}") from None


def datetime_texts(values: Sequence[Any]) -> list[str]:
    """Timestamps (``datetime``) as our CSV writes them, ISO 8601 with microseconds and
    each value's UTC offset, which ``datetime.fromisoformat`` reads back as the same
    instant.

    A time zone that is not a fixed offset (a ``zoneinfo`` zone) is written with its
    offset at that instant (``utcoffset()``), as ``datetime.isoformat`` writes it;
    the value read back holds that offset, not the zone's name.

    :raises StandDown: for a value that is not a ``datetime``, or one without a UTC offset
        (MUSCLE's column is a ``timestamp with time zone``; the zip's reader refuses such a
        text too).
    """
    kernel = native.kernel()
    texts = kernel.utc_texts(values) if kernel is not None else None  # None: not all UTC
    if texts is not None:
        return texts  # type: ignore[no-any-return]
    if not set(map(type, values)) <= {datetime}:
        raise StandDown("created_at: a value that is not a timestamp")
    texts = [d.isoformat(timespec="microseconds") for d in values]
    # (``2024-07-22T10:26:50.911000`` is 26 characters: an offset makes the text longer)
    if texts and min(map(len, texts)) <= _NAIVE_LENGTH:
        raise StandDown("created_at: a timestamp without a UTC offset")
    return texts


def finish_columns(
    pks: Sequence[int],
    sessions: Sequence[int],
    participants: Sequence[Any],
    sections: Sequence[Any],
    created: Sequence[Any],
    strings: Mapping[str, Sequence[Any]],
    scores: Sequence[Any],
    json_data: Sequence[Any],
    checks: Checks,
    *,
    raw_json: bool = False,
    extra: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[ResultColumns, ChunkMeta]:
    """Check a chunk's raw columns as the graph would and put them in output order.

    For profile answers (``checks.owner == "participant"``) the participants are the owners
    and every session must be null: the two columns trade places below, and ``sessions``
    means the owners from there on.

    :param raw_json: ``json_data`` holds JSON texts (bytes) for the native kernel to
        flatten, not parsed values.
    :param extra: each result's fields beyond MUSCLE's (None: none has any).
    """
    if checks.owner == "participant":
        sessions, participants = participants, sessions
    if not pks:
        cols = ResultColumns(pk=[], session=[], section=[], created_at=[], fields={}, json_data=[])
        return cols, {"first": None, "last": None, "missing": 0, "edges": (None, None)}
    if set(map(type, pks)) != {int}:
        raise StandDown("a pk that is not an integer")
    owner, other = checks.owner, "participant" if checks.owner == "session" else "session"
    if set(map(type, sessions)) != {int}:
        raise StandDown(f"a result without a {owner}")
    if set(participants) != {None}:
        raise StandDown(f"a result with a {other}")
    unknown = set(sessions) - checks.sessions - checks.excluded
    if unknown:
        raise StandDown(f"{owner} {min(unknown)} not found")
    if not set(map(type, sections)) <= {int, type(None)}:
        raise StandDown("section: a value that is not an integer")
    if not raw_json and not nesting_ok(json_data, 1):
        # the list adds one level, as a record's fields add two: the reference reading judges
        raise StandDown("json_data nested too deeply")
    edges = (sessions[0], sessions[-1])
    order, kept = ordered(sessions, pks, checks)
    pks = pick(pks, order)
    if len(set(pks)) != len(pks):
        raise StandDown("duplicate primary key")
    sessions = pick(sessions, order)
    sections = pick(sections, order)
    missing = 0
    if checks.check_sections:
        absent = set(sections) - checks.sections - {None}
        if absent:
            if not checks.keep_missing:
                raise StandDown(f"section {min(absent)} not found")
            missing = sum(1 for s in sections if s in absent)
    fields = {name: pick(values, order) for name, values in strings.items()}
    for name, values in fields.items():
        check_strings(name, values, RESULT.field(name).nullable, checks.lengths)
    fields["score"] = check_scores(pick(scores, order))
    cols = ResultColumns(
        pk=pks,
        session=sessions,
        section=sections,
        created_at=pick(created, order),
        fields=fields,
        json_data=pick(json_data, order),
        json_raw=raw_json,
        extra=None if extra is None else pick(extra, order),
    )
    first = (sessions[0], pks[0]) if kept else None
    last = (sessions[-1], pks[-1]) if kept else None
    return cols, {"first": first, "last": last, "missing": missing, "edges": edges}

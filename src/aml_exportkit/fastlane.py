"""The bulk lane: long tables written straight from a source's raw trial results, on all cores.

The plain path turns every trial result into a :class:`~aml_exportkit.records.Result`,
checks it in the graph, and lets each sink flatten and format it cell by cell. For the
long table of our CSV (and the Parquet file of the same table) the bulk lane does the same
work in bulk:

1. The source splits its trial results into chunks that never split a session: byte ranges
   of ``results.json`` cut at Django's ``}, {"model": `` separator (a zip), or groups of
   sessions (a database, each worker on the run's snapshot).
2. Worker processes (forked, so they share the graph, pseudonymised participants included)
   parse a chunk, apply the graph's checks to every result (kind, foreign keys, duplicate
   keys, order), flatten ``json_data`` column-wise and render the chunk as our CSV text
   (:mod:`aml_exportkit.tabular.render`).
3. The parent takes the chunks in order, checks what spans chunks (keys unique across
   chunks, order across chunks, the zip member's CRC), writes the CSV and makes each
   Parquet row group from the same text with pyarrow's CSV reader.

The header and the Parquet schema depend on every json path and type of the export. The
lane starts with those of a sample; a chunk that finds more is rendered again at the end
with the final columns and the outputs are rebuilt (rare: a sample of a few thousand
results holds nearly every shape).

Anything unexpected (a value the checks reject, a key beyond MUSCLE's fields, a cut that
does not parse, a column collision) makes the lane stand down by raising :class:`NotFast`
before any output is final; the plain path then runs and reports the problem exactly as it
always does. ``EXPORTKIT_BULK=0`` turns the lane off, ``EXPORTKIT_BULK=strict`` makes a
stand-down an error (for tests). ``docs/performance.md`` has the measurements.
"""

from __future__ import annotations

import array
import contextlib
import gc
import json
import math
import multiprocessing
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import date
from multiprocessing.connection import Connection, wait
from operator import itemgetter, lt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import orjson

from .errors import ExportkitError
from .schema import RESULT, parse_datetime
from .tabular.render import ChunkRenderer, ResultColumns, supports
from .tabular.table import Column, kind_of_types

if TYPE_CHECKING:
    from .contracts import Sink, SinkContext
    from .graph import RecordGraph
    from .progress import Progress

ENV_SWITCH = "EXPORTKIT_BULK"
#: Bytes of ``results.json`` per chunk.
CHUNK_BYTES = 4 << 20
#: Sessions per chunk of a database.
CHUNK_SESSIONS = 200
#: Worker processes (the machine's cores, at most this many).
MAX_WORKERS = 2
#: Chunks a worker may have queued; the parent holds at most this many results per worker.
IN_FLIGHT = 2
#: Bytes of ``results.json`` sampled before the start (for the first header and schema).
SAMPLE_BYTES = 1 << 20

#: What the last run did, for tests and ``docs/performance.md``: ``used`` and ``reason``.
LAST_RUN: dict[str, Any] = {}

_SEPARATOR = b'}, {"model": '
_WHITESPACE = b" \t\r\n"
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_NINETEEN_DIGITS = b"0" * 19
_RESULT_FIELDS = tuple(f.name for f in RESULT.fields)
_RESULT_KEYS = frozenset(_RESULT_FIELDS)
_MAX_LENGTH = {f.name: f.max_length for f in RESULT.fields if f.max_length is not None}
_GET_FIELDS = itemgetter(*_RESULT_FIELDS)
_CREATED = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
    r"(?:\.\d{3})?Z"
)


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc only).

    The parent takes a few MB of text per chunk; glibc serves such blocks from its heap
    once it has freed a few, and the heap's free pages otherwise stay resident: about
    50 MB over a 50k-session export."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


class NotFast(Exception):
    """The bulk lane cannot (or must not) take this export; the plain path will."""


def _decline(reason: str) -> bool:
    LAST_RUN.clear()
    LAST_RUN.update(used=False, reason=reason)
    if os.environ.get(ENV_SWITCH) == "strict":
        raise RuntimeError(f"the bulk lane stood down: {reason}")
    return False


# -- the entry point --------------------------------------------------------------------------


@attrs.define
class _Output:
    sink: Any
    format: str
    path: Path


@attrs.define
class _Plan:
    """One long table (one set of table options) and the outputs made from it."""

    renderer: ChunkRenderer
    outputs: list[_Output]


def _table_key(options: Any) -> tuple[Any, ...]:
    from .tabular.options import TableOptions

    return tuple(getattr(options, f.name) for f in attrs.fields(TableOptions))


def run(
    graph: RecordGraph,
    sinks: Sequence[tuple[SinkContext, Sink]],
    progress: Progress,
    *,
    observed: bool = False,
) -> bool:
    """Write every sink's long table through the bulk lane, if it can take this run.

    :return: True when the lane wrote everything (the graph's trial results are then read
        and counted); False when the plain path must run.
    """
    LAST_RUN.clear()
    if os.environ.get(ENV_SWITCH) == "0":
        return _decline(f"{ENV_SWITCH}=0")
    if observed:
        return _decline("another part of the run observes the results (codebook)")
    raw = graph.bulk_results
    if raw is None:
        return _decline("the source offers no raw trial results")
    if not sinks:
        return _decline("no sinks")
    plans: list[tuple[tuple[Any, ...], _Plan]] = []
    for context, sink in sinks:
        table = sink.bulk_table() if context.bulk else None  # type: ignore[attr-defined]
        if table is None:
            return _decline(f"sink {context.name} cannot be written in bulk")
        options, fmt, path = table
        why = supports(options)
        if why is not None:
            return _decline(f"sink {context.name}: {why}")
        key = _table_key(options)
        plan = next((p for k, p in plans if k == key), None)
        if plan is None:
            try:
                renderer = ChunkRenderer(options, graph)
            except ValueError as exc:  # a column collision: the plain path reports it
                return _decline(str(exc))
            plan = _Plan(renderer, [])
            plans.append((key, plan))
        plan.outputs.append(_Output(sink, fmt, path))
    lane = _Lane(graph, raw, [p for _, p in plans], progress)
    frozen = gc.isenabled()
    gc.disable()
    try:
        rows = lane.run()
    except NotFast as exc:
        return _decline(str(exc))
    except ValueError as exc:
        # a column clash (FlattenError) met in the sample or the final columns: the plain
        # path meets it too and reports it as the sink's error, naming that sink
        return _decline(f"{type(exc).__name__}: {exc}")
    finally:
        lane.close()
        if frozen:
            gc.enable()
    for _, plan in plans:
        for out in plan.outputs:
            out.sink.bulk_written(rows)
    LAST_RUN.update(used=True, reason="", rows=rows, chunks=lane.chunk_count, **lane.stats)
    return True


# -- running chunks in worker processes -------------------------------------------------------


def _serve(conn: Connection, work: Callable[[Any], Any]) -> None:
    # The graph and everything else inherited stays frozen: no collection ever scans it
    # (and parsed JSON has no cycles, so nothing needs the cyclic collector here).
    gc.freeze()
    gc.disable()
    chunks = 0
    while True:
        try:
            message = conn.recv()
        except EOFError:
            break
        if message is None:
            break
        number, payload = message
        try:
            reply = (number, True, work(payload))
        except NotFast as exc:
            reply = (number, False, str(exc))
        except ExportkitError as exc:
            reply = (number, False, str(exc))
        except Exception as exc:
            reply = (number, False, f"{type(exc).__name__}: {exc}")
        conn.send(reply)
        del reply
        chunks += 1
        if chunks % 16 == 0:
            trim_heap()
    conn.close()


class _Workers:
    """Forked worker processes that run ``work(payload)``; results come back in order."""

    def __init__(self, count: int, work: Callable[[Any], Any]) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(child, work), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def map(self, payloads: Sequence[Any]) -> Iterator[Any]:
        """``work(payload)`` of each payload, in order.

        :raises NotFast: when a worker's chunk failed.
        """
        total = len(payloads)
        busy: dict[Connection, int] = dict.fromkeys(self.conns, 0)
        done: dict[int, Any] = {}
        sent = 0
        following = 0
        while following < total:
            for conn in self.conns:
                ahead = IN_FLIGHT * len(self.conns)
                while busy[conn] < IN_FLIGHT and sent < total and sent - following < ahead:
                    conn.send((sent, payloads[sent]))
                    busy[conn] += 1
                    sent += 1
            ready = wait([c for c in self.conns if busy[c]])
            for waited in ready:
                conn = waited  # type: ignore[assignment]
                try:
                    number, ok, value = conn.recv()
                except EOFError:
                    raise NotFast("a worker process ended unexpectedly") from None
                busy[conn] -= 1
                if not ok:
                    raise NotFast(value)
                done[number] = value
            while following in done:
                yield done.pop(following)
                following += 1

    def close(self) -> None:
        """Stop the workers."""
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()


# -- what every chunk reports -----------------------------------------------------------------


@attrs.frozen
class _Checks:
    """The graph's rules for trial results, as the worker processes apply them."""

    sessions: frozenset[int]
    excluded: frozenset[int]
    sections: frozenset[int]
    check_sections: bool
    keep_missing: bool


def _checks(graph: RecordGraph, excluded: frozenset[int]) -> _Checks:
    return _Checks(
        sessions=frozenset(graph.sessions),
        excluded=excluded,
        sections=frozenset(graph.sections),
        check_sections="section" in graph.info.provided,
        keep_missing=graph.missing_sections == "keep",
    )


def _ordered(
    sessions: Sequence[int], pks: Sequence[int], checks: _Checks
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
        raise NotFast("results are not ordered by (session, pk)")
    return order, len(order)


def _pick(values: Sequence[Any], order: list[int] | None) -> list[Any]:
    if order is None:
        return values if isinstance(values, list) else list(values)
    if not order:
        return []
    if len(order) == 1:
        return [values[order[0]]]
    return list(itemgetter(*order)(values))


def _check_strings(name: str, values: Sequence[Any], nullable: bool) -> None:
    types = set(map(type, values))
    allowed = {str, type(None)} if nullable else {str}
    if not types <= allowed:
        raise NotFast(f"{name}: a value of another type")
    limit = _MAX_LENGTH.get(name)
    if limit is not None:
        texts = values if types == {str} else [v for v in values if v is not None]
        if texts and max(map(len, texts)) > limit:
            raise NotFast(f"{name}: longer than MUSCLE's column")


def _scores(values: Sequence[Any]) -> list[Any]:
    types = set(map(type, values))
    if not types <= {float, int, type(None)}:
        raise NotFast("score: a value of another type")
    if int in types:
        values = [float(v) if type(v) is int else v for v in values]
    numbers = values if types == {float} else [v for v in values if v is not None]
    if not all(map(math.isfinite, numbers)):
        raise NotFast("score: not a finite number")
    return values if isinstance(values, list) else list(values)


def created_texts(values: Sequence[Any]) -> list[str]:
    """Django's timestamps as our CSV writes them (``…T10:26:50.911000+00:00``)."""
    if set(map(type, values)) != {str}:
        raise NotFast("created_at: a value that is not text")
    match = _CREATED.fullmatch
    if all(map(match, values)):
        for day in {v[:10] for v in values}:
            try:
                date.fromisoformat(day)
            except ValueError:
                raise NotFast(f"created_at: no such day {day}") from None
        return [v[:23] + "000+00:00" if len(v) == 24 else v[:19] + ".000000+00:00" for v in values]
    try:
        return [parse_datetime(v).isoformat(timespec="microseconds") for v in values]
    except ValueError as exc:
        raise NotFast(f"created_at: {exc}") from None


@attrs.define
class _Chunk:
    """What a worker reports about one chunk (besides the rendered text)."""

    rows: int
    first: tuple[int, int] | None
    last: tuple[int, int] | None
    pks: bytes
    missing_refs: int
    edges: tuple[Any, Any]
    crc: tuple[int, int] | None
    position: float
    tables: list[tuple[tuple[str, ...], bytes, dict[str, set[type]], dict[str, Any]]]


def _finish_columns(
    pks: Sequence[int],
    sessions: Sequence[int],
    participants: Sequence[Any],
    sections: Sequence[Any],
    created: Sequence[Any],
    strings: Mapping[str, Sequence[Any]],
    scores: Sequence[Any],
    json_data: Sequence[Any],
    checks: _Checks,
) -> tuple[ResultColumns, dict[str, Any]]:
    """Check a chunk's raw columns as the graph would and put them in output order."""
    if not pks:
        cols = ResultColumns(pk=[], session=[], section=[], created_at=[], fields={}, json_data=[])
        return cols, {"first": None, "last": None, "missing": 0, "edges": (None, None)}
    if set(map(type, pks)) != {int}:
        raise NotFast("a pk that is not an integer")
    if set(map(type, sessions)) != {int}:
        raise NotFast("a trial result without a session")
    if set(participants) != {None}:
        raise NotFast("a trial result with a participant")
    unknown = set(sessions) - checks.sessions - checks.excluded
    if unknown:
        raise NotFast(f"session {min(unknown)} not found")
    if not set(map(type, sections)) <= {int, type(None)}:
        raise NotFast("section: a value that is not an integer")
    edges = (sessions[0], sessions[-1])
    order, kept = _ordered(sessions, pks, checks)
    pks = _pick(pks, order)
    if len(set(pks)) != len(pks):
        raise NotFast("duplicate primary key")
    sessions = _pick(sessions, order)
    sections = _pick(sections, order)
    missing = 0
    if checks.check_sections:
        absent = set(sections) - checks.sections - {None}
        if absent:
            if not checks.keep_missing:
                raise NotFast(f"section {min(absent)} not found")
            missing = sum(1 for s in sections if s in absent)
    fields = {name: _pick(values, order) for name, values in strings.items()}
    for name, values in fields.items():
        _check_strings(name, values, RESULT.field(name).nullable)
    fields["score"] = _scores(_pick(scores, order))
    cols = ResultColumns(
        pk=pks,
        session=sessions,
        section=sections,
        created_at=_pick(created, order),
        fields=fields,
        json_data=_pick(json_data, order),
    )
    first = (sessions[0], pks[0]) if kept else None
    last = (sessions[-1], pks[-1]) if kept else None
    return cols, {"first": first, "last": last, "missing": missing, "edges": edges}


def fixture_columns(items: list[Any], checks: _Checks) -> tuple[ResultColumns, dict[str, Any]]:
    """A chunk of parsed ``results.json`` objects as checked columns in output order."""
    if not items:
        return _finish_columns([], [], [], [], [], {}, [], [], checks)
    if set(map(type, items)) != {dict}:
        raise NotFast("an element that is not an object")
    try:
        if set(map(itemgetter("model"), items)) != {"result.result"}:
            raise NotFast("an object that is not a result.result")
        pks = list(map(itemgetter("pk"), items))
        fields = list(map(itemgetter("fields"), items))
    except KeyError:
        raise NotFast("an object without model, pk or fields") from None
    if set(map(type, fields)) != {dict}:
        raise NotFast("'fields' that is not an object")
    if set(map(len, fields)) != {len(_RESULT_FIELDS)} or set().union(*fields) != _RESULT_KEYS:
        raise NotFast("result fields other than MUSCLE's")
    columns = list(zip(*map(_GET_FIELDS, fields), strict=True))
    by_name = dict(zip(_RESULT_FIELDS, columns, strict=True))
    created = created_texts(by_name["created_at"])
    strings = {
        name: by_name[name]
        for name in (
            "question_key",
            "expected_response",
            "given_response",
            "comment",
            "scoring_rule",
        )
    }
    return _finish_columns(
        pks,
        by_name["session"],
        by_name["participant"],
        by_name["section"],
        created,
        strings,
        by_name["score"],
        by_name["json_data"],
        checks,
    )


def _parse_array(body: bytes | bytearray | memoryview) -> list[Any]:
    """The elements of ``[body]`` as the plain path's reader parses them."""
    if bytes(body).translate(_DIGITS_TO_ZERO).find(_NINETEEN_DIGITS) >= 0:
        # integers beyond 64 bits: the standard library keeps them exact (as jsonstream)
        try:
            items = json.loads(b"[" + body + b"]", parse_constant=_reject_constant)
        except ValueError as exc:
            raise NotFast(f"malformed JSON: {exc}") from None
    else:
        buf = bytearray(b"[")
        buf += body
        buf += b"]"
        try:
            items = orjson.loads(buf)
        except orjson.JSONDecodeError as exc:
            raise NotFast(f"malformed JSON or a cut inside a value: {exc}") from None
    if type(items) is not list:  # pragma: no cover - "[...]" is always a list
        raise NotFast("not an array")
    return items


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# -- zip: byte ranges of results.json ---------------------------------------------------------


class ZipTrialResults:
    """The trial results of a MUSCLE zip's ``results.json``, read in byte ranges.

    Only a stored (uncompressed) member qualifies, as MUSCLE writes them: its bytes can
    then be read at any offset of the file, by every worker at once.

    :param fd: a file descriptor of the zip (or of the inflated copy of a gzip-wrapped one).
    :param info: the member.
    :param excluded: sessions the filter dropped.
    """

    def __init__(self, fd: int, info: zipfile.ZipInfo, excluded: frozenset[int]) -> None:
        self.fd = fd
        self.info = info
        self.excluded = excluded
        self.start = 0
        self.size = info.file_size
        self.checks: _Checks | None = None

    def _read(self, offset: int, size: int) -> bytes:
        parts: list[bytes] = []
        position = self.start + offset
        while size > 0:
            part = os.pread(self.fd, size, position)
            if not part:
                raise NotFast("results.json ends early")
            parts.append(part)
            size -= len(part)
            position += len(part)
        return b"".join(parts)

    def open(self, graph: RecordGraph) -> None:
        """Find the member's data; check that it is stored, framed as one array."""
        info = self.info
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
            raise NotFast("results.json is compressed")
        if info.compress_size != info.file_size:
            raise NotFast("results.json's sizes differ")
        header = os.pread(self.fd, 30, info.header_offset)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise NotFast("no local header for results.json")
        name_len = int.from_bytes(header[26:28], "little")
        extra_len = int.from_bytes(header[28:30], "little")
        self.start = info.header_offset + 30 + name_len + extra_len
        self.checks = _checks(graph, self.excluded)

    def tasks(self) -> list[tuple[int, int, int, int]]:
        """Chunks as ``(read_from, read_to, parse_from, parse_to)``: the read ranges cover the
        member without gap (for its CRC), the parse ranges hold whole elements and never
        split a session."""
        size = self.size
        if size == 0:
            raise NotFast("results.json is empty")
        head = self._read(0, min(size, 4096))
        first = len(head) - len(head.lstrip(_WHITESPACE))
        if head[first : first + 1] != b"[":
            raise NotFast("results.json does not start with '['")
        tail = self._read(max(0, size - 4096), min(size, 4096))
        stripped = tail.rstrip(_WHITESPACE)
        if not stripped.endswith(b"]"):
            raise NotFast("results.json does not end with ']'")
        close = size - len(tail) + len(stripped) - 1
        inner = self._read(first + 1, min(close - first - 1, 4096))
        lead = len(inner) - len(inner.lstrip(_WHITESPACE))
        begin = first + 1 + lead
        end_block = self._read(max(begin, close - 4096), close - max(begin, close - 4096))
        end = close - (len(end_block) - len(end_block.rstrip(_WHITESPACE)))
        if begin >= end:
            return [(0, size, 0, 0)]
        tasks: list[tuple[int, int, int, int]] = []
        read_from, parse_from = 0, begin
        while True:
            cut = None
            if end - parse_from > CHUNK_BYTES * 3 // 2:
                cut = self._session_cut(parse_from + CHUNK_BYTES, end)
            if cut is None:
                tasks.append((read_from, size, parse_from, end))
                return tasks
            tasks.append((read_from, cut + 3, parse_from, cut + 1))
            read_from = parse_from = cut + 3

    def _session_cut(self, position: int, end: int) -> int | None:
        """The offset of the first separator at or after ``position`` between two results
        of different sessions."""
        window = 1 << 20
        last: Any = _UNSET
        while position < end:
            size = min(window, end - position)
            buf = self._read(position, size)
            i = buf.find(_SEPARATOR)
            if i < 0:
                if position + size >= end:
                    return None
                position += size - len(_SEPARATOR)
                last = _UNSET
                continue
            while True:
                j = buf.find(_SEPARATOR, i + 3)
                if j < 0:
                    break
                session = _session_of(buf[i + 3 : j + 1])
                if last is not _UNSET and session is not _UNSET and session != last:
                    return position + i
                last = session
                i = j
            if position + size >= end:
                session = _session_of(buf[i + 3 :])
                if last is not _UNSET and session is not _UNSET and session != last:
                    return position + i
                return None
            if i == 0:
                window *= 2
            position += i
        return None

    def sample(self) -> ResultColumns | None:
        """Results from the start of the member, for the first header (None if they do not
        pass the checks; the chunks will tell)."""
        size = min(self.size, SAMPLE_BYTES)
        buf = self._read(0, size)
        start = buf.find(b"[")
        cut = buf.rfind(_SEPARATOR)
        if start < 0 or cut <= start or self.checks is None:
            return None
        try:
            items = _parse_array(buf[start + 1 : cut + 1])
            return fixture_columns(items, self.checks)[0]
        except NotFast:
            return None

    def work(self, task: tuple[int, int, int, int]) -> tuple[ResultColumns, dict[str, Any]]:
        """Read, parse and check one chunk (in a worker)."""
        read_from, read_to, parse_from, parse_to = task
        assert self.checks is not None
        data = self._read(read_from, read_to - read_from)
        crc = zlib.crc32(data)
        if parse_to > parse_from:
            items = _parse_array(memoryview(data)[parse_from - read_from : parse_to - read_from])
        else:
            items = []
        del data
        cols, meta = fixture_columns(items, self.checks)
        meta["crc"] = (crc, read_to - read_from)
        meta["position"] = read_to / max(self.size, 1)
        return cols, meta

    def finish(self, crcs: Sequence[tuple[int, int]]) -> None:
        """Check the member's CRC-32 from the chunks' CRCs."""
        crc = 0
        for part, length in crcs:
            crc = crc32_combine(crc, part, length)
        if crc != self.info.CRC:
            raise NotFast("results.json fails its CRC-32 check")


_UNSET: Any = object()


def _session_of(element: bytes) -> Any:
    try:
        obj = orjson.loads(element)
        return obj["fields"]["session"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _UNSET


def _gf2_times(matrix: list[int], vector: int) -> int:
    total = 0
    i = 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of ``A + B`` from the CRC-32s of ``A`` and ``B`` and ``len(B)`` (zlib's
    ``crc32_combine``, which Python's zlib module does not offer)."""
    if len2 <= 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


# -- database: groups of sessions, each worker on the source's snapshot -----------------------


class DbTrialResults:
    """The trial results of a MUSCLE database, read by session groups.

    Each worker process opens its own connection and imports the source's snapshot
    (``pg_export_snapshot``), so every chunk comes from the same instant as the graph.

    :param uri: the source's URI (it stays in memory: the workers connect with it).
    :param conn: the source's connection, inside its snapshot transaction.
    :param select: the SELECT list of ``result_result r`` (the source's, json as UTF-8).
    """

    def __init__(self, uri: str, conn: Any, select: Any) -> None:
        self.uri = uri
        self.conn = conn
        self.select = select
        self.snapshot = ""
        self.sessions: list[int] = []
        self.checks: _Checks | None = None
        self._worker_conn: Any = None

    def open(self, graph: RecordGraph) -> None:
        """Export the snapshot; note the sessions."""
        import psycopg

        try:
            row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
        except psycopg.Error as exc:
            raise NotFast(f"cannot export the snapshot: {exc}") from None
        self.snapshot = row[0]
        self.sessions = sorted(graph.sessions)
        self.checks = _checks(graph, frozenset())

    def tasks(self) -> list[tuple[list[int], float]]:
        """Groups of session pks, in order, with the share of sessions done after each."""
        size = CHUNK_SESSIONS
        total = max(len(self.sessions), 1)
        return [
            (self.sessions[i : i + size], min(i + size, total) / total)
            for i in range(0, len(self.sessions), size)
        ] or [([], 1.0)]

    def _query(self) -> Any:
        from psycopg import sql

        return sql.SQL(
            "SELECT {} FROM result_result r WHERE r.session_id = ANY(%s::int8[])"
            " ORDER BY r.session_id, r.id"
        ).format(self.select)

    def sample(self) -> ResultColumns | None:
        """The results of a few sessions spread over the export, for the first header."""
        if not self.sessions or self.checks is None:
            return None
        step = max(1, len(self.sessions) // 16)
        picked = self.sessions[::step][:16]
        import psycopg

        try:
            with self.conn.cursor(binary=True) as cur:
                rows = cur.execute(self._query(), (picked,)).fetchall()
            return db_columns(rows, self.checks)[0]
        except (NotFast, psycopg.Error):
            return None

    def _connection(self) -> Any:
        if self._worker_conn is None:
            import psycopg

            from .sources.muscle_db import _loads

            conn = psycopg.connect(self.uri, autocommit=True, application_name="aml_exportkit")
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{self.snapshot}'")
            conn.execute("SET TIME ZONE 'UTC'")
            psycopg.types.json.set_json_loads(_loads, conn)
            self._worker_conn = conn
        return self._worker_conn

    def work(self, task: tuple[list[int], float]) -> tuple[ResultColumns, dict[str, Any]]:
        """Read, parse and check one group of sessions (in a worker)."""
        import psycopg

        assert self.checks is not None
        group, position = task
        try:
            with self._connection().cursor(binary=True) as cur:
                rows = cur.execute(self._query(), (group,)).fetchall()
        except psycopg.Error as exc:
            raise NotFast(f"database: {exc}") from None
        cols, meta = db_columns(rows, self.checks)
        meta["position"] = position
        return cols, meta

    def finish(self, crcs: Sequence[tuple[int, int]]) -> None:
        """Nothing to check at the end."""


def db_columns(rows: list[Any], checks: _Checks) -> tuple[ResultColumns, dict[str, Any]]:
    """Rows of ``result_result`` (the source's column order) as checked columns."""
    if not rows:
        return _finish_columns([], [], [], [], [], {}, [], [], checks)
    columns = list(zip(*rows, strict=True))
    pks, sessions, participants, sections, created = columns[:5]
    if {type(d).__name__ for d in created} != {"datetime"}:
        raise NotFast("created_at: a value that is not a timestamp")
    texts = [d.isoformat(timespec="microseconds") for d in created]
    strings = dict(
        zip(
            ("question_key", "expected_response", "given_response", "comment", "scoring_rule"),
            (columns[5], columns[6], columns[7], columns[8], columns[10]),
            strict=True,
        )
    )
    return _finish_columns(
        pks,
        sessions,
        participants,
        sections,
        texts,
        strings,
        columns[9],
        _json_values(columns[11]),
        checks,
    )


def _json_values(docs: Sequence[Any]) -> list[Any]:
    """Parse the jsonb texts of a chunk at once (as the source's ``_loads`` parses each)."""
    from .sources.muscle_db import _loads

    if None in docs:
        docs = [b"null" if d is None else d for d in docs]
    if not all(type(d) is bytes for d in docs):
        return [_loads(d) for d in docs]
    body = b",".join(docs)
    if body.translate(_DIGITS_TO_ZERO).find(_NINETEEN_DIGITS) >= 0:
        return [_loads(d) for d in docs]
    try:
        values = orjson.loads(b"[" + body + b"]")
    except orjson.JSONDecodeError:
        return [_loads(d) for d in docs]
    if len(values) != len(docs):  # pragma: no cover - jsonb text is one value each
        return [_loads(d) for d in docs]
    return values  # type: ignore[no-any-return]


# -- the lane ---------------------------------------------------------------------------------


class _ParquetOut:
    """A Parquet file made from the CSV text of a plan, row group by row group."""

    def __init__(self, output: _Output, columns: list[Column]) -> None:
        import importlib

        pa = importlib.import_module("pyarrow")
        pcsv = importlib.import_module("pyarrow.csv")

        self.pa = pa
        self.pcsv = pcsv
        self.pool = pa.default_memory_pool()
        self.output = output
        self.sink = output.sink
        from .sinks.parquet import group_rows

        self.size = group_rows(self.sink.options.row_group_size, len(columns))
        self.columns = columns
        self.schema = self.sink.schema(columns)
        self.writer: Any = self.sink.open_writer(output.path, self.schema)
        self.pending: list[Any] = []
        self.pending_rows = 0
        self.count = 0
        self.valid = True
        names = [c.name for c in columns]
        self.read_options = pcsv.ReadOptions(column_names=names, block_size=8 << 20)
        self.parse_options = pcsv.ParseOptions(newlines_in_values=True)
        # Without CR or LF inside values, the reader may split the text anywhere.
        self.plain_options = pcsv.ParseOptions(newlines_in_values=False)
        self.convert_options = pcsv.ConvertOptions(
            column_types={f.name: f.type for f in self.schema},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
            true_values=["true"],
            false_values=["false"],
        )

    def add(self, text: bytes, rows: int) -> None:
        """Add the ``rows`` rows of a chunk's CSV text."""
        if not self.valid or not text:
            return
        # When the only CR and LF are the rows' CRLFs, no value holds one.
        simple = rows == text.count(b"\n") == text.count(b"\r") == text.count(b"\r\n")
        try:
            table = self.pcsv.read_csv(
                self.pa.py_buffer(text),
                read_options=self.read_options,
                parse_options=self.plain_options if simple else self.parse_options,
                convert_options=self.convert_options,
            )
        except self.pa.ArrowInvalid:
            self.valid = False  # a kind the sample did not foresee: rebuilt at the end
            return
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.size:
            self._write(self.size)

    def _write(self, rows: int) -> None:
        pa = self.pa
        table = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
        group = table.slice(0, rows).combine_chunks()
        rest = table.slice(rows)
        self.writer.write_table(pa.Table.from_arrays(group.columns, schema=self.schema))
        del group, table
        self.pool.release_unused()  # give freed buffers back at once (bounded RSS)
        self.count += rows
        self.pending = [rest] if rest.num_rows else []
        self.pending_rows -= rows

    def close(self) -> int:
        """Write the last row group; return the row count."""
        if self.pending_rows or self.count == 0:
            if self.pending_rows:
                self._write(self.pending_rows)
            else:
                empty = [self.pa.array([], type=f.type) for f in self.schema]
                self.writer.write_table(self.pa.Table.from_arrays(empty, schema=self.schema))
        self.writer.close()
        self.writer = None
        return self.count

    def abort(self) -> None:
        """Close the file after a failure."""
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None


class _PlanState:
    """The outputs of one plan while chunks arrive."""

    def __init__(self, plan: _Plan, names: list[str], types: dict[str, set[type]]) -> None:
        self.plan = plan
        self.renderer = plan.renderer
        self.names = tuple(names)
        self.types: dict[str, set[type]] = {n: set(t) for n, t in types.items()}
        self.sample_kinds = self.kinds()
        header = self.renderer.header(self.names).encode("utf-8")
        csvs = [o for o in plan.outputs if o.format == "csv"]
        self.csv_path: Path | None = csvs[0].path if csvs else None
        self.copies = [o.path for o in csvs[1:]]
        if self.csv_path is not None:
            self.text: Any = open(self.csv_path, "w+b")  # noqa: SIM115
        else:
            import tempfile

            self.text = tempfile.TemporaryFile(prefix="exportkit-bulk-")  # noqa: SIM115
        self.text.write(header)
        self.header_len = len(header)
        self.ranges: list[tuple[int, int]] = []
        self.rows: list[int] = []
        self.chunk_names: list[tuple[str, ...]] = []
        self.offset = len(header)
        self.parquets = [
            _ParquetOut(o, self.sample_kinds) for o in plan.outputs if o.format == "parquet"
        ]

    def kinds(self) -> list[Column]:
        fixed = self.renderer.fixed
        return [*fixed, *(Column(n, kind_of_types(self.types.get(n, ()))) for n in self.names)]

    def add(
        self, names: tuple[str, ...], text: bytes, types: dict[str, set[type]], rows: int
    ) -> None:
        self.text.write(text)
        self.ranges.append((self.offset, len(text)))
        self.rows.append(rows)
        self.offset += len(text)
        # the same tuple object for the same names: one per chunk would add up
        self.chunk_names.append(self.names if names == self.names else names)
        for name, seen in types.items():
            known = self.types.get(name)
            if known is None:
                self.types[name] = set(seen)
            else:
                known |= seen
        if names == self.names:
            for out in self.parquets:
                out.add(text, rows)
        else:
            for out in self.parquets:
                out.valid = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.text.close()
        for out in self.parquets:
            out.abort()


class _Lane:
    def __init__(
        self, graph: RecordGraph, raw: Any, plans: list[_Plan], progress: Progress
    ) -> None:
        self.graph = graph
        self.raw = raw
        self.plans = plans
        self.progress = progress
        self.workers: _Workers | None = None
        self.states: list[_PlanState] = []
        self.chunk_count = 0
        self.stats: dict[str, Any] = {}

    def _work(self, payload: tuple[Any, tuple[str, ...] | None]) -> _Chunk:
        task, forced = payload
        cols, meta = self.raw.work(task)
        tables = []
        for plan in self.plans:
            renderer = plan.renderer
            dyn = renderer.dynamic(cols)
            renderer.known(dyn)
            names = forced if forced is not None else tuple(renderer.names)
            if forced is not None and not set(dyn) <= set(forced):
                raise NotFast("a chunk changed between two readings")
            text = renderer.render(cols, dyn, names).encode("utf-8")
            paths = {n: renderer.flatten.paths[n] for n in dyn} if renderer.flatten else {}
            tables.append((tuple(names), text, renderer.types(dyn), paths))
        return _Chunk(
            rows=len(cols),
            first=meta["first"],
            last=meta["last"],
            pks=array.array("q", cols.pk).tobytes(),
            missing_refs=meta["missing"],
            edges=meta["edges"],
            crc=meta.get("crc"),
            position=meta.get("position", 0.0),
            tables=tables,
        )

    def run(self) -> int:
        graph = self.graph
        raw = self.raw
        raw.open(graph)
        tasks = raw.tasks()
        # (the sessions' and sections' cells are formatted in the workers, as they meet them:
        # formatting all of them here first would cost the parent 25 MB at 50k sessions)
        sample = raw.sample()
        seeds: list[tuple[list[str], dict[str, set[type]]]] = []
        for plan in self.plans:
            renderer = plan.renderer
            types: dict[str, set[type]] = {}
            if sample is not None and renderer.flatten is not None:
                dyn = renderer.dynamic(sample)
                renderer.known(dyn)
                types = renderer.types(dyn)
            seeds.append((list(renderer.names), types))
        del sample  # not needed while the chunks run
        self.states = [
            _PlanState(plan, names, types)
            for plan, (names, types) in zip(self.plans, seeds, strict=True)
        ]
        count = min(MAX_WORKERS, os.cpu_count() or 1, max(1, len(tasks)))
        self.workers = _Workers(count, self._work)
        self.stats["workers"] = count
        for plan in self.plans:
            plan.renderer.forget()  # the workers have their copies; the parent renders nothing
        pks = graph.result_pks
        rows = 0
        missing = 0
        last: tuple[int, int] | None = None
        edge: Any = _UNSET
        crcs: list[tuple[int, int]] = []
        new_paths: list[dict[str, Any]] = [{} for _ in self.plans]
        trim_heap()
        for chunk in self.workers.map([(task, None) for task in tasks]):
            self.chunk_count += 1
            if self.chunk_count % 32 == 0:
                trim_heap()
            if chunk.edges[0] is not None:
                if edge is not _UNSET and chunk.edges[0] == edge:
                    raise NotFast("a session's results span two chunks")
                edge = chunk.edges[1]
            if chunk.first is not None:
                if last is not None and not last < chunk.first:
                    raise NotFast("results are not ordered by (session, pk) across chunks")
                last = chunk.last
            for pk in array.array("q", chunk.pks):
                if not pks.add(pk):
                    raise NotFast(f"duplicate primary key {pk}")
            rows += chunk.rows
            missing += chunk.missing_refs
            if chunk.crc is not None:
                crcs.append(chunk.crc)
            for state, found, (names, text, types, paths) in zip(
                self.states, new_paths, chunk.tables, strict=True
            ):
                state.add(names, text, types, chunk.rows)
                found.update(paths)
            if chunk.position:
                graph.expected_trial_results = max(rows, round(rows / chunk.position))
            self.progress.update(rows, graph.expected_trial_results)
        if crcs:
            raw.finish(crcs)
        for state, found in zip(self.states, new_paths, strict=True):
            self._settle(state, found, tasks)
        self.workers.close()
        self.workers = None
        graph.settle_trial_results(rows, missing)
        return rows

    def _settle(self, state: _PlanState, found: dict[str, Any], tasks: list[Any]) -> None:
        """Finish one plan's outputs; redo what the sample's columns did not foresee."""
        renderer = state.renderer
        flattener = renderer.flatten.flattener if renderer.flatten is not None else None
        if flattener is not None:
            for name, path in found.items():
                if flattener._name(path) != name:  # pragma: no cover - same rules everywhere
                    raise NotFast("a column name differs between processes")
        final = tuple(renderer.sort_names(found))
        state.names_final = final  # type: ignore[attr-defined]
        redo = [i for i, names in enumerate(state.chunk_names) if names != final]
        self.stats["rerendered_chunks"] = self.stats.get("rerendered_chunks", 0) + len(redo)
        if redo or final != state.names:
            self._rewrite_csv(state, final, redo, tasks)
        kinds = [
            *renderer.fixed,
            *(Column(n, kind_of_types(state.types.get(n, ()))) for n in final),
        ]
        for out in state.parquets:
            if out.valid and kinds == out.columns and not redo and final == state.names:
                out.close()
            else:
                self.stats["parquet_rebuilt"] = True
                out.abort()
                self._rebuild_parquet(state, out.output, kinds)
        path = state.csv_path
        state.text.flush()
        if path is not None:
            state.text.close()
            for copy in state.copies:
                _copy_file(path, copy)

    def _rewrite_csv(
        self, state: _PlanState, final: tuple[str, ...], redo: list[int], tasks: list[Any]
    ) -> None:
        assert self.workers is not None
        fresh = dict(
            zip(
                redo,
                self.workers.map([(tasks[i], final) for i in redo]),
                strict=True,
            )
        )
        index = self.plans.index(state.plan)
        old = state.text
        old.flush()
        if state.csv_path is not None:
            target = state.csv_path.with_name(state.csv_path.name + ".bulk")
            new: Any = open(target, "w+b")  # noqa: SIM115
        else:
            import tempfile

            target = None
            new = tempfile.TemporaryFile(prefix="exportkit-bulk-")  # noqa: SIM115
        try:
            header = state.renderer.header(final).encode("utf-8")
            new.write(header)
            ranges = []
            offset = len(header)
            for i, (start, length) in enumerate(state.ranges):
                if i in fresh:
                    text = fresh[i].tables[index][1]
                else:
                    text = os.pread(old.fileno(), length, start)
                new.write(text)
                ranges.append((offset, len(text)))
                offset += len(text)
            new.flush()
        except BaseException:
            new.close()
            if target is not None:
                target.unlink(missing_ok=True)
            raise
        old.close()
        if target is not None and state.csv_path is not None:
            new.close()
            os.replace(target, state.csv_path)
            new = open(state.csv_path, "rb+")  # noqa: SIM115
        state.text = new
        state.ranges = ranges
        state.header_len = len(header)
        state.names = final
        state.chunk_names = [final] * len(state.ranges)

    def _rebuild_parquet(self, state: _PlanState, output: _Output, kinds: list[Column]) -> None:
        out = _ParquetOut(output, kinds)
        state.text.flush()
        fd = state.text.fileno()
        try:
            for (start, length), rows in zip(state.ranges, state.rows, strict=True):
                out.add(os.pread(fd, length, start), rows)
                if not out.valid:  # pragma: no cover - the final kinds fit every value
                    raise NotFast("a value does not fit its Parquet column")
            out.close()
        except BaseException:
            out.abort()
            raise

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
            self.workers = None
        for state in self.states:
            state.close()


def _copy_file(source: Path, target: Path) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        while copied < size:
            n = os.copy_file_range(src.fileno(), dst.fileno(), size - copied)
            if n <= 0:
                break
            copied += n

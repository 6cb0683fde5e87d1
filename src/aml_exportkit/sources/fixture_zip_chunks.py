"""The engine's reader of a MUSCLE zip: ``results.json`` in byte ranges, in parallel.

MUSCLE stores ``results.json`` uncompressed, so any byte range of it can be read at any
offset by every worker at once. Chunks are cut at Django's ``}, {"model": `` separator
between two results of different sessions; each worker parses its range, checks it
(:func:`~aml_exportkit.engine.finish_columns`) and reports the CRC-32 of the bytes it read,
which the parent combines to check the member's CRC.
"""

from __future__ import annotations

import array
import contextlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter, itemgetter
from typing import IO, TYPE_CHECKING, Any

import orjson

from ..engine import (
    Checks,
    ChunkMeta,
    ResultColumns,
    Spans,
    StandDown,
    created_texts,
    finish_columns,
    make_checks,
    native_kernel,
    wide_integers,
)
from ..errors import SourceError
from ..graph import PkSet
from ..jsonstream import exact_int, finite_float, has_surrogate_escape, iter_json_array
from ..records import Record, Result
from ..schema import FIXTURE_FILES, MODELS_BY_LABEL, RESULT, FixtureFile, make_fixture_decoder

if TYPE_CHECKING:
    from ..graph import RecordGraph

#: Opens a member's (inflated) bytes, turning the zip's own errors into a SourceError.
MemberOpener = Callable[[], contextlib.AbstractContextManager[IO[bytes]]]

#: Bytes of ``results.json`` per chunk.
CHUNK_BYTES = 4 << 20
#: Results per batch of :func:`owner_runs` in a chunk's reference reading.
RUN_BATCH = 4096
#: Bytes of ``results.json`` sampled before the start (for the first header and schema).
SAMPLE_BYTES = 1 << 20

_SEPARATOR = b'}, {"model": '
_WHITESPACE = b" \t\r\n"
_RESULT_FIELDS = tuple(f.name for f in RESULT.fields)
_RESULT_KEYS = frozenset(_RESULT_FIELDS)
_GET_FIELDS = itemgetter(*_RESULT_FIELDS)
_UNSET: Any = object()


def fixture_columns(items: list[Any], checks: Checks) -> tuple[ResultColumns, ChunkMeta]:
    """A chunk of parsed ``results.json`` objects as checked columns in output order."""
    if not items:
        return finish_columns([], [], [], [], [], {}, [], [], checks)
    if set(map(type, items)) != {dict}:
        raise StandDown("an element that is not an object")
    try:
        if set(map(itemgetter("model"), items)) != {"result.result"}:
            raise StandDown("an object that is not a result.result")
        pks = list(map(itemgetter("pk"), items))
        fields = list(map(itemgetter("fields"), items))
    except KeyError:
        raise StandDown("an object without model, pk or fields") from None
    if set(map(type, fields)) != {dict}:
        raise StandDown("'fields' that is not an object")
    if set(map(len, fields)) != {len(_RESULT_FIELDS)} or set().union(*fields) != _RESULT_KEYS:
        raise StandDown("result fields other than MUSCLE's")
    columns = list(zip(*map(_GET_FIELDS, fields), strict=True))
    return field_columns(pks, dict(zip(_RESULT_FIELDS, columns, strict=True)), checks)


def field_columns(
    pks: Sequence[Any],
    by_name: dict[str, Sequence[Any]],
    checks: Checks,
    *,
    raw_json: bool = False,
) -> tuple[ResultColumns, ChunkMeta]:
    """A chunk's pks and its fields by name as checked columns in output order.

    :param raw_json: each ``json_data`` is its JSON text (the native kernel's parse).
    """
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
    return finish_columns(
        pks,
        by_name["session"],
        by_name["participant"],
        by_name["section"],
        created,
        strings,
        by_name["score"],
        by_name["json_data"],
        checks,
        raw_json=raw_json,
    )


def parse_array(body: bytes | bytearray | memoryview) -> list[Any]:
    """The elements of ``[body]`` as the source's reader parses them."""
    if wide_integers(bytes(body)):
        # integers beyond 64 bits: the standard library keeps them exact (as jsonstream)
        try:
            items = json.loads(
                b"[" + body + b"]",
                parse_constant=_reject_constant,
                parse_float=finite_float,
                parse_int=exact_int,
            )
        except ValueError as exc:
            raise StandDown(f"malformed JSON: {exc}") from None
        if has_surrogate_escape(bytes(body)):
            raise StandDown("a surrogate escape: the reference reading judges the text")
    else:
        buf = bytearray(b"[")
        buf += body
        buf += b"]"
        try:
            items = orjson.loads(buf)
        except orjson.JSONDecodeError as exc:
            raise StandDown(f"malformed JSON or a cut inside a value: {exc}") from None
    if type(items) is not list:  # pragma: no cover - "[...]" is always a list
        raise StandDown("not an array")
    return items


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# -- the reference reading: records one at a time, as a file's whole array is read ----------


def fixture_records(
    stream: IO[bytes],
    fixture: FixtureFile,
    where: str,
    *,
    size: int = 0,
    read_fraction: Callable[[float], None] | None = None,
    offset: int = 0,
    after: Any = None,
) -> Iterator[Sequence[Record]]:
    """Decode the fixture objects of ``stream`` (a member's JSON array) in batches, checking
    each object's model label; every error names ``where`` and the record.

    :param size: the member's size, for ``read_fraction`` (told, before each batch, how
        much of it was read).
    :param offset: the member offset of the stream's first byte (a chunk's), for messages.
    :param after: the element before the stream's first one, for messages.
    """
    decode = make_fixture_decoder(fixture.model)
    label = fixture.model.label
    size = max(size, 1)
    for items in iter_json_array(stream, name=where, offset=offset, after=after):
        if read_fraction is not None:
            read_fraction(stream.tell() / size)
        batch: list[Record] = []
        for item in items:
            model = item.get("model") if type(item) is dict else None
            if model != label:
                raise SourceError(
                    _wrong_model(item, fixture),
                    file=where,
                    model=fixture.model.key,
                    pk=item.get("pk") if isinstance(item, dict) else None,
                )
            batch.append(decode(item, where))
        yield batch


def owner_runs(
    batches: Iterable[Sequence[Record]],
    owner_field: str,
    excluded: set[int] | frozenset[int],
    size: int = RUN_BATCH,
) -> Iterator[Sequence[Result]]:
    """Results regrouped by (owner, pk), in batches of about ``size``.

    MUSCLE orders the file by owner only, so each owner's run is sorted by pk. Results of
    owners the filter dropped are skipped; anything else goes on to the graph's checks.
    """
    owner_of = attrgetter(owner_field)
    by_pk = attrgetter("pk")
    batch: list[Result] = []
    group: list[Result] = []
    group_owner: int | None = None
    for records in batches:
        for result in records:
            owner = owner_of(result)
            if owner != group_owner:
                if group:
                    group.sort(key=by_pk)
                    batch.extend(group)
                    group = []
                    if len(batch) >= size:
                        yield batch
                        batch = []
                group_owner = owner
            if owner is not None and owner in excluded:
                continue
            group.append(result)  # type: ignore[arg-type]
    if group:
        group.sort(key=by_pk)
        batch.extend(group)
    if batch:
        yield batch


def _wrong_model(item: Any, fixture: FixtureFile) -> str:
    if not isinstance(item, dict):
        return f"expected fixture objects, found {type(item).__name__}"
    model = item.get("model")
    if model is None:
        return "object without a 'model' label"
    if model not in MODELS_BY_LABEL:
        return f"unknown model label {model!r} (expected {fixture.model.label!r})"
    return f"model {model!r} does not belong in {fixture.name} (expected {fixture.model.label!r})"


def result_columns(results: Sequence[Result], checks: Checks) -> tuple[ResultColumns, ChunkMeta]:
    """Checked results (the reference reading's) as a chunk's columns."""
    extra = [r.extra for r in results] if any(r.extra for r in results) else None
    sessions: list[Any] = [r.session for r in results]  # (checked: none is None)
    return finish_columns(
        [r.pk for r in results],
        sessions,
        [r.participant for r in results],
        [r.section for r in results],
        [r.created_at.isoformat(timespec="microseconds") for r in results],
        {
            name: [getattr(r, name) for r in results]
            for name in (
                "question_key",
                "expected_response",
                "given_response",
                "comment",
                "scoring_rule",
            )
        },
        [r.score for r in results],
        [r.json_data for r in results],
        checks,
        extra=extra,
    )


class _RangeStream(io.RawIOBase):
    """Bytes ``start`` to ``stop`` of a file (read with ``pread``), between ``prefix`` and
    ``suffix``: a chunk of an array read as an array of its own."""

    def __init__(self, fd: int, start: int, stop: int, prefix: bytes, suffix: bytes) -> None:
        super().__init__()
        self.fd = fd
        self.parts = [(prefix, None), (b"", (start, stop)), (suffix, None)]
        self.position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self.parts:
            text, span = self.parts[0]
            if span is not None:
                start, stop = span
                if start >= stop:
                    self.parts.pop(0)
                    continue
                data = os.pread(self.fd, min(len(view), stop - start), start)
                if not data:
                    raise SourceError("the file ends early")
                self.parts[0] = (b"", (start + len(data), stop))
            else:
                if not text:
                    self.parts.pop(0)
                    continue
                data = text[: len(view)]
                self.parts[0] = (text[len(data) :], None)
            view[: len(data)] = data
            self.position += len(data)
            return len(data)
        return 0


# -- zip: byte ranges of results.json ---------------------------------------------------------


class ZipTrialResults:
    """The trial results of a MUSCLE zip's ``results.json``, read in byte ranges.

    A stored (uncompressed) member, as MUSCLE writes them, is read where it lies, at any
    offset of the file, by every worker at once; any other member is first inflated (as a
    stream, with the zip's own checks) into a temporary file that is then read the same way.

    A chunk that the columnar reading refuses is read again by the reference reading
    (:func:`fixture_records`, :func:`owner_runs` and the graph's
    :class:`~aml_exportkit.graph.ResultChecker`, record by record): it either raises the
    source's error, naming the file and the record, or gives the chunk's columns. Whatever
    the source's reader accepts or refuses, no :class:`~aml_exportkit.engine.StandDown`
    reaches the run.

    :param fd: a file descriptor of the zip (or of the inflated copy of a gzip-wrapped one).
    :param info: the member.
    :param excluded: sessions the filter dropped.
    :param where: the member as errors name it (``zip: results.json``).
    :param inflate: opens the member's inflated bytes (for a member that is not stored).
    """

    def __init__(
        self,
        fd: int,
        info: zipfile.ZipInfo,
        excluded: frozenset[int],
        where: str = "results.json",
        inflate: MemberOpener | None = None,
    ) -> None:
        self.fd = fd
        self.info = info
        self.excluded = excluded
        self.where = where
        self.inflate = inflate
        self.start = 0
        self.size = info.file_size
        self.checks: Checks | None = None
        self.graph: RecordGraph | None = None
        #: the member is not one JSON array: its one chunk goes to the reference reading
        self.whole = False
        #: the inflated copy (its CRC was checked while inflating)
        self._copy: IO[bytes] | None = None

    def _read(self, offset: int, size: int) -> bytes:
        parts: list[bytes] = []
        position = self.start + offset
        while size > 0:
            part = os.pread(self.fd, size, position)
            if not part:  # (the zip's directory gave its size: the file shrank since)
                raise SourceError(
                    f"broken or truncated zip: the member ends at byte {position - self.start}"
                    f" of its {self.info.file_size}",
                    file=self.where,
                )
            parts.append(part)
            size -= len(part)
            position += len(part)
        return b"".join(parts)

    def open(self, graph: RecordGraph) -> None:
        """Find the member's data (inflating a member that is not stored)."""
        info = self.info
        self.graph = graph
        self.checks = make_checks(graph, self.excluded)
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size == info.file_size:
            header = os.pread(self.fd, 30, info.header_offset)
            if len(header) == 30 and header[:4] == b"PK\x03\x04":
                name_len = int.from_bytes(header[26:28], "little")
                extra_len = int.from_bytes(header[28:30], "little")
                self.start = info.header_offset + 30 + name_len + extra_len
                return
        if self.inflate is None:
            raise StandDown("results.json is compressed")
        self._inflate(self.inflate)

    def _inflate(self, inflate: MemberOpener) -> None:
        """Inflate the member into a temporary file, as a stream (the zip's reader checks
        its CRC-32 and reports a broken member as the source's reader does)."""
        copy = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        try:
            with inflate() as stream:
                while block := stream.read(1 << 20):
                    copy.write(block)
            copy.flush()
        except BaseException:
            copy.close()
            raise
        self._copy = copy
        self.fd = copy.fileno()
        self.start = 0
        self.size = copy.tell()

    def close(self) -> None:
        """Remove the inflated copy, if any."""
        if self._copy is not None:
            self._copy.close()
            self._copy = None

    def tasks(self) -> list[tuple[int, int, int, int]]:
        """Chunks as ``(read_from, read_to, parse_from, parse_to)``: the read ranges cover the
        member without gap (for its CRC), the parse ranges hold whole elements and never
        split a session. A member that is not framed as one array is one chunk, for the
        reference reading to report."""
        size = self.size
        head = self._read(0, min(size, 4096))
        first = len(head) - len(head.lstrip(_WHITESPACE))
        tail = self._read(max(0, size - 4096), min(size, 4096))
        stripped = tail.rstrip(_WHITESPACE)
        if head[first : first + 1] != b"[" or not stripped.endswith(b"]"):
            self.whole = True
            return [(0, size, 0, size)]
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
            items = parse_array(buf[start + 1 : cut + 1])
            return fixture_columns(items, self.checks)[0]
        except StandDown:
            return None

    def work(self, task: tuple[int, int, int, int]) -> tuple[ResultColumns, ChunkMeta]:
        """Read, parse and check one chunk (in a worker): with the native kernel when it is
        built, else with the Python reference of the same columnar functions; a chunk that
        either refuses goes to the reference reading (:meth:`reference`)."""
        read_from, read_to, _, _ = task
        if self.whole:
            return self.reference(task)
        data = self._read(read_from, read_to - read_from)
        crc = zlib.crc32(data)
        try:
            cols, meta = self._columns(data, task)
        except StandDown:
            del data
            return self.reference(task)
        meta["crc"] = (crc, read_to - read_from)
        meta["position"] = read_to / max(self.size, 1)
        return cols, meta

    def _columns(
        self, data: bytes, task: tuple[int, int, int, int]
    ) -> tuple[ResultColumns, ChunkMeta]:
        read_from, _, parse_from, parse_to = task
        assert self.checks is not None
        body = memoryview(data)[parse_from - read_from : parse_to - read_from]
        kernel = native_kernel()
        if kernel is not None and parse_to > parse_from:
            try:
                pks, columns = kernel.parse_columns(body, _RESULT_FIELDS)
            except ValueError as exc:
                raise StandDown(f"results.json (native kernel): {exc}") from None
            del body
            by_name = dict(zip(_RESULT_FIELDS, columns, strict=True))
            return field_columns(pks, by_name, self.checks, raw_json=True)
        items = parse_array(body) if parse_to > parse_from else []
        del body
        return fixture_columns(items, self.checks)

    def reference(self, task: tuple[int, int, int, int]) -> tuple[ResultColumns, ChunkMeta]:
        """Read one chunk record by record, as the source's reader reads the whole member.

        :raises SourceError: the source's error for the first record at fault in the
            chunk (an :class:`~aml_exportkit.errors.IntegrityError` for the graph's checks).
        """
        read_from, read_to, parse_from, parse_to = task
        assert self.checks is not None
        assert self.graph is not None
        first, last = read_from == 0, read_to == self.size
        start = 0 if first else parse_from
        stop = self.size if last else parse_to
        stream = io.BufferedReader(
            _RangeStream(
                self.fd,
                self.start + start,
                self.start + stop,
                b"" if first else b"[",
                b"" if last else b"]",
            ),
            buffer_size=1 << 20,
        )
        records = fixture_records(
            stream,
            _RESULTS_FILE,
            self.where,
            offset=start - (0 if first else 1),
            after=None if first else self._element_before(parse_from),
        )
        checker = self.graph.result_checker("trial", PkSet())
        check = checker.check
        kept: list[Result] = []
        for batch in owner_runs(records, "session", self.excluded):
            for result in batch:
                check(result)
            kept.extend(batch)
        cols, meta = result_columns(kept, self.checks)
        crc = 0
        for offset in range(read_from, read_to, CHUNK_BYTES):
            crc = zlib.crc32(self._read(offset, min(CHUNK_BYTES, read_to - offset)), crc)
        meta["crc"] = (crc, read_to - read_from)
        meta["position"] = read_to / max(self.size, 1)
        return cols, meta

    def _element_before(self, offset: int) -> Any:
        """The element that ends just before the separator ahead of ``offset`` (for
        messages), or None when it is not found nearby."""
        end = offset - 2  # past its closing brace
        low = max(0, end - (1 << 20))
        buf = self._read(low, end - low)
        i = buf.rfind(_SEPARATOR)
        begin = i + 3 if i >= 0 else buf.find(b"{")
        try:
            return orjson.loads(buf[begin:])
        except orjson.JSONDecodeError:
            return None

    def finish(self, crcs: Sequence[tuple[int, int]]) -> None:
        """Check the member's CRC-32 from the chunks' CRCs (an inflated copy was checked
        as it was inflated)."""
        if self._copy is not None:
            return
        crc = 0
        for part, length in crcs:
            crc = crc32_combine(crc, part, length)
        if crc != self.info.CRC:
            raise SourceError(
                f"broken zip member: Bad CRC-32 for file {self.info.filename!r}", file=self.where
            )


_RESULTS_FILE = next(f for f in FIXTURE_FILES if f.name == "results.json")


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


def _byte_operators() -> list[list[int]]:
    """The GF(2) operators that append 2**k zero bytes to a CRC-32, for k = 0 … 63."""
    one_bit = [0xEDB88320] + [1 << n for n in range(31)]
    operator = _gf2_square(_gf2_square(_gf2_square(one_bit)))  # 8 bits: one byte
    operators = [operator]
    for _ in range(63):
        operator = _gf2_square(operator)
        operators.append(operator)
    return operators


_BYTE_OPERATORS: list[list[int]] = []


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of ``A + B`` from the CRC-32s of ``A`` and ``B`` and ``len(B)`` (zlib's
    ``crc32_combine``, which Python's zlib module does not offer)."""
    if len2 <= 0:
        return crc1
    if not _BYTE_OPERATORS:
        _BYTE_OPERATORS.extend(_byte_operators())  # once: the squarings cost ~3 ms
    k = 0
    while len2:
        if len2 & 1:
            crc1 = _gf2_times(_BYTE_OPERATORS[k], crc1)
        len2 >>= 1
        k += 1
    return crc1 ^ crc2


# -- profile answers: checked in one go when no sink uses them ----------------------------------

#: Bytes of ``profiles.json`` parsed at a time.
PROFILE_PIECE = 4 << 20


class ZipProfileAnswers:
    """Checks a zip's stored ``profiles.json`` with the native kernel, as the graph checks
    its profile answers, for runs whose sinks do not use the answers themselves.

    The member is read in pieces cut at Django's separator; each piece's answers are
    parsed into columns, their ``json_data`` parsed in full, and checked as the engine checks
    trial results, with the participants as owners. Anything unusual raises
    :class:`~aml_exportkit.engine.StandDown`, and the graph reads the answers record by
    record instead (:meth:`~aml_exportkit.graph.RecordGraph.profile_results`), reporting
    whatever is wrong.

    :param fd: a file descriptor of the zip.
    :param info: the member.
    :param excluded: participants the filter dropped.
    """

    def __init__(self, fd: int, info: zipfile.ZipInfo, excluded: frozenset[int]) -> None:
        self.reader = ZipTrialResults(fd, info, excluded)

    def check(self, graph: RecordGraph) -> tuple[PkSet, int, int]:
        """The answers' keys, their number, and their references to sections that are
        not exported (kept with ``missing_sections = "keep"``)."""
        kernel = native_kernel()
        if kernel is None:
            raise StandDown("no native kernel")
        reader = self.reader
        reader.open(graph)
        checks = make_checks(graph, reader.excluded, owner="participant")
        spans = Spans("profile answers are not ordered by (participant, pk)")
        crc = 0
        carry = b""
        started = False
        size = reader.size
        for offset in range(0, size, PROFILE_PIECE) if size else ():
            block = reader._read(offset, min(PROFILE_PIECE, size - offset))
            crc = zlib.crc32(block, crc)
            buf = carry + block
            if not started:
                stripped = buf.lstrip(_WHITESPACE)
                if not stripped:
                    continue
                if stripped[:1] != b"[":
                    raise StandDown("profiles.json does not start with '['")
                buf = stripped[1:]
                started = True
            final = offset + len(block) >= size
            if final:
                body = buf.rstrip(_WHITESPACE)
                if not body.endswith(b"]"):
                    raise StandDown("profiles.json does not end with ']'")
                body, carry = body[:-1], b""
            else:
                cut = buf.rfind(_SEPARATOR)
                if cut < 0:
                    carry = buf
                    continue
                body, carry = buf[: cut + 1], buf[cut + 3 :]
            if not body.strip(_WHITESPACE):
                continue
            try:
                pks, columns = kernel.parse_columns(body, _RESULT_FIELDS)
                by_name = dict(zip(_RESULT_FIELDS, columns, strict=True))
                kernel.flatten(by_name["json_data"], 0, False)  # parses every json_data
            except ValueError as exc:
                raise StandDown(f"profiles.json (native kernel): {exc}") from None
            cols, meta = field_columns(pks, by_name, checks, raw_json=True)
            spans.take(
                rows=len(cols),
                first=meta["first"],
                last=meta["last"],
                pks=array.array("q", cols.pk).tobytes(),
                missing=meta["missing"],
            )
        if not started and size:
            raise StandDown("profiles.json is empty")
        if crc != reader.info.CRC:
            raise StandDown("profiles.json fails its CRC-32 check")
        return spans.keys, spans.rows, spans.missing

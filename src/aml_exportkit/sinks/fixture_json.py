"""Sink ``fixture-json``: a zip of MUSCLE's seven fixture files, as Django writes them.

The members, their order, the selection and the serialisation are MUSCLE's (MUSCLE_EXPORT.md
§2.2 to §2.4): one line per file, ``[`` + objects joined by ``", "`` + ``]``,
``{"model", "pk", "fields"}`` objects, raw UTF-8, datetimes cut to milliseconds with ``Z``.
Unlike MUSCLE's zip, the output is deterministic: fixed entry times, each participant once,
results ordered by (session, pk). ``docs/fixture-json.md`` lists every difference.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import attrs

from ..contracts import BaseSink, EngineFormat, OutputReport, SinkContext, SinkSpec
from ..errors import SinkError
from ..graph import RecordGraph
from ..hookspecs import hookimpl
from ..records import Record, Result
from ..schema import FIXTURE_FILES, ModelSpec, block_comment, make_fixture_encoder
from ..tabular.options import TableOptions
from ..tabular.table import Column

NAME = "fixture-json"
#: Entry times are fixed so that the same input gives the same bytes.
ENTRY_TIME = (1980, 1, 1, 0, 0, 0)
#: Records of a small table encoded and written at a time.
MEMBER_SLICE = 1024
#: Bytes of the engine's ``results.json`` text copied into the zip at a time.
COPY_BYTES = 1 << 20
_MODELS = {f.name: f.model for f in FIXTURE_FILES}

# Django's serializer: ensure_ascii=False and the default separators (", ", ": ").
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
# For text that UTF-8 cannot carry (a lone surrogate from a "\ud800" escape): escaped ASCII
# is still the same JSON value.
_ENCODE_ASCII = json.JSONEncoder(ensure_ascii=True, allow_nan=False).encode


def encode_objects(
    records: Sequence[Record],
    encode: Callable[[Record], dict[str, Any]],
    model: ModelSpec,
    where: str,
) -> bytes:
    """The records' fixture objects as Django's serializer writes them, joined by ``", "``
    (UTF-8; empty for none).

    The sink and the engine's workers (``results.json`` a chunk at a time) both call it.

    :param encode: the model's :func:`~aml_exportkit.schema.make_fixture_encoder`.
    :param where: the file named by an error.
    :raises SinkError: for a value JSON cannot hold (NaN or Infinity).
    """
    objects = [encode(record) for record in records]
    try:
        # One call for all: with Django's separators a list's text is its items joined by
        # ", " (an encoder call per object cost more than the encoding).
        return _ENCODE(objects).encode("utf-8")[1:-1]
    except ValueError:
        pass  # object by object, to name the record or escape its text
    parts: list[str] = []
    for record, obj in zip(records, objects, strict=True):
        try:
            text = _ENCODE(obj)
        except ValueError as exc:  # NaN or Infinity
            raise SinkError(
                f"{model.key} {record.pk}: {exc}; JSON cannot hold it", sink=NAME, path=where
            ) from None
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # (a ValueError too: it must not be taken for NaN)
            text = _ENCODE_ASCII(obj)
        parts.append(text)
    return ", ".join(parts).encode("utf-8")


@attrs.frozen(kw_only=True)
class FixtureJsonOptions:
    """Options of the ``fixture-json`` sink.

    :param compression: ``"stored"`` (as MUSCLE writes its zip) or ``"deflate"``.
    """

    compression: Literal["stored", "deflate"] = "stored"


class _MemberWriter:
    """Writes one fixture file into the zip, an object at a time."""

    def __init__(self, stream: IO[bytes], name: str, model: ModelSpec, where: str) -> None:
        self.stream = stream
        self.name = name
        self.encode: Callable[[Record], dict[str, Any]] = make_fixture_encoder(model)
        self.where = where
        self.model = model
        self.count = 0
        stream.write(b"[")

    def write(self, records: Sequence[Record]) -> None:
        if not records:
            return
        text = encode_objects(records, self.encode, self.model, self.where)
        if self.count:
            self.stream.write(b", ")
        self.stream.write(text)
        self.count += len(records)

    def close(self) -> None:
        self.stream.write(b"]")
        self.stream.close()


class FixtureJsonSink(BaseSink):
    """Writes the zip member by member while the results stream through.

    On the engine (an :class:`~aml_exportkit.contracts.EngineSink`) the workers render
    ``results.json``'s objects a chunk at a time into a temporary file, in order, while
    the profile answers stream into ``profiles.json``; :meth:`finish` copies that text
    into the member.
    """

    def __init__(self, context: SinkContext) -> None:
        super().__init__(context)
        options: FixtureJsonOptions = context.options
        self.compression = (
            zipfile.ZIP_DEFLATED if options.compression == "deflate" else zipfile.ZIP_STORED
        )
        self.graph: RecordGraph | None = None
        self.zip: zipfile.ZipFile | None = None
        self.current: _MemberWriter | None = None
        self.counts: dict[str, int] = {}
        self.temp: Path | None = None
        #: the engine's ``results.json`` text (objects joined by ``", "``) and its count
        self.engine_text: Path | None = None
        self.engine_rows: int | None = None

    def _info(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=ENTRY_TIME)
        info.compress_type = self.compression
        info.external_attr = 0o644 << 16
        info.create_system = 3
        return info

    def _open_member(self, name: str) -> _MemberWriter:
        assert self.zip is not None
        stream = self.zip.open(self._info(name), mode="w", force_zip64=True)
        return _MemberWriter(stream, name, _MODELS[name], f"{self.context.target}: {name}")

    def _write_member(self, name: str, records: Sequence[Record]) -> None:
        writer = self._open_member(name)
        # A slice at a time: 50,000 sessions' text, joined and encoded at once, took
        # three copies of some 75 MB.
        for start in range(0, len(records), MEMBER_SLICE):
            writer.write(records[start : start + MEMBER_SLICE])
        writer.close()
        self.counts[name] = writer.count

    def _switch_to(self, name: str) -> _MemberWriter:
        current = self.current
        if current is not None and current.name == name:
            return current
        if current is not None:
            current.close()
            self.counts[current.name] = current.count
        self.current = self._open_member(name)
        return self.current

    def begin(self, graph: RecordGraph) -> None:
        """Write sessions.json and participants.json, and open profiles.json."""
        self.graph = graph
        self.temp = self.context.temp_path()
        try:
            self.zip = zipfile.ZipFile(self.temp, "w", compression=self.compression)
        except OSError as exc:
            raise SinkError(
                f"cannot write: {exc.strerror}", sink=NAME, path=str(self.context.target)
            ) from None
        slugs = {block.slug for block in graph.blocks.values()}
        if len(slugs) == 1 and (slug := slugs.pop()):  # so that a reader knows the block
            self.zip.comment = block_comment(slug)
        self._write_member("sessions.json", _by_pk(graph.sessions.values()))
        self._write_member("participants.json", _by_pk(graph.participants.values()))
        self._switch_to("profiles.json")

    def write_profiles(self, batch: Sequence[Result]) -> None:
        """Append profile answers to profiles.json."""
        self._switch_to("profiles.json").write(batch)

    def engine_table(self) -> tuple[TableOptions | None, EngineFormat, Path] | None:
        """Where the engine writes ``results.json``'s objects (a temporary file)."""
        if self.engine_text is None:
            assert self.temp is not None
            # beside the zip's temporary file and named after it (two bytes fit in what
            # the name reserves for the pid): a later run removes it if this one dies
            self.engine_text = self.temp.with_name(self.temp.name + ".r")
        return None, "fixture-json", self.engine_text

    def engine_wrote(self, rows: int, columns: Sequence[Column] = ()) -> None:
        """The engine wrote ``rows`` trial results' objects; :meth:`finish` copies them."""
        self.engine_rows = rows

    def _copy_engine_text(self) -> None:
        assert self.engine_text is not None
        assert self.engine_rows is not None
        writer = self._switch_to("results.json")
        with open(self.engine_text, "rb") as text:
            shutil.copyfileobj(text, writer.stream, COPY_BYTES)
        writer.count = self.engine_rows

    def _drop_engine_text(self) -> None:
        if self.engine_text is not None:
            with contextlib.suppress(OSError):
                self.engine_text.unlink()
            self.engine_text = None

    def finish(self) -> Sequence[OutputReport]:
        """Close results.json and write sections, songs and feedback."""
        assert self.graph is not None
        assert self.zip is not None
        if self.engine_rows is not None:
            self._copy_engine_text()
        self._drop_engine_text()
        self._switch_to("results.json")
        assert self.current is not None
        self.current.close()
        self.counts["results.json"] = self.current.count
        self.current = None
        graph = self.graph
        self._write_member("sections.json", list(graph.sections.values()))
        self._write_member("songs.json", _by_pk(graph.songs.values()))
        self._write_member("feedback.json", _by_pk(graph.feedback.values()))
        self.zip.close()
        self.zip = None
        return (OutputReport(path=self.context.target, rows=sum(self.counts.values())),)

    def abort(self) -> None:
        """Close the zip file handle; the pipeline deletes the temporary file."""
        self._drop_engine_text()
        if self.zip is not None:
            try:
                if self.current is not None:
                    self.current.stream.close()
                self.zip.close()
            except (OSError, ValueError):
                pass
            self.zip = None


def _by_pk(records: Iterable[Any]) -> list[Any]:
    return sorted(records, key=lambda r: r.pk)


@hookimpl
def exportkit_register_sinks() -> list[SinkSpec]:
    """The fixture-json sink."""
    return [
        SinkSpec(
            name=NAME,
            description="MUSCLE's export zip of seven fixture files, loadable by loaddata",
            options=FixtureJsonOptions,
            factory=FixtureJsonSink,
            extensions=(".zip",),
            engine=True,
        )
    ]

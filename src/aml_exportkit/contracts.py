"""What a plugin provides: frozen descriptions of sources, sinks and templates, and the
small protocols the live objects follow.

A hook returns descriptions (:class:`SourceSpec`, :class:`SinkSpec`, :class:`TemplateSpec`),
never live objects; the pipeline creates sources and sinks from them for one run.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, TypeGuard

import attrs

from .errors import SinkError
from .graph import MissingSections, RecordGraph
from .records import Result
from .selection import Selection
from .text import count

if TYPE_CHECKING:
    from .atomic import OutputSet
    from .tabular.options import TableOptions
    from .tabular.table import Column
    from .template.model import Template


# -- sources --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SourceOptions:
    """The template's ``[source]`` settings that every source honours.

    :param missing_sections: a result whose section is not exported is an ``"error"``
        (the default) or is kept with its section id (``"keep"``).
    """

    missing_sections: MissingSections = "error"


@attrs.frozen(kw_only=True)
class BlockSummary:
    """One block a source holds, for ``exportkit inspect``."""

    pk: int | None
    slug: str | None
    name: str | None = None
    sessions: int = 0


@attrs.frozen(kw_only=True)
class Inventory:
    """What a source holds: its schema version, its blocks and its row counts."""

    kind: str
    location: str
    schema_version: str
    blocks: tuple[BlockSummary, ...]
    counts: Mapping[str, int]
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """The inventory as JSON-ready data (``exportkit inspect --json``)."""
        return {
            "kind": self.kind,
            "location": self.location,
            "schema_version": self.schema_version,
            "blocks": [
                {"pk": b.pk, "slug": b.slug, "name": b.name, "sessions": b.sessions}
                for b in self.blocks
            ],
            "counts": dict(self.counts),
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """The inventory as text lines (``exportkit inspect``)."""
        out = [
            f"source: {self.location} ({self.kind})",
            f"schema: {self.schema_version}",
            "blocks:",
        ]
        for block in self.blocks:
            name = f" {block.name!r}" if block.name else ""
            sessions = count(block.sessions, "session")
            out.append(f"  {block.slug or '?'} (pk {block.pk}){name}: {sessions}")
        out.append("counts:")
        width = max((len(k) for k in self.counts), default=0)
        out += [f"  {key:<{width}}  {count}" for key, count in self.counts.items()]
        out += [f"note: {note}" for note in self.notes]
        return out


class Source(Protocol):
    """An open source. Use it as a context manager; ``close`` releases it."""

    def inspect(self) -> Inventory:
        """Describe the source without reading results."""

    def read(self, selection: Selection) -> AbstractContextManager[RecordGraph]:
        """Read the graph of ``selection``.

        The graph's result streams are valid inside the ``with`` block only (a database
        source holds one snapshot transaction open for that long).
        """

    def close(self) -> None:
        """Release files, connections and temporary files."""

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...


@attrs.frozen(kw_only=True)
class SourceSpec:
    """A kind of source, as a plugin registers it.

    :param name: a short name, e.g. ``fixture-zip``.
    :param description: one line for ``exportkit plugins``.
    :param claims: whether this source reads the given URI or path.
    :param open: open the source for a URI with the template's source options.
    :param uri_help: what a URI for this source looks like, for messages.
    """

    name: str
    description: str
    claims: Callable[[str], bool]
    open: Callable[[str, SourceOptions], Source]
    uri_help: str = ""


# -- sinks ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ColumnInfo:
    """Where one output column comes from, for manifests and codebooks.

    :param name: the column's name in the output.
    :param origin: the model field or JSON document it comes from, e.g.
        ``result.given_response`` or ``result.json_data``.
    :param path: for a value taken from inside ``json_data``, its path (``config.buttons[0]``).
    :param rule: how the value was made, e.g. ``field``, ``flatten``, ``json-text``.
    :param type: the column's type, when the sink knows it (``string``, ``integer``,
        ``number``, ``boolean``, ``datetime``, ``json``).
    :param key: in a wide table, the key the column sits under (``03``, ``s1.q_age``).
    :param key_by: what the key counts or names: ``number``, ``question_key``,
        ``section`` or ``session``.
    :param json_types: for a flattened column, the JSON types of its values (``string``,
        ``integer``, ``number``, ``boolean``, ``null``, ``object``, ``array``) and
        ``absent`` when some rows lack the key.
    :param json_cells: the cells hold each value's JSON text (``docs/flattening.md``).
    :param json_path: for a flattened column, its path as a list of keys and list indexes
        (``["config", "buttons", 0]``), for programs; an exploded list's position column
        has the list's path and the rule ``explode position``.
    """

    name: str
    origin: str
    path: str | None = None
    rule: str | None = None
    type: str | None = None
    key: str | None = None
    key_by: str | None = None
    json_types: tuple[str, ...] | None = None
    json_cells: bool | None = None
    json_path: tuple[str | int, ...] | None = None


@attrs.frozen(kw_only=True)
class OutputReport:
    """One file a sink wrote: its final path, how many rows (or records) it holds and,
    for tables, where each column comes from. The pipeline fills in ``sink``, the sink's
    type name."""

    path: Path
    rows: int
    columns: tuple[ColumnInfo, ...] = ()
    sink: str = ""


@attrs.frozen(kw_only=True)
class SinkContext:
    """Everything a sink gets for one run.

    :param name: the sink type, e.g. ``csv-long``.
    :param index: the sink's position in the template's ``sinks`` list.
    :param options: an instance of the sink's options class, validated.
    :param target: the resolved output path (``{block}`` expanded).
    :param outputs: where temporary files are made; they are renamed into place only after
        every sink finished.
    :param template: the template of the run.
    :param needs_profiles: whether the sink is fed profile answers (from its spec).
    :param engine: whether the sink is an :class:`EngineSink` (from its spec).
    """

    name: str
    index: int
    options: Any
    target: Path
    outputs: OutputSet
    template: Template
    needs_profiles: bool = True
    engine: bool = False

    def temp_path(self, target: Path | None = None) -> Path:
        """A temporary file beside ``target`` (default: the sink's target) to write into."""
        return self.outputs.create(target or self.target)


class ArrowColumn(Protocol):
    """What a sink may need of a ``pyarrow.Array`` (pyarrow ships no type stubs)."""

    def to_pylist(self) -> list[Any]:
        """The column's values as Python objects (None for a null)."""


class ResultBatch(Protocol):
    """A batch of trial results as columns: a ``pyarrow.RecordBatch`` (typed by this
    protocol, as pyarrow ships no type stubs). Its columns, in order: ``pk``, ``session``,
    ``section`` (int64), ``created_at`` (string: ISO 8601 with the source's UTC offset),
    ``question_key``, ``expected_response``, ``given_response``, ``comment`` (string),
    ``score`` (float64), ``scoring_rule`` (string), ``json_data`` (string: the value's
    JSON text) and ``extra`` (string: the JSON object of the fields beyond MUSCLE's, null
    for none). Pass it to pyarrow, Polars, pandas or DuckDB as it is.
    """

    @property
    def num_rows(self) -> int:
        """The number of trial results."""

    @property
    def schema(self) -> object:
        """The columns' names and types (a ``pyarrow.Schema``)."""

    def column(self, i: int | str) -> ArrowColumn:
        """One column, by position or name."""


class Sink(Protocol):
    """A live sink for one run. The pipeline calls, in order: :meth:`begin` with the graph,
    :meth:`write_profiles` for each batch of profile answers, :meth:`write_result_batch`
    (or, for a sink without it, :meth:`write_results`; see there) for each batch of trial
    results, then
    :meth:`finish`; or :meth:`abort` after a failure.
    """

    def begin(self, graph: RecordGraph) -> None:
        """Start writing; the graph's small tables are complete."""

    def write_profiles(self, batch: Sequence[Result]) -> None:
        """Take a batch of profile answers, ordered by (participant, pk)."""

    def write_results(self, batch: Sequence[Result]) -> None:
        """Take a batch of trial results, ordered by (session, pk)."""

    def write_result_batch(self, batch: ResultBatch) -> None:
        """Take a batch of trial results as columns, ordered by (session, pk).

        Every sink whose table the engine does not write (``docs/performance.md``) gets
        them this way, one batch per chunk, in order, after the profile answers. A sink
        that does not define this method (one written before it existed) gets the batches
        as rows, through :func:`hand_result_batch` (:meth:`write_results`) or
        :meth:`BaseSink.write_result_batch`'s adapter. A sink that encodes its batches
        (an :class:`EncodingSink`) gets :meth:`EncodingSink.write_encoded` instead.
        """

    def finish(self) -> Sequence[OutputReport]:
        """Complete every temporary file and report what was written."""

    def abort(self) -> None:
        """Close open files after a failure; the pipeline removes the temporary files."""


class EncodingSink(Sink, Protocol):
    """A sink whose per-batch work runs in the engine's worker processes: it turns each
    batch of trial results into the bytes it writes (:meth:`encode_result_batch`), and the
    main process only writes those bytes, in order (:meth:`write_encoded`). A sink has this
    seam by defining both methods (:class:`BaseSink` defines neither); when the engine reads
    the trial results (every run: it is the one path, decision 0035), they replace
    :meth:`Sink.write_result_batch`, and :meth:`Sink.write_results` is not called.

    The workers are forked after :meth:`Sink.begin`: each holds a copy of the sink as it was
    then (profile answers it takes in the main process may come later). What
    :meth:`encode_result_batch` changes on that copy is not seen by the main process, nor by
    the other workers; an open file of the sink's must not be written there (the workers
    end without flushing it).
    """

    def encode_result_batch(self, batch: ResultBatch) -> bytes:
        """The bytes to write for ``batch`` (at most a few thousand trial results, ordered
        by (session, pk)): called in a worker process. An exception ends the run with a
        :class:`~aml_exportkit.errors.SinkError` naming the sink (the sink, in the main
        process, gets :meth:`Sink.abort`)."""

    def write_encoded(self, data: bytes, rows: int) -> None:
        """Write what :meth:`encode_result_batch` returned for a batch of ``rows`` trial
        results: called in the main process, batch after batch in (session, pk) order,
        after the profile answers."""


def encodes_batches(sink: Sink) -> TypeGuard[EncodingSink]:
    """Whether ``sink`` defines :class:`EncodingSink`'s two methods.

    :raises ValueError: when it defines one of them only (a misspelt name, say): its
        batches would otherwise go to ``write_result_batch`` and, in a sink that has none,
        be dropped without a word.
    """
    names = ("encode_result_batch", "write_encoded")
    defined = [name for name in names if callable(getattr(sink, name, None))]
    if len(defined) == 1:
        (missing,) = set(names) - set(defined)
        raise ValueError(f"defines {defined[0]} but not {missing}; an encoding sink needs both")
    return len(defined) == 2


class BaseSink:
    """A convenient base for sinks: every step does nothing until overridden. A subclass
    that defines ``encode_result_batch`` and ``write_encoded`` is an :class:`EncodingSink`.
    """

    def __init__(self, context: SinkContext) -> None:
        self.context = context

    def begin(self, graph: RecordGraph) -> None:
        """Start writing."""

    def write_profiles(self, batch: Sequence[Result]) -> None:
        """Take profile answers; ignored unless overridden."""

    def write_results(self, batch: Sequence[Result]) -> None:
        """Take trial results; ignored unless overridden."""

    def write_result_batch(self, batch: ResultBatch) -> None:
        """Take trial results as columns. Unless overridden: the row adapter, which hands
        :meth:`write_results` the batch's rows as the
        :class:`~aml_exportkit.records.Result` records the source's reader makes (equal to
        them, field by field), so that a sink written for rows works unchanged.

        :param batch: the trial results as columns (see :class:`ResultBatch`).
        """
        self.write_results(result_rows(batch))

    def finish(self) -> Sequence[OutputReport]:
        """Report nothing written unless overridden."""
        return ()

    def abort(self) -> None:
        """Nothing to close unless overridden."""


def result_rows(batch: ResultBatch) -> list[Result]:
    """A :class:`ResultBatch`'s trial results as :class:`~aml_exportkit.records.Result`
    records, in order: the row adapter, for a sink that wants rows."""
    from .engine import batch_results

    return batch_results(batch)


def hand_result_batch(sink: Sink, batch: ResultBatch) -> None:
    """Give ``sink`` a batch of trial results as columns: by its
    :meth:`Sink.write_result_batch`, or, for a sink without one, as rows to
    :meth:`Sink.write_results`."""
    write = getattr(sink, "write_result_batch", None)
    if write is None:
        sink.write_results(result_rows(batch))
    else:
        write(batch)


@attrs.frozen(kw_only=True)
class Requirement:
    """A module that a sink imports when it runs but that the install may lack, and the
    command that installs it. ``exportkit validate`` and every run check a template's
    sinks' requirements before reading anything (:func:`unmet_requirements`).

    :param module: the importable name, e.g. ``pyreadstat``.
    :param install: the command that installs it, e.g. ``pip install pyreadstat``.
    """

    module: str
    install: str

    def met(self) -> bool:
        """Whether :attr:`module` can be imported (found, without importing it)."""
        top = self.module.partition(".")[0]
        if top in sys.modules:  # imported already, or blocked (None)
            return sys.modules[top] is not None
        try:
            return importlib.util.find_spec(top) is not None
        except (ImportError, ValueError):
            return False

    def error(self, who: str) -> SinkError:
        """The error of a run that needs this module without it: ``who`` (a sink's type,
        or the function) needs it, and how to install it."""
        return SinkError(f"needs {self.module}, which is not installed: {self.install}", sink=who)


def unmet_requirements(specs: Iterable[SinkSpec]) -> list[tuple[SinkSpec, Requirement]]:
    """The requirements of ``specs`` that this install does not meet, each with its sink,
    in order and without repeats."""
    unmet: list[tuple[SinkSpec, Requirement]] = []
    for spec in specs:
        for requirement in spec.requires:
            if not requirement.met() and all(spec is not s for s, _ in unmet):
                unmet.append((spec, requirement))
    return unmet


@attrs.frozen(kw_only=True)
class SinkSpec:
    r"""A kind of sink, as a plugin registers it.

    :param name: the ``type`` templates use, e.g. ``csv-long``.
    :param description: one line for ``exportkit plugins``.
    :param options: an attrs class of the sink's own template keys (besides ``type`` and
        ``path``); templates are validated against it.
    :param factory: create the live sink for one run.
    :param extensions: the file name endings the sink writes, e.g. ``(".csv",)``.
    :param needs_profiles: whether the sink reads profile answers (the pipeline skips
        reading them when no sink does).
    :param engine: the sink's live objects are :class:`EngineSink`\ s: they can let the
        engine (:mod:`aml_exportkit.engine`) write their long table from the source's raw
        trial results, without a :class:`~aml_exportkit.records.Result` per row.
    :param requires: modules the sink imports when it runs that an install may lack
        (:class:`Requirement`); a run that uses the sink stops before reading anything
        when one is missing, naming the install command.
    """

    name: str
    description: str
    options: type[Any]
    factory: Callable[[SinkContext], Sink]
    extensions: tuple[str, ...] = ()
    needs_profiles: bool = True
    engine: bool = False
    requires: tuple[Requirement, ...] = ()


#: What the engine writes for an :class:`EngineSink`.
EngineFormat: TypeAlias = Literal["csv", "parquet", "fixture-json"]


class EngineSink(Sink, Protocol):
    """A sink whose long table the engine can write.

    The engine (:mod:`aml_exportkit.engine`, ``docs/performance.md``) reads the source's
    raw trial results in chunks, in worker processes, applies every check the graph applies
    to a result stream (kind, foreign keys, unique pk, order; the graph's counts are updated
    as if the stream had been read), and writes the long table of our CSV dialect (and
    Parquet made from that text), or the fixture zip's ``results.json`` text, byte for
    byte as the sink itself would. The pipeline uses it for every run with a sink (the
    source's results in chunks: its own reader, ``RecordGraph.result_chunks``, or else its
    records cut between sessions); the run's other sinks then get the trial results as
    batches (:meth:`Sink.write_result_batch`). Bad input ends the run with the source's own
    error (decision 0028); the engine is every run's one path (decision 0035).

    The calls: :meth:`engine_table` after :meth:`Sink.begin` and the profile answers; then
    either :meth:`engine_wrote` (the engine wrote the file) and :meth:`Sink.finish`, or (a
    table the engine does not render) the trial results' batches, as for any other sink
    (:meth:`Sink.write_result_batch`).
    """

    def engine_table(self) -> tuple[TableOptions | None, EngineFormat, Path] | None:
        """``(table options, format, temporary path)``: the long table the sink writes,
        ``"csv"`` or ``"parquet"``, and where; or ``(None, "fixture-json", path)``: the
        text of the fixture zip's ``results.json`` (its objects joined by ``", "``, without
        the brackets) goes to ``path``; None when the engine cannot write it."""

    def engine_wrote(self, rows: int, columns: Sequence[Column] = ()) -> None:
        """The engine wrote ``rows`` rows to the temporary path, with ``columns``;
        :meth:`Sink.finish` reports them."""


# -- templates ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TemplateSpec:
    """A builtin template that a plugin ships.

    :param name: its name, used wherever a template path is accepted, e.g.
        ``muscle-classic:long``.
    :param description: one line for ``exportkit templates``.
    :param text: the template's TOML text.
    """

    name: str
    description: str
    text: str

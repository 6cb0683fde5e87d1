"""Tables in memory: the long or wide table of the tabular sinks as a pandas DataFrame or an
Arrow table, without writing any file; and :class:`TableBuilder`, the row builder that
sink plugins use to make the same table.

::

    from aml_exportkit import to_dataframe

    trials = to_dataframe("block.zip")                        # the long table, one row per result
    sessions = to_dataframe("export.toml", table="wide")      # the template's table sink, wide

The table is the ``parquet`` sink's, run as a run runs it (on the engine whenever the engine
takes the table) into an uncompressed file in a temporary folder, and read back: column
names and values are those of the files, the Arrow table equals what the ``parquet`` sink
writes for the same options (types included), and each value rendered as text equals the
CSV's cell. The file, and the rows the builders park between their two passes, are deleted
before the call returns. The finished table itself is held in memory.

pandas is optional: ``pip install pandas`` (or the ``frames`` extra).
``docs/embedding.md`` documents this module.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, cast

import attrs

from .atomic import OutputSet
from .contracts import Requirement, SinkContext, SourceOptions
from .engine import ArrowTable, jobs_setting
from .errors import SinkError, TemplateError
from .exclusions import read_exclude_file
from .graph import RecordGraph
from .pipeline import drive, load_template, open_source, prepare_graph, resolve_source_uri
from .plugins import PluginManager, Registry, get_plugin_manager, load_registry
from .progress import NullProgress
from .records import Result
from .selection import Filter, Selection
from .sinks.parquet import ParquetSink
from .tabular.arrow import PYARROW, RowConverter, arrow_schema
from .tabular.options import CsvWideOptions, ParquetOptions, TableOptions, WideOptions
from .tabular.sink import Builder, make_builder
from .tabular.table import Column, Kind, Table, text_of
from .template.model import Template

__all__ = [
    "Column",
    "Kind",
    "Layout",
    "Table",
    "TableBuilder",
    "TableOptions",
    "WideOptions",
    "arrow_table",
    "text_of",
    "to_arrow",
    "to_dataframe",
]

#: One row per result (or exploded list element), or one per session or participant.
Layout: TypeAlias = Literal["long", "wide"]
#: pandas' ``dtype_backend`` choices, as in ``pandas.read_parquet``.
DtypeBackend: TypeAlias = Literal["numpy_nullable", "pyarrow"]

#: pandas, which :func:`to_dataframe` needs (an extra of the package).
#: The package itself, not the ``frames`` extra: the command must work from a checkout too.
PANDAS = Requirement(module="pandas", install="pip install pandas")
#: Rows converted to Arrow at a time: bounds the Python lists alive during conversion.
BATCH_ROWS = 16384


class TableBuilder:
    """Builds one table from a record graph, batch by batch, with the row builders of the
    ``csv-long``, ``csv-wide`` and ``parquet`` sinks: the same columns, in the same order,
    with the same values.

    In a sink: make it in ``begin(graph)``, pass it every batch from ``write_profiles`` and
    ``write_results``, call :meth:`finish` in ``finish()`` and :meth:`close` in ``abort()``.
    Rows are parked in anonymous temporary files (in ``TMPDIR``) until :meth:`finish`;
    reading the finished table's rows to the end, or :meth:`close`, deletes them.

    Column kinds are tracked as for Parquet: a flattened column's kind is that of the
    values seen in it (see :data:`Kind`).

    :param graph: the graph the sink was given.
    :param options: the table's keys (an instance of :class:`TableOptions` or of a
        subclass, such as a sink's own options class); default: ``TableOptions()``.
    :param layout: ``"long"`` (one row per result) or ``"wide"`` (one per session or
        participant).
    :param wide: the wide layout's options; default: ``options.wide`` when the options
        have it, else ``WideOptions()``.
    :raises ValueError: for options that cannot make this layout (``flatten.lists =
        "explode"`` or the dashboard style in a wide table).
    """

    def __init__(
        self,
        graph: RecordGraph,
        options: TableOptions | None = None,
        *,
        layout: Layout = "long",
        wide: WideOptions | None = None,
    ) -> None:
        options = options if options is not None else TableOptions()
        if wide is None:
            found = getattr(options, "wide", None)
            wide = found if isinstance(found, WideOptions) else WideOptions()
        self.layout: Layout = layout
        self._builder: Builder | None = make_builder(
            options, graph, layout=layout, wide=wide, track_types=True
        )
        self._finished: Builder | None = None

    def _live(self) -> Builder:
        if self._builder is None:
            raise RuntimeError("the table builder was finished or closed")
        return self._builder

    def add_profiles(self, batch: Sequence[Result]) -> None:
        """Take a batch of profile answers (ordered by participant, pk).

        :raises ValueError: when two values would share a column.
        """
        self._live().add_profiles(batch)

    def add_results(self, batch: Sequence[Result]) -> None:
        """Take a batch of trial results (ordered by session, pk).

        :raises ValueError: when two values would share a column.
        """
        self._live().add_results(batch)

    def finish(self) -> Table:
        """The table: its columns with their kinds, and a one-shot iterator of its rows
        (each a sequence of Python values in column order: ``None``, ``bool``, ``int``,
        ``float``, ``str``, ``datetime`` with time zone, or a nested ``dict``/``list`` in
        ``json`` columns; :func:`text_of` gives a value's CSV text).

        :raises ValueError: when two values would share a column.
        """
        builder = self._live()
        table = builder.finish()
        # Keep the builder for close(): the rows are read from its temporary files.
        self._finished = builder
        self._builder = None
        return table

    def close(self) -> None:
        """Delete the temporary files (safe to call more than once, and after
        :meth:`finish` once the rows are read or no longer wanted)."""
        for builder in (self._builder, self._finished):
            if builder is not None:
                builder.close()
        self._builder = None
        self._finished = None


# -- Arrow and pandas ---------------------------------------------------------------------------


def _require(requirement: Requirement, what: str) -> Any:
    # imported by name: pandas and pyarrow ship no type information
    if not requirement.met():
        raise requirement.error(what)
    return importlib.import_module(requirement.module)


def arrow_table(table: Table) -> ArrowTable:
    """A ``pyarrow.Table`` of ``table``, typed as the ``parquet`` sink types its columns:
    ``int`` → ``int64``, ``float`` → ``float64``, ``bool`` → ``bool``, ``datetime`` →
    ``timestamp[us, tz=UTC]``, everything else → ``string`` (nested and mixed values as
    the CSV's text). Reads the table's rows (once).

    :raises SinkError: when pyarrow is not installed.
    """
    from . import __version__

    pa = _require(PYARROW, "to_arrow")
    columns = table.columns
    schema = arrow_schema(pa, columns, {"exportkit.version": __version__})
    rows = RowConverter(pa, schema, columns)

    batches = []
    chunk: list[Sequence[Any]] = []
    for row in table.rows():
        chunk.append(row)
        if len(chunk) >= BATCH_ROWS:
            batches.append(rows.batch(chunk))
            chunk = []
    if chunk:
        batches.append(rows.batch(chunk))
    return cast("ArrowTable", pa.Table.from_batches(batches, schema=schema))


def _pandas_types(pd: Any, pa: Any, backend: DtypeBackend | None) -> Callable[[Any], Any] | None:
    if backend is None:
        return None
    if backend == "pyarrow":
        return pd.ArrowDtype  # type: ignore[no-any-return]
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
    }
    return mapping.get


class _PandasTable(ArrowTable, Protocol):
    def to_pandas(self, *, types_mapper: Callable[[Any], Any] | None) -> Any:
        """The table as a ``pandas.DataFrame`` (pandas ships no type information)."""


# -- what to read -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _Plan:
    template: Template
    uri: str
    blocks: tuple[str, ...]
    filter: Filter
    options: TableOptions
    layout: Layout
    wide: WideOptions | None


def _is_template(what: str | os.PathLike[str], registry: Registry) -> bool:
    text = os.fspath(what)
    if "://" in text:
        return False
    return text in registry.template_specs or Path(text).suffix.lower() == ".toml"


def _layout_of(options: Any) -> Layout:
    layout = getattr(options, "layout", None)
    if layout in ("long", "wide"):
        return layout  # type: ignore[no-any-return]
    return "wide" if isinstance(options, CsvWideOptions) else "long"


def _plan(
    what: Template | str | os.PathLike[str],
    *,
    source: str | None,
    blocks: str | Sequence[str] | None,
    table: Layout | None,
    sink: int | None,
    options: TableOptions | None,
    filter: Filter | None,
    registry: Registry,
) -> _Plan:
    if isinstance(what, Template):
        template = what
    elif _is_template(what, registry):
        template = load_template(os.fspath(what), registry=registry)
    else:
        if sink is not None:
            raise TypeError("sink= picks a sink of a template; a source was given")
        template = Template(file="<in memory>")
        source = source or os.fspath(what)
    chosen: TableOptions | None = None
    if sink is not None:
        try:
            entry = template.sinks[sink]
        except IndexError:
            raise TemplateError(
                f"no sink number {sink}: the template has {len(template.sinks)}",
                file=template.file,
                key_path="sinks",
            ) from None
        if not isinstance(entry.options, TableOptions):
            raise TemplateError(
                f"sink type {entry.type!r} does not make a table",
                file=template.file,
                key_path=f"sinks[{sink}]",
            )
        chosen = entry.options
    else:
        chosen = next(
            (s.options for s in template.sinks if isinstance(s.options, TableOptions)), None
        )
    sink_options = chosen if chosen is not None else TableOptions()
    use = options if options is not None else sink_options
    layout: Layout = table or _layout_of(sink_options if options is None else use)
    wide = getattr(use, "wide", None)
    if not isinstance(wide, WideOptions):
        found = getattr(sink_options, "wide", None)
        wide = found if isinstance(found, WideOptions) else None
    if isinstance(blocks, str):
        blocks = (blocks,)
    return _Plan(
        template=template,
        uri=resolve_source_uri(template, source),
        blocks=tuple(blocks) if blocks else template.source.blocks,
        filter=(
            read_exclude_file(filter, template.folder, template.file)
            if filter is not None
            else template.filter
        ),
        options=use,
        layout=layout,
        wide=wide,
    )


#: What the ``parquet`` sink's file says of the run, which a table has not.
_RUN_METADATA = (b"exportkit.template", b"exportkit.template_file", b"exportkit.sink")


class _Schema(Protocol):
    @property
    def metadata(self) -> dict[bytes, bytes]:
        """The schema's key-value metadata."""


class _FileTable(Protocol):
    """What :func:`_read` uses of the ``pyarrow.Table`` read from the file."""

    @property
    def schema(self) -> _Schema:
        """The columns' names, types and metadata."""

    def replace_schema_metadata(self, metadata: dict[bytes, bytes]) -> ArrowTable:
        """The same table with other metadata, without a copy."""


class _TableSink(ParquetSink):
    """The ``parquet`` sink as :func:`to_arrow` runs it: the table :class:`TableBuilder`
    makes (MUSCLE's styles' cells stay text, as in their CSV), uncompressed."""

    typed_text = False


def _sink_options(plan: _Plan) -> ParquetOptions:
    """The plan's table keys as the ``parquet`` sink's options."""
    keys = {field.name: getattr(plan.options, field.name) for field in attrs.fields(TableOptions)}
    return ParquetOptions(
        **keys, layout=plan.layout, wide=plan.wide or WideOptions(), compression="none"
    )


def _read(plan: _Plan, pm: PluginManager, registry: Registry) -> ArrowTable:
    """Run the plan's table through the ``parquet`` sink (on the engine when it takes the
    table, as a run would) into a temporary folder, and read the file back."""
    _require(PYARROW, "to_arrow")
    pq = importlib.import_module("pyarrow.parquet")
    # the worker count of a run: EXPORTKIT_JOBS, else the template's jobs (checked first)
    jobs = jobs_setting(None, plan.template.jobs)
    source_options = SourceOptions(missing_sections=plan.template.source.missing_sections)
    with (
        tempfile.TemporaryDirectory(prefix="exportkit-frame-") as folder,
        open_source(plan.uri, options=source_options, registry=registry) as opened,
        opened.read(Selection(blocks=plan.blocks, filter=plan.filter)) as graph,
    ):
        # The same preparation as a run (the [privacy] table among others): a frame must
        # not show what the files of the same template would not.
        prepare_graph(pm, graph, plan.template)
        target = Path(folder) / "table.parquet"
        outputs = OutputSet()
        try:
            context = SinkContext(
                name="parquet",
                index=0,
                options=_sink_options(plan),
                target=target,
                outputs=outputs,
                template=plan.template,
                engine=True,
            )
            drive(graph, [(context, _TableSink(context))], NullProgress(), jobs=jobs)
            outputs.commit()
        except ValueError as exc:  # the options' checks
            outputs.discard()
            raise SinkError(str(exc), sink=f"{plan.layout} table") from None
        except SinkError as exc:  # the builders' FlattenError, named after the table
            outputs.discard()
            raise SinkError(exc.message, sink=f"{plan.layout} table") from None
        except BaseException:
            outputs.discard()
            raise
        read = cast("_FileTable", pq.read_table(str(target)))
        # the table's metadata, without what names the run (the parquet sink's template)
        metadata = {k: v for k, v in read.schema.metadata.items() if k not in _RUN_METADATA}
        return read.replace_schema_metadata(metadata)


def to_arrow(
    what: Template | str | os.PathLike[str],
    *,
    source: str | None = None,
    blocks: str | Sequence[str] | None = None,
    table: Layout | None = None,
    sink: int | None = None,
    options: TableOptions | None = None,
    filter: Filter | None = None,
    plugin_manager: PluginManager | None = None,
) -> ArrowTable:
    """Export one table into a ``pyarrow.Table``, writing no file.

    ``what`` is a template (a loaded :class:`~aml_exportkit.template.model.Template`, a
    ``.toml`` path or a builtin template's name) or a source (a MUSCLE export zip's path or
    a ``postgresql://`` URI). With a template, the table is that of its first table sink
    (``csv-long``, ``csv-wide``, ``parquet``, or a plugin sink whose options extend
    :class:`TableOptions`), and its ``[source]``, ``[filter]`` and ``[privacy]`` apply;
    with a source, the table has the default keys of ``csv-long`` (docs/csv.md).

    Every selected block goes into one table, as for a sink path without ``{block}``.

    :param what: a template or a source.
    :param source: a source URI that overrides the template's ``[source] uri``.
    :param blocks: block slug(s); default: the template's ``[source] blocks``, else every
        block of the source.
    :param table: ``"long"`` or ``"wide"``; default: the sink's layout (``long`` for a
        source).
    :param sink: the index of the template's sink whose keys to use (default: the first
        table sink).
    :param options: table keys that replace the sink's (e.g. ``CsvWideOptions(...)``).
    :param filter: a session filter that replaces the template's ``[filter]``.
    :param plugin_manager: the plugins to use (default: a fresh manager).
    :return: the table, typed as the ``parquet`` sink types it (see :func:`arrow_table`).
    :raises ExportkitError: for a bad template, an unreadable source, or options that
        cannot make the table (:class:`~aml_exportkit.errors.SinkError`, also when pyarrow
        is missing).
    """
    _require(PYARROW, "to_arrow")
    pm = plugin_manager or get_plugin_manager()
    registry = load_registry(pm)
    plan = _plan(
        what,
        source=source,
        blocks=blocks,
        table=table,
        sink=sink,
        options=options,
        filter=filter,
        registry=registry,
    )
    return _read(plan, pm, registry)


def to_dataframe(
    what: Template | str | os.PathLike[str],
    *,
    source: str | None = None,
    blocks: str | Sequence[str] | None = None,
    table: Layout | None = None,
    sink: int | None = None,
    options: TableOptions | None = None,
    filter: Filter | None = None,
    dtype_backend: DtypeBackend | None = None,
    plugin_manager: PluginManager | None = None,
) -> Any:
    """Export one table into a ``pandas.DataFrame``, writing no file.

    The same table as :func:`to_arrow` (every parameter is the same), converted as
    ``pandas.read_parquet`` converts the ``parquet`` sink's file: the frame equals
    ``pandas.read_parquet(path, dtype_backend=...)`` of that file.

    :param dtype_backend: ``None`` (pandas' defaults: an integer column with nulls becomes
        ``float64``), ``"numpy_nullable"`` (``Int64``, ``boolean``, ``string``, …) or
        ``"pyarrow"`` (``ArrowDtype`` columns).
    :return: the table as a DataFrame (datetimes in UTC).
    :raises ExportkitError: as :func:`to_arrow`; a :class:`~aml_exportkit.errors.SinkError`
        when pandas or pyarrow is missing.
    """
    pd = _require(PANDAS, "to_dataframe")
    pa = _require(PYARROW, "to_dataframe")
    arrow = cast(
        "_PandasTable",
        to_arrow(
            what,
            source=source,
            blocks=blocks,
            table=table,
            sink=sink,
            options=options,
            filter=filter,
            plugin_manager=plugin_manager,
        ),
    )
    return arrow.to_pandas(types_mapper=_pandas_types(pd, pa, dtype_backend))

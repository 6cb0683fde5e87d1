"""The lifecycle every tabular sink shares: pick a row builder for the style and layout,
feed it, and write the finished table with the sink's own writer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from ..contracts import BaseSink, EngineFormat, OutputReport, SinkContext
from ..errors import SinkError
from ..flatten import FlattenError
from ..graph import RecordGraph
from ..records import Result
from .long import LongBuilder
from .muscle import ClassicBuilder, DashboardBuilder
from .options import TableOptions, WideOptions
from .origins import infos_of
from .table import Column, Table
from .wide import WideBuilder


class Builder(Protocol):
    """What a row builder offers the sinks."""

    def add_profiles(self, batch: Sequence[Result]) -> None: ...

    def add_results(self, batch: Sequence[Result]) -> None: ...

    def finish(self) -> Table: ...

    def close(self) -> None: ...


def make_builder(
    options: TableOptions,
    graph: RecordGraph,
    *,
    layout: Literal["long", "wide"],
    wide: WideOptions | None = None,
    track_types: bool = True,
    partition_by: Sequence[str] = (),
    typed_text: bool = False,
) -> Builder:
    """The row builder for ``options.style`` and ``layout``.

    :raises FlattenError: for a combination that cannot work (explode in a wide table).
    :raises ValueError: for the dashboard style in a wide layout.
    """
    ms = options.timestamps == "ms"
    if options.style == "muscle-classic":
        return ClassicBuilder(
            options.classic, graph, wide=layout == "wide", ms=ms, typed=typed_text
        )
    if options.style == "muscle-dashboard":
        if layout == "wide":
            raise ValueError("style 'muscle-dashboard' is MUSCLE's long CSV; it has no wide form")
        return DashboardBuilder(graph, ms=ms, typed=typed_text)
    if layout == "wide":
        return WideBuilder(options, wide or WideOptions(), graph, track_types=track_types)
    return LongBuilder(options, graph, track_types=track_types, partition_by=partition_by)


class TableSink(BaseSink):
    """A sink that builds one table and writes it at the end.

    Subclasses set :attr:`layout` (or override :meth:`layout_of`) and implement :meth:`write`.
    """

    layout: Literal["long", "wide"] = "long"
    #: Record the types of flattened values (the Parquet schema, and the columns whose
    #: cells must be JSON text to be read back exactly, docs/flattening.md).
    track_types = True
    #: Find typed columns in MUSCLE's styles' text (Parquet stores them typed).
    typed_text = False
    #: What the engine writes for this sink (``"csv"`` or ``"parquet"``), if it can.
    engine_format: EngineFormat | None = None

    def __init__(self, context: SinkContext) -> None:
        super().__init__(context)
        self.options: Any = context.options
        self.builder: Builder | None = None
        self._temp: Path | None = None
        self._engine_rows: int | None = None
        self._engine_columns: tuple[Column, ...] = ()

    def temp_path(self) -> Path:
        """The sink's temporary output file (reserved once)."""
        if self._temp is None:
            self._temp = self.context.temp_path()
        return self._temp

    def engine_table(self) -> tuple[TableOptions, EngineFormat, Path] | None:
        """The table the engine may write for this sink (see
        :class:`~aml_exportkit.contracts.EngineSink`): long or wide, as the options say."""
        if self.engine_format is None:
            return None
        if getattr(self.options, "partition_by", ()):
            return None  # rows go to several files by partition: the row builder's batches
        return self.options, self.engine_format, self.temp_path()

    def engine_wrote(self, rows: int, columns: Sequence[Column] = ()) -> None:
        """The engine wrote the table: ``rows`` rows with ``columns``."""
        self._engine_rows = rows
        self._engine_columns = tuple(columns)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (FlattenError, ValueError) as exc:
            raise SinkError(
                str(exc), sink=self.context.name, path=str(self.context.target)
            ) from None

    def wide_options(self) -> WideOptions | None:
        """The wide layout's options, if the sink has them."""
        return getattr(self.options, "wide", None)

    def begin(self, graph: RecordGraph) -> None:
        """Choose the row builder."""
        with self._errors():
            self.builder = make_builder(
                self.options,
                graph,
                layout=self.layout,
                wide=self.wide_options(),
                track_types=self.track_types,
                partition_by=getattr(self.options, "partition_by", ()),
                typed_text=self.typed_text,
            )

    def wants_profiles(self) -> bool:
        """Whether the table uses profile answers: as rows, as columns, or in MUSCLE's
        styles and the wide layout. The pipeline then only checks them."""
        options = self.options
        return not (
            self.layout == "long"
            and getattr(options, "style", "exportkit") == "exportkit"
            and getattr(options, "rows", "trial") == "trial"
            and getattr(options, "profile", "omit") == "omit"
        )

    def write_profiles(self, batch: Sequence[Result]) -> None:
        """Pass profile answers to the builder."""
        assert self.builder is not None
        with self._errors():
            self.builder.add_profiles(batch)

    def write_results(self, batch: Sequence[Result]) -> None:
        """Pass trial results to the builder."""
        assert self.builder is not None
        with self._errors():
            self.builder.add_results(batch)

    def finish(self) -> Sequence[OutputReport]:
        """Build the table and write it to a temporary file."""
        assert self.builder is not None
        if self._engine_rows is not None:
            rows = self._engine_rows
            columns = self._engine_columns
            self.builder.close()
        else:
            with self._errors():
                table = self.builder.finish()
                columns = table.columns
                rows = self.write(self.temp_path(), table)
        self.builder = None
        return (self.report(rows, columns),)

    def write(self, path: Path, table: Table) -> int:
        """Write ``table`` to ``path``; return the number of rows."""
        raise NotImplementedError

    def report(self, rows: int, columns: Sequence[Column]) -> OutputReport:
        """The report of the sink's file: ``rows`` rows with ``columns``."""
        options = self.options if isinstance(self.options, TableOptions) else None
        return OutputReport(path=self.context.target, rows=rows, columns=infos_of(columns, options))

    def abort(self) -> None:
        """Delete the builder's spill files."""
        if self.builder is not None:
            with contextlib.suppress(Exception):
                self.builder.close()
            self.builder = None

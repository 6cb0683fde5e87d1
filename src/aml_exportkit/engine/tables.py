"""The seam between the engine's run and the tables it renders: what a plan's renderer
does (:class:`TableRenderer`), and which renderer a sink's table options get
(:func:`make_renderer`).

Two renderers implement it: the long table's
(:class:`~aml_exportkit.engine.render.ChunkRenderer`) and the wide table's
(:class:`~aml_exportkit.engine.wide.WideRenderer`). The run (:mod:`.workers`) knows only
this protocol: it asks a renderer for a chunk's dynamic columns, its CSV text with given
columns, and, once every chunk is in, the final columns, the header, the columns' kinds
for Parquet and the rows of units that have no trial results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..graph import RecordGraph
    from ..tabular.options import TableOptions
    from ..tabular.table import Column
    from .chunks import ResultColumns
    from .render import Cells, ColumnFlattener


class TableRenderer(Protocol):
    """What the engine's run asks of the renderer of one table (one set of options).

    A chunk's *names* are the renderer's dynamic column ids (the long table: flattened
    names; the wide table: key and name), each with the Python types of its values.
    """

    #: True when chunks are rendered only with the export's final columns: the run
    #: first surveys every chunk (:meth:`survey`), then renders each with the final ones.
    deferred: bool
    #: the flattener of ``json_data`` (its json paths and names), if the table has one
    flatten: ColumnFlattener | None
    #: the dynamic column ids known so far, in output order
    names: list[str]
    #: the ids whose cells are JSON text
    json_columns: frozenset[str]

    @property
    def fixed(self) -> list[Column]:
        """The fixed columns before the dynamic ones."""

    def dynamic(self, chunk: ResultColumns) -> Mapping[str, list[Any] | Cells]:
        """The chunk's flattened ``json_data`` columns by name."""

    def known(self, names: Iterable[str]) -> None:
        """Add dynamic column ids found elsewhere (a sample, another process)."""

    def survey(
        self, chunk: ResultColumns, dyn: Mapping[str, list[Any] | Cells]
    ) -> tuple[tuple[str, ...], dict[str, set[type]]]:
        """A deferred renderer's first reading of a chunk: its ids and their types."""

    def render(
        self,
        chunk: ResultColumns,
        dyn: Mapping[str, list[Any] | Cells],
        names: Sequence[str],
        json_names: frozenset[str] = frozenset(),
    ) -> bytes:
        """The chunk's CSV lines with the dynamic ids ``names``."""

    def types(self, dyn: Mapping[str, list[Any] | Cells]) -> dict[str, set[type]]:
        """The types of a chunk's dynamic columns (a renderer that is not deferred)."""

    def final_names(
        self, found: Mapping[str, object], types: dict[str, set[type]], covered: int
    ) -> list[str]:
        """The export's dynamic ids in output order, once every chunk is in: ``found``
        maps the flattened names to their json paths, ``types`` the ids to their types
        (it may add ``Absent``), ``covered`` sessions had trial results."""

    def gap(self, after: int | None, before: int | None, names: Sequence[str]) -> bytes:
        """The rows of the units without trial results between two chunks (after the
        session ``after`` and before ``before``; None: no bound)."""

    def header(self, names: Sequence[str]) -> str:
        """The header line (with CRLF) for the dynamic ids ``names``."""

    def kinds(
        self,
        names: Sequence[str],
        types: Mapping[str, set[type]],
        paths: Mapping[str, Any] | None = None,
    ) -> list[Column]:
        """Every column of the table, as the row builder describes them."""

    def table_rows(self, results: int) -> int:
        """The table's rows when the export has ``results`` trial results."""

    def forget(self) -> None:
        """Drop what was formatted for sessions and sections (made again when needed)."""


class RendersAtOnce:
    """What every renderer that is not deferred does alike (the long table's, MUSCLE's
    styles'): a chunk is rendered as it comes, the final columns are every name found in
    order, and no rows lie between chunks."""

    #: chunks are rendered as they come
    deferred = False

    def types(self, dyn: Mapping[str, Any]) -> dict[str, set[type]]:
        """The types of a chunk's dynamic columns."""
        raise NotImplementedError

    def sort_names(self, names: Iterable[str]) -> list[str]:
        """Dynamic column names in output order."""
        raise NotImplementedError

    def survey(
        self, chunk: ResultColumns, dyn: Mapping[str, Any]
    ) -> tuple[tuple[str, ...], dict[str, set[type]]]:
        """A chunk's names and types (for completeness: such a renderer renders at once)."""
        return tuple(dyn), self.types(dyn)

    def final_names(
        self, found: Mapping[str, object], types: dict[str, set[type]], covered: int
    ) -> list[str]:
        """Every dynamic column found, in output order."""
        return self.sort_names(found)

    def gap(self, after: int | None, before: int | None, names: Sequence[str]) -> bytes:
        """Nothing: a row of a session without results is not a chunk's gap here."""
        return b""


def make_renderer(options: TableOptions, graph: RecordGraph) -> TableRenderer | str:
    """The renderer of a sink's table, or why the engine cannot render it.

    :raises ValueError: for a column collision (the run reports it as the sink's error).
    """
    from .render import ChunkRenderer, supports
    from .wide import WideRenderer, wide_layout
    from .wide import supports as wide_supports

    why = supports(options)
    if why is not None:
        return why
    wide = wide_layout(options)
    if wide is None:
        return ChunkRenderer(options, graph)
    why = wide_supports(options, wide)
    if why is not None:
        return why
    return WideRenderer(options, wide, graph)


def table_key(options: TableOptions) -> tuple[object, ...]:
    """What makes two sinks' tables the same table (then the engine renders it once):
    the table options, and the wide layout if any."""
    import attrs

    from ..tabular.options import TableOptions
    from .wide import wide_layout

    return (
        *(getattr(options, f.name) for f in attrs.fields(TableOptions)),
        wide_layout(options),
    )

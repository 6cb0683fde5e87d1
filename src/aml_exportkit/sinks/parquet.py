"""Sink ``parquet``: the long (or wide) table as a Parquet file with real types.

Types: record fields have fixed types (``int64`` nullable integers, ``float64``,
``timestamp[us, tz=UTC]``, ``string``, ``bool``); a flattened column gets the type of the
values seen in it over the whole export (ints and floats together are ``float64``; nested
values, and scalars of different types, are ``string`` holding exactly the CSV's text).
The schema must be known before the first row group, and new json paths can appear at any
result, so rows are spilled to disk in a first pass (as for CSV) and row groups are streamed
from the spill in a second one. The template's text and the tool's version go into the
schema's key-value metadata. ``docs/parquet.md`` documents it.

pyarrow is a dependency of the package; the sink still declares it (:data:`PYARROW`), so
that an install without it fails before reading anything, naming the command.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..contracts import SinkContext, SinkSpec
from ..hookspecs import hookimpl
from ..tabular.arrow import PYARROW, RowConverter, arrow_schema
from ..tabular.options import ParquetOptions
from ..tabular.sink import TableSink
from ..tabular.table import Column, Table

NAME = "parquet"
#: The most values a row group holds: a row group is Python objects until it is written,
#: and a wide table has thousands of columns.
GROUP_CELLS = 1 << 20


def group_rows(row_group_size: int, columns: int) -> int:
    """Rows per row group: ``row_group_size``, fewer when the rows are wide."""
    return max(1, min(row_group_size, GROUP_CELLS // max(columns, 1)))


def _pyarrow() -> tuple[Any, Any]:
    # imported by name: pyarrow ships no type information
    return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")


class ParquetSink(TableSink):
    """Writes the table as Parquet."""

    track_types = True

    bulk_format = "parquet"

    def __init__(self, context: SinkContext) -> None:
        super().__init__(context)
        self.layout = context.options.layout

    def schema(self, columns: Sequence[Column]) -> Any:
        """The Arrow schema of a table with ``columns``, with the run's metadata."""
        from .. import __version__

        pa, _ = _pyarrow()
        metadata = {
            "exportkit.version": __version__,
            "exportkit.template": self.context.template.text,
            "exportkit.template_file": self.context.template.file,
            "exportkit.sink": json.dumps({"type": NAME, "index": self.context.index}),
        }
        return arrow_schema(pa, columns, metadata)

    def open_writer(self, path: Path, schema: Any) -> Any:
        """A ``ParquetWriter`` for ``path`` with the sink's compression."""
        _, pq = _pyarrow()
        options: ParquetOptions = self.options
        compression = None if options.compression == "none" else options.compression
        return pq.ParquetWriter(str(path), schema, compression=compression)

    def write(self, path: Path, table: Table) -> int:
        """Write row groups of ``row_group_size`` rows from the table's rows."""
        pa, _ = _pyarrow()
        options: ParquetOptions = self.options
        columns = table.columns
        schema = self.schema(columns)
        rows = RowConverter(pa, schema, columns)
        size = group_rows(options.row_group_size, len(columns))
        count = 0
        with self.open_writer(path, schema) as writer:
            chunk: list[Sequence[Any]] = []
            for row in table.rows():
                chunk.append(row)
                if len(chunk) >= size:
                    writer.write_table(rows.table(chunk))
                    count += len(chunk)
                    chunk = []
            if chunk or count == 0:
                writer.write_table(rows.table(chunk))
                count += len(chunk)
        return count


@hookimpl
def exportkit_register_sinks() -> list[SinkSpec]:
    """The parquet sink."""
    return [
        SinkSpec(
            name=NAME,
            description="Parquet (pyarrow), typed columns, the long or wide table",
            options=ParquetOptions,
            factory=ParquetSink,
            extensions=(".parquet",),
            bulk=True,
            requires=(PYARROW,),
        )
    ]

"""Sink ``parquet``: the long (or wide) table as a Parquet file with real types.

Types: record fields have fixed types (``int64`` nullable integers, ``float64``,
``timestamp[us, tz=UTC]``, ``string``, ``bool``); a flattened column gets the type of the
values seen in it over the whole export (ints and floats together are ``float64``; nested
values, and scalars of different types, are ``string`` holding exactly the CSV's text).
The schema must be known before the first row group, and new json paths can appear at any
result, so rows are spilled to disk in a first pass (as for CSV) and row groups are streamed
from the spill in a second one. The template's text and the tool's version go into the
schema's key-value metadata. ``docs/parquet.md`` documents it.

pyarrow is optional: ``pip install 'aml-exportkit[parquet]'``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..contracts import SinkContext, SinkSpec
from ..errors import SinkError
from ..hookspecs import hookimpl
from ..tabular.options import ParquetOptions
from ..tabular.sink import TableSink
from ..tabular.table import Column, Table, text_of

NAME = "parquet"
INSTALL_HINT = "pip install 'aml-exportkit[parquet]'"
#: The most values a row group holds: a row group is Python objects until it is written,
#: and a wide table has thousands of columns.
GROUP_CELLS = 1 << 20


def group_rows(row_group_size: int, columns: int) -> int:
    """Rows per row group: ``row_group_size``, fewer when the rows are wide."""
    return max(1, min(row_group_size, GROUP_CELLS // max(columns, 1)))


def _arrow_type(pa: Any, column: Column) -> Any:
    return {
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "datetime": pa.timestamp("us", tz="UTC"),
    }.get(column.kind, pa.string())


def _pyarrow() -> tuple[Any, Any]:
    # imported by name: pyarrow is optional and ships no type information
    return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _converter(column: Column) -> Any:
    # nested values and mixed scalars become the CSV's text; ints in a float column floats
    if column.kind in ("json", "mixed", "null"):
        return text_of
    if column.kind == "float":
        return _as_float
    return None


class ParquetSink(TableSink):
    """Writes the table as Parquet."""

    track_types = True

    bulk_format = "parquet"

    def __init__(self, context: SinkContext) -> None:
        super().__init__(context)
        try:
            _pyarrow()
        except ImportError:
            raise SinkError(
                f"the parquet sink needs pyarrow: {INSTALL_HINT}",
                sink=NAME,
                path=str(context.target),
            ) from None
        self.layout = context.options.layout

    def schema(self, columns: Sequence[Column]) -> Any:
        """The Arrow schema of a table with ``columns``, with the run's metadata."""
        from .. import __version__

        pa, _ = _pyarrow()
        types = [_arrow_type(pa, c) for c in columns]
        metadata = {
            "exportkit.version": __version__,
            "exportkit.template": self.context.template.text,
            "exportkit.template_file": self.context.template.file,
            "exportkit.sink": json.dumps({"type": NAME, "index": self.context.index}),
            "exportkit.column_kinds": json.dumps({c.name: c.kind for c in columns}),
        }
        return pa.schema(
            [pa.field(c.name, t, nullable=True) for c, t in zip(columns, types, strict=True)],
            metadata=metadata,
        )

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
        types = [_arrow_type(pa, c) for c in columns]
        convert = [_converter(c) for c in columns]
        size = group_rows(options.row_group_size, len(columns))
        count = 0
        with self.open_writer(path, schema) as writer:
            chunk: list[Sequence[Any]] = []
            for row in table.rows():
                chunk.append(row)
                if len(chunk) >= size:
                    writer.write_table(_to_arrow(pa, schema, types, convert, chunk))
                    count += len(chunk)
                    chunk = []
            if chunk or count == 0:
                writer.write_table(_to_arrow(pa, schema, types, convert, chunk))
                count += len(chunk)
        return count


def _to_arrow(
    pa: Any, schema: Any, types: list[Any], convert: list[Any], rows: list[Sequence[Any]]
) -> Any:
    arrays = []
    for index, (arrow_type, fn) in enumerate(zip(types, convert, strict=True)):
        values = [row[index] for row in rows]
        if fn is not None:
            values = [fn(v) for v in values]
        arrays.append(pa.array(values, type=arrow_type))
    return pa.Table.from_arrays(arrays, schema=schema)


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
        )
    ]

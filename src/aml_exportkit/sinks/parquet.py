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
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..contracts import OutputReport, SinkContext, SinkSpec
from ..hookspecs import hookimpl
from ..tabular.arrow import PYARROW, RowConverter, arrow_schema
from ..tabular.options import ParquetOptions
from ..tabular.parquet_file import ParquetFile
from ..tabular.sink import TableSink
from ..tabular.table import Column, Table
from ..template.recorded import recorded_text

NAME = "parquet"
#: The folder name of a partition whose value is null, as Hive, Spark, pyarrow and DuckDB
#: spell it.
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
#: The most values a row group holds: a row group is Python objects until it is written,
#: and a wide table has thousands of columns.
GROUP_CELLS = 1 << 20


def group_rows(row_group_size: int, columns: int) -> int:
    """Rows per row group: ``row_group_size``, fewer when the rows are wide."""
    return max(1, min(row_group_size, GROUP_CELLS // max(columns, 1)))


def partition_folder(names: Sequence[str], values: Sequence[Any]) -> str:
    """The relative folder of one partition, e.g. ``experiment=ex/block=b``; a value is
    percent-encoded where a path or Hive would misread it (slugs never are), and Hive
    readers decode it back.

    :raises ValueError: for a value every Hive reader (pyarrow, DuckDB, Spark) would read
        back as null, decoded or not: the empty text and :data:`NULL_PARTITION` itself.
    """
    parts = []
    for name, value in zip(names, values, strict=True):
        if value is None:
            text = NULL_PARTITION
        elif str(value) in ("", NULL_PARTITION):
            raise ValueError(
                f"the {name} slug {str(value)!r} cannot be a partition: Hive readers read"
                f" it back as no {name} (null); rename the {name}, or drop partition_by"
            )
        else:
            text = quote(str(value), safe="")
        parts.append(f"{name}={text}")
    return "/".join(parts)


def run_id() -> str:
    """A name for one run's part files: its start time (UTC) and a random token, so that a
    later run never writes over an earlier run's files."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def _pyarrow() -> tuple[Any, Any]:
    # imported by name: pyarrow ships no type information
    return importlib.import_module("pyarrow"), importlib.import_module("pyarrow.parquet")


class ParquetSink(TableSink):
    """Writes the table as Parquet."""

    engine_format = "parquet"
    typed_text = True

    def __init__(self, context: SinkContext) -> None:
        super().__init__(context)
        self.layout = context.options.layout

    def schema(self, columns: Sequence[Column], timestamps: str = "us") -> Any:
        """The Arrow schema of a table with ``columns``, with the run's metadata."""
        from .. import __version__

        pa, _ = _pyarrow()
        metadata = {
            "exportkit.version": __version__,
            "exportkit.template": recorded_text(self.context.template),
            "exportkit.template_file": self.context.template.file,
            "exportkit.sink": json.dumps({"type": NAME, "index": self.context.index}),
        }
        return arrow_schema(pa, columns, metadata, timestamps)

    def open_writer(self, path: Path, schema: Any) -> ParquetFile:
        """A writer of ``path`` with the sink's compression: one row group per
        ``write_table``, the bytes of pyarrow's ``ParquetWriter`` in bounded memory."""
        options: ParquetOptions = self.options
        compression = None if options.compression == "none" else options.compression
        return ParquetFile(path, schema, compression=compression)

    def finish(self) -> Sequence[OutputReport]:
        """Write the file, or with ``partition_by`` one part file per partition."""
        options: ParquetOptions = self.options
        if not options.partition_by or self.builder is None:
            return super().finish()
        builder, self.builder = self.builder, None
        with self._errors():
            table = builder.finish()
            return self.write_partitions(table)

    def write_partitions(self, table: Table) -> list[OutputReport]:
        """Write a partitioned table: a part file per partition value, through the run's
        atomic output set; a report per file."""
        pa, _ = _pyarrow()
        options: ParquetOptions = self.options
        columns = table.columns
        schema = self.schema(columns, table.timestamps)
        convert = RowConverter(pa, schema, columns)
        size = group_rows(options.row_group_size, len(columns))
        width = len(columns)
        name = f"part-{run_id()}.parquet"
        root = self.context.target
        open_: dict[tuple[Any, ...], tuple[Any, list[Sequence[Any]], Path]] = {}
        counts: dict[tuple[Any, ...], int] = {}
        try:
            for row in table.rows():
                key = tuple(row[width:])
                entry = open_.get(key)
                if entry is None:
                    target = root / partition_folder(table.partition_by, key) / name
                    if target.exists():
                        raise ValueError(f"{target} exists; part files are never replaced")
                    entry = open_[key] = (
                        self.open_writer(self.context.temp_path(target), schema),
                        [],
                        target,
                    )
                    counts[key] = 0
                writer, chunk, _ = entry
                chunk.append(row[:width])
                if len(chunk) >= size:
                    writer.write_table(convert.table(chunk))
                    counts[key] += len(chunk)
                    chunk.clear()
            for key, (writer, chunk, _) in open_.items():
                if chunk:
                    writer.write_table(convert.table(chunk))
                    counts[key] += len(chunk)
        finally:
            for writer, _, _ in open_.values():
                writer.close()
        reports = []
        for key, (_, _, target) in sorted(open_.items(), key=lambda item: str(item[1][2])):
            report = self.report(counts[key], columns)
            reports.append(OutputReport(path=target, rows=report.rows, columns=report.columns))
        return reports

    def write(self, path: Path, table: Table) -> int:
        """Write row groups of ``row_group_size`` rows from the table's rows."""
        pa, _ = _pyarrow()
        options: ParquetOptions = self.options
        columns = table.columns
        schema = self.schema(columns, table.timestamps)
        rows = RowConverter(pa, schema, columns, table.text)
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
            engine=True,
            requires=(PYARROW,),
        )
    ]

"""Sink ``csv-wide``: one row per session (or participant), each result's columns under a
key; the header is collected over the whole export (rows are spilled to disk and written in
a second pass). ``style = "muscle-classic"`` writes MUSCLE's wide admin CSV
(``001-`` prefixes). ``docs/csv.md`` documents it.
"""

from __future__ import annotations

from pathlib import Path

from ..contracts import SinkSpec
from ..hookspecs import hookimpl
from ..tabular.options import CsvWideOptions
from ..tabular.sink import TableSink
from ..tabular.table import Table, write_csv

NAME = "csv-wide"


class CsvWideSink(TableSink):
    """Writes the wide table as CSV."""

    layout = "wide"
    engine_format = "csv"

    def write(self, path: Path, table: Table) -> int:
        """Write the CSV in the style's dialect."""
        if self.options.style == "muscle-classic":
            return write_csv(path, table, "classic", formula_guard=self.options.formula_guard)
        return write_csv(path, table, "exportkit", formula_guard=self.options.formula_guard)


@hookimpl
def exportkit_register_sinks() -> list[SinkSpec]:
    """The csv-wide sink."""
    return [
        SinkSpec(
            name=NAME,
            description="CSV, one row per session or participant, results side by side",
            options=CsvWideOptions,
            factory=CsvWideSink,
            extensions=(".csv",),
            engine=True,
        )
    ]

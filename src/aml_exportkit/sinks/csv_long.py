"""Sink ``csv-long``: one row per result, session, participant, section and song fields
joined in, ``json_data`` flattened. ``docs/csv.md`` documents the options and the values.

``style = "muscle-classic"`` writes MUSCLE's admin CSV (long format) and
``style = "muscle-dashboard"`` MUSCLE's 2026 dashboard CSV, quirks included.
"""

from __future__ import annotations

from pathlib import Path

from ..contracts import SinkSpec
from ..hookspecs import hookimpl
from ..tabular.options import CsvLongOptions
from ..tabular.sink import TableSink
from ..tabular.table import Table, write_csv

NAME = "csv-long"
_DIALECTS = {"exportkit": "exportkit", "muscle-classic": "classic", "muscle-dashboard": "dashboard"}


class CsvLongSink(TableSink):
    """Writes the long table as CSV."""

    layout = "long"
    engine_format = "csv"

    def write(self, path: Path, table: Table) -> int:
        """Write the CSV in the style's dialect."""
        return write_csv(
            path,
            table,
            _DIALECTS[self.options.style],  # type: ignore[arg-type]
            formula_guard=self.options.formula_guard,
        )


@hookimpl
def exportkit_register_sinks() -> list[SinkSpec]:
    """The csv-long sink."""
    return [
        SinkSpec(
            name=NAME,
            description="CSV, one row per result, json_data flattened (or MUSCLE's CSV layouts)",
            options=CsvLongOptions,
            factory=CsvLongSink,
            extensions=(".csv",),
            engine=True,
        )
    ]

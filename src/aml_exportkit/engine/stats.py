"""The codebook's column statistics of the tables the engine writes, counted as it writes them.

Reading a finished CSV or Parquet file back to describe it cost the parent a serial pass
as long as the export itself. Instead each worker counts the chunk it rendered: the CSV
text with :func:`~aml_exportkit.codebook.csv_text_stats`, the Arrow table it made for the
Parquet outputs with :func:`~aml_exportkit.codebook.arrow_table_stats` (the functions that
describe any other output read back, so the statistics are the same). The parent merges
the chunks' statistics in order (:class:`~aml_exportkit.codebook.TableStats`), and counts
again only what it makes itself: a Parquet file rebuilt with the final column types.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..codebook import ColumnStats, TableStats, arrow_table_stats, csv_text_stats

if TYPE_CHECKING:
    from .workers import ArrowTable

#: One plan's statistics of one chunk: of its CSV text, of its Arrow table (None for what
#: is not counted: a plan without such outputs, or a chunk without a table).
PlanPart = tuple[list[ColumnStats] | None, list[ColumnStats] | None]
#: Each written file's column statistics and row count, by the path the engine wrote.
Counted = dict[Path, tuple[list[ColumnStats], int]]


def count_chunk(
    header: Sequence[str], text: bytes, table: ArrowTable | None, *, csv: bool, parquet: bool
) -> PlanPart:
    """A chunk's statistics for one plan (in a worker): of the CSV ``text`` whose columns
    are ``header``, when the plan writes CSV; of ``table``, when the plan writes Parquet
    and the worker made the table."""
    return (
        csv_text_stats(header, text) if csv else None,
        arrow_table_stats(table) if parquet and table is not None else None,
    )


class PlanStats:
    """One plan's statistics while its chunks arrive, in order.

    :param csv: the plan writes CSV files.
    :param parquet: the plan writes Parquet files.
    """

    def __init__(self, *, csv: bool, parquet: bool) -> None:
        # (the workers count with pyarrow.compute: imported once here, before they fork,
        # not once in each)
        importlib.import_module("pyarrow.compute")
        self.csv = TableStats() if csv else None
        self.parquet = TableStats(keyed=False) if parquet else None

    def add(self, part: PlanPart | None, rows: int) -> None:
        """Take in the next chunk's statistics (``rows`` rows)."""
        csv, parquet = part if part is not None else (None, None)
        if self.csv is not None:
            self.csv.add(csv or [], rows)
        if self.parquet is not None:
            self.parquet.add(parquet or [], rows)

    def csv_again(self, parts: Sequence[tuple[PlanPart | None, int]]) -> None:
        """Every chunk's CSV text was rendered again (other JSON-text columns): count the
        new texts, in order, in place of the first ones."""
        if self.csv is None:
            return
        self.csv = TableStats()
        for part, rows in parts:
            self.csv.add((part[0] if part is not None else None) or [], rows)

    def finish(
        self,
        counted: Counted,
        csv_paths: Sequence[Path],
        header: Sequence[str],
        parquets: Sequence[tuple[Path, Sequence[str], TableStats | None]],
    ) -> None:
        """Note the finished files' statistics in ``counted``.

        :param header: the CSV files' columns.
        :param parquets: each Parquet file, its columns, and its statistics when the parent
            counted the file itself (rebuilt), else None (the chunks' tables).
        """
        if self.csv is not None:
            result = self.csv.result(header)
            for path in csv_paths:
                counted[path] = result
        for path, names, own in parquets:
            stats = own if own is not None else self.parquet
            if stats is not None:
                counted[path] = stats.result(names)


def count_table(stats: TableStats | None, table: ArrowTable) -> None:
    """Count a table the parent made (a rebuilt Parquet file's part) into ``stats``."""
    if stats is not None:
        stats.add(arrow_table_stats(table), table.num_rows)

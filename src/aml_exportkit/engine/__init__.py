"""The engine: tables written from a source's raw trial results in chunks, in worker processes.

A source that can cut its trial results into chunks that never split a session offers them
as a :class:`ResultChunks` (``RecordGraph.result_chunks``; for any other source the engine
cuts the graph's records into such chunks, :mod:`.from_records`); the engine's workers parse and
check each chunk into columns (:mod:`.chunks`), render the long table's rows for it
(:mod:`.render`, with the optional native kernel of :mod:`.native`) and the fixture zip's
``results.json`` objects (:mod:`.fixture`) and, for the run's other sinks, a record batch
(:mod:`.batches`); the parent checks
what spans chunks (:mod:`.spans`) and writes the outputs (:mod:`.workers`). Bad input
ends the run with the source's own error (a chunk the columns refuse is read again record
by record, :meth:`ResultChunks.reference`), a column clash with the sink's error. The engine
is every export's one path (decision 0035): what it does not render (a :class:`StandDown`
that reaches the run) is an internal error, raised before any output is final.
``docs/architecture.md`` and decisions 0024, 0028 and 0035 describe the layout.

This module is the engine's public interface: sources, sinks and the pipeline use the
names below and nothing else of the package.
"""

from __future__ import annotations

from .batches import BATCH_COLUMNS, batch_results, batch_values
from .chunks import (
    Checks,
    ChunkMeta,
    ProfileCheck,
    ResultChunks,
    ResultColumns,
    StandDown,
    created_texts,
    finish_columns,
    make_checks,
    wide_integers,
)
from .from_records import RecordChunks
from .native import kernel as native_kernel
from .spans import Spans
from .workers import (
    JOBS_ENV,
    LAST_RUN,
    ArrowTable,
    WorkerError,
    check_profiles,
    jobs_setting,
    run,
    trim_heap,
    usable_cpus,
)

__all__ = [
    "BATCH_COLUMNS",
    "JOBS_ENV",
    "LAST_RUN",
    "ArrowTable",
    "Checks",
    "ChunkMeta",
    "ProfileCheck",
    "RecordChunks",
    "ResultChunks",
    "ResultColumns",
    "Spans",
    "StandDown",
    "WorkerError",
    "batch_results",
    "batch_values",
    "check_profiles",
    "created_texts",
    "finish_columns",
    "jobs_setting",
    "make_checks",
    "native_kernel",
    "run",
    "trim_heap",
    "usable_cpus",
    "wide_integers",
]

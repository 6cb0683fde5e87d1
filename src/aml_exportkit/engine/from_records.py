"""Chunks of any graph's trial results: the engine's reader for a source without one.

The zip and the database cut their raw trial results into chunks themselves
(``RecordGraph.result_chunks``). Any other source (a plugin's, or several sources pooled
into one graph by :func:`~aml_exportkit.multisource.merge_graphs`) gives batches of
:class:`~aml_exportkit.records.Result` records, in (session, pk) order. :class:`RecordChunks`
makes those into chunks: the parent reads the records once, cuts them at session
boundaries into groups of about :data:`CHUNK_RESULTS`, and spills each group to an
anonymous temporary file; each worker reads one group back and turns it into checked
columns (:func:`~aml_exportkit.engine.batches.record_columns`), which the engine renders as
it renders any chunk.

The source's batches can be read once, and the engine may still stand down (a value it
does not render, the source's own error). So the reader takes them from the graph
(:meth:`~aml_exportkit.graph.RecordGraph.take_trial_batches`) and gives back at once a
replay of what it read (:meth:`~aml_exportkit.graph.RecordGraph.give_trial_batches`): the
same records in the same batches, then what it did not read, then the source's error at
the place it met it. The plain path, if it runs, reads and checks them as it reads the
source's.
"""

from __future__ import annotations

import itertools
import os
import pickle
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING

from .batches import record_columns
from .chunks import Checks, ChunkMeta, ResultColumns, StandDown, make_checks

if TYPE_CHECKING:
    from ..graph import RecordGraph, ResultBatches
    from ..records import Result

#: Trial results per chunk, at least (a chunk ends at the first session boundary after).
CHUNK_RESULTS = 16384

#: A chunk: where its pickled records lie in the spill file, and the share of the results
#: read once it is done.
Task = tuple[int, int, float]


class RecordChunks:
    """The trial results of any graph, as chunks of whole sessions (a
    :class:`~aml_exportkit.engine.chunks.ResultChunks`).

    The spill file is anonymous (gone with the process) and in the system's temporary
    folder, not the engine's spool folder, which is memory when it is ``/dev/shm``: the
    parent holds one group of records at a time, each worker one chunk.
    """

    def __init__(self) -> None:
        self.checks: Checks | None = None
        self._source: ResultBatches | None = None
        self._file: IO[bytes] | None = None
        self._spilled: list[tuple[int, int]] = []
        #: the length of every batch of the source read so far, to give them back as they came
        self._lengths: list[int] = []
        #: records read but not spilled (when reading stopped early)
        self._pending: list[Result] = []
        #: the source's batches not read yet, once reading began
        self._rest: Iterator[Sequence[Result]] | None = None
        self._error: Exception | None = None

    def open(self, graph: RecordGraph) -> None:
        """Take the graph's trial results, giving it back their replay at once."""
        self.checks = make_checks(graph, frozenset())
        self._source = graph.take_trial_batches()
        graph.give_trial_batches(self._replay)

    def tasks(self) -> list[Task]:
        """Read every trial result (in the parent), spilling them by groups of sessions.

        :raises StandDown: when the source raised an error (the plain path meets it again,
            at the same place, in the replay) or a group could not be spilled.
        """
        assert self._source is not None
        self._file = tempfile.TemporaryFile(prefix="exportkit-records-")  # noqa: SIM115
        try:
            self._rest = iter(self._source())
        except Exception as exc:
            self._error = exc
            self._rest = iter(())
            raise StandDown(f"the source: {exc}") from None
        group: list[Result] = []
        counts: list[int] = []
        while True:
            try:
                batch = next(self._rest, None)
            except Exception as exc:  # the source's: raised again where the replay meets it
                self._error = exc
                self._pending = group
                self._rest = iter(())
                raise StandDown(f"the source: {exc}") from None
            if batch is None:
                break
            self._lengths.append(len(batch))
            group.extend(batch)
            cut = _last_session_start(group) if len(group) >= CHUNK_RESULTS else 0
            if cut:
                self._spill_or_stop(group, cut)
                counts.append(cut)
                del group[:cut]
        if group:
            self._spill_or_stop(group, len(group))
            counts.append(len(group))
        self._file.flush()
        total = max(sum(counts), 1)
        done = itertools.accumulate(counts)
        return [
            (offset, length, n / total)
            for (offset, length), n in zip(self._spilled, done, strict=True)
        ] or [(0, 0, 1.0)]

    def _spill_or_stop(self, group: list[Result], cut: int) -> None:
        """Spill ``group[:cut]``; if that fails, keep the group (the replay then reads
        the rest of the source) and stand down."""
        assert self._file is not None
        try:
            data = pickle.dumps(group[:cut], protocol=pickle.HIGHEST_PROTOCOL)
            offset = self._file.tell()
            self._file.write(data)
        except Exception as exc:
            self._pending = group
            raise StandDown(f"trial results that cannot be spilled: {exc}") from None
        self._spilled.append((offset, len(data)))

    def _load(self, offset: int, length: int) -> list[Result]:
        assert self._file is not None
        parts = []
        fd = self._file.fileno()
        while length:
            part = os.pread(fd, length, offset)
            if not part:
                raise StandDown("the spill file ended early")
            parts.append(part)
            offset += len(part)
            length -= len(part)
        records: list[Result] = pickle.loads(b"".join(parts))
        return records

    def sample(self) -> ResultColumns | None:
        """The first chunk's checked columns (None: it has none the checks accept)."""
        if not self._spilled or self.checks is None:
            return None
        try:
            return self.work((*self._spilled[0], 0.0))[0]
        except StandDown:
            return None

    def work(self, task: Task) -> tuple[ResultColumns, ChunkMeta]:
        """Read one group of records back and check it as columns (in a worker)."""
        assert self.checks is not None
        offset, length, position = task
        cols, meta = record_columns(self._load(offset, length) if length else [], self.checks)
        meta["position"] = position
        return cols, meta

    def reference(self, task: Task) -> tuple[ResultColumns, ChunkMeta]:
        """The same reading: the records are the graph's, checked as it reads them, and
        their values are plain (no kernel reads them)."""
        return self.work(task)

    def finish(self, crcs: Sequence[tuple[int, int]]) -> None:
        """Nothing to check at the end."""

    def _replay(self) -> Iterator[Sequence[Result]]:
        """The source's trial results as it gave them: what was read (in its batches),
        what was not, then its error if it raised one."""
        if self._rest is None:  # never read: the source's own batches
            assert self._source is not None
            yield from self._source()
            return

        def records() -> Iterator[Result]:
            for offset, length in self._spilled:
                yield from self._load(offset, length)
            yield from self._pending

        read = records()
        for length in self._lengths:
            yield list(itertools.islice(read, length))
        yield from self._rest
        if self._error is not None:
            raise self._error
        if self._file is not None:
            self._file.close()


def _last_session_start(group: list[Result]) -> int:
    """Where the last session of ``group`` begins (0: the group is one session)."""
    last = group[-1].session
    i = len(group) - 1
    while i > 0 and group[i - 1].session == last:
        i -= 1
    return i

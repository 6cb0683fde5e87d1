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

The reader checks every record in the parent as it reads it, with the graph's own checks
(:class:`~aml_exportkit.graph.ResultChecker`): a bad record, or the source's own error,
ends the run with the error the graph gives, at the place the graph would meet it. A value
MUSCLE's columns cannot hold is the source's error too, raised by the worker that meets it
(:func:`~aml_exportkit.engine.batches.unfit_record`, decision 0034).

The source's batches can be read once, and the graph keeps its own reading of them
(:meth:`~aml_exportkit.graph.RecordGraph.trial_results`). So the reader takes them from the
graph (:meth:`~aml_exportkit.graph.RecordGraph.take_trial_batches`) and gives back at once a
replay of what it read (:meth:`~aml_exportkit.graph.RecordGraph.give_trial_batches`): the
same records in the same batches, which a later reading of the graph's reads and checks as
it reads the source's.
"""

from __future__ import annotations

import itertools
import os
import pickle
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING

import attrs

from ..errors import SourceError
from ..graph import PkSet
from .batches import record_columns
from .chunks import Checks, ChunkMeta, ResultColumns, make_checks

if TYPE_CHECKING:
    from ..graph import RecordGraph, ResultBatches, ResultChecker
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
        self._checker: ResultChecker | None = None
        self._source: ResultBatches | None = None
        self._file: IO[bytes] | None = None
        self._spilled: list[tuple[int, int]] = []
        #: the length of every batch of the source read so far, to give them back as they came
        self._lengths: list[int] = []
        #: groups that could not be spilled
        self._held: list[list[Result]] = []
        self._read = False

    def open(self, graph: RecordGraph) -> None:
        """Take the graph's trial results, giving it back their replay at once."""
        # (keys of their own: the graph's set gets the trial results' keys at the end,
        # after the profile answers', as for every reader)
        self._checker = graph.result_checker("trial", PkSet())
        self.checks = attrs.evolve(
            make_checks(graph, frozenset()), lengths=False, origin=self._checker.origin
        )
        self._source = graph.take_trial_batches()
        graph.give_trial_batches(self._replay)

    def tasks(self) -> list[Task]:
        """Read and check every trial result (in the parent), spilling them by groups of
        sessions.

        :raises IntegrityError: the graph's error for a bad record (its checks).
        :raises SourceError: the graph's error for a record out of order; a key that is
            not an integer.
        :raises Exception: whatever the source raises, as it raises it.
        """
        assert self._source is not None
        assert self._checker is not None
        check = self._checker.check
        self._file = tempfile.TemporaryFile(prefix="exportkit-records-")  # noqa: SIM115
        self._read = True
        group: list[Result] = []
        counts: list[int] = []
        for batch in self._source():
            for result in batch:
                if type(result.pk) is not int:  # (the graph's checks order keys: name it)
                    raise SourceError(
                        f"field 'pk': expected an integer, got {type(result.pk).__name__}",
                        file=self._checker.origin,
                        model="result",
                        pk=result.pk,
                    )
                check(result)
            self._lengths.append(len(batch))
            group.extend(batch)
            cut = _last_session_start(group) if len(group) >= CHUNK_RESULTS else 0
            if cut:
                self._spill(group, cut)
                counts.append(cut)
                del group[:cut]
        if group:
            self._spill(group, len(group))
            counts.append(len(group))
        self._file.flush()
        total = max(sum(counts), 1)
        done = itertools.accumulate(counts)
        return [
            (offset, length, n / total)
            for (offset, length), n in zip(self._spilled, done, strict=True)
        ] or [(0, 0, 1.0)]

    def _spill(self, group: list[Result], cut: int) -> None:
        """Spill ``group[:cut]`` to the file the workers read; a group pickle cannot take
        (a value of a type it does not know) stays in memory, where the workers, forked
        after this, find it."""
        assert self._file is not None
        try:
            data = pickle.dumps(group[:cut], protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            self._held.append(group[:cut])
            self._spilled.append((-len(self._held), 0))
            return
        offset = self._file.tell()
        self._file.write(data)
        self._spilled.append((offset, len(data)))

    def _load(self, offset: int, length: int) -> list[Result]:
        if offset < 0:  # (a group held in memory)
            return self._held[-offset - 1]
        assert self._file is not None
        parts = []
        fd = self._file.fileno()
        while length:
            part = os.pread(fd, length, offset)
            if not part:  # (the file is the parent's own, unlinked: nothing else writes it)
                raise RuntimeError(f"the engine's spill file of records ended early at {offset}")
            parts.append(part)
            offset += len(part)
            length -= len(part)
        records: list[Result] = pickle.loads(b"".join(parts))
        return records

    def sample(self) -> ResultColumns | None:
        """The first chunk's checked columns (None: a value of it is unfit; the worker
        that reads it reports the source's error)."""
        if not self._spilled or self.checks is None:
            return None
        try:
            return self.work((*self._spilled[0], 0.0))[0]
        except SourceError:
            return None

    def work(self, task: Task) -> tuple[ResultColumns, ChunkMeta]:
        """Read one group of records back and check it as columns (in a worker)."""
        assert self.checks is not None
        offset, length, position = task
        records = self._load(offset, length) if length or offset < 0 else []
        cols, meta = record_columns(records, self.checks)
        meta["position"] = position
        return cols, meta

    def reference(self, task: Task) -> tuple[ResultColumns, ChunkMeta]:
        """The same reading: the records are the graph's, checked as it reads them, and
        their values are plain (no kernel reads them)."""
        return self.work(task)

    def finish(self, crcs: Sequence[tuple[int, int]]) -> None:
        """Nothing to check at the end."""

    def _replay(self) -> Iterator[Sequence[Result]]:
        """The source's trial results as it gave them (read or not)."""
        if not self._read:  # never read: the source's own batches
            assert self._source is not None
            yield from self._source()
            return

        def records() -> Iterator[Result]:
            for offset, length in self._spilled:
                yield from self._load(offset, length)

        read = records()
        for length in self._lengths:
            yield list(itertools.islice(read, length))
        if self._file is not None:
            self._file.close()


def _last_session_start(group: list[Result]) -> int:
    """Where the last session of ``group`` begins (0: the group is one session)."""
    last = group[-1].session
    i = len(group) - 1
    while i > 0 and group[i - 1].session == last:
        i -= 1
    return i

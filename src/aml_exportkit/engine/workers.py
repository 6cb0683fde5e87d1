"""The engine's run: every export's tables written from a source's raw trial results, on all cores.

The engine is the one path of every export (decision 0035). For the long table of our
CSV (and the Parquet file of the same table) it works a chunk at a time:

1. The source splits its trial results into chunks that never split a session: byte ranges
   of ``results.json`` cut at Django's ``}, {"model": `` separator (a zip,
   :mod:`~aml_exportkit.sources.fixture_zip_chunks`), or groups of sessions (a database, each
   worker on the run's snapshot, :mod:`~aml_exportkit.sources.muscle_db_chunks`); any other
   source's records are cut between sessions (:mod:`~aml_exportkit.engine.from_records`).
2. Worker processes (forked, so they share the graph, pseudonymised participants included)
   parse a chunk, apply the graph's checks to every result (kind, foreign keys, duplicate
   keys, order: :mod:`~aml_exportkit.engine.chunks`), flatten ``json_data`` and render the chunk
   as our CSV text (:mod:`aml_exportkit.engine.render`; parsing, flattening and formatting
   run in the native kernel, :mod:`aml_exportkit.engine.native`, when it is built), which they
   also read into an Arrow table with pyarrow's CSV reader (the Parquet columns: the same
   values, so the same file bytes). Text and table go to the parent through a spool file
   (``/dev/shm``), not the pipe.
3. The parent takes the chunks in order, checks what spans chunks (keys unique across
   chunks, order across chunks, the zip member's CRC), appends the text to the CSV
   (``sendfile``) and hands the tables to a thread that encodes the Parquet row groups.
   Beside the engine, threads read the profile answers (the pipeline's) and hash the CSV
   for the manifest, so that the parent's one core does not bound the engine.

A fixture-json sink takes part too: the workers also render each chunk's objects of the
zip's ``results.json`` (:mod:`aml_exportkit.engine.fixture`, with the sink's own encoder),
which the parent appends in order to the sink's temporary text file; the sink copies it
into the member when it finishes. Every other sink gets each chunk as a record batch.

The run's other sinks get each chunk's trial results as Arrow record batches
(:func:`~aml_exportkit.engine.batches.result_batch`, built in the workers), handed to them
in the parent in order; a sink that encodes its batches itself
(:class:`~aml_exportkit.contracts.EncodingSink`, decision 0040) has that done in the
workers, on their copy of the sink, and the parent only writes the bytes in order.

The header and the Parquet schema depend on every json path and type of the export. The
engine starts with those of a sample; a chunk that finds more is rendered again at the end
with the final columns and the outputs are rebuilt (rare: a sample of a few thousand
results holds nearly every shape).

Bad input ends the run with the source's own error: a chunk the columns refuse is read
again in its worker by the source's reference reading, which raises the error (sent to the
parent whole and raised there), and what spans chunks raises the graph's errors (decision
0028). A column clash is the table's own error (a ``SinkError`` naming the table's first
sink, decision 0032). A worker that dies, or raises an exception that is no error of the
data, ends the run with a :class:`WorkerError` (decision 0034). There is no other path to
fall back to: a :class:`StandDown` that reaches the run is an internal error
(``RuntimeError``), raised before any output is final. ``docs/performance.md`` has the measurements.
"""

from __future__ import annotations

import array
import contextlib
import gc
import hashlib
import importlib
import io
import multiprocessing
import os
import pickle
import queue
import signal
import tempfile
import threading
import time
import traceback as traceback_module
from collections.abc import Callable, Iterable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeGuard, cast

import attrs

from ..errors import ExportkitError, SinkError, TemplateError
from ..tabular.table import Absent, Column, column_kind
from .batches import read_batches, result_batch, table_batches
from .chunks import ChunkMeta, ResultChunks, ResultColumns, StandDown, questions_of
from .fixture import MEMBER, results_text
from .from_records import RecordChunks
from .muscle import MuscleRenderer, muscle_renderer
from .render import json_cells_columns
from .spans import Spans
from .stats import Counted, PlanPart, PlanStats, count_chunk, count_table
from .tables import TableRenderer, make_renderer, table_key

if TYPE_CHECKING:
    from ..codebook import TableStats
    from ..contracts import (
        EncodingSink,
        EngineFormat,
        EngineSink,
        ResultBatch,
        Sink,
        SinkContext,
    )
    from ..flatten import Path as JsonPath
    from ..graph import RecordGraph
    from ..progress import Progress
    from ..scan import DataScan
    from ..sinks.parquet import ParquetSink


class ArrowTable(Protocol):
    """What the engine uses of a ``pyarrow.Table`` (pyarrow ships no type stubs)."""

    @property
    def num_rows(self) -> int:
        """The number of rows."""

    @property
    def schema(self) -> object:
        """The columns' names and types (a ``pyarrow.Schema``)."""

    @property
    def columns(self) -> list[object]:
        """The columns (``pyarrow.ChunkedArray``)."""

    @property
    def nbytes(self) -> int:
        """The bytes its buffers take."""

    def slice(self, offset: int = 0, length: int | None = None) -> ArrowTable:
        """Rows ``offset`` on (``length`` of them), without a copy."""

    def combine_chunks(self) -> ArrowTable:
        """The same rows with each column in one piece."""


#: The environment variable that sets the number of worker processes.
JOBS_ENV = "EXPORTKIT_JOBS"
#: Chunks a worker may have queued; the parent holds at most this many results per worker.
IN_FLIGHT = 2

#: What the last run did, for tests and ``docs/performance.md``: its ``rows``, ``chunks``,
#: ``batch_sinks``, where the time went (``cpu``), and the ``error`` that ended it, if any.
LAST_RUN: dict[str, Any] = {}

_UNSET: Any = object()


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc only).

    The parent takes a few MB of text per chunk; glibc serves such blocks from its heap
    once it has freed a few, and the heap's free pages otherwise stay resident: about
    50 MB over a 50k-session export."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


def process_cpu(pid: int) -> float | None:
    """The CPU seconds (user and system) process ``pid`` has used, from ``/proc`` (Linux);
    None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def process_waits(pid: int) -> tuple[float, float] | None:
    """Seconds process ``pid`` (its main thread) has run and has waited for a CPU while
    runnable, from ``/proc/<pid>/schedstat`` (Linux); None where that cannot be read.

    Beside its lifetime this tells a worker's idle time (waiting for the parent) from its
    time waiting for a core (other processes, or the parent's threads, on it)."""
    return _schedstat(f"/proc/{pid}/schedstat")


def _schedstat(path: str) -> tuple[float, float] | None:
    try:
        with open(path, "rb") as fh:
            ran, waited = fh.read().split()[:2]
        return int(ran) / 1e9, int(waited) / 1e9
    except (OSError, ValueError):
        return None


def _main_thread_waits() -> tuple[float, float] | None:
    return _schedstat(f"/proc/self/task/{threading.get_native_id()}/schedstat")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which a container or
    ``taskset`` may narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # (not every system has affinity masks)
        return os.cpu_count() or 1


def jobs_setting(option: int | None = None, template: int | None = None) -> int:
    """The number of worker processes for a run: ``exportkit run --jobs`` (``option``),
    else ``EXPORTKIT_JOBS``, else the template's ``jobs``, else one per usable CPU.

    :raises TemplateError: when the one that applies is not a whole number of at least 1.
    """
    if option is not None:
        if option < 1:
            raise TemplateError(
                f"expected a whole number of at least 1, got {option}", file="--jobs"
            )
        return option
    raw = os.environ.get(JOBS_ENV)
    if raw is not None and raw.strip():
        text = raw.strip()
        if not text.isdigit() or int(text) < 1:
            raise TemplateError(
                f"expected a whole number of at least 1, got {raw!r}", file=JOBS_ENV
            )
        return int(text)
    if template is not None:
        return template
    return usable_cpus()


# -- the entry point --------------------------------------------------------------------------


@attrs.define
class _Output:
    sink: EngineSink
    format: EngineFormat
    path: Path
    #: the sink's context: an error of its table names it
    context: SinkContext


class _TableError(Exception):
    """A table's own error (two values would share a column), met while the engine
    renders plan ``plan`` (in a worker or in the parent): reported as the error of the
    plan's first sink (the sink met first in the stream)."""

    def __init__(self, plan: int, message: str) -> None:
        super().__init__(plan, message)
        self.plan = plan
        self.message = message


@contextlib.contextmanager
def _table_errors(plan: int) -> Iterator[None]:
    """Turn a column clash (``FlattenError``, a ``ValueError``) of plan ``plan``'s table
    into a :class:`_TableError`."""
    try:
        yield
    except ValueError as exc:
        raise _TableError(plan, str(exc)) from None


def _sink_error(context: SinkContext, message: str) -> SinkError:
    return SinkError(message, sink=context.name, path=str(context.target))


@attrs.define
class _Plan:
    """One table (one set of table options, long or wide) and the outputs made from it."""

    renderer: TableRenderer | MuscleRenderer
    outputs: list[_Output]
    #: the table's columns, once the engine settled them
    columns: list[Column] = attrs.field(factory=list)


def run(
    graph: RecordGraph,
    sinks: Sequence[tuple[SinkContext, Sink]],
    progress: Progress,
    *,
    beside: Callable[[], None] | None = None,
    jobs: int | None = None,
    questions: DataScan | None = None,
    feed: Callable[[SinkContext, Sink, ResultBatch], None] | None = None,
    counted: Counted | None = None,
) -> None:
    """Read and check the run's trial results in chunks, write every engine sink's table,
    and hand the trial results to the run's other sinks as record batches.

    :param jobs: worker processes at most (default: :func:`jobs_setting`'s); never more
        than there are chunks.
    :param questions: where to note the trial results' questions for the codebook
        (:func:`~aml_exportkit.engine.chunks.questions_of`, per chunk in the workers,
        merged in order); complete once the run returns.
    :param beside: work of the parent's that does not touch the trial results (reading the
        profile answers): run in a thread while the workers run, so that it costs no
        time of its own. The engine joins it before it returns or raises; its error, if
        any, is raised in place of the engine's outcome (and it is run first when the
        run fails before its workers start, so that its error still comes first).
    :param feed: hands a batch to one of the sinks the engine does not write (default:
        :func:`~aml_exportkit.contracts.hand_result_batch`); called in the parent as each
        chunk arrives, in order, while the workers read the next ones (the profile answers,
        read beside, are complete before the first batch); an error ends the run, and the
        pipeline aborts every sink. (An :class:`~aml_exportkit.contracts.EncodingSink`
        is not fed: its batches are encoded in the workers, and the parent hands it the
        bytes, an OS error naming the sink.)
    :param counted: where to note the codebook's column statistics of every file the
        engine writes, by its path (:mod:`~aml_exportkit.engine.stats`: counted in the
        workers, merged in order); complete once the run returns.
    :raises ExportkitError: the source's error for bad input (after the profile answers'
        error, if any, which comes first).
    :raises SinkError: for a column clash, naming the table's first sink.
    :raises RuntimeError: when the engine meets what it cannot render (a
        :class:`~aml_exportkit.engine.chunks.StandDown`): an internal error, never a
        reason to read the run another way.
    """
    LAST_RUN.clear()
    raw: ResultChunks[Any] | None = graph.result_chunks
    if raw is None:  # a source without a chunk reader of its own: its records, cut up
        raw = RecordChunks()
    plans: list[tuple[tuple[object, ...], _Plan]] = []
    fixtures: list[_Output] = []
    # the sinks the engine does not write: they get the trial results as record batches
    others: list[tuple[SinkContext, Sink, str]] = []
    for context, sink in sinks:
        engine_sink = cast("EngineSink", sink)
        table = engine_sink.engine_table() if context.engine else None
        if table is None:
            others.append((context, sink, f"sink {context.name} cannot be written by the engine"))
            continue
        options, fmt, path = table
        if options is None:  # results.json's text, the same for every such sink
            fixtures.append(_Output(engine_sink, fmt, path, context))
            continue
        # MUSCLE's styles: the sink's own row builder makes the rows (engine/muscle.py)
        muscle = muscle_renderer(options, fmt, sink)
        why = muscle if isinstance(muscle, str) else None
        if muscle is None and fmt == "parquet" and options.timestamps != "us":
            why = f"timestamps = {options.timestamps!r} as Parquet"
        if why is not None:
            others.append((context, sink, f"sink {context.name}: {why}"))
            continue
        key = table_key(options) if muscle is None else (id(sink),)
        plan = next((p for k, p in plans if k == key), None)
        if plan is None:
            try:
                renderer = make_renderer(options, graph) if muscle is None else muscle
            except ValueError as exc:  # a column collision: the sink's error
                if beside is not None:
                    beside()  # (the profile answers' error comes first, as in the stream)
                raise _sink_error(context, str(exc)) from None
            if isinstance(renderer, str):
                others.append((context, sink, f"sink {context.name}: {renderer}"))
                continue
            plan = _Plan(renderer, [])
            plans.append((key, plan))
        plan.outputs.append(_Output(engine_sink, fmt, path, context))
    from ..contracts import encodes_batches, hand_result_batch

    # the sinks that encode their batches in the workers, and those handed the batches
    encoders: list[tuple[SinkContext, EncodingSink]] = []
    takers: list[tuple[SinkContext, Sink]] = []
    for context, sink, _ in others:
        try:
            if encodes_batches(sink):
                encoders.append((context, sink))
                continue
        except ValueError as exc:  # (half an encoding sink: its batches would be lost)
            raise _sink_error(context, str(exc)) from None
        takers.append((context, sink))
    deliver = None
    if takers:

        def deliver(batch: ResultBatch) -> None:
            for context, sink in takers:
                if feed is None:
                    hand_result_batch(sink, batch)
                else:
                    feed(context, sink, batch)

    run = _Run(
        graph,
        raw,
        [p for _, p in plans],
        progress,
        beside,
        jobs or jobs_setting(),
        questions,
        fixtures,
        deliver=deliver,
        encoders=encoders,
        # (the run's own: nothing of a run that fails reaches ``counted``)
        counted={} if counted is not None else None,
    )
    _run(run, plans, fixtures, others)
    if counted is not None and run.counted is not None:
        counted.update(run.counted)


def _run(
    run: _Run,
    plans: list[tuple[tuple[object, ...], _Plan]],
    fixtures: list[_Output],
    others: list[tuple[SinkContext, Sink, str]],
) -> None:
    frozen = gc.isenabled()
    gc.disable()
    try:
        try:
            rows = run.run()
        finally:
            run.close()
    except _BesideFailed as failed:
        # (the profile answers' error: they are read first, so it comes first)
        LAST_RUN.update(error=str(failed.error))
        raise failed.error from None
    except ExportkitError as exc:
        # the source's bad input: the run ends with it (after the profile answers' error,
        # which comes first)
        run.beside_first()
        if isinstance(exc, SinkError) and exc.path == MEMBER and fixtures:
            # (a chunk's results.json text, in a worker: named as the first such sink's
            # member, as the sink itself names it)
            exc = SinkError(
                exc.message, sink=exc.sink, path=f"{fixtures[0].context.target}: {MEMBER}"
            )
            LAST_RUN.update(error=str(exc))
            raise exc from None
        LAST_RUN.update(error=str(exc))
        raise
    except _TableError as exc:
        # a column clash: the error of the table's first sink (the one met first)
        run.beside_first()
        error = _sink_error(run.plans[exc.plan].outputs[0].context, exc.message)
        LAST_RUN.update(error=str(error))
        raise error from None
    except StandDown as exc:
        # What the engine does not render: there is no other path, so this is a fault of
        # the engine's, reported loudly (no output is final yet).
        LAST_RUN.update(error=f"the engine could not render this run: {exc}")
        raise RuntimeError(f"the engine could not render this run: {exc}") from None
    except Exception:
        # (an error the source raised as it is, say: after the profile answers' error)
        run.beside_first()
        raise
    finally:
        run.close()
        if frozen:
            gc.enable()
    for _, plan in plans:
        for out in plan.outputs:
            out.sink.engine_wrote(plan.renderer.table_rows(rows), plan.columns)
    for out in fixtures:
        out.sink.engine_wrote(rows)
    LAST_RUN.update(
        rows=rows,
        chunks=run.chunk_count,
        batch_sinks=len(others),
        encoding_sinks=len(run.encoders),
        **run.stats,
    )


def check_profiles(graph: RecordGraph) -> bool:
    """Check the profile answers in one go, when no sink uses them (the source's
    :attr:`~aml_exportkit.graph.RecordGraph.profile_check`, with the native kernel).

    The profile answers' one reading is the graph's (record by record, as every sink that
    uses them gets them, decision 0035); this check only saves that reading's time when
    nothing uses them, as the native kernel saves the reference reading of a chunk.

    :return: True when every answer passed and the graph counts them as read; False when
        the graph must read them (it then reports whatever was wrong).
    """
    LAST_RUN.pop("profiles", None)
    check = graph.profile_check
    if check is None:
        return False
    try:
        keys, count, missing = check.check(graph)
    except StandDown as exc:
        LAST_RUN["profiles"] = f"graph: {exc}"
        return False
    if not graph.settle_profile_results(keys, count, missing):
        LAST_RUN["profiles"] = "graph: a key of a profile answer is taken"
        return False
    LAST_RUN["profiles"] = "engine"
    return True


# -- running chunks in worker processes -------------------------------------------------------


def _serve(
    conn: Connection, work: Callable[[Any], Any], parents: Sequence[Connection] = ()
) -> None:
    # The parent's ends of the pipes, inherited by the fork, are closed here: a worker
    # holding one would never see its own pipe close when the parent dies (killed while a
    # sink takes a batch, the workers still running), and would outlive it.
    for end in parents:
        end.close()
    # The graph and everything else inherited stays frozen: no collection ever scans it
    # (and parsed JSON has no cycles, so nothing needs the cyclic collector here).
    gc.freeze()
    gc.disable()
    chunks = 0
    while True:
        try:
            message = conn.recv()
        except EOFError:
            break
        if message is None:
            break
        number, payload = message
        try:
            reply = (number, True, work(payload))
        except StandDown as exc:
            reply = (number, False, str(exc))
        except (ExportkitError, _TableError) as exc:
            # the source's error, a sink's (its builder's, in MUSCLE's styles) or a table's:
            # raised in the parent as it is
            reply = (number, False, exc)
        except Exception as exc:
            # no error of the data (a bug): it ends the run, with its type and message (the
            # traceback too, for EXPORTKIT_DEBUG), not hidden behind another reading
            reply = (
                number,
                False,
                WorkerError(
                    # (one line: a library's message may hold several)
                    f"a worker process failed: {type(exc).__name__}: {' '.join(str(exc).split())}",
                    exc,
                ),
            )
        try:
            conn.send(reply)
        except (BrokenPipeError, ConnectionResetError):
            # the parent ended the run (an earlier chunk's error) and closed its end while
            # this chunk was read: nothing is waiting for the reply, and no traceback is due
            break
        del reply
        chunks += 1
        if chunks % 16 == 0:
            trim_heap()
    conn.close()


class WorkerError(RuntimeError):
    """A worker process failed for no fault of the data: it ended unexpectedly (killed by
    a signal, the out-of-memory killer say, or it exited), or its work raised an exception
    that is no :class:`~aml_exportkit.errors.ExportkitError` (a bug). The run ends with it
    (an internal error, exit code 1); nothing is written.

    :param message: what happened, naming the exception's type and message or the
        process's exit.
    :param error: the worker's exception, when it raised one (its traceback as text in
        :attr:`traceback`).
    """

    def __init__(self, message: str, error: BaseException | None = None) -> None:
        super().__init__(message)
        self.traceback = (
            "".join(traceback_module.format_exception(error)) if error is not None else ""
        )

    def __reduce__(self) -> tuple[object, ...]:
        # (sent from a worker whole: the traceback as text, the exception left behind)
        return (_worker_error, (str(self), self.traceback))


def _worker_error(message: str, trace: str) -> WorkerError:
    error = WorkerError(message)
    error.traceback = trace
    return error


def _ended(proc: Any) -> str:
    """How a worker process that closed its pipe ended (it has exited: joined at once)."""
    proc.join()
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"killed by signal {-code}, {name}"
    return f"exit code {code}"


class _Workers:
    """Forked worker processes that run ``work(payload)``; results come back in order."""

    def __init__(self, count: int, work: Callable[[Any], Any]) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for _ in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_serve, args=(child, work, [*self.conns, parent]), daemon=True
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def map(self, payloads: Sequence[Any], idle: Callable[[], bool] | None = None) -> Iterator[Any]:
        """``work(payload)`` of each payload, in order.

        :param idle: called while the parent waits for the workers, every tenth of a second
            for as long as it returns True (work the parent holds back, to do as soon as it
            can).

        :raises StandDown: when a chunk's work raised it in its worker (even after the
            source's reference reading): the run makes it an internal error.
        :raises ExportkitError: the source's error for a chunk's bad input.
        :raises WorkerError: when a worker ended unexpectedly or its work raised another
            exception.
        """
        total = len(payloads)
        busy: dict[Connection, int] = dict.fromkeys(self.conns, 0)
        done: dict[int, Any] = {}
        sent = 0
        following = 0
        while following < total:
            for conn in self.conns:
                ahead = IN_FLIGHT * len(self.conns)
                while busy[conn] < IN_FLIGHT and sent < total and sent - following < ahead:
                    conn.send((sent, payloads[sent]))
                    busy[conn] += 1
                    sent += 1
            polling = idle is not None and idle()
            ready = wait([c for c in self.conns if busy[c]], timeout=0.1 if polling else None)
            for waited in ready:
                conn = waited  # type: ignore[assignment]
                try:
                    number, ok, value = conn.recv()
                except EOFError:
                    proc = self.procs[self.conns.index(conn)]
                    raise WorkerError(
                        f"a worker process ended unexpectedly ({_ended(proc)})"
                    ) from None
                busy[conn] -= 1
                done[number] = (ok, value)
            while following in done:
                # a failed chunk fails the run in its turn: an earlier chunk's error (read
                # more slowly, record by record) comes first, as in the source's stream
                ok, value = done.pop(following)
                if not ok:
                    if isinstance(value, ExportkitError | _TableError | WorkerError):
                        raise value
                    raise StandDown(value)
                yield value
                following += 1

    def close(self) -> None:
        """Stop the workers."""
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()


# -- chunks' bytes, from a worker to the parent -----------------------------------------------


class _Spool:
    """A chunk's bytes in a file of the engine's spool folder (``/dev/shm`` when there).

    The workers write their text and Arrow bytes there rather than through the pipe: a
    pipe makes the parent copy every byte out of the kernel (and unpickle it) before it
    writes the text to the CSV file again; from a file the kernel copies the text into
    the output itself (``sendfile``), and the parent reads only the Arrow bytes.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __getstate__(self) -> str:
        return self.path

    def __setstate__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def fileno(self) -> int:
        """The file, opened for reading on first use."""
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDONLY)
        return self.fd

    def discard(self) -> None:
        """Close and remove the file."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.path)


@attrs.define
class _Part:
    """``length`` bytes at ``offset`` of a spool file."""

    spool: _Spool
    offset: int
    length: int

    def __len__(self) -> int:
        return self.length


#: A chunk's text or Arrow bytes: in the message, or in a spool file.
_Data = bytes | _Part
#: What the parent hands the sinks it does not write for one chunk: the record batch's IPC
#: stream bytes (b"" when no sink takes them), and per sink that encodes its batches, each
#: batch's bytes and rows.
_Handed: TypeAlias = tuple[bytes, list[list[tuple[bytes, int]]]]
#: One plan's part of a chunk: column names, CSV text, the columns' types and json paths,
#: the Arrow table.
_Rendered: TypeAlias = tuple[
    tuple[str, ...], _Data, dict[str, set[type]], "dict[str, JsonPath]", "_Data | ArrowTable | None"
]


def _read(data: _Data) -> bytes:
    if isinstance(data, bytes):
        return data
    return _pread_all(data.spool.fileno(), data.length, data.offset)


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    parts = []
    while length > 0:
        part = os.pread(fd, length, offset)
        if not part:
            raise OSError(f"a spool file of the engine ends early at {offset}")
        parts.append(part)
        length -= len(part)
        offset += len(part)
    return b"".join(parts)


def _put(fh: Any, data: _Data) -> None:
    """Append ``data`` to the unbuffered file ``fh``."""
    fd = fh.fileno()
    if isinstance(data, _Part):
        offset, left = data.offset, data.length
        source = data.spool.fileno()
        with contextlib.suppress(OSError):  # (not every system sends file to file)
            while left > 0:
                sent = os.sendfile(fd, source, offset, left)
                if sent <= 0:
                    break
                offset += sent
                left -= sent
        if left > 0:
            _write_all(fd, _pread_all(source, left, offset))
        return
    _write_all(fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _is_table(value: _Data | ArrowTable | None) -> TypeGuard[ArrowTable]:
    return value is not None and not isinstance(value, bytes | _Part)


_SPOOL_PREFIX = "exportkit-engine-"


def _spool_folder() -> str | None:
    """A new folder for the chunks' spool files: in ``/dev/shm`` when it is there (memory,
    not disk), else the system's temporary folder; None if neither can be made.

    Its name carries the run's pid: a run killed with SIGKILL cannot remove its folder, so
    each new run removes the folders of runs that are no longer alive.
    """
    import tempfile

    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    _sweep_spools(where or tempfile.gettempdir())
    try:
        return tempfile.mkdtemp(prefix=f"{_SPOOL_PREFIX}{os.getpid()}-", dir=where)
    except OSError:
        return None


def _sweep_spools(folder: str) -> None:
    """Remove the spool folders in ``folder`` that are ours and whose run has ended."""
    import shutil

    try:
        names = [n for n in os.listdir(folder) if n.startswith(_SPOOL_PREFIX)]
    except OSError:
        return
    for name in names:
        pid_text = name[len(_SPOOL_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        path = os.path.join(folder, name)
        try:
            if os.stat(path).st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)  # its run is gone
        except OSError:
            continue  # alive (or not ours to signal): leave it


# -- what every chunk reports -----------------------------------------------------------------


@attrs.define
class _Chunk:
    """What a worker reports about one chunk (besides the rendered text)."""

    rows: int
    first: tuple[int, int] | None
    last: tuple[int, int] | None
    pks: bytes
    missing_refs: int
    edges: tuple[int | None, int | None]
    crc: tuple[int, int] | None
    position: float
    #: per plan: the column names, the CSV text, the types and json paths of the columns
    #: found, and the Arrow table (a table in the worker; IPC stream bytes once sent; None
    #: when it could not be read)
    tables: list[_Rendered]
    #: the file that holds the text and Arrow bytes, if they are not in the message
    spool: _Spool | None = None
    #: per session: its pk, its number of results and its highest result pk (int64s)
    runs: bytes = b""
    #: the chunk's questions, when the run notes them for the codebook
    questions: DataScan | None = None
    #: the chunk's objects of ``results.json`` joined by ``", "``, when a fixture zip is
    #: written (:func:`~aml_exportkit.engine.fixture.results_text`)
    fixture: _Data = b""
    #: the chunk's record batch (a table in the worker; IPC stream bytes once sent), when
    #: the run has sinks the engine does not write
    #: (:func:`~aml_exportkit.engine.batches.result_batch`)
    batch: _Data | ArrowTable = b""
    #: per plan, the codebook's statistics of the chunk's text and table, when counted
    stats: list[PlanPart | None] | None = None
    #: per sink that encodes its batches in the workers: each batch's bytes and rows
    encoded: list[list[tuple[_Data, int]]] = attrs.field(factory=list)


# -- the engine ---------------------------------------------------------------------------------


class _CsvToArrow:
    """Reads a plan's CSV text into an Arrow table with explicit column types.

    The workers read their own chunks with the sample's types and send the table (Arrow IPC
    stream bytes) with the text, so the parent only concatenates and encodes row groups;
    the parent reads text itself only when the outputs are rebuilt with the final types.

    :param schema: the Parquet schema (the names and types of the columns).
    :param threads: let pyarrow use its thread pool (not in the workers: they fill a core
        each already).
    """

    def __init__(self, schema: Any, *, threads: bool = True) -> None:
        import importlib

        self.pa = importlib.import_module("pyarrow")
        self.pcsv = pcsv = importlib.import_module("pyarrow.csv")
        self.threads = threads
        self.read_options = pcsv.ReadOptions(
            column_names=schema.names, block_size=8 << 20, use_threads=threads
        )
        self.parse_options = pcsv.ParseOptions(newlines_in_values=True)
        # Without CR or LF inside values, the reader may split the text anywhere.
        self.plain_options = pcsv.ParseOptions(newlines_in_values=False)
        self.convert_options = pcsv.ConvertOptions(
            column_types={f.name: f.type for f in schema},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
            true_values=["true"],
            false_values=["false"],
        )

    def table(self, text: bytes, rows: int) -> ArrowTable | None:
        """The ``rows`` rows of ``text`` as a table, or None when a value does not fit its
        column's type (a kind the sample did not foresee)."""
        # When the only CR and LF are the rows' CRLFs, no value holds one, and the reader
        # may split the text anywhere for its threads. Without threads (a worker's chunk:
        # one block) that is no faster, and counting costs a quarter of the reading.
        simple = self.threads and rows == text.count(b"\n") == text.count(b"\r") == text.count(
            b"\r\n"
        )
        try:
            table: ArrowTable = self.pcsv.read_csv(
                self.pa.py_buffer(text),
                read_options=self.read_options,
                parse_options=self.plain_options if simple else self.parse_options,
                convert_options=self.convert_options,
            )
        except self.pa.ArrowInvalid:
            return None
        return table


def _arrow_of(data: _Data) -> ArrowTable:
    """The table of a worker's Arrow IPC stream, without a copy: its buffers point into
    ``data`` (or into the spool file's map, which stays valid once the file is removed)."""
    pa = importlib.import_module("pyarrow")
    if isinstance(data, _Part):
        mapped = pa.memory_map(data.spool.path)
        mapped.seek(data.offset)
        source = mapped.read_buffer(data.length)
        mapped.close()
    else:
        source = data
    table: ArrowTable = pa.ipc.open_stream(source).read_all()
    return table


def _write_ipc(table: ArrowTable, fh: object) -> None:
    """Write ``table`` as an Arrow IPC stream to the file or stream ``fh``."""
    ipc = importlib.import_module("pyarrow.ipc")
    with ipc.new_stream(fh, table.schema) as writer:
        writer.write_table(table)


def _ipc_bytes(table: ArrowTable) -> bytes:
    pa = importlib.import_module("pyarrow")
    sink = pa.BufferOutputStream()
    _write_ipc(table, sink)
    data: bytes = sink.getvalue().to_pybytes()
    return data


class _ParquetOut:
    """A Parquet file made from a plan's chunks (Arrow tables), row group by row group.

    Row groups are encoded in a thread of their own (pyarrow releases the GIL while it
    concatenates and encodes), so that the parent's receiving, CSV writing and checks run
    beside the encoding rather than after it. The thread starts with the first row group:
    never before the workers are forked.
    """

    #: Row groups waiting for the encoder; bounds the parent's memory.
    QUEUED = 1
    #: Bytes of row groups encoded between two hand-backs of the pool's free memory to the
    #: system: a hand-back after every group cost 9 % of the encoding (0.07 CPU-s of 0.8 for
    #: ``long.toml`` at 10k, decision 0036), and what the pool keeps meanwhile is reused by
    #: the next groups.
    RELEASE_BYTES = 64 << 20

    def __init__(self, output: _Output, columns: list[Column]) -> None:
        import importlib

        pa = importlib.import_module("pyarrow")

        self.pa = pa
        self.pool = pa.default_memory_pool()
        self.output = output
        self.sink = cast("ParquetSink", output.sink)
        from ..sinks.parquet import group_rows

        self.size = group_rows(self.sink.options.row_group_size, len(columns))
        self.columns = columns
        self.schema = self.sink.schema(columns)
        self.writer: Any = self.sink.open_writer(output.path, self.schema)
        self.pending: list[ArrowTable] = []
        self.pending_rows = 0
        self.count = 0
        self.valid = True
        self.queue: queue.Queue[list[ArrowTable] | None] | None = None
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        #: the encoder thread's CPU seconds, once it ended
        self.cpu = 0.0

    def add(self, table: ArrowTable) -> None:
        """Add a chunk's rows (a table with this file's column names and types)."""
        if not self.valid or not table.num_rows:
            return
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.size:
            self._take(self.size)

    def _take(self, rows: int) -> None:
        """Hand the first ``rows`` pending rows (slices, no copy) to the encoder."""
        group: list[ArrowTable] = []
        rest: list[ArrowTable] = []
        need = rows
        for table in self.pending:
            if not need:
                rest.append(table)
            elif table.num_rows <= need:
                group.append(table)
                need -= table.num_rows
            else:
                group.append(table.slice(0, need))
                rest.append(table.slice(need))
                need = 0
        self.pending = rest
        self.pending_rows -= rows
        self.count += rows
        if self.error is not None:
            raise self.error
        if self.queue is None:
            self.queue = queue.Queue(self.QUEUED)
            self.thread = threading.Thread(
                target=self._encode, name="exportkit-parquet", daemon=True
            )
            self.thread.start()
        self.queue.put(group)

    def _encode(self) -> None:
        pa = self.pa
        assert self.queue is not None
        freed = 0  # bytes of the row groups encoded since the pool last gave memory back
        while (parts := self.queue.get()) is not None:
            if self.error is not None:
                continue  # drain: the main thread raises the error
            try:
                table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
                group = table.combine_chunks()
                self.writer.write_table(pa.Table.from_arrays(group.columns, schema=self.schema))
                freed += group.nbytes
                del group, table, parts
                if freed >= self.RELEASE_BYTES:
                    freed = 0
                    self.pool.release_unused()  # give freed buffers back (bounded RSS)
            except BaseException as exc:  # raised in the main thread
                self.error = exc
        self.cpu = time.thread_time()

    def _join(self) -> None:
        if self.queue is not None and self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.queue = self.thread = None

    def close(self) -> int:
        """Write the last row group; return the row count."""
        if self.pending_rows:
            self._take(self.pending_rows)
        self._join()
        if self.error is not None:
            raise self.error
        if self.count == 0:
            empty = [self.pa.array([], type=f.type) for f in self.schema]
            self.writer.write_table(self.pa.Table.from_arrays(empty, schema=self.schema))
        self.writer.close()
        self.writer = None
        return self.count

    def abort(self) -> None:
        """Close the file after a failure."""
        self.error = self.error or StandDown("aborted")  # the encoder skips what is queued
        with contextlib.suppress(Exception):
            self._join()
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None


class _Hasher:
    """The sha256 of a file that grows by appends, read back in a thread as it grows.

    The manifest needs the CSV's digest; hashing it after the export is a serial pass of
    its own (≈0.3 s at 10k sessions, 1.5 s at 50k). Here the digest follows the writes
    (from the page cache; hashlib and ``pread`` release the GIL). The thread starts with
    the first :meth:`upto`: never before the workers are forked.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.queue: queue.Queue[int | None] | None = None
        self.thread: threading.Thread | None = None
        self.digest = hashlib.sha256()
        self.done = 0
        self.error: BaseException | None = None
        #: the thread's CPU seconds, once it ended
        self.cpu = 0.0

    def upto(self, size: int) -> None:
        """Hash the file's first ``size`` bytes (in the thread)."""
        if self.queue is None:
            self.queue = queue.Queue()
            self.thread = threading.Thread(target=self._run, name="exportkit-sha256", daemon=True)
            self.thread.start()
        self.queue.put(size)

    def _run(self) -> None:
        assert self.queue is not None
        while (size := self.queue.get()) is not None:
            try:
                while self.error is None and self.done < size:
                    block = os.pread(self.fd, min(size - self.done, 1 << 20), self.done)
                    if not block:
                        raise OSError("the CSV file is shorter than written")
                    self.digest.update(block)
                    self.done += len(block)
            except BaseException as exc:  # reported by result(): the manifest hashes again
                self.error = exc
        self.cpu = time.thread_time()

    def stop(self) -> None:
        """Wait for the thread to end."""
        if self.queue is not None and self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.queue = self.thread = None

    def result(self, size: int) -> str | None:
        """The hex digest of the first ``size`` bytes, or None (then nobody remembers it)."""
        self.upto(size)
        self.stop()
        if self.error is not None or self.done != size:
            return None
        return self.digest.hexdigest()


class _PlanState:
    """The outputs of one plan while chunks arrive."""

    def __init__(self, plan: _Plan, names: list[str], types: dict[str, set[type]]) -> None:
        self.plan = plan
        self.renderer = plan.renderer
        self.names = tuple(names)
        self.types: dict[str, set[type]] = {n: set(t) for n, t in types.items()}
        self.sample_kinds = self.kinds()
        header = self.renderer.header(self.names).encode("utf-8")
        csvs = [o for o in plan.outputs if o.format == "csv"]
        self.csv_path: Path | None = csvs[0].path if csvs else None
        self.copies = [o.path for o in csvs[1:]]
        if self.csv_path is not None:
            # unbuffered: the chunks' text goes in by the kernel (sendfile), see _put
            self.text: Any = open(self.csv_path, "w+b", buffering=0)  # noqa: SIM115
        else:
            self.text = tempfile.TemporaryFile(prefix="exportkit-engine-", buffering=0)  # noqa: SIM115
        _put(self.text, header)
        self.hasher: _Hasher | None = _Hasher(self.text.fileno()) if self.csv_path else None
        self.header_len = len(header)
        self.ranges: list[tuple[int, int]] = []
        self.rows: list[int] = []
        self.chunk_names: list[tuple[str, ...]] = []
        self.offset = len(header)
        self.parquets = [
            _ParquetOut(o, self.sample_kinds) for o in plan.outputs if o.format == "parquet"
        ]
        # what the workers read their chunks with (every Parquet output has these types)
        self.reader: _CsvToArrow | None = (
            _CsvToArrow(self.parquets[0].schema, threads=False) if self.parquets else None
        )
        self.pa: Any = self.reader.pa if self.reader is not None else None
        self.ipc: Any = self.reader.pa.ipc if self.reader is not None else None

    def extra(self, texts: Iterable[bytes]) -> None:
        """Write rows that belong to no chunk (MUSCLE's styles, :mod:`.muscle`): they
        lie in no chunk's range, so the table's chunks must never be rendered again."""
        for text in texts:
            _put(self.text, text)
            self.offset += len(text)
            if self.hasher is not None:
                self.hasher.upto(self.offset)

    def kinds(self) -> list[Column]:
        fixed = self.renderer.fixed
        return [*fixed, *(Column(n, column_kind(self.types.get(n, ()))) for n in self.names)]

    def add(
        self,
        names: tuple[str, ...],
        text: _Data,
        types: dict[str, set[type]],
        rows: int,
        arrow: _Data | None,
    ) -> None:
        """Write a chunk's text; hand its Arrow table (IPC stream bytes from the worker,
        None when its values did not fit the sample's types) to the Parquet outputs."""
        _put(self.text, text)
        self.ranges.append((self.offset, len(text)))
        self.rows.append(rows)
        self.offset += len(text)
        if self.hasher is not None:
            self.hasher.upto(self.offset)
        # the same tuple object for the same names: one per chunk would add up (a deferred
        # table renders every chunk again with the final names: no need to keep them)
        if self.renderer.deferred:
            names = ()
        self.chunk_names.append(self.names if names == self.names else names)
        for name, seen in types.items():
            known = self.types.get(name)
            if known is None:
                self.types[name] = set(seen)
                if self.ranges[:-1]:  # earlier chunks lacked it
                    self.types[name].add(Absent)
            else:
                known |= seen
        if rows:
            for name, known in self.types.items():
                if name not in types:  # this chunk lacks it
                    known.add(Absent)
        if not self.parquets or not text:
            return
        if names == self.names and arrow is not None:
            table = _arrow_of(arrow)
            for out in self.parquets:
                out.add(table)
        else:  # new columns or kinds: the Parquet outputs are rebuilt at the end
            for out in self.parquets:
                out.valid = False

    def close(self) -> None:
        if self.hasher is not None:
            self.hasher.stop()
        with contextlib.suppress(Exception):
            self.text.close()
        for out in self.parquets:
            out.abort()


class _BesideFailed(Exception):
    """The parent's work beside the engine failed with ``error``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _Beside:
    """Runs ``work`` in a thread; :meth:`join` waits and raises its error."""

    def __init__(self, work: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        #: the thread's CPU seconds, once it ended
        self.cpu = 0.0
        self.thread = threading.Thread(
            target=self._run, args=(work,), name="exportkit-beside", daemon=True
        )
        self.thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as exc:  # raised in the main thread by join()
            self.error = exc
        finally:
            self.cpu = time.thread_time()

    def join(self) -> None:
        """Wait for the work.

        :raises _BesideFailed: when it failed.
        """
        self.thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise _BesideFailed(error)


class _FixtureText:
    """The fixture sinks' ``results.json`` text, the chunks' parts joined by ``", "``
    in order (without the brackets: the sink writes the member)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        # unbuffered: the chunks' text goes in by the kernel (sendfile), see _put
        self.files: list[Any] = [open(p, "wb", buffering=0) for p in paths]  # noqa: SIM115
        self.empty = True

    def add(self, text: _Data) -> None:
        """Append a chunk's text (nothing for a chunk without results)."""
        if not len(text):
            return
        for fh in self.files:
            if not self.empty:
                _put(fh, b", ")
            _put(fh, text)
        self.empty = False

    def close(self) -> None:
        """Close the files (the sinks read them)."""
        for fh in self.files:
            fh.close()


#: A chunk rendered again: the index of the one table it is rendered for, that table's
#: final columns, its columns of JSON-text cells, and the Parquet schema (names and types)
#: to read the text with in the worker, if any (a deferred table's Parquet outputs).
_Again = tuple[int, tuple[str, ...], frozenset[str], object]


class _Run:
    def __init__(
        self,
        graph: RecordGraph,
        raw: ResultChunks[Any],
        plans: list[_Plan],
        progress: Progress,
        beside: Callable[[], None] | None = None,
        jobs: int = 1,
        questions: DataScan | None = None,
        fixtures: Sequence[_Output] = (),
        *,
        deliver: Callable[[ResultBatch], None] | None = None,
        encoders: Sequence[tuple[SinkContext, EncodingSink]] = (),
        counted: Counted | None = None,
    ) -> None:
        self.graph = graph
        self.counted = counted
        self.plan_stats = (
            [
                # (a table in MUSCLE's style, or a wide one, has rows the parent writes
                # between chunks or lays out at the end: its files are read back, as a
                # row builder's are)
                PlanStats(
                    csv=plain and any(o.format == "csv" for o in p.outputs),
                    parquet=plain and any(o.format == "parquet" for o in p.outputs),
                )
                for p in plans
                for plain in [not (isinstance(p.renderer, MuscleRenderer) or p.renderer.deferred)]
            ]
            if counted is not None
            else None
        )
        self.jobs = jobs
        self.fixtures = _FixtureText([o.path for o in fixtures]) if fixtures else None
        #: hands a record batch to the sinks the engine does not write
        self.deliver = deliver
        #: the sinks the engine does not write that encode their batches in the workers
        self.encoders = list(encoders)
        #: chunks' batches (IPC stream bytes) and encoded batches, held until the profile
        #: answers are done
        self.held: list[_Handed] = []
        self.want_batches = deliver is not None or bool(encoders)
        self.questions = questions
        self.raw = raw
        self.plans = plans
        self.progress = progress
        self.beside = beside
        self.beside_thread: _Beside | None = None
        self.spool_folder: str | None = None
        self.spooled = 0
        self.workers: _Workers | None = None
        self.states: list[_PlanState] = []
        self.chunk_count = 0
        #: the sessions that have trial results
        self.covered = 0
        self.stats: dict[str, Any] = {}
        #: (in a worker) the final columns of a second reading, and the file they came in
        self._again: tuple[str, _Again] | None = None
        #: CPU seconds of the parent's threads (see :meth:`_thread_cpu`)
        self.threads_cpu: dict[str, float] = {}

    def _thread_cpu(self, name: str, seconds: float) -> None:
        self.threads_cpu[name] = self.threads_cpu.get(name, 0.0) + seconds

    def _work(self, payload: tuple[Any, str | None]) -> _Chunk:
        task, again_file = payload
        again: _Again | None = None
        if again_file is not None:
            if self._again is None or self._again[0] != again_file:
                with open(again_file, "rb") as fh:
                    self._again = (again_file, pickle.load(fh))
            again = self._again[1]
        cols, meta = self.raw.work(task)
        try:
            return self._chunk(cols, meta, again)
        except StandDown:
            # the native kernel's columns do not take this chunk (a json_data deeper than
            # it flattens, say): the source reads it again without the kernel, record by
            # record, which gives plain values or the source's error (this chunk only)
            del cols
            cols, meta = self.raw.reference(task)
            return self._chunk(cols, meta, again)

    def _chunk(self, cols: ResultColumns, meta: ChunkMeta, again: _Again | None) -> _Chunk:
        only, forced, forced_json, schema = again if again is not None else (None,) * 4
        tables: list[_Rendered] = []
        for index, (plan, state) in enumerate(zip(self.plans, self.states, strict=True)):
            if only is not None and index != only:
                # rendered again for one table only: another table's final columns would
                # not fit this one (and its text from the first reading stands)
                tables.append(((), b"", {}, {}, None))
                continue
            with _table_errors(index):
                renderer = plan.renderer
                dyn = renderer.dynamic(cols)
                paths = {n: renderer.flatten.paths[n] for n in dyn} if renderer.flatten else {}
                if renderer.deferred and forced is None:
                    # the first reading of a table rendered with the final columns only
                    found, types = renderer.survey(cols, dyn)
                    tables.append((found, b"", types, paths, None))
                    continue
                renderer.known(dyn)
                names = forced if forced is not None else tuple(renderer.names)
                if forced is not None and not renderer.deferred and not set(dyn) <= set(forced):
                    # (each reading of a chunk is the same: a source that changed while it
                    # was read, or two readings of the engine that differ, a bug)
                    raise RuntimeError(
                        f"a chunk changed between two readings (columns"
                        f" {sorted(set(dyn) - set(forced))[:3]} are new)"
                    )
                json_names = renderer.json_columns if forced_json is None else forced_json
                text = renderer.render(cols, dyn, names, json_names)
                types = renderer.types(dyn)
            # The Arrow table for the Parquet outputs, read here rather than in the parent
            # (the parent's one core would otherwise bound the engine). Only with the sample's
            # columns: other chunks make the parent rebuild the Parquet files at the end.
            arrow = None
            if state.reader is not None and forced is None and tuple(names) == state.names:
                arrow = state.reader.table(text, len(cols)) if text else b""
            elif schema is not None:  # (the final columns of a deferred table)
                arrow = _CsvToArrow(schema, threads=False).table(text, -1) if text else b""
            tables.append((tuple(names), text, types, paths, arrow))
        stats = None
        if self.plan_stats is not None:
            stats = [
                None
                if only is not None and index != only
                else count_chunk(
                    [c.name for c in plan.renderer.fixed] + list(names),
                    cast("bytes", text),  # (rendered just now: not spooled yet)
                    arrow if _is_table(arrow) else None,
                    csv=counting.csv is not None,
                    parquet=counting.parquet is not None,
                )
                for index, (plan, counting, (names, text, *_, arrow)) in enumerate(
                    zip(self.plans, self.plan_stats, tables, strict=True)
                )
            ]
        chunk = _Chunk(
            rows=len(cols),
            first=meta["first"],
            last=meta["last"],
            pks=array.array("q", cols.pk).tobytes(),
            runs=_session_runs(cols.session, cols.pk),
            missing_refs=meta["missing"],
            edges=meta["edges"],
            crc=meta.get("crc"),
            position=meta.get("position", 0.0),
            tables=tables,
            # (once per chunk: not again when it is rendered anew)
            questions=questions_of(cols) if self.questions is not None and again is None else None,
            fixture=results_text(cols) if self.fixtures is not None and again is None else b"",
            stats=stats,
        )
        if self.want_batches and again is None and len(cols):
            table = result_batch(cols)
            chunk.encoded = [self._encode(context, sink, table) for context, sink in self.encoders]
            if self.deliver is not None:
                chunk.batch = table
        if not self._spool(chunk):
            # the Arrow tables as IPC stream bytes, in the message
            chunk.tables = [
                (names, text, types, paths, _ipc_bytes(arrow) if _is_table(arrow) else arrow)
                for names, text, types, paths, arrow in chunk.tables
            ]
            if _is_table(chunk.batch):
                chunk.batch = _ipc_bytes(chunk.batch)
        return chunk

    def _encode(
        self, context: SinkContext, sink: EncodingSink, table: ArrowTable
    ) -> list[tuple[_Data, int]]:
        """(In a worker) a sink's bytes for a chunk's trial results, a batch at a time (the
        batches the sink would be handed), with each batch's rows. Its exception is its
        :class:`~aml_exportkit.errors.SinkError`, on one line."""
        encoded: list[tuple[_Data, int]] = []
        for batch in table_batches(table):
            try:
                data = sink.encode_result_batch(batch)
            except SinkError:
                raise
            except Exception as exc:
                message = " ".join(f"{type(exc).__name__}: {exc}".split())
                raise _sink_error(context, f"cannot encode trial results: {message}") from None
            if not isinstance(data, bytes):
                raise _sink_error(
                    context,
                    f"encode_result_batch returned {type(data).__name__}, not bytes",
                )
            encoded.append((data, batch.num_rows))
        return encoded

    def _spool(self, chunk: _Chunk) -> bool:
        """Move the chunk's text and Arrow tables (as IPC streams) into a spool file (in a
        worker); False when that fails (a full ``/dev/shm``, say)."""
        if self.spool_folder is None:
            return False
        self.spooled += 1
        spool = _Spool(os.path.join(self.spool_folder, f"{os.getpid()}-{self.spooled}"))
        tables = []
        fixture: _Data = b""
        batch: _Data = b""
        encoded: list[list[tuple[_Data, int]]] = []
        fh: Any
        try:
            if _is_table(chunk.batch) or any(_is_table(arrow) for *_, arrow in chunk.tables):
                # pyarrow's file: the tables' buffers go out without a copy, and every
                # write is whole (or raises an OSError)
                fh = importlib.import_module("pyarrow").OSFile(spool.path, "w")
            else:
                fh = open(spool.path, "wb", buffering=0)  # noqa: SIM115
            with fh:
                offset = 0
                for names, text, types, paths, arrow in chunk.tables:
                    parts: list[Any] = []
                    for data in (text, arrow):
                        if isinstance(data, bytes):
                            if isinstance(fh, io.FileIO):
                                _write_all(fh.fileno(), data)
                            else:
                                fh.write(data)
                        elif data is None:
                            parts.append(None)
                            continue
                        else:
                            assert _is_table(data)  # (a worker's chunk is never spooled twice)
                            _write_ipc(data, fh)
                        end = fh.tell()
                        parts.append(_Part(spool, offset, end - offset))
                        offset = end
                    tables.append((names, parts[0], types, paths, parts[1]))
                if chunk.fixture:
                    assert isinstance(chunk.fixture, bytes)
                    if isinstance(fh, io.FileIO):
                        _write_all(fh.fileno(), chunk.fixture)
                    else:
                        fh.write(chunk.fixture)
                    fixture = _Part(spool, offset, fh.tell() - offset)
                    offset += len(fixture)
                if _is_table(chunk.batch):  # (a pyarrow file: its buffers go out without a copy)
                    _write_ipc(chunk.batch, fh)
                    batch = _Part(spool, offset, fh.tell() - offset)
                    offset = fh.tell()
                for parts in chunk.encoded:
                    spooled: list[tuple[_Data, int]] = []
                    for data, rows in parts:
                        assert isinstance(data, bytes)
                        if isinstance(fh, io.FileIO):
                            _write_all(fh.fileno(), data)
                        else:
                            fh.write(data)
                        spooled.append((_Part(spool, offset, len(data)), rows))
                        offset += len(data)
                    encoded.append(spooled)
        except OSError:
            spool.discard()
            return False
        chunk.tables = tables
        chunk.fixture = fixture
        chunk.batch = batch
        chunk.encoded = encoded
        chunk.spool = spool
        return True

    def run(self) -> int:
        graph = self.graph
        raw = self.raw
        if self.beside is not None and any(
            isinstance(p.renderer, MuscleRenderer) and p.renderer.profiles_first for p in self.plans
        ):
            # MUSCLE's styles: every worker's row builder needs the profiles (forked with it)
            beside, self.beside = self.beside, None
            try:
                beside()
            except BaseException as exc:
                raise _BesideFailed(exc) from None
        raw.open(graph)
        tasks = raw.tasks()
        # (the sessions' and sections' cells are formatted in the workers, as they meet them:
        # formatting all of them here first would cost the parent 25 MB at 50k sessions)
        sample = raw.sample()
        seeds: list[tuple[list[str], dict[str, set[type]]]] = []
        for index, plan in enumerate(self.plans):
            renderer = plan.renderer
            types: dict[str, set[type]] = {}
            if sample is not None and renderer.flatten is not None and not renderer.deferred:
                with _table_errors(index):
                    try:
                        dyn = renderer.dynamic(sample)
                    except StandDown:
                        # (the kernel does not flatten the sample's texts: its worker reads
                        # that chunk by the reference; the columns come from the chunks)
                        dyn = {}
                    renderer.known(dyn)
                    types = renderer.types(dyn)
            renderer.json_columns = json_cells_columns(types)
            seeds.append((list(renderer.names), types))
        del sample  # not needed while the chunks run
        self.states = [
            _PlanState(plan, names, types)
            for plan, (names, types) in zip(self.plans, seeds, strict=True)
        ]
        count = min(self.jobs, max(1, len(tasks)))
        self.spool_folder = _spool_folder()
        # where the time goes (LAST_RUN["cpu"], for benchmarks/run.py model): the parent's
        # CPU before the workers, its main thread's and threads' while they run, theirs
        started, before, main_started = time.perf_counter(), time.process_time(), time.thread_time()
        main_waits = _main_thread_waits()
        self.workers = _Workers(count, self._work)
        self.stats["workers"] = count
        self.stats["jobs"] = self.jobs
        for plan in self.plans:
            plan.renderer.forget()  # the workers have their copies; the parent renders nothing
        if self.beside is not None:  # (only now: no thread may run while the workers fork)
            beside, self.beside = self.beside, None
            self.beside_thread = _Beside(beside)
        # The trial results' keys; the graph's set gets them once the work beside (which
        # adds the profile answers' keys) is done, so that a key both hold is found as the
        # graph finds it (a trial result's key repeating a profile answer's).
        spans = Spans(errors=graph.result_checker("trial"))
        new_paths: list[dict[str, JsonPath]] = [{} for _ in self.plans]
        trim_heap()
        payloads = [(task, None) for task in tasks]
        handing = self.deliver is not None or bool(self.encoders)
        for chunk in self.workers.map(payloads, self._hand_batches if handing else None):
            self.chunk_count += 1
            if self.chunk_count % 32 == 0:
                trim_heap()
            if chunk.questions is not None and self.questions is not None:
                self.questions.merge_questions(chunk.questions)
            spans.take(
                rows=chunk.rows,
                first=chunk.first,
                last=chunk.last,
                pks=chunk.pks,
                missing=chunk.missing_refs,
                edges=chunk.edges,
                crc=chunk.crc,
            )
            numbers = array.array("q", chunk.runs).tolist()
            self.covered += len(numbers) // 3
            for session, count, top in zip(numbers[::3], numbers[1::3], numbers[2::3], strict=True):
                graph.note_session_run(session, count, top)
            rows = spans.rows
            for state, found, (names, text, types, paths, arrow) in zip(
                self.states, new_paths, chunk.tables, strict=True
            ):
                if isinstance(state.renderer, MuscleRenderer):
                    state.extra(state.renderer.between(numbers[::3]))
                state.add(names, text, types, chunk.rows, arrow)
                found.update(paths)
            if self.plan_stats is not None:
                for index, counting in enumerate(self.plan_stats):
                    counting.add(chunk.stats[index] if chunk.stats else None, chunk.rows)
            if self.fixtures is not None:
                self.fixtures.add(chunk.fixture)
            if handing and chunk.rows:
                assert not _is_table(chunk.batch)  # (sent as bytes or spooled)
                handed: _Handed = (
                    _read(chunk.batch),
                    [[(_read(data), rows) for data, rows in parts] for parts in chunk.encoded],
                )
                self.held.append(handed)
                self._hand_batches()
            if chunk.spool is not None:
                chunk.spool.discard()
            if chunk.position:
                graph.expected_trial_results = max(rows, round(rows / chunk.position))
            self.progress.update(rows, graph.expected_trial_results)
        if spans.crcs:
            raw.finish(spans.crcs)
        self._hand_batches(final=True)
        for state in self.states:
            if isinstance(state.renderer, MuscleRenderer):
                state.extra(state.renderer.between(None))
        for state, found in zip(self.states, new_paths, strict=True):
            self._settle(state, found, tasks)
        if self.fixtures is not None:
            self.fixtures.close()
        workers_cpu = [process_cpu(proc.pid) for proc in self.workers.procs]
        lived = time.perf_counter() - started
        waits = [process_waits(proc.pid) for proc in self.workers.procs]
        self.workers.close()
        self.workers = None
        self._join_beside()
        duplicate = graph.result_pks.merge(spans.keys)
        if duplicate is not None:  # a trial result's key repeats a profile answer's
            assert spans.errors is not None
            raise spans.errors.duplicate(duplicate)
        graph.settle_trial_results(spans.rows, spans.missing)
        main_waits_now = _main_thread_waits()
        self.stats["cpu"] = {
            # the main thread while the workers ran: seconds runnable but waiting for a CPU
            "main_waited": None
            if main_waits is None or main_waits_now is None
            else main_waits_now[1] - main_waits[1],
            "before": before,
            "during": time.process_time() - before,
            "main": time.thread_time() - main_started,
            "threads": dict(self.threads_cpu),
            "workers": workers_cpu,
            # per worker: (seconds on a CPU, seconds runnable but waiting for one, seconds
            # idle: waiting for a chunk or for the parent to take its results)
            "workers_time": [
                None if w is None else (w[0], w[1], max(0.0, lived - w[0] - w[1])) for w in waits
            ],
            "wall": time.perf_counter() - started,
            "at": started,
        }
        return spans.rows

    def _hand_batches(self, *, final: bool = False) -> bool:
        """Hand the held batches to the sinks the engine does not write, as soon as the
        profile answers (read beside, and by a sink first: the sink's order) are done,
        so that the sinks overlap the workers; True while some are still held."""
        thread = self.beside_thread
        if self.held and (final or thread is None or not thread.thread.is_alive()):
            self._join_beside()
            while self.held:
                batch, encoded = self.held.pop(0)
                if batch:
                    assert self.deliver is not None
                    for part in read_batches(batch):
                        self.deliver(part)
                for (context, sink), parts in zip(self.encoders, encoded, strict=True):
                    for data, rows in parts:
                        try:
                            sink.write_encoded(data, rows)
                        except OSError as exc:
                            raise _sink_error(
                                context, f"cannot write: {exc.strerror or exc}"
                            ) from None
                        except Exception as exc:  # (a plugin's own error: named as its)
                            detail = " ".join(str(exc).split())
                            raise _sink_error(
                                context, f"cannot write: {type(exc).__name__}: {detail}"
                            ) from None
        return bool(self.held)

    def beside_first(self) -> None:
        """Do the work beside now if it never began (the run failed before its workers
        started): its error (the profile answers') comes before the run's."""
        if self.beside is not None:
            beside, self.beside = self.beside, None
            beside()

    def _join_beside(self) -> None:
        if self.beside_thread is not None:
            thread, self.beside_thread = self.beside_thread, None
            try:
                thread.join()
            finally:
                self._thread_cpu("beside", thread.cpu)

    def _settle(self, state: _PlanState, found: dict[str, JsonPath], tasks: list[Any]) -> None:
        """Finish one plan's outputs; redo what the sample's columns did not foresee."""
        renderer = state.renderer
        flattener = renderer.flatten.flattener if renderer.flatten is not None else None
        index = self.plans.index(state.plan)
        with _table_errors(index):
            if flattener is not None:
                for name, path in found.items():
                    if flattener._name(path) != name:  # pragma: no cover - same rules everywhere
                        raise RuntimeError(
                            f"a column name differs between processes: {name!r},"
                            f" {flattener._name(path)!r}"
                        )
            final = tuple(renderer.final_names(found, state.types, self.covered))
        final_json = json_cells_columns({n: state.types.get(n, set()) for n in final})
        state.names_final = final  # type: ignore[attr-defined]
        if renderer.deferred:
            redo = list(range(len(state.chunk_names)))  # every chunk, with the final columns
        elif final_json != renderer.json_columns & set(final):
            # the sample did not show every column whose cells are JSON text: every chunk
            # is rendered again (chunks do not record which columns they held)
            redo = list(range(len(state.chunk_names)))
        else:
            redo = [i for i, names in enumerate(state.chunk_names) if names != final]
        self.stats["rerendered_chunks"] = self.stats.get("rerendered_chunks", 0) + len(redo)
        if isinstance(renderer, MuscleRenderer):
            if redo or final != state.names:
                # (its rows between chunks lie in no chunk's range; its columns are fixed)
                raise RuntimeError(  # pragma: no cover
                    "a table in MUSCLE's style changed its columns"
                )
            if renderer.laid_out:
                self._lay_out(state, renderer)
            kinds = renderer.fixed
        else:
            with _table_errors(index):
                kinds = renderer.kinds(final, state.types, found)
            schema = None
            if renderer.deferred and state.parquets:
                # the workers read their final text into Arrow; the parent only encodes
                for out in state.parquets:
                    out.abort()
                state.parquets = [_ParquetOut(out.output, kinds) for out in state.parquets]
                schema = state.parquets[0].schema
            if redo or final != state.names:
                self._rewrite_csv(state, (final, final_json), redo, tasks, schema)
        state.plan.columns = kinds
        parquets: list[tuple[Path, list[str], TableStats | None]] = []
        for out in state.parquets:
            unchanged = renderer.deferred or (not redo and final == state.names)
            if out.valid and kinds == out.columns and unchanged:
                out.close()
                parquets.append((out.output.path, list(out.schema.names), None))
            else:
                self.stats["parquet_rebuilt"] = True
                out.abort()
                parquets.append((out.output.path, *self._rebuild_parquet(state, out.output, kinds)))
            self._thread_cpu("parquet", out.cpu)
        csv_path = state.csv_path
        state.text.flush()
        if csv_path is not None:
            # (a rewritten file has a new hasher-less handle: the manifest reads it)
            digest = None
            if state.hasher is not None:
                digest = state.hasher.result(state.offset)
                self._thread_cpu("sha256", state.hasher.cpu)
            state.text.close()
            for copy in state.copies:
                _copy_file(csv_path, copy)
            if digest is not None:
                from ..manifest import remember_sha256

                for written in (csv_path, *state.copies):
                    remember_sha256(written, digest)
        if self.plan_stats is not None and self.counted is not None:
            self.plan_stats[index].finish(
                self.counted,
                [p for p in (csv_path, *state.copies) if p is not None],
                [c.name for c in renderer.fixed] + list(final),
                parquets,
            )

    def _rewrite_csv(
        self,
        state: _PlanState,
        again: tuple[tuple[str, ...], frozenset[str]],
        redo: list[int],
        tasks: list[Any],
        schema: object = None,
    ) -> None:
        final = again[0]
        assert self.workers is not None
        index = self.plans.index(state.plan)
        # The final columns go to the workers in a file, read once by each: sent with every
        # task, thousands of wide columns made each message larger than a pipe holds, and a
        # parent blocked sending one while its worker was blocked sending a chunk back
        # waited for ever.
        with tempfile.NamedTemporaryFile(
            prefix="exportkit-again-", dir=self.spool_folder, delete=False
        ) as fh:
            pickle.dump((index, *again, schema), fh, protocol=pickle.HIGHEST_PROTOCOL)
        # Each chunk's second reading is taken as it comes, in order (the workers run a few
        # chunks ahead): collected first, every chunk's text and Arrow table lay in the spool
        # folder (memory, in /dev/shm) at once, and the parent's peak grew with the export.
        try:
            fresh = self.workers.map([(tasks[i], fh.name) for i in redo])
            self._write_again(state, index, final, set(redo), fresh, schema)
        finally:
            os.unlink(fh.name)

    def _write_again(
        self,
        state: _PlanState,
        index: int,
        final: tuple[str, ...],
        redo: set[int],
        fresh: Iterator[_Chunk],
        schema: object,
    ) -> None:
        """Write the plan's text anew: the chunks of ``redo`` from ``fresh`` (their second
        readings, in order), the others from the old text."""
        old = state.text
        target, new = self._redo_file(state)
        # a deferred table's Parquet outputs take each chunk's rows as they come
        parquets = [out for out in state.parquets if schema is not None and out.valid]
        reader = _CsvToArrow(schema, threads=False) if parquets else None

        def to_parquet(gap: bytes, arrow: _Data | None) -> None:
            """Add the rows of sessions between chunks (read here), then a chunk's rows
            (read by its worker; None when a value did not fit, b"" when it has none)."""
            if not parquets:
                return
            tables: list[ArrowTable | bytes | None] = []
            if gap:
                assert reader is not None
                tables.append(reader.table(gap, -1))
            tables.append(None if arrow is None else _arrow_of(arrow) if len(arrow) else b"")
            for table in tables:
                if table is None:  # pragma: no cover - the final kinds fit every value
                    for out in parquets:
                        out.valid = False
                elif _is_table(table):
                    for out in parquets:
                        out.add(table)

        try:
            renderer = state.renderer
            header = renderer.header(final).encode("utf-8")
            _put(new, header)
            ranges = []
            offset = len(header)
            # every chunk's text anew: its statistics too (a part only adds empty columns)
            counts: list[tuple[PlanPart | None, int]] = []
            after: int | None = None  # the last session written (rows without results)
            for i, (start, length) in enumerate(state.ranges):
                text: _Data
                size = 0
                if i in redo:
                    chunk = next(fresh)
                    counts.append((chunk.stats[index] if chunk.stats else None, state.rows[i]))
                    gap = b""
                    if chunk.first is not None:
                        gap = renderer.gap(after, chunk.first[0], final)
                        _put(new, gap)
                        size += len(gap)
                        assert chunk.last is not None
                        after = chunk.last[0]
                    text = chunk.tables[index][1]
                    _put(new, text)
                    arrow = chunk.tables[index][4]
                    assert arrow is None or isinstance(arrow, bytes | _Part)  # (not a table)
                    to_parquet(gap, arrow)
                    if chunk.spool is not None:
                        chunk.spool.discard()
                else:
                    text = _pread_all(old.fileno(), length, start)
                    _put(new, text)
                size += len(text)
                ranges.append((offset, size))
                offset += size
            if state.renderer.deferred:
                gap = renderer.gap(after, None, final)
                to_parquet(gap, b"")
                _put(new, gap)
                ranges.append((offset, len(gap)))
                state.rows.append(0)
                offset += len(gap)
            new.flush()
        except BaseException:
            _drop_redo(target, new)
            raise
        new = _replace_text(state, old, target, new)
        if self.plan_stats is not None and len(counts) == len(ranges):
            self.plan_stats[index].csv_again(counts)
        state.text = new
        state.ranges = ranges
        state.header_len = len(header)
        state.names = final
        state.chunk_names = [final] * len(state.ranges)

    def _lay_out(self, state: _PlanState, renderer: MuscleRenderer) -> None:
        """Write a table whose chunks left rows to be laid out once every chunk is in
        (MUSCLE's wide layout, :mod:`.muscle`) over what they left."""
        old = state.text
        target, new = self._redo_file(state)
        try:
            with open(os.dup(old.fileno()), "rb") as parts:
                parts.seek(state.header_len)
                offset = 0
                for text in renderer.lay_out(parts, state.types):
                    _put(new, text)
                    offset += len(text)
            new.flush()
        except BaseException:
            _drop_redo(target, new)
            raise
        state.text = _replace_text(state, old, target, new)
        state.offset = offset

    def _redo_file(self, state: _PlanState) -> tuple[Path | None, Any]:
        """Stop the hasher of a table's text (it reads the old file; the manifest hashes
        the new) and open the file the text is written anew into: beside the CSV output,
        to be renamed over it (:func:`_replace_text`), else a temporary file."""
        if state.hasher is not None:
            state.hasher.stop()
            self._thread_cpu("sha256", state.hasher.cpu)
            state.hasher = None
        state.text.flush()
        if state.csv_path is None:
            return None, tempfile.TemporaryFile(prefix="exportkit-engine-", buffering=0)
        # (5 bytes, as before: the temporary name reserves 10 digits for the pid, and the
        # longest name that fits is tested with this suffix on a real pid)
        target = state.csv_path.with_name(state.csv_path.name + ".redo")
        return target, open(target, "w+b", buffering=0)

    def _rebuild_parquet(
        self, state: _PlanState, output: _Output, kinds: list[Column]
    ) -> tuple[list[str], TableStats | None]:
        """Write the Parquet file again from the CSV text; its columns, and its statistics
        when the run counts them."""
        from ..codebook import TableStats

        out = _ParquetOut(output, kinds)
        counting = TableStats(keyed=False) if self.counted is not None else None
        # pyarrow's CSV reader keeps a block per thread and column: with the thousands of
        # columns of a wide table that was 75 MB of the parent's peak at 10k sessions
        reader = _CsvToArrow(out.schema, threads=not state.renderer.deferred)
        state.text.flush()
        fd = state.text.fileno()
        try:
            for (start, length), rows in zip(state.ranges, state.rows, strict=True):
                if not length:
                    continue
                table = reader.table(os.pread(fd, length, start), rows)
                if table is None:  # pragma: no cover - the final kinds fit every value
                    raise RuntimeError(
                        f"{output.path}: a value does not fit its Parquet column (the final"
                        " kinds are made from every chunk's types)"
                    )
                out.add(table)
                count_table(counting, table)
            out.close()
        except BaseException:
            out.abort()
            raise
        finally:
            self._thread_cpu("parquet", out.cpu)
        return list(out.schema.names), counting

    def close(self) -> None:
        """Stop the workers, close the outputs, wait for the work beside (raising its
        error)."""
        if self.workers is not None:
            self.workers.close()
            self.workers = None
        for state in self.states:
            state.close()
        if self.fixtures is not None:
            self.fixtures.close()
        if self.spool_folder is not None:
            import shutil

            shutil.rmtree(self.spool_folder, ignore_errors=True)
            self.spool_folder = None
        self._join_beside()


def _drop_redo(target: Path | None, new: Any) -> None:
    """Close and remove a table's text written anew that will not be used."""
    new.close()
    if target is not None:
        target.unlink(missing_ok=True)


def _replace_text(state: _PlanState, old: Any, target: Path | None, new: Any) -> Any:
    """Put a table's text written anew in place of ``old``: renamed over the CSV output
    (and opened again there), or the temporary file itself; the file to go on with."""
    old.close()
    if target is None or state.csv_path is None:
        return new
    new.close()
    os.replace(target, state.csv_path)
    return open(state.csv_path, "rb+", buffering=0)


def _session_runs(sessions: Sequence[int], pks: Sequence[int]) -> bytes:
    """A chunk's sessions (its rows in (session, pk) order) as int64 triples: the session,
    its number of results and its last (highest) result pk, as the graph notes them
    (``RecordGraph.note_session_run``)."""
    out = array.array("q")
    start = 0
    n = len(sessions)
    for i in range(1, n + 1):
        if i == n or sessions[i] != sessions[start]:
            out.extend((sessions[start], i - start, pks[i - 1]))
            start = i
    return out.tobytes()


def _copy_file(source: Path, target: Path) -> None:
    with open(source, "rb") as src, open(target, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        while copied < size:
            n = os.copy_file_range(src.fileno(), dst.fileno(), size - copied)
            if n <= 0:
                break
            copied += n

"""MUSCLE's own CSV layouts on the engine (``style = "muscle-classic"`` and
``"muscle-dashboard"``, MUSCLE_EXPORT.md §3).

The rows are made by the sink's own row builder
(:class:`~aml_exportkit.tabular.muscle.ClassicBuilder`,
:class:`~aml_exportkit.tabular.muscle.DashboardBuilder`): the worker processes turn a chunk's
checked columns into :class:`~aml_exportkit.records.Result` records and call the builder's
per-session (classic) or per-result (dashboard) method, then write the rows with Python's
:mod:`csv`, as the sink's writer does. So there is one implementation of MUSCLE's cells, and
it runs on every core; no row is spilled.

What needs the whole export is done in the parent:

- the profile answers are read before the workers fork (:attr:`MuscleRenderer.profiles_first`),
  so that each worker's builder holds every participant's profile (a compact mapping of
  interned strings);
- the classic header is every key of every row, sorted: the keys of each session's common
  cells (fields, profile, session json) are known from the graph and the profiles, and a
  trial result's keys are the same for every result, so the parent settles the header before
  any chunk is rendered and no chunk is rendered again;
- rows that belong to no chunk: the classic export's sessions without trial results that lie
  between two chunks (or before the first, after the last), and the dashboard's profile rows,
  which follow every trial result (:meth:`MuscleRenderer.between`).

The workers' part has the shape of :class:`~aml_exportkit.engine.render.ChunkRenderer`'s
(``render``; no dynamic columns: every column is fixed), so :mod:`.workers` runs it as one
more table; the seam there is :meth:`~MuscleRenderer.between` and
:meth:`~MuscleRenderer.table_rows`.
"""

from __future__ import annotations

import array
import bisect
import csv
import io
import itertools
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from ..records import Result, Session
from ..tabular.muscle import DASHBOARD_COLUMNS, ClassicBuilder, DashboardBuilder, result_prefix
from ..tabular.options import TableOptions
from ..tabular.table import Column, WriterKind, guard_formula, line_end
from . import native
from .batches import result_records
from .chunks import ResultColumns
from .tables import RendersAtOnce


def muscle_renderer(options: TableOptions, fmt: str, sink: object) -> MuscleRenderer | str | None:
    """The renderer of a sink's table in one of MUSCLE's styles: None for our own style
    (:class:`~aml_exportkit.engine.render.ChunkRenderer`'s), else the renderer, or why the
    engine cannot write it.

    :param fmt: what the engine would write (``"csv"`` or ``"parquet"``).
    :param sink: the sink; its row builder (made in ``begin``) makes the rows.
    """
    if options.style == "exportkit":
        return None
    if fmt != "csv":
        return f"style {options.style!r} as {fmt}"
    builder = getattr(sink, "builder", None)
    guard = bool(getattr(options, "formula_guard", False))
    if isinstance(builder, ClassicBuilder):
        if builder.wide:
            return ClassicWideRenderer(builder, formula_guard=guard)
        return ClassicRenderer(builder, formula_guard=guard)
    if isinstance(builder, DashboardBuilder):
        return DashboardRenderer(builder, formula_guard=guard)
    return f"style {options.style!r} without its row builder"


class MuscleRenderer(RendersAtOnce):
    """Renders chunks of trial results as rows of one of MUSCLE's CSV layouts (in the
    workers), and the rows that belong to no chunk (in the parent).

    :param dialect: ``"classic"`` or ``"dashboard"`` (the line end, :func:`line_end`).
    :param formula_guard: the sink's ``formula_guard``.
    """

    #: no json is flattened: every column is fixed
    flatten: None = None
    json_columns: frozenset[str] = frozenset()
    #: the profile answers must be read before the workers fork
    profiles_first = True
    #: the chunks leave rows that :meth:`lay_out` writes as the table at the end
    laid_out = False

    def __init__(self, dialect: WriterKind, *, formula_guard: bool) -> None:
        self.line_end = line_end(dialect)
        self.formula_guard = formula_guard
        self.names: list[str] = []
        self._fixed: list[Column] | None = None
        #: trial results and sessions with results seen by :meth:`between` (parent)
        self.results = 0

    # -- the shape of ChunkRenderer's (workers.py runs both) -----------------------------------

    def columns(self) -> list[str]:
        """The table's columns (in the parent, once the profile answers are read)."""
        raise NotImplementedError

    @property
    def fixed(self) -> list[Column]:
        """Every column of the table (MUSCLE's cells are text)."""
        if self._fixed is None:
            self._fixed = [Column(name, "string") for name in self.columns()]
        return self._fixed

    def header(self, names: Sequence[str]) -> str:
        """The header line (``names`` is always empty: there are no dynamic columns)."""
        return self._header_line([c.name for c in self.fixed])

    def sort_names(self, names: Iterable[str]) -> list[str]:
        """Dynamic column names in output order (there are none)."""
        return sorted(names)

    def known(self, names: Iterable[str]) -> None:
        """Dynamic column names found elsewhere (there are none)."""

    def kinds(
        self,
        names: Sequence[str],
        types: Mapping[str, set[type]],
        paths: Mapping[str, Any] | None = None,
    ) -> list[Column]:
        """Every column of the table (:attr:`fixed`)."""
        return self.fixed

    def forget(self) -> None:
        """Nothing is cached per session in the parent."""

    def dynamic(self, chunk: ResultColumns) -> Mapping[str, list[Any]]:
        """No dynamic columns."""
        return {}

    def types(self, dyn: Mapping[str, Any]) -> dict[str, set[type]]:
        """No dynamic columns."""
        return {}

    def render(
        self,
        chunk: ResultColumns,
        dyn: Mapping[str, Any],
        names: Sequence[str],
        json_names: frozenset[str] = frozenset(),
    ) -> bytes:
        """The CSV lines (UTF-8) of a chunk's rows."""
        if not len(chunk):
            return b""
        return self._lines(self.rows(chunk)).encode("utf-8")

    # -- MUSCLE's rows ------------------------------------------------------------------------

    def rows(self, chunk: ResultColumns) -> Iterable[Sequence[str]]:
        """A chunk's rows, as lists of cells in column order (in a worker)."""
        raise NotImplementedError

    def between(self, sessions: Sequence[int] | None) -> Iterable[bytes]:
        """In the parent, before a chunk whose sessions (with results, ascending) are
        ``sessions`` (None: after the last chunk): the lines of the rows that come before
        it and belong to no chunk, in pieces of bounded size."""
        raise NotImplementedError

    def table_rows(self, results: int) -> int:
        """The table's rows, when the engine wrote ``results`` trial results."""
        raise NotImplementedError

    def lay_out(self, parts: BinaryIO, columns: Iterable[str]) -> Iterator[bytes]:
        """The table's text from what the chunks and :meth:`between` left (in the parent,
        for a renderer that is :attr:`laid_out`); ``columns``: every column the
        chunks' :meth:`types` named."""
        raise NotImplementedError

    def _lines(self, rows: Iterable[Sequence[str]]) -> str:
        # Python's csv, as the sink's writer (write_python_csv) writes MUSCLE's tables
        if self.formula_guard:
            rows = ([guard_formula(v) for v in row] for row in rows)
        return self._write(rows)

    def _write(self, rows: Iterable[Sequence[str]]) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator=self.line_end).writerows(rows)
        return out.getvalue()

    def _header_line(self, names: Sequence[str]) -> str:
        """The header line: the column names as they are (the sink's writer guards the
        cells against formulas, not the names)."""
        return self._write([names])


#: The second cell of each row :func:`csv_cells` writes: needs no quoting, and marks where
#: a row ends (a cell that holds it too is found, and quoted on its own).
_MARK = "\x1fexportkit\x1f"


def csv_cells(values: Iterable[str], line_end: str) -> dict[str, str]:
    """Each of ``values`` as Python's :mod:`csv` writes it in a row of two or more cells
    (quoted where the writer quotes it, with the line end ``line_end``): the writer's own
    quoting, a batch at a time, so that a row can be joined from cells quoted once.

    (The writer quotes each cell by its own text, but a row of one empty cell as ``""``,
    which is why rows of one column are not joined from these.)"""
    distinct = list(dict.fromkeys(values))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    writer.writerows([(v, _MARK) for v in distinct])
    end = "," + _MARK + line_end
    parts = out.getvalue().split(end)
    if len(parts) == len(distinct) + 1:
        return dict(zip(distinct, parts, strict=False))
    cells = {}
    for v in distinct:  # a cell holds the mark: one at a time
        out.seek(0)
        out.truncate()
        writer.writerow((v, _MARK))
        cells[v] = out.getvalue()[: -len(end)]
    return cells


#: Characters that may make the csv writer quote a cell: the delimiter, the quote, and any
#: line end's (:func:`_specials` asks the writer which of them it quotes).
_CANDIDATES = ',"\r\n'
_SPECIALS: dict[str, str] = {}


def _specials(line_end: str) -> str:
    """The characters for which Python's csv writer quotes a cell, with ``line_end``: asked
    of the writer itself (which of CR and LF it quotes depends on the line end, and on the
    Python version), so that the kernel follows the writer."""
    found = _SPECIALS.get(line_end)
    if found is None:
        candidates = _CANDIDATES + "".join(c for c in line_end if c not in _CANDIDATES)
        quoted = csv_cells(list(candidates), line_end)
        found = _SPECIALS[line_end] = "".join(c for c in candidates if quoted[c] != c)
    return found


def csv_quoted(values: list[str], line_end: str) -> list[str]:
    """Each of ``values`` as Python's :mod:`csv` writes it in a row of two or more cells
    (:func:`csv_cells`, the reference), one for each: by the native kernel's
    ``csv_quote`` when it is built (a scan of each cell, not the writer's row per distinct
    cell), else by the writer."""
    speedups = native.kernel()
    specials = _specials(line_end)
    if speedups is not None and specials.isascii():
        quoted: list[str] = speedups.csv_quote(values, specials)
        return quoted
    cells = csv_cells(values, line_end)
    return list(map(cells.__getitem__, values))


def _by_session(records: list[Result]) -> Iterable[tuple[int, list[Result]]]:
    """A chunk's records (in (session, pk) order) grouped by session."""
    start = 0
    n = len(records)
    for i in range(1, n + 1):
        if i == n or records[i].session != records[start].session:
            session = records[start].session
            assert session is not None  # (trial results have one: the checks saw to it)
            yield session, records[start:i]
            start = i


class ClassicRenderer(MuscleRenderer):
    """MUSCLE's classic admin CSV, long format: a row per trial result, and one per
    session without results, sessions in pk order.

    :param builder: the sink's builder, which has read the profile answers.
    """

    def __init__(self, builder: ClassicBuilder, *, formula_guard: bool) -> None:
        super().__init__("classic", formula_guard=formula_guard)
        self.builder = builder
        graph = builder.graph
        self.sessions: Mapping[int, Session] = graph.sessions
        self.pks = sorted(graph.sessions)
        self._after: int | None = None
        self._with_results = 0
        self._names: list[str] | None = None
        self._base_names: list[str] = []
        #: the header's columns, once written (by the first rows, see between)
        self._header: list[str] | None = None

    def columns(self) -> list[str]:
        """Every key of every session's common cells and a trial result's keys, sorted:
        the columns of every row the workers render (in the parent before they fork)."""
        if self._names is None:
            keys: set[str] = set()
            for session in self.sessions.values():
                keys.update(self.builder.base_row(session))
            self._base_names = sorted(keys)
            self._names = sorted(keys.union(self.builder.result_keys()))
        return self._names

    @property
    def fixed(self) -> list[Column]:
        """Every column of the table: without a trial result's keys when there is none."""
        names = self._header if self._header is not None else self.columns()
        return [Column(name, "string") for name in names]

    def header(self, names: Sequence[str]) -> str:
        """Nothing yet: the header depends on whether there are trial results, and is
        written with the first rows (:meth:`between`)."""
        return ""

    def _session_lines(self, pks: Iterable[int], names: list[str]) -> str:
        builder = self.builder
        sessions = self.sessions
        return self._lines(
            [row.get(c, "") for c in names]
            for pk in pks
            for row in builder.session_rows(sessions[pk], [])
        )

    def session_results(self, chunk: ResultColumns) -> Iterator[tuple[Session, list[Result]]]:
        """Each of the chunk's sessions with its trial results, with the sessions without
        results among them."""
        sessions = self.sessions
        pks = self.pks
        previous: int | None = None
        for pk, results in _by_session(result_records(chunk)):
            if previous is not None:
                lo = bisect.bisect_right(pks, previous)
                hi = bisect.bisect_left(pks, pk)
                for gap in pks[lo:hi]:
                    yield sessions[gap], []
            yield sessions[pk], results
            previous = pk

    def session_rows(self, chunk: ResultColumns) -> Iterator[list[dict[str, str]]]:
        """The rows of each of the chunk's sessions, with the sessions without results
        among them (the builder's :meth:`~ClassicBuilder.session_rows`)."""
        builder = self.builder
        for session, results in self.session_results(chunk):
            yield builder.session_rows(session, results)

    def rows(self, chunk: ResultColumns) -> Iterable[Sequence[str]]:
        """The chunk's rows."""
        names = self.columns()
        for rows in self.session_rows(chunk):
            for row in rows:
                yield [row.get(c, "") for c in names]

    def render(
        self,
        chunk: ResultColumns,
        dyn: Mapping[str, Any],
        names: Sequence[str],
        json_names: frozenset[str] = frozenset(),
    ) -> bytes:
        """The CSV lines (UTF-8) of a chunk's rows.

        A session's rows share every cell but a trial result's (its fields, the profile
        and the session json, often kilobytes): those are quoted once per session and
        joined into each row as one piece; every cell is quoted as the csv writer quotes
        it (:func:`csv_quoted`)."""
        header = self.columns()
        if not len(chunk) or len(header) < 2:
            return super().render(chunk, dyn, names, json_names)
        own = set(self.builder.result_keys())
        # the row's pieces: the runs of shared cells, each one piece, and a result's cells
        pieces: list[list[str]] = []
        for name in header:
            if name in own or not pieces or pieces[-1][0] in own:
                pieces.append([name])
            else:
                pieces[-1].append(name)
        shared = [c for run in pieces if run[0] not in own for c in run]
        result = [run[0] for run in pieces if run[0] in own]
        # each session's cells from the builder's two parts (session_parts): a row is the
        # shared cells overwritten by a result's, which has every result key
        builder = self.builder
        counts: list[int] = []
        values: list[str] = []
        for session, results in self.session_results(chunk):
            base, each = builder.session_parts(session, results)
            values += [base.get(c, "") for c in shared]
            if each:
                for cells_of in each:
                    values += [cells_of[c] for c in result]
            else:
                values += [base.get(c, "") for c in result]
            counts.append(len(each) or 1)
        if self.formula_guard:
            values = list(map(guard_formula, values))
        cells = csv_quoted(values, self.line_end)
        # a session's rows: one format whose fixed text is the shared cells, filled with
        # each result's cells ("%" doubled in the fixed text)
        lines: list[str] = []
        at = 0
        width = len(result)
        for count in counts:
            parts = []
            for run in pieces:
                if run[0] in own:
                    parts.append("%s")
                else:
                    parts.append(",".join(cells[at : at + len(run)]).replace("%", "%%"))
                    at += len(run)
            form = ",".join(parts)
            if width:
                end = at + width * count
                lines += [form % tuple(cells[i : i + width]) for i in range(at, end, width)]
                at = end
            else:
                lines += [form % ()] * count
        lines.append("")
        return self.line_end.join(lines).encode("utf-8")

    def _without_results(self, sessions: Sequence[int] | None) -> tuple[int, int] | None:
        """The range of :attr:`pks` of the sessions without results before a chunk whose
        sessions with results are ``sessions`` (None: after the last chunk), noting the
        chunk; None for a chunk without results."""
        pks = self.pks
        lo = 0 if self._after is None else bisect.bisect_right(pks, self._after)
        if sessions is None:
            return lo, len(pks)
        if not sessions:
            return None
        self._after = sessions[-1]
        self._with_results += len(sessions)
        return lo, bisect.bisect_left(pks, sessions[0])

    def between(self, sessions: Sequence[int] | None) -> Iterable[bytes]:
        """The sessions without results before the chunk (after the last one: the rest)."""
        span = self._without_results(sessions)
        if span is None:
            return ()
        lo, hi = span
        pks = self.pks
        text = ""
        if self._header is None:
            # the first rows, or the end: a trial result's keys are columns only when
            # there are trial results
            self.columns()
            self._header = self._names if self._with_results else self._base_names
            assert self._header is not None
            text = self._header_line(self._header)
        if hi > lo:
            text += self._session_lines(pks[lo:hi], self._header)
        return (text.encode("utf-8"),)

    def table_rows(self, results: int) -> int:
        """A row per trial result and per session without results."""
        return results + len(self.pks) - self._with_results


class DashboardRenderer(MuscleRenderer):
    """MUSCLE's 2026 dashboard long CSV: the trial results' rows (in the workers), then
    the profile rows (in the parent).

    :param builder: the sink's builder, which holds the profile rows.
    """

    def __init__(self, builder: DashboardBuilder, *, formula_guard: bool) -> None:
        super().__init__("dashboard", formula_guard=formula_guard)
        self.builder = builder

    def columns(self) -> list[str]:
        """MUSCLE's 12 columns."""
        return list(DASHBOARD_COLUMNS)

    def rows(self, chunk: ResultColumns) -> Iterable[Sequence[str]]:
        """A row per trial result."""
        return map(self.builder.result_row, result_records(chunk))

    def between(self, sessions: Sequence[int] | None) -> Iterable[bytes]:
        """After the last chunk, the profile rows."""
        if sessions is not None:
            return
        rows = self.builder.profile_rows()
        while batch := list(itertools.islice(rows, 4096)):
            yield self._lines(batch).encode("utf-8")

    def table_rows(self, results: int) -> int:
        """A row per trial result and per profile answer."""
        return results + self.builder.profile_count()


#: What a worker writes before each row of the wide layout: its session's number of
#: results, the number of units of its middle part, and the byte lengths of its three parts
#: (the units' lengths follow the middle part, as unsigned 32-bit integers).
_ROW = struct.Struct("<5q")
#: An empty run of the header's middle in a row's plan (:meth:`ClassicWideRenderer.plan`).
_FILL = 0
#: A run of a row's own units in its plan.
_RUN = 1


def _is_middle(key: str) -> bool:
    """Whether ``key`` may sort among the prefixed columns (it starts with an ASCII digit,
    as every prefix does): every other key sorts before (``"" < key < "0"``) or after
    (``key[:1] > "9"``) all of them."""
    return "0" <= key[:1] <= "9"


class ClassicWideRenderer(ClassicRenderer):
    """MUSCLE's classic admin CSV, wide format: a row per session, each result's cells
    under ``001-``, ``002-``, … (:func:`~aml_exportkit.tabular.muscle.result_prefix`).

    The header is MUSCLE's: every key of every row, sorted as Python sorts strings, and a
    row has ``''`` where it lacks a key. A session's keys are its common cells' (fields,
    profile, session json: the parent knows them all before the workers fork) and, with
    ``n`` results, the result keys under the prefixes of 1 … ``n``. The prefixes the header
    holds (up to the most results a session has) are known only at the end, and they sort
    as text: ``1000-`` between ``100-`` and ``101-``, and among the common keys that start
    with a digit. So a row is written in three parts:

    - its cells before every prefixed column (keys before ``"0"``),
    - its *middle*: the common keys that start with an ASCII digit and its own prefixed
      keys, sorted, in *units* that stay together in every header (a result's cells:
      a prefix's columns sort together, as its digits decide against another prefix's, or
      its ``-`` against the digits of a longer prefix that starts with them; but each cell
      on its own when a common key starts with a digit, for such a key may sort between
      two of a result's columns), each unit's length noted,
    - its cells after every prefixed column (keys after ``"9…"``).

    Once every chunk is in, :meth:`lay_out` sorts the header's middle and writes each row
    with the empty cells of the prefixes it lacks where they sort (:meth:`plan`).
    """

    laid_out = True

    def __init__(self, builder: ClassicBuilder, *, formula_guard: bool) -> None:
        super().__init__(builder, formula_guard=formula_guard)
        self._left: list[str] = []
        self._middle: list[str] = []
        self._right: list[str] = []
        #: a result's keys (every result has them all), sorted
        self._keys = sorted(set(builder.result_keys()))
        #: the most results a session of the chunk has (see types)
        self._most = 0

    def columns(self) -> list[str]:
        """The common keys of every session (not the prefixed ones), split around where the
        prefixed ones go (in the parent before the workers fork)."""
        if self._names is None:
            keys: set[str] = set()
            for session in self.sessions.values():
                keys.update(self.builder.base_row(session))
            self._names = self._base_names = sorted(keys)
            self._left = [k for k in self._names if k < "0"]
            self._middle = [k for k in self._names if _is_middle(k)]
            self._right = [k for k in self._names if k[:1] > "9"]
        return self._names

    def _prefixes(self, count: int) -> list[int]:
        """The numbers 1 … ``count`` in the order their prefixes sort."""
        if count < 1000:  # (zero-padded to three digits: the numbers' own order)
            return list(range(1, count + 1))
        return sorted(range(1, count + 1), key=result_prefix)

    def _prefixed(self, count: int) -> list[str]:
        """The prefixed columns of a session with ``count`` results, sorted."""
        keys = self._keys
        return [result_prefix(n) + key for n in self._prefixes(count) for key in keys]

    def _middle_of(self, count: int) -> tuple[list[str], int]:
        """The middle columns of a row whose session has ``count`` results, and the cells
        of each of its units."""
        if not self._middle:
            return self._prefixed(count), len(self._keys)
        return sorted(set(self._middle).union(self._prefixed(count))), 1

    def _shape(self, count: int) -> tuple[int, int]:
        """The number of middle cells of a row whose session has ``count`` results, and
        the cells of each of its units (as :meth:`_middle_of`)."""
        if not self._middle:
            return count * len(self._keys), len(self._keys)
        return len(self._middle_of(count)[0]), 1

    def _row_cells(self, row: dict[str, str], count: int) -> list[str]:
        """A row's cells (the builder's row, its session with ``count`` results): left,
        middle, right."""
        middle = self._middle_of(count)[0]
        return [row.get(c, "") for c in itertools.chain(self._left, middle, self._right)]

    def _part_cells(self, base: dict[str, str], each: list[dict[str, str]]) -> list[str]:
        """The cells of the row the builder makes of ``base`` and ``each`` result's cells
        (:meth:`~ClassicBuilder.session_parts`: each result's cells under its prefix),
        without making its dict: only when no common key starts with a digit, so that the
        prefixed keys are the result's alone and sort by prefix, then by key."""
        assert not self._middle
        keys = self._keys
        cells = [base.get(c, "") for c in self._left]
        for n in self._prefixes(len(each)):
            values = each[n - 1]
            cells += [values[k] for k in keys]
        cells += [base.get(c, "") for c in self._right]
        return cells

    def _encode(self, rows: Iterable[tuple[list[str], int]]) -> bytes:
        """Each row (its cells, :meth:`_row_cells`, with its session's number of results)
        as :data:`_ROW`, its three parts and the lengths of its middle's units."""
        values: list[str] = []
        shapes: list[tuple[int, int, int]] = []
        for cells_of, count in rows:
            n_middle, width = self._shape(count)
            shapes.append((count, n_middle, width))
            values += cells_of
        if self.formula_guard:
            values = list(map(guard_formula, values))
        cells = csv_quoted(values, self.line_end)
        out: list[bytes] = []
        at = 0
        n_left, n_right = len(self._left), len(self._right)
        for count, n_middle, width in shapes:
            a = ",".join(cells[at : at + n_left]).encode("utf-8")
            at += n_left
            mine = cells[at : at + n_middle]
            at += n_middle
            if width == 1:
                units = mine
            elif not mine:  # (no result keys: no prefixed columns)
                units = []
            else:
                units = [",".join(mine[i : i + width]) for i in range(0, n_middle, width)]
            text = ",".join(units)
            m = text.encode("utf-8")
            lengths = (
                list(map(len, units))
                if len(m) == len(text)
                else [len(u.encode("utf-8")) for u in units]
            )
            b = ",".join(cells[at : at + n_right]).encode("utf-8")
            at += n_right
            out += [
                _ROW.pack(count, len(units), len(a), len(m), len(b)),
                a,
                m,
                array.array("I", lengths).tobytes(),
                b,
            ]
        return b"".join(out)

    def render(
        self,
        chunk: ResultColumns,
        dyn: Mapping[str, Any],
        names: Sequence[str],
        json_names: frozenset[str] = frozenset(),
    ) -> bytes:
        """The chunk's sessions' rows, in three parts each (:meth:`lay_out` lays them out)."""
        self._most = 0
        if not len(chunk):
            return b""
        builder = self.builder
        if self._middle:
            rows = [
                (self._row_cells(builder.session_rows(session, results)[0], n), n)
                for session, results in self.session_results(chunk)
                for n in (len(results),)
            ]
        else:  # (the common case: the builder's parts, not a dict per row)
            rows = [
                (self._part_cells(*builder.session_parts(session, results)), len(results))
                for session, results in self.session_results(chunk)
            ]
        self._most = max(count for _, count in rows)
        return self._encode(rows)

    def types(self, dyn: Mapping[str, Any]) -> dict[str, set[type]]:
        """The prefixed columns of the chunk's session with the most results (the parent
        unites them: the header's)."""
        return {name: {str} for name in self._prefixed(self._most)}

    def between(self, sessions: Sequence[int] | None) -> Iterable[bytes]:
        """The sessions without results before the chunk (after the last one: the rest)."""
        span = self._without_results(sessions)
        if span is None:
            return ()
        lo, hi = span
        pks = self.pks
        builder, every = self.builder, self.sessions
        rows = [
            (self._row_cells(row, 0), 0)
            for pk in pks[lo:hi]
            for row in builder.session_rows(every[pk], [])
        ]
        return (self._encode(rows),) if rows else ()

    def header_middle(self, most: int) -> tuple[list[str], list[tuple[int, int]]]:
        """The header's middle when the most results a session has is ``most``: its
        columns, and its units as (cells, the results a row needs to hold it)."""
        if not self._middle:
            width = len(self._keys)
            numbers = self._prefixes(most) if width else []
            return self._prefixed(most), [(width, n) for n in numbers]
        common = set(self._middle)
        names = sorted(common.union(self._prefixed(most)))
        return names, [(1, 0 if c in common else int(c.partition("-")[0])) for c in names]

    @staticmethod
    def plan(units: Sequence[tuple[int, int]], count: int) -> list[tuple[int, int, int]]:
        """How a row whose session has ``count`` results fills the header's middle
        (``units``, :meth:`header_middle`): runs of its own units, ``(_RUN, first,
        end)``, and of empty cells, ``(_FILL, cells, 0)``."""
        steps: list[tuple[int, int, int]] = []
        own = 0
        for width, needs in units:
            if needs <= count:
                if steps and steps[-1][0] == _RUN:
                    steps[-1] = (_RUN, steps[-1][1], own + 1)
                else:
                    steps.append((_RUN, own, own + 1))
                own += 1
            elif steps and steps[-1][0] == _FILL:
                steps[-1] = (_FILL, steps[-1][1] + width, 0)
            else:
                steps.append((_FILL, width, 0))
        return steps

    def lay_out(self, parts: BinaryIO, columns: Iterable[str]) -> Iterator[bytes]:
        """The header and every row, each with the empty cells of the prefixes its session
        lacks (``columns``: every prefixed column the chunks' :meth:`types` named)."""
        prefixed = set(columns)
        most = max((int(c.partition("-")[0]) for c in prefixed), default=0)
        if prefixed != set(self._prefixed(most)):  # pragma: no cover - types() names them
            raise AssertionError("the chunks' prefixed columns are not every result's")
        middle, units = self.header_middle(most)
        names = [*self._left, *middle, *self._right]
        self._header = names
        yield self._header_line(names).encode("utf-8")
        # (a row of one empty cell is written "" by the csv writer: an empty line would
        # be a row of no cells)
        lone = b'""' if len(names) == 1 else b""
        end = self.line_end.encode("utf-8")
        left, right = bool(self._left), bool(self._right)
        plans: dict[int, list[tuple[int, int, int]]] = {}
        fills: dict[int, bytes] = {}
        out: list[bytes] = []
        size = 0
        while True:
            head = parts.read(_ROW.size)
            if not head:
                break
            count, n_units, a, m, b = _ROW.unpack(head)
            pieces = [parts.read(a)] if left else []
            mine = parts.read(m)
            lengths = parts.read(4 * n_units)
            steps = plans.get(count)
            if steps is None:
                steps = plans[count] = self.plan(units, count)
            starts: list[int] | None = None
            for kind, first, last in steps:
                if kind == _FILL:
                    fill = fills.get(first)
                    if fill is None:
                        fill = fills[first] = b"," * (first - 1)
                    pieces.append(fill)
                elif first == 0 and last == n_units:
                    pieces.append(mine)
                else:  # (units of the row with the header's own between them)
                    if starts is None:
                        sizes = array.array("I", lengths)
                        starts = [0, *itertools.accumulate(n + 1 for n in sizes)]
                    pieces.append(mine[starts[first] : starts[last] - 1])
            if right:
                pieces.append(parts.read(b))
            else:
                parts.read(b)
            out += [b",".join(pieces) or lone, end]
            size += a + m + b
            if size > 1 << 22:
                yield b"".join(out)
                out, size = [], 0
        yield b"".join(out)

    def table_rows(self, results: int) -> int:
        """A row per session."""
        return len(self.pks)

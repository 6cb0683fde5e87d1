"""The ``spss`` and ``stata`` sinks: our long or wide table, with SPSS/Stata names and labels.

Until the end, rows are parked on disk by aml_exportkit's table builder like every table.
pyreadstat writes a whole table at once, so the finished table is read once, a chunk of rows
at a time, into an Arrow file beside the output (anonymous), and pyreadstat is handed that
file memory-mapped: the sink holds at most :data:`CHUNK_ROWS` rows as Python objects, and the
table's pages are the file's, which the system drops and reads again as it needs.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import mmap
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import IO, Any, Literal, Protocol

import attrs

from aml_exportkit import (
    BaseSink,
    OutputReport,
    RecordGraph,
    Requirement,
    SinkContext,
    SinkError,
)
from aml_exportkit.contracts import ColumnInfo
from aml_exportkit.frames import Table, TableBuilder, TableOptions, WideOptions, text_of
from aml_exportkit.records import Result
from aml_exportkit.redact import scrub

from .labels import QuestionBook, Tie, as_number, merged_choices, question_text, tie_columns
from .names import Format, variable_names

#: What the sinks import when they run; the pipeline checks them before reading anything.
REQUIRES = (
    Requirement(module="pyreadstat", install="pip install pyreadstat"),
    Requirement(module="pandas", install="pip install pandas"),
)
#: Label lengths the formats keep (longer labels are cut at a character): SPSS counts bytes
#: of UTF-8, Stata (format 119) counts characters.
VARIABLE_LABEL_LIMIT: dict[Format, int] = {"spss": 256, "stata": 80}
VALUE_LABEL_LIMIT: dict[Format, int] = {"spss": 120, "stata": 32000}
FILE_LABEL_LIMIT: dict[Format, int] = {"spss": 64, "stata": 80}
_BOOL_LABELS = {0.0: "false", 1.0: "true"}


@attrs.frozen(kw_only=True)
class ReadstatOptions(TableOptions):
    """Options of the ``spss`` and ``stata`` sinks: every key of the table sinks
    (docs/csv.md), plus:

    :param layout: ``"wide"`` (one row per session, or per participant with
        ``[sinks.wide] row_per``) or ``"long"`` (one row per result).
    :param wide: the wide layout (``[sinks.wide]``: ``row_per``, ``key_by``).
    :param variable_labels: ``"both"`` (the original column name, then the question text
        when one is known: ``profile.msi_01: I spend a lot of …``), ``"question"`` (the
        question text when known, else the original name) or ``"name"``.
    :param value_labels: label choice values (and booleans) with the choices' labels.
    :param file_label: the file's label (default: the template's name).
    """

    layout: Literal["long", "wide"] = "wide"
    wide: WideOptions = WideOptions()
    variable_labels: Literal["both", "question", "name"] = "both"
    value_labels: bool = True
    file_label: str = ""

    def __attrs_post_init__(self) -> None:
        if self.layout == "wide" and self.style == "muscle-dashboard":
            raise ValueError("style 'muscle-dashboard' is a long table; set layout = 'long'")
        if self.layout == "wide" and self.flatten.lists == "explode":
            raise ValueError("flatten.lists = 'explode' needs layout = 'long'")


def _pyreadstat() -> Any:
    # imported by name: pyreadstat and pandas ship no type information
    return importlib.import_module("pyreadstat")


def _pandas() -> Any:
    return importlib.import_module("pandas")


def _pyarrow() -> Any:
    return importlib.import_module("pyarrow")


class ArrowBatch(Protocol):
    """What the sink uses of a ``pyarrow.RecordBatch`` (pyarrow ships no type stubs)."""

    @property
    def num_rows(self) -> int:
        """The number of rows."""


class ArrowTable(Protocol):
    """What the sink uses of a ``pyarrow.Table`` (pyarrow ships no type stubs)."""

    @property
    def num_rows(self) -> int:
        """The number of rows."""

    def column(self, name: str) -> object:
        """One column (a ``pyarrow.ChunkedArray``)."""

    def to_pandas(self, *, types_mapper: object) -> object:
        """The table as a ``pandas.DataFrame``."""


def _arrow_type(pa: Any, candidate: str) -> object:
    """The Arrow type of a spilled candidate (:class:`Column`)."""
    if candidate in _DOUBLES:
        return pa.float64()
    if candidate == "datetime":
        return pa.timestamp("us")
    return pa.string()


def _cut(text: str, limit: int, fmt: Format) -> str:
    if fmt == "stata":
        return text[:limit]
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


#: Rows the sink converts at a time, and cells at most (a wide row holds thousands of
#: values): the most table rows it holds as Python objects at once.
CHUNK_ROWS = 4096
CHUNK_CELLS = 1 << 18
#: Column kinds written as a number (booleans as 0/1).
_NUMBER_KINDS = frozenset({"int", "float", "null", "bool"})
#: The candidates written as doubles; the others are text but ``datetime``.
_DOUBLES = frozenset({"number", "json-number", "labelled"})


@attrs.define
class Variable:
    """One column as it is written: its name, label, type and value labels, and which of
    the column's spilled candidates (:class:`Column`) holds its values."""

    name: str
    original: str
    label: str
    labels: dict[Any, str] | None = None
    type: str = "string"
    candidate: str = "text"


class Column:
    """One table column, read chunk by chunk into the arrays it may be written as (its
    *candidates*: ``number``, ``datetime``, ``text``; for a mixed column also
    ``json-number`` and ``json-text``; ``labelled`` for choice values that are numbers),
    while it notes what decides among them: whether every cell is JSON text, a JSON
    number, a JSON string, one of the choices. The decision needs the whole column, the
    arrays only the cells at hand: so no column is ever held whole in Python objects.

    :param kind: the table column's kind.
    :param choices: the choices of the questions whose answers it holds, when value labels
        may apply (else None).
    """

    def __init__(self, kind: str, choices: Mapping[str, str] | None) -> None:
        self.kind = kind
        self.choices = choices
        numbers = {value: as_number(value) for value in choices} if choices else {}
        #: choice value → its number, when every choice value is a number
        self.numbers: dict[str, float | None] | None = (
            numbers if numbers and all(n is not None for n in numbers.values()) else None
        )
        mixed = kind == "mixed"
        self.json_cells = mixed
        self.json_numbers = mixed
        self.json_texts = mixed
        self.in_choices = choices is not None
        #: candidate → the first row whose text holds a NUL character
        self.nul: dict[str, int] = {}

    def candidates(self) -> tuple[str, ...]:
        """The arrays this column is spilled as, in order."""
        if self.kind in _NUMBER_KINDS:
            return ("number",)
        if self.kind == "datetime":
            return ("datetime",)
        found: tuple[str, ...] = ("json-number", "json-text") if self.kind == "mixed" else ()
        found += ("text",)
        return (*found, "labelled") if self.numbers is not None else found

    def convert(self, cells: Sequence[Any], start: int) -> list[list[Any]]:
        """The candidates' values for ``cells``, the rows from ``start`` on."""
        kind = self.kind
        if kind in _NUMBER_KINDS:
            return [[None if v is None else float(v) for v in cells]]
        if kind == "datetime":
            # SPSS and Stata have no time zones: UTC, as the README says
            return [[None if v is None else v.astimezone(UTC).replace(tzinfo=None) for v in cells]]
        found = list(self._json(cells, start)) if kind == "mixed" else []
        texts = [text_of(v) for v in cells]
        found.append(self._texts(texts, "text", start))
        if self.choices is not None:
            choices = self.choices
            if self.in_choices and any(t is not None and t not in choices for t in texts):
                self.in_choices = False
            if self.numbers is not None:
                numbers = self.numbers
                found.append(
                    [None if t is None or not self.in_choices else numbers[t] for t in texts]
                )
        return found

    def _texts(self, texts: list[str | None], candidate: str, start: int) -> list[str]:
        # neither format has a missing string: null is the empty string
        if candidate not in self.nul:
            for i, t in enumerate(texts):
                if t is not None and "\0" in t:
                    self.nul[candidate] = start + i
                    break
        return ["" if t is None else t for t in texts]

    def _json(self, cells: Sequence[Any], start: int) -> tuple[list[Any], list[str]]:
        """A mixed column's cells read as JSON text: as numbers and as strings."""
        empty = len(cells)
        if not self.json_cells:
            return [None] * empty, [""] * empty
        values = _json_values(cells)
        if values is None:
            self.json_cells = False
            return [None] * empty, [""] * empty
        numbers: list[float | None] = []
        for value in values:
            if value is None:
                numbers.append(None)
            elif type(value) is float or (type(value) is int and abs(value) <= _EXACT):
                numbers.append(float(value))
            else:
                self.json_numbers = False
                numbers.append(None)
        texts: list[str | None] = []
        for value in values:
            if value is not None and not isinstance(value, str):
                self.json_texts = False
                value = None
            texts.append(value)
        return numbers, self._texts(texts, "json-text", start)


class ReadstatSink(BaseSink):
    """Builds the table, spills it to disk as Arrow columns chunk by chunk, and writes the
    spilled columns with pyreadstat, memory-mapped."""

    format: Format = "spss"

    def __init__(self, context: SinkContext) -> None:
        super().__init__(context)
        self.options: ReadstatOptions = context.options
        self.builder: TableBuilder | None = None
        self.book = QuestionBook()

    def _fail(self, message: str) -> SinkError:
        return SinkError(message, sink=self.context.name, path=str(self.context.target))

    def begin(self, graph: RecordGraph) -> None:
        """Start the table (pyreadstat is there: the spec requires it)."""
        try:
            self.builder = TableBuilder(graph, self.options, layout=self.options.layout)
        except ValueError as exc:
            raise self._fail(str(exc)) from None

    def write_profiles(self, batch: Sequence[Result]) -> None:
        """Note the questions; pass the answers to the table."""
        assert self.builder is not None
        self.book.add(batch, profile=True)
        try:
            self.builder.add_profiles(batch)
        except ValueError as exc:
            raise self._fail(str(exc)) from None

    def write_results(self, batch: Sequence[Result]) -> None:
        """Note the questions; pass the results to the table."""
        assert self.builder is not None
        self.book.add(batch, profile=False)
        try:
            self.builder.add_results(batch)
        except ValueError as exc:
            raise self._fail(str(exc)) from None

    def finish(self) -> Sequence[OutputReport]:
        """Build the table, spill its columns, and write the file to the temporary path."""
        assert self.builder is not None
        path = self.context.temp_path()
        # anonymous, on the output's disk (not in a temporary folder that may be memory),
        # gone with the process
        with tempfile.TemporaryFile(dir=path.parent, prefix=".exportkit-") as spill:
            try:
                table = self.builder.finish()
                columns, rows = self.spill(table, spill)
                variables = self.variables(table, columns)
            except ValueError as exc:
                raise self._fail(str(exc)) from None
            finally:
                self.builder.close()
                self.builder = None
            self.write(variables, columns, rows, spill, path)
        infos = tuple(
            ColumnInfo(
                name=v.name,
                origin=f"table column {v.original}",
                rule="as is" if v.name == v.original else f"renamed for {self.format}",
                type=v.type,
            )
            for v in variables
        )
        return (OutputReport(path=self.context.target, rows=rows, columns=infos),)

    def abort(self) -> None:
        """Delete the table's temporary files."""
        if self.builder is not None:
            self.builder.close()
            self.builder = None

    # -- the columns ---------------------------------------------------------------------------

    def _choices(self, tie: Tie | None) -> dict[str, str] | None:
        if not self.options.value_labels or tie is None or not tie.answers:
            return None
        return merged_choices(tie.keys, self.book)

    def spill(self, table: Table, file: IO[bytes]) -> tuple[list[Column], int]:
        """Read the table's rows once, :data:`CHUNK_ROWS` at a time, into an Arrow IPC file
        of every column's candidates; return the columns and the number of rows."""
        pa = _pyarrow()
        originals = [c.name for c in table.columns]
        ties = tie_columns(originals, self.book, self.options, layout=self.options.layout)
        columns = [Column(c.kind, self._choices(ties.get(c.name))) for c in table.columns]
        fields = [
            pa.field(f"{i}:{candidate}", _arrow_type(pa, candidate))
            for i, column in enumerate(columns)
            for candidate in column.candidates()
        ]
        schema = pa.schema(fields)
        per_chunk = max(1, min(CHUNK_ROWS, CHUNK_CELLS // max(1, len(columns))))
        rows = 0
        with pa.ipc.new_file(file, schema) as writer:
            chunk: list[Sequence[Any]] = []
            for row in table.rows():
                chunk.append(row)
                if len(chunk) >= per_chunk:
                    writer.write_batch(self._batch(pa, schema, columns, chunk, rows))
                    rows += len(chunk)
                    chunk = []
            if chunk:
                writer.write_batch(self._batch(pa, schema, columns, chunk, rows))
                rows += len(chunk)
        return columns, rows

    def _batch(
        self,
        pa: Any,
        schema: Any,
        columns: Sequence[Column],
        chunk: Sequence[Sequence[Any]],
        start: int,
    ) -> ArrowBatch:
        """One chunk of rows as a record batch of the candidates."""
        cells = list(zip(*chunk, strict=True))
        values = [
            v for column, c in zip(columns, cells, strict=True) for v in column.convert(c, start)
        ]
        # from_pandas: a NaN is missing, as pandas has it
        arrays = [
            pa.array(v, type=field.type, from_pandas=True)
            for v, field in zip(values, schema, strict=True)
        ]
        batch: ArrowBatch = pa.record_batch(arrays, schema=schema)
        return batch

    def variables(self, table: Table, columns: Sequence[Column]) -> list[Variable]:
        """The variables: names, types, labels, and the candidate each is written from."""
        originals = [c.name for c in table.columns]
        names = variable_names(originals, self.format)
        ties = tie_columns(originals, self.book, self.options, layout=self.options.layout)
        return [
            self._variable(name, original.name, column, ties.get(original.name))
            for name, original, column in zip(names, table.columns, columns, strict=True)
        ]

    def _variable(self, name: str, original: str, column: Column, tie: Tie | None) -> Variable:
        options = self.options
        kind = column.kind
        text = question_text(tie, self.book) if tie is not None else None
        if options.variable_labels == "name" or not text:
            label = original
        elif options.variable_labels == "question":
            label = text
        else:
            label = f"{original}: {text}"
        variable = Variable(
            name=name,
            original=original,
            label=_cut(label, VARIABLE_LABEL_LIMIT[self.format], self.format),
        )
        json_cells = kind == "mixed" and column.json_cells
        if kind in ("int", "float", "null"):
            variable.type, variable.candidate = "number", "number"
        elif json_cells and column.json_numbers:
            # the table's JSON-text column of numbers and nulls: numbers here (json_numbers)
            variable.type, variable.candidate = "number", "json-number"
        elif json_cells and column.json_texts:
            variable.candidate = "json-text"
        elif kind == "bool":
            variable.type, variable.candidate = "number", "number"
            if options.value_labels:
                variable.labels = dict(_BOOL_LABELS)
        elif kind == "datetime":
            variable.type, variable.candidate = "datetime", "datetime"
        elif column.choices is not None and column.in_choices:
            self._label_values(variable, column)
        if variable.labels is not None:
            limit = VALUE_LABEL_LIMIT[self.format]
            variable.labels = {k: _cut(v, limit, self.format) for k, v in variable.labels.items()}
        return variable

    def _label_values(self, variable: Variable, column: Column) -> None:
        """Label a column whose every value is one of its choices (``value_labels``)."""
        assert column.choices is not None
        if column.numbers is not None:
            numbers = column.numbers
            variable.type, variable.candidate = "number", "labelled"
            labels: dict[Any, str] = {numbers[v]: label for v, label in column.choices.items()}
            if self.format == "stata":
                # Stata labels integers only
                if not all(float(k).is_integer() for k in labels):
                    return
                labels = {int(k): v for k, v in labels.items()}
        elif self.format == "stata":
            return  # Stata has no value labels for text
        else:
            labels = dict(column.choices)
        variable.labels = labels

    # -- writing -------------------------------------------------------------------------------

    def _refuse_nul(self, variables: Sequence[Variable], columns: Sequence[Column]) -> None:
        """Refuse text with a NUL character: ReadStat writes C strings, so the text would
        silently end there (``"a\\0b"`` read back as ``"a"``)."""
        for v, column in zip(variables, columns, strict=True):
            row = column.nul.get(v.candidate) if v.type == "string" else None
            labels = [v.label, *(v.labels or {}).values()]
            if row is None and not any("\0" in t for t in labels):
                continue
            where = f"row {row + 1}" if row is not None else "a label"
            raise self._fail(
                f"column {v.original!r}, {where}: text with a NUL character, which"
                f" {'SPSS' if self.format == 'spss' else 'Stata'} files cannot hold (the"
                " text would end there)"
            )

    def write(
        self,
        variables: Sequence[Variable],
        columns: Sequence[Column],
        rows: int,
        spill: IO[bytes],
        path: Path,
    ) -> None:
        """Write the variables from the spilled columns to ``path`` with pyreadstat.

        The spill is memory-mapped: pyreadstat reads the Arrow table from the file's pages,
        which the system can drop and read again, not from memory the process allocated.

        :raises SinkError: for text with a NUL character, which the file cannot hold.
        """
        self._refuse_nul(variables, columns)
        pa = _pyarrow()
        pd = _pandas()
        pyreadstat = _pyreadstat()
        labels = [v.label for v in variables]
        value_labels = {v.name: v.labels for v in variables if v.labels}
        # a password in the template never reaches an output (aml_exportkit.redact)
        file_label = _cut(
            scrub(self.options.file_label or self.context.template.name or ""),
            FILE_LABEL_LIMIT[self.format],
            self.format,
        )
        spill.flush()
        mapped = mmap.mmap(spill.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            spilled: ArrowTable = pa.ipc.open_file(pa.py_buffer(mapped)).read_all()
            table: ArrowTable = pa.table(
                [spilled.column(f"{i}:{v.candidate}") for i, v in enumerate(variables)],
                names=[v.name for v in variables],
            )
            del spilled
            assert table.num_rows == rows
            # pyreadstat takes pandas (or Polars); pandas' Arrow-backed columns are the
            # mapped arrays themselves, not a copy. Datetimes become NumPy's (8 bytes a
            # value): pyreadstat converts them with arithmetic its Arrow path lacks.
            timestamp = pa.timestamp("us")
            frame = table.to_pandas(
                types_mapper=lambda t: None if t == timestamp else pd.ArrowDtype(t)
            )
            del table
            self._write_file(pyreadstat, frame, path, file_label, labels, value_labels)
            del frame
        finally:
            # the table's buffers point into the mapping; a failure's traceback may still
            # hold them, and then the mapping goes with them
            with contextlib.suppress(BufferError):
                mapped.close()

    def _write_file(
        self,
        pyreadstat: Any,
        frame: object,
        path: Path,
        file_label: str,
        labels: list[str],
        value_labels: dict[str, dict[Any, str]],
    ) -> None:
        try:
            if self.format == "spss":
                pyreadstat.write_sav(
                    frame,
                    str(path),
                    file_label=file_label,
                    column_labels=labels,
                    variable_value_labels=value_labels,
                )
            else:
                pyreadstat.write_dta(
                    frame,
                    str(path),
                    file_label=file_label,
                    column_labels=labels,
                    variable_value_labels=value_labels,
                    version=15,
                )
        except OSError:
            raise
        except Exception as exc:  # pyreadstat's own errors carry no common base class
            raise self._fail(f"pyreadstat could not write the file: {exc}") from None


class SpssSink(ReadstatSink):
    """Writes an SPSS ``.sav`` file."""

    format: Format = "spss"


class StataSink(ReadstatSink):
    """Writes a Stata ``.dta`` file (format 119, Stata 15 and later)."""

    format: Format = "stata"


#: Integers a double holds exactly; a JSON-text column with a larger one stays text.
_EXACT = 2**53


def _json_values(cells: Sequence[Any]) -> list[Any] | None:
    """Each JSON-text cell's value (None for a missing cell and for ``null`` alike), or None
    when a cell is not JSON text."""
    out: list[Any] = []
    for cell in cells:
        if cell is None:
            out.append(None)
            continue
        if not isinstance(cell, str):
            return None
        try:
            out.append(json.loads(cell))
        except ValueError:
            return None
    return out

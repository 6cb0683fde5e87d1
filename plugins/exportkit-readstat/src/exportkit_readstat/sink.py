"""The ``spss`` and ``stata`` sinks: our long or wide table, with SPSS/Stata names and labels.

pyreadstat writes a whole pandas DataFrame at once, so the finished table is collected in
memory (column by column) before it is written: memory grows with rows × columns. Up to a
few million cells this is small; for larger exports write Parquet and convert it in pieces.
Until the end, rows are parked on disk by aml_exportkit's table builder like every table.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from datetime import UTC
from typing import Any, Literal

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

from .labels import QuestionBook, Tie, merged_choices, question_text, tie_columns, value_labels
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


def _cut(text: str, limit: int, fmt: Format) -> str:
    if fmt == "stata":
        return text[:limit]
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


@attrs.define
class Variable:
    """One column as it is written."""

    name: str
    original: str
    values: list[Any]
    label: str
    labels: dict[Any, str] | None = None
    type: str = "string"


class ReadstatSink(BaseSink):
    """Collects the table and writes it with pyreadstat."""

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
        """Build the table, collect it, and write the file to the temporary path."""
        assert self.builder is not None
        try:
            table = self.builder.finish()
            variables, rows = self.variables(table)
        except ValueError as exc:
            raise self._fail(str(exc)) from None
        finally:
            self.builder.close()
            self.builder = None
        self.write(variables, rows)
        columns = tuple(
            ColumnInfo(
                name=v.name,
                origin=f"table column {v.original}",
                rule="as is" if v.name == v.original else f"renamed for {self.format}",
                type=v.type,
            )
            for v in variables
        )
        return (OutputReport(path=self.context.target, rows=rows, columns=columns),)

    def abort(self) -> None:
        """Delete the table's temporary files."""
        if self.builder is not None:
            self.builder.close()
            self.builder = None

    # -- the variables ---------------------------------------------------------------------

    def variables(self, table: Table) -> tuple[list[Variable], int]:
        """Read the table into columns, with names, types and labels."""
        originals = [c.name for c in table.columns]
        collected: list[list[Any]] = [[] for _ in originals]
        rows = 0
        for row in table.rows():
            for values, value in zip(collected, row, strict=True):
                values.append(value)
            rows += 1
        names = variable_names(originals, self.format)
        ties = tie_columns(originals, self.book, self.options, layout=self.options.layout)
        variables = [
            self._variable(name, column.name, column.kind, values, ties.get(column.name))
            for name, column, values in zip(names, table.columns, collected, strict=True)
        ]
        return variables, rows

    def _variable(
        self, name: str, original: str, kind: str, values: list[Any], tie: Tie | None
    ) -> Variable:
        options = self.options
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
            values=values,
            label=_cut(label, VARIABLE_LABEL_LIMIT[self.format], self.format),
        )
        numbers = json_numbers(values) if kind == "mixed" else None
        if kind in ("int", "float", "null"):
            variable.type = "number"
            variable.values = [None if v is None else float(v) for v in values]
        elif numbers is not None:
            variable.type = "number"
            variable.values = numbers
        elif kind == "mixed" and (texts := json_texts(values)) is not None:
            variable.values = texts
        elif kind == "bool":
            variable.type = "number"
            variable.values = [None if v is None else float(v) for v in values]
            if options.value_labels:
                variable.labels = dict(_BOOL_LABELS)
        elif kind == "datetime":
            variable.type = "datetime"
            # SPSS and Stata have no time zones: UTC, as the README says
            variable.values = [
                None if v is None else v.astimezone(UTC).replace(tzinfo=None) for v in values
            ]
        else:
            variable.values = [text_of(v) for v in values]
            if options.value_labels and tie is not None and tie.answers:
                self._label_values(variable, tie)
        if variable.labels is not None:
            limit = VALUE_LABEL_LIMIT[self.format]
            variable.labels = {k: _cut(v, limit, self.format) for k, v in variable.labels.items()}
        return variable

    def _label_values(self, variable: Variable, tie: Tie) -> None:
        choices = merged_choices(tie.keys, self.book)
        if choices is None:
            return
        found = value_labels(variable.values, choices)
        if found is None:
            return
        values, labels = found
        numeric = all(isinstance(k, float) for k in labels)
        if numeric:
            variable.type = "number"
            variable.values = values
            if self.format == "stata":
                # Stata labels integers only
                if not all(float(k).is_integer() for k in labels):
                    return
                labels = {int(k): v for k, v in labels.items()}
        elif self.format == "stata":
            return  # Stata has no value labels for text
        variable.labels = labels

    # -- writing -------------------------------------------------------------------------------

    def _refuse_nul(self, variables: Sequence[Variable]) -> None:
        """Refuse text with a NUL character: ReadStat writes C strings, so the text would
        silently end there (``"a\\0b"`` read back as ``"a"``)."""
        for v in variables:
            texts = [v.label, *(v.labels or {}).values()]
            if v.type == "string":
                texts += [t for t in v.values if isinstance(t, str)]
            if any("\0" in t for t in texts):
                row = next(
                    (i for i, t in enumerate(v.values) if isinstance(t, str) and "\0" in t), None
                )
                where = f"row {row + 1}" if row is not None else "a label"
                raise self._fail(
                    f"column {v.original!r}, {where}: text with a NUL character, which"
                    f" {'SPSS' if self.format == 'spss' else 'Stata'} files cannot hold (the"
                    " text would end there)"
                )

    def write(self, variables: Sequence[Variable], rows: int) -> None:
        """Write the variables to the sink's temporary path with pyreadstat.

        :raises SinkError: for text with a NUL character, which the file cannot hold.
        """
        self._refuse_nul(variables)
        pd = _pandas()
        pyreadstat = _pyreadstat()
        data: dict[str, Any] = {}
        for v in variables:
            if v.type == "number":
                data[v.name] = pd.Series(v.values, dtype="float64", index=range(rows))
            elif v.type == "datetime":
                data[v.name] = pd.Series(
                    pd.to_datetime(v.values), dtype="datetime64[us]", index=range(rows)
                )
            else:
                data[v.name] = pd.Series(
                    ["" if t is None else t for t in v.values], dtype=object, index=range(rows)
                )
        frame = pd.DataFrame(data, index=range(rows))
        labels = [v.label for v in variables]
        value_labels = {v.name: v.labels for v in variables if v.labels}
        # a password in the template never reaches an output (aml_exportkit.redact)
        file_label = _cut(
            scrub(self.options.file_label or self.context.template.name or ""),
            FILE_LABEL_LIMIT[self.format],
            self.format,
        )
        path = self.context.temp_path()
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


def json_numbers(cells: Sequence[Any]) -> list[float | None] | None:
    """A JSON-text column's cells as doubles, when every one is a JSON number, ``null`` or
    missing; else None.

    The table writes a column of numbers, nulls and missing keys as JSON text so that null
    and a missing key can be told apart when read back. SPSS and Stata hold every number
    as a double and have one missing value, so such a column is the numeric variable
    there. Text among the numbers (``"7"`` beside ``7``), or an integer beyond 2**53,
    keeps the variable text.
    """
    values = _json_values(cells)
    if values is None:
        return None
    out: list[float | None] = []
    for value in values:
        if value is None:
            out.append(None)
        elif type(value) is float or (type(value) is int and abs(value) <= _EXACT):
            out.append(float(value))
        else:
            return None
    return out


def json_texts(cells: Sequence[Any]) -> list[str | None] | None:
    """A JSON-text column's cells as text, when every one is a JSON string, ``null`` or
    missing (text with nulls that other rows lack); else None. Neither format has a
    missing string, so null and a missing key are both the empty string there, as for any
    text variable."""
    values = _json_values(cells)
    if values is None or not all(v is None or isinstance(v, str) for v in values):
        return None
    return values


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

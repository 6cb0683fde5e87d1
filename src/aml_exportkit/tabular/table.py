"""A built table (columns with kinds, rows read back from a spill) and the CSV writers.

``docs/csv.md`` documents how values are written and read back.
"""

from __future__ import annotations

import csv
import enum
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

import attrs

#: What a column holds. ``json`` columns hold nested values (written as JSON text);
#: ``mixed`` columns hold scalars of different types (written as text, as in CSV);
#: ``null`` columns hold only nulls.
Kind: TypeAlias = Literal["int", "float", "bool", "datetime", "string", "json", "mixed", "null"]


class BigInt(int):
    """Marks, in type tracking, an integer too large for a float64 to hold exactly."""


class Absent:
    """Marks, in type tracking, a column that some rows lack (the key is absent from their
    ``json_data``), as opposed to holding a JSON null."""


_KIND_OF_TYPE: dict[type, Kind] = {
    Absent: "null",
    BigInt: "mixed",
    bool: "bool",
    int: "int",
    float: "float",
    str: "string",
    datetime: "datetime",
    dict: "json",
    list: "json",
    type(None): "null",
}


def kind_of_types(types: Iterable[type]) -> Kind:
    """The column kind for the Python types seen in a column: one kind stays itself,
    ``int`` with ``float`` is ``float``, anything nested makes ``json``, other mixes (and
    integers beyond 2**53) are ``mixed``."""
    kinds = {_KIND_OF_TYPE.get(t, "string") for t in types} - {"null"}
    if not kinds:
        return "null"
    if len(kinds) == 1:
        return kinds.pop()
    if kinds == {"int", "float"}:
        return "float"
    if "json" in kinds:
        return "json"
    return "mixed"


#: The JSON type of each Python type a flattened value has (docs/flattening.md).
JSON_TYPE_OF: dict[type, str] = {
    str: "string",
    bool: "boolean",
    int: "integer",
    BigInt: "integer",
    float: "number",
    type(None): "null",
    dict: "object",
    list: "array",
    Absent: "absent",
}
#: Which JSON types a column's cells tell apart by their text alone: nested values are
#: JSON text either way, so an object and an array are one class; integers and floats are
#: one class, numbers (``2`` and ``2.5`` in CSV, a double in Parquet), unless an integer
#: is beyond a double's exact range (see :func:`needs_json_cells`). Every other pair
#: needs the column's cells to be JSON text.
_CELL_CLASS = {"string": 1, "boolean": 2, "integer": 3, "number": 3, "object": 5, "array": 5}


def json_types(types: Iterable[type]) -> tuple[str, ...]:
    """The JSON types (and ``absent``) of a column whose values had ``types``, sorted."""
    return tuple(sorted({JSON_TYPE_OF.get(t, "string") for t in types}))


def needs_json_cells(types: Iterable[type]) -> bool:
    """Whether a flattened column must be written as JSON text cells to be read back
    exactly: it holds values of two classes (``"7"`` and ``7``, text and an object), an
    integer beyond 2**53 beside a float (a double column would round it), or both JSON
    nulls and rows that lack the key.

    Integers and floats alone are a number column (``float64`` in Parquet): CSV spells
    each as it was (``2``, ``2.5``); Parquet reads a whole number back as ``2.0``, the same
    JSON number."""
    seen = set(types)
    names = json_types(seen)
    classes = {_CELL_CLASS[n] for n in names if n in _CELL_CLASS}
    return (
        len(classes) > 1
        or (BigInt in seen and float in seen)
        or ("null" in names and "absent" in names)
    )


def column_kind(types: Iterable[type]) -> Kind:
    """The kind of a flattened column whose values had ``types``: ``mixed`` (JSON text)
    when its cells must be JSON text, else :func:`kind_of_types`."""
    seen = set(types)
    return "mixed" if needs_json_cells(seen) else kind_of_types(seen)


def json_cell(value: Any) -> str:
    """A value as a JSON text cell: ``"7"`` for the string, ``7`` for the number, ``null``,
    ``-0.0``, integers of any size exactly, non-finite floats as ``NaN`` and ``Infinity``."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@attrs.frozen
class Column:
    """One column of a built table.

    :param name: its name.
    :param kind: what it holds (see :data:`Kind`).
    :param origin: where its values come from: a record field (``session``, ``result``,
        ...) or a flattened origin (``result_json``, ``session_json``, ``profile``,
        ``profile_score``); None when unknown.
    :param path: the field's name, or the path inside the flattened value (``""`` for the
        value itself).
    :param key: in a wide table, the key the column sits under (``03``, ``s1.02``).
    :param key_by: what that key counts or names (``number``, ``question_key``,
        ``section``, ``session``).
    :param json_types: for flattened columns, the JSON types seen (``absent`` when some
        rows lack the key).
    :param json_cells: the cells are JSON text (see :func:`needs_json_cells`).
    :param json_path: for flattened columns, the path inside the flattened value
        (:attr:`~aml_exportkit.flatten.Flattener.paths`).
    """

    name: str
    kind: Kind
    origin: str | None = attrs.field(default=None, eq=False)
    path: str | None = attrs.field(default=None, eq=False)
    key: str | None = attrs.field(default=None, eq=False)
    key_by: str | None = attrs.field(default=None, eq=False)
    json_types: tuple[str, ...] = attrs.field(default=(), eq=False)
    json_cells: bool = attrs.field(default=False, eq=False)
    json_path: tuple[str | int, ...] | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Table:
    """A table ready to write: its columns and a one-shot iterator factory of its rows
    (each a sequence of Python values in column order).

    :param count: the number of rows.
    :param partition_by: the Hive partition columns; each row then ends with their values
        (after the table's columns).
    :param timestamps: the precision of its times: ``us`` or ``ms`` (the values are cut
        already; this says how to write them).
    :param text: the cells are MUSCLE's ready-made text (its styles); a column of another
        kind holds values of that kind spelt as the style spells them, ``''`` for null.
    """

    columns: tuple[Column, ...]
    rows: Callable[[], Iterator[Sequence[Any]]]
    count: int
    partition_by: tuple[str, ...] = ()
    timestamps: Literal["us", "ms"] = "us"
    text: bool = False


# -- our CSV ------------------------------------------------------------------------------------

_NEEDS_QUOTES = frozenset(',"\r\n')


def quote_cell(text: str) -> str:
    """A text as one CSV cell of our own dialect: quoted where a comma, quote or line
    break needs it (the one CSV escape of the package)."""
    if not text:
        # An empty string is written "" so that it stays distinct from null (an empty cell).
        return '""'
    if _NEEDS_QUOTES.isdisjoint(text):
        return text
    return '"' + text.replace('"', '""') + '"'


def json_text(value: Any) -> str:
    """Compact JSON text with raw UTF-8; NaN and infinities stay as Python writes them
    (``NaN``), since dropping them would change the data."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _datetime(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def text_of(value: Any) -> str | None:
    """The text of a value in our CSV (None for null): strings as they are, floats by
    ``repr`` (round-trips), booleans ``true``/``false``, datetimes ISO 8601 with offset and
    microseconds, nested values as JSON text."""
    if value is None:
        return None
    t = type(value)
    if t is str:
        return value  # type: ignore[no-any-return]
    if t is float:
        return repr(value)
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if isinstance(value, datetime):
        return _datetime(value)
    if isinstance(value, dict | list):
        return json_text(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def cell_text_ms(value: Any) -> str:
    """:func:`cell_text` with times written to the millisecond."""
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return cell_text(value)


def cell_text(value: Any) -> str:
    """A value's CSV cell, unquoted (the one cell formatting of the package)."""
    if value is None:
        return ""
    t = type(value)
    if t is str:
        return quote_cell(value)
    if t is float:
        return repr(value)
    if t is int:
        return str(value)
    text = text_of(value)
    return quote_cell(text) if text is not None else ""


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def guard_formula(text: Any) -> Any:
    """``text`` with a ``'`` in front when a spreadsheet would run it as a formula: a
    string that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return and is
    not a number. Other values are returned as they are."""
    if type(text) is not str or not text.startswith(_FORMULA_START):
        return text
    try:
        float(text)
    except ValueError:
        return "'" + text
    return text


def write_exportkit_csv(path: Path, table: Table, *, formula_guard: bool = False) -> int:
    """Write ``table`` as our CSV: RFC 4180 (CRLF, minimal quoting), UTF-8 without BOM,
    null as an empty cell and the empty string as ``""``.

    :return: the number of data rows.
    """
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(",".join(quote_cell(c.name) for c in table.columns) + "\r\n")
        lines: list[str] = []
        size = 0
        plain = cell_text_ms if table.timestamps == "ms" else cell_text
        cell = plain
        if formula_guard:
            cell = lambda value: plain(guard_formula(value))  # noqa: E731
        for row in table.rows():
            line = ",".join([cell(v) for v in row])
            lines.append(line)
            size += len(line)
            # a few megabytes at a time, however wide the rows
            if len(lines) >= 4096 or size >= 1 << 22:
                out.write("\r\n".join(lines) + "\r\n")
                count += len(lines)
                lines = []
                size = 0
        if lines:
            out.write("\r\n".join(lines) + "\r\n")
            count += len(lines)
    return count


def write_python_csv(
    path: Path, table: Table, *, lineterminator: str, formula_guard: bool = False
) -> int:
    """Write a table of ready-made strings with Python's :mod:`csv` (``excel`` dialect),
    as MUSCLE's exports do.

    :return: the number of data rows.
    """
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator=lineterminator)
        writer.writerow([c.name for c in table.columns])
        for row in table.rows():
            writer.writerow([guard_formula(v) for v in row] if formula_guard else row)
            count += 1
    return count


# -- reading our CSV back ---------------------------------------------------------------------


def read_exportkit_csv(path: Path) -> tuple[list[str], list[list[str | None]]]:
    """Read a CSV written by :func:`write_exportkit_csv`, keeping null (an empty unquoted
    cell → None) apart from the empty string (``""`` → ``""``). Python's :mod:`csv` cannot
    tell them apart, so this is a small RFC 4180 reader of its own.

    :return: the header and the rows.
    """
    # newline="": a CR inside a quoted value is data, not a line end to translate
    with open(path, encoding="utf-8", newline="") as fh:
        text = fh.read()
    records: list[list[str | None]] = []
    row: list[str | None] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            j = i + 1
            parts: list[str] = []
            while True:
                k = text.index('"', j)
                parts.append(text[j:k])
                if k + 1 < n and text[k + 1] == '"':
                    parts.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            row.append("".join(parts))
        else:
            j = i
            while j < n and text[j] not in ",\r\n":
                j += 1
            row.append(text[i:j] if j > i else None)
            i = j
        if i >= n:
            records.append(row)
            break
        if text[i] == ",":
            i += 1
            if i == n:
                row.append(None)
                records.append(row)
            continue
        # end of record: CRLF (or a bare LF)
        i += 2 if text.startswith("\r\n", i) else 1
        records.append(row)
        row = []
    header = [c if c is not None else "" for c in records[0]] if records else []
    return header, records[1:]


WriterKind: TypeAlias = Literal["exportkit", "classic", "dashboard"]


def write_csv(path: Path, table: Table, dialect: WriterKind, *, formula_guard: bool = False) -> int:
    """Write ``table`` in one of the three CSV dialects.

    :param formula_guard: put ``'`` before text cells a spreadsheet would run as formulas
        (see :func:`guard_formula`).
    :return: the number of data rows.
    """
    if dialect == "exportkit":
        return write_exportkit_csv(path, table, formula_guard=formula_guard)
    return write_python_csv(
        path, table, lineterminator=line_end(dialect), formula_guard=formula_guard
    )


def line_end(dialect: WriterKind) -> str:
    """The line end of a dialect's rows: CRLF, but LF for MUSCLE's dashboard CSV."""
    return "\n" if dialect == "dashboard" else "\r\n"


def fill(
    columns: Sequence[str], rows: Iterable[dict[str, Any]], missing: Any
) -> Iterator[list[Any]]:
    """Rows of dictionaries as lists in ``columns`` order, ``missing`` where a key is absent."""
    for row in rows:
        yield [row.get(c, missing) for c in columns]

"""The codebook of a run: ``datapackage.json`` (Frictionless Data Package) and
``codebook.md`` (for people).

Turned on with ``codebook = true`` in a template. Every CSV and Parquet output is
described per column: its type, how many values are missing, and its distinct values or
its range (:class:`ColumnStats`, an accumulator that takes a part of a column at a time
and merges with the stats of another part, in bounded memory). The tables the engine
writes are counted as they are made: each worker counts its chunk's rendered text and
Arrow table (:func:`csv_text_stats`, :func:`arrow_table_stats`) and the parent merges the
chunks in order (:class:`TableStats`); the other outputs are read back once after the
sinks finish, with the same counting functions. The questions of the exported results,
with their texts and the choice labels found in json_data, come from the run itself: the
profile answers as they are read, the trial results from the engine's chunks, merged in
order.
"""

from __future__ import annotations

import csv
import importlib
import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from .contracts import ColumnInfo, OutputReport
from .records import Result
from .scan import DataScan, note_question
from .text import count

DATAPACKAGE_NAME = "datapackage.json"
CODEBOOK_NAME = "codebook.md"
#: Columns with more distinct values than this are summarised by their range.
MAX_DISTINCT = 20
_TRUE_FALSE = ({"true", "false"}, {"True", "False"})
#: The primary key a table's rows are identified by, in order of preference.
_KEYS = ("result_id", "session_id", "participant_id")
#: Values a key column remembers to tell whether it is unique; beyond, it counts as not.
MAX_SEEN = 1_000_000


def _seen_for(name: str) -> set[str] | None:
    # Only a key column's uniqueness is used (the primary key): remembering every value
    # of every column cost up to a GB on a large table.
    return set() if name in _KEYS else None


@attrs.define
class ColumnStats:
    """What one column holds: the cells are counted with :meth:`add`, and the stats of
    consecutive parts of a column join with :meth:`merge` into what adding every cell
    in order gives. Memory is bounded: at most :data:`MAX_DISTINCT` distinct values, and
    for a key column (:data:`_KEYS`) at most :data:`MAX_SEEN` values seen.

    :param name: the column's name.
    :param keyed: its table may have a primary key (a CSV table: datapackage.json declares
        keys for those only), so a key column tracks whether its values are unique.
    """

    name: str
    values: int = 0
    missing: int = 0
    kinds: Counter[str] = attrs.field(factory=Counter)
    distinct: Counter[str] = attrs.field(factory=Counter)
    overflow: bool = False
    #: the lowest and highest number, and datetime (a range per family: numbers and
    #: datetimes do not compare with each other, and a range is shown only for one)
    numbers: tuple[int | float, int | float] | None = None
    datetimes: tuple[datetime, datetime] | None = None
    #: no value repeats (tracked for key columns of keyed tables only; always True for
    #: the others)
    unique: bool = True
    keyed: bool = attrs.field(default=True, kw_only=True)
    _seen: set[str] | None = attrs.field(
        default=attrs.Factory(
            lambda self: _seen_for(self.name) if self.keyed else None, takes_self=True
        ),
        repr=False,
    )

    def add(self, text: str | None) -> None:
        """Count one cell (``None`` or '' is missing)."""
        if text is None or text == "":
            self.missing += 1
            return
        self.values += 1
        kind, value = _classify(text)
        self.kinds[kind] += 1
        if self._seen is not None:
            if text in self._seen:
                self.unique = False
            self._seen.add(text)
            self._cap_seen()
        if not self.overflow:
            self.distinct[text] += 1
            self._cap_distinct()
        if kind == "datetime":
            self.datetimes = _extend(self.datetimes, (value, value))
        elif kind in ("integer", "number"):
            self.numbers = _extend(self.numbers, (value, value))

    @property
    def low(self) -> Any:
        """The lowest number (or datetime, when the column holds no number); None when
        it holds neither."""
        span = self.numbers or self.datetimes
        return span[0] if span else None

    @property
    def high(self) -> Any:
        """The highest value of the same family as :attr:`low`."""
        span = self.numbers or self.datetimes
        return span[1] if span else None

    def add_many(self, cells: Iterable[str | None]) -> None:
        """Count consecutive cells at once: the same as :meth:`add` of each in order, with
        each distinct text classified once (most columns repeat a few values)."""
        self.add_counts(Counter(cells))

    def add_counts(self, counts: Mapping[str | None, int]) -> None:
        """Count consecutive cells given as each distinct text's number, in the order the
        texts were first met (a :class:`~collections.Counter` of the cells)."""
        part = ColumnStats(self.name, keyed=self.keyed)
        kinds = part.kinds
        seen = part._seen
        numbers: list[int | float] = []
        datetimes: list[datetime] = []
        for text, n in counts.items():
            if text is None or text == "":
                part.missing += n
                continue
            part.values += n
            kind, value = _classify(text)
            kinds[kind] += n
            if seen is not None:
                if n > 1:
                    part.unique = False
                seen.add(text)
            if not part.overflow:
                part.distinct[text] = n
                part._cap_distinct()
            if kind == "datetime":
                datetimes.append(value)
            elif kind in ("integer", "number"):
                numbers.append(value)
        # (in the order first met: of equal values min and max keep the first, as add does)
        if numbers:
            part.numbers = (min(numbers), max(numbers))
        if datetimes:
            part.datetimes = (min(datetimes), max(datetimes))
        part._cap_seen()
        self.merge(part)

    def merge(self, later: ColumnStats) -> None:
        """Take in the stats of the cells that follow this part of the column.

        The result is what :meth:`add` of every cell in order gives: counts add up, the
        first of equal lowest (highest) values is kept, and distinct values and seen keys
        are capped as they would have been.
        """
        self.values += later.values
        self.missing += later.missing
        self.kinds.update(later.kinds)
        if self._seen is not None:
            if later._seen is None or not later.unique or not self._seen.isdisjoint(later._seen):
                self.unique = False
            if later._seen is None:
                self._seen = None
            else:
                self._seen |= later._seen
                self._cap_seen()
        if not self.overflow:
            if later.overflow:
                self.overflow = True
                self.distinct.clear()
            else:
                self.distinct.update(later.distinct)
                self._cap_distinct()
        self.numbers = _extend(self.numbers, later.numbers)
        self.datetimes = _extend(self.datetimes, later.datetimes)

    def _cap_seen(self) -> None:
        # A repeat settles it (nothing later makes the column unique again), and past
        # MAX_SEEN it counts as not unique: either way the values need not be kept.
        if self._seen is not None and (not self.unique or len(self._seen) > MAX_SEEN):
            self._seen = None
            self.unique = False

    def done(self) -> None:
        """The column is complete (no :meth:`add` or :meth:`merge` after this): let go of
        the values kept to tell its uniqueness."""
        self._seen = None

    def _cap_distinct(self) -> None:
        if len(self.distinct) > MAX_DISTINCT:
            self.overflow = True
            self.distinct.clear()

    @property
    def type(self) -> str:
        """The Table Schema type that fits every value."""
        kinds = set(self.kinds)
        if not kinds:
            return "string"
        if kinds <= {"integer"}:
            return "integer"
        if kinds <= {"integer", "number"}:
            return "number"
        if kinds == {"datetime"}:
            return "datetime"
        if (
            kinds == {"boolean"}
            and any(set(self.distinct) <= pair for pair in _TRUE_FALSE)
            and not self.overflow
        ):
            return "boolean"
        return "string"


def _extend(span: tuple[Any, Any] | None, later: tuple[Any, Any] | None) -> Any:
    """``span`` widened by the ``later`` one; of equal values the first is kept."""
    if span is None or later is None:
        return span or later
    return (
        later[0] if later[0] < span[0] else span[0],
        later[1] if span[1] < later[1] else span[1],
    )


def _classify(text: str) -> tuple[str, Any]:
    if text in ("true", "false", "True", "False"):
        return "boolean", text
    # Tried as a number only when it may be one (a failed int() or float() costs more
    # than the rest): neither takes a text that starts with a letter other than those of
    # inf and nan, or four digits and a dash (a date); int() takes no dot and no exponent.
    first = text[0]
    if not (first.isalpha() and first not in "iInN") and not (
        text[4:5] == "-" and text[:4].isdigit()
    ):
        if "." not in text and "e" not in text and "E" not in text:
            try:
                return "integer", int(text)
            except ValueError:
                pass
        try:
            number = float(text)
            if math.isfinite(number):
                return "number", number
        except ValueError:
            pass
    if len(text) >= 19 and text[4:5] == "-" and text[10:11] in ("T", " "):
        try:
            value = datetime.fromisoformat(text)
            if value.tzinfo is not None:
                return "datetime", value
        except ValueError:
            pass
    return "string", text


#: Rows read back at a time: each column's cells of a block are counted at once.
_BLOCK_ROWS = 8192


def profile_csv(path: Path) -> tuple[list[ColumnStats], int]:
    """Read a CSV output back; the stats of each column and the number of rows."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        columns = [ColumnStats(name) for name in next(reader, [])]
        rows = count_csv_rows(columns, reader)
    for column in columns:
        column.done()
    return columns, rows


def count_csv_rows(columns: Sequence[ColumnStats], reader: Iterator[list[str]]) -> int:
    """Count the rows of a CSV reader (no header) into ``columns``, a block at a time;
    return how many there were. The one way a CSV table's cells are counted: a file read
    back, or a chunk's text where the engine renders it."""
    width = len(columns)
    rows = 0
    while block := list(itertools.islice(reader, _BLOCK_ROWS)):
        rows += len(block)
        if all(len(row) == width for row in block):
            for column, cells in zip(columns, zip(*block, strict=True), strict=False):
                count_texts(column, _arrow().array(cells, _arrow().string()))
            continue
        for row in block:  # ragged rows: a short row's missing cells are not counted
            for column, cell in zip(columns, row, strict=False):
                column.add(cell)
    return rows


def csv_text_stats(names: Sequence[str], text: bytes) -> list[ColumnStats]:
    """The stats of the columns ``names`` of CSV rows ``text`` (UTF-8, no header, as the
    engine renders them: RFC 4180, every row whole), each cell as its text."""
    columns = [ColumnStats(name) for name in names]
    if not text or not columns:
        return columns
    pa = _arrow()
    reader: Any = importlib.import_module("pyarrow.csv")
    # One block, whatever a row's length (a row may not straddle two). Empty lines are
    # skipped, as the read-back counts no cell of them (a one-column table's empty cell).
    table = reader.read_csv(
        pa.py_buffer(text),
        read_options=reader.ReadOptions(
            column_names=list(names), use_threads=False, block_size=len(text) + 1
        ),
        parse_options=reader.ParseOptions(newlines_in_values=True),
        convert_options=reader.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    for column, array in zip(columns, table.columns, strict=True):
        count_texts(column, array)
    return columns


def profile_parquet(path: Path) -> tuple[list[ColumnStats], int]:
    """Read a Parquet output back, a row group at a time."""
    # imported by name: pyarrow is optional and ships no type information
    parquet: Any = importlib.import_module("pyarrow.parquet")
    handle = parquet.ParquetFile(path)
    columns = [ColumnStats(name, keyed=False) for name in handle.schema_arrow.names]
    rows = 0
    for index in range(handle.num_row_groups):
        table = handle.read_row_group(index)
        rows += table.num_rows
        count_arrow_table(columns, table)
    for column in columns:
        column.done()
    return columns, rows


def count_arrow_table(columns: Sequence[ColumnStats], table: Any) -> None:
    """Count the rows of a ``pyarrow.Table`` (a Parquet file's row group, or a chunk's
    table where the engine makes it) into ``columns``, its columns in order: each value
    as its text in the file (:func:`_text`)."""
    pa = _arrow()
    compute = _compute()
    types = pa.types
    for column, field, array in zip(columns, table.schema, table.columns, strict=True):
        kind = field.type
        if types.is_integer(kind):
            count_texts(column, compute.cast(array, pa.string()))  # (as str() writes them)
        elif types.is_string(kind) or types.is_large_string(kind):
            count_texts(column, array)
        elif types.is_floating(kind) and not _negative_zero(array):
            # (each value has one text: of equal values only 0.0 and -0.0 are written
            # apart, and -0.0 is not here)
            if not _count_floats(column, array):
                _count_values(column, array)
        elif types.is_timestamp(kind) and kind.tz is not None and _count_datetimes(column, array):
            pass  # counted at once
        elif types.is_boolean(kind) or types.is_timestamp(kind):
            _count_values(column, array)
        else:
            values = array.to_pylist()
            column.add_many(None if value is None else _text(value) for value in values)


def _count_values(column: ColumnStats, array: Any) -> None:
    """Count a part of a column whose equal values have one text: each distinct value once
    (value_counts: in the order first met, nulls too)."""
    counts = _compute().value_counts(array)
    texts: Counter[str | None] = Counter()
    for value, n in zip(
        counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
    ):
        texts[None if value is None else _text(value)] += n
    column.add_counts(texts)


def _negative_zero(array: Any) -> bool:
    """The float array holds -0.0 (1 / -0.0 is -inf)."""
    compute = _compute()
    one = _arrow().scalar(1.0, array.type)
    found = compute.any(
        compute.and_(compute.equal(array, 0), compute.less(compute.divide(one, array), 0))
    )
    return bool(found.as_py())


def _arrow() -> Any:
    # imported by name: pyarrow is optional and ships no type information
    return importlib.import_module("pyarrow")


def _compute() -> Any:
    return importlib.import_module("pyarrow.compute")


#: A part of a column with at most this many distinct texts is counted text by text
#: (:meth:`ColumnStats.add_counts`); with more, its distinct values overflow and the
#: texts that are plainly integers, decimals or booleans are classified at once.
_FEW = 64
_INTEGER = r"^-?[0-9]{1,18}$"
#: decimals and exponents as Python's repr writes floats; int() takes none of them
_DECIMAL = r"^-?[0-9]+(\.[0-9]+([eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)$"


def count_texts(column: ColumnStats, texts: Any) -> None:
    """Count a part of a column given as a pyarrow string array (null or '' is missing):
    the same as :meth:`ColumnStats.add_counts` of its cells counted in order.

    The distinct texts come from pyarrow's ``value_counts`` (in the order first met). When
    there are many, the integers (``-?[0-9]{1,18}``), decimals and booleans among them are
    classified by pattern, with pyarrow's casts (``int()`` and ``float()`` give the same
    values: both round correctly), and only the other texts one by one.
    """
    compute = _compute()
    counts = compute.value_counts(texts)
    values, numbers = counts.field("values"), counts.field("counts")
    if len(values) <= _FEW:
        column.add_counts(dict(zip(values.to_pylist(), numbers.to_pylist(), strict=True)))
        return
    pa = _arrow()
    part = ColumnStats(column.name, keyed=column.keyed)
    present = compute.and_(compute.is_valid(values), compute.not_equal(values, ""))
    present = compute.fill_null(present, False)
    total = compute.sum(numbers).as_py() or 0
    positions = compute.indices_nonzero(present)
    values = compute.take(values, positions)
    numbers = compute.take(numbers, positions)
    part.values = compute.sum(numbers).as_py() or 0
    part.missing = total - part.values
    part.overflow = True  # (more than _FEW - 2 distinct texts, each present)
    if part._seen is not None:
        if compute.max(numbers).as_py() > 1:
            part.unique = False
        else:
            part._seen.update(values.to_pylist())
    booleans = compute.is_in(values, value_set=pa.array(["true", "false", "True", "False"]))
    integers = compute.match_substring_regex(values, _INTEGER)
    decimals = compute.match_substring_regex(values, _DECIMAL)
    as_float = compute.cast(compute.if_else(decimals, values, "0"), pa.float64())
    decimals = compute.and_(decimals, compute.is_finite(as_float))
    # (value, position) of each group's lowest and highest number: of equal values the
    # first met is kept, as add does
    lows: list[tuple[Any, int]] = []
    highs: list[tuple[Any, int]] = []
    for kind, mask, cast in (
        ("boolean", booleans, None),
        ("integer", integers, pa.int64()),
        ("number", decimals, None),
    ):
        n = compute.sum(compute.filter(numbers, mask)).as_py()
        if not n:
            continue
        part.kinds[kind] += n
        if kind == "boolean":
            continue
        group = (
            compute.filter(as_float, mask)
            if cast is None
            else compute.cast(compute.filter(values, mask), cast)
        )
        places = compute.indices_nonzero(mask)
        for pick, keep in ((compute.min, lows), (compute.max, highs)):
            extreme = pick(group)
            first = compute.index(compute.equal(group, extreme), True).as_py()
            keep.append((group[first].as_py(), places[first].as_py()))
    rest = compute.indices_nonzero(
        compute.invert(compute.or_(compute.or_(booleans, integers), decimals))
    )
    datetimes: list[tuple[datetime, int]] = []
    for place, text, n in zip(
        rest.to_pylist(),
        compute.take(values, rest).to_pylist(),
        compute.take(numbers, rest).to_pylist(),
        strict=True,
    ):
        kind, value = _classify(text)
        part.kinds[kind] += n
        if kind == "datetime":
            datetimes.append((value, place))
        elif kind in ("integer", "number"):
            lows.append((value, place))
            highs.append((value, place))
    if lows:
        part.numbers = (min(lows)[0], max(highs, key=lambda h: (h[0], -h[1]))[0])
    if datetimes:
        part.datetimes = (
            min(datetimes)[0],
            max(datetimes, key=lambda h: (h[0], -h[1]))[0],
        )
    part._cap_seen()
    column.merge(part)


def _tracks_keys(column: ColumnStats) -> bool:
    """The column remembers its values to tell whether they are unique (counted text by
    text, then)."""
    return column.keyed and column.name in _KEYS


def _count_floats(column: ColumnStats, array: Any) -> bool:
    """Count a part of a float column without -0.0 at once, when it has many distinct
    values and no NaN (whose texts are one for many values); False when it must be
    counted by distinct value. A finite value's text is a number of that value, inf's a
    string."""
    compute = _compute()
    if compute.any(compute.is_nan(array)).as_py():
        return False
    if _tracks_keys(column) or len(compute.value_counts(array)) <= _FEW:
        return False
    part = ColumnStats(column.name, keyed=column.keyed)
    valid = compute.sum(compute.is_valid(array)).as_py() or 0
    finite = compute.filter(array, compute.fill_null(compute.is_finite(array), False))
    part.values = valid
    part.missing = len(array) - valid
    part.overflow = True
    if len(finite):
        part.kinds["number"] += len(finite)
        span = compute.min_max(finite)
        part.numbers = (span["min"].as_py(), span["max"].as_py())
    if valid - len(finite):
        part.kinds["string"] += valid - len(finite)
    column.merge(part)
    return True


def _count_datetimes(column: ColumnStats, array: Any) -> bool:
    """Count a part of a column of timestamps with a time zone at once (each value's text
    is its isoformat, a datetime of the same instant); False when it has few distinct
    values (then they are counted one by one)."""
    compute = _compute()
    if array.type.unit == "ns" or _tracks_keys(column):
        return False  # (nanoseconds: no datetime holds them)
    if len(compute.value_counts(array)) <= _FEW:
        return False
    part = ColumnStats(column.name, keyed=column.keyed)
    valid = compute.sum(compute.is_valid(array)).as_py() or 0
    part.values = valid
    part.missing = len(array) - valid
    part.overflow = True
    if valid:
        part.kinds["datetime"] += valid
        span = compute.min_max(array)
        part.datetimes = (
            datetime.fromisoformat(span["min"].as_py().isoformat()),
            datetime.fromisoformat(span["max"].as_py().isoformat()),
        )
    column.merge(part)
    return True


def arrow_table_stats(table: Any) -> list[ColumnStats]:
    """The stats of every column of a ``pyarrow.Table``, as :func:`count_arrow_table`
    counts them (not keyed: Parquet tables have no declared primary key)."""
    columns = [ColumnStats(name, keyed=False) for name in table.schema.names]
    count_arrow_table(columns, table)
    return columns


class TableStats:
    """A table's column stats, merged from its consecutive parts (the engine's chunks) in
    order. A column that a part lacks (a json path found only in later chunks) counts that
    part's rows as missing, as the finished table's empty cells are.

    :param keyed: the table may have a primary key (see :class:`ColumnStats`); the parts'
        columns are made alike.
    """

    def __init__(self, *, keyed: bool = True) -> None:
        self.rows = 0
        self.keyed = keyed
        self.columns: dict[str, ColumnStats] = {}

    def add(self, part: Sequence[ColumnStats], rows: int) -> None:
        """Take in the stats of the next ``rows`` rows."""
        named = {column.name for column in part}
        for name, column in self.columns.items():
            if name not in named and rows:
                column.add_counts({None: rows})
        for column in part:
            merged = self.columns.get(column.name)
            if merged is None:
                merged = self.columns[column.name] = ColumnStats(column.name, keyed=self.keyed)
                if self.rows:
                    merged.add_counts({None: self.rows})
            merged.merge(column)
        self.rows += rows

    def result(self, names: Sequence[str]) -> tuple[list[ColumnStats], int]:
        """The finished table's columns ``names`` (its header, in order), and its rows.

        :raises ValueError: when a part held a column that ``names`` lacks.
        """
        stray = set(self.columns) - set(names)
        if stray:
            raise ValueError(f"columns counted but not in the table: {sorted(stray)}")
        columns = []
        for name in names:
            column = self.columns.get(name)
            if column is None:
                column = ColumnStats(name, keyed=self.keyed)
                if self.rows:
                    column.add_counts({None: self.rows})
            column.done()
            columns.append(column)
        return columns, self.rows


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


_CLASSIC = {
    "block_id": ("block.id", "field"),
    "block_name": ("block.name", "field"),
    "participant_id": ("participant.id", "field"),
    "participant_country": ("participant.country_code", "field"),
    "participant_access_info": ("participant.access_info", "field"),
    "session_start": ("session.started_at", "field"),
    "session_end": ("session.finished_at", "field"),
    "final_score": ("session.final_score", "field"),
    "section_name": ("song.name", "field of the result's section's song"),
    "result_created_at": ("result.created_at", "field"),
    "result_score": ("result.score", "field"),
    "result_comment": ("result.comment", "field"),
    "expected_response": ("result.expected_response", "field"),
    "given_response": ("result.given_response", "field"),
    "question_key": ("result.question_key", "field"),
    "decision_time": ("result.json_data: decision_time", "json path"),
    "result_config": ("result.json_data: config", "json path, Python repr"),
    "result_data": ("result.json_data", "whole document, Python repr"),
    "session_data": ("session.json_data", "whole document, Python repr"),
    # MUSCLE's 2026 dashboard CSV
    "session__id": ("session.id", "field"),
    "participant__id": ("participant.id", "field"),
    "participant__country_code": ("participant.country_code", "field"),
    "created_at": ("result.created_at", "field"),
    "score": ("result.score", "field"),
    "section__song__name": ("song.name", "field of the result's section's song"),
    "section__song__artist": ("song.artist", "field of the result's section's song"),
    "section__tag": ("section.tag", "field"),
    "section__group": ("section.group", "field"),
}
_PREFIXES = (
    ("result_json.", "result.json_data", "flatten"),
    ("session_json.", "session.json_data", "flatten"),
    ("profile_score.", "profile answer's score", "profile answer by question_key"),
    ("profile.", "profile answer's given_response", "profile answer by question_key"),
)
_MODELS = ("experiment", "block", "session", "participant", "result", "section", "song")


def column_info(name: str) -> ColumnInfo:
    """Where a column of our tables comes from, by the naming rules of docs/csv.md and
    MUSCLE's classic and dashboard columns (docs/muscle-quirks.md)."""
    base, numbered = name, ""
    head, dot, rest = name.partition(".")
    dash_head, dash, dash_rest = name.partition("-")
    if dot and head.isdigit():
        base, numbered = rest, f"result {int(head)} of the row's session; "
    elif dash and dash_head.isdigit():
        base, numbered = dash_rest, f"result {int(dash_head)} of the row's session; "
    for prefix, origin, rule in _PREFIXES:
        if base.startswith(prefix):
            return ColumnInfo(
                name=name, origin=origin, path=base[len(prefix) :], rule=numbered + rule
            )
    if base in _CLASSIC:
        origin, rule = _CLASSIC[base]
        return ColumnInfo(name=name, origin=origin, rule=numbered + rule)
    model, _, field = base.partition("_")
    if model in _MODELS and field:
        return ColumnInfo(name=name, origin=f"{model}.{field}", rule=numbered + "field")
    if base.endswith("_score"):
        return ColumnInfo(
            name=name,
            origin="profile answer's score (MUSCLE classic)",
            path=base[: -len("_score")],
            rule=numbered + "classic namespace",
        )
    return ColumnInfo(
        name=name,
        origin="profile answer or session.json_data key (MUSCLE classic)",
        path=base,
        rule=numbered + "classic namespace: top-level key or question_key",
    )


def origin_of(name: str, info: ColumnInfo | None = None) -> str:
    """A column's origin as one line of text.

    :param info: what the sink reported about the column; without it, the origin is
        read from the column's name (:func:`column_info`).
    """
    info = info or column_info(name)
    text = f"{info.origin}: {info.path}" if info.path else info.origin
    if info.key is not None:
        by = {"number": "result", "session": "session"}.get(info.key_by or "", info.key_by)
        text += f" (under {by} {info.key})"
    return text


def header_of(path: Path, suffix: str | None = None) -> list[str]:
    """The column names of a CSV or Parquet file (empty for other files).

    :param suffix: the file's kind when ``path`` is a temporary name (``.csv``).
    """
    suffix = suffix or path.suffix
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return next(csv.reader(fh), [])
    if suffix == ".parquet":
        parquet: Any = importlib.import_module("pyarrow.parquet")
        return list(parquet.read_schema(path).names)
    return []


class QuestionCollector:
    """Sees the results of a run and keeps each question's text and choice labels."""

    def __init__(self) -> None:
        self.found = DataScan()

    def add(self, batch: Iterable[Result]) -> None:
        """Look at a batch of results."""
        for result in batch:
            self.found.question_keys[result.question_key] += 1
            note_question(self.found, result.question_key, result.json_data)


@attrs.frozen(kw_only=True)
class Resource:
    """One table of the package."""

    name: str
    path: str
    format: str
    columns: tuple[ColumnStats, ...]
    rows: int
    #: what the sink reported about each column, by name
    infos: dict[str, ColumnInfo] = attrs.field(factory=dict)

    def origin(self, column: ColumnStats) -> str:
        """The origin of one of the resource's columns, as one line."""
        return origin_of(column.name, self.infos.get(column.name))


def describe_outputs(
    written: Sequence[tuple[OutputReport, Path]],
    folder: Path,
    counted: Mapping[Path, tuple[list[ColumnStats], int]] | None = None,
) -> list[Resource]:
    """Profile every tabular output (``written`` pairs each report with the file as it
    is now, before the rename).

    :param counted: the stats and row count of the files the engine counted as it wrote
        them (by their current path): those are not read back.
    """
    counted = counted or {}
    resources: list[Resource] = []
    for report, current in written:
        suffix = report.path.suffix
        if suffix not in (".csv", ".parquet"):
            continue
        if current in counted:
            columns, rows = counted[current]
        elif suffix == ".csv":
            columns, rows = profile_csv(current)
        else:
            columns, rows = profile_parquet(current)
        try:
            shown = str(report.path.absolute().relative_to(folder))
        except ValueError:
            shown = str(report.path.absolute())
        name = "".join(c if c.isalnum() or c in "-._" else "-" for c in shown.lower())
        resources.append(
            Resource(
                name=name,
                path=shown,
                format=suffix[1:],
                columns=tuple(columns),
                rows=rows,
                infos={info.name: info for info in report.columns},
            )
        )
    return resources


def _field(column: ColumnStats, resource: Resource) -> dict[str, Any]:
    field: dict[str, Any] = {
        "name": column.name,
        "type": column.type,
        "description": resource.origin(column),
    }
    if column.type == "boolean":
        pair = next(p for p in _TRUE_FALSE if set(column.distinct) <= p)
        field["trueValues"] = [v for v in pair if v.lower() == "true"]
        field["falseValues"] = [v for v in pair if v.lower() == "false"]
    return field


def datapackage(resources: Sequence[Resource], title: str) -> dict[str, Any]:
    """A Frictionless Data Package describing ``resources``: a Table Schema per table
    with types, missing values, a primary key where a key column is unique, and foreign
    keys to other tables of the package that have that key."""
    keys: dict[str, str] = {}
    for resource in (r for r in resources if r.format == "csv"):
        for key in _KEYS:
            column = next((c for c in resource.columns if c.name == key), None)
            if column is not None and column.unique and column.missing == 0 and resource.rows:
                keys[resource.name] = key
                break
    package_resources = []
    # Parquet tables are described in codebook.md only: Frictionless reads Parquet through
    # pandas, which turns a nullable integer column into floats with NaN and then fails
    # its own integer check.
    for resource in (r for r in resources if r.format == "csv"):
        schema: dict[str, Any] = {
            "fields": [_field(c, resource) for c in resource.columns],
            "missingValues": [""],
        }
        own_key = keys.get(resource.name)
        if own_key:
            schema["primaryKey"] = [own_key]
        names = {c.name for c in resource.columns}
        foreign = [
            {"fields": [other_key], "reference": {"resource": other, "fields": [other_key]}}
            for other, other_key in keys.items()
            if other != resource.name and other_key in names and other_key != own_key
        ]
        if foreign:
            schema["foreignKeys"] = foreign
        entry: dict[str, Any] = {
            "name": resource.name,
            "path": resource.path,
            "profile": "tabular-data-resource",
            "format": resource.format,
            "schema": schema,
        }
        if resource.format == "csv":
            entry.update({"mediatype": "text/csv", "encoding": "utf-8"})
        package_resources.append(entry)
    return {"name": _slug(title), "title": title, "resources": package_resources}


def _slug(text: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return slug or "export"


def _summary(column: ColumnStats) -> str:
    if not column.values:
        return "no values"
    if not column.overflow:
        shown = ", ".join(f"`{v}` ({n})" for v, n in sorted(column.distinct.items()))
        return f"{len(column.distinct)} distinct: {shown}"
    if column.low is not None and column.type in ("integer", "number", "datetime"):
        return f"range {column.low} to {column.high}"
    if column.type == "string" and column.low is not None:
        # text and numbers together: a range of the numbers alone would mislead
        return f"more than {MAX_DISTINCT} distinct values, text and numbers"
    return f"more than {MAX_DISTINCT} distinct values"


def markdown(resources: Sequence[Resource], questions: DataScan, title: str) -> str:
    """The codebook for people: every column with origin, type, missing count and values,
    then every question with its text and choice labels."""
    lines = [f"# Codebook: {title}", ""]
    for resource in resources:
        lines += [
            f"## {resource.path}",
            "",
            f"{count(resource.rows, 'row')}, {count(len(resource.columns), 'column')}.",
            "",
            "| column | origin | type | missing | values |",
            "|---|---|---|---|---|",
        ]
        for column in resource.columns:
            cell = _summary(column).replace("|", "\\|")
            lines.append(
                f"| `{column.name}` | {resource.origin(column)} | {column.type} |"
                f" {column.missing:,} | {cell} |"
            )
        lines.append("")
    if questions.question_keys:
        lines += [
            "## Questions",
            "",
            "Question texts and choice labels as MUSCLE stored them in the results' json_data.",
            "",
        ]
        for key in sorted(questions.question_keys):
            text = questions.questions.get(key, "")
            lines.append(f"### `{key}`" + (f": {text}" if text else ""))
            lines.append("")
            labels = questions.choices.get(key, {})
            if labels:
                lines += [f"- `{value}`: {label}" for value, label in labels.items()]
            else:
                lines.append(
                    f"{count(questions.question_keys[key], 'result')}; no choices recorded."
                )
            lines.append("")
    return "\n".join(lines)


def write_codebook(
    folder: Path,
    create: Callable[[Path], Path],
    written: Sequence[tuple[OutputReport, Path]],
    questions: DataScan,
    title: str,
    counted: Mapping[Path, tuple[list[ColumnStats], int]] | None = None,
) -> list[OutputReport]:
    """Profile the outputs and write datapackage.json and codebook.md through ``create``
    (``OutputSet.create``: atomic, like every output); report both files.

    :param counted: the stats of the outputs the engine counted (see
        :func:`describe_outputs`).
    """
    resources = describe_outputs(written, folder, counted)
    package = datapackage(resources, title)
    reports = []
    for name, text in (
        (DATAPACKAGE_NAME, json.dumps(package, indent=2, ensure_ascii=False) + "\n"),
        (CODEBOOK_NAME, markdown(resources, questions, title) + "\n"),
    ):
        target = folder / name
        create(target).write_text(text, encoding="utf-8")
        reports.append(OutputReport(path=target, rows=len(resources), sink="codebook"))
    return reports

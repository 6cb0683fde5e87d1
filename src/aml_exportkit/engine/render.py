"""Column-wise rendering of trial results as lines of our CSV, for the engine.

:class:`~aml_exportkit.tabular.long.LongBuilder` builds one Python row per result and one
cell per value, which costs about 30 µs per result. The engine (:mod:`aml_exportkit.engine`)
renders a whole chunk of results at once instead, a column at a time, so that most of the
work runs inside C loops (``map``, ``zip``, ``str.join``, ``set``):

- ``json_data`` is flattened column-wise: at each level the keys of all the chunk's objects
  are united, and each key's values are pulled out with one comprehension (or one
  ``itemgetter`` call per row when every object has the same keys);
- a column is formatted by the set of types it holds: a column of floats is
  ``map(float.__repr__, …)``, a column of strings that need no quoting is used as it is;
- the session, participant and block fields of a session, and the section and song fields
  of a section, are formatted once per session and once per section.

The text is exactly what :func:`~aml_exportkit.tabular.table.write_exportkit_csv` writes
for the same rows (``tests/engine`` compares the two byte for byte); the column names,
their order and the types recorded for Parquet are the ones
:class:`~aml_exportkit.tabular.long.LongBuilder` finds.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson

from ..flatten import Flattener, Path
from ..graph import RecordGraph
from ..tabular.long import EXACT, Joiner, long_fixed
from ..tabular.options import TableOptions
from ..tabular.table import (
    Absent,
    BigInt,
    Column,
    cell_text,
    cell_text_ms,
    json_cell,
    needs_json_cells,
    quote_cell,
)
from . import native
from .batches import json_values
from .chunks import ResultColumns, StandDown
from .tables import RendersAtOnce


class _Missing(float):
    """Marks a path that a row does not have (unlike ``None``, a JSON null it has).

    It is a float whose ``str`` and ``repr`` are empty, so that a column of floats, ints or
    strings with gaps renders through one C-level ``map(repr, …)`` or ``map(str, …)``. It
    is only ever compared by identity.
    """

    __slots__ = ()

    def __new__(cls) -> _Missing:
        return float.__new__(cls, 0.0)

    def __repr__(self) -> str:
        return ""

    __str__ = __repr__


MISSING: Any = _Missing()
_MISSING_TYPE = type(MISSING)
_NONE_TYPE = type(None)
_BOOL_TEXT = {True: "true", False: "false"}
_SPECIAL = (",", '"', "\r", "\n")
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_json_text = _JSON.encode


def json_cells_columns(types: Mapping[str, set[type]]) -> frozenset[str]:
    """The columns whose cells must be JSON text, by the types seen in them."""
    return frozenset(name for name, seen in types.items() if needs_json_cells(seen))


def supports(options: TableOptions) -> str | None:
    """Why the engine cannot render a table with ``options``, or None when it can."""
    if options.style != "exportkit":
        return f"style {options.style!r}"
    if options.rows != "trial":
        return f"rows = {options.rows!r}"
    if options.profile != "omit":
        return "profile columns"
    if options.session_json != "omit":
        return "session_json columns"
    if options.flatten.lists == "explode":
        return "lists = 'explode'"
    if getattr(options, "formula_guard", False):
        return "formula_guard"  # the row builder's writer applies it
    return None


# -- formatting a column ----------------------------------------------------------------------


def str_cells(values: list[Any]) -> list[str]:
    """Cells of a column of strings (and None / MISSING): quoted only where needed."""
    kernel = native.kernel()
    if kernel is not None and type(values) is list:
        cells = kernel.str_cells(values)  # None when a value is not a str or None
        if cells is not None:
            return cells  # type: ignore[no-any-return]
    types = set(map(type, values))
    if types == {str}:
        joined = "\x00".join(values)
        if not any(c in joined for c in _SPECIAL):
            if "" not in values:
                return values
            return [v or '""' for v in values]
        return [quote_cell(v) for v in values]
    if types == {str, _MISSING_TYPE}:
        missing = MISSING
        return ["" if v is missing else quote_cell(v) for v in values]
    return [_any_cell(v) for v in values]


def _any_cell(value: Any) -> str:
    if value is None or value is MISSING:
        return ""
    return cell_text(value)


def _float_or_empty(value: Any) -> str:
    return "" if value is None or value is MISSING else repr(value)


def scalar_cells(values: list[Any], t: type) -> list[str]:
    """Cells of a column of floats, ints or bools only.

    orjson writes them as Python's ``repr`` does (shortest round-trip digits, ``true``,
    ``false``), about six times faster, except floats below 1e-4 (``1e-5`` where Python
    writes ``1e-05``) and integers beyond 64 bits; those columns take ``repr``.
    """
    try:
        text = orjson.dumps(values)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return list(map(repr, values))
    if t is float and (b"e-" in text or b"0.0000" in text or b"n" in text):
        return list(map(float.__repr__, values))
    if not values:
        return []
    return text[1:-1].decode("ascii").split(",")


def value_cells(values: list[Any], types: set[type]) -> list[str]:
    """Cells of one column whose values have ``types`` (MISSING renders as null)."""
    if len(types) == 1:
        t = next(iter(types))
        if t is str:
            return str_cells(values)
        if t is float or t is int:
            return scalar_cells(values, t)
        if t is bool:
            return scalar_cells(values, t)
    rest = types - {_NONE_TYPE, _MISSING_TYPE}
    if not rest:
        return [""] * len(values)
    if _NONE_TYPE not in types:
        if rest <= {float, int}:
            return list(map(repr, values))  # MISSING's repr is empty
        if rest == {str}:
            cells = list(map(str, values))  # MISSING's str is empty
            joined = "\x00".join(cells)
            if not any(c in joined for c in _SPECIAL) and "" not in values:
                return cells
            return str_cells(values)
        if rest == {bool}:
            missing = MISSING
            return ["" if v is missing else "true" if v else "false" for v in values]
    elif rest == {float}:
        return list(map(_float_or_empty, values))
    if rest <= {list, dict}:
        return ["" if v is None or v is MISSING else quote_cell(_json_text(v)) for v in values]
    return [_any_cell(v) for v in values]


def json_cells(values: list[Any]) -> list[str]:
    """Cells of a column written as JSON text (MISSING, an absent key, is empty)."""
    missing = MISSING
    return ["" if v is missing else quote_cell(json_cell(v)) for v in values]


def int_cells(values: list[Any]) -> list[str]:
    """Cells of integers and None."""
    if None in values:
        return ["" if v is None else str(v) for v in values]
    return list(map(int.__repr__, values))


def float_cells(values: list[Any]) -> list[str]:
    """Cells of floats and None."""
    if None in values:
        return list(map(_float_or_empty, values))
    return scalar_cells(values, float)


def header_line(names: Iterable[str]) -> str:
    """A header line (with CRLF) of the column ``names``."""
    return ",".join(quote_cell(c) for c in names) + "\r\n"


def join_rows(parts: list[list[str]], n: int) -> str:
    """The CSV lines of the rows whose cells are the columns ``parts`` (lists of ``n``).

    (Interleaving the cells by slice assignment and joining once measured 25 % slower.)"""
    if len(parts) == 1:
        return "\r\n".join(parts[0]) + "\r\n"
    return "\r\n".join(map(",".join, zip(*parts, strict=True))) + "\r\n"


# -- flattening a column of JSON values -------------------------------------------------------


class Cells:
    """A flattened column that the native kernel finished: its cells, and the types its
    values have (as :func:`column_types` gives them).

    :param cells: one finished cell per row.
    :param types: the Python types of the values.
    """

    __slots__ = ("cells", "types")

    def __init__(self, cells: list[str], types: set[type]) -> None:
        self.cells = cells
        self.types = types


class ColumnFlattener:
    """Flattens the ``json_data`` of a chunk column-wise, with the rules of a
    :class:`~aml_exportkit.flatten.Flattener` (whose names, claims and sort keys it uses).

    :param flattener: the table's flattener of result json.
    """

    def __init__(self, flattener: Flattener) -> None:
        self.flattener = flattener
        options = flattener.options
        self.limit = options.max_depth
        self.index_lists = options.lists == "index"
        #: the path of every column name found
        self.paths: dict[str, Path] = {}

    def columns(self, values: list[Any]) -> dict[str, list[Any]]:
        """``{column name: values}`` of the leaves the chunk's values hold (MISSING where
        a row lacks the path), in no particular order."""
        out: dict[str, list[Any]] = {}
        if values:
            self._walk(values, (), out)
        return out

    def native_columns(
        self, docs: list[bytes], kernel: Any, *, json_cells: bool = False
    ) -> dict[str, Cells]:
        """``{column name: Cells}`` of the chunk's JSON texts ``docs``, flattened by the
        native kernel row by row: the same leaves as :meth:`columns` finds column by column
        (``tests/native`` holds the two to the same cells and types).

        :param json_cells: every cell as JSON text (:func:`json_cells` of the values)."""
        limit = -1 if self.limit is None else self.limit
        try:
            flat = kernel.flatten(docs, limit, self.index_lists, json_cells)
        except ValueError as exc:
            raise StandDown(f"json_data: {exc}") from None
        out: dict[str, Cells] = {}
        name_of = self.flattener._name
        for path, (cells, bits) in flat.items():
            name = name_of(path)
            if name is not None:
                out[name] = Cells(cells, native.types_of(bits))
                self.paths[name] = path
        return out

    def _leaf(self, path: Path, values: list[Any], out: dict[str, list[Any]]) -> None:
        name = self.flattener._name(path)
        if name is not None:
            out[name] = values
            self.paths[name] = path

    def _walk(self, values: list[Any], path: Path, out: dict[str, list[Any]]) -> None:
        if self.limit is not None and len(path) >= self.limit:
            self._leaf(path, values, out)
            return
        types = set(map(type, values))
        if types == {dict} and min(map(len, values)) > 0:
            self._dicts(values, path, out)
            return
        nested = dict in types or (self.index_lists and list in types)
        if not nested:
            if types != {_MISSING_TYPE}:
                self._leaf(path, values, out)
            return
        # Some rows hold a non-empty object (or list) here, others a leaf: split them.
        inner: list[Any] = []
        leaves: list[Any] = []
        any_leaf = False
        index_lists = self.index_lists
        for v in values:
            t = type(v)
            if (t is dict or (index_lists and t is list)) and v:
                inner.append(v)
                leaves.append(MISSING)
            else:
                inner.append(MISSING)
                leaves.append(v)
                if v is not MISSING:
                    any_leaf = True
        if any_leaf:
            self._leaf(path, leaves, out)
        dicts = [v if type(v) is dict else MISSING for v in inner]
        if any(v is not MISSING for v in dicts):
            self._dicts(dicts, path, out)
        if index_lists:
            lists = [v if type(v) is list else MISSING for v in inner]
            if any(v is not MISSING for v in lists):
                self._lists(lists, path, out)

    def _dicts(self, values: list[Any], path: Path, out: dict[str, list[Any]]) -> None:
        missing = MISSING
        whole = not any(v is missing for v in values)
        present = values if whole else [v for v in values if v is not missing]
        shapes = set(map(tuple, present))
        if whole and len(shapes) == 1:
            # every row has the same keys: one C call per row pulls them all out
            self._common(values, next(iter(shapes)), path, out)
            return
        common = set.intersection(*map(set, shapes))
        ordered = list(dict.fromkeys(itertools.chain.from_iterable(shapes)))
        if whole and common:
            self._common(values, [k for k in ordered if k in common], path, out)
        else:
            common = set()
        for key in ordered:
            if key in common:
                continue
            if whole:
                column = [v.get(key, missing) for v in values]
            else:
                column = [missing if v is missing else v.get(key, missing) for v in values]
            self._walk(column, (*path, key), out)

    def _common(
        self, values: list[Any], keys: Sequence[str], path: Path, out: dict[str, list[Any]]
    ) -> None:
        if len(keys) == 1:
            columns: Iterable[Any] = [list(map(itemgetter(keys[0]), values))]
        else:
            columns = map(list, zip(*map(itemgetter(*keys), values), strict=True))
        for key, column in zip(keys, columns, strict=True):
            self._walk(column, (*path, key), out)

    def _lists(self, values: list[Any], path: Path, out: dict[str, list[Any]]) -> None:
        longest = max(len(v) for v in values if v is not MISSING)
        for i in range(longest):
            column = [MISSING if v is MISSING or len(v) <= i else v[i] for v in values]
            self._walk(column, (*path, i), out)


def column_types(values: list[Any]) -> set[type]:
    """The types a column holds for Parquet and the JSON-text rule (big integers marked,
    :class:`~aml_exportkit.tabular.table.Absent` when some rows lack the path)."""
    raw = set(map(type, values))
    types = raw - {_MISSING_TYPE}
    if _MISSING_TYPE in raw:
        types.add(Absent)
    if int in types:
        ints = values if raw == {int} else [v for v in values if type(v) is int]
        if max(ints) > EXACT or min(ints) < -EXACT:
            types.add(BigInt)
            if not any(-EXACT <= v <= EXACT for v in ints):
                types.discard(int)
    return types


# -- whole rows -------------------------------------------------------------------------------


_STRING_FIELDS = frozenset(
    {"question_key", "expected_response", "given_response", "comment", "scoring_rule"}
)


class ChunkRenderer(RendersAtOnce):
    """Renders chunks of trial results as the long table of one set of table options.

    :param options: the sink's table options (:func:`supports` must accept them).
    :param graph: the export's graph; session, participant, block, section and song
        fields come from it (so pseudonymised participants are what is written).
    """

    def __init__(self, options: TableOptions, graph: RecordGraph) -> None:
        self.options = options
        self.graph = graph
        #: times to the millisecond (``timestamps = "ms"``; the Joiner cuts them too)
        self.ms = options.timestamps == "ms"
        self._cell = cell_text_ms if self.ms else cell_text
        self.join = Joiner(options, graph, track_types=False)
        self.head_columns, self.result_columns, self.tail_columns = long_fixed(
            options, self.join.registry
        )
        self.result_fields = options.columns.result
        flat = self.join.result_flat
        self.flatten = ColumnFlattener(flat) if flat is not None else None
        #: the columns whose cells are written as JSON text (set from the sample)
        self.json_columns: frozenset[str] = frozenset()
        self._heads: dict[int, str] = {}
        self._tails: dict[int | None, str] = {}
        #: dynamic column names known so far, in output order
        self.names: list[str] = []
        self._known: set[str] = set()

    @property
    def fixed(self) -> list[Column]:
        """The fixed columns, in output order."""
        return [*self.head_columns, *self.result_columns, *self.tail_columns]

    def header(self, names: Sequence[str]) -> str:
        """The header line (with CRLF) for the dynamic columns ``names``."""
        return header_line([c.name for c in self.fixed] + list(names))

    def sort_names(self, names: Iterable[str]) -> list[str]:
        """Dynamic column names in output order."""
        return sorted(names, key=self.join.dynamic_sort_key)

    def known(self, names: Iterable[str]) -> None:
        """Add dynamic column names found elsewhere (a sample, another process)."""
        new = [n for n in names if n not in self._known]
        if new:
            self._known.update(new)
            self.names = self.sort_names(self._known)

    def head(self, session_pk: int) -> str:
        """The block, session and participant cells of a session's rows."""
        try:
            return self._heads[session_pk]
        except KeyError:
            pass
        join = self.join
        graph = self.graph
        session = graph.sessions[session_pk]
        block = graph.blocks.get(session.block) if session.block is not None else None
        participant = graph.participants.get(session.participant)
        values = join.get_block(block) + join.get_session(session)
        values += join.get_participant(participant)
        cell = self._cell
        text = self._heads[session_pk] = ",".join([cell(v) for v in values])
        return text

    def tail(self, section_pk: int | None) -> str:
        """The section and song cells of a section's rows."""
        try:
            return self._tails[section_pk]
        except KeyError:
            cell = self._cell
            text = self._tails[section_pk] = ",".join(
                [cell(v) for v in self.join.section_part(section_pk)]
            )
            return text

    def forget(self) -> None:
        """Drop the formatted sessions and sections (they are made again when needed)."""
        self._heads = {}
        self._tails = {}

    def dynamic(self, chunk: ResultColumns) -> Mapping[str, list[Any] | Cells]:
        """The flattened json columns of a chunk: raw values, or :class:`Cells` when the
        native kernel flattened the chunk's JSON texts."""
        if self.flatten is None:
            return {}
        if chunk.json_raw:
            kernel = native.kernel()
            if kernel is None:
                # (the kernel turned off after the reader asked for it: the reference, the
                # same cells from the values the reader's texts hold)
                return self.flatten.columns(json_values(chunk))
            return self.flatten.native_columns(chunk.json_data, kernel)
        return self.flatten.columns(chunk.json_data)

    def render(
        self,
        chunk: ResultColumns,
        dyn: Mapping[str, list[Any] | Cells],
        names: Sequence[str],
        json_names: frozenset[str] = frozenset(),
    ) -> bytes:
        """The CSV lines (each with CRLF, UTF-8) of a chunk, with the dynamic columns
        ``names`` (a superset of ``dyn``'s keys, in output order); the columns
        ``json_names`` have JSON text cells."""
        n = len(chunk)
        if not n:
            return b""
        parts: list[list[str]] = []
        if self.head_columns:
            heads = self._heads
            parts.append([heads[s] if s in heads else self.head(s) for s in chunk.session])
        for field in self.result_fields:
            parts.append(self._field_cells(chunk, field))
        if self.tail_columns:
            tails = self._tails
            parts.append([tails[s] if s in tails else self.tail(s) for s in chunk.section])
        empty = [""] * n  # a list: zip takes a fresh iterator of it for every column
        as_json: Mapping[str, list[Any] | Cells] | None = None
        for name in names:
            values = dyn.get(name)
            if values is None:
                parts.append(empty)
            elif name in json_names:
                if isinstance(values, Cells):
                    if as_json is None:
                        as_json = self.json_dynamic(chunk)
                    parts.append(as_json[name].cells)  # type: ignore[union-attr]
                else:
                    parts.append(json_cells(values))
            elif isinstance(values, Cells):
                parts.append(values.cells)
            else:
                parts.append(value_cells(values, set(map(type, values))))
        if not parts:
            return b"\r\n" * n
        kernel = native.kernel()
        if kernel is not None:
            return kernel.join_rows(parts, n)  # type: ignore[no-any-return]
        return join_rows(parts, n).encode("utf-8")

    def result_cells(self, chunk: ResultColumns) -> list[str]:
        """Each result's cells of its fields, section and song, joined (a wide table's
        fixed block under the result's key)."""
        parts = [self._field_cells(chunk, field) for field in self.result_fields]
        if self.tail_columns:
            tails = self._tails
            parts.append([tails[s] if s in tails else self.tail(s) for s in chunk.section])
        if not parts:
            return [""] * len(chunk)
        return list(map(",".join, zip(*parts, strict=True)))

    def json_dynamic(self, chunk: ResultColumns) -> Mapping[str, list[Any] | Cells]:
        """The chunk's flattened columns again, every cell as JSON text (native kernel; its
        reference without it)."""
        if self.flatten is None:  # pragma: no cover - dynamic() found columns
            return {}
        kernel = native.kernel()
        if kernel is None or not chunk.json_raw:
            values = json_values(chunk) if chunk.json_raw else chunk.json_data
            columns = self.flatten.columns(values)
            return {
                name: Cells(json_cells(column), column_types(column))
                for name, column in columns.items()
            }
        return self.flatten.native_columns(chunk.json_data, kernel, json_cells=True)

    def _field_cells(self, chunk: ResultColumns, field: str) -> list[str]:
        n = len(chunk)
        if field == "id":
            return list(map(int.__repr__, chunk.pk))
        if field == "kind":
            return ["trial"] * n
        if field == "session":
            return list(map(int.__repr__, chunk.session))
        if field == "participant":
            return [""] * n
        if field == "section":
            return int_cells(chunk.section)
        if field == "created_at":
            if self.ms:  # (the texts read back as the source's datetimes)
                return [cell_text_ms(datetime.fromisoformat(t)) for t in chunk.created_at]
            return list(chunk.created_at)
        values = chunk.fields[field]
        if field == "score":
            return float_cells(values)
        if field in _STRING_FIELDS:
            return str_cells(values)
        raise ValueError(f"unknown result field {field!r}")  # pragma: no cover

    def types(self, dyn: Mapping[str, list[Any] | Cells]) -> dict[str, set[type]]:
        """The types of each dynamic column of a chunk (for Parquet kinds)."""
        return {
            name: values.types if isinstance(values, Cells) else column_types(values)
            for name, values in dyn.items()
        }

    # -- the rest of the engine's TableRenderer protocol (engine/tables.py) -----------------

    #: chunks are rendered as they come, with the columns known (re-rendered if need be)
    def kinds(
        self,
        names: Sequence[str],
        types: Mapping[str, set[type]],
        paths: Mapping[str, Path] | None = None,
    ) -> list[Column]:
        """Every column of the table, as the row builder describes them: the fixed ones,
        then each flattened one by :meth:`~aml_exportkit.tabular.long.Joiner.flat_column`.

        :param paths: each column's json path (as the workers found them)."""
        paths = paths or {}
        flat_column = self.join.flat_column
        dynamic = [flat_column(n, set(types.get(n, ())), paths.get(n)) for n in names]
        return [*self.fixed, *dynamic]

    def table_rows(self, results: int) -> int:
        """One row per trial result."""
        return results


#: A function that makes a renderer's chunks from some input.
ChunkSource = Callable[[], Iterable[ResultColumns]]

"""The wide table of our own style on the engine: one row per session, each result's
columns under a key (:mod:`aml_exportkit.tabular.wide` describes the table).

The header of a wide table depends on every result of the export: which keys occur (the
most results a session has, every question key, every section) and which flattened
columns each key holds, with the types that decide their kinds and JSON-text cells. So a
wide table is rendered in two readings of the chunks (the renderer is *deferred*):

1. :meth:`WideRenderer.survey`: a chunk's columns, as ``(key, name)`` items, and the
   types of their values; the parent unites them over the chunks
   (:meth:`WideRenderer.final_names`);
2. :meth:`WideRenderer.render`: the chunk's rows with the export's final columns, a
   column at a time where it can: the result fields' cells come from the long renderer
   (:class:`~aml_exportkit.engine.render.ChunkRenderer`: the one cell formatting), the
   ``json_data`` columns from its flattener, and each row puts them in place by key.

Chunks never split a session, so a session's row is a chunk's; the sessions without trial
results get their row in the worker when they fall inside its chunk, in the parent
(:meth:`WideRenderer.gap`) when they fall between chunks. Rows per participant gather a
participant's sessions from several chunks; the engine does not write them yet
(:func:`supports`).

A column id (a dynamic name of :class:`~aml_exportkit.engine.workers` plans) is the JSON
text of ``[key, name]``: ``[[["n", 3]], "result_json.value"]``, with ``name`` null for the
block of a key's fixed result fields (they always come together).
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from itertools import compress, repeat
from operator import add, is_not, itemgetter
from typing import Any

from ..errors import SourceError
from ..flatten import FlattenError, Path
from ..graph import RecordGraph
from ..tabular.long import EXACT
from ..tabular.options import TableOptions, WideOptions
from ..tabular.table import (
    Absent,
    BigInt,
    Column,
)
from ..tabular.wide import (
    KeyPart,
    column_order,
    key_widths,
    result_fixed,
    result_key,
    wide_columns,
)
from . import native
from .batches import json_values
from .chunks import ResultColumns
from .render import MISSING, Cells, ChunkRenderer, header_line, json_cells, value_cells

_MISSING_TYPE = type(MISSING)
#: A result's key: its parts (one in rows per session).
Key = tuple[KeyPart, ...]
#: A column of the wide table: its key and its name within the key (None: the key's
#: fixed result fields).
Item = tuple[Key, str | None]


def wide_layout(options: TableOptions) -> WideOptions | None:
    """The wide layout of a sink's table options, or None for a long table (``csv-wide``'s
    options have a wide layout and no ``layout``; ``parquet``'s say ``layout = "wide"``)."""
    wide = getattr(options, "wide", None)
    if not isinstance(wide, WideOptions):
        return None
    return wide if getattr(options, "layout", "wide") == "wide" else None


def supports(options: TableOptions, wide: WideOptions) -> str | None:
    """Why the engine cannot render a wide table of this layout, or None when it can (the
    rest of the table options is the long renderer's to judge)."""
    if wide.row_per != "session":
        return "wide rows per participant"
    if options.timestamps != "us":
        # (the row builder numbers a session's results by times cut to milliseconds then)
        return f"a wide table with timestamps = {options.timestamps!r}"
    return None


def _one_type(types: set[type]) -> bool:
    """Whether a column of the native kernel holds values of one type, not null nor an
    integer beyond a float's exact range (each key's types are then that type)."""
    rest = types - {Absent}
    return len(rest) == 1 and not rest & {type(None), BigInt}


def _id(item: Item) -> str:
    key, name = item
    return json.dumps([[list(p) for p in key], name], ensure_ascii=False)


def _item(text: str) -> Item:
    key, name = json.loads(text)
    return tuple((kind, value) for kind, value in key), name


class WideRenderer:
    """Renders chunks of trial results as the wide table (rows per session) of one set of
    table options.

    :param options: the sink's table options (the long renderer's
        :func:`~aml_exportkit.engine.render.supports` must accept them).
    :param wide: the wide layout (:func:`supports` must accept it).
    :param graph: the export's graph.
    """

    #: the chunks are surveyed first and rendered with the final columns only
    deferred = True

    def __init__(self, options: TableOptions, wide: WideOptions, graph: RecordGraph) -> None:
        self.options = options
        self.wide = wide
        self.graph = graph
        #: the session's cells, the result fields' cells and the flattener: the long table's
        self.long = ChunkRenderer(options, graph)
        self.join = self.long.join
        self.flatten = self.long.flatten
        self.result_fixed = result_fixed(options)
        self.fixed_rank = {c.name: i for i, c in enumerate(self.result_fixed)}
        self.fixed_by_name = {c.name: c for c in self.result_fixed}
        self.separator = options.flatten.separator
        #: dynamic names known (the renderer is deferred: none before the survey)
        self.names: list[str] = []
        self.json_columns: frozenset[str] = frozenset()
        self.sessions = sorted(graph.sessions)
        self._items: dict[str, Item] = {}
        self._ids: dict[Item, str] = {}

    # -- what the engine's plans use ---------------------------------------------------------

    @property
    def fixed(self) -> list[Column]:
        """The unit's fixed columns (block, session, participant)."""
        return list(self.long.head_columns)

    def dynamic(self, chunk: ResultColumns) -> Mapping[str, list[Any] | Cells]:
        """The chunk's flattened ``json_data`` columns. A wide row needs to know which
        results hold a column and the types under each key: the native kernel's cells
        tell that when each column holds one type other than null (an empty cell is then
        a result that lacks it); otherwise the values, MISSING where a result lacks one."""
        if self.flatten is None:
            return {}
        kernel = native.kernel() if chunk.json_raw else None
        if kernel is not None:
            found = self.flatten.native_columns(chunk.json_data, kernel)
            if all(_one_type(c.types) for c in found.values()):
                return found
        return self.flatten.columns(json_values(chunk))

    def known(self, names: Iterable[str]) -> None:
        """(Nothing: the final columns come from the survey.)"""

    def forget(self) -> None:
        """Drop the formatted sessions and sections."""
        self.long.forget()

    def types(self, dyn: Mapping[str, list[Any] | Cells]) -> dict[str, set[type]]:
        """(The survey reports the types, by column id.)"""
        return {}

    def table_rows(self, results: int) -> int:
        """The table's rows: one per session of the export."""
        return len(self.sessions)

    def item(self, name: str) -> Item:
        """The key and name of a column id."""
        try:
            return self._items[name]
        except KeyError:
            item = self._items[name] = _item(name)
            return item

    def sort_names(self, names: Iterable[str]) -> list[str]:
        """Column ids in header order."""
        rank = self.fixed_rank
        first = self.result_fixed[0].name if self.result_fixed else ""
        sort_key = self.join.dynamic_sort_key

        def order(name: str) -> tuple[Any, ...]:
            key, inner = self.item(name)
            return column_order((key, first if inner is None else inner), rank, sort_key)

        return sorted(names, key=order)

    def final_names(
        self, found: Mapping[str, object], types: dict[str, set[type]], covered: int
    ) -> list[str]:
        """The export's column ids, from the types the survey gathered (``found``, the
        flattened names, is the long table's). ``covered`` sessions had trial results:
        when a session had none, no column is in every row."""
        if covered < len(self.sessions):
            for name, seen in types.items():
                if self.item(name)[1] is not None:
                    seen.add(Absent)
        return self.sort_names(types)

    def gap(self, after: int | None, before: int | None, names: Sequence[str]) -> bytes:
        """The rows of the sessions between two chunks (pks after ``after`` and before
        ``before``; None: no bound), which have no trial results."""
        lo = 0 if after is None else bisect.bisect_right(self.sessions, after)
        hi = len(self.sessions) if before is None else bisect.bisect_left(self.sessions, before)
        if lo >= hi:
            return b""
        empty = self._empty_row(self._positions(names)[1])
        lines = [self._line(self.long.head(pk), empty) for pk in self.sessions[lo:hi]]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def header(self, names: Sequence[str]) -> str:
        """The header line (with CRLF) for the column ids ``names``."""
        return header_line(c.name for c in self.kinds(names, {}, {}))

    def kinds(
        self,
        names: Sequence[str],
        types: Mapping[str, set[type]],
        paths: Mapping[str, Path] | None = None,
    ) -> list[Column]:
        """Every column of the table, as the row builder describes them (the flattened
        ones by :meth:`~aml_exportkit.tabular.long.Joiner.flat_column`).

        :raises FlattenError: when two columns would have the same name."""
        paths = paths or {}
        items: list[tuple[Key, str]] = []
        keys: list[Key] = []
        for name in names:
            key, inner = self.item(name)
            keys.append(key)
            if inner is None:
                items.extend((key, c.name) for c in self.result_fixed)
            else:
                items.append((key, inner))
        wanted = {self.item(n): n for n in names}

        def column_of(key: Key, name: str) -> Column:
            seen = set(types.get(wanted[(key, name)], ()))
            return self.join.flat_column(name, seen, paths.get(name))

        return [
            *self.fixed,
            *wide_columns(
                items,
                self.long.head_columns,
                widths=key_widths(keys),
                separator=self.separator,
                key_by=self.wide.key_by,
                fixed_columns=self.fixed_by_name,
                column_of=column_of,
            ),
        ]

    # -- a chunk -----------------------------------------------------------------------------

    def _keys(self, chunk: ResultColumns) -> tuple[list[int], list[Key], list[int], list[int]]:
        """Each result's key (an index into the chunk's distinct keys, which come second:
        integers hash faster than the key tuples, and every cell looks one up), the index
        of its session among the chunk's sessions, and the chunk's sessions (pks,
        ascending)."""
        n = len(chunk)
        if not n:  # (an empty chunk has no fields)
            return [], [], [], []
        sessions = chunk.session
        created = chunk.created_at
        pks = chunk.pk
        question = chunk.fields["question_key"]
        section = chunk.section
        by = self.wide.key_by
        index: dict[Key, int] = {}
        keys = [0] * n
        owner = [0] * n
        order: list[int] = []
        start = 0
        # Times of one width and one UTC offset sort as their texts do (the engine writes
        # every one with microseconds); others are compared as datetimes.
        when: list[Any] = created
        if len(set(map(len, created))) != 1 or len({t[-6:] for t in created}) != 1:
            when = list(map(datetime.fromisoformat, created))
        for i in range(1, n + 1):
            if i < n and sessions[i] == sessions[start]:
                continue
            run = len(order)
            order.append(sessions[start])
            # creation order, as the row builder numbers a session's results
            ranked = sorted(range(start, i), key=lambda j: (when[j], pks[j]))
            seen: dict[str, int] = {}
            for number, j in enumerate(ranked, 1):
                key = (result_key(by, number, question[j], section[j], seen),)
                keys[j] = index.setdefault(key, len(index))
                owner[j] = run
            start = i
        return keys, list(index), owner, order

    def _span(self, chunk_sessions: list[int]) -> list[int]:
        """The export's sessions from the chunk's first to its last (some without results)."""
        if not chunk_sessions:
            return []
        lo = bisect.bisect_left(self.sessions, chunk_sessions[0])
        hi = bisect.bisect_right(self.sessions, chunk_sessions[-1])
        return self.sessions[lo:hi]

    def survey(
        self, chunk: ResultColumns, dyn: Mapping[str, list[Any] | Cells]
    ) -> tuple[tuple[str, ...], dict[str, set[type]]]:
        """The chunk's column ids and the types of their values (``Absent`` where some of
        the chunk's sessions lack one), as the row builder tracks them."""
        keys, distinct, _, sessions = self._keys(chunk)
        rows = len(self._span(sessions))
        fixed = self.fixed_by_name
        types: dict[str, set[type]] = {}
        if self.result_fixed:
            for key in distinct:
                types[self.id_of(key, None)] = set()
        missing = MISSING
        every = Counter(keys)  # the sessions that have each key
        for name, values in dyn.items():
            if name in fixed:
                # (the long renderer's flattener claims its names beside the result fields,
                # so it meets this clash first; the row-by-row path, removed in decision
                # 0035, wrote the json value over the field's, which lost it)
                raise FlattenError(
                    f"two values would share the column {name!r}: a result field and"
                    " result_json; change a prefix, the separator or a rename"
                )
            # (C-level loops: a chunk has a few hundred thousand values)
            if isinstance(values, Cells):
                present = list(map(bool, values.cells))  # (see dynamic())
                pairs = set(
                    zip(compress(keys, present), repeat(next(iter(values.types - {Absent}))))
                )
            else:
                present = list(map(is_not, values, repeat(missing)))
                pairs = set(zip(keys, map(type, values), strict=True))
            for k, t in pairs:
                if t is not _MISSING_TYPE:
                    types.setdefault(self.id_of(distinct[k], name), set()).add(t)
            if not isinstance(values, Cells) and int in map(itemgetter(1), pairs):
                for k, value in zip(keys, values, strict=True):
                    if type(value) is int and not -EXACT <= value <= EXACT:
                        types[self.id_of(distinct[k], name)].add(BigInt)
            counts = every if all(present) else Counter(compress(keys, present))
            for k, count in counts.items():
                if count < rows:
                    types[self.id_of(distinct[k], name)].add(Absent)
        return tuple(types), types

    def id_of(self, key: Key, name: str | None) -> str:
        """The column id of ``name`` under ``key``."""
        item = (key, name)
        try:
            return self._ids[item]
        except KeyError:
            text = self._ids[item] = _id(item)
            self._items[text] = item
            return text

    def _changed(self, sessions: list[int], item: Item) -> SourceError:
        """The error of a chunk whose second reading holds a column (``item``) its first
        reading (:meth:`survey`) did not: the source changed while it was exported (or
        its reader does not give the same chunk twice)."""
        key, name = item
        what = "a result's fields" if name is None else f"the column {name!r}"
        where = json.dumps([list(p) for p in key], ensure_ascii=False)
        first, last = sessions[0], sessions[-1]
        span = f"session {first}" if first == last else f"sessions {first}–{last}"
        return SourceError(
            f"the trial results of {span} changed while they were exported: a second"
            f" reading found {what} under the key {where}, which"
            " the first did not; export again from a source that does not change",
            file=self.graph.info.location,
            model="session",
            pk=sessions[0],
        )

    def _positions(self, names: Sequence[str]) -> tuple[dict[Item, int], list[bool]]:
        """Each column id's slot in a row, and which slots are a key's fixed block."""
        positions: dict[Item, int] = {}
        blocks = []
        for slot, name in enumerate(names):
            item = self.item(name)
            positions[item] = slot
            blocks.append(item[1] is None)
        return positions, blocks

    def _empty_row(self, blocks: list[bool]) -> list[str]:
        empty_block = "," * (len(self.result_fixed) - 1)
        return [empty_block if block else "" for block in blocks]

    def _line(self, head: str, slots: list[str]) -> str:
        if not self.long.head_columns:
            return ",".join(slots)
        if not slots:
            return head
        return head + "," + ",".join(slots)

    def render(
        self,
        chunk: ResultColumns,
        dyn: Mapping[str, list[Any] | Cells],
        names: Sequence[str],
        json_names: frozenset[str] = frozenset(),
    ) -> bytes:
        """The CSV lines (each with CRLF, UTF-8) of the chunk's sessions (and of the
        export's sessions without results between them), with the final column ids
        ``names``; the ids ``json_names`` have JSON text cells."""
        n = len(chunk)
        if not n:
            return b""
        keys, distinct, owner, sessions = self._keys(chunk)
        positions, blocks = self._positions(names)
        width = len(names)
        # every row's slots in one list; a result's cell goes to its row's base + its slot
        flat = self._empty_row(blocks) * len(sessions)
        base = [run * width for run in owner]
        missing = MISSING
        put = flat.__setitem__
        if self.result_fixed:
            slot_of = [positions.get((key, None), -1) for key in distinct]
            if -1 in slot_of:
                raise self._changed(sessions, (distinct[slot_of.index(-1)], None))
            slots = map(slot_of.__getitem__, keys)
            deque(map(put, map(add, base, slots), self.long.result_cells(chunk)), 0)
        json_keys: dict[str | None, set[int]] = {}
        numbers = {key: k for k, key in enumerate(distinct)}
        for key, name in map(self.item, json_names):
            if key in numbers:
                json_keys.setdefault(name, set()).add(numbers[key])
        texts: Mapping[str, list[Any] | Cells] | None = None
        for name, values in dyn.items():
            as_json = json_keys.get(name)
            if isinstance(values, Cells):
                cells = values.cells
                present = list(map(bool, cells))  # (see dynamic())
                if as_json:
                    if texts is None:
                        texts = self.long.json_dynamic(chunk)
                    found = texts[name]
                    assert isinstance(found, Cells)
                    text = found.cells
            else:
                cells = value_cells(values, set(map(type, values)))
                present = list(map(is_not, values, repeat(missing)))
                if as_json:
                    text = json_cells(values)
            if as_json:
                cells = [
                    t if k in as_json else c for k, t, c in zip(keys, text, cells, strict=True)
                ]
            where = list(compress(range(len(cells)), present))
            slot_of = [positions.get((key, name), -1) for key in distinct]
            found_slots = list(map(slot_of.__getitem__, map(keys.__getitem__, where)))
            if -1 in found_slots:
                key = distinct[keys[where[found_slots.index(-1)]]]
                raise self._changed(sessions, (key, name))
            targets = map(add, map(base.__getitem__, where), found_slots)
            deque(map(put, targets, map(cells.__getitem__, where)), 0)
        rows = {pk: flat[i * width : (i + 1) * width] for i, pk in enumerate(sessions)}
        empty = self._empty_row(blocks)
        head = self.long.head
        lines = [self._line(head(pk), rows.get(pk, empty)) for pk in self._span(sessions)]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

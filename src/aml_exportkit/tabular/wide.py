"""The wide table in our own style: one row per session (or per participant).

A row holds the unit's fields (block, session, participant, session json, profile), then
each result's columns under a key: ``<key><sep><column>``, e.g. ``03.result_given_response``
or ``choice~2.result_json.decision_time``. In participant rows every session's columns sit
under ``s<n>`` (sessions in start order). The column set is collected over the whole export,
so every row has the same header: rows are spilled to a temporary SQLite file (which also
groups a participant's sessions) and written in a second pass.

Header order: the unit's fixed fields; the unit's flattened columns; then by key (session
numbers and result numbers numerically, question keys and sections in code point order),
within a key the result's fixed fields in template order, then its flattened columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from ..flatten import FlattenError, escape_key
from ..graph import RecordGraph
from ..records import Result, Session
from .fields import block_groups, cut_ms, fixed_columns, head_groups
from .long import Joiner
from .options import TableOptions, WideOptions
from .spill import GroupSpill
from .table import Column, Table, json_cell
from .walk import SessionWalker

#: A key part: ("s", n) a session ordinal, ("n", n) a result number, ("q", text) a key.
KeyPart = tuple[str, Any]


class WideBuilder:
    """Builds the wide table of our own style.

    :param options: the sink's options.
    :param wide: the wide layout.
    :param graph: the export's record graph.
    :param track_types: see :class:`~aml_exportkit.tabular.long.Joiner`.
    """

    def __init__(
        self,
        options: TableOptions,
        wide: WideOptions,
        graph: RecordGraph,
        *,
        track_types: bool,
    ) -> None:
        if options.flatten.lists == "explode":
            raise FlattenError(
                "lists = 'explode' needs a long table; the wide one has one row per unit"
            )
        self.options = options
        self.wide = wide
        self.graph = graph
        self.join = Joiner(options, graph, track_types=track_types)
        cols = options.columns
        registry = self.join.registry
        self.per_participant = wide.row_per == "participant"
        if self.per_participant:
            self.unit_fixed = fixed_columns(
                [("participant", cols.participant)], options.flatten, registry
            )
            session_groups = [*block_groups(cols), ("session", cols.session)]
        else:
            self.unit_fixed = fixed_columns(head_groups(cols), options.flatten, registry)
            session_groups = []
        # Keyed columns are claimed per key, so their names only need to be unique within one.
        self.session_fixed = plain_columns(session_groups, options)
        self.result_fixed = result_fixed(options)
        self.fixed_rank = {c.name: i for i, c in enumerate(self.session_fixed + self.result_fixed)}
        self.fixed_columns = {c.name: c for c in self.session_fixed + self.result_fixed}
        self.walker = SessionWalker(graph.sessions.values())
        self.spill = GroupSpill()
        self.keys: set[tuple[tuple[KeyPart, ...], str]] = set()
        self.ordinals: dict[int, int] = {}
        if self.per_participant:
            by_participant: dict[int, list[Session]] = {}
            for session in graph.sessions.values():
                by_participant.setdefault(session.participant, []).append(session)
            for sessions in by_participant.values():
                sessions.sort(key=lambda s: (self._time(s.started_at), s.pk))
                for n, session in enumerate(sessions, 1):
                    self.ordinals[session.pk] = n
        self._profiles_done = False

    def _time(self, value: datetime) -> datetime:
        """A time as the order of keys sees it: cut to milliseconds with
        ``timestamps = "ms"``, so that a database numbers results as its zip does."""
        return cut_ms(value) if self.options.timestamps == "ms" else value

    def add_profiles(self, batch: Sequence[Result]) -> None:
        """Collect profile answers for the profile columns."""
        for result in batch:
            self.join.add_profile_answer(result)

    def add_results(self, batch: Sequence[Result]) -> None:
        """Take trial results; every completed session becomes a spilled row."""
        if not self._profiles_done:
            self.join.close_profile()
            self._profiles_done = True
        for session, results in self.walker.feed(batch):
            self._session_row(session, results)

    def _session_row(self, session: Session, results: list[Result]) -> None:
        join = self.join
        graph = self.graph
        block = graph.blocks.get(session.block) if session.block is not None else None
        participant = graph.participants.get(session.participant)
        dyn: dict[tuple[tuple[KeyPart, ...], str], Any] = {}
        session_values = join.get_block(block) + join.get_session(session)
        if self.per_participant:
            fixed = join.get_participant(participant)
            base: tuple[KeyPart, ...] = (("s", self.ordinals[session.pk]),)
            for column, value in zip(self.session_fixed, session_values, strict=True):
                dyn[(base, column.name)] = value
        else:
            fixed = session_values + join.get_participant(participant)
            base = ()
        for name, value in join.session_rows(session)[0].items():
            dyn[(base, name)] = value
        for name, value in join.profile_of(session.participant).items():
            dyn[((), name)] = value
        seen: dict[str, int] = {}
        ordered = sorted(results, key=lambda r: (self._time(r.created_at), r.pk))
        for number, result in enumerate(ordered, 1):
            key = (*base, self._key(result, number, seen))
            values = join.get_result(result) + join.section_part(result.section)
            for column, value in zip(self.result_fixed, values, strict=True):
                dyn[(key, column.name)] = value
            for name, value in join.result_rows(result)[0].items():
                dyn[(key, name)] = value
        self.keys.update(dyn)
        if join.track_types:
            if self.per_participant and self.ordinals.get(session.pk) != 1:
                # a participant's profile columns sit once in its row, not once per session
                join.note_types({k: v for k, v in dyn.items() if k[0]})
            else:
                join.note_types(dyn)
        group = session.participant if self.per_participant else session.pk
        order = self.ordinals.get(session.pk, 0)
        self.spill.append(group, order, (fixed, dyn))

    def _key(self, result: Result, number: int, seen: dict[str, int]) -> KeyPart:
        return result_key(self.wide.key_by, number, result.question_key, result.section, seen)

    def finish(self) -> Table:
        """The table; rows are read back grouped from the spill."""
        if not self._profiles_done:
            self.join.close_profile()
            self._profiles_done = True
        for session, results in self.walker.finish():
            self._session_row(session, results)
        join = self.join
        sep = self.options.flatten.separator
        widths = key_widths(key for key, _ in self.keys)
        ordered = sorted(
            self.keys, key=lambda item: column_order(item, self.fixed_rank, join.dynamic_sort_key)
        )
        if self.per_participant:
            units = len({s.participant for s in self.graph.sessions.values()})
        else:
            units = len(self.graph.sessions)

        def column_of(key: tuple[KeyPart, ...], name: str) -> Column:
            return join.column(name, (key, name), units)

        columns = list(self.unit_fixed)
        columns += wide_columns(
            ordered,
            self.unit_fixed,
            widths=widths,
            separator=sep,
            key_by=self.wide.key_by,
            fixed_columns=self.fixed_columns,
            column_of=column_of,
        )
        spill = self.spill
        keys = ordered

        head = len(self.unit_fixed)
        # columns whose cells are JSON text (docs/flattening.md)
        encoded = [(i, keys[i]) for i, c in enumerate(columns[head:]) if c.json_cells]

        def rows() -> Iterator[list[Any]]:
            try:
                for _, parts in spill.groups():
                    fixed = parts[0][0]
                    merged: dict[Any, Any] = {}
                    for _, dyn in parts:
                        merged.update(dyn)
                    values = [merged.get(k) for k in keys]
                    for i, k in encoded:
                        if k in merged:
                            values[i] = json_cell(merged[k])
                    yield [*fixed, *values]
            finally:
                spill.close()

        return Table(
            columns=tuple(columns), rows=rows, count=units, timestamps=self.options.timestamps
        )

    def close(self) -> None:
        """Delete the spill (after a failure)."""
        self.spill.close()


def result_key(
    key_by: str, number: int, question_key: str, section: int | None, seen: dict[str, int]
) -> KeyPart:
    """The key of a session's ``number``-th result (in creation order); ``seen`` counts
    the question keys or sections met so far in the session (a repeat gets ``~2``, …)."""
    if key_by == "number":
        return ("n", number)
    text = question_key if key_by == "question_key" else str(section)
    count = seen[text] = seen.get(text, 0) + 1
    return ("q", text if count == 1 else f"{text}~{count}")


def key_widths(keys: Iterable[tuple[KeyPart, ...]]) -> dict[str, int]:
    """The digits of session ordinals (``s``) and result numbers (``n``) in the header:
    the widest of the export's."""
    widths: dict[str, int] = {"s": 1, "n": 1}
    for key in keys:
        for kind, value in key:
            if kind in widths:
                widths[kind] = max(widths[kind], len(str(value)))
    return widths


def part_text(part: KeyPart, widths: Mapping[str, int], separator: str) -> str:
    """A key part as the header writes it: ``s01``, ``003``, or the escaped key."""
    kind, value = part
    if kind == "s":
        return f"s{value:0{widths['s']}d}"
    if kind == "n":
        return f"{value:0{widths['n']}d}"
    return escape_key(str(value), separator)


def column_order(
    item: tuple[tuple[KeyPart, ...], str],
    fixed_rank: Mapping[str, int],
    dynamic_sort_key: Callable[[str], tuple[Any, ...]],
) -> tuple[Any, ...]:
    """Where a keyed column goes in the header (the module's docstring says the order)."""
    key, name = item
    rank = fixed_rank.get(name)
    inner = (0, rank) if rank is not None else (1, dynamic_sort_key(name))
    return (tuple(_part_order(part) for part in key), inner)


def wide_columns(
    ordered: Iterable[tuple[tuple[KeyPart, ...], str]],
    unit_fixed: Sequence[Column],
    *,
    widths: Mapping[str, int],
    separator: str,
    key_by: str,
    fixed_columns: Mapping[str, Column],
    column_of: Callable[[tuple[KeyPart, ...], str], Column],
) -> list[Column]:
    """The keyed columns of a wide table, named ``<key><sep><column>``, in ``ordered``'s
    order (after the unit's fixed columns ``unit_fixed``).

    :param fixed_columns: the fixed fields a key holds (a session's, a result's), by name.
    :param column_of: a flattened column, given its key and its name within the key.
    :raises FlattenError: when two columns would have the same name.
    """
    owners = {c.name: ("field", c.name) for c in unit_fixed}
    columns: list[Column] = []
    for key, name in ordered:
        text = (
            separator.join([*(part_text(p, widths, separator) for p in key), name]) if key else name
        )
        if text in owners:
            raise FlattenError(
                f"two values would share the column {text!r}: {owners[text][1]!r} and"
                f" {name!r} under key {key!r}; change the separator or a prefix"
            )
        owners[text] = ("key", name)
        fixed = fixed_columns.get(name) if key else None
        column = fixed if fixed is not None else column_of(key, name)
        if key:
            by = {"s": "session", "n": "number"}.get(key[-1][0], key_by)
            keytext = separator.join(part_text(p, widths, separator) for p in key)
            column = attrs.evolve(column, key=keytext, key_by=by)
        columns.append(attrs.evolve(column, name=text))
    return columns


def _part_order(part: KeyPart) -> tuple[int, int, str]:
    kind, value = part
    if kind == "s":
        return (0, value, "")
    if kind == "n":
        return (1, value, "")
    return (2, 0, value)


def result_fixed(options: TableOptions) -> list[Column]:
    """The fixed columns under a result's key: its fields, its section's and its song's."""
    cols = options.columns
    return plain_columns(
        [("result", cols.result), ("section", cols.section), ("song", cols.song)], options
    )


def plain_columns(
    groups: Sequence[tuple[str, Sequence[str]]], options: TableOptions
) -> list[Column]:
    """The fixed columns of ``groups``, claimed in a registry of their own: keyed columns
    need unique names only within their key."""
    from ..flatten import ColumnRegistry

    return fixed_columns(groups, options.flatten, ColumnRegistry())

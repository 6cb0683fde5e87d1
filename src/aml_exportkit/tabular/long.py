"""The long table in our own style: one row per result (or per exploded list element).

Columns: the record fields the template selects (block, session, participant, result,
section, song, each in the template's order), then the flattened columns sorted by origin
(session json, profile answers, profile scores, result json) and, within an origin, by path
(keys in code point order, list indexes by number, a parent before its children).

Rows go to a :class:`~aml_exportkit.tabular.spill.Spill` as they are built; the header is
known only at the end, when every path has been seen.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..flatten import ColumnRegistry, Flattener, FlattenOptions, Path
from ..graph import RecordGraph
from ..records import Block, Result, Session
from .fields import fixed_columns, head_groups, tuple_getter
from .options import TableOptions
from .spill import Spill
from .table import (
    Absent,
    BigInt,
    Column,
    Table,
    column_kind,
    json_cell,
    json_types,
    needs_json_cells,
)

_EMPTY: dict[str, Any] = {}
#: The largest integer a float64 holds exactly.
EXACT = 2**53
_ONE_EMPTY: list[dict[str, Any]] = [_EMPTY]
#: Marks a key that a row lacks, while a row is made.
_ABSENT: Any = object()
#: Origins whose columns are a participant's answers by question key, not json_data: a
#: null (asked, not answered; MUSCLE keeps the row) and a missing key (never asked) are
#: both no answer there, and such columns are not rebuilt, so they do not make the cells
#: JSON text (which would quote every answer of the column).
_ANSWER_ORIGINS = frozenset({"profile", "profile_score"})


class Joiner:
    """What long and wide tables share: field getters, flatteners, profile answers.

    :param options: the sink's options.
    :param graph: the export's record graph.
    :param track_types: record the Python types of flattened values (Parquet needs them
        for its schema; CSV does not).
    """

    def __init__(self, options: TableOptions, graph: RecordGraph, *, track_types: bool) -> None:
        self.options = options
        self.graph = graph
        self.track_types = track_types
        self.registry = ColumnRegistry()
        cols = options.columns
        flat = options.flatten
        ms = options.timestamps == "ms"
        self.get_block = self._block_getter(graph, cols.experiment, cols.block)
        self.get_session = tuple_getter("session", cols.session, ms=ms)
        self.get_participant = tuple_getter("participant", cols.participant)
        self.get_result = tuple_getter("result", cols.result, ms=ms)
        self.get_section = tuple_getter("section", cols.section)
        self.get_song = tuple_getter("song", cols.song)
        self.section_has_id = "id" in cols.section
        self._section_cache: dict[int | None, tuple[Any, ...]] = {}
        prefix = options.prefix
        self.session_flat = self._flattener(options.session_json, prefix.session, "session_json")
        self.result_flat = self._flattener(options.result_json, prefix.result, "result_json")
        self.profile_flat: Flattener | None = None
        self.score_flat: Flattener | None = None
        if options.profile == "columns":
            plain = FlattenOptions(separator=flat.separator, max_depth=1, rename=flat.rename)
            self.profile_flat = Flattener(plain, prefix.profile, "profile", self.registry)
            self.score_flat = Flattener(plain, prefix.profile_score, "profile_score", self.registry)
        #: participant pk → its profile columns
        self.profiles: dict[int, dict[str, Any]] = {}
        self._answers: dict[str, Any] = {}
        self._scores: dict[str, Any] = {}
        self._answering: int | None = None
        #: (column, Python type) of every flattened value seen
        self._pairs: set[tuple[Any, type]] = set()
        #: how many rows hold each flattened column (fewer than the rows: some lack it)
        self.present: Counter[Any] = Counter()

    @staticmethod
    def _block_getter(
        graph: RecordGraph, experiment_fields: Sequence[str], block_fields: Sequence[str]
    ) -> Callable[[Any], tuple[Any, ...]]:
        """The cells of a block: its experiment's fields (through its phase), then its own
        (a ``None`` block, or one whose experiment is unknown, gives empty cells)."""
        get_block = tuple_getter("block", block_fields)
        if not experiment_fields:
            return get_block
        get_experiment = tuple_getter("experiment", experiment_fields)

        def get(block: Any) -> tuple[Any, ...]:
            phase = graph.phases.get(block.phase) if block is not None else None
            experiment = graph.experiments.get(phase.experiment) if phase is not None else None
            return get_experiment(experiment) + get_block(block)

        return get

    def _flattener(self, mode: str, prefix: str, origin: str) -> Flattener | None:
        if mode == "omit":
            return None
        flat = self.options.flatten
        if mode == "json":
            flat = FlattenOptions(separator=flat.separator, max_depth=0, rename=flat.rename)
        return Flattener(flat, prefix, origin, self.registry)

    def flatteners(self) -> list[Flattener]:
        """The flatteners in column order."""
        found = [self.session_flat, self.profile_flat, self.score_flat, self.result_flat]
        return [f for f in found if f is not None]

    def column(self, name: str, key: Any, rows: int) -> Column:
        """The flattened column ``name`` of a table of ``rows`` rows, its values tracked
        under ``key`` (:meth:`flat_column` of the types this joiner saw)."""
        json_path = next((f.paths[name] for f in self.flatteners() if name in f.paths), None)
        types = set(self.types.get(key, ()))
        if self.present.get(key, 0) < rows:
            types.add(Absent)
        return self.flat_column(name, types, json_path)

    def flat_column(self, name: str, types: set[type], json_path: Path | None) -> Column:
        """The flattened column ``name`` whose values had ``types`` (:class:`Absent` among
        them when some rows lack it): its kind, origin, JSON types and path, and whether
        its cells must be JSON text. The one description of a flattened column, for the
        row builders and the engine's renderers alike."""
        origin, path = self.registry.owners.get(name, (None, None))
        spelt = types - {Absent} if origin in _ANSWER_ORIGINS else types
        return Column(
            name,
            column_kind(spelt),
            origin=origin,
            path=path,
            json_types=json_types(types),
            json_cells=needs_json_cells(spelt),
            json_path=json_path,
        )

    def dynamic_sort_key(self, name: str) -> tuple[Any, ...]:
        """Where a flattened column goes: by origin, then by path."""
        for rank, flattener in enumerate(self.flatteners()):
            key = flattener.sort_keys.get(name)
            if key is not None:
                return (rank, key)
        return (len(self.flatteners()), ((1, name),))

    # -- parts of a row -------------------------------------------------------------------------

    def section_part(self, section_pk: int | None) -> tuple[Any, ...]:
        """The section and song fields of a result's section."""
        try:
            return self._section_cache[section_pk]
        except KeyError:
            pass
        section = self.graph.sections.get(section_pk) if section_pk is not None else None
        song = self.graph.songs.get(section.song) if section and section.song is not None else None
        part = self.get_section(section)
        if section is None and section_pk is not None and self.section_has_id:
            # a kept reference to a section the export lacks: its id is all that is known
            index = self.options.columns.section.index("id")
            part = (*part[:index], section_pk, *part[index + 1 :])
        part += self.get_song(song)
        self._section_cache[section_pk] = part
        return part

    def session_rows(self, session: Session | None) -> list[dict[str, Any]]:
        """The flattened session json of ``session``."""
        if self.session_flat is None or session is None:
            return _ONE_EMPTY
        return self.session_flat.flatten(session.json_data)

    def result_rows(self, result: Result) -> list[dict[str, Any]]:
        """The flattened json of ``result``."""
        if self.result_flat is None:
            return _ONE_EMPTY
        return self.result_flat.flatten(result.json_data)

    def profile_of(self, participant: int | None) -> dict[str, Any]:
        """The profile columns of ``participant``."""
        if self.profile_flat is None or participant is None:
            return _EMPTY
        return self.profiles.get(participant, _EMPTY)

    def add_profile_answer(self, result: Result) -> None:
        """Collect one profile answer (answers come ordered by participant, pk); a later
        answer to the same question replaces an earlier one."""
        if self.profile_flat is None:
            return
        if result.participant != self._answering:
            self.close_profile()
            self._answering = result.participant
        self._answers[result.question_key] = result.given_response
        self._scores[result.question_key] = result.score

    def close_profile(self) -> None:
        """Store the participant whose answers were being collected."""
        if self._answering is None or self.profile_flat is None or self.score_flat is None:
            return
        row = self.profile_flat.flatten(self._answers)[0]
        row.update(self.score_flat.flatten(self._scores)[0])
        self.profiles[self._answering] = row
        self._answering = None
        self._answers = {}
        self._scores = {}

    def note_types(self, dyn: dict[Any, Any]) -> None:
        """Remember the Python types of flattened values (for the Parquet schema and the
        JSON-text rule) and count the rows that hold each column."""
        # (C-level counting and set updates: this runs once per row)
        self.present.update(dyn.keys())
        self._pairs.update(zip(dyn, map(type, dyn.values()), strict=True))
        ints = [v for v in dyn.values() if type(v) is int]
        if ints and (max(ints) > EXACT or min(ints) < -EXACT):
            for key, value in dyn.items():
                if type(value) is int and not -EXACT <= value <= EXACT:
                    # beyond a float's (and soon int64's) exact range: kept as text
                    self._pairs.add((key, BigInt))

    @functools.cached_property
    def types(self) -> dict[Any, set[type]]:
        """The Python types seen in each flattened column (read once every row was seen)."""
        found: dict[Any, set[type]] = {}
        for key, t in self._pairs:
            found.setdefault(key, set()).add(t)
        return found


class LongBuilder:
    """Builds the long table of our own style.

    :param options: the sink's options.
    :param graph: the export's record graph.
    :param track_types: see :class:`Joiner`.
    """

    def __init__(
        self,
        options: TableOptions,
        graph: RecordGraph,
        *,
        track_types: bool,
        partition_by: Sequence[str] = (),
    ) -> None:
        self.options = options
        self.graph = graph
        self.join = Joiner(options, graph, track_types=track_types)
        self.partition_by = tuple(partition_by)
        #: the partition values of rows without a session (profile answers)
        self._no_partition: tuple[Any, ...] = (None,) * len(self.partition_by)
        self.fixed = [c for part in long_fixed(options, self.join.registry) for c in part]
        self.spill = Spill()
        self.want_trials = options.rows in ("trial", "both")
        self.want_profiles = options.rows in ("profile", "both")
        self._session_pk: int | None = None
        self._session_key: tuple[tuple[Any, ...], list[dict[str, Any]], dict[str, Any]] = (
            (),
            _ONE_EMPTY,
            _EMPTY,
        )
        self._pending_profiles: list[Result] = []
        self._pending_owner: int | None = None
        self._partition: tuple[Any, ...] = self._no_partition
        self._profiles_done = False

    def add_profiles(self, batch: Sequence[Result]) -> None:
        """Take profile answers: collect them for the profile columns, and make rows of
        them when the template asks for profile rows."""
        join = self.join
        for result in batch:
            if self.want_profiles and result.participant != self._pending_owner:
                self._flush_profile_rows()
                self._pending_owner = result.participant
            join.add_profile_answer(result)
            if self.want_profiles:
                self._pending_profiles.append(result)

    def _flush_profile_rows(self) -> None:
        # A participant's profile rows wait until all their answers are known, so that the
        # profile columns on those rows are complete.
        self.join.close_profile()
        if not self._pending_profiles:
            return
        participant = self.graph.participants.get(self._pending_owner or -1)
        head = self.join.get_block(None) + self.join.get_session(None)
        head += self.join.get_participant(participant)
        self._partition = self._no_partition
        for result in self._pending_profiles:
            self._emit(head, result, _ONE_EMPTY, self.join.profile_of(result.participant))
        self._pending_profiles = []

    def _end_profiles(self) -> None:
        if not self._profiles_done:
            self._flush_profile_rows()
            self.join.close_profile()
            self._profiles_done = True

    def add_results(self, batch: Sequence[Result]) -> None:
        """Take trial results and make their rows."""
        self._end_profiles()
        if not self.want_trials:
            return
        join = self.join
        graph = self.graph
        for result in batch:
            if result.session != self._session_pk:
                session = graph.sessions[result.session]  # type: ignore[index]
                block = graph.blocks.get(session.block) if session.block is not None else None
                participant = graph.participants.get(session.participant)
                head = join.get_block(block) + join.get_session(session)
                head += join.get_participant(participant)
                self._session_key = (
                    head,
                    join.session_rows(session),
                    join.profile_of(session.participant),
                )
                self._session_pk = result.session
                if self.partition_by:
                    self._partition = self._partition_of(block)
            head, session_rows, profile = self._session_key
            self._emit(head, result, session_rows, profile)

    def _partition_of(self, block: Block | None) -> tuple[Any, ...]:
        """The partition values (slugs) of a session's rows."""
        graph = self.graph
        values: list[Any] = []
        for name in self.partition_by:
            if name == "block":
                values.append(block.slug if block is not None else None)
            else:
                phase = graph.phases.get(block.phase) if block and block.phase else None
                experiment = graph.experiments.get(phase.experiment) if phase else None
                values.append(experiment.slug if experiment is not None else None)
        return tuple(values)

    def _emit(
        self,
        head: tuple[Any, ...],
        result: Result,
        session_rows: list[dict[str, Any]],
        profile: dict[str, Any],
    ) -> None:
        join = self.join
        fixed = head + join.get_result(result) + join.section_part(result.section)
        result_rows = join.result_rows(result)
        track = join.track_types
        append = self.spill.append
        if self.partition_by:
            fixed += self._partition  # split off again when the rows are read back
        for srow in session_rows:
            for rrow in result_rows:
                dyn = {**srow, **profile, **rrow} if srow or profile else rrow
                if track:
                    join.note_types(dyn)
                append((fixed, dyn))

    def finish(self) -> Table:
        """The table; its rows are read back from the spill."""
        self._end_profiles()
        join = self.join
        names = sorted(
            (n for f in join.flatteners() for n in f.sort_keys), key=join.dynamic_sort_key
        )
        spill = self.spill
        count = len(spill)
        dynamic = [join.column(n, n, count) for n in names]
        if self.partition_by:
            return self._partitioned(names, dynamic)
        columns = (*self.fixed, *dynamic)
        # columns whose cells are JSON text: a value is written as its JSON, an absent key
        # as null (docs/flattening.md)
        encoded = [i for i, c in enumerate(dynamic) if c.json_cells]

        def rows() -> Iterator[list[Any]]:
            try:
                if not names:
                    for fixed, _ in spill:
                        yield list(fixed)
                    return
                if not encoded:
                    for fixed, dyn in spill:
                        yield [*fixed, *[dyn.get(n) for n in names]]
                    return
                absent = _ABSENT
                for fixed, dyn in spill:
                    values = [dyn.get(n, absent) for n in names]
                    for i in encoded:
                        value = values[i]
                        values[i] = None if value is absent else json_cell(value)
                    yield [*fixed, *[None if v is absent else v for v in values]]
            finally:
                spill.close()

        return Table(columns=columns, rows=rows, count=count, timestamps=self.options.timestamps)

    def _partitioned(self, names: list[str], dynamic: list[Column]) -> Table:
        """The table of a partitioned dataset: each row ends with its partition values."""
        spill = self.spill
        width = len(self.fixed)
        encoded = {n for n, c in zip(names, dynamic, strict=True) if c.json_cells}

        def cell(dyn: dict[str, Any], name: str) -> Any:
            if name not in dyn:
                return None
            return json_cell(dyn[name]) if name in encoded else dyn[name]

        def rows() -> Iterator[list[Any]]:
            try:
                for fixed, dyn in spill:
                    yield [*fixed[:width], *[cell(dyn, n) for n in names], *fixed[width:]]
            finally:
                spill.close()

        return Table(
            columns=(*self.fixed, *dynamic),
            rows=rows,
            count=len(spill),
            partition_by=self.partition_by,
            timestamps=self.options.timestamps,
        )

    def close(self) -> None:
        """Delete the spill (after a failure)."""
        self.spill.close()


def long_fixed(
    options: TableOptions, registry: ColumnRegistry
) -> tuple[list[Column], list[Column], list[Column]]:
    """The long table's fixed columns, claimed in ``registry``, in three parts: the head
    (block, session, participant: alike on a session's rows), the result's fields, the
    tail (section and song: alike on a section's rows)."""
    cols = options.columns
    return (
        fixed_columns(head_groups(cols), options.flatten, registry),
        fixed_columns([("result", cols.result)], options.flatten, registry),
        fixed_columns([("section", cols.section), ("song", cols.song)], options.flatten, registry),
    )

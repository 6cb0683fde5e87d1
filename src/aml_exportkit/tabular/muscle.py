"""MUSCLE's own CSV layouts, reproduced with their quirks (MUSCLE_EXPORT.md §3.1, §3.2).

- :class:`ClassicBuilder`: the 2022–2025 admin "Export CSV" (``Block.export_table``):
  header = every key seen, sorted; values ``str()`` (Python repr for dicts and lists);
  datetimes ``isoformat()`` in UTC; session columns, then the profile, then the session
  json, then the result columns, each overwriting same-named keys before it.
- :class:`DashboardBuilder`: the 2026 dashboard long CSV: 12 columns, session results
  then profile answers, ``str(datetime)``.

Both produce tables of ready-made strings, written with Python's :mod:`csv` like MUSCLE.
MUSCLE writes rows in database order; here sessions come by pk and results of a session by
creation time (the classic export's order within a session).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any

from ..graph import RecordGraph
from ..records import Result, Session
from .fields import cut_ms
from .options import Classic
from .spill import Spill
from .table import Column, Kind, Table
from .walk import SessionWalker


def classic_text(value: Any, ms: bool = False) -> str:
    """A value as MUSCLE's classic export writes it: ``''`` for None, ``isoformat()`` in
    UTC for datetimes, else ``str()`` (so dicts and lists are Python repr).

    :param ms: times to the millisecond (``timestamps = "ms"``)."""
    if type(value) is str:  # (most cells: str() would give the value itself)
        return value
    if value is None:
        return ""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        return moment.isoformat(timespec="milliseconds") if ms else moment.isoformat()
    return str(value)


def dashboard_text(value: Any, ms: bool = False) -> str:
    """A value as the dashboard CSV writes it: ``str(datetime)`` in UTC (a space, not
    ``T``), ``''`` for None, else ``str()``.

    :param ms: times to the millisecond (``timestamps = "ms"``)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        return moment.isoformat(" ", timespec="milliseconds") if ms else str(moment)
    return str(value)


def result_prefix(number: int) -> str:
    """The prefix of the ``number``-th result's columns in MUSCLE's wide format
    (``str(n).zfill(3) + "-"``: ``001-``, ``002-``, …, ``999-``, ``1000-``)."""
    return str(number).zfill(3) + "-"


#: The types a column of MUSCLE's text may hold in Parquet, tried in this order.
_TEXT_KINDS: tuple[Kind, ...] = ("int", "float", "bool", "datetime")


class TextKinds:
    """Which columns of MUSCLE's ready-made text hold one type throughout, each cell
    spelt exactly as the style spells a value of it (``str(7)``, ``str(7.0)``, ``True``,
    the style's times). Such a column can be stored typed in Parquet and still give back
    every cell; any other column stays text.

    :param spell_time: how the style writes a time.
    """

    def __init__(self, spell_time: Callable[[datetime], str]) -> None:
        self.spell_time = spell_time
        self._possible: dict[Any, set[Kind]] = {}

    def add(self, column: Any, text: str) -> None:
        """See one cell of ``column`` (an empty one fits every type: it is null)."""
        if not text:
            return
        possible = self._possible.get(column)
        if possible is None:
            possible = self._possible[column] = set(_TEXT_KINDS)
        if possible:
            possible.difference_update([k for k in possible if not self._fits(k, text)])

    def _fits(self, kind: Kind, text: str) -> bool:
        try:
            if kind == "int":
                return str(int(text)) == text
            if kind == "float":
                return str(float(text)) == text
            if kind == "bool":
                return text in ("True", "False")
            moment = datetime.fromisoformat(text)
        except ValueError:
            return False
        return moment.tzinfo is not None and self.spell_time(moment) == text

    def kind(self, column: Any) -> Kind:
        """The column's type: the first that fits every cell, else ``string``."""
        possible = self._possible.get(column, set())
        return next((k for k in _TEXT_KINDS if k in possible), "string")


class ClassicBuilder:
    """Rows of MUSCLE's classic export, long or wide.

    :param options: MUSCLE's form: session fields, result fields, options.
    :param graph: the export's record graph.
    :param wide: MUSCLE's ``wide_format``: one row per session, result columns prefixed
        ``001-``, ``002-``, ….
    :param ms: times to the millisecond (``timestamps = "ms"``).
    :param typed: find the columns that hold one type (:class:`TextKinds`, for Parquet).
    """

    def __init__(
        self,
        options: Classic,
        graph: RecordGraph,
        *,
        wide: bool,
        ms: bool = False,
        typed: bool = False,
    ) -> None:
        self.graph = graph
        self.wide = wide
        self.ms = ms
        self.text_kinds = TextKinds(lambda t: classic_text(t, ms)) if typed else None
        self.session_fields = options.session_fields
        self.result_fields = options.result_fields
        chosen = set(options.options)
        self.export_profile = "export_profile" in chosen
        self.session_data = "session_data" in chosen
        self.convert_session_json = "convert_session_json" in chosen
        self.decision_time = "decision_time" in chosen
        self.result_config = "result_config" in chosen
        self.convert_result_json = "convert_result_json" in chosen
        # The answered profile questions of the participant being read:
        # (created_at, pk, question_key, given_response, score).
        self._answers: list[tuple[datetime, int, str, str, float | None]] = []
        self._answers_of: int | None = None
        # participant pk → its profile columns as a flat (name, value, name, value, ...)
        # tuple of interned strings: a few per participant, but 45,000 participants' dicts
        # and answer tuples took tens of megabytes.
        self._profiles: dict[int, tuple[str, ...]] = {}
        self.walker = SessionWalker(graph.sessions.values())
        self.spill = Spill()
        self.keys: set[str] = set()

    def _time(self, value: datetime) -> datetime:
        """A time as the order of rows sees it: cut to milliseconds with ``ms``, so that a
        database orders rows as its zip does."""
        return cut_ms(value) if self.ms else value

    def add_profiles(self, batch: Sequence[Result]) -> None:
        """Keep the answered profile questions (MUSCLE's ``profile_object`` skips
        unanswered ones).

        Batches come in (participant, pk) order, as the graph checks them: a participant's
        profile is settled when the next participant's answers begin.
        """
        if not self.export_profile:
            return
        for r in batch:
            if r.given_response is not None and r.participant is not None:
                if r.participant != self._answers_of:
                    self._settle_profile()
                    self._answers_of = r.participant
                self._answers.append(
                    (self._time(r.created_at), r.pk, r.question_key, r.given_response, r.score)
                )

    def _settle_profile(self) -> None:
        participant = self._answers_of
        if participant is None:
            return
        if participant in self._profiles:
            raise ValueError(
                f"profile answers of participant {participant} are not contiguous; they must"
                " come ordered by (participant, pk)"
            )
        profile: dict[str, str] = {}
        for _, _, key, given, score in sorted(self._answers):
            profile[key] = given
            if score:  # MUSCLE drops 0 and None scores
                profile[f"{key}_score"] = str(score)
        self._profiles[participant] = tuple(sys.intern(t) for t in chain(*profile.items()))
        self._answers = []
        self._answers_of = None

    def _profile(self, participant: int) -> dict[str, str]:
        self._settle_profile()
        flat = self._profiles.get(participant, ())
        return dict(zip(flat[::2], flat[1::2], strict=True))

    def add_results(self, batch: Sequence[Result]) -> None:
        """Take trial results; rows are made per completed session."""
        for session, results in self.walker.feed(batch):
            self._session_rows(session, results)

    def base_row(self, session: Session) -> dict[str, str]:
        """The cells every row of ``session`` has: its fields, the profile, the session
        json (the profile answers must have been added)."""
        graph = self.graph
        participant = graph.participants.get(session.participant)
        block = graph.blocks.get(session.block) if session.block is not None else None
        values: dict[str, Any] = {
            "block_id": session.block,
            "block_name": block.name if block is not None else None,
            "participant_id": session.participant,
            "participant_country": participant.country_code if participant else None,
            "participant_access_info": participant.access_info if participant else None,
            "session_start": session.started_at,
            "session_end": session.finished_at,
            "final_score": session.final_score,
        }
        ms = self.ms
        row: dict[str, str] = {f: classic_text(values[f], ms) for f in self.session_fields}
        if self.export_profile:
            row.update(self._profile(session.participant))
        if self.session_data:
            data = session.json_data
            if self.convert_session_json:
                if isinstance(data, dict):
                    row.update({str(k): classic_text(v) for k, v in data.items()})
            else:
                row["session_data"] = classic_text(data if data is not None else {})
        return row

    def result_keys(self) -> list[str]:
        """The keys of every trial result's cells (:meth:`result_values`)."""
        keys: list[str] = list(self.result_fields)
        if self.convert_result_json:
            if self.decision_time:
                keys.append("decision_time")
            if self.result_config:
                keys.append("result_config")
        elif self.result_config:
            keys.append("result_data")
        return keys

    def result_values(self, result: Result) -> dict[str, str]:
        """A trial result's cells (the keys of :meth:`result_keys`, for every result)."""
        fields = self.result_fields
        out: dict[str, str] = {}
        if fields:
            values: dict[str, Any] = {
                "section_name": self._song_name(result.section),
                "result_created_at": result.created_at,
                "result_score": result.score,
                "result_comment": result.comment,
                "expected_response": result.expected_response,
                "given_response": result.given_response,
                "question_key": result.question_key,
            }
            out = {f: classic_text(values[f], self.ms) for f in fields}
        data = result.json_data if isinstance(result.json_data, dict) else {}
        if self.convert_result_json:
            # decision_time is taken out only here: without convert_result_json MUSCLE
            # ignores the decision_time option (MUSCLE_EXPORT.md §3.1 step 5)
            if self.decision_time:
                out["decision_time"] = classic_text(data.get("decision_time", ""))
            if self.result_config:
                out["result_config"] = classic_text(data.get("config", ""))
        elif self.result_config:
            out["result_data"] = classic_text(result.json_data)
        return out

    def _song_name(self, section_pk: int | None) -> str:
        section = self.graph.sections.get(section_pk) if section_pk is not None else None
        if section is None or section.song is None:
            return ""
        song = self.graph.songs.get(section.song)
        return song.name if song is not None else ""

    def session_rows(self, session: Session, results: list[Result]) -> list[dict[str, str]]:
        """The rows of one session and its trial results: one (wide, or a session without
        results), or one per result in (created_at, pk) order. The engine's workers call
        this per session (:mod:`aml_exportkit.engine.muscle`)."""
        row, cells = self.session_parts(session, results)
        if self.wide:
            for n, values in enumerate(cells, 1):
                prefix = result_prefix(n)
                for key, value in values.items():
                    row[prefix + key] = value
            return [row]
        if not cells:
            return [row]
        rows = []
        for values in cells:
            full = dict(row)
            full.update(values)
            rows.append(full)
        return rows

    def session_parts(
        self, session: Session, results: list[Result]
    ) -> tuple[dict[str, str], list[dict[str, str]]]:
        """A session's cells in the two parts its rows are made of (:meth:`session_rows`):
        the cells every row has (:meth:`base_row`), and each trial result's cells
        (:meth:`result_values`, every key of :meth:`result_keys`) in row order, (created_at,
        pk). A long row is the first part overwritten by one result's cells (a session
        without results: the first part alone); the engine's long renderer joins the
        parts without making each row's dict."""
        ordered = sorted(results, key=lambda r: (self._time(r.created_at), r.pk))
        return self.base_row(session), [self.result_values(r) for r in ordered]

    def _session_rows(self, session: Session, results: list[Result]) -> None:
        for row in self.session_rows(session, results):
            self._add(row)

    def _add(self, row: dict[str, str]) -> None:
        self.keys.update(row)
        self.spill.append(row)
        if self.text_kinds is not None:
            for name, text in row.items():
                self.text_kinds.add(name, text)

    def finish(self) -> Table:
        """The table: header sorted as Python sorts strings, '' where a row lacks a key."""
        for session, results in self.walker.finish():
            self._session_rows(session, results)
        header = sorted(self.keys)
        spill = self.spill

        def rows() -> Iterator[list[str]]:
            try:
                for row in spill:
                    yield [row.get(c, "") for c in header]
            finally:
                spill.close()

        kinds = self.text_kinds
        return Table(
            columns=tuple(Column(c, kinds.kind(c) if kinds else "string") for c in header),
            rows=rows,
            count=len(spill),
            text=True,
            timestamps="ms" if self.ms else "us",
        )

    def close(self) -> None:
        """Delete the spill."""
        self.spill.close()


#: The dashboard CSV's columns. MUSCLE's order is random per process (``list(set(...))``);
#: this is the order of MUSCLE_EXPORT.md §3.2, fixed.
DASHBOARD_COLUMNS = (
    "session__id",
    "participant__id",
    "participant__country_code",
    "question_key",
    "created_at",
    "expected_response",
    "given_response",
    "score",
    "section__song__name",
    "section__song__artist",
    "section__tag",
    "section__group",
)


class DashboardBuilder:
    """Rows of MUSCLE's 2026 dashboard long CSV: every trial result, then every profile
    answer of the participants (answered or not), MUSCLE's 12 columns.

    :param graph: the export's record graph.
    :param ms: times to the millisecond (``timestamps = "ms"``).
    :param typed: find the columns that hold one type (:class:`TextKinds`, for Parquet).
    """

    def __init__(self, graph: RecordGraph, *, ms: bool = False, typed: bool = False) -> None:
        self.graph = graph
        self.ms = ms
        self.text_kinds = TextKinds(lambda t: dashboard_text(t, ms)) if typed else None
        self.results = Spill()
        self.profiles = Spill()

    def _append(self, spill: Spill, row: list[str]) -> None:
        spill.append(row)
        if self.text_kinds is not None:
            for index, text in enumerate(row):
                self.text_kinds.add(index, text)

    def add_profiles(self, batch: Sequence[Result]) -> None:
        """Profile rows: participant id and country, no session or section."""
        participants = self.graph.participants
        for r in batch:
            participant = participants.get(r.participant) if r.participant is not None else None
            self._append(
                self.profiles,
                [
                    "",
                    dashboard_text(r.participant),
                    participant.country_code if participant else "",
                    r.question_key,
                    dashboard_text(r.created_at, self.ms),
                    dashboard_text(r.expected_response),
                    dashboard_text(r.given_response),
                    dashboard_text(r.score),
                    "",
                    "",
                    "",
                    "",
                ],
            )

    def add_results(self, batch: Sequence[Result]) -> None:
        """Session-result rows: the session's participant, the section's song, tag, group."""
        for r in batch:
            self._append(self.results, self.result_row(r))

    def result_row(self, r: Result) -> list[str]:
        """A trial result's row (the engine's workers call this per result,
        :mod:`aml_exportkit.engine.muscle`)."""
        graph = self.graph
        session = graph.sessions[r.session]  # type: ignore[index]
        section = graph.sections.get(r.section) if r.section is not None else None
        song = graph.songs.get(section.song) if section and section.song is not None else None
        return [
            dashboard_text(r.session),
            dashboard_text(session.participant),
            "",
            r.question_key,
            dashboard_text(r.created_at, self.ms),
            dashboard_text(r.expected_response),
            dashboard_text(r.given_response),
            dashboard_text(r.score),
            song.name if song else "",
            song.artist if song else "",
            section.tag if section else "",
            section.group if section else "",
        ]

    def profile_rows(self) -> Iterator[list[str]]:
        """The profile rows added so far, in order (the engine writes them after the
        results' rows)."""
        return iter(self.profiles)

    def profile_count(self) -> int:
        """The number of profile rows added so far."""
        return len(self.profiles)

    def finish(self) -> Table:
        """The table: result rows, then profile rows."""
        results, profiles = self.results, self.profiles

        def rows() -> Iterator[list[str]]:
            try:
                yield from chain(results, profiles)
            finally:
                self.close()

        count = len(results) + len(profiles)
        kinds = self.text_kinds
        return Table(
            columns=tuple(
                Column(c, kinds.kind(i) if kinds else "string")
                for i, c in enumerate(DASHBOARD_COLUMNS)
            ),
            rows=rows,
            count=count,
            text=True,
            timestamps="ms" if self.ms else "us",
        )

    def close(self) -> None:
        """Delete the spills."""
        self.results.close()
        self.profiles.close()

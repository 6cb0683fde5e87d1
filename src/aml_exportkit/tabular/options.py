"""The template keys of the tabular sinks (``csv-long``, ``csv-wide``, ``parquet``).

One set of classes serves all three, so a template can switch the sink ``type`` and keep its
keys. ``docs/csv.md`` and ``docs/flattening.md`` document every key.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import attrs

from ..flatten import FlattenOptions

#: ``exportkit``: our own defaults; ``muscle-classic``: MUSCLE's 2022–2025 admin CSV;
#: ``muscle-dashboard``: MUSCLE's 2026 dashboard long CSV.
Style: TypeAlias = Literal["exportkit", "muscle-classic", "muscle-dashboard"]
JsonMode: TypeAlias = Literal["omit", "json", "columns"]

ExperimentField: TypeAlias = Literal["id", "slug", "name"]
BlockField: TypeAlias = Literal["id", "slug", "name", "rules", "rounds", "bonus_points"]
SessionField: TypeAlias = Literal[
    "id", "block", "participant", "playlist", "started_at", "finished_at", "final_score"
]
ParticipantField: TypeAlias = Literal[
    "id", "unique_hash", "country_code", "access_info", "participant_id_url"
]
SectionField: TypeAlias = Literal[
    "id", "playlist", "song", "start_time", "duration", "filename", "play_count", "tag", "group"
]
SongField: TypeAlias = Literal["id", "artist", "name"]
ResultField: TypeAlias = Literal[
    "id",
    "kind",
    "session",
    "participant",
    "section",
    "created_at",
    "question_key",
    "expected_response",
    "given_response",
    "comment",
    "score",
    "scoring_rule",
]

ClassicSessionField: TypeAlias = Literal[
    "block_id",
    "block_name",
    "participant_id",
    "participant_country",
    "participant_access_info",
    "session_start",
    "session_end",
    "final_score",
]
ClassicResultField: TypeAlias = Literal[
    "section_name",
    "result_created_at",
    "result_score",
    "result_comment",
    "expected_response",
    "given_response",
    "question_key",
]
ClassicOption: TypeAlias = Literal[
    "export_profile",
    "session_data",
    "convert_session_json",
    "decision_time",
    "result_config",
    "convert_result_json",
]


@attrs.frozen(kw_only=True)
class Columns:
    """``[sinks.columns]``: the record fields joined into each row, in this order:
    experiment, block, session, participant, result, section, song. A field ``f`` of
    origin ``o`` is the column ``o_f`` (``session_started_at``; a primary key is
    ``o_id``), or ``f`` when it already starts with ``o_`` (``participant_id_url``).

    :param experiment: fields of the experiment of the session's block (through its
        phase); empty where the source does not know it (a fixture zip).
    :param block: fields of the session's block.
    :param session: fields of the result's session (empty on profile-answer rows).
    :param participant: fields of the participant.
    :param result: fields of the result; ``kind`` is ``trial`` or ``profile``.
    :param section: fields of the result's section.
    :param song: fields of that section's song.
    """

    experiment: tuple[ExperimentField, ...] = ()
    block: tuple[BlockField, ...] = ("slug",)
    session: tuple[SessionField, ...] = ("id", "started_at", "finished_at", "final_score")
    participant: tuple[ParticipantField, ...] = ("id", "participant_id_url", "country_code")
    result: tuple[ResultField, ...] = (
        "id",
        "kind",
        "created_at",
        "question_key",
        "expected_response",
        "given_response",
        "score",
        "scoring_rule",
        "comment",
    )
    section: tuple[SectionField, ...] = ("id", "tag", "group")
    song: tuple[SongField, ...] = ("artist", "name")


@attrs.frozen(kw_only=True)
class Prefixes:
    """``[sinks.prefix]``: the column prefix of each origin of flattened values.

    :param session: session ``json_data``.
    :param result: result ``json_data``.
    :param profile: the participant's profile answers (``given_response`` by question key).
    :param profile_score: the scores of those answers.
    """

    session: str = "session_json"
    result: str = "result_json"
    profile: str = "profile"
    profile_score: str = "profile_score"


@attrs.frozen(kw_only=True)
class Classic:
    """``[sinks.classic]``: the knobs of MUSCLE's admin "Export CSV" form
    (MUSCLE_EXPORT.md §3.1), used with ``style = "muscle-classic"``. The wide format is
    the ``csv-wide`` sink.

    :param session_fields: MUSCLE's session field checkboxes.
    :param result_fields: MUSCLE's result field checkboxes.
    :param options: MUSCLE's option checkboxes (without ``wide_format``).
    """

    session_fields: tuple[ClassicSessionField, ...] = ()
    result_fields: tuple[ClassicResultField, ...] = ()
    options: tuple[ClassicOption, ...] = ()


@attrs.frozen(kw_only=True)
class TableOptions:
    """The keys shared by every tabular sink.

    :param style: the rendering: ``"exportkit"`` (default), ``"muscle-classic"`` or
        ``"muscle-dashboard"``.
    :param rows: which results are rows of the long table: ``"trial"``, ``"profile"`` or
        ``"both"`` (profile answers first).
    :param columns: the record fields joined in.
    :param session_json: session ``json_data``: ``"omit"``, ``"json"`` (one column of JSON
        text) or ``"columns"`` (flattened).
    :param result_json: result ``json_data``, the same choices.
    :param profile: ``"columns"`` joins each participant's profile answers (and their
        scores) as columns; ``"omit"`` does not.
    :param flatten: the flattening rules.
    :param prefix: the prefixes of flattened origins.
    :param classic: MUSCLE's form, for ``style = "muscle-classic"``.
    :param timestamps: ``"us"`` writes times with the microseconds a database holds;
        ``"ms"`` cuts them to milliseconds, as MUSCLE's export zip holds them (Django's
        JSON), so that the same template gives the same bytes from a zip and from the
        database it came from (the time of a record's creation cannot be known closer
        from a zip). Parquet then stores ``timestamp[ms, UTC]``.
    """

    style: Style = "exportkit"
    rows: Literal["trial", "profile", "both"] = "trial"
    columns: Columns = Columns()
    session_json: JsonMode = "omit"
    result_json: JsonMode = "columns"
    profile: Literal["omit", "columns"] = "omit"
    flatten: FlattenOptions = FlattenOptions()
    prefix: Prefixes = Prefixes()
    classic: Classic = Classic()
    timestamps: Literal["us", "ms"] = "us"


@attrs.frozen(kw_only=True)
class CsvLongOptions(TableOptions):
    """Options of ``csv-long``: :class:`TableOptions` plus ``formula_guard``.

    :param formula_guard: put a ``'`` before every text cell that a spreadsheet would run
        as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
        and is not a number), so that opening the CSV in Excel or LibreOffice cannot run
        what a participant typed. Off by default: it changes the text. See docs/csv.md.
    """

    formula_guard: bool = False


@attrs.frozen(kw_only=True)
class WideOptions:
    """The wide layout.

    :param row_per: one row per ``"session"`` or per ``"participant"`` (then each session
        is keyed ``s1``, ``s2``, … in start order).
    :param key_by: how a result's columns are keyed: ``"number"`` (1, 2, … in creation
        order, zero-padded to the widest number of the export), ``"question_key"`` or
        ``"section"`` (section id); a key repeated within a row gets ``~2``, ``~3``, ….
    """

    row_per: Literal["session", "participant"] = "session"
    key_by: Literal["number", "question_key", "section"] = "number"


@attrs.frozen(kw_only=True)
class CsvWideOptions(TableOptions):
    """Options of ``csv-wide``: :class:`TableOptions` plus ``[sinks.wide]`` and
    ``formula_guard``.

    :param wide: the wide layout.
    :param formula_guard: put a ``'`` before every text cell that a spreadsheet would run
        as a formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
        and is not a number), so that opening the CSV in Excel or LibreOffice cannot run
        what a participant typed. Off by default: it changes the text. See docs/csv.md.
    """

    wide: WideOptions = WideOptions()
    formula_guard: bool = False

    def __attrs_post_init__(self) -> None:
        if self.style == "muscle-dashboard":
            raise ValueError("style 'muscle-dashboard' is MUSCLE's long CSV; use csv-long")
        if self.flatten.lists == "explode":
            raise ValueError("flatten.lists = 'explode' needs a long table; use csv-long")


@attrs.frozen(kw_only=True)
class ParquetOptions(TableOptions):
    """Options of ``parquet``: :class:`TableOptions` plus the layout and file settings.

    :param layout: ``"long"`` or ``"wide"`` (then ``[sinks.wide]`` applies).
    :param wide: the wide layout (``[sinks.wide]``).
    :param row_group_size: rows per row group.
    :param compression: the Parquet codec.
    :param partition_by: write a Hive-partitioned dataset instead of one file: ``path``
        is then a folder and each row goes to
        ``<path>/experiment=<slug>/block=<slug>/part-<run id>.parquet`` (the experiment's
        and the block's slugs, in the order given; rows without one, such as profile
        answers, go to ``__HIVE_DEFAULT_PARTITION__``). Every run adds new part files and
        never rewrites old ones. Needs ``layout = "long"`` and the ``exportkit`` style.
        See docs/parquet.md.
    """

    layout: Literal["long", "wide"] = "long"
    wide: WideOptions = WideOptions()
    row_group_size: int = 16384
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    partition_by: tuple[Literal["experiment", "block"], ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.partition_by:
            if self.layout != "long" or self.style != "exportkit":
                raise ValueError("partition_by needs layout = 'long' and style = 'exportkit'")
            if len(set(self.partition_by)) != len(self.partition_by):
                raise ValueError("partition_by names a column twice")

"""Typed, frozen records: one class per MUSCLE model that an export touches.

Field names are MUSCLE's own (its table columns without the ``_id`` of foreign keys, as
Django's serializer names them). A foreign key holds the related primary key. JSON fields
hold already-parsed values, with their key order kept. Fields that a source knows only for
some MUSCLE versions (or not at all, such as a block's name in a fixture zip) are ``None``
when unknown. Any field a record type does not declare is kept in ``extra`` and written out
again by sinks that write whole records, so nothing is dropped.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeAlias

import attrs
import orjson

#: A parsed JSON value. Objects keep their key order.
JSONValue: TypeAlias = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]

#: Fields a record type does not declare, by name, in their source order.
Extra: TypeAlias = Mapping[str, JSONValue]

_NO_EXTRA: Extra = {}


def _extra() -> Extra:
    return attrs.field(default=_NO_EXTRA, repr=False)


@attrs.frozen(kw_only=True)
class Experiment:
    """``experiment.Experiment`` (``experiment_experiment``; before July 2024
    ``experiment_experimentcollection``)."""

    pk: int
    slug: str | None = None
    name: str | None = None
    description: str | None = None
    active: bool | None = None
    extra: Extra = _extra()


@attrs.frozen(kw_only=True)
class Phase:
    """``experiment.Phase``: an experiment's ordered group of blocks."""

    pk: int
    experiment: int
    index: int = 0
    dashboard: bool | None = None
    randomize: bool | None = None
    extra: Extra = _extra()


@attrs.frozen(kw_only=True)
class Block:
    """``experiment.Block`` (the table ``experiment_experiment`` before July 2024).

    A fixture zip knows only a block's primary key; every other field is then ``None``
    unless the template names the slug.
    """

    pk: int
    slug: str | None = None
    phase: int | None = None
    index: int | None = None
    name: str | None = None
    description: str | None = None
    rounds: int | None = None
    bonus_points: int | None = None
    rules: str | None = None
    rules_config: JSONValue = None
    playlists: tuple[int, ...] | None = None
    extra: Extra = _extra()


@attrs.frozen(kw_only=True)
class Playlist:
    """``section.Playlist``. Not part of MUSCLE's fixture zip."""

    pk: int
    name: str | None = None
    url_prefix: str | None = None
    extra: Extra = _extra()


@attrs.frozen(kw_only=True)
class Song:
    """``section.Song``."""

    pk: int
    artist: str
    name: str
    extra: Extra = _extra()


@attrs.frozen(kw_only=True)
class Section:
    """``section.Section``: one audio stimulus of a playlist."""

    pk: int
    playlist: int
    song: int | None
    start_time: float
    duration: float
    filename: str
    play_count: int
    tag: str
    group: str
    extra: Extra = _extra()


@attrs.frozen(kw_only=True)
class Participant:
    """``participant.Participant``."""

    pk: int
    unique_hash: str
    country_code: str
    access_info: str | None
    participant_id_url: str | None
    extra: Extra = _extra()


class CompactJSON(bytes):
    """A JSON object or list held as its compact UTF-8 text (orjson's spelling).

    A parsed ``json_data`` costs several times its text in Python objects; the record graph
    keeps every session in memory, so a session keeps the text and parses it on each read.
    Only text made by :func:`compact_json` is held, so a read gives back exactly the value
    that was compacted: the same types, key order, integers and float bits.
    """

    __slots__ = ()

    def value(self) -> JSONValue:
        """The value, parsed anew (a fresh object on every call)."""
        # orjson.dumps wrote only integers orjson.loads reads back as integers (64-bit).
        # (orjson takes bytes, not a subclass of it; a memoryview does not copy.)
        return orjson.loads(memoryview(self))  # type: ignore[no-any-return]


def compact_json(value: JSONValue) -> JSONValue | CompactJSON:
    """``value`` as :class:`CompactJSON` when its text gives it back exactly; otherwise
    (scalars, integers beyond 64 bits, lone surrogates, NaN) ``value`` itself.

    For values a JSON parser made (dicts, lists, str, int, float, bool, None); a record
    field given the result reads as the value (see :class:`Session`).
    """
    if type(value) is not dict and type(value) is not list:
        return value
    try:
        text = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, a lone surrogate
        return value
    # orjson writes NaN as null and a tuple as a list; such a value stays as it is. (Types,
    # key order and float bits survive dumps and loads, see tests/core/test_compact_json.py.)
    if orjson.loads(text) != value:
        return value
    return CompactJSON(text)


class _CompactJSONField:
    """The descriptor of a record's JSON field whose slot may hold :class:`CompactJSON`:
    reads parse it, so the field keeps its type (``attrs``' ``__eq__``, ``__repr__``,
    ``evolve`` and pickling all read through it)."""

    __slots__ = ("_slot",)

    def __init__(self, slot: Any) -> None:
        self._slot = slot

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = self._slot.__get__(obj, owner)
        if type(value) is CompactJSON:
            return value.value()
        return value

    def __set__(self, obj: object, value: Any) -> None:
        self._slot.__set__(obj, value)


@attrs.frozen(kw_only=True)
class Session:
    """``session.Session``: one participant playing one block."""

    pk: int
    block: int | None
    participant: int
    playlist: int | None
    started_at: datetime
    finished_at: datetime | None
    json_data: JSONValue
    final_score: float
    extra: Extra = _extra()

    @property
    def is_finished(self) -> bool:
        """Whether the session was finished (MUSCLE sets ``finished_at`` then)."""
        return self.finished_at is not None


# Sessions sit in the graph for the whole export: their json_data may be given as
# compact_json(value) and is parsed when read.
setattr(Session, "json_data", _CompactJSONField(Session.__dict__["json_data"]))  # noqa: B010


def compact_fields(record_type: type) -> frozenset[str]:
    """The fields of ``record_type`` that may be given as :func:`compact_json` values."""
    return frozenset(
        name for name, attr in vars(record_type).items() if isinstance(attr, _CompactJSONField)
    )


class ResultKind(enum.Enum):
    """Which of MUSCLE's two kinds of result a row is (MUSCLE_EXPORT.md §4)."""

    TRIAL = "trial"
    """Bound to a session; ``results.json``."""
    PROFILE = "profile"
    """Bound to a participant, shared across experiments; ``profiles.json``."""


@attrs.frozen(kw_only=True)
class Result:
    """``result.Result``: a trial result (session set) or a profile answer (participant set).

    ``created_at`` is when MUSCLE prepared the trial or question, not when it was answered.
    """

    pk: int
    session: int | None
    participant: int | None
    section: int | None
    created_at: datetime
    question_key: str
    expected_response: str | None
    given_response: str | None
    comment: str
    score: float | None
    scoring_rule: str
    json_data: JSONValue
    extra: Extra = _extra()

    @property
    def kind(self) -> ResultKind:
        """Trial or profile, from which foreign key is set.

        Sources reject a result with both or neither before it gets here.
        """
        return ResultKind.TRIAL if self.session is not None else ResultKind.PROFILE

    @property
    def is_profile_result(self) -> bool:
        """Whether this is a participant-bound profile answer."""
        return self.session is None


@attrs.frozen(kw_only=True)
class Feedback:
    """``experiment.Feedback``: free text a participant left for a block."""

    pk: int
    text: str
    block: int
    extra: Extra = _extra()


#: Any record type.
Record: TypeAlias = (
    Experiment
    | Phase
    | Block
    | Playlist
    | Song
    | Section
    | Participant
    | Session
    | Result
    | Feedback
)

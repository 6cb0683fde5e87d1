"""MUSCLE's models as data: labels, fields, types and foreign keys.

One table drives reading a fixture object into a record, writing a record back as a fixture
object, and (in the database source) which columns to select. Field order is MUSCLE's model
definition order, which is the order Django's serializer writes (MUSCLE_EXPORT.md §2.4).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from operator import attrgetter
from typing import Any

import attrs

from . import records
from .errors import SourceError
from .records import JSONValue, Record


class Kind(enum.Enum):
    """The value type of a field, as it appears in a fixture."""

    INT = "integer"
    FLOAT = "float"
    STR = "string"
    BOOL = "boolean"
    DATETIME = "datetime"
    JSON = "json"
    INT_LIST = "list of integers"


@attrs.frozen
class FieldSpec:
    """One field of a model.

    :param name: the field name (Django's; a foreign key without ``_id``).
    :param kind: the value type.
    :param nullable: whether ``null`` is allowed.
    :param fk: the model a foreign key points to, e.g. ``"session"``.
    :param aliases: older names of the field (MUSCLE renamed ``experiment`` to ``block``).
    :param required: whether a fixture object must carry the field; fields a source may not
        know (a block's name in a zip) are not required and default to ``None``.
    :param max_length: the most characters MUSCLE's ``varchar`` column holds.
    :param repeats: text that few distinct values fill (country codes, browsers' user
        agents): a source keeps one string per value for the records it holds in memory.
    """

    name: str
    kind: Kind
    nullable: bool = False
    fk: str | None = None
    aliases: tuple[str, ...] = ()
    required: bool = True
    max_length: int | None = None
    repeats: bool = False


@attrs.frozen
class ModelSpec:
    """One MUSCLE model.

    :param key: the short name used in messages and graph tables, e.g. ``result``.
    :param label: Django's ``app_label.model``, e.g. ``result.result``.
    :param record_type: the record class.
    :param fields: the fields in model definition order (without ``pk``).
    """

    key: str
    label: str
    record_type: type[Any]
    fields: tuple[FieldSpec, ...]

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``; :class:`KeyError` if there is none."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def foreign_keys(self) -> tuple[FieldSpec, ...]:
        """The fields that point at another model."""
        return tuple(f for f in self.fields if f.fk is not None)


def _f(name: str, kind: Kind, **kw: Any) -> FieldSpec:
    return FieldSpec(name, kind, **kw)


_I, _F, _S, _B, _D, _J = Kind.INT, Kind.FLOAT, Kind.STR, Kind.BOOL, Kind.DATETIME, Kind.JSON

EXPERIMENT = ModelSpec(
    "experiment",
    "experiment.experiment",
    records.Experiment,
    (
        _f("slug", _S, nullable=True, required=False),
        _f("name", _S, nullable=True, required=False),
        _f("description", _S, nullable=True, required=False),
        _f("active", _B, nullable=True, required=False),
    ),
)
PHASE = ModelSpec(
    "phase",
    "experiment.phase",
    records.Phase,
    (
        _f("experiment", _I, fk="experiment"),
        _f("index", _I),
        _f("dashboard", _B, nullable=True, required=False),
        _f("randomize", _B, nullable=True, required=False),
    ),
)
BLOCK = ModelSpec(
    "block",
    "experiment.block",
    records.Block,
    (
        _f("slug", _S, nullable=True, required=False),
        _f("phase", _I, nullable=True, fk="phase", required=False),
        _f("index", _I, nullable=True, required=False),
        _f("name", _S, nullable=True, required=False),
        _f("description", _S, nullable=True, required=False),
        _f("rounds", _I, nullable=True, required=False),
        _f("bonus_points", _I, nullable=True, required=False),
        _f("rules", _S, nullable=True, required=False),
        _f("rules_config", _J, nullable=True, required=False),
        _f("playlists", Kind.INT_LIST, nullable=True, required=False),
    ),
)
PLAYLIST = ModelSpec(
    "playlist",
    "section.playlist",
    records.Playlist,
    (
        _f("name", _S, nullable=True, required=False),
        _f("url_prefix", _S, nullable=True, required=False),
    ),
)
SESSION = ModelSpec(
    "session",
    "session.session",
    records.Session,
    (
        _f("block", _I, nullable=True, fk="block", aliases=("experiment",)),
        _f("participant", _I, fk="participant"),
        _f("playlist", _I, nullable=True, fk="playlist"),
        _f("started_at", _D),
        _f("finished_at", _D, nullable=True),
        _f("json_data", _J, nullable=True),
        _f("final_score", _F),
    ),
)
PARTICIPANT = ModelSpec(
    "participant",
    "participant.participant",
    records.Participant,
    (
        _f("unique_hash", _S, max_length=64),
        _f("country_code", _S, max_length=3, repeats=True),
        _f("access_info", _S, nullable=True, max_length=512, repeats=True),
        _f("participant_id_url", _S, nullable=True, max_length=128),
    ),
)
RESULT = ModelSpec(
    "result",
    "result.result",
    records.Result,
    (
        _f("session", _I, nullable=True, fk="session"),
        _f("participant", _I, nullable=True, fk="participant"),
        _f("section", _I, nullable=True, fk="section"),
        _f("created_at", _D),
        _f("question_key", _S, max_length=64),
        _f("expected_response", _S, nullable=True, max_length=100),
        _f("given_response", _S, nullable=True, max_length=100),
        _f("comment", _S, max_length=100),
        _f("score", _F, nullable=True),
        _f("scoring_rule", _S, max_length=64),
        _f("json_data", _J, nullable=True),
    ),
)
SECTION = ModelSpec(
    "section",
    "section.section",
    records.Section,
    (
        _f("playlist", _I, fk="playlist"),
        _f("song", _I, nullable=True, fk="song"),
        _f("start_time", _F),
        _f("duration", _F),
        _f("filename", _S, max_length=255),
        _f("play_count", _I),
        _f("tag", _S, max_length=128),
        _f("group", _S, max_length=128),
    ),
)
SONG = ModelSpec(
    "song",
    "section.song",
    records.Song,
    (_f("artist", _S, max_length=128), _f("name", _S, max_length=128)),
)
FEEDBACK = ModelSpec(
    "feedback",
    "experiment.feedback",
    records.Feedback,
    (_f("text", _S), _f("block", _I, fk="block", aliases=("experiment",))),
)

#: Every model, by key.
MODELS: Mapping[str, ModelSpec] = {
    m.key: m
    for m in (
        EXPERIMENT,
        PHASE,
        BLOCK,
        PLAYLIST,
        SONG,
        SECTION,
        PARTICIPANT,
        SESSION,
        RESULT,
        FEEDBACK,
    )
}
#: Every model, by Django label.
MODELS_BY_LABEL: Mapping[str, ModelSpec] = {m.label: m for m in MODELS.values()}


@attrs.frozen
class FixtureFile:
    """One member of MUSCLE's export zip.

    :param name: the member name, e.g. ``profiles.json``.
    :param model: the model its objects have.
    :param since: the first MUSCLE release whose zip has the member, if not all.
    """

    name: str
    model: ModelSpec
    since: str | None = None


#: The zip's members in MUSCLE's order (MUSCLE_EXPORT.md §2.2).
FIXTURE_FILES: tuple[FixtureFile, ...] = (
    FixtureFile("sessions.json", SESSION),
    FixtureFile("participants.json", PARTICIPANT),
    FixtureFile("profiles.json", RESULT),
    FixtureFile("results.json", RESULT),
    FixtureFile("sections.json", SECTION),
    FixtureFile("songs.json", SONG),
    FixtureFile("feedback.json", FEEDBACK, since="v3.1.0"),
)

#: How the zip comment of our fixture zip names its block (MUSCLE's zip has no comment and
#: no member that holds the block's slug; Django's ``loaddata`` ignores the comment).
_BLOCK_COMMENT = "exportkit block: "


def block_comment(slug: str) -> bytes:
    """The zip comment that names the block ``slug``."""
    return (_BLOCK_COMMENT + slug).encode("utf-8")


def slug_from_comment(comment: bytes) -> str | None:
    """The block slug a zip comment names, or None (MUSCLE's zips, other comments)."""
    text = comment.decode("utf-8", errors="replace")
    slug = text.removeprefix(_BLOCK_COMMENT)
    return slug if slug != text and slug and "\n" not in slug else None


# -- values ---------------------------------------------------------------------------------


def parse_datetime(text: str) -> datetime:
    """Parse any of MUSCLE's timestamp spellings (``Z`` or ``+00:00``, ``T`` or a space,
    0 to 6 fraction digits); the result keeps the given offset.

    :raises ValueError: for text that is not an ISO 8601 timestamp with an offset.
    """
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone offset")
    return value


def django_datetime(value: datetime) -> str:
    """Format a datetime as Django's JSON encoder does: ISO 8601, microseconds cut (not
    rounded) to milliseconds, no fraction when it is zero, ``Z`` for UTC."""
    text = value.isoformat()
    if value.microsecond:
        text = text[:23] + text[26:]
    if text.endswith("+00:00"):
        text = text[:-6] + "Z"
    return text


def json_type(value: Any) -> str:
    """The JSON type name of a parsed value (``integer`` and ``number`` kept apart)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _describe(value: object) -> str:
    kind = json_type(value)
    if kind == "null":
        return kind
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _convert(kind: Kind, value: Any) -> Any:
    """Check one non-null value against its kind; return the record value or raise
    ValueError with the reason."""
    t = type(value)
    if kind is Kind.STR:
        if t is str:
            return value
    elif kind is Kind.INT:
        if t is int:
            return value
    elif kind is Kind.FLOAT:
        if t is float:
            if not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {value!r}")
            return value
        if t is int:
            # Django's FloatField takes an integer too, and stores it as a double.
            return float(value)
    elif kind is Kind.DATETIME:
        if t is str:
            try:
                return parse_datetime(value)
            except ValueError:
                raise ValueError(f"expected an ISO 8601 timestamp, got {value!r}") from None
    elif kind is Kind.BOOL:
        if t is bool:
            return value
    elif kind is Kind.JSON:
        return value
    elif kind is Kind.INT_LIST and t is list and all(type(v) is int for v in value):
        return tuple(value)
    raise ValueError(f"expected {kind.value}, got {_describe(value)}")


def _used_key(spec: FieldSpec, values: Mapping[str, Any]) -> str | None:
    """The key of ``values`` that fills ``spec``: its name, else the first alias present."""
    if spec.name in values:
        return spec.name
    return next((alias for alias in spec.aliases if alias in values), None)


def make_fixture_decoder(
    model: ModelSpec,
) -> Callable[[Mapping[str, Any], str], Record]:
    """Build the function that turns one fixture object into a record.

    The function takes the parsed object and the file name (for messages) and raises
    :class:`SourceError` naming the file and the record when a key is missing or a value has
    the wrong type. Fields the model does not declare go into the record's ``extra``.
    JSON fields of records that stay in memory (a session's ``json_data``) are kept as
    compact text (:func:`~aml_exportkit.records.compact_json`); they read the same.
    """
    fields = model.fields
    record_type = model.record_type
    key = model.key
    compact = records.compact_fields(record_type)
    repeats = frozenset(f.name for f in fields if f.repeats)
    shared: dict[str, str] = {}  # one string per value of the `repeats` fields

    def decode(obj: Mapping[str, Any], file: str) -> Record:
        if type(obj) is not dict:
            raise SourceError(f"expected an object, got {_describe(obj)}", file=file)
        pk = obj.get("pk")
        if type(pk) is not int:
            raise SourceError(
                f"{key} object has {'no pk' if pk is None else 'a pk that is not an integer'}"
                f" ({pk!r})",
                file=file,
            )
        values = obj.get("fields")
        if type(values) is not dict:
            raise SourceError(
                "missing 'fields' object" if values is None else "'fields' is not an object",
                file=file,
                model=key,
                pk=pk,
            )
        kwargs: dict[str, Any] = {"pk": pk}
        for spec in fields:
            name = spec.name
            if name in values:
                value = values[name]
            else:
                for alias in spec.aliases:
                    if alias in values:
                        value = values[alias]
                        break
                else:
                    if spec.required:
                        raise SourceError(f"missing field {name!r}", file=file, model=key, pk=pk)
                    continue
            if value is None:
                if not spec.nullable:
                    raise SourceError(
                        f"field {name!r} is null, which MUSCLE does not allow",
                        file=file,
                        model=key,
                        pk=pk,
                    )
                kwargs[name] = None
                continue
            try:
                kwargs[name] = _convert(spec.kind, value)
            except ValueError as exc:
                raise SourceError(f"field {name!r}: {exc}", file=file, model=key, pk=pk) from None
            if name in compact:
                kwargs[name] = records.compact_json(value)
            elif name in repeats:
                kwargs[name] = shared.setdefault(value, value)
            if spec.max_length is not None and len(value) > spec.max_length:
                raise SourceError(
                    f"field {name!r} has {len(value):,} characters; MUSCLE's column holds at"
                    f" most {spec.max_length}",
                    file=file,
                    model=key,
                    pk=pk,
                )
        if len(values) > len(kwargs) - 1:
            used = {_used_key(spec, values) for spec in fields}
            extra = {k: v for k, v in values.items() if k not in used}
            if extra:
                kwargs["extra"] = extra
        return record_type(**kwargs)  # type: ignore[no-any-return]

    return decode


def encode_value(kind: Kind, value: Any) -> JSONValue:
    """A record value as Django's serializer writes it."""
    if value is None:
        return None
    if kind is Kind.DATETIME:
        return django_datetime(value)
    if kind is Kind.INT_LIST:
        return list(value)
    return value  # type: ignore[no-any-return]


def make_fixture_encoder(model: ModelSpec) -> Callable[[Record], dict[str, JSONValue]]:
    """Build the function that turns a record into a fixture object
    (``{"model", "pk", "fields"}``, in Django's key order).

    Known fields come in model order under their current names, then the record's
    ``extra`` fields in their source order.
    """
    names = tuple(f.name for f in model.fields)
    # only these kinds change on the way out (encode_value); the rest pass as they are
    changed = tuple(
        (f.name, f.kind) for f in model.fields if f.kind in (Kind.DATETIME, Kind.INT_LIST)
    )
    # (attrgetter of several names gives a tuple; every model has several fields)
    assert len(names) > 1
    get_all = attrgetter(*names)
    label = model.label

    def encode(record: Record) -> dict[str, JSONValue]:
        fields: dict[str, JSONValue] = dict(zip(names, get_all(record), strict=True))
        for name, kind in changed:
            fields[name] = encode_value(kind, fields[name])
        if record.extra:
            for k, v in record.extra.items():
                fields.setdefault(k, v)
        return {"model": label, "pk": record.pk, "fields": fields}

    return encode

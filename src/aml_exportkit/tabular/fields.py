"""The record fields a template can join into a row: their column names, kinds and getters."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

from ..flatten import ColumnRegistry, FlattenOptions
from ..records import Result
from .table import Column, Kind

#: Field kinds by origin; the column of field ``f`` of origin ``o`` is ``o_f`` (``id`` is
#: the primary key).
FIELD_KINDS: dict[str, dict[str, Kind]] = {
    "experiment": {"id": "int", "slug": "string", "name": "string"},
    "block": {
        "id": "int",
        "slug": "string",
        "name": "string",
        "rules": "string",
        "rounds": "int",
        "bonus_points": "int",
    },
    "session": {
        "id": "int",
        "block": "int",
        "participant": "int",
        "playlist": "int",
        "started_at": "datetime",
        "finished_at": "datetime",
        "final_score": "float",
    },
    "participant": {
        "id": "int",
        "unique_hash": "string",
        "country_code": "string",
        "access_info": "string",
        "participant_id_url": "string",
    },
    "result": {
        "id": "int",
        "kind": "string",
        "session": "int",
        "participant": "int",
        "section": "int",
        "created_at": "datetime",
        "question_key": "string",
        "expected_response": "string",
        "given_response": "string",
        "comment": "string",
        "score": "float",
        "scoring_rule": "string",
    },
    "section": {
        "id": "int",
        "playlist": "int",
        "song": "int",
        "start_time": "float",
        "duration": "float",
        "filename": "string",
        "play_count": "int",
        "tag": "string",
        "group": "string",
    },
    "song": {"id": "int", "artist": "string", "name": "string"},
}


def _result_kind(result: Result) -> str:
    return "trial" if result.session is not None else "profile"


def getter(origin: str, field: str) -> Callable[[Any], Any]:
    """A function that reads ``field`` from a record of ``origin``."""
    if origin == "result" and field == "kind":
        return _result_kind
    return attrgetter("pk" if field == "id" else field)


def cut_ms(value: datetime) -> datetime:
    """A time cut to whole milliseconds, as Django's JSON writes it."""
    if not value.microsecond % 1000:
        return value
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def _cutting(get: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def cut(record: Any) -> Any:
        value = get(record)
        return None if value is None else cut_ms(value)

    return cut


def tuple_getter(
    origin: str, fields: Sequence[str], *, ms: bool = False
) -> Callable[[Any], tuple[Any, ...]]:
    """A function that reads ``fields`` of a record as a tuple (``None`` record → Nones).

    :param ms: cut times to milliseconds (``timestamps = "ms"``).
    """
    getters = [getter(origin, f) for f in fields]
    if ms:
        kinds = FIELD_KINDS[origin]
        getters = [
            _cutting(g) if kinds[f] == "datetime" else g
            for g, f in zip(getters, fields, strict=True)
        ]
    empty = (None,) * len(fields)

    def get(record: Any) -> tuple[Any, ...]:
        if record is None:
            return empty
        return tuple([g(record) for g in getters])

    return get


def block_groups(columns: Any) -> list[tuple[str, Sequence[str]]]:
    """The ``(origin, fields)`` groups of a block's cells (see ``Joiner.get_block``): its
    experiment's fields, then its own."""
    return [("experiment", columns.experiment), ("block", columns.block)]


def head_groups(columns: Any) -> list[tuple[str, Sequence[str]]]:
    """The ``(origin, fields)`` groups of a session's cells, the head of its rows: its
    block's (:func:`block_groups`), its own and its participant's."""
    return [
        *block_groups(columns),
        ("session", columns.session),
        ("participant", columns.participant),
    ]


def fixed_columns(
    groups: Sequence[tuple[str, Sequence[str]]],
    flatten: FlattenOptions,
    registry: ColumnRegistry,
) -> list[Column]:
    """The columns of ``(origin, fields)`` groups, renamed and claimed in ``registry``."""
    columns: list[Column] = []
    for origin, fields in groups:
        kinds = FIELD_KINDS[origin]
        for field in fields:
            name = field if field.startswith(origin + "_") else f"{origin}_{field}"
            name = flatten.rename.get(name, name)
            registry.claim(name, origin, field)
            columns.append(Column(name, kinds[field], origin=origin, path=field))
    return columns

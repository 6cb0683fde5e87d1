"""The one cattrs converter, and the translation of its errors into key paths.

Types are strict: TOML already types its values, so a string where a number belongs is a
mistake to report, not to coerce.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from ..schema import parse_datetime

_TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    datetime: "a date-time",
    dict: "a table",
    list: "an array",
}


def describe_value(value: object) -> str:
    """A short description of a TOML value: its type, and the value if it is short."""
    kind = next((n for t, n in _TYPE_NAMES.items() if type(value) is t), type(value).__name__)
    if isinstance(value, dict | list):
        return kind
    text = repr(value)
    return f"{kind} ({text})" if len(text) <= 40 else kind


class StrictTypeError(TypeError):
    """A value of the wrong type; the message says what was expected."""


def _strict(expected: type[Any]) -> Any:
    def structure(value: Any, _: Any) -> Any:
        if type(value) is expected or (expected is float and type(value) is int):
            return expected(value)
        raise StrictTypeError(f"expected {_TYPE_NAMES[expected]}, got {describe_value(value)}")

    return structure


def _structure_datetime(value: Any, _: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise StrictTypeError(
                f"the date-time {value.isoformat()} needs a time zone offset, e.g. Z or +01:00"
            )
        return value
    if isinstance(value, str):
        try:
            return parse_datetime(value)
        except ValueError:
            pass
    raise StrictTypeError(
        f"expected a date-time with an offset, e.g. 2024-07-01T00:00:00Z, got"
        f" {describe_value(value)}"
    )


def _structure_int_or_str(value: Any, _: Any) -> int | str:
    if type(value) in (int, str):
        return value  # type: ignore[no-any-return]
    raise StrictTypeError(f"expected an integer or a string, got {describe_value(value)}")


def _is_literal(tp: Any) -> bool:
    return get_origin(tp) is Literal


def _structure_literal(value: Any, tp: Any) -> Any:
    choices = get_args(tp)
    if value in choices and type(value) in {type(c) for c in choices}:
        return value
    wanted = ", ".join(repr(c) for c in choices)
    raise StrictTypeError(f"expected one of {wanted}, got {describe_value(value)}")


def _is_any_mapping(tp: Any) -> bool:
    return tp is Any


def _is_homogeneous_tuple(tp: Any) -> bool:
    args = get_args(tp)
    return get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _tuple_hook_factory(converter: cattrs.Converter) -> Any:
    """Arrays become tuples; a string is not taken for an array of characters."""

    def factory(tp: Any) -> Any:
        element = get_args(tp)[0]

        def structure(value: Any, _: Any) -> tuple[Any, ...]:
            if type(value) is not list:
                raise StrictTypeError(f"expected an array, got {describe_value(value)}")
            items: list[Any] = []
            errors: list[Exception] = []
            for index, item in enumerate(value):
                try:
                    items.append(converter.structure(item, element))
                except Exception as exc:
                    exc.add_note(
                        IterableValidationNote(f"Structuring {tp} @ index {index}", index, element)
                    )
                    errors.append(exc)
            if errors:
                raise IterableValidationError(f"While structuring {tp!r}", errors, tp)
            return tuple(items)

        return structure

    return factory


def make_converter() -> cattrs.Converter:
    """The converter for templates and sink options: unknown keys are errors, every error
    carries its key path, and values are not coerced between types."""
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for tp in (bool, int, float, str):
        converter.register_structure_hook(tp, _strict(tp))
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_structure_hook(int | str, _structure_int_or_str)
    converter.register_structure_hook_func(_is_literal, _structure_literal)
    converter.register_structure_hook_func(_is_any_mapping, lambda v, _: v)
    converter.register_structure_hook_factory(_is_homogeneous_tuple, _tuple_hook_factory(converter))
    return converter


# -- errors -----------------------------------------------------------------------------------


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


def iter_problems(exc: BaseException, path: str = "") -> Iterator[tuple[str, str]]:
    """Walk a cattrs validation error; yield ``(key path, message)`` for each problem."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, note in with_notes:
            if isinstance(note, AttributeValidationNote):
                yield from iter_problems(sub, _join(path, note.name))
            elif isinstance(note, IterableValidationNote):
                yield from iter_problems(sub, _join(path, note.index))
            else:
                yield from iter_problems(sub, path)
        for sub in without:
            yield from iter_problems(sub, path)
        return
    if isinstance(exc, ForbiddenExtraKeysError):
        known = sorted(f.name for f in attrs.fields(exc.cl) if not f.metadata.get("internal"))
        for key in sorted(exc.extra_fields):
            yield (
                _join(path, key),
                f"unknown key {key!r} (known keys here: {', '.join(known) or 'none'})",
            )
        return
    if isinstance(exc, KeyError):
        yield path, "missing required key"
        return
    if isinstance(exc, StrictTypeError):
        yield path, str(exc)
        return
    if isinstance(exc, ValueError | TypeError):
        yield path, f"invalid value: {exc}"
        return
    yield path, f"{type(exc).__name__}: {exc}"

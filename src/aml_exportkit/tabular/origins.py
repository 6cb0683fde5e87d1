"""Where each column of a table comes from, as the manifest and the codebook report it.

The builders know every column's producer (a record field, or one path of one flattened
origin, see :class:`~aml_exportkit.flatten.ColumnRegistry`), so a renamed, prefixed or
keyed column is credited to what it really holds. Columns of MUSCLE's own styles have no
recorded producer and are named by MUSCLE's naming rules
(:func:`~aml_exportkit.codebook.column_info`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..codebook import column_info
from ..contracts import ColumnInfo
from ..flatten import EXPLODE_MARK
from .options import TableOptions
from .table import Column

#: A flattened origin's document, and how its values became columns.
_FLATTENED = {
    "result_json": ("result.json_data", "result"),
    "session_json": ("session.json_data", "session"),
    "profile": ("profile answer's given_response", None),
    "profile_score": ("profile answer's score", None),
}
#: Our column kinds as the manifest's types.
_TYPES = {
    "int": "integer",
    "float": "number",
    "bool": "boolean",
    "datetime": "datetime",
    "string": "string",
    "json": "json",
    "null": "string",
}


def _rule(column: Column, options: TableOptions | None) -> str:
    if column.origin in ("profile", "profile_score"):
        rule = "profile answer by question_key"
    elif column.origin in _FLATTENED:
        mode = getattr(options, f"{column.origin}", "columns") if options else "columns"
        rule = "json-text" if mode == "json" else "flatten"
    else:
        rule = "field"
    if column.key_by == "number":
        rule = f"result {column.key} of the row's session (by creation order); {rule}"
    elif column.key_by == "question_key":
        rule = f"the row's result with question_key {column.key!r}; {rule}"
    elif column.key_by == "section":
        rule = f"the row's result of section {column.key}; {rule}"
    elif column.key_by == "session":
        rule = f"the participant's session {column.key}; {rule}"
    return rule


def info_of(column: Column, options: TableOptions | None = None) -> ColumnInfo:
    """The manifest's description of one column.

    :param options: the table's options (which tell flattened columns from JSON text).
    """
    if column.origin is None:
        return column_info(column.name)
    json_path: tuple[str | int, ...] | None = None
    explode = False
    if column.origin in _FLATTENED:
        origin, _ = _FLATTENED[column.origin]
        path: str | None = column.path
        found = column.json_path
        if found is not None and _FLATTENED[column.origin][1] is not None:
            explode = bool(found) and found[-1] == EXPLODE_MARK
            json_path = found[:-1] if explode else found
    else:
        origin = f"{column.origin}.{column.path}"
        path = None
    kind = column.kind
    shown = "json" if column.json_cells else _TYPES.get(kind, "string")
    return ColumnInfo(
        name=column.name,
        origin=origin,
        path=path,
        rule="explode position" if explode else _rule(column, options),
        type=shown,
        key=column.key,
        key_by=column.key_by,
        json_types=column.json_types or None,
        json_cells=True if column.json_cells else None,
        json_path=json_path,
    )


def infos_of(
    columns: Sequence[Column], options: TableOptions | None = None
) -> tuple[ColumnInfo, ...]:
    """:func:`info_of` for every column."""
    return tuple(info_of(c, options) for c in columns)

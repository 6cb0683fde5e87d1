"""Our table columns as Arrow: one typing for the ``parquet`` sink and for
:func:`~aml_exportkit.frames.to_arrow` (``docs/parquet.md``).

``int`` → ``int64``, ``float`` → ``float64``, ``bool`` → ``bool``, ``datetime`` →
``timestamp[us, tz=UTC]``; everything else is ``string``, nested and mixed values as the
CSV's text. Callers import pyarrow (a dependency, declared by :data:`PYARROW` where it is
needed) and pass the module in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from ..contracts import Requirement
from .table import Column, Kind, text_of

#: pyarrow, for the ``parquet`` sink and :func:`~aml_exportkit.frames.to_arrow`.
PYARROW = Requirement(module="pyarrow", install="pip install pyarrow")


def arrow_type(pa: Any, kind: Kind, timestamps: str = "us") -> Any:
    """The Arrow type of a column of ``kind``; times in ``timestamps`` units."""
    if kind == "int":
        return pa.int64()
    if kind == "float":
        return pa.float64()
    if kind == "bool":
        return pa.bool_()
    if kind == "datetime":
        return pa.timestamp(timestamps, tz="UTC")
    return pa.string()


def _as_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _from_text(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    def convert(text: Any) -> Any:
        return parse(text) if text else None

    return convert


#: How MUSCLE's text (its styles' cells) becomes a value of each kind.
_TEXT_PARSERS: dict[str, Callable[[Any], Any]] = {
    "int": _from_text(int),
    "float": _from_text(float),
    "bool": _from_text(lambda text: text == "True"),
    "datetime": _from_text(datetime.fromisoformat),
}


def converter(kind: Kind, text: bool = False) -> Callable[[Any], Any] | None:
    """What a value of a column of ``kind`` goes through first (None: nothing).

    :param text: the values are MUSCLE's ready-made text
        (:attr:`~aml_exportkit.tabular.table.Table.text`)."""
    if text:
        return _TEXT_PARSERS.get(kind)
    if kind in ("json", "mixed", "null"):
        return text_of  # nested values and mixed scalars: the CSV's text
    if kind == "float":
        return _as_float  # an int in a float column
    return None


def arrow_schema(
    pa: Any, columns: Sequence[Column], metadata: Mapping[str, str], timestamps: str = "us"
) -> Any:
    """The schema of a table with ``columns``; the column kinds join ``metadata``."""
    kinds = {"exportkit.column_kinds": json.dumps({c.name: c.kind for c in columns})}
    return pa.schema(
        [pa.field(c.name, arrow_type(pa, c.kind, timestamps), nullable=True) for c in columns],
        metadata={**metadata, **kinds},
    )


class RowConverter:
    """Turns lists of rows (sequences of Python values in column order) into Arrow.

    :param pa: the pyarrow module.
    :param schema: the table's schema (:func:`arrow_schema`).
    :param columns: its columns.
    :param text: the rows are MUSCLE's ready-made text
        (:attr:`~aml_exportkit.tabular.table.Table.text`).
    """

    def __init__(self, pa: Any, schema: Any, columns: Sequence[Column], text: bool = False) -> None:
        self.pa = pa
        self.schema = schema
        self.types = [f.type for f in schema]
        self.convert = [converter(c.kind, text) for c in columns]

    def arrays(self, rows: Sequence[Sequence[Any]]) -> list[Any]:
        """One Arrow array per column of ``rows``."""
        arrays = []
        for index, (arrow_type_, fn) in enumerate(zip(self.types, self.convert, strict=True)):
            values = [row[index] for row in rows]
            if fn is not None:
                values = [fn(v) for v in values]
            arrays.append(self.pa.array(values, type=arrow_type_))
        return arrays

    def table(self, rows: Sequence[Sequence[Any]]) -> Any:
        """``rows`` as a ``pyarrow.Table``."""
        return self.pa.Table.from_arrays(self.arrays(rows), schema=self.schema)

    def batch(self, rows: Sequence[Sequence[Any]]) -> Any:
        """``rows`` as a ``pyarrow.RecordBatch``."""
        return self.pa.RecordBatch.from_arrays(self.arrays(rows), schema=self.schema)

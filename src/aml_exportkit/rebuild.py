"""Every result's ``json_data``, rebuilt from a long table of ours and its manifest.

A long CSV (``csv-long``) or Parquet file (``parquet``, ``layout = "long"``) in the
``exportkit`` style holds each result's ``json_data`` as flattened columns. The manifest
names, for each column, its path inside ``json_data`` (``json_path``), the JSON types seen
in it and whether its cells are JSON text; with that, each cell reads back as exactly the
value it came from: text stays text (``"7"``) and numbers numbers (``7``), integers of any
size stay exact, ``-0.0`` stays negative, and a JSON ``null`` stays apart from a key the
result lacks. ``docs/flattening.md`` documents the cells. One thing JSON does not tell
apart either: in a Parquet column of integers and floats (a ``double``), a whole number
comes back as a float, ``2.0`` for ``2``, the same JSON number; the CSV keeps ``2``.

Objects come back with their keys in the table's column order (code point order): JSON
objects are unordered, and MUSCLE's PostgreSQL ``jsonb`` keeps no order either.

A table made with ``include`` or ``exclude`` globs lacks parts of ``json_data`` on purpose
and cannot be rebuilt; nor can one without the ``result_id`` column when lists are
exploded (the rows of one result must be found).
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from .errors import SourceError
from .flatten import Path as JsonPath
from .flatten import assemble, with_positions
from .jsonstream import exact_int, finite_float, loads_value
from .manifest import parse_manifest
from .records import JSONValue
from .tabular.table import read_exportkit_csv

#: The origin the manifest gives a result's ``json_data`` columns.
RESULT_JSON = "result.json_data"
_ABSENT: Any = object()
#: An integer's spelling in our CSV (a float's has a point, an exponent, ``inf`` or ``nan``).
_INTEGER = re.compile(r"-?[0-9]+")


@attrs.frozen
class _Decoder:
    """How one column's cells become values."""

    index: int
    name: str
    path: JsonPath
    position: bool  # an exploded list's position column
    json_cells: bool
    kinds: frozenset[str]  # JSON types seen, without null and absent
    null: bool  # an empty cell is a JSON null (not an absent key)

    def value(self, cell: Any) -> Any:
        if cell is None:  # JSON text cells spell null; else the column's types tell
            return None if self.null and not self.json_cells else _ABSENT
        if self.position:
            return int(cell)
        if self.json_cells:
            return loads_value(cell)
        if not isinstance(cell, str):  # a typed Parquet value
            return cell
        if self.kinds & {"object", "array"}:
            return loads_value(cell)
        if "boolean" in self.kinds:
            return cell == "true"
        if "number" in self.kinds and "integer" in self.kinds:
            # a number column: CSV spells an integer without a point or exponent
            return int(cell) if _INTEGER.fullmatch(cell) else float(cell)
        if "integer" in self.kinds:
            return exact_int(cell)
        if "number" in self.kinds:
            return finite_float(cell)
        return cell


def _entry(manifest: Mapping[str, Any], folder: Path, table: Path) -> Mapping[str, Any]:
    outputs = [o for o in manifest.get("outputs", []) if o.get("columns")]
    target = table.resolve()
    for output in outputs:
        if (folder / output["path"]).resolve() == target:
            return output  # type: ignore[no-any-return]
    named = [o for o in outputs if Path(o["path"]).name == table.name]
    if len(named) == 1:
        return named[0]  # type: ignore[no-any-return]
    raise SourceError("the manifest names no table at this path", file=str(table))


def _decoders(columns: Sequence[Mapping[str, Any]], file: str) -> list[_Decoder]:
    decoders = []
    for index, column in enumerate(columns):
        if column.get("origin") != RESULT_JSON:
            continue
        if "json_path" not in column or "json_types" not in column:
            raise SourceError(
                f"the manifest gives column {column['name']!r} no json_path and json_types;"
                " it was written by an older exportkit",
                file=file,
            )
        if column.get("key") is not None:
            raise SourceError(
                "a wide table holds several results per row; rebuild from a long table",
                file=file,
            )
        types = set(column["json_types"])
        decoders.append(
            _Decoder(
                index=index,
                name=str(column.get("name")),
                path=tuple(column["json_path"]),
                position=column.get("rule") == "explode position",
                json_cells=bool(column.get("json_cells")),
                kinds=frozenset(types - {"null", "absent"}),
                null="null" in types,
            )
        )
    return decoders


def _rows(table: Path, names: Sequence[str]) -> Iterator[Sequence[Any]]:
    if table.suffix == ".parquet":
        # imported by name: pyarrow is optional and ships no type information
        parquet: Any = importlib.import_module("pyarrow.parquet")
        handle = parquet.ParquetFile(table)
        if list(handle.schema_arrow.names) != list(names):
            raise SourceError("the columns differ from the manifest's", file=str(table))
        for index in range(handle.num_row_groups):
            group = handle.read_row_group(index)
            columns = [group.column(i).to_pylist() for i in range(group.num_columns)]
            yield from zip(*columns, strict=True)
        return
    header, rows = read_exportkit_csv(table)
    if header != list(names):
        raise SourceError("the columns differ from the manifest's", file=str(table))
    yield from rows


def _sinks_of(manifest: Mapping[str, Any], entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The template's sink entries that may have written ``entry`` (its type, and a path
    that matches the file's, ``{block}`` standing for any slug)."""
    import tomllib

    try:
        template = tomllib.loads(manifest.get("template", {}).get("text", ""))
    except tomllib.TOMLDecodeError:  # pragma: no cover - the manifest holds what ran
        return []
    sinks = [s for s in template.get("sinks", []) if s.get("type") == entry.get("sink")]
    written = Path(entry["path"]).as_posix()

    def wrote(sink: Mapping[str, Any]) -> bool:
        path = Path(str(sink.get("path", ""))).as_posix()
        pattern = path.replace("{block}", "*")
        return (
            fnmatch.fnmatchcase(written, pattern)
            or fnmatch.fnmatchcase(written, "*/" + pattern)
            or fnmatch.fnmatchcase(written, pattern + "/*")  # a partitioned dataset's files
            or fnmatch.fnmatchcase(written, "*/" + pattern + "/*")
        )

    return [s for s in sinks if wrote(s)] or sinks


def _refuse_partial(sinks: Sequence[Mapping[str, Any]], file: str) -> None:
    for sink in sinks:
        flatten = sink.get("flatten", {})
        if flatten.get("include") or flatten.get("exclude"):
            raise SourceError(
                "the template's include or exclude globs left parts of json_data out;"
                " it cannot be rebuilt",
                file=file,
            )
        if sink.get("result_json") == "omit":
            raise SourceError("the table holds no json_data (result_json = 'omit')", file=file)


def rebuild_json_data(
    table: Path | str, manifest: Path | str | Mapping[str, Any] | None = None
) -> dict[int, JSONValue]:
    """Every result's ``json_data`` from a long table in the exportkit style.

    :param table: the CSV or Parquet file.
    :param manifest: the run's ``manifest.json`` (a path or its parsed content); by
        default the one beside ``table``, or in a folder above it.
    :return: result primary key → ``json_data``, in the table's row order.
    :raises SourceError: when the table or its manifest cannot give back ``json_data``
        exactly (no manifest entry, no ``result_id`` column, include/exclude globs).
    """
    table = Path(table)
    file = str(table)
    if manifest is None:
        manifest = _find_manifest(table)
    if isinstance(manifest, str | os.PathLike):
        folder = Path(manifest).parent
        document = _read_manifest(Path(manifest))
    else:
        folder = table.parent
        document = manifest
    try:  # an edited manifest: any part may have another shape
        entry = _entry(document, folder, table)
        _refuse_partial(_sinks_of(document, entry), file)
        columns = entry["columns"]
        names = [str(c["name"]) for c in columns]
        decoders = _decoders(columns, file)
        key = next((i for i, c in enumerate(columns) if c.get("origin") == "result.id"), None)
    except (AttributeError, KeyError, TypeError, ValueError):
        shown = file if isinstance(manifest, Mapping) else str(manifest)
        raise SourceError(
            "the manifest's entry for the table is not as exportkit writes it", file=shown
        ) from None
    if key is None:
        raise SourceError("the table has no result_id column to key the results by", file=file)
    pairs: dict[int, list[tuple[JsonPath, Any]]] = {}
    for number, row in enumerate(_rows(table, names), 2):
        where = f"{file}: row {number}"
        if len(row) != len(names):
            raise SourceError(
                f"the row has {len(row)} cells; the header has {len(names)}", file=where
            )
        pk = row[key]
        if pk is None:
            raise SourceError("a row without result_id", file=where)
        try:
            pk = int(pk)
        except ValueError:
            raise SourceError(f"result_id {_shown(pk)} is not an integer", file=where) from None
        _add_row(pairs.setdefault(pk, []), row, decoders, where)
    return {pk: assemble(found) for pk, found in pairs.items()}


def _shown(cell: Any) -> str:
    text = repr(cell)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _add_row(
    pairs: list[tuple[JsonPath, Any]],
    row: Sequence[Any],
    decoders: list[_Decoder],
    where: str,
) -> None:
    positions: dict[JsonPath, int] = {}
    leaves: list[tuple[JsonPath, Any]] = []
    for decoder in decoders:
        cell = row[decoder.index]
        try:
            value = decoder.value(cell)
        except ValueError as exc:  # an edited cell: not what the manifest says it holds
            raise SourceError(
                f"column {decoder.name!r}: the cell {_shown(cell)} cannot be read back"
                f" as the manifest's types say ({exc})",
                file=where,
            ) from None
        if value is _ABSENT:
            continue
        if decoder.position:
            positions[decoder.path] = value
        else:
            leaves.append((decoder.path, value))
    pairs.extend((with_positions(path, positions), value) for path, value in leaves)


def _read_manifest(path: Path) -> Mapping[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    return parse_manifest(data, str(path))


def _find_manifest(table: Path) -> Path:
    """The manifest that lists ``table``: ``manifest.json`` or a builtin template's
    ``….manifest.json``, beside the table or in a folder above it."""
    for folder in table.resolve().parents:
        candidates = [folder / "manifest.json", *sorted(folder.glob("*.manifest.json"))]
        for candidate in candidates:
            if not candidate.is_file():
                continue
            try:
                document = _read_manifest(candidate)
                _entry(document, folder, table)
            except (SourceError, AttributeError, KeyError, TypeError):
                continue  # not a manifest, or one of another run's tables
            return candidate
    raise SourceError("no manifest beside the table or above it lists it", file=str(table))

"""The codebook of a run: ``datapackage.json`` (Frictionless Data Package) and
``codebook.md`` (for people).

Turned on with ``codebook = true`` in a template. After the sinks finish, every CSV and
Parquet output is read back once to find, per column, its type, how many values are
missing, and its distinct values or its range. The questions of the exported results,
with their texts and the choice labels found in json_data, come from the run itself.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from .contracts import ColumnInfo, OutputReport
from .records import Result
from .scan import DataScan, note_question
from .text import count

DATAPACKAGE_NAME = "datapackage.json"
CODEBOOK_NAME = "codebook.md"
#: Columns with more distinct values than this are summarised by their range.
MAX_DISTINCT = 20
_TRUE_FALSE = ({"true", "false"}, {"True", "False"})
#: The primary key a table's rows are identified by, in order of preference.
_KEYS = ("result_id", "session_id", "participant_id")


@attrs.define
class ColumnStats:
    """What one column holds."""

    name: str
    values: int = 0
    missing: int = 0
    kinds: Counter[str] = attrs.field(factory=Counter)
    distinct: Counter[str] = attrs.field(factory=Counter)
    overflow: bool = False
    low: Any = None
    high: Any = None
    unique: bool = True
    _seen: set[str] | None = attrs.field(factory=set, repr=False)

    def add(self, text: str | None) -> None:
        """Count one cell (``None`` or '' is missing)."""
        if text is None or text == "":
            self.missing += 1
            return
        self.values += 1
        kind, value = _classify(text)
        self.kinds[kind] += 1
        if self._seen is not None:
            if text in self._seen:
                self.unique = False
            self._seen.add(text)
            if len(self._seen) > 1_000_000:  # bounded memory for huge tables
                self._seen = None
                self.unique = False
        if not self.overflow:
            self.distinct[text] += 1
            if len(self.distinct) > MAX_DISTINCT:
                self.overflow = True
                self.distinct.clear()
        if kind in ("integer", "number", "datetime"):
            key = value
            if self.low is None or _lt(key, self.low):
                self.low = key
            if self.high is None or _lt(self.high, key):
                self.high = key

    @property
    def type(self) -> str:
        """The Table Schema type that fits every value."""
        kinds = set(self.kinds)
        if not kinds:
            return "string"
        if kinds <= {"integer"}:
            return "integer"
        if kinds <= {"integer", "number"}:
            return "number"
        if kinds == {"datetime"}:
            return "datetime"
        if (
            kinds == {"boolean"}
            and any(set(self.distinct) <= pair for pair in _TRUE_FALSE)
            and not self.overflow
        ):
            return "boolean"
        return "string"


def _lt(a: Any, b: Any) -> bool:
    try:
        return bool(a < b)
    except TypeError:
        return False


def _classify(text: str) -> tuple[str, Any]:
    if text in ("true", "false", "True", "False"):
        return "boolean", text
    try:
        return "integer", int(text)
    except ValueError:
        pass
    try:
        number = float(text)
        if math.isfinite(number):
            return "number", number
    except ValueError:
        pass
    if len(text) >= 19 and text[4:5] == "-" and text[10:11] in ("T", " "):
        try:
            value = datetime.fromisoformat(text)
            if value.tzinfo is not None:
                return "datetime", value
        except ValueError:
            pass
    return "string", text


def profile_csv(path: Path) -> tuple[list[ColumnStats], int]:
    """Read a CSV output back; the stats of each column and the number of rows."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        columns = [ColumnStats(name) for name in header]
        rows = 0
        for row in reader:
            rows += 1
            for column, cell in zip(columns, row, strict=False):
                column.add(cell)
    return columns, rows


def profile_parquet(path: Path) -> tuple[list[ColumnStats], int]:
    """Read a Parquet output back, a row group at a time."""
    # imported by name: pyarrow is optional and ships no type information
    parquet: Any = importlib.import_module("pyarrow.parquet")
    handle = parquet.ParquetFile(path)
    columns = [ColumnStats(name) for name in handle.schema_arrow.names]
    rows = 0
    for index in range(handle.num_row_groups):
        table = handle.read_row_group(index)
        rows += table.num_rows
        for column, array in zip(columns, table.columns, strict=True):
            for value in array.to_pylist():
                column.add(None if value is None else _text(value))
    return columns, rows


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


_CLASSIC = {
    "block_id": ("block.id", "field"),
    "block_name": ("block.name", "field"),
    "participant_id": ("participant.id", "field"),
    "participant_country": ("participant.country_code", "field"),
    "participant_access_info": ("participant.access_info", "field"),
    "session_start": ("session.started_at", "field"),
    "session_end": ("session.finished_at", "field"),
    "final_score": ("session.final_score", "field"),
    "section_name": ("song.name", "field of the result's section's song"),
    "result_created_at": ("result.created_at", "field"),
    "result_score": ("result.score", "field"),
    "result_comment": ("result.comment", "field"),
    "expected_response": ("result.expected_response", "field"),
    "given_response": ("result.given_response", "field"),
    "question_key": ("result.question_key", "field"),
    "decision_time": ("result.json_data: decision_time", "json path"),
    "result_config": ("result.json_data: config", "json path, Python repr"),
    "result_data": ("result.json_data", "whole document, Python repr"),
    "session_data": ("session.json_data", "whole document, Python repr"),
    # MUSCLE's 2026 dashboard CSV
    "session__id": ("session.id", "field"),
    "participant__id": ("participant.id", "field"),
    "participant__country_code": ("participant.country_code", "field"),
    "created_at": ("result.created_at", "field"),
    "score": ("result.score", "field"),
    "section__song__name": ("song.name", "field of the result's section's song"),
    "section__song__artist": ("song.artist", "field of the result's section's song"),
    "section__tag": ("section.tag", "field"),
    "section__group": ("section.group", "field"),
}
_PREFIXES = (
    ("result_json.", "result.json_data", "flatten"),
    ("session_json.", "session.json_data", "flatten"),
    ("profile_score.", "profile answer's score", "profile answer by question_key"),
    ("profile.", "profile answer's given_response", "profile answer by question_key"),
)
_MODELS = ("experiment", "block", "session", "participant", "result", "section", "song")


def column_info(name: str) -> ColumnInfo:
    """Where a column of our tables comes from, by the naming rules of docs/csv.md and
    MUSCLE's classic and dashboard columns (docs/muscle-quirks.md)."""
    base, numbered = name, ""
    head, dot, rest = name.partition(".")
    dash_head, dash, dash_rest = name.partition("-")
    if dot and head.isdigit():
        base, numbered = rest, f"result {int(head)} of the row's session; "
    elif dash and dash_head.isdigit():
        base, numbered = dash_rest, f"result {int(dash_head)} of the row's session; "
    for prefix, origin, rule in _PREFIXES:
        if base.startswith(prefix):
            return ColumnInfo(
                name=name, origin=origin, path=base[len(prefix) :], rule=numbered + rule
            )
    if base in _CLASSIC:
        origin, rule = _CLASSIC[base]
        return ColumnInfo(name=name, origin=origin, rule=numbered + rule)
    model, _, field = base.partition("_")
    if model in _MODELS and field:
        return ColumnInfo(name=name, origin=f"{model}.{field}", rule=numbered + "field")
    if base.endswith("_score"):
        return ColumnInfo(
            name=name,
            origin="profile answer's score (MUSCLE classic)",
            path=base[: -len("_score")],
            rule=numbered + "classic namespace",
        )
    return ColumnInfo(
        name=name,
        origin="profile answer or session.json_data key (MUSCLE classic)",
        path=base,
        rule=numbered + "classic namespace: top-level key or question_key",
    )


def origin_of(name: str, info: ColumnInfo | None = None) -> str:
    """A column's origin as one line of text.

    :param info: what the sink reported about the column; without it, the origin is
        read from the column's name (:func:`column_info`).
    """
    info = info or column_info(name)
    text = f"{info.origin}: {info.path}" if info.path else info.origin
    if info.key is not None:
        by = {"number": "result", "session": "session"}.get(info.key_by or "", info.key_by)
        text += f" (under {by} {info.key})"
    return text


def header_of(path: Path, suffix: str | None = None) -> list[str]:
    """The column names of a CSV or Parquet file (empty for other files).

    :param suffix: the file's kind when ``path`` is a temporary name (``.csv``).
    """
    suffix = suffix or path.suffix
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return next(csv.reader(fh), [])
    if suffix == ".parquet":
        parquet: Any = importlib.import_module("pyarrow.parquet")
        return list(parquet.read_schema(path).names)
    return []


class QuestionCollector:
    """Sees the results of a run and keeps each question's text and choice labels."""

    def __init__(self) -> None:
        self.found = DataScan()

    def add(self, batch: Iterable[Result]) -> None:
        """Look at a batch of results."""
        for result in batch:
            self.found.question_keys[result.question_key] += 1
            note_question(self.found, result.question_key, result.json_data)


@attrs.frozen(kw_only=True)
class Resource:
    """One table of the package."""

    name: str
    path: str
    format: str
    columns: tuple[ColumnStats, ...]
    rows: int
    #: what the sink reported about each column, by name
    infos: dict[str, ColumnInfo] = attrs.field(factory=dict)

    def origin(self, column: ColumnStats) -> str:
        """The origin of one of the resource's columns, as one line."""
        return origin_of(column.name, self.infos.get(column.name))


def describe_outputs(written: Sequence[tuple[OutputReport, Path]], folder: Path) -> list[Resource]:
    """Profile every tabular output (``written`` pairs each report with the file as it
    is now, before the rename)."""
    resources: list[Resource] = []
    for report, current in written:
        suffix = report.path.suffix
        if suffix == ".csv":
            columns, rows = profile_csv(current)
        elif suffix == ".parquet":
            columns, rows = profile_parquet(current)
        else:
            continue
        try:
            shown = str(report.path.absolute().relative_to(folder))
        except ValueError:
            shown = str(report.path.absolute())
        name = "".join(c if c.isalnum() or c in "-._" else "-" for c in shown.lower())
        resources.append(
            Resource(
                name=name,
                path=shown,
                format=suffix[1:],
                columns=tuple(columns),
                rows=rows,
                infos={info.name: info for info in report.columns},
            )
        )
    return resources


def _field(column: ColumnStats, resource: Resource) -> dict[str, Any]:
    field: dict[str, Any] = {
        "name": column.name,
        "type": column.type,
        "description": resource.origin(column),
    }
    if column.type == "boolean":
        pair = next(p for p in _TRUE_FALSE if set(column.distinct) <= p)
        field["trueValues"] = [v for v in pair if v.lower() == "true"]
        field["falseValues"] = [v for v in pair if v.lower() == "false"]
    return field


def datapackage(resources: Sequence[Resource], title: str) -> dict[str, Any]:
    """A Frictionless Data Package describing ``resources``: a Table Schema per table
    with types, missing values, a primary key where a key column is unique, and foreign
    keys to other tables of the package that have that key."""
    keys: dict[str, str] = {}
    for resource in (r for r in resources if r.format == "csv"):
        for key in _KEYS:
            column = next((c for c in resource.columns if c.name == key), None)
            if column is not None and column.unique and column.missing == 0 and resource.rows:
                keys[resource.name] = key
                break
    package_resources = []
    # Parquet tables are described in codebook.md only: Frictionless reads Parquet through
    # pandas, which turns a nullable integer column into floats with NaN and then fails
    # its own integer check.
    for resource in (r for r in resources if r.format == "csv"):
        schema: dict[str, Any] = {
            "fields": [_field(c, resource) for c in resource.columns],
            "missingValues": [""],
        }
        own_key = keys.get(resource.name)
        if own_key:
            schema["primaryKey"] = [own_key]
        names = {c.name for c in resource.columns}
        foreign = [
            {"fields": [other_key], "reference": {"resource": other, "fields": [other_key]}}
            for other, other_key in keys.items()
            if other != resource.name and other_key in names and other_key != own_key
        ]
        if foreign:
            schema["foreignKeys"] = foreign
        entry: dict[str, Any] = {
            "name": resource.name,
            "path": resource.path,
            "profile": "tabular-data-resource",
            "format": resource.format,
            "schema": schema,
        }
        if resource.format == "csv":
            entry.update({"mediatype": "text/csv", "encoding": "utf-8"})
        package_resources.append(entry)
    return {"name": _slug(title), "title": title, "resources": package_resources}


def _slug(text: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return slug or "export"


def _summary(column: ColumnStats) -> str:
    if not column.values:
        return "no values"
    if not column.overflow:
        shown = ", ".join(f"`{v}` ({n})" for v, n in sorted(column.distinct.items()))
        return f"{len(column.distinct)} distinct: {shown}"
    if column.low is not None and column.type in ("integer", "number", "datetime"):
        return f"range {column.low} to {column.high}"
    if column.type == "string" and column.low is not None:
        # text and numbers together: a range of the numbers alone would mislead
        return f"more than {MAX_DISTINCT} distinct values, text and numbers"
    return f"more than {MAX_DISTINCT} distinct values"


def markdown(resources: Sequence[Resource], questions: DataScan, title: str) -> str:
    """The codebook for people: every column with origin, type, missing count and values,
    then every question with its text and choice labels."""
    lines = [f"# Codebook: {title}", ""]
    for resource in resources:
        lines += [
            f"## {resource.path}",
            "",
            f"{count(resource.rows, 'row')}, {count(len(resource.columns), 'column')}.",
            "",
            "| column | origin | type | missing | values |",
            "|---|---|---|---|---|",
        ]
        for column in resource.columns:
            cell = _summary(column).replace("|", "\\|")
            lines.append(
                f"| `{column.name}` | {resource.origin(column)} | {column.type} |"
                f" {column.missing:,} | {cell} |"
            )
        lines.append("")
    if questions.question_keys:
        lines += [
            "## Questions",
            "",
            "Question texts and choice labels as MUSCLE stored them in the results' json_data.",
            "",
        ]
        for key in sorted(questions.question_keys):
            text = questions.questions.get(key, "")
            lines.append(f"### `{key}`" + (f": {text}" if text else ""))
            lines.append("")
            labels = questions.choices.get(key, {})
            if labels:
                lines += [f"- `{value}`: {label}" for value, label in labels.items()]
            else:
                lines.append(
                    f"{count(questions.question_keys[key], 'result')}; no choices recorded."
                )
            lines.append("")
    return "\n".join(lines)


def write_codebook(
    folder: Path,
    create: Callable[[Path], Path],
    written: Sequence[tuple[OutputReport, Path]],
    questions: DataScan,
    title: str,
) -> list[OutputReport]:
    """Profile the outputs and write datapackage.json and codebook.md through ``create``
    (``OutputSet.create``: atomic, like every output); report both files."""
    resources = describe_outputs(written, folder)
    package = datapackage(resources, title)
    reports = []
    for name, text in (
        (DATAPACKAGE_NAME, json.dumps(package, indent=2, ensure_ascii=False) + "\n"),
        (CODEBOOK_NAME, markdown(resources, questions, title) + "\n"),
    ):
        target = folder / name
        create(target).write_text(text, encoding="utf-8")
        reports.append(OutputReport(path=target, rows=len(resources), sink="codebook"))
    return reports

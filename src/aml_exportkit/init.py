"""``exportkit init``: a starter template written from the data itself.

The template exports one row per trial result with every field and every json_data path the
data holds, and lists in comments each field and each path with its type and how often it
occurs, so that a researcher starts from their own data and deletes what they do not need.
"""

from __future__ import annotations

import os
import textwrap
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import tomli_w

from .contracts import SourceOptions
from .pipeline import open_source
from .plugins import Registry
from .scan import DataScan, JsonScan, scan_graph
from .selection import Selection
from .tabular.options import Columns
from .text import count


def _all_fields() -> dict[str, list[str]]:
    """Every field a table can join, by origin, from the ``Columns`` class."""
    hints = typing.get_type_hints(Columns)
    return {
        field.name: list(typing.get_args(typing.get_args(hints[field.name])[0]))
        for field in attrs.fields(Columns)
    }


def _comment_block(title: str, scan: JsonScan) -> list[str]:
    lines = [f"# {title}: {len(scan.paths)} paths in {scan.documents:,} documents"]
    lines += [f"#   {stats.text}  ({stats.describe(scan.documents)})" for stats in scan.sorted()]
    return lines


def _array(name: str, scans: Sequence[tuple[str, JsonScan]]) -> list[str]:
    """A TOML array with one path per line, its origin, type and frequency as a comment."""
    entries: dict[str, list[str]] = {}
    for origin, scan in scans:
        for stats in scan.sorted():
            entries.setdefault(stats.text, []).append(f"{origin}: {stats.describe(scan.documents)}")
    if not entries:
        return [f"{name} = []"]
    lines = [f"{name} = ["]
    for text, notes in sorted(entries.items()):
        literal = tomli_w.dumps({"x": text}).strip()[len("x = ") :]
        lines.append(f"    {literal},  # {'; '.join(notes)}")
    lines.append("]")
    return lines


def rows_hint(found: DataScan) -> str | None:
    """What a researcher should know about the rows the starter template exports, when the
    default (one row per trial result) would export none."""
    if found.trial.documents:
        return None
    if found.profile.documents:
        return (
            f"the data holds no trial results, only {found.profile.documents:,} profile answers:"
            ' the template exports those (rows = "profile"); with the default rows = "trial"'
            " it would export 0 rows"
        )
    return "the data holds no results at all: the template exports 0 rows"


def render_template(uri: str, blocks: Sequence[str], found: DataScan, slug: str | None) -> str:
    """The starter template's text for data described by ``found``."""
    fields = _all_fields()
    # a questionnaire block has profile answers only: they are the rows then
    profile_rows = not found.trial.documents and bool(found.profile.documents)
    hint = rows_hint(found)
    head: dict[str, Any] = {
        "name": f"{slug or 'block'}-{'answers' if profile_rows else 'trials'}",
        "description": "One row per trial result with every field and json_data path;"
        " written by exportkit init, edit it to taste.",
        "source": {"uri": uri, "blocks": list(blocks)},
    }
    sink: dict[str, Any] = {
        "type": "csv-long",
        "path": "{block}.csv" if blocks else "trials.csv",
        **({"rows": "profile"} if profile_rows else {}),
        "session_json": "columns" if found.session.paths else "omit",
        "result_json": "columns",
        "profile": "columns" if found.profile.documents and not profile_rows else "omit",
    }
    lines = [
        "# A starter template written by `exportkit init` from the data it will export.",
        "# Every field and every json_data path found is listed; delete what you do not",
        "# need. `exportkit check` shows later what changed in the data.",
        *(["#", *(f"# {line}" for line in textwrap.wrap(f"Note: {hint}.", 86))] if hint else []),
        "#",
        f"# Question keys: {len(found.question_keys)}",
        *(f"#   {key}  ({count(n, 'result')})" for key, n in sorted(found.question_keys.items())),
        "#",
        *_comment_block("Session json_data (session_json)", found.session),
        "#",
        *_comment_block(
            "Profile answers' json_data"
            + (" (result_json: the rows)" if profile_rows else " (not exported as columns)"),
            found.profile,
        ),
        "",
        tomli_w.dumps(head).rstrip(),
        "",
        "[[sinks]]",
        tomli_w.dumps(sink).rstrip(),
        "",
        "# Fields joined into each row, by origin; every field there is, in MUSCLE's order.",
        "[sinks.columns]",
        tomli_w.dumps(fields).rstrip(),
        "",
        "[sinks.flatten]",
        'separator = "."',
        'lists = "json"',
        "# json_data paths of the rows' results and of sessions: keep the ones you need.",
        *_array(
            "include",
            [
                ("result", found.profile if profile_rows else found.trial),
                ("session", found.session),
            ],
        ),
        "",
    ]
    return "\n".join(lines)


def init_template(
    uri: str,
    *,
    blocks: Sequence[str] = (),
    registry: Registry | None = None,
    template_folder: Path | None = None,
) -> tuple[str, str | None]:
    """Scan the source and return a starter template's text, and a hint when its rows are
    not the trial results (:func:`rows_hint`).

    :param template_folder: where the template will live; a source path is written
        relative to it (templates resolve ``[source] uri`` from their own folder).
    :raises ExportkitError: when the source cannot be read.
    """
    with (
        open_source(
            uri, options=SourceOptions(missing_sections="keep"), registry=registry
        ) as opened,
        opened.read(Selection(blocks=tuple(blocks))) as graph,
    ):
        slugs = [b.slug for b in graph.blocks.values() if b.slug]
        found = scan_graph(graph)
    shown_blocks = list(blocks) or slugs[:1]
    shown_uri = uri
    if "://" not in uri:
        folder = (template_folder or Path.cwd()).absolute()
        shown_uri = os.path.relpath(Path(uri).absolute(), folder)
    text = render_template(
        shown_uri, shown_blocks, found, shown_blocks[0] if shown_blocks else None
    )
    return text, rows_hint(found)

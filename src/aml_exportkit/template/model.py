"""The template's shape, as frozen attrs classes.

``docs/templates.md`` documents every key here; a test keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs

from ..privacy import PrivacyTable
from ..selection import Filter


@attrs.frozen(kw_only=True)
class SourceTable:
    """``[source]``: where the data comes from.

    :param uri: a fixture zip's path (relative to the template's folder) or a
        ``postgresql://`` URI; ``--source`` on the command line overrides it.
    :param uris: several sources, exported into one table (instead of ``uri``): zips,
        databases, or both. Each zip contributes its own block; a database the blocks
        named in ``blocks``. An object two sources both hold is kept once; a primary key
        they hold with different content is an error. ``--source``, repeated, overrides it.
    :param blocks: block slugs; a fixture zip holds one block, and a slug given here names
        it. ``--block`` overrides it.
    :param missing_sections: what to do with a result whose section is not exported:
        ``"error"`` or ``"keep"`` (keep the id and count it in the report).
    """

    uri: str | None = None
    uris: tuple[str, ...] = ()
    blocks: tuple[str, ...] = ()
    missing_sections: Literal["error", "keep"] = "error"


@attrs.frozen(kw_only=True)
class SinkTable:
    """One ``[[sinks]]`` entry.

    :param type: the sink's name, e.g. ``fixture-json``.
    :param path: the output file; ``{block}`` expands to the block slug. Relative to
        ``--out`` when given (and then inside it), else to the template's folder (a
        builtin template's: the current folder).
    :param options: the sink's own keys, validated against its options class.
    """

    type: str
    path: str
    options: Any = None


@attrs.frozen(kw_only=True)
class Template:
    """A whole template.

    :param extends: a template to start from: a builtin template's name or a file path
        (relative to this template's folder). Tables merge key by key, ``[[sinks]]``
        entries merge by position, and this template's values win.
    :param name: a short name for listings.
    :param description: what the template is for.
    :param source: the ``[source]`` table.
    :param filter: the ``[filter]`` table.
    :param privacy: the ``[privacy]`` table: pseudonymised and dropped identifiers.
    :param manifest: write the manifest (versions, template, source, checksums of every
        output) beside the outputs.
    :param manifest_name: the manifest's file name; ``{block}`` expands to the block slug
        (several blocks' slugs joined by ``+``). Builtin templates name it after
        themselves, so that runs of different templates into one folder keep theirs.
    :param codebook: also write ``datapackage.json`` (a Frictionless Data Package) and
        ``codebook.md`` describing every column of the CSV and Parquet outputs and every
        question with its choice labels.
    :param jobs: worker processes for the engine (a whole number, at least 1); without it,
        one per CPU the run may use. The environment variable ``EXPORTKIT_JOBS`` and
        ``exportkit run --jobs`` override it (the option wins). The outputs are the same
        for any number.
    :param sinks: the ``[[sinks]]`` entries, at least one.
    :param file: where it was loaded from (a path, or a builtin template's name).
    :param text: the TOML text it was parsed from.
    :param folder: the folder relative paths are resolved against.
    """

    extends: str | None = None
    name: str | None = None
    description: str | None = None
    source: SourceTable = SourceTable()
    filter: Filter = Filter()
    privacy: PrivacyTable = PrivacyTable()
    manifest: bool = True
    manifest_name: str = "manifest.json"
    codebook: bool = False
    jobs: int | None = None
    sinks: tuple[SinkTable, ...] = ()
    file: str = attrs.field(default="<template>", metadata={"internal": True})
    text: str = attrs.field(default="", metadata={"internal": True}, repr=False)
    folder: Path = attrs.field(factory=Path.cwd, metadata={"internal": True})

    def evolve(self, **changes: Any) -> Template:
        """A copy with ``changes`` applied."""
        return attrs.evolve(self, **changes)

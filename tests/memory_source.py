"""A source plugin that serves a graph held in memory: for tests, and as an example of
how small a source can be."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from aml_exportkit import SourceSpec, hookimpl
from aml_exportkit.contracts import Inventory, SourceOptions
from aml_exportkit.graph import GraphBuilder, RecordGraph, SourceInfo
from aml_exportkit.records import Result
from aml_exportkit.selection import Selection

PROVIDED = frozenset({"block", "session", "participant", "section", "song", "feedback"})


class MemorySource:
    """Serves ``tables`` (model key → records) and ``results``."""

    def __init__(self, tables: dict[str, Sequence[Any]], results: Sequence[Result]) -> None:
        self.tables = tables
        self.results = results

    def inspect(self) -> Inventory:
        return Inventory(
            kind="memory",
            location="memory:",
            schema_version="test",
            blocks=(),
            counts={k: len(v) for k, v in self.tables.items()},
        )

    @contextlib.contextmanager
    def read(self, selection: Selection) -> Iterator[RecordGraph]:
        builder = GraphBuilder(
            SourceInfo(kind="memory", location="memory:", schema_version="test", provided=PROVIDED)
        )
        for key, records in self.tables.items():
            for record in records:
                builder.add(key, record, f"memory {key}")
        profiles = sorted(
            (r for r in self.results if r.session is None), key=lambda r: (r.participant, r.pk)
        )
        trials = sorted(
            (r for r in self.results if r.session is not None), key=lambda r: (r.session, r.pk)
        )
        yield builder.build(profile_results=lambda: [profiles], trial_results=lambda: [trials])

    def close(self) -> None:
        pass

    def __enter__(self) -> MemorySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemoryPlugin:
    """A plugin object serving one :class:`MemorySource` at ``memory:``."""

    def __init__(self, source: MemorySource) -> None:
        self.source = source

    @hookimpl
    def exportkit_register_sources(self) -> list[SourceSpec]:
        def open_(uri: str, options: SourceOptions) -> MemorySource:
            return self.source

        return [
            SourceSpec(
                name="memory",
                description="records held in memory (tests)",
                claims=lambda uri: uri.startswith("memory:"),
                open=open_,
            )
        ]

"""A third-party-style sink plugin for tests: writes one line per trial result."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from aml_exportkit import BaseSink, OutputReport, SinkSpec, hookimpl
from aml_exportkit.records import Result


@attrs.frozen(kw_only=True)
class LinesOptions:
    """Options of the ``lines`` sink."""

    prefix: str = ""


class LinesSink(BaseSink):
    """Writes ``<prefix><result pk>`` per trial result."""

    def begin(self, graph: object) -> None:
        self.temp = self.context.temp_path()
        self.file = self.temp.open("w", encoding="utf-8")
        self.rows = 0

    def write_results(self, batch: Sequence[Result]) -> None:
        for result in batch:
            self.file.write(f"{self.context.options.prefix}{result.pk}\n")
        self.rows += len(batch)

    def finish(self) -> Sequence[OutputReport]:
        self.file.close()
        return (OutputReport(path=self.context.target, rows=self.rows),)

    def abort(self) -> None:
        self.file.close()


@hookimpl
def exportkit_register_sinks() -> list[SinkSpec]:
    return [
        SinkSpec(
            name="lines",
            description="one line per trial result (test plugin)",
            options=LinesOptions,
            factory=LinesSink,
            extensions=(".txt",),
            needs_profiles=False,
        )
    ]

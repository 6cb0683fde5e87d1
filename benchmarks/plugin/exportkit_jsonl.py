"""The plugin guide's worked example sink (docs/plugin-guide.md), importable without installing.

``type = "jsonl"`` writes one JSON object per trial result. The benchmark loads it with

    PYTHONPATH=benchmarks/plugin EXPORTKIT_PLUGINS=exportkit_jsonl exportkit run ...

(``EXPORTKIT_PLUGINS`` registers importable modules as plugins, see ``aml_exportkit.plugins``),
so that the cost of a third-party sink written to today's documented API is measured as such.
Keep it the same as the guide's example: that example is what the target is about.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from aml_exportkit import BaseSink, OutputReport, SinkSpec, hookimpl
from aml_exportkit.records import Result


@attrs.frozen(kw_only=True)
class JsonlOptions:
    """Options of the jsonl sink.

    :param with_json_data: include each result's json_data.
    """

    with_json_data: bool = True


class JsonlSink(BaseSink):
    """One JSON object per trial result."""

    def begin(self, graph: Any) -> None:
        self.graph = graph
        # Only the temporary path: it is renamed into place once every sink has finished.
        self.file = self.context.temp_path().open("w", encoding="utf-8")
        self.rows = 0

    def write_results(self, batch: Sequence[Result]) -> None:
        keep = self.context.options.with_json_data
        for result in batch:
            session = self.graph.sessions[result.session]
            row = {
                "result": result.pk,
                "session": result.session,
                "participant": session.participant,
                "created_at": result.created_at.isoformat(),
                "given_response": result.given_response,
                "score": result.score,
            }
            if keep:
                row["json_data"] = result.json_data
            self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
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
            name="jsonl",
            description="one JSON object per trial result",
            options=JsonlOptions,
            factory=JsonlSink,
            extensions=(".jsonl",),
            needs_profiles=False,
        )
    ]

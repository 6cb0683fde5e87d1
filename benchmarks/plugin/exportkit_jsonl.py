"""The plugin guide's worked example sink (docs/plugin-guide.md), importable without installing.

``type = "jsonl"`` writes one JSON object per trial result. The benchmark loads it with

    PYTHONPATH=benchmarks/plugin EXPORTKIT_PLUGINS=exportkit_jsonl exportkit run ...

(``EXPORTKIT_PLUGINS`` registers importable modules as plugins, see ``aml_exportkit.plugins``),
so that the cost of a third-party sink that takes rows (through the row adapter, in the
engine's workers: ``encode_result_batch``) is measured as such. Below this
docstring it is the guide's example, character for character (``tests/test_docs.py``
checks it): that example is what the target is about.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from aml_exportkit import BaseSink, OutputReport, ResultBatch, SinkSpec, hookimpl, result_rows
from aml_exportkit.records import Result


@attrs.frozen(kw_only=True)
class JsonlOptions:
    """:param with_json_data: include each result's json_data."""

    with_json_data: bool = True


class JsonlSink(BaseSink):
    """One JSON object per trial result."""

    def begin(self, graph: Any) -> None:
        self.sessions = graph.sessions
        # Only the temporary path: it is renamed into place once every sink has finished.
        self.file = self.context.temp_path().open("wb")
        self.rows = 0
        self.encode = json.JSONEncoder(ensure_ascii=False).encode  # one, not one per row

    def encode_result_batch(self, batch: ResultBatch) -> bytes:
        # In the engine's worker processes, on their copy of the sink (forked after begin).
        return "".join(map(self.line, result_rows(batch))).encode("utf-8")

    def write_encoded(self, data: bytes, rows: int) -> None:  # here, batch after batch
        self.file.write(data)
        self.rows += rows

    def line(self, r: Result) -> str:
        row = {"result": r.pk, "session": r.session,
               "participant": self.sessions[r.session].participant,
               "created_at": r.created_at.isoformat(),
               "given_response": r.given_response, "score": r.score}
        if self.context.options.with_json_data:
            row["json_data"] = r.json_data
        return self.encode(row) + "\n"

    def finish(self) -> Sequence[OutputReport]:
        self.file.close()
        return (OutputReport(path=self.context.target, rows=self.rows),)

    def abort(self) -> None:
        self.file.close()


@hookimpl
def exportkit_register_sinks() -> list[SinkSpec]:
    return [SinkSpec(name="jsonl", description="one JSON object per trial result",
                     options=JsonlOptions, factory=JsonlSink, extensions=(".jsonl",),
                     needs_profiles=False)]

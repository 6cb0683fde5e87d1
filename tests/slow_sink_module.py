"""A sink plugin that creates its temporary file and then waits: for signal tests.

Loaded in a subprocess with EXPORTKIT_PLUGINS=slow_sink_module.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import attrs

from aml_exportkit import BaseSink, OutputReport, SinkSpec, hookimpl


@attrs.frozen(kw_only=True)
class SlowOptions:
    """Options of the slow sink.

    :param seconds: how long to wait after creating the temporary file.
    """

    seconds: float = 60.0


class SlowSink(BaseSink):
    def begin(self, graph: object) -> None:
        temp = self.context.temp_path()
        temp.write_text("partial", encoding="utf-8")
        marker = os.environ.get("SLOW_SINK_MARKER")
        if marker:
            with open(marker, "w", encoding="utf-8") as fh:
                fh.write(str(temp))
        time.sleep(self.context.options.seconds)

    def finish(self) -> Sequence[OutputReport]:
        return (OutputReport(path=self.context.target, rows=0),)


class FailingSink(BaseSink):
    def begin(self, graph: object) -> None:
        self.context.temp_path().write_text("partial", encoding="utf-8")

    def finish(self) -> Sequence[OutputReport]:
        raise OSError(28, "No space left on device")


@hookimpl
def exportkit_register_sinks() -> list[SinkSpec]:
    return [
        SinkSpec(name="slow", description="waits (tests)", options=SlowOptions, factory=SlowSink),
        SinkSpec(
            name="failing",
            description="fails at the end (tests)",
            options=SlowOptions,
            factory=FailingSink,
        ),
    ]

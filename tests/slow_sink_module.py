"""Sink plugins for signal and failure tests: one that waits until the process is
signalled, one that fails at the end.

Loaded in a subprocess with EXPORTKIT_PLUGINS=slow_sink_module. The waiting sink says that
it waits, so that a test waits for that event and never for a length of time: a line
``WAITING`` + its temporary file's path on stderr, and the same path in the file that
``SLOW_SINK_MARKER`` names (written whole, by rename), when that variable is set.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Literal

import attrs

from aml_exportkit import BaseSink, OutputReport, SinkSpec, hookimpl
from aml_exportkit.records import Result

#: How the waiting sink's line on stderr begins.
WAITING = "slow sink waits: "


@attrs.frozen(kw_only=True)
class SlowOptions:
    """Options of the slow sink.

    :param stage: wait in ``begin`` (before any sink got a result), at the first batch
        of trial results (every sink before this one has written that batch), or in
        ``finish`` (every sink before this one has finished its file, none is in place).
    """

    stage: Literal["begin", "results", "finish"] = "begin"


class SlowSink(BaseSink):
    def begin(self, graph: object) -> None:
        self.temp = self.context.temp_path()
        self.temp.write_text("partial", encoding="utf-8")
        if self.context.options.stage == "begin":
            self._wait()

    def write_results(self, batch: Sequence[Result]) -> None:
        if self.context.options.stage == "results":
            self._wait()

    def _wait(self) -> None:
        # Wait on a pipe that the C-level signal handler writes to: a signal that arrives
        # before the process blocks still wakes it (signal.pause() would miss it and sleep
        # for ever). The handler itself (SIGINT, SIGTERM) then raises.
        wake, woken = os.pipe()
        os.set_blocking(woken, False)
        signal.set_wakeup_fd(woken)
        marker = os.environ.get("SLOW_SINK_MARKER")
        if marker:
            with open(f"{marker}.part", "w", encoding="utf-8") as fh:
                fh.write(str(self.temp))
            os.replace(f"{marker}.part", marker)
        print(f"{WAITING}{self.temp}", file=sys.stderr, flush=True)
        while True:  # until a signal's handler raises, or SIGKILL
            os.read(wake, 1)

    def finish(self) -> Sequence[OutputReport]:
        if self.context.options.stage == "finish":
            self._wait()
        return (OutputReport(path=self.context.target, rows=0),)


def wait_until_waiting(process: subprocess.Popen[str]) -> str:
    """Read the process's stderr until the slow sink says it waits; fail if the process
    ends first.

    :return: the path of the slow sink's temporary file.
    """
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        if line.startswith(WAITING):
            return line[len(WAITING) :].rstrip("\n")
        seen.append(line)
    process.wait()
    raise AssertionError(f"the export ended (exit code {process.returncode}): {''.join(seen)}")


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

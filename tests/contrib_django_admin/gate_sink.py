"""A sink that stops at gates the test opens, so a test can look at a running job.

Loaded with ``EXPORTKIT_PLUGINS=contrib_django_admin.gate_sink`` (``tests/`` on the path).
Before its n-th ``write_results`` call in a process, the sink waits at the FIFO
``<gate>/results-<n>``, and before its n-th ``finish`` at ``<gate>/finish-<n>``, when
that FIFO exists: it reads it until the test closes its end (:class:`Gates`). Without the
FIFOs (a preview, say) it does not wait.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from aml_exportkit import BaseSink, OutputReport, SinkSpec, hookimpl

#: Calls so far in this process, over all blocks (a run makes one sink per block).
_CALLS: dict[str, Iterator[int]] = {
    "results": itertools.count(1),
    "finish": itertools.count(1),
}


@attrs.frozen(kw_only=True)
class GateOptions:
    """Options of the gated sink.

    :param gate: the folder of the FIFOs.
    """

    gate: str = ""


class GatedSink(BaseSink):
    def begin(self, graph: object) -> None:
        self.rows = 0
        self.context.temp_path().write_text("gated\n", encoding="utf-8")

    def _wait(self, kind: str) -> None:
        fifo = Path(self.context.options.gate) / f"{kind}-{next(_CALLS[kind])}"
        if self.context.options.gate and fifo.exists():
            fifo.read_bytes()  # returns when the test closes its end

    def write_results(self, batch: Sequence[Any]) -> None:
        self._wait("results")
        self.rows += len(batch)

    def finish(self) -> Sequence[OutputReport]:
        self._wait("finish")
        return (OutputReport(path=self.context.target, rows=self.rows),)


@hookimpl
def exportkit_register_sinks() -> list[SinkSpec]:
    return [
        SinkSpec(
            name="gated",
            description="waits at the test's gates (tests)",
            options=GateOptions,
            factory=GatedSink,
        )
    ]


def gated_template(gate: Path, path: str = "{block}.txt") -> str:
    """A template with one gated sink."""
    return f'[[sinks]]\ntype = "gated"\npath = "{path}"\ngate = "{gate}"\n'


class Gates:
    """The test's end of the gates in one folder.

    :param folder: the folder (created).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.held: dict[str, int] = {}

    def add(self, *names: str) -> None:
        """Make the FIFOs ``names`` (e.g. ``results-2``): the sink will wait there."""
        for name in names:
            os.mkfifo(self.folder / name, 0o600)

    def arrive(self, name: str) -> None:
        """Return once the sink waits at gate ``name``, holding it closed. No deadline:
        the sink opening the FIFO is the event waited for."""
        while True:
            try:
                # ENXIO as long as no reader has the FIFO open: the sink is not there yet.
                self.held[name] = os.open(self.folder / name, os.O_WRONLY | os.O_NONBLOCK)
                return
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
            time.sleep(0.02)  # between tries only

    def release(self, name: str) -> None:
        """Let the sink go on from gate ``name``."""
        os.close(self.held.pop(name))

    def close(self) -> None:
        """Open every gate (after a failed test: no worker stays blocked)."""
        for name in list(self.held):
            self.release(name)
        for fifo in self.folder.iterdir():
            with contextlib.suppress(OSError):  # a sink waiting there already goes on
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            fifo.unlink()  # a sink that has not come to it yet passes by

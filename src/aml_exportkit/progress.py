"""Progress of a long export: rows done, rate, estimated time left.

The library reports through the :class:`Progress` protocol and never writes to a terminal
itself; the CLI supplies :class:`TerminalProgress` when stderr is a terminal.
"""

from __future__ import annotations

import time
from typing import Literal, Protocol, TextIO

#: What an export is doing: reading the source and feeding the sinks, the sinks writing
#: their files, writing the codebook, writing the manifest (and moving the outputs into
#: place). A run may read and write several times, once per block.
Phase = Literal["reading", "writing", "codebook", "manifest"]


class Progress(Protocol):
    """Receives the running count of trial results written, and the phase of the run."""

    def update(self, done: int, expected: int | None) -> None:
        """``done`` results so far; ``expected`` is the source's estimate of the total,
        if it has one."""

    def phase(self, name: Phase) -> None:
        """The run entered phase ``name``; the row count stays where it was until the
        next :meth:`update`."""

    def finish(self) -> None:
        """The export ended (successfully or not)."""


class NullProgress:
    """Shows nothing."""

    def update(self, done: int, expected: int | None) -> None:
        """Ignore the update."""

    def phase(self, name: Phase) -> None:
        """Ignore the phase."""

    def finish(self) -> None:
        """Nothing to clear."""


def format_duration(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe(done: int, expected: int | None, elapsed: float) -> str:
    """One status line: rows, rate and, with an estimate, percent and time left."""
    rate = done / elapsed if elapsed > 0 else 0.0
    text = f"{done:,} rows  {rate:,.0f} rows/s"
    if expected and expected >= done and rate > 0:
        text += f"  {100 * done / expected:.0f}%  ETA {format_duration((expected - done) / rate)}"
    return text


class TerminalProgress:
    """Rewrites one status line on a terminal, at most a few times a second.

    :param stream: the terminal (usually stderr).
    :param interval: the least number of seconds between two redraws.
    """

    def __init__(self, stream: TextIO, interval: float = 0.25) -> None:
        self.stream = stream
        self.interval = interval
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.width = 0

    def update(self, done: int, expected: int | None) -> None:
        """Redraw the line if the interval has passed."""
        now = time.monotonic()
        if now - self.last_draw < self.interval:
            return
        self.last_draw = now
        line = describe(done, expected, now - self.started)
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def phase(self, name: Phase) -> None:
        """Nothing to show: the line keeps the rows read, and the run ends soon after."""

    def finish(self) -> None:
        """Clear the status line."""
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()

"""Rows parked on disk between the two passes of a sink.

The header of a flattened table is known only after the last result (a new ``json_data``
path can appear anywhere), so the sinks write rows here in the first pass and read them back
in the second. Rows are pickled in batches into an anonymous temporary file (in ``TMPDIR``):
pickle keeps floats, datetimes and ``None`` exactly and is the fastest round trip the
standard library offers.
"""

from __future__ import annotations

import pickle
import sqlite3
import tempfile
from collections.abc import Iterator
from typing import IO, Any

#: Rows per pickled batch: large enough that pickle's per-call cost vanishes, small enough
#: to stay a few megabytes.
BATCH_ROWS = 2048
#: Values per batch at most: a wide row holds thousands (80 results × 45 columns), and
#: 2048 of them as Python objects would take hundreds of megabytes.
BATCH_CELLS = 1 << 18
#: Bytes of pickled rows an SQLite spill keeps before it inserts them.
BATCH_BYTES = 8 << 20


def _cells(row: Any) -> int:
    """About how many values ``row`` holds (a dict, a sequence, or a pair of them)."""
    if isinstance(row, dict):
        return len(row)
    if isinstance(row, tuple | list):
        if len(row) == 2 and isinstance(row[1], dict):
            return len(row[0]) + len(row[1]) if isinstance(row[0], tuple | list) else len(row[1])
        return len(row)
    return 1


class Spill:
    """An append-only sequence of rows in a temporary file; read back once, in order."""

    def __init__(self) -> None:
        # closed by close(); it outlives this call by design
        self._file: IO[bytes] | None = tempfile.TemporaryFile(prefix="exportkit-spill-")  # noqa: SIM115
        self._batch: list[Any] = []
        self._cells = 0
        self.count = 0

    def append(self, row: Any) -> None:
        """Add one row."""
        self._batch.append(row)
        self._cells += _cells(row)
        if len(self._batch) >= BATCH_ROWS or self._cells >= BATCH_CELLS:
            self._flush()

    def __len__(self) -> int:
        return self.count + len(self._batch)

    def _flush(self) -> None:
        if self._batch and self._file is not None:
            pickle.dump(self._batch, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self.count += len(self._batch)
            self._batch = []
            self._cells = 0

    def __iter__(self) -> Iterator[Any]:
        self._flush()
        assert self._file is not None, "spill already closed"
        file = self._file
        file.seek(0)
        while True:
            try:
                batch = pickle.load(file)
            except EOFError:
                return
            yield from batch

    def close(self) -> None:
        """Delete the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


class GroupSpill:
    """Rows keyed by (group, order) in a temporary SQLite database, read back grouped and
    ordered; SQLite sorts on disk, so grouping (e.g. a participant's sessions, which arrive
    spread over the export) needs no memory that grows with the export."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="exportkit-spill-")
        self._db = sqlite3.connect(f"{self._dir.name}/rows.sqlite3")
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE rows (grp INTEGER, ord INTEGER, data BLOB)")
        self._pending: list[tuple[int, int, bytes]] = []
        self._bytes = 0
        self.count = 0
        # Whether the rows came in (group, order) order already (a wide table's rows per
        # session do): then reading them back needs no sort of gigabytes on disk.
        self._sorted = True
        self._last: tuple[int, int] | None = None

    def append(self, group: int, order: int, row: Any) -> None:
        """Add ``row`` to ``group`` at position ``order``."""
        key = (group, order)
        if self._last is not None and key < self._last:
            self._sorted = False
        self._last = key
        data = pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)
        self._pending.append((group, order, data))
        self._bytes += len(data)
        self.count += 1
        if len(self._pending) >= BATCH_ROWS or self._bytes >= BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany("INSERT INTO rows VALUES (?, ?, ?)", self._pending)
            self._pending = []
            self._bytes = 0

    def groups(self) -> Iterator[tuple[int, list[Any]]]:
        """Each group with its rows in order, groups in ascending order."""
        self._flush()
        order = "rowid" if self._sorted else "grp, ord"
        cursor = self._db.execute(f"SELECT grp, data FROM rows ORDER BY {order}")
        current: int | None = None
        rows: list[Any] = []
        for group, data in cursor:
            if group != current:
                if current is not None:
                    yield current, rows
                current, rows = group, []
            rows.append(pickle.loads(data))
        if current is not None:
            yield current, rows

    def close(self) -> None:
        """Delete the database."""
        self._db.close()
        self._dir.cleanup()

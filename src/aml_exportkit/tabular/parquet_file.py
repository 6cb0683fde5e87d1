"""A Parquet file written row group by row group, whose footer waits on disk, not in memory.

pyarrow's ``ParquetWriter`` keeps every row group's metadata (a column chunk's offsets,
sizes, encodings and statistics: about 850 bytes per column per row group) until
``close``, which then copies it all once more to write the footer. A wide table has
thousands of columns and a row group per few hundred sessions, so that grows with the
export: ≈ 2.6 MB per row group of 3,070 columns, ≈ 0.8 GB at close for 150 row groups.

:class:`ParquetFile` writes the same bytes in bounded memory. Each row group is written by
a ``ParquetWriter`` of its own, straight into the file, told (through ``tell``) the
position its bytes will have in the file, so that every offset in its metadata is already
the file's. That writer's footer (Thrift compact protocol) is then read back and cut up:
its row group goes to a spool file, and the next row group's bytes overwrite the footer.
``close`` writes the file's footer: the first footer's head (version and schema), the
total row count, the spooled row groups with their ordinals, and the first footer's tail
(key-value metadata, ``created_by``, column orders), each part exactly as pyarrow's writer
would have encoded it (the tests compare the files byte for byte).
"""

from __future__ import annotations

import importlib
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

#: The magic bytes at the start and the end of a Parquet file.
MAGIC = b"PAR1"
# Thrift compact protocol: field types (the low nibble of a field's header byte).
_BOOL_TRUE, _BOOL_FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE = 1, 2, 3, 4, 5, 6, 7
_BINARY, _LIST, _SET, _MAP, _STRUCT = 8, 9, 10, 11, 12
# FileMetaData's fields: num_rows (3, i64) and row_groups (4, list<RowGroup>) follow the
# schema (2); a one-element list of structs has the header 0x1C.
_NUM_ROWS_HEADER = 0x10 | _I64
_ROW_GROUPS_HEADER = 0x10 | _LIST
_ONE_STRUCT = 0x10 | _STRUCT
# RowGroup's last field, ordinal (7, i16), follows total_compressed_size (6); then the stop.
_ORDINAL = 7
_ORDINAL_HEADER = 0x10 | _I16
_STOP = 0


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _zigzag(value: int) -> bytes:
    return _varint(value << 1 if value >= 0 else (-value << 1) - 1)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 64:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & (1 << 64) - 1, pos
        shift += 7
    raise ValueError(f"a varint of more than 64 bits at byte {pos}")


def _signed(zigzag: int) -> int:
    return zigzag >> 1 ^ -(zigzag & 1)


#: Nesting deeper than this (lists, maps and structs) is refused; Parquet's has 4 levels.
MAX_DEPTH = 64
#: The i64 fields holding file offsets, by struct: RowGroup.file_offset; ColumnChunk's
#: file_offset, offset_index_offset and column_index_offset; ColumnMetaData's data, index
#: and dictionary page offsets and bloom_filter_offset.
_OFFSETS: dict[str | None, frozenset[int]] = {
    "group": frozenset({5}),
    "chunk": frozenset({2, 4, 6}),
    "meta": frozenset({9, 10, 11, 14}),
    None: frozenset(),
}
#: The structs inside which offsets are: RowGroup.columns, ColumnChunk.meta_data.
_NESTED: dict[str | None, dict[int, str]] = {"group": {1: "chunk"}, "chunk": {3: "meta"}}


class _Walk:
    """A walk over Thrift compact bytes that copies them to ``out`` with every file offset
    (a positive i64 of the fields of :data:`_OFFSETS`) plus ``delta``; the native kernel's
    ``shift_offsets`` (``_speedups.c``) walks the same way."""

    def __init__(self, buf: bytes, delta: int) -> None:
        self.buf = buf
        self.delta = delta
        self.out: list[bytes] = []
        self.copied = 0

    def value(self, pos: int, kind: int, level: str | None, depth: int) -> int:
        """The position after a value of type ``kind`` at ``pos``."""
        buf = self.buf
        if depth > MAX_DEPTH:
            raise ValueError(f"Thrift values nested too deep at byte {pos}")
        if kind in (_BOOL_TRUE, _BOOL_FALSE):
            return pos  # a field's bool is in its header (list elements are one byte: _BYTE)
        if kind == _BYTE:
            return self._within(pos + 1)
        if kind in (_I16, _I32, _I64):
            return _read_varint(buf, pos)[1]
        if kind == _DOUBLE:
            return self._within(pos + 8)
        if kind == _BINARY:
            length, pos = _read_varint(buf, pos)
            return self._within(pos + length)
        if kind in (_LIST, _SET):
            head = buf[pos]
            pos += 1
            count = head >> 4
            if count == 15:
                count, pos = _read_varint(buf, pos)
            element = _BYTE if head & 0x0F in (_BOOL_TRUE, _BOOL_FALSE) else head & 0x0F
            for _ in range(count):
                pos = self.value(pos, element, level, depth + 1)
            return pos
        if kind == _MAP:
            count, pos = _read_varint(buf, pos)
            if not count:
                return pos
            key, value = buf[pos] >> 4, buf[pos] & 0x0F
            pos += 1
            key = _BYTE if key in (_BOOL_TRUE, _BOOL_FALSE) else key
            value = _BYTE if value in (_BOOL_TRUE, _BOOL_FALSE) else value
            for _ in range(count):
                pos = self.value(pos, key, None, depth + 1)
                pos = self.value(pos, value, None, depth + 1)
            return pos
        if kind == _STRUCT:
            return self.struct(pos, level, depth + 1)
        raise ValueError(f"Thrift compact type {kind} at byte {pos}")

    def _within(self, pos: int) -> int:
        if pos > len(self.buf):
            raise ValueError("Thrift value past the end")
        return pos

    def struct(self, pos: int, level: str | None, depth: int) -> int:
        """The position after the struct at ``pos`` (after its stop byte)."""
        if depth > MAX_DEPTH:
            raise ValueError(f"Thrift values nested too deep at byte {pos}")
        buf = self.buf
        offsets, nested = _OFFSETS[level], _NESTED.get(level, {})
        field = 0
        while (head := buf[pos]) != _STOP:
            pos += 1
            kind = head & 0x0F
            if head >> 4:
                field += head >> 4
            else:
                zigzag, pos = _read_varint(buf, pos)
                field = _signed(zigzag)
            if kind == _I64 and field in offsets:
                zigzag, end = _read_varint(buf, pos)
                if (value := _signed(zigzag)) > 0:
                    moved = (value + self.delta + 2**63) % 2**64 - 2**63  # an i64, as in C
                    self.out += (buf[self.copied : pos], _zigzag(moved))
                    self.copied = end
                pos = end
            else:
                pos = self.value(pos, kind, nested.get(field), depth)
        return pos + 1


def _skip_value(buf: bytes, pos: int, kind: int) -> int:
    """The position after a value of Thrift compact type ``kind`` at ``pos``."""
    return _Walk(buf, 0).value(pos, kind, None, 0)


def _fields(buf: bytes, pos: int) -> list[tuple[int, int, int]]:
    """A struct's fields at ``pos``: (field id, start of its header, end of its value)."""
    fields = []
    last = 0
    while (head := buf[pos]) != _STOP:
        start = pos
        pos += 1
        if head >> 4:
            last += head >> 4
        else:
            zigzag, pos = _read_varint(buf, pos)
            last = _signed(zigzag)
        pos = _skip_value(buf, pos, head & 0x0F)
        fields.append((last, start, pos))
    return fields


def shift_offsets(group: bytes, delta: int) -> bytes:
    """A footer's row group (Thrift compact bytes) with every file offset in it (a positive
    one; 0 means none) moved by ``delta``; the native kernel's ``shift_offsets`` is the
    same function in C.

    :raises ValueError: when ``group`` is not one whole Thrift struct.
    """
    walk = _Walk(group, delta)
    try:
        end = walk.struct(0, "group", 0)
    except (IndexError, ValueError):
        raise ValueError("not a Parquet row group (Thrift compact)") from None
    if end != len(group):
        raise ValueError("bytes after the Parquet row group")
    return b"".join([*walk.out, group[walk.copied :]])


def _shifter() -> Callable[[bytes, int], bytes]:
    """The native kernel's :func:`shift_offsets` when it is there, else the Python one."""
    from ..engine import native_kernel

    native = native_kernel()
    return native.shift_offsets if native is not None else shift_offsets


class _Layout:
    """Where a one-row-group footer of this file's schema puts its parts.

    Every row group's footer has the same head (fields before ``num_rows``) and tail
    (fields after ``row_groups``); found by parsing the first footer, checked by comparing
    bytes in every other one.
    """

    def __init__(self, footer: bytes) -> None:
        fields = {field: (start, end) for field, start, end in _fields(footer, 0)}
        if 3 not in fields or 4 not in fields:
            raise ValueError("Parquet footer without num_rows or row_groups")
        self.head = footer[: fields[3][0]]
        self.tail = footer[fields[4][1] :]
        #: whether a row group ends with its ordinal (its number in the file)
        group = footer[fields[4][0] + 2 : fields[4][1]]
        self.ordinal = max(field for field, _, _ in _fields(group, 0)) == _ORDINAL
        self.group_rows(footer)  # checks the layout the other footers are read with

    def group_rows(self, footer: bytes) -> tuple[int, bytes]:
        """The row count and the row group (a whole struct) of one footer."""
        head, tail = self.head, self.tail
        if not (footer.startswith(head) and footer.endswith(tail)):
            raise ValueError("Parquet footer unlike the first one")
        pos = len(head)
        if footer[pos] != _NUM_ROWS_HEADER:
            raise ValueError("Parquet footer: num_rows does not follow the schema")
        zigzag, pos = _read_varint(footer, pos + 1)
        if footer[pos : pos + 2] != bytes((_ROW_GROUPS_HEADER, _ONE_STRUCT)):
            raise ValueError("Parquet footer: not one row group")
        group = footer[pos + 2 : len(footer) - len(tail)]
        if self.ordinal and not group.endswith(self.FIRST):
            raise ValueError("Parquet footer: a row group without ordinal 0 last")
        return zigzag >> 1, group

    #: the end of a row group whose ordinal is 0: the ordinal (field 7), then the stop
    FIRST = bytes((_ORDINAL_HEADER, 0, _STOP))

    def numbered(self, group: bytes, ordinal: int) -> bytes:
        """The row group with its ordinal (when the writer writes one) ``ordinal``."""
        if not self.ordinal or not ordinal:
            return group
        return group[: -len(self.FIRST)] + bytes((_ORDINAL_HEADER,)) + _zigzag(ordinal) + b"\0"


class ParquetFile:
    """A Parquet file at ``path``, written like ``pyarrow.parquet.ParquetWriter`` (same
    bytes) while holding one row group's metadata at a time.

    :param path: the file.
    :param schema: its Arrow schema.
    :param options: the keyword arguments of each row group's ``ParquetWriter``
        (compression, …).

    Every :meth:`write_table` is one row group (tables of at most ``2**20`` rows, the
    writer's own limit); :meth:`close` writes the footer.
    """

    def __init__(self, path: str | os.PathLike[str], schema: Any, **options: Any) -> None:
        self.pa = importlib.import_module("pyarrow")
        self.pq = importlib.import_module("pyarrow.parquet")
        self.path = str(path)
        self.schema = schema
        self.options = options
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        #: the end of the file's last row group (its footer, or the next one, goes there)
        self.end = 0
        self.groups: BinaryIO = tempfile.TemporaryFile(dir=Path(path).parent)  # noqa: SIM115
        self.layout: _Layout | None = None
        self.shift = _shifter()
        self.count = 0
        self.rows = 0

    def _fd(self) -> int:
        if self.fd is None:
            raise ValueError(f"{self.path}: the Parquet file is closed")
        return self.fd

    def write_table(self, table: Any) -> None:
        """Write ``table`` (this file's schema) as one row group."""
        fd = self._fd()
        part = self._part(table)
        size, magic = struct.unpack_from("<i4s", part, len(part) - 8)
        footer_at = len(part) - 8 - size
        if magic != MAGIC or part[:4].to_pybytes() != MAGIC:
            raise ValueError(f"{self.path}: ParquetWriter wrote no Parquet file")
        footer = part[footer_at : footer_at + size].to_pybytes()
        if self.layout is None:
            self.layout = _Layout(footer)
        rows, group = self.layout.group_rows(footer)
        # The part's offsets count from its own magic; its bytes go to ``end``, without it
        # (but for the first part: the file's magic).
        skip = len(MAGIC) if self.end else 0
        delta = self.end - skip
        data = memoryview(part)[skip:footer_at]
        while data:
            written = os.pwrite(fd, data, self.end)
            self.end += written
            data = data[written:]
        if delta:
            group = self.shift(group, delta)
        self.groups.write(self.layout.numbered(group, self.count))
        self.count += 1
        self.rows += rows

    def _part(self, table: Any | None) -> Any:
        """The Parquet file (a buffer) of a ``ParquetWriter`` that wrote ``table`` as its
        one row group, or none for None."""
        sink = self.pa.BufferOutputStream()
        writer = self.pq.ParquetWriter(sink, self.schema, **self.options)
        if table is not None:
            writer.write_table(table)
        writer.close()
        return sink.getvalue()

    def close(self) -> None:
        """Write the footer and close the file."""
        if self.fd is None:
            return
        fd, layout = self.fd, self.layout
        if layout is None:  # no row group: the file of a writer that wrote none
            os.pwrite(fd, self._part(None), 0)
            self._release()
            return
        count = self.count
        groups = bytes((_ROW_GROUPS_HEADER,))
        groups += bytes((count << 4 | _STRUCT,)) if count < 15 else b"\xfc" + _varint(count)
        head = layout.head + bytes((_NUM_ROWS_HEADER,)) + _zigzag(self.rows) + groups
        os.ftruncate(fd, self.end)
        with open(fd, "ab", closefd=False) as fh:
            fh.write(head)
            self.groups.seek(0)
            shutil.copyfileobj(self.groups, fh, 1 << 20)
            fh.write(layout.tail)
            size = fh.tell() - self.end
            fh.write(struct.pack("<i", size) + MAGIC)
        self._release()

    def _release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.groups.close()

    def __enter__(self) -> ParquetFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        else:
            self._release()

"""A chunk of trial results read from PostgreSQL as columns: ``COPY … TO STDOUT`` in
binary format, parsed column by column.

Reading rows through psycopg builds a tuple and a Python value per field through a
loader, and the engine then turns the rows into columns. Here the server sends the same
SELECT as a binary ``COPY``; each CopyData message is taken as it arrives (with
psycopg's C implementation, libpq's buffer itself) and :func:`copy_columns` turns the
messages into one list per column: the values psycopg would give, except that a
``timestamptz`` becomes its text as the CSV writes it (``…T10:26:50.911000+00:00``, as
:func:`~aml_exportkit.engine.chunks.datetime_texts` writes a UTC datetime). About 30 %
less of the worker's CPU per chunk than the rows (decision 0039). The native kernel's
``_speedups.copy_columns`` does the parsing; the Python function below is its reference
(tests/native) and, as it is slower than psycopg's rows, the engine without the kernel
reads rows.

The reading takes only columns whose binary form it knows (:data:`KINDS`), on a UTF-8
connection; anything else (or a message it cannot parse, a timestamp outside the years
2–9998) gives None, and the caller reads rows as before, which gives its values or its
error.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Sequence
from typing import Any

from ..engine import native_kernel

#: Binary COPY's signature, then the flags and the header extension's length (int32 each).
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"

#: The kind of column this reading parses, by PostgreSQL type OID: ``i`` an integer
#: (int2, int4, int8), ``f`` a float8, ``t`` text (text, varchar), ``b`` bytea, ``z`` a
#: timestamptz (as its text).
KINDS = {21: "i", 23: "i", 20: "i", 701: "f", 25: "t", 1043: "t", 17: "b", 1184: "z"}

_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # PostgreSQL's timestamp epoch
_INT = {2: struct.Struct(">h"), 4: struct.Struct(">i"), 8: struct.Struct(">q")}
_FLOAT = struct.Struct(">d")
_COUNT = struct.Struct(">h")
_SIZE = struct.Struct(">i")


def copy_kinds(conn: Any, select: Any, table: str = "result_result r") -> str | None:
    """The kinds (:data:`KINDS`) of the columns of ``SELECT select FROM table``, one
    letter each; None when one is of another type or the connection's encoding is not
    UTF-8 (then rows are read)."""
    from psycopg import sql

    if conn.info.encoding != "utf-8":
        return None
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {} LIMIT 0").format(select, sql.SQL(table)))
        oids = [column.type_code for column in cur.description or ()]
    kinds = [KINDS.get(oid) for oid in oids]
    return "".join(k for k in kinds if k is not None) if oids and None not in kinds else None


def copy_statement(select: Any, group: Sequence[int]) -> Any:
    """The binary COPY of ``select`` for the results of the sessions ``group``, in the
    order the rows are read (``DbTrialResults._query``). COPY takes no parameters: the
    session pks are a literal array (integers only)."""
    from psycopg import sql

    pks = "{" + ",".join(str(int(pk)) for pk in group) + "}"
    return sql.SQL(
        "COPY (SELECT {} FROM result_result r WHERE r.session_id = ANY({}::int8[])"
        " ORDER BY r.session_id, r.id) TO STDOUT (FORMAT binary)"
    ).format(select, sql.Literal(pks))


def copy_messages(conn: Any, statement: Any) -> list[Any]:
    """The CopyData messages of ``COPY … TO STDOUT (FORMAT binary)`` (``statement``), the
    trailer's included.

    psycopg's ``Copy.read`` waits through a Python generator for every message (every row);
    here libpq's ``PQgetCopyData`` is asked without waiting, and ``Copy.read`` only when no
    message has arrived yet. The end of the COPY (after the trailer) is left to
    ``Copy.read``, which takes the command's result and raises the server's error if there
    is one.

    :raises psycopg.Error: the server's error.
    """
    messages: list[Any] = []
    add = messages.append
    with conn.cursor() as cur, cur.copy(statement) as copy:
        get = conn.pgconn.get_copy_data
        while True:
            size, data = get(1)  # (1: do not wait)
            if size == 0:  # nothing arrived yet: psycopg waits for the next message
                data = copy.read()
                if not data:  # the end, without a trailer: copy_columns refuses it
                    return messages
            elif size < 0:  # the end without a trailer (the server's error): psycopg's
                copy.read()  # reading reports it
                return messages
            add(data)
            if _is_last(data, len(messages) == 1):
                break
        while copy.read():  # the end of the COPY (or the server's error)
            add(b"")  # data after the trailer: copy_columns refuses it
    return messages


def _is_last(data: Any, first: bool) -> bool:
    """Whether a message is the trailer's: the trailer alone, or the header and the trailer
    when no row is sent (the server sends each row, then the trailer, as a message of its
    own, the header with the first)."""
    if len(data) == 2:
        return bytes(data) == b"\xff\xff"
    head = len(SIGNATURE) + 8
    if not first or len(data) < head + 2 or bytes(data[: len(SIGNATURE)]) != SIGNATURE:
        return False
    extension = _SIZE.unpack_from(data, len(SIGNATURE) + 4)[0]
    return len(data) == head + extension + 2 and bytes(data[-2:]) == b"\xff\xff"


def copy_columns(messages: Sequence[Any], kinds: str) -> list[list[Any]] | None:
    """The columns of a binary COPY's messages (one list per column, ``kinds`` saying what
    each holds), with the native kernel when it is on; None for anything else than whole
    tuples of ``len(kinds)`` fields of those kinds, header to trailer."""
    kernel = native_kernel()
    if kernel is not None:
        return kernel.copy_columns(messages, kinds)  # type: ignore[no-any-return]
    return copy_columns_reference(messages, kinds)


def copy_columns_reference(messages: Sequence[Any], kinds: str) -> list[list[Any]] | None:
    """:func:`copy_columns` in Python: the kernel's reference."""
    columns: list[list[Any]] = [[] for _ in kinds]
    pairs = list(zip(kinds, columns, strict=True))
    ended = False
    for index, message in enumerate(messages):
        data = bytes(message)
        if not data:
            return None
        pos = 0
        if index == 0:
            if data[: len(SIGNATURE)] != SIGNATURE or len(data) < len(SIGNATURE) + 8:
                return None
            extension = _SIZE.unpack_from(data, len(SIGNATURE) + 4)[0]
            if extension < 0:
                return None
            pos = len(SIGNATURE) + 8 + extension
        while pos < len(data):
            if ended or pos + 2 > len(data):
                return None
            count = _COUNT.unpack_from(data, pos)[0]
            pos += 2
            if count == -1:
                ended = True
                continue
            if count != len(kinds):
                return None
            for kind, column in pairs:
                if pos + 4 > len(data):
                    return None
                size = _SIZE.unpack_from(data, pos)[0]
                pos += 4
                if size == -1:
                    column.append(None)
                    continue
                if size < 0 or pos + size > len(data):
                    return None
                value = _value(kind, data[pos : pos + size])
                if value is None:
                    return None
                column.append(value)
                pos += size
        if pos != len(data):  # (a header longer than its message)
            return None
    return columns if ended else None


def _value(kind: str, field: bytes) -> Any:
    """One field's value (None: not one this reading takes)."""
    if kind == "i":
        packer = _INT.get(len(field))
        return None if packer is None else packer.unpack(field)[0]
    if kind == "f":
        return _FLOAT.unpack(field)[0] if len(field) == 8 else None
    if kind == "t":
        try:
            return field.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if kind == "b":
        return field
    if len(field) != 8:  # "z"
        return None
    try:
        moment = _EPOCH + dt.timedelta(microseconds=_INT[8].unpack(field)[0])
    except OverflowError:
        return None
    if not 2 <= moment.year <= 9998:  # (psycopg's datetimes end at the years 1 and 9999)
        return None
    return moment.isoformat(timespec="microseconds")

"""The binary COPY reading of a database chunk (sources/muscle_db_copy.py): the kernel's
``copy_columns`` is the Python reference's, and both give the values psycopg's rows give."""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from aml_exportkit.engine import native
from aml_exportkit.sources.muscle_db_copy import (
    SIGNATURE,
    copy_columns_reference,
    copy_kinds,
    copy_messages,
    copy_statement,
)

kernel = pytest.importorskip("aml_exportkit.engine._speedups")

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
HEADER = SIGNATURE + struct.pack(">ii", 0, 0)


def _field(kind: str, value: Any) -> bytes:
    if value is None:
        return struct.pack(">i", -1)
    if kind == "i":
        body = struct.pack(">q", value)
    elif kind == "f":
        body = struct.pack(">d", value)
    elif kind == "t":
        body = value.encode("utf-8")
    elif kind == "b":
        body = value
    else:  # "z": microseconds since 2000
        body = struct.pack(">q", value)
    return struct.pack(">i", len(body)) + body


def encode(kinds: str, rows: list[list[Any]]) -> list[bytes]:
    """Rows as the server sends a binary COPY: one message per row, the header with the
    first, the trailer alone."""
    messages = [
        struct.pack(">h", len(row))
        + b"".join(_field(k, v) for k, v in zip(kinds, row, strict=True))
        for row in rows
    ] + [b"\xff\xff"]
    messages[0] = HEADER + messages[0]
    return messages


def _expected(kind: str, value: Any) -> Any:
    if kind == "z" and value is not None:
        return (EPOCH + dt.timedelta(microseconds=value)).isoformat(timespec="microseconds")
    return value


KIND_VALUES = {
    "i": st.integers(-(2**63), 2**63 - 1),
    "f": st.floats(allow_nan=False),
    "t": st.text(),
    "b": st.binary(),
    # the years 2 to 9998 (what the reading takes)
    "z": st.integers(-63_082_281_600_000_000 + 86_400_000_000 * 366, 252_423_993_599_999_999),
}


@st.composite
def tables(draw: st.DrawFn) -> tuple[str, list[list[Any]]]:
    kinds = draw(st.text(alphabet="iftbz", min_size=1, max_size=6))
    rows = draw(
        st.lists(st.tuples(*(st.none() | KIND_VALUES[k] for k in kinds)).map(list), max_size=8)
    )
    return kinds, rows


@settings(max_examples=300, deadline=None)
@given(tables())
def test_copy_columns_is_the_reference_and_the_values(table: tuple[str, list[list[Any]]]) -> None:
    kinds, rows = table
    messages = encode(kinds, rows)
    expected = [[_expected(k, row[i]) for row in rows] for i, k in enumerate(kinds)]
    assert copy_columns_reference(messages, kinds) == expected
    assert kernel.copy_columns(messages, kinds) == expected
    # one message for everything (what a server may also send) reads alike
    assert kernel.copy_columns([b"".join(messages)], kinds) == expected


@settings(max_examples=300, deadline=None)
@given(tables(), st.data())
def test_broken_messages_are_refused_alike(table: tuple[str, list[list[Any]]], data: Any) -> None:
    """Any edit of the bytes: the kernel gives what the reference gives (columns or None)."""
    kinds, rows = table
    body = bytearray(b"".join(encode(kinds, rows)))
    at = data.draw(st.integers(0, len(body)))
    cut = data.draw(st.integers(0, 4))
    body[at : at + cut] = data.draw(st.binary(max_size=4))
    messages = [bytes(body)]
    assert kernel.copy_columns(messages, kinds) == copy_columns_reference(messages, kinds)


@pytest.mark.parametrize(
    ("kinds", "messages"),
    [
        ("i", [HEADER]),  # no trailer
        ("i", [HEADER + b"\xff\xff", b"\x00\x01"]),  # data after the trailer
        ("i", [HEADER + b"\xff\xff", b""]),
        ("i", [b"PGCOPY\n\xff\r\n\x01" + HEADER[11:] + b"\xff\xff"]),  # not the signature
        ("i", [HEADER + b"\x00\x02" + _field("i", 1) + _field("i", 2), b"\xff\xff"]),
        ("i", [HEADER + b"\x00\x01\x00\x00\x00\x03abc", b"\xff\xff"]),  # 3-byte integer
        # the years 1 and 9999, which psycopg's datetimes take (the rows give them)
        ("z", [HEADER + b"\x00\x01" + _field("z", -63_082_281_600_000_000), b"\xff\xff"]),
        ("z", [HEADER + b"\x00\x01" + _field("z", 252_455_615_999_999_999), b"\xff\xff"]),
        ("z", [HEADER + b"\x00\x01" + _field("z", 2**63 - 1), b"\xff\xff"]),  # infinity
    ],
)
def test_what_the_reading_refuses(kinds: str, messages: list[bytes]) -> None:
    assert copy_columns_reference(messages, kinds) is None
    assert kernel.copy_columns(messages, kinds) is None


def test_invalid_utf8_is_refused() -> None:
    messages = [HEADER + b"\x00\x01\x00\x00\x00\x01\xff", b"\xff\xff"]
    assert copy_columns_reference(messages, "t") is None
    assert kernel.copy_columns(messages, "t") is None


COLUMNS = (
    "id bigint, session_id integer, participant_id integer, section_id smallint,"
    " created_at timestamptz, question_key varchar(64), given_response text,"
    " score double precision, json_data jsonb"
)
SELECT = sql.SQL(
    "r.id, r.session_id, r.participant_id, r.section_id, r.created_at, r.question_key,"
    " r.given_response, r.score, convert_to(r.json_data::text, 'UTF8')"
)
ROWS = [
    "(1, 7, NULL, NULL, '2024-07-22 10:26:50.911+00', 'k', '', 0.1, '{\"a\": [1, 2.5e300]}')",
    "(2, 7, 3, -5, '1970-01-01 00:00:00+00', 'é😀', NULL, '-0', 'null')",
    "(9223372036854775807, 7, NULL, 32767, '0002-01-01 00:00:00.000001+00', '\t\"\\',"
    " 'x', '5e-324', '{\"n\": 123456789012345678901234567890}')",
    "(-4, 8, NULL, NULL, '9998-12-31 23:59:59.999999+00', 'k', 'y', 'NaN', NULL)",
    "(5, 8, NULL, NULL, '1999-12-31 23:59:59.5+00', 'k', 'y', '-Infinity', '\"\"')",
]


def _table(dsn: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(f"CREATE TABLE result_result ({COLUMNS})")
    conn.execute("INSERT INTO result_result VALUES " + ", ".join(ROWS))
    conn.execute("SET TIME ZONE 'UTC'")
    return conn


@pytest.mark.parametrize("native_on", [True, False])
def test_copy_gives_the_rows_values(
    pg_database: Callable[[Path | None], str], native_on: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a server: the COPY's columns are psycopg's binary rows' values (a timestamp as
    its UTC text), with or without the kernel; sessions without results give no rows."""
    from aml_exportkit.sources.muscle_db_copy import copy_columns

    monkeypatch.setenv(native.ENV_SWITCH, "1" if native_on else "0")
    with _table(pg_database(None)) as conn:
        kinds = copy_kinds(conn, SELECT)
        assert kinds == "iiiizttfb"
        query = sql.SQL(
            "SELECT {} FROM result_result r WHERE r.session_id = ANY(%s::int8[])"
            " ORDER BY r.session_id, r.id"
        ).format(SELECT)
        with conn.cursor(binary=True) as cur:
            rows = cur.execute(query, ([7, 8],)).fetchall()
        expected = [list(column) for column in zip(*rows, strict=True)]
        expected[4] = [d.isoformat(timespec="microseconds") for d in expected[4]]
        columns = copy_columns(copy_messages(conn, copy_statement(SELECT, [7, 8])), kinds)
        assert columns is not None
        assert repr(columns) == repr(expected)  # (repr: NaN and -0.0 alike)
        empty = copy_columns(copy_messages(conn, copy_statement(SELECT, [99])), kinds)
        assert empty == [[] for _ in kinds]
        assert copy_columns(copy_messages(conn, copy_statement(SELECT, [])), kinds) == empty
        # the connection is ready for the next query
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_other_types_are_read_as_rows(pg_database: Callable[[Path | None], str]) -> None:
    with _table(pg_database(None)) as conn:
        conn.execute("ALTER TABLE result_result ADD COLUMN other numeric DEFAULT 1")
        assert copy_kinds(conn, sql.SQL("r.id, r.other")) is None
        assert copy_kinds(conn, sql.SQL("r.id, r.json_data")) is None  # (jsonb itself)
        assert copy_kinds(conn, sql.SQL("r.id")) == "i"


def test_year_one_is_left_to_the_rows(pg_database: Callable[[Path | None], str]) -> None:
    with _table(pg_database(None)) as conn:
        conn.execute("UPDATE result_result SET created_at = '0001-06-01 00:00+00' WHERE id = 5")
        messages = copy_messages(conn, copy_statement(SELECT, [8]))
        assert copy_columns_reference(messages, "iiiizttfb") is None
        assert kernel.copy_columns(messages, "iiiizttfb") is None

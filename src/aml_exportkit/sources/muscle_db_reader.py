"""Source: MUSCLE's PostgreSQL database, read with psycopg 3.

An open source is one ``REPEATABLE READ, READ ONLY`` transaction, from the first read to
:meth:`MuscleDatabase.close`: the small tables are read when :meth:`MuscleDatabase.read`
enters, and the results stream through server-side cursors while the caller is still
inside the ``with`` block, all from the same snapshot, so MUSCLE may keep writing
meanwhile. Nothing here holds more than one batch of results.

The selection is MUSCLE's JSON export (MUSCLE_EXPORT.md §2.3, HEAD column), done in SQL:

- sessions of the blocks, filtered, by pk; their participants, each once, by pk;
- every participant-bound result of those participants (any block, answered or not), by
  (participant, pk); every result of those sessions, by (session, pk);
- the sections of the playlists attached to the blocks now, by playlist *name* then pk (as
  Django's ``Playlist.Meta.ordering`` makes MUSCLE sort; sorted by the server so that the
  collation is the one MUSCLE got); their distinct songs by pk; the blocks' feedback by pk.

Besides, the graph gets what a zip lacks: the blocks (with names, rules, playlists), their
phases and experiments, and the playlists of the blocks and of the sessions.

Schema versions are told by the tables and columns present (:func:`detect_schema`).

The plugin that registers this source is :mod:`aml_exportkit.sources.muscle_db`, which
imports this module (and psycopg) only when a database is opened.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import getpass
import json
import math
import os
import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import orjson
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads

from .. import records
from ..contracts import BlockSummary, Inventory, SourceOptions
from ..errors import DatabaseError, SourceError
from ..graph import GraphBuilder, RecordGraph, SourceInfo
from ..jsonstream import (
    MAX_JSON_DATA_NESTING,
    NumberOutOfRange,
    exact_int,
    finite_float,
    nesting_ok,
)
from ..records import Block, Experiment, JSONValue, Phase, Playlist, Result
from ..redact import HIDDEN, scrub
from ..schema import MODELS, Kind, ModelSpec, django_datetime
from ..selection import Filter, Selection, Since, glob_like
from .muscle_db import NAME
from .muscle_db_chunks import DbTrialResults

#: Rows fetched per round trip from a server-side cursor.
FETCH_SIZE = 2000
#: Results per batch handed to sinks. Small batches keep the parsed json_data of a batch in
#: the CPU caches: on 760k results, 500 per batch read in 6.1 s and 5000 in 9.3 s.
BATCH_SIZE = 500
#: Seconds to wait for the server unless the URI or PGCONNECT_TIMEOUT says otherwise.
CONNECT_TIMEOUT = 10
#: How many slugs an "unknown block" message lists before it says "and N more".
MAX_LISTED_SLUGS = 25

#: Query parameters by name; one mapping serves every query of a read.
Params = dict[str, Any]

#: The table of each model this source reads.
TABLES: Mapping[str, str] = {
    "experiment": "experiment_experiment",
    "phase": "experiment_phase",
    "block": "experiment_block",
    "playlist": "section_playlist",
    "song": "section_song",
    "section": "section_section",
    "participant": "participant_participant",
    "session": "session_session",
    "result": "result_result",
    "feedback": "experiment_feedback",
}
_BLOCK_PLAYLISTS = "experiment_block_playlists"
#: The playlists attached to the selected blocks now (MUSCLE exports their sections).
_PLAYLISTS_OF_BLOCKS = sql.SQL(
    "SELECT bp.playlist_id FROM experiment_block_playlists bp"
    " WHERE bp.block_id = ANY(%(blocks)s::int8[])"
)
_BLOCK_TEXTS = "experiment_blocktranslatedcontent"
_EXPERIMENT_TEXTS = "experiment_experimenttranslatedcontent"

#: Models whose every field is a column of the same name (``_id`` for foreign keys); their
#: column lists come from :mod:`aml_exportkit.schema`.
_DIRECT_MODELS = ("session", "participant", "result", "section", "song", "feedback")

#: Columns the config tables must have (names and texts are optional, see SchemaInfo).
_CONFIG_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "experiment_experiment": ("id", "slug", "active"),
    "experiment_phase": ("id", "experiment_id", "index", "dashboard", "randomize"),
    "experiment_block": ("id", "slug", "phase_id", "index", "rounds", "bonus_points", "rules"),
    "section_playlist": ("id", "name", "url_prefix"),
    _BLOCK_PLAYLISTS: ("block_id", "playlist_id"),
}

SUPPORTED = (
    "MUSCLE v3 (January 2025 schema: experiment_block, names in translated-content tables)"
    " and MUSCLE v4.0 to HEAD (names in modeltranslation columns)"
)


def _column(field_name: str, fk: str | None) -> str:
    return f"{field_name}_id" if fk is not None else field_name


def known_columns(model: ModelSpec) -> tuple[str, ...]:
    """The table columns of ``model``'s declared fields, ``id`` first, in field order."""
    return ("id", *(_column(f.name, f.fk) for f in model.fields))


# -- the connection target and secrets ------------------------------------------------------


@attrs.frozen
class Target:
    """Where a URI points, for messages: never with a password."""

    user: str
    host: str
    port: str
    dbname: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{self.user}@{host}:{self.port}/{self.dbname}"


class Scrubber:
    """Removes every password a URI or the environment could carry from a text.

    psycopg echoes a malformed URI in its messages, and a server may quote what it got.
    """

    def __init__(self, uri: str, params: Mapping[str, str]) -> None:
        secrets = {params.get("password") or "", os.environ.get("PGPASSWORD") or ""}
        with contextlib.suppress(ValueError):
            raw = urllib.parse.urlsplit(uri).password
            if raw:
                secrets.add(raw)
                secrets.add(urllib.parse.unquote(raw))
        # Longest first, so that a secret containing another is removed whole.
        self.secrets = sorted((s for s in secrets if s), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, HIDDEN)
        # a password in any URI or key=value string that is echoed back
        return scrub(text)


def target_of(uri: str) -> tuple[Target, dict[str, str], Scrubber]:
    """Parse ``uri`` into its display target, its connection parameters and a scrubber.

    Parts the URI leaves out take libpq's defaults (PGUSER, PGHOST, ... then the OS user,
    localhost, 5432).

    :raises DatabaseError: for a URI psycopg cannot parse.
    """
    scrub = Scrubber(uri, {})
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(uri).items()}
    except psycopg.Error as exc:
        raise DatabaseError(
            f"invalid database URI: {_first_line(scrub(str(exc)))}; expected"
            " postgresql://user@host:port/dbname",
            target=_shorten(scrub(uri)),
        ) from None
    scrub = Scrubber(uri, params)
    env = os.environ
    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        os_user = "postgres"
    user = params.get("user") or env.get("PGUSER") or os_user
    host = params.get("host") or env.get("PGHOST") or "localhost"
    port = params.get("port") or env.get("PGPORT") or "5432"
    dbname = params.get("dbname") or env.get("PGDATABASE") or user
    return Target(user, host, port, dbname), params, scrub


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else text.strip()


def _shorten(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# libpq's wrapping: 'connection failed: connection to server at "h", port p failed: FATAL:  …'
# (or 'on socket "…" failed:'); what follows is the reason.
_LIBPQ_PREFIX = re.compile(
    r"^(?:connection failed:\s*)?(?:connection to server (?:at|on) .*? failed:\s*)?"
    r"(?:FATAL:\s*)?"
)


def _connect_problem(text: str, target: Target) -> str:
    """One line saying why a connection failed, from libpq's message."""
    line = _first_line(text)
    low = line.lower()
    detail = _LIBPQ_PREFIX.sub("", line, count=1).strip() or line
    if "password authentication failed" in low:
        return f"wrong credentials: {detail}"
    if "no password supplied" in low or "password is required" in low:
        return (
            "the server asks for a password and none was given (put it in the URI, in"
            " PGPASSWORD or in ~/.pgpass)"
        )
    if re.search(r'role ".*" does not exist', low):
        return f"wrong credentials: {detail}"
    if re.search(r'database ".*" does not exist', low):
        return f"no such database: {detail}"
    if "pg_hba.conf" in low or "not permitted to log in" in low:
        return f"the server refuses this login: {detail}"
    if "permission denied for database" in low:
        return f"missing permission: {detail} (GRANT CONNECT ON DATABASE {target.dbname})"
    if any(
        word in low
        for word in (
            "connection refused",
            "timeout expired",
            "could not translate host",
            "failed to resolve host",
            "no route to host",
            "network is unreachable",
            "no such file or directory",
            "connection timed out",
            "server closed the connection",
        )
    ):
        return f"cannot reach the server: {detail}"
    return f"cannot connect: {detail}"


# -- schema detection -----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SchemaInfo:
    """What :func:`detect_schema` found.

    :param version: a human label of the MUSCLE schema era.
    :param columns: the columns of every table in the current schema, in table order.
    :param names_in: where block and experiment names live: ``"columns"`` (v4.0 and
        later, modeltranslation), ``"translated-content"`` (v3) or ``"none"``.
    :param foreign_keys: per exported table, its single-column foreign key columns.
    """

    version: str
    columns: Mapping[str, tuple[str, ...]]
    names_in: str
    foreign_keys: Mapping[str, frozenset[str]]

    def has(self, table: str, column: str | None = None) -> bool:
        """Whether ``table`` (and its ``column``) exists."""
        cols = self.columns.get(table)
        return cols is not None and (column is None or column in cols)

    def extra_columns(self, model_key: str) -> tuple[tuple[str, str], ...]:
        """Columns of ``model_key``'s table that its record does not declare, as
        (column, fixture field name) pairs; a foreign key ``x_id`` becomes ``x``, as
        Django's serializer names it."""
        table = TABLES[model_key]
        known = set(known_columns(MODELS[model_key]))
        fks = self.foreign_keys.get(table, frozenset())
        return tuple(
            (col, col[:-3] if col in fks and col.endswith("_id") else col)
            for col in self.columns[table]
            if col not in known
        )


_CATALOG_COLUMNS = """
SELECT c.relname, a.attname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE n.nspname = current_schema()
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

_CATALOG_FOREIGN_KEYS = """
SELECT c.relname, a.attname
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
WHERE n.nspname = current_schema() AND k.contype = 'f' AND cardinality(k.conkey) = 1
"""


def detect_schema(conn: psycopg.Connection[Any], target: Target) -> SchemaInfo:
    """Tell the MUSCLE schema era from the tables and columns present.

    The catalog (``pg_catalog``) is read rather than ``information_schema``, which hides
    the columns of tables the role may not read, so that a missing permission is reported
    as such and not as a missing table.

    :raises DatabaseError: for a database that is not MUSCLE's, a MUSCLE version this
        source does not read, or a table or column it needs that is missing.
    """
    schema = conn.execute("SELECT current_schema()").fetchone()
    schema_name = schema[0] if schema else None
    if schema_name is None:
        # current_schema() skips schemas the role may not use
        raise DatabaseError(
            f"missing permission: no schema on the search path that role {target.user} may"
            " use (GRANT USAGE ON SCHEMA public, or set search_path in the URI's options)",
            target=str(target),
        )
    columns: dict[str, list[str]] = {}
    for table, column in conn.execute(_CATALOG_COLUMNS).fetchall():
        columns.setdefault(table, []).append(column)
    if "session_session" not in columns:
        if "experiment_session" in columns:
            raise DatabaseError(
                "unsupported MUSCLE version: found experiment_session (MUSCLE before"
                " January 2023, when sessions lived in the experiment app); supported:"
                f" {SUPPORTED}",
                target=str(target),
            )
        found = ", ".join(sorted(columns)[:8]) + (" …" if len(columns) > 8 else "")
        raise DatabaseError(
            f"not a MUSCLE database: table session_session not found in schema"
            f" {schema_name!s} (found {len(columns)} tables{': ' + found if found else ''};"
            " expected MUSCLE's session_session, result_result, participant_participant,"
            " experiment_block, ...)",
            target=str(target),
        )
    session_cols = columns["session_session"]
    if "block_id" not in session_cols or "experiment_block" not in columns:
        if "experiment_id" in session_cols:
            raise DatabaseError(
                "unsupported MUSCLE version: found session_session.experiment_id and no"
                " experiment_block table (MUSCLE before July 2024, when blocks were called"
                f" experiments); supported: {SUPPORTED}",
                target=str(target),
            )
        raise DatabaseError(
            "unsupported MUSCLE schema: session_session has no block_id column or"
            f" experiment_block is missing; supported: {SUPPORTED}",
            target=str(target),
        )
    needed: dict[str, tuple[str, ...]] = dict(_CONFIG_COLUMNS)
    for key in _DIRECT_MODELS:
        needed[TABLES[key]] = known_columns(MODELS[key])
    for table, cols in needed.items():
        if table not in columns:
            raise DatabaseError(
                f"unsupported MUSCLE schema: table {table} not found (found session_session"
                f" with block_id, so expected {SUPPORTED})",
                target=str(target),
            )
        missing = [c for c in cols if c not in columns[table]]
        if missing:
            listed = ", ".join(f"{table}.{c}" for c in missing)
            raise DatabaseError(
                f"unsupported MUSCLE schema: column {listed} not found (expected {SUPPORTED})",
                target=str(target),
            )
    block_cols = columns["experiment_block"]
    if "name" in block_cols:
        names_in = "columns"
        version = (
            "MUSCLE v5.1 or later (names in modeltranslation columns, block rules_config)"
            if "rules_config" in block_cols
            else "MUSCLE v4.0 to v5.0 (names in modeltranslation columns)"
        )
    elif _BLOCK_TEXTS in columns:
        names_in = "translated-content"
        version = "MUSCLE v3 (July 2024 to August 2025: names in translated-content tables)"
    else:
        names_in = "none"
        version = "MUSCLE after July 2024 (block names not found)"
    foreign_keys: dict[str, set[str]] = {}
    for table, column in conn.execute(_CATALOG_FOREIGN_KEYS).fetchall():
        foreign_keys.setdefault(table, set()).add(column)
    return SchemaInfo(
        version=version,
        columns={t: tuple(c) for t, c in columns.items()},
        names_in=names_in,
        foreign_keys={t: frozenset(c) for t, c in foreign_keys.items()},
    )


# -- values ---------------------------------------------------------------------------------


# Every digit becomes b"0" and everything else a space, so that one C-speed find spots a
# run of 19 digits (a regex scan measured ten times slower on result documents).
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_NINETEEN_DIGITS = b"0" * 19


def _loads(data: bytes | bytearray | memoryview | str | None) -> Any:
    """jsonb text (UTF-8) → Python, keeping the key order (jsonb's own); None stays None.

    orjson is the fast path, but it silently turns an integer beyond 64 bits (which
    jsonb's numeric holds) into a float; a document with a run of 19 or more digits goes
    through the standard library instead, which keeps every integer exact.
    """
    if data is None:
        return None
    if type(data) is not bytes:
        data = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    value: Any
    if data.translate(_DIGITS_TO_ZERO).find(_NINETEEN_DIGITS) < 0:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            value = _loads_exactly(data)
    else:
        value = _loads_exactly(data)
    if not nesting_ok(value, 2):  # the same limit as a fixture record's json_data
        raise UnfitJson(f"nested more than {MAX_JSON_DATA_NESTING} levels deep; refusing it")
    return value


def _loads_exactly(data: bytes) -> Any:
    try:
        return json.loads(data, parse_float=finite_float, parse_int=exact_int)
    except RecursionError:
        raise UnfitJson(
            f"nested more than {MAX_JSON_DATA_NESTING} levels deep; refusing it"
        ) from None
    except NumberOutOfRange as exc:
        raise UnfitJson(str(exc)) from None


class UnfitValue(ValueError):
    """A column value that no record may hold, with the same verdict as for a fixture zip;
    the message names the field."""


class UnfitJson(UnfitValue):
    """A JSON value that no record may hold: nested deeper than a fixture record's
    ``json_data`` may be (:data:`MAX_JSON_DATA_NESTING`), or with a number beyond a
    double's range or an integer too long to read; the same verdicts as for a fixture
    zip."""


def _finite(field: str, value: Any) -> Any:
    """A float column's value, refusing infinity and NaN (PostgreSQL's double precision
    holds them, JSON and a fixture zip do not; ``schema`` refuses them in a zip)."""
    if type(value) is float and not -math.inf < value < math.inf:
        raise UnfitValue(f"field {field!r}: expected a finite number, got {value!r}")
    return value


def _made(make: Callable[[Any], Any], rows: Sequence[Any], table: str, model: str) -> list[Any]:
    """``make`` applied to every row; an unfit JSON value is an error naming its row's
    record."""
    try:
        return [make(row) for row in rows]
    except UnfitValue:
        for row in rows:
            try:
                make(row)
            except UnfitValue as exc:
                detail = f"a JSON field: {exc}" if isinstance(exc, UnfitJson) else str(exc)
                raise SourceError(detail, file=table, model=model, pk=row[0]) from None
        raise


def _jsonable(value: Any) -> JSONValue:
    """A column value of an undeclared column as a JSON value for a record's ``extra``."""
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    if isinstance(value, dt.datetime):
        return django_datetime(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _row_maker(model: ModelSpec, extras: Sequence[tuple[str, str]]) -> Callable[[Any], Any]:
    """The function that turns a row (declared columns, then ``extras``) into a record.

    JSON fields arrive as UTF-8 bytes (see :meth:`MuscleDatabase._cols`) and are parsed
    here.
    """
    if model.key == "result" and not extras:
        return _make_result
    names = tuple(f.name for f in model.fields)
    json_at = frozenset(i for i, f in enumerate(model.fields, start=1) if f.kind is Kind.JSON)
    float_at = frozenset(i for i, f in enumerate(model.fields, start=1) if f.kind is Kind.FLOAT)
    record_type = model.record_type
    # JSON the graph keeps (a session's json_data) stays compact text until read.
    compact = records.compact_fields(record_type)
    compact_at = frozenset(i for i, f in enumerate(model.fields, start=1) if f.name in compact)
    repeat_at = frozenset(i for i, f in enumerate(model.fields, start=1) if f.repeats)
    special = json_at | repeat_at | float_at
    shared: dict[Any, Any] = {}  # one string per value of the `repeats` fields
    n = len(names) + 1
    extra_names = tuple(field for _, field in extras)

    def load(i: int, v: Any) -> Any:
        if i in float_at:
            return _finite(names[i - 1], v)
        if i in json_at:
            return records.compact_json(_loads(v)) if i in compact_at else _loads(v)
        return shared.setdefault(v, v) if i in repeat_at else v

    def make(row: Any) -> Any:
        values = [load(i, v) if i in special else v for i, v in enumerate(row[:n])]
        kwargs = dict(zip(names, values[1:], strict=True))
        if extra_names:
            kwargs["extra"] = {k: _jsonable(v) for k, v in zip(extra_names, row[n:], strict=True)}
        return record_type(pk=row[0], **kwargs)

    return make


def _make_result(row: Any) -> Result:
    """A result row (``id``, then the columns of ``schema.RESULT``'s fields) as a record.

    Spelled out because results are the bulk of an export: keyword arguments measured
    30 % faster than building a dict per row.
    """
    return Result(
        pk=row[0],
        session=row[1],
        participant=row[2],
        section=row[3],
        created_at=row[4],
        question_key=row[5],
        expected_response=row[6],
        given_response=row[7],
        comment=row[8],
        score=_finite("score", row[9]),
        scoring_rule=row[10],
        json_data=_loads(row[11]),
    )


# -- the source -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class _BlockRow:
    pk: int
    slug: str


class MuscleDatabase:
    """An open connection to a MUSCLE database.

    :param uri: ``postgresql://user@host:port/dbname`` (a password, query parameters and
        libpq's environment variables work as usual).
    :param options: the template's source options.
    :raises DatabaseError: when the server cannot be reached or logged into, the database
        is not MUSCLE's (or a version this source does not read), or a table cannot be read.
    """

    def __init__(self, uri: str, options: SourceOptions) -> None:
        self.options = options
        self._uri = uri  # kept in memory for the engine's worker connections
        self.target, params, self.scrub = target_of(uri)
        self.conn = self._connect(uri, params)
        try:
            self.target = Target(
                self.conn.info.user,
                self.conn.info.host,
                str(self.conn.info.port),
                self.conn.info.dbname,
            )
            with self._errors():
                # Django's serializer writes UTC; the server then sends UTC datetimes.
                self.conn.execute("SET TIME ZONE 'UTC'")
                set_json_loads(_loads, self.conn)
                self.schema = detect_schema(self.conn, self.target)
                self._check_privileges()
        except BaseException:
            self.conn.close()
            raise
        self._in_read = False
        self._in_snapshot = False
        self._generation = 0
        self._snapshot_time: Any = None
        #: the snapshot's id for the engine's workers (None: the server exported none)
        self._exported: str | None = None

    @property
    def location(self) -> str:
        """The target as ``postgresql://user@host:port/dbname``."""
        return str(self.target)

    # -- connecting and errors ----------------------------------------------------------------

    def _connect(self, uri: str, params: Mapping[str, str]) -> psycopg.Connection[Any]:
        extra: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in params and not os.environ.get("PGCONNECT_TIMEOUT"):
            extra["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in params and not os.environ.get("PGAPPNAME"):
            extra["application_name"] = "aml_exportkit"
        try:
            return psycopg.connect(uri, **extra)
        except psycopg.Error as exc:
            raise DatabaseError(
                self.scrub(_connect_problem(str(exc), self.target)), target=str(self.target)
            ) from None

    @contextlib.contextmanager
    def _errors(self, doing: str = "") -> Iterator[None]:
        """Turn psycopg's errors into one-line DatabaseErrors without secrets."""
        try:
            yield
        except psycopg.errors.InsufficientPrivilege as exc:
            detail = _first_line(self.scrub(str(exc)))
            raise DatabaseError(
                f"missing permission: {detail} (the role {self.target.user} needs SELECT on"
                " MUSCLE's tables)",
                target=str(self.target),
            ) from None
        except psycopg.OperationalError as exc:
            detail = _first_line(self.scrub(str(exc)))
            raise DatabaseError(
                f"lost the connection{' while ' + doing if doing else ''}: {detail}",
                target=str(self.target),
            ) from None
        except psycopg.Error as exc:
            detail = _first_line(self.scrub(str(exc)))
            raise DatabaseError(
                f"query failed{' while ' + doing if doing else ''}: {detail}",
                target=str(self.target),
            ) from None

    def _needed_columns(self) -> dict[str, tuple[str, ...]]:
        needed: dict[str, tuple[str, ...]] = dict(_CONFIG_COLUMNS)
        for key in _DIRECT_MODELS:
            table = TABLES[key]
            needed[table] = known_columns(MODELS[key]) + tuple(
                col for col, _ in self.schema.extra_columns(key)
            )
        for table in (_BLOCK_TEXTS, _EXPERIMENT_TEXTS):
            if self.schema.names_in == "translated-content" and self.schema.has(table):
                needed[table] = self.schema.columns[table]
        return needed

    def _check_privileges(self) -> None:
        """Fail early, naming the table, when the role may not read a column it needs."""
        pairs = [(t, c) for t, cols in self._needed_columns().items() for c in cols]
        query = """
            SELECT t, c FROM unnest(%s::text[], %s::text[]) AS x(t, c)
            WHERE NOT has_column_privilege(
                format('%%I.%%I', current_schema(), t), c, 'SELECT')
        """
        denied = self.conn.execute(query, ([t for t, _ in pairs], [c for _, c in pairs])).fetchall()
        if denied:
            tables = sorted({t for t, _ in denied})
            raise DatabaseError(
                f"missing permission: role {self.target.user} may not SELECT from"
                f" {', '.join(tables)} (GRANT SELECT ON {', '.join(tables)} TO"
                f" {self.target.user})",
                target=str(self.target),
            )

    # -- queries ----------------------------------------------------------------------------

    def _cols(self, key: str, alias: str) -> sql.Composed:
        """The SELECT list of model ``key``'s table: declared columns, then extra ones.

        Declared JSON fields come as the jsonb's UTF-8 text (``bytea``), parsed by the row
        maker: psycopg's per-value loader dispatch measured 1.8 s per 760k results on top
        of the parsing itself.
        """
        model = MODELS[key]
        json_fields = {_column(f.name, f.fk) for f in model.fields if f.kind is Kind.JSON}
        items: list[sql.Composable] = []
        for col in known_columns(model):
            ident = sql.Identifier(alias, col)
            if col in json_fields:
                items.append(sql.SQL("convert_to({}::text, 'UTF8')").format(ident))
            else:
                items.append(ident)
        items.extend(sql.Identifier(alias, c) for c, _ in self.schema.extra_columns(key))
        return sql.SQL(", ").join(items)

    def _stream(
        self, query: sql.Composed, params: Params, size: int = FETCH_SIZE
    ) -> Iterator[list[Any]]:
        """Rows of ``query`` in lists of ``size``, through a server-side cursor."""
        name = f"exportkit_{uuid.uuid4().hex[:12]}"
        with self.conn.cursor(name=name, binary=True) as cur:
            cur.execute(query, params)
            while True:
                rows = cur.fetchmany(size)
                if not rows:
                    break
                yield rows

    def _all(self, query: sql.Composed | str, params: Params | Sequence[Any] = ()) -> list[Any]:
        return self.conn.execute(query, params).fetchall()

    @staticmethod
    def _session_condition(
        block_ids: Sequence[int], flt: Filter, since: Since | None = None
    ) -> tuple[sql.Composed, Params, sql.Composed | None]:
        """The WHERE condition on ``session_session s`` and its parameters, by name, and the
        condition of the sessions its exclusions leave out (None without exclusions).

        Every value is a bound parameter; the same names serve every query of one read.
        Its meaning is :func:`aml_exportkit.selection.session_matches` and, for an
        incremental run, :meth:`aml_exportkit.selection.Since.selects`.
        """
        params: Params = {"blocks": list(block_ids)}
        parts: list[sql.Composable] = [sql.SQL("s.block_id = ANY(%(blocks)s::int8[])")]
        if flt.finished_only:
            parts.append(sql.SQL("s.finished_at IS NOT NULL"))
        if flt.started_after is not None:
            parts.append(sql.SQL("s.started_at >= %(started_after)s"))
            params["started_after"] = flt.started_after
        if flt.started_before is not None:
            parts.append(sql.SQL("s.started_at < %(started_before)s"))
            params["started_before"] = flt.started_before
        if flt.participants:
            # An integer is a participant pk, a string its participant_id_url; an integer
            # beyond bigint can match no pk.
            params["participant_pks"] = _bigints(flt.participants)
            params["participant_urls"] = [p for p in flt.participants if type(p) is str]
            parts.append(
                sql.SQL(
                    "(s.participant_id = ANY(%(participant_pks)s::int8[]) OR s.participant_id IN"
                    " (SELECT pu.id FROM participant_participant pu"
                    " WHERE pu.participant_id_url = ANY(%(participant_urls)s::text[])))"
                )
            )
        if since is not None:
            # New: not exported then. Changed: open then, and finished now or holding
            # another number of results or another highest result pk.
            params["since_seen"] = sorted(since.seen)
            opened = sorted(since.open.items())
            params["since_open"] = [pk for pk, _ in opened]
            params["since_count"] = [n for _, (n, _top) in opened]
            params["since_top"] = [top for _, (_n, top) in opened]
            parts.append(
                sql.SQL(
                    "(s.id NOT IN (SELECT unnest(%(since_seen)s::int8[])) OR EXISTS (SELECT 1"
                    " FROM unnest(%(since_open)s::int8[], %(since_count)s::int8[],"
                    " %(since_top)s::int8[]) AS o(pk, n, top) WHERE o.pk = s.id AND"
                    " (s.finished_at IS NOT NULL OR (SELECT count(*) <> o.n"
                    " OR max(r.id)::int8 IS DISTINCT FROM o.top"
                    " FROM result_result r WHERE r.session_id = s.id))))"
                )
            )
        excluded: sql.Composed | None = None
        if flt.excludes:
            listed = flt.excluded_participants
            params["exclude_pks"] = _bigints(listed)
            params["exclude_texts"] = [p for p in listed if type(p) is str]
            params["exclude_likes"] = [glob_like(p) for p in flt.exclude_participant_id_url]
            params["exclude_sessions"] = _bigints(flt.exclude_sessions)
            excluded = sql.SQL(
                "(s.id = ANY(%(exclude_sessions)s::int8[])"
                " OR s.participant_id = ANY(%(exclude_pks)s::int8[]) OR s.participant_id IN"
                " (SELECT px.id FROM participant_participant px"
                " WHERE px.unique_hash = ANY(%(exclude_texts)s::text[])"
                " OR px.participant_id_url = ANY(%(exclude_texts)s::text[])"
                " OR px.participant_id_url LIKE ANY(%(exclude_likes)s::text[])))"
            ).format()
            base = sql.SQL(" AND ").join(parts)
            parts.append(sql.SQL("NOT {}").format(excluded))
            excluded = sql.SQL("{} AND {}").format(base, excluded)
        return sql.SQL(" AND ").join(parts), params, excluded

    # -- blocks -----------------------------------------------------------------------------

    def _block_name_sql(self, alias: str) -> sql.Composable:
        if self.schema.names_in == "columns":
            return sql.Identifier(alias, "name")
        if self.schema.names_in == "translated-content":
            # Block.name was the "fallback content": the first translated row, by pk.
            return sql.SQL(
                "(SELECT t.name FROM experiment_blocktranslatedcontent t"
                " WHERE t.block_id = {} ORDER BY t.id LIMIT 1)"
            ).format(sql.Identifier(alias, "id"))
        return sql.SQL("NULL::text")

    def _resolve_blocks(self, slugs: Sequence[str]) -> list[_BlockRow]:
        """Block rows for ``slugs``; a slug that names no block but an experiment stands
        for all that experiment's blocks."""
        rows = self._all("SELECT id, slug FROM experiment_block ORDER BY id")
        by_slug = {slug: pk for pk, slug in rows}
        if not slugs:
            if len(rows) == 1:
                return [_BlockRow(pk=rows[0][0], slug=rows[0][1])]
            raise SourceError(
                "name the block(s) to export ([source] blocks or --block): this database"
                f" holds {len(rows)} blocks: {_list_slugs(by_slug)}"
                if rows
                else "this database holds no blocks",
                file=self.location,
            )
        chosen: dict[int, str] = {}
        unknown: list[str] = []
        for slug in slugs:
            if slug in by_slug:
                chosen[by_slug[slug]] = slug
                continue
            members = self._all(
                "SELECT b.id, b.slug FROM experiment_experiment e"
                " JOIN experiment_phase p ON p.experiment_id = e.id"
                " JOIN experiment_block b ON b.phase_id = p.id"
                " WHERE e.slug = %s ORDER BY p.index, b.index, b.id",
                (slug,),
            )
            if members:
                chosen.update(dict(members))
            else:
                exists = self._all("SELECT 1 FROM experiment_experiment WHERE slug = %s", (slug,))
                if exists:
                    raise SourceError(f"experiment {slug!r} has no blocks", file=self.location)
                unknown.append(slug)
        if unknown:
            which = ", ".join(repr(s) for s in unknown)
            raise SourceError(
                f"no block (nor experiment) with slug {which}; the blocks are:"
                f" {_list_slugs(by_slug)}",
                file=self.location,
            )
        return [_BlockRow(pk=pk, slug=slug) for pk, slug in sorted(chosen.items())]

    # -- inspect ----------------------------------------------------------------------------

    def inspect(self) -> Inventory:
        """Schema version, every block with its distinct session count, rows per table."""
        with self._snapshot(), self._errors("counting rows"):
            blocks = tuple(
                BlockSummary(pk=pk, slug=slug, name=name, sessions=n)
                for pk, slug, name, n in self._all(
                    sql.SQL(
                        "SELECT b.id, b.slug, {}, COUNT(DISTINCT s.id) FROM experiment_block b"
                        " LEFT JOIN session_session s ON s.block_id = b.id"
                        " GROUP BY b.id ORDER BY b.id"
                    ).format(self._block_name_sql("b"))
                )
            )
            counts: dict[str, int] = {}
            for key in ("experiment", "phase", "block", "playlist", "section", "song"):
                counts[TABLES[key]] = self._count(TABLES[key])
            counts[_BLOCK_PLAYLISTS] = self._count(_BLOCK_PLAYLISTS)
            counts["participant_participant"] = self._count("participant_participant")
            row = self._all(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE block_id IS NULL) FROM session_session"
            )[0]
            counts["session_session"], sessions_without_block = row
            row = self._all(
                "SELECT COUNT(*),"
                " COUNT(*) FILTER (WHERE session_id IS NOT NULL AND participant_id IS NULL),"
                " COUNT(*) FILTER (WHERE session_id IS NULL AND participant_id IS NOT NULL),"
                " COUNT(*) FILTER (WHERE (session_id IS NULL) = (participant_id IS NULL))"
                " FROM result_result"
            )[0]
            counts["result_result"] = row[0]
            counts["result_result (trial)"] = row[1]
            counts["result_result (profile)"] = row[2]
            counts["experiment_feedback"] = self._count("experiment_feedback")
        notes: list[str] = []
        if sessions_without_block:
            notes.append(f"{sessions_without_block} sessions have no block and are never exported")
        if row[3]:
            notes.append(
                f"{row[3]} results have both or neither of session and participant; an export"
                " that meets one fails"
            )
        return Inventory(
            kind=NAME,
            location=self.location,
            schema_version=self.schema.version,
            blocks=blocks,
            counts=counts,
            notes=tuple(notes),
        )

    def _count(self, table: str) -> int:
        rows = self._all(sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table)))
        return int(rows[0][0])

    # -- reading ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[int]:
        """Run inside the source's snapshot; yields a generation number for this use.

        The first use begins one REPEATABLE READ, READ ONLY transaction, and it stays open
        until :meth:`close`: every block of a run (the pipeline reads per block when the
        output paths hold ``{block}``) comes from the same snapshot. A failure ends it, so
        that the next use starts clean.
        """
        if self._in_read:
            raise RuntimeError("one read at a time per database source")
        if not self._in_snapshot:
            with self._errors("starting the snapshot"):
                self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                self._exported = self._export_snapshot()
                # now() is the transaction's start: the moment the snapshot shows.
                row = self.conn.execute("SELECT now()").fetchone()
            self._snapshot_time = row[0] if row else None
            self._in_snapshot = True
        self._in_read = True
        self._generation += 1
        ok = False
        try:
            yield self._generation
            ok = True
        finally:
            self._in_read = False
            self._generation += 1
            if not ok:
                self._end_snapshot()

    def _export_snapshot(self) -> str | None:
        """Export the transaction's snapshot (its first statement, so the snapshot the
        whole read sees), for the engine's workers to import; None when the server exports
        none (a role denied ``pg_export_snapshot``, a server in recovery, say): the failed
        transaction is begun anew, and the engine reads the trial results through this
        connection (``muscle_db_chunks.DbTrialResults``)."""
        try:
            row = self.conn.execute("SELECT pg_export_snapshot()").fetchone()
        except psycopg.Error:
            self.conn.execute("ROLLBACK")
            self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return None
        return str(row[0]) if row else None

    def _end_snapshot(self) -> None:
        if self._in_snapshot:
            self._in_snapshot = False
            # Read only, so nothing to keep; a broken connection was reported already.
            with contextlib.suppress(psycopg.Error):
                self.conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def read(self, selection: Selection) -> Iterator[RecordGraph]:
        """Read ``selection`` as a graph, from one snapshot.

        The graph's result streams read from the same transaction, so they must be consumed
        inside the ``with`` block.

        :raises SourceError: for an unknown block slug, or none given in a database of
            several blocks.
        :raises DatabaseError: when a query fails.
        """
        with self._snapshot() as generation:
            with self._errors("reading the small tables"):
                graph = self._build(selection, generation)
            yield graph

    def _build(self, selection: Selection, generation: int) -> RecordGraph:
        blocks = self._resolve_blocks(selection.blocks)
        block_ids = [b.pk for b in blocks]
        cond, params, excluded = self._session_condition(
            block_ids, selection.filter, selection.since
        )
        details: dict[str, Any] = {
            "blocks": [b.slug for b in blocks],
            "snapshot": "repeatable read, read only",
            "snapshot_time": self._snapshot_time,
        }
        if excluded is not None:
            # what the exclusions left out: sessions, and participants with no session left
            row = self._all(
                sql.SQL(
                    "SELECT count(*), count(DISTINCT s.participant_id) FILTER (WHERE"
                    " s.participant_id NOT IN (SELECT s.participant_id FROM session_session s"
                    " WHERE {})) FROM session_session s WHERE {}"
                ).format(cond, excluded),
                params,
            )[0]
            details["excluded_sessions"], details["excluded_participants"] = row
        builder = GraphBuilder(
            SourceInfo(
                kind=NAME,
                location=self.location,
                schema_version=self.schema.version,
                provided=frozenset(TABLES) - {"result"},
                details=details,
            ),
            missing_sections=self.options.missing_sections,
        )
        self._add_config(builder, cond, params)
        self._add_direct(
            builder,
            "session",
            sql.SQL("SELECT {} FROM session_session s WHERE {} ORDER BY s.id").format(
                self._cols("session", "s"), cond
            ),
            params,
        )
        self._add_direct(
            builder,
            "participant",
            sql.SQL(
                "SELECT {} FROM participant_participant p WHERE p.id IN"
                " (SELECT s.participant_id FROM session_session s WHERE {}) ORDER BY p.id"
            ).format(self._cols("participant", "p"), cond),
            params,
        )
        self._add_direct(
            builder,
            "section",
            sql.SQL(
                "SELECT {} FROM section_section x JOIN section_playlist pl"
                " ON pl.id = x.playlist_id WHERE x.playlist_id IN ({})"
                " ORDER BY pl.name, x.id"
            ).format(self._cols("section", "x"), _PLAYLISTS_OF_BLOCKS),
            params,
        )
        self._add_direct(
            builder,
            "song",
            sql.SQL(
                "SELECT {} FROM section_song g WHERE g.id IN (SELECT x.song_id FROM"
                " section_section x WHERE x.playlist_id IN ({})) ORDER BY g.id"
            ).format(self._cols("song", "g"), _PLAYLISTS_OF_BLOCKS),
            params,
        )
        self._add_direct(
            builder,
            "feedback",
            sql.SQL(
                "SELECT {} FROM experiment_feedback f"
                " WHERE f.block_id = ANY(%(blocks)s::int8[]) ORDER BY f.id"
            ).format(self._cols("feedback", "f")),
            params,
        )
        builder.set_result_origin("profile", "result_result")
        builder.set_result_origin("trial", "result_result")
        result_cols = self._cols("result", "r")
        profile_query = sql.SQL(
            "SELECT {} FROM result_result r WHERE r.participant_id IN"
            " (SELECT s.participant_id FROM session_session s WHERE {})"
            " ORDER BY r.participant_id, r.id"
        ).format(result_cols, cond)
        trial_query = sql.SQL(
            "SELECT {} FROM result_result r WHERE r.session_id IN"
            " (SELECT s.id FROM session_session s WHERE {})"
            " ORDER BY r.session_id, r.id"
        ).format(result_cols, cond)
        graph = builder.build(
            profile_results=lambda: self._results(profile_query, params, generation, "profile"),
            trial_results=lambda: self._results(trial_query, params, generation, "trial"),
        )
        # The engine reads the same results by session groups, in worker processes that
        # import this snapshot (muscle_db_chunks.py).
        make = _row_maker(MODELS["result"], self.schema.extra_columns("result"))
        graph.result_chunks = DbTrialResults(
            self._uri,
            self.conn,
            result_cols,
            records=lambda rows: _made(make, rows, TABLES["result"], "result"),
            errors=self._errors,
            snapshot=self._exported,
        )
        return graph

    def _add_direct(
        self, builder: GraphBuilder, key: str, query: sql.Composed, params: Params
    ) -> None:
        make = _row_maker(MODELS[key], self.schema.extra_columns(key))
        table = TABLES[key]
        for rows in self._stream(query, params):
            for record in _made(make, rows, table, key):
                builder.add(key, record, table)

    def _add_config(self, builder: GraphBuilder, cond: sql.Composed, params: Params) -> None:
        """Experiments, phases, blocks and playlists of the selection."""
        schema = self.schema
        block_cols = schema.columns["experiment_block"]
        optional = [
            sql.Identifier("b", c) if c in block_cols else sql.SQL("NULL")
            for c in ("description", "rules_config")
        ]
        translations = [c for c in block_cols if re.fullmatch(r"(name|description)_\w+", c)]
        rows = self._all(
            sql.SQL(
                "SELECT b.id, b.slug, b.phase_id, b.index, {}, {}, b.rounds, b.bonus_points,"
                " b.rules, {}, ARRAY(SELECT bp.playlist_id FROM experiment_block_playlists bp"
                " WHERE bp.block_id = b.id ORDER BY bp.playlist_id){}"
                " FROM experiment_block b WHERE b.id = ANY(%(blocks)s::int8[]) ORDER BY b.id"
            ).format(
                self._block_name_sql("b"),
                optional[0],
                optional[1],
                sql.SQL("").join(sql.SQL(", ") + sql.Identifier("b", c) for c in translations),
            ),
            params,
        )
        texts = self._translated_texts(_BLOCK_TEXTS, "block_id", params["blocks"])
        phase_ids: set[int] = set()
        for row in rows:
            pk = row[0]
            extra: dict[str, JSONValue] = {
                c: v for c, v in zip(translations, row[11:], strict=True) if v is not None
            }
            extra.update(texts.get(pk, {}))
            description = row[5]
            if description is None and schema.names_in == "translated-content":
                description = _fallback(texts.get(pk, {}), "description")
            builder.add(
                "block",
                Block(
                    pk=pk,
                    slug=row[1],
                    phase=row[2],
                    index=row[3],
                    name=row[4],
                    description=description,
                    rounds=row[6],
                    bonus_points=row[7],
                    rules=row[8],
                    rules_config=row[9],
                    playlists=tuple(row[10]),
                    extra=extra,
                ),
                "experiment_block",
            )
            if row[2] is not None:
                phase_ids.add(row[2])
        experiment_ids: set[int] = set()
        for pk, experiment, index, dashboard, randomize in self._all(
            "SELECT id, experiment_id, index, dashboard, randomize FROM experiment_phase"
            " WHERE id = ANY(%s) ORDER BY id",
            (sorted(phase_ids),),
        ):
            builder.add(
                "phase",
                Phase(
                    pk=pk,
                    experiment=experiment,
                    index=index,
                    dashboard=dashboard,
                    randomize=randomize,
                ),
                "experiment_phase",
            )
            experiment_ids.add(experiment)
        self._add_experiments(builder, sorted(experiment_ids))
        playlist_query = sql.SQL(
            "SELECT pl.id, pl.name, pl.url_prefix FROM section_playlist pl WHERE pl.id IN"
            " (SELECT bp.playlist_id FROM experiment_block_playlists bp"
            "  WHERE bp.block_id = ANY(%(blocks)s::int8[]))"
            " OR pl.id IN (SELECT s.playlist_id FROM session_session s WHERE {})"
            " ORDER BY pl.id"
        ).format(cond)
        for pk, name, url_prefix in self._all(playlist_query, params):
            builder.add(
                "playlist", Playlist(pk=pk, name=name, url_prefix=url_prefix), "section_playlist"
            )

    def _add_experiments(self, builder: GraphBuilder, experiment_ids: list[int]) -> None:
        cols = self.schema.columns["experiment_experiment"]
        optional = [
            sql.Identifier("e", c) if c in cols else sql.SQL("NULL")
            for c in ("name", "description")
        ]
        translations = [c for c in cols if re.fullmatch(r"(name|description)_\w+", c)]
        texts = self._translated_texts(_EXPERIMENT_TEXTS, "experiment_id", experiment_ids)
        rows = self._all(
            sql.SQL(
                "SELECT e.id, e.slug, {}, {}, e.active{} FROM experiment_experiment e"
                " WHERE e.id = ANY(%(ids)s::int8[]) ORDER BY e.id"
            ).format(
                optional[0],
                optional[1],
                sql.SQL("").join(sql.SQL(", ") + sql.Identifier("e", c) for c in translations),
            ),
            {"ids": experiment_ids},
        )
        for row in rows:
            pk = row[0]
            mine = texts.get(pk, {})
            extra: dict[str, JSONValue] = {
                c: v for c, v in zip(translations, row[5:], strict=True) if v is not None
            }
            extra.update(mine)
            name, description = row[2], row[3]
            if self.schema.names_in == "translated-content":
                name = _fallback(mine, "name")
                description = _fallback(mine, "description")
            builder.add(
                "experiment",
                Experiment(
                    pk=pk,
                    slug=row[1],
                    name=name,
                    description=description,
                    active=row[4],
                    extra=extra,
                ),
                "experiment_experiment",
            )

    def _translated_texts(
        self, table: str, owner: str, owner_ids: Sequence[int]
    ) -> dict[int, dict[str, JSONValue]]:
        """v3's translated-content rows as ``{owner: {"name_<lang>": …, …}}``, the fallback
        (first) row's language first: ordered by ``index`` where the table has one, then
        by pk, as MUSCLE picked its fallback content."""
        if self.schema.names_in != "translated-content" or not self.schema.has(table):
            return {}
        order = "index, id" if self.schema.has(table, "index") else "id"
        found: dict[int, dict[str, JSONValue]] = {}
        query = sql.SQL(
            "SELECT {owner}, language, name, description FROM {table}"
            " WHERE {owner} = ANY(%s) ORDER BY {owner}, " + order
        ).format(owner=sql.Identifier(owner), table=sql.Identifier(table))
        for pk, language, name, description in self._all(query, (list(owner_ids),)):
            texts = found.setdefault(pk, {})
            lang = str(language).replace("-", "_")
            texts.setdefault(f"name_{lang}", name)
            texts.setdefault(f"description_{lang}", description)
        return found

    def _results(
        self, query: sql.Composed, params: Params, generation: int, kind: str
    ) -> Iterator[list[Result]]:
        """Result batches from the snapshot transaction of ``generation``."""
        if not self._in_read or generation != self._generation:
            raise RuntimeError(
                f"the {kind} results of a database graph must be read inside its"
                " `with source.read(...)` block"
            )
        make = _row_maker(MODELS["result"], self.schema.extra_columns("result"))
        with self._errors(f"reading {kind} results"):
            for rows in self._stream(query, params):
                for start in range(0, len(rows), BATCH_SIZE):
                    batch = rows[start : start + BATCH_SIZE]
                    yield _made(make, batch, TABLES["result"], "result")

    def manifest_details(self) -> dict[str, Any]:
        """What the manifest records about the database: its name (never a password), the
        server version, MUSCLE's latest migration per app, and the snapshot time."""
        with self._errors("reading the server version"):
            version = self.conn.execute("SHOW server_version").fetchone()
        try:
            migrations = self.conn.execute(
                "SELECT app, max(name), count(*) FROM django_migrations GROUP BY app ORDER BY app"
            ).fetchall()
        except psycopg.Error:
            # A role may read MUSCLE's data without Django's bookkeeping: say so, go on.
            migrations = []
        return {
            "database": self.target.dbname,
            "location": self.location,
            "server_version": version[0] if version else None,
            "muscle_schema": self.schema.version,
            "migrations": {app: {"latest": name, "applied": n} for app, name, n in migrations},
            "snapshot_time": self._snapshot_time.isoformat() if self._snapshot_time else None,
            "isolation": "repeatable read, read only",
        }

    def close(self) -> None:
        """End the snapshot and close the connection."""
        self._end_snapshot()
        self.conn.close()

    def __enter__(self) -> MuscleDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bigints(values: Sequence[int | str]) -> list[int]:
    """The integers of ``values`` that a bigint column can hold (others match no row)."""
    return [v for v in values if type(v) is int and -(1 << 63) <= v < 1 << 63]


def _fallback(texts: Mapping[str, JSONValue], field: str) -> str | None:
    """The first language's ``field`` (the fallback content's), if any."""
    for key, value in texts.items():
        if key.startswith(field + "_"):
            return value if isinstance(value, str) else None
    return None


def _list_slugs(by_slug: Mapping[str, int]) -> str:
    slugs = sorted(by_slug)
    listed = ", ".join(slugs[:MAX_LISTED_SLUGS])
    more = len(slugs) - MAX_LISTED_SLUGS
    return listed + (f" and {more} more (see exportkit inspect)" if more > 0 else "")

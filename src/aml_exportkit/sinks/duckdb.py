"""Sink ``duckdb``: one DuckDB database file with a table per kind of record.

Tables: ``blocks``, ``participants``, ``songs``, ``sections``, ``sessions``, ``results``
(the trial results, one row each, long) and ``profile_answers``; typed columns (``BIGINT``
keys, ``TIMESTAMPTZ``, ``DOUBLE``, ``JSON`` for ``json_data``), a primary key on every
``id`` and foreign keys between them, so that DuckDB checks the joins an analysis makes.
``docs/duckdb.md`` documents the schema.

The database is written to a temporary file of the run's atomic output set and appears
under its name only when the whole run succeeded. duckdb is optional:
``pip install duckdb`` (or the ``duckdb`` extra).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ..contracts import BaseSink, OutputReport, Requirement, ResultBatch, SinkContext, SinkSpec
from ..engine import batch_values
from ..errors import SinkError
from ..graph import RecordGraph
from ..hookspecs import hookimpl
from ..records import Result
from ..tabular.table import json_text

NAME = "duckdb"
#: checked before a run reads anything, and by ``exportkit validate``
#: The package itself, not the ``duckdb`` extra: the command must work from a checkout too.
DUCKDB = Requirement(module="duckdb", install="pip install duckdb")
#: Rows per INSERT of results.
BATCH = 65536

_RESULT_FIELDS = (
    ("created_at", "TIMESTAMPTZ NOT NULL"),
    ("question_key", "VARCHAR NOT NULL"),
    ("expected_response", "VARCHAR"),
    ("given_response", "VARCHAR"),
    ("comment", "VARCHAR NOT NULL"),
    ("score", "DOUBLE"),
    ("scoring_rule", "VARCHAR NOT NULL"),
    ("json_data", "JSON"),
)


def tables(section_keys: bool) -> dict[str, tuple[tuple[str, str], ...]]:
    """Every table's columns and their SQL types and constraints, in the order the
    tables are filled.

    :param section_keys: give results a foreign key to ``sections`` (not when the template
        keeps references to sections the export lacks, ``missing_sections = "keep"``).
    """
    section = "BIGINT REFERENCES sections (id)" if section_keys else "BIGINT"
    return {
        "blocks": (
            ("id", "BIGINT PRIMARY KEY"),
            ("slug", "VARCHAR"),
            ("name", "VARCHAR"),
            ("rules", "VARCHAR"),
            ("rounds", "INTEGER"),
            ("bonus_points", "INTEGER"),
        ),
        "participants": (
            ("id", "BIGINT PRIMARY KEY"),
            ("unique_hash", "VARCHAR"),
            ("country_code", "VARCHAR"),
            ("access_info", "VARCHAR"),
            ("participant_id_url", "VARCHAR"),
        ),
        "songs": (("id", "BIGINT PRIMARY KEY"), ("artist", "VARCHAR"), ("name", "VARCHAR")),
        "sections": (
            ("id", "BIGINT PRIMARY KEY"),
            ("playlist_id", "BIGINT"),
            ("song_id", "BIGINT REFERENCES songs (id)"),
            ("start_time", "DOUBLE"),
            ("duration", "DOUBLE"),
            ("filename", "VARCHAR"),
            ("play_count", "BIGINT"),
            ("tag", "VARCHAR"),
            ('"group"', "VARCHAR"),
        ),
        "sessions": (
            ("id", "BIGINT PRIMARY KEY"),
            ("block_id", "BIGINT REFERENCES blocks (id)"),
            ("participant_id", "BIGINT NOT NULL REFERENCES participants (id)"),
            ("playlist_id", "BIGINT"),
            ("started_at", "TIMESTAMPTZ NOT NULL"),
            ("finished_at", "TIMESTAMPTZ"),
            ("final_score", "DOUBLE"),
            ("json_data", "JSON"),
        ),
        "results": (
            ("id", "BIGINT PRIMARY KEY"),
            ("session_id", "BIGINT NOT NULL REFERENCES sessions (id)"),
            ("section_id", section),
            *_RESULT_FIELDS,
        ),
        "profile_answers": (
            ("id", "BIGINT PRIMARY KEY"),
            ("participant_id", "BIGINT NOT NULL REFERENCES participants (id)"),
            ("section_id", section),
            *_RESULT_FIELDS,
        ),
    }


def create_statement(name: str, columns: Sequence[tuple[str, str]]) -> str:
    """The ``CREATE TABLE`` statement of one table."""
    body = ",\n    ".join(f"{column} {sql}" for column, sql in columns)
    return f"CREATE TABLE {name} (\n    {body}\n)"


def _arrow_type(pa: Any, sql: str) -> Any:
    kind = sql.split()[0]
    if kind == "BIGINT":
        return pa.int64()
    if kind == "INTEGER":
        return pa.int32()
    if kind == "DOUBLE":
        return pa.float64()
    if kind == "TIMESTAMPTZ":
        return pa.timestamp("us", tz="UTC")
    return pa.string()  # VARCHAR, and JSON as its text


def _duckdb() -> tuple[Any, Any]:
    # imported by name: duckdb is optional (the spec requires it); rows go in as Arrow
    # tables, as DuckDB's executemany takes milliseconds per row
    return importlib.import_module("duckdb"), importlib.import_module("pyarrow")


@attrs.frozen(kw_only=True)
class DuckdbOptions:
    """Options of ``duckdb`` (none besides ``path``: the schema is fixed, see
    docs/duckdb.md)."""


def _json(value: Any) -> str | None:
    return None if value is None else json_text(value)


def _result_row(result: Result, owner: int | None) -> tuple[Any, ...]:
    return (
        result.pk,
        owner,
        result.section,
        result.created_at,
        result.question_key,
        result.expected_response,
        result.given_response,
        result.comment,
        result.score,
        result.scoring_rule,
        _json(result.json_data),
    )


class DuckdbSink(BaseSink):
    """Writes the run's records into one DuckDB file."""

    def __init__(self, context: SinkContext) -> None:
        super().__init__(context)
        self._temp: Path | None = None
        self._db: Any = None
        self._counts = {"results": 0, "profile_answers": 0}
        keep = context.template.source.missing_sections == "keep"
        self._tables = tables(section_keys=not keep)

    def _insert(self, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        _, pa = _duckdb()
        columns = self._tables[table]
        batch = pa.table(
            {
                name.strip('"'): pa.array([row[i] for row in rows], _arrow_type(pa, sql))
                for i, (name, sql) in enumerate(columns)
            }
        )
        self._insert_table(table, batch)

    def _insert_table(self, table: str, batch: object) -> None:
        """Insert an Arrow table whose columns are the table's, in order."""
        duckdb, _ = _duckdb()
        try:
            self._db.register("exportkit_batch", batch)
            self._db.execute(f"INSERT INTO {table} SELECT * FROM exportkit_batch")
        except duckdb.Error as exc:
            raise SinkError(
                f"table {table}: {str(exc).splitlines()[0]}",
                sink=NAME,
                path=str(self.context.target),
            ) from None
        finally:
            self._db.unregister("exportkit_batch")

    def begin(self, graph: RecordGraph) -> None:
        """Create the database and fill the small tables."""
        self._temp = self.context.temp_path()
        self._db = _duckdb()[0].connect(str(self._temp))
        for name, columns in self._tables.items():
            self._db.execute(create_statement(name, columns))
        self._db.execute("BEGIN TRANSACTION")
        blocks = graph.blocks.values()
        self._insert(
            "blocks",
            [(b.pk, b.slug, b.name, b.rules, b.rounds, b.bonus_points) for b in blocks],
        )
        self._insert(
            "participants",
            [
                (p.pk, p.unique_hash, p.country_code, p.access_info, p.participant_id_url)
                for p in graph.participants.values()
            ],
        )
        self._insert("songs", [(s.pk, s.artist, s.name) for s in graph.songs.values()])
        self._insert(
            "sections",
            [
                (
                    s.pk,
                    s.playlist,
                    s.song,
                    s.start_time,
                    s.duration,
                    s.filename,
                    s.play_count,
                    s.tag,
                    s.group,
                )
                for s in graph.sections.values()
            ],
        )
        known = set(graph.blocks)
        self._insert(
            "sessions",
            [
                (
                    s.pk,
                    s.block if s.block in known else None,
                    s.participant,
                    s.playlist,
                    s.started_at,
                    s.finished_at,
                    s.final_score,
                    _json(s.json_data),
                )
                for s in graph.sessions.values()
            ],
        )

    def write_profiles(self, batch: Sequence[Result]) -> None:
        """Insert profile answers."""
        for start in range(0, len(batch), BATCH):
            part = batch[start : start + BATCH]
            self._insert("profile_answers", [_result_row(r, r.participant) for r in part])
        self._counts["profile_answers"] += len(batch)

    def write_result_batch(self, batch: ResultBatch) -> None:
        """Insert the engine's trial results column by column: the keys, texts and scores
        as the batch holds them, ``created_at`` and ``json_data`` as :meth:`write_profiles`
        writes the records' (the same datetimes, the same JSON text), with no records
        made."""
        _, pa = _duckdb()
        created, values = batch_values(batch)
        columns = self._tables["results"]
        names = [name for name, _ in columns]
        arrays: dict[str, object] = {
            "id": batch.column("pk"),
            "session_id": batch.column("session"),
            "section_id": batch.column("section"),
            "created_at": pa.array(created, _arrow_type(pa, "TIMESTAMPTZ")),
            "json_data": pa.array([_json(v) for v in values], pa.string()),
        }
        for name in names:
            if name not in arrays:
                arrays[name] = batch.column(name)
        self._insert_table("results", pa.table({name: arrays[name] for name in names}))
        self._counts["results"] += batch.num_rows

    def finish(self) -> Sequence[OutputReport]:
        """Commit and close the database (its write-ahead log folds into the file)."""
        self._db.execute("COMMIT")
        self._db.execute("CHECKPOINT")
        self._db.close()
        self._db = None
        return (OutputReport(path=self.context.target, rows=self._counts["results"]),)

    def abort(self) -> None:
        """Close the database; the pipeline removes the file, and its log goes here."""
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None
        if self._temp is not None:
            Path(str(self._temp) + ".wal").unlink(missing_ok=True)


@hookimpl
def exportkit_register_sinks() -> list[SinkSpec]:
    """The duckdb sink."""
    return [
        SinkSpec(
            name=NAME,
            description="one DuckDB database: tables of sessions, participants, results, "
            "profile answers, sections and songs, with keys",
            options=DuckdbOptions,
            factory=DuckdbSink,
            extensions=(".duckdb",),
            requires=(DUCKDB,),
        )
    ]

"""The engine's reader of a MUSCLE database: trial results by groups of sessions.

Each worker process opens its own connection and imports the source's snapshot
(``pg_export_snapshot``), so every chunk comes from the same instant as the graph. Where
the server exports no snapshot, the parent reads the trial results in its own transaction
and the engine cuts them into chunks (:class:`~aml_exportkit.engine.RecordChunks`): the same
engine, fed by one connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ..engine import (
    Checks,
    ChunkMeta,
    RecordChunks,
    ResultColumns,
    StandDown,
    finish_columns,
    make_checks,
    native_kernel,
    wide_integers,
)
from ..graph import PkSet

if TYPE_CHECKING:
    from ..graph import RecordGraph
    from ..records import Result

#: Sessions per chunk.
CHUNK_SESSIONS = 200
#: MUSCLE's columns of ``result_result``, in the source's order (more are each record's extra).
MUSCLE_COLUMNS = (
    "id",
    "session_id",
    "participant_id",
    "section_id",
    "created_at",
    "question_key",
    "expected_response",
    "given_response",
    "comment",
    "score",
    "scoring_rule",
    "json_data",
)


class DbTrialResults:
    """The trial results of a MUSCLE database, read by session groups.

    Each worker process opens its own connection and imports the source's snapshot
    (``pg_export_snapshot``), so every chunk comes from the same instant as the graph.
    Without a snapshot (the server exported none) the graph's own reading of the trial
    results, in the source's transaction, feeds the engine (:class:`RecordChunks`).

    A chunk that the columnar reading refuses is read again by :meth:`reference`, with the
    source's own row maker and the graph's checks, which give its plain values or the
    source's error (naming the row's record).

    :param uri: the source's URI (it stays in memory: the workers connect with it).
    :param conn: the source's connection, inside its snapshot transaction.
    :param select: the SELECT list of ``result_result r`` (the source's, json as UTF-8).
    :param records: the source's reading of rows (its row maker): records, or the source's
        error naming the row's record.
    :param errors: the source's context that turns a database error into its one-line
        error.
    :param snapshot: the id of the source transaction's exported snapshot (None: the server
        exported none).
    """

    def __init__(
        self,
        uri: str,
        conn: Any,
        select: Any,
        records: Callable[[list[Any]], list[Result]] | None = None,
        errors: Callable[[str], contextlib.AbstractContextManager[None]] | None = None,
        snapshot: str | None = None,
    ) -> None:
        self.uri = uri
        self.conn = conn
        self.snapshot = snapshot
        self.select = select
        self.records = records
        self.errors = errors
        #: the reader of the graph's records, when there is no snapshot
        self.fed: RecordChunks | None = None
        self.sessions: list[int] = []
        self.checks: Checks | None = None
        self.graph: RecordGraph | None = None
        self._worker_conn: Any = None
        self._copy_kinds: str | None = ""  # ("": not asked yet; None: rows are read)

    def open(self, graph: RecordGraph) -> None:
        """Note the sessions (without a snapshot: take the graph's records)."""
        if self.snapshot is None:
            self.fed = RecordChunks()
            self.fed.open(graph)
            return
        self.sessions = sorted(graph.sessions)
        self.checks = make_checks(graph, frozenset())
        self.graph = graph

    def tasks(self) -> list[Any]:
        """Groups of session pks, in order, with the share of sessions done after each."""
        if self.fed is not None:
            return self.fed.tasks()
        size = CHUNK_SESSIONS
        total = max(len(self.sessions), 1)
        return [
            (self.sessions[i : i + size], min(i + size, total) / total)
            for i in range(0, len(self.sessions), size)
        ] or [([], 1.0)]

    def _query(self) -> Any:
        from psycopg import sql

        return sql.SQL(
            "SELECT {} FROM result_result r WHERE r.session_id = ANY(%s::int8[])"
            " ORDER BY r.session_id, r.id"
        ).format(self.select)

    def sample(self) -> ResultColumns | None:
        """The results of a few sessions spread over the export, for the first header."""
        if self.fed is not None:
            return self.fed.sample()
        if not self.sessions or self.checks is None:
            return None
        step = max(1, len(self.sessions) // 16)
        picked = self.sessions[::step][:16]
        import psycopg

        try:
            with self.conn.cursor(binary=True) as cur:
                rows = cur.execute(self._query(), (picked,)).fetchall()
            return db_columns(rows, self.checks)[0]
        except (StandDown, psycopg.Error, ValueError):
            # (a value no record may hold, UnfitValue: the worker that reads it reports it)
            return None

    def _connection(self) -> Any:
        if self._worker_conn is None:
            import psycopg

            from .muscle_db_reader import _loads

            conn = psycopg.connect(self.uri, autocommit=True, application_name="aml_exportkit")
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{self.snapshot}'")
            conn.execute("SET TIME ZONE 'UTC'")
            psycopg.types.json.set_json_loads(_loads, conn)
            self._worker_conn = conn
        return self._worker_conn

    def _rows(self, group: list[int]) -> list[Any]:
        import psycopg

        errors = self.errors("reading trial results") if self.errors else contextlib.nullcontext()
        with errors:
            try:
                with self._connection().cursor(binary=True) as cur:
                    return cur.execute(self._query(), (group,)).fetchall()  # type: ignore[no-any-return]
            except psycopg.Error as exc:
                if self.errors is None:
                    raise StandDown(f"database: {exc}") from None
                raise

    def _columns(self, group: list[int]) -> list[list[Any]] | None:
        """The group's columns read by a binary COPY with the native kernel
        (muscle_db_copy.py); None when that reading does not take them (then rows are
        read)."""
        import psycopg

        from .muscle_db_copy import copy_columns, copy_kinds, copy_messages, copy_statement

        if native_kernel() is None:  # (the Python parser is slower than psycopg's rows)
            return None
        errors = self.errors("reading trial results") if self.errors else contextlib.nullcontext()
        with errors:
            try:
                conn = self._connection()
                if self._copy_kinds == "":
                    self._copy_kinds = copy_kinds(conn, self.select)
                if self._copy_kinds is None:
                    return None
                messages = copy_messages(conn, copy_statement(self.select, group))
            except psycopg.Error as exc:  # (as _rows reports it)
                if self.errors is None:
                    raise StandDown(f"database: {exc}") from None
                raise
        return copy_columns(messages, self._copy_kinds)

    def work(self, task: Any) -> tuple[ResultColumns, ChunkMeta]:
        """Read, parse and check one group of sessions (in a worker); a group that the
        columnar checks refuse, or whose rows hold columns beyond MUSCLE's (each record's
        ``extra``, made by the source's row maker), is read by :meth:`reference`."""
        if self.fed is not None:
            return self.fed.work(task)
        assert self.checks is not None
        group, position = task
        columns = self._columns(group)
        try:
            if columns is None:
                cols, meta = db_columns(self._rows(group), self.checks)
            else:
                cols, meta = column_chunk(columns, self.checks, created_texts=True)
        except StandDown:
            if self.records is None:
                raise
            del columns
            return self.reference(task)
        meta["position"] = position
        return cols, meta

    def reference(self, task: Any) -> tuple[ResultColumns, ChunkMeta]:
        """Read one group of sessions with the source's row maker and the graph's checks,
        record by record: the chunk's plain values, or the source's error."""
        from .fixture_zip_chunks import result_columns

        if self.fed is not None:
            return self.fed.reference(task)
        if self.records is None or self.graph is None or self.checks is None:
            raise StandDown("no reference reading")
        group, position = task
        results = self.records(self._rows(group))
        checker = self.graph.result_checker("trial", PkSet())
        for result in results:
            checker.check(result)
        cols, meta = result_columns(results, self.checks)
        meta["position"] = position
        return cols, meta

    def finish(self, crcs: Sequence[tuple[int, int]]) -> None:
        """Nothing to check at the end."""


def db_columns(rows: list[Any], checks: Checks) -> tuple[ResultColumns, ChunkMeta]:
    """Rows of ``result_result`` (the source's column order) as checked columns."""
    if not rows:
        return finish_columns([], [], [], [], [], {}, [], [], checks)
    return column_chunk(list(zip(*rows, strict=True)), checks)


def column_chunk(
    columns: Sequence[Sequence[Any]], checks: Checks, *, created_texts: bool = False
) -> tuple[ResultColumns, ChunkMeta]:
    """The columns of ``result_result`` (the source's order) as checked columns.

    :param created_texts: ``created_at`` holds the CSV's texts already (a binary COPY's
        reading), not datetimes.
    """
    if not columns or not columns[0]:
        return finish_columns([], [], [], [], [], {}, [], [], checks)
    if len(columns) > len(MUSCLE_COLUMNS):  # (the records' extra: the source's row maker)
        raise StandDown("columns beyond MUSCLE's")
    pks, sessions, participants, sections, created = columns[:5]
    kernel = native_kernel()
    texts: Any = None
    if created_texts:
        if None in created:
            raise StandDown("created_at: a value that is not a timestamp")
        texts = created
    elif kernel is not None:
        texts = kernel.utc_texts(created)  # None: not all UTC
    if texts is None:
        if {type(d).__name__ for d in created} != {"datetime"}:
            raise StandDown("created_at: a value that is not a timestamp")
        texts = [d.isoformat(timespec="microseconds") for d in created]
    strings = dict(
        zip(
            ("question_key", "expected_response", "given_response", "comment", "scoring_rule"),
            (columns[5], columns[6], columns[7], columns[8], columns[10]),
            strict=True,
        )
    )
    json_data, raw = _json_column(columns[11])
    return finish_columns(
        pks,
        sessions,
        participants,
        sections,
        texts,
        strings,
        columns[9],
        json_data,
        checks,
        raw_json=raw,
    )


def _json_column(docs: Sequence[Any]) -> tuple[list[Any], bool]:
    """The chunk's ``json_data``: the jsonb texts themselves when the native kernel will
    flatten them (a SQL NULL read as JSON null, as the source's ``_loads`` reads it), else
    the parsed values."""
    if native_kernel() is not None:
        texts = [b"null" if d is None else d for d in docs] if None in docs else list(docs)
        if all(type(d) is bytes for d in texts):
            return texts, True
    return _json_values(docs), False


def _json_values(docs: Sequence[Any]) -> list[Any]:
    """Parse the jsonb texts of a chunk at once (as the source's ``_loads`` parses each).

    :raises StandDown: for a value no record may hold (the source's ``UnfitValue``): the
        chunk's reference reading then raises the source's error naming the record."""
    from .muscle_db_reader import UnfitValue

    try:
        return _parse_json(docs)
    except UnfitValue as exc:
        raise StandDown(f"json_data: {exc}") from None


def _parse_json(docs: Sequence[Any]) -> list[Any]:
    from .muscle_db_reader import _loads

    if None in docs:
        docs = [b"null" if d is None else d for d in docs]
    if not all(type(d) is bytes for d in docs):
        return [_loads(d) for d in docs]
    body = b",".join(docs)
    if wide_integers(body):
        return [_loads(d) for d in docs]
    try:
        values = orjson.loads(b"[" + body + b"]")
    except orjson.JSONDecodeError:
        return [_loads(d) for d in docs]
    if len(values) != len(docs):  # pragma: no cover - jsonb text is one value each
        return [_loads(d) for d in docs]
    return values  # type: ignore[no-any-return]

"""MUSCLE's classic wide layout on the engine, in the corners where it stood down before
(decision 0033): a common column that starts with a digit (it sorts among the prefixed
result columns), a table of one column (a row of one empty cell is ``""``) or of none, and
a session with 1000 results or more (``1000-`` sorts between ``100-`` and ``101-``).

The row builder (:class:`~aml_exportkit.tabular.muscle.ClassicBuilder`, written by the
sink's :func:`~aml_exportkit.tabular.table.write_python_csv`) is the reference of MUSCLE's
bytes: hypothesis holds the engine's renderer to it directly, chunk by chunk; the export
tests run whole exports in several chunks and compare with the text the row builder
writes, given literally."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aml_exportkit import engine
from aml_exportkit.engine.batches import record_columns
from aml_exportkit.engine.chunks import make_checks
from aml_exportkit.engine.muscle import ClassicWideRenderer
from aml_exportkit.graph import GraphBuilder, RecordGraph, SourceInfo
from aml_exportkit.records import Participant, Result, Session
from aml_exportkit.sources import fixture_zip_chunks
from aml_exportkit.tabular.muscle import ClassicBuilder
from aml_exportkit.tabular.options import (
    Classic,
    ClassicOption,
    ClassicResultField,
    ClassicSessionField,
)
from aml_exportkit.tabular.table import line_end, write_python_csv
from zipcases import write_zip

from .test_engine import _run

START = datetime(2026, 1, 1, tzinfo=UTC)

# -- the renderer against the row builder (hypothesis) ----------------------------------------

#: Keys of session json and profile answers: ones that sort before, among and after the
#: prefixed columns, and ones that are prefixed columns' names.
_KEYS = st.sampled_from(
    [
        *("", "-x", "=f", "0", "1q", "2x", "100", "1000", "001-given_response", "100-a"),
        *("1000-x", "999-given_response", "9~", "Z", "a", "given_response", "zz", "é"),
    ]
)
_TEXT = st.sampled_from(["", "a", "b,c", '"q"', "x\r\ny", "=1+1", "-2", "é", " "])
#: Results per session: around where prefixes change width or sort apart.
_COUNTS = st.sampled_from([0, 0, 1, 2, 3, 99, 100, 101, 110, 999, 1000, 1001, 1011])


def _graph(
    sessions: list[Session], participants: list[Participant], results: list[Result]
) -> RecordGraph:
    builder = GraphBuilder(
        SourceInfo(kind="memory", location="memory:", schema_version="test", provided=frozenset())
    )
    for participant in participants:
        builder.add("participant", participant, "memory participant")
    for session in sessions:
        builder.add("session", session, "memory session")
    profiles = [r for r in results if r.session is None]
    trials = [r for r in results if r.session is not None]
    return builder.build(profile_results=lambda: [profiles], trial_results=lambda: [trials])


@st.composite
def _exports(draw: st.DrawFn) -> tuple[RecordGraph, list[Result], list[Result], list[list[int]]]:
    """A graph, its profile answers, its trial results and the chunks (sessions with
    results, in order) the trial results are cut into."""
    n_participants = draw(st.integers(1, 3))
    participants = [
        Participant(
            pk=p,
            unique_hash=f"h{p}",
            country_code=draw(_TEXT),
            access_info=draw(st.none() | _TEXT),
            participant_id_url=None,
        )
        for p in range(1, n_participants + 1)
    ]
    counts = draw(st.lists(_COUNTS, min_size=1, max_size=4))
    sessions = [
        Session(
            pk=s,
            block=None,
            participant=draw(st.integers(1, n_participants)),
            playlist=None,
            started_at=START,
            finished_at=draw(st.none() | st.just(START)),
            json_data=draw(st.dictionaries(_KEYS, _TEXT, max_size=3) | st.none()),
            final_score=draw(st.sampled_from([0.0, 1.5])),
        )
        for s in range(1, len(counts) + 1)
    ]
    pk = 0
    profiles = []
    for p in range(1, n_participants + 1):
        for key in draw(st.lists(_KEYS, max_size=2)):
            pk += 1
            profiles.append(
                _result(
                    pk, None, p, START, key, draw(_TEXT), draw(st.sampled_from([None, 0.0, 2.0]))
                )
            )
    trials = []
    for session, count in zip(sessions, counts, strict=True):
        given_texts = draw(st.lists(_TEXT, min_size=1, max_size=3))
        for n in range(count):
            pk += 1
            # created out of pk order now and then: a session's results go by creation time
            when = START + timedelta(seconds=(n * 7) % (count + 3))
            trials.append(
                _result(pk, session.pk, None, when, "q", given_texts[n % len(given_texts)], None)
            )
    with_results = [s.pk for s, c in zip(sessions, counts, strict=True) if c]
    cuts = draw(st.lists(st.booleans(), min_size=len(with_results), max_size=len(with_results)))
    chunks: list[list[int]] = []
    for pk_, cut in zip(with_results, cuts, strict=True):
        if cut or not chunks:
            chunks.append([])
        chunks[-1].append(pk_)
    return _graph(sessions, participants, profiles + trials), profiles, trials, chunks


def _result(
    pk: int,
    session: int | None,
    participant: int | None,
    when: datetime,
    key: str,
    given: str,
    score: float | None,
) -> Result:
    return Result(
        pk=pk,
        session=session,
        participant=participant,
        section=None,
        created_at=when,
        question_key=key,
        expected_response=None,
        given_response=given,
        comment="",
        score=score,
        scoring_rule="",
        json_data={"decision_time": 0.5, "config": {"k": given}} if pk % 2 else None,
    )


_SESSION_FIELDS = list(get_args(ClassicSessionField))
_RESULT_FIELDS = list(get_args(ClassicResultField))
_OPTIONS = list(get_args(ClassicOption))


@settings(max_examples=60, deadline=None)
@given(
    export=_exports(),
    session_fields=st.lists(st.sampled_from(_SESSION_FIELDS), unique=True, max_size=3),
    result_fields=st.lists(st.sampled_from(_RESULT_FIELDS), unique=True, max_size=3),
    options=st.lists(st.sampled_from(_OPTIONS), unique=True),
    ms=st.booleans(),
    guard=st.booleans(),
)
def test_the_renderer_writes_what_the_row_builder_writes(
    export: tuple[RecordGraph, list[Result], list[Result], list[list[int]]],
    session_fields: list[str],
    result_fields: list[str],
    options: list[str],
    ms: bool,
    guard: bool,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The engine's wide layout, chunk by chunk as the workers and the parent write it and
    laid out at the end, is the row builder's table as the sink writes it: MUSCLE's header
    (every key sorted, the common keys that start with a digit and ``1000-`` included)."""
    graph, profiles, trials, chunks = export
    form = Classic(
        session_fields=tuple(session_fields),  # type: ignore[arg-type]
        result_fields=tuple(result_fields),  # type: ignore[arg-type]
        options=tuple(options),  # type: ignore[arg-type]
    )

    def builder() -> ClassicBuilder:
        made = ClassicBuilder(form, graph, wide=True, ms=ms)
        made.add_profiles(profiles)
        return made

    reference = builder()
    reference.add_results(trials)
    path = tmp_path_factory.mktemp("classic") / "wide.csv"
    table = reference.finish()
    write_python_csv(path, table, lineterminator=line_end("classic"), formula_guard=guard)

    renderer = ClassicWideRenderer(builder(), formula_guard=guard)
    renderer.columns()  # (in the parent, before the workers fork)
    parts = io.BytesIO()
    found: dict[str, set[type]] = {}
    checks = make_checks(graph, frozenset())
    for sessions in chunks:
        parts.write(b"".join(renderer.between(sessions)))
        cols, _ = record_columns([r for r in trials if r.session in sessions], checks)
        parts.write(renderer.render(cols, {}, ()))
        found.update(renderer.types({}))
    parts.write(b"".join(renderer.between(None)))
    parts.seek(0)
    renderer.builder.close()
    assert b"".join(renderer.lay_out(parts, found)) == path.read_bytes()
    assert renderer.fixed == list(table.columns)


# -- whole exports, in several chunks ------------------------------------------------------


def _zip(path: Path, sessions: list[dict[str, Any]], results: list[dict[str, Any]]) -> Path:
    """A MUSCLE zip of block ``x``: ``sessions`` as (participant, json_data) and
    ``results`` as (session, given_response), created a second apart."""
    return write_zip(
        path,
        {
            "sessions.json": [
                {
                    "model": "session.session",
                    "pk": pk,
                    "fields": {
                        "block": 1,
                        "participant": s["participant"],
                        "playlist": None,
                        "started_at": "2026-01-01T00:00:00Z",
                        "finished_at": None,
                        "json_data": s.get("json", {}),
                        "final_score": 0.0,
                    },
                }
                for pk, s in enumerate(sessions, 1)
            ],
            "participants.json": [
                {
                    "model": "participant.participant",
                    "pk": p,
                    "fields": {
                        "unique_hash": f"h{p}",
                        "country_code": "nl",
                        "access_info": "",
                        "participant_id_url": None,
                    },
                }
                for p in sorted({s["participant"] for s in sessions})
            ],
            "profiles.json": [],
            "results.json": [
                {
                    "model": "result.result",
                    "pk": pk,
                    "fields": {
                        "session": r["session"],
                        "participant": None,
                        "section": None,
                        "created_at": (START + timedelta(seconds=pk)).isoformat(),
                        "question_key": "q",
                        "expected_response": None,
                        "given_response": r["given"],
                        "comment": "",
                        "score": None,
                        "scoring_rule": "",
                        "json_data": {},
                    },
                }
                for pk, r in enumerate(results, 100)
            ],
            "sections.json": [],
            "songs.json": [],
            "feedback.json": [],
        },
    )


def _classic_wide(session_fields: list[str], result_fields: list[str], options: list[str]) -> str:
    return (
        '[[sinks]]\ntype = "csv-wide"\npath = "w.csv"\nstyle = "muscle-classic"\n'
        f"[sinks.classic]\nsession_fields = {json.dumps(session_fields)}\n"
        f"result_fields = {json.dumps(result_fields)}\noptions = {json.dumps(options)}\n"
    )


def _export(text: str, source: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The table the engine writes (a stand-down is an error), from chunks of a session or
    two (so that sessions without results lie between them and every worker writes some)."""
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 200)
    monkeypatch.setattr(fixture_zip_chunks, "SAMPLE_BYTES", 200)
    files = _run(text, source, out)
    return files["w.csv"]


_SESSIONS = [
    {"participant": 1, "json": {"2x": "a", "zz": "b", "=f": "=1"}},
    {"participant": 1, "json": {"001-given_response": "c", "100": "d"}},
    {"participant": 2},
]
_RESULTS = [
    {"session": 1, "given": "r1"},
    {"session": 1, "given": "r2"},
    {"session": 2, "given": "s1"},
]


def test_a_common_column_that_starts_with_a_digit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session json keys that start with a digit sort among the prefixed columns; one that
    is a prefixed column's name is overwritten by the result's cell (MUSCLE's
    ``row.update``), and stays where the session has no such result."""
    source = _zip(tmp_path / "block_x.zip", _SESSIONS, _RESULTS)
    text = _classic_wide(
        ["participant_id"], ["given_response"], ["session_data", "convert_session_json"]
    )
    assert _export(text, source, tmp_path / "out", monkeypatch) == (
        b"001-given_response,002-given_response,100,2x,=f,participant_id,zz\r\n"
        b"r1,r2,,a,=1,1,b\r\n"
        b"s1,,d,,,1,\r\n"
        b",,,,,2,\r\n"
    )
    assert engine.LAST_RUN["chunks"] >= 2
    guarded = text.replace(
        'style = "muscle-classic"\n', 'style = "muscle-classic"\nformula_guard = true\n'
    )
    # (the names stay as they are: the sink's writer guards the cells only)
    assert _export(guarded, source, tmp_path / "guarded", monkeypatch) == (
        b"001-given_response,002-given_response,100,2x,=f,participant_id,zz\r\n"
        b"r1,r2,,a,'=1,1,b\r\n"
        b"s1,,d,,,1,\r\n"
        b",,,,,2,\r\n"
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["final_score"], b"final_score\r\n0.0\r\n0.0\r\n0.0\r\n"),
        # a row of one empty cell, as the csv writer writes it
        (["session_end"], b'session_end\r\n""\r\n""\r\n""\r\n'),
        # no column at all: empty lines
        ([], b"\r\n\r\n\r\n\r\n"),
    ],
    ids=["one-column", "one-empty-column", "no-column"],
)
def test_a_table_of_one_column_or_none(
    fields: list[str], expected: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _zip(tmp_path / "block_x.zip", _SESSIONS, _RESULTS)
    assert _export(_classic_wide(fields, [], []), source, tmp_path / "out", monkeypatch) == expected


def test_one_prefixed_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One result field and sessions of one result at most: one column."""
    source = _zip(tmp_path / "block_x.zip", _SESSIONS, [_RESULTS[0]])
    text = _classic_wide([], ["given_response"], [])
    assert _export(text, source, tmp_path / "out", monkeypatch) == (
        b'001-given_response\r\nr1\r\n""\r\n""\r\n'
    )


def test_a_session_with_1000_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``1000-`` sorts between ``100-`` and ``101-`` (MUSCLE sorts the keys as text): a
    session with fewer results gets the empty cells of ``1000-`` there, within its own."""
    sessions = [{"participant": 1}, {"participant": 1, "json": {"100-z": "j"}}, {"participant": 2}]
    results = [{"session": 1, "given": f"a{n}"} for n in range(1, 1002)]
    results += [{"session": 2, "given": f"b{n}"} for n in range(1, 102)]
    source = _zip(tmp_path / "block_x.zip", sessions, results)
    text = _classic_wide(
        ["participant_id"],
        ["given_response", "result_comment"],
        ["session_data", "convert_session_json"],
    )
    got = _export(text, source, tmp_path / "out", monkeypatch).decode("utf-8")
    assert engine.LAST_RUN["chunks"] >= 2
    header, first, second, third, end = got.split("\r\n")
    assert end == ""
    names = header.split(",")
    assert len(names) == 1001 * 2 + 2
    at = names.index("100-z")
    assert names[at - 2 : at + 6] == [
        "100-given_response",
        "100-result_comment",
        "100-z",
        "1000-given_response",
        "1000-result_comment",
        "1001-given_response",
        "1001-result_comment",
        "101-given_response",
    ]
    assert names[-1] == "participant_id"
    rows = [dict(zip(names, line.split(","), strict=True)) for line in (first, second, third)]
    assert rows[0]["1000-given_response"] == "a1000"
    assert rows[0]["1001-given_response"] == "a1001"
    assert rows[0]["101-given_response"] == "a101"
    assert rows[0]["100-z"] == ""
    assert rows[1]["100-given_response"] == "b100"
    assert rows[1]["1000-given_response"] == ""
    assert rows[1]["101-given_response"] == "b101"
    assert rows[1]["102-given_response"] == ""
    assert rows[1]["100-z"] == "j"
    assert set(rows[2].values()) == {"", "2"}
    # the row builder's bytes (recorded from the plain path before it went)
    assert hashlib.sha256(got.encode("utf-8")).hexdigest() == (
        "3a32b868ff2e44e2aae7263d4904b251eea7a469e6ecaed0994afde6b421925c"
    )

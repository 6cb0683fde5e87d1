"""Property: any record graph → fixture-json zip → zip source gives the same records."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aml_exportkit.contracts import SourceOptions
from aml_exportkit.pipeline import run_export
from aml_exportkit.plugins import get_plugin_manager, load_registry
from aml_exportkit.records import Block, Feedback, Participant, Result, Section, Session, Song
from aml_exportkit.selection import Selection
from aml_exportkit.sources.fixture_zip import FixtureZipSource
from aml_exportkit.template.load import parse_template
from memory_source import MemoryPlugin, MemorySource

BLOCK = 7
KEYS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["a.b", "with space", "ünï©ødé ♪", "", "decision_time", "x.y.z"]),
)
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: big integers too
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)
TIMES = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TEXT = st.text(max_size=30)


def short(n: int) -> st.SearchStrategy[str]:
    return st.text(max_size=n)


@st.composite
def graphs(draw: st.DrawFn) -> tuple[dict[str, list[Any]], list[Result]]:
    pks = iter(draw(st.lists(st.integers(1, 2**31 - 1), min_size=80, max_size=80, unique=True)))
    participants = [
        Participant(
            pk=next(pks),
            unique_hash=draw(short(64)),
            country_code=draw(short(3)),
            access_info=draw(st.none() | short(512)),
            participant_id_url=draw(st.none() | short(128)),
        )
        for _ in range(draw(st.integers(1, 4)))
    ]
    sessions = [
        Session(
            pk=next(pks),
            block=BLOCK,
            participant=draw(st.sampled_from(participants)).pk,
            playlist=draw(st.none() | st.integers(1, 99)),
            started_at=draw(TIMES),
            finished_at=draw(st.none() | TIMES),
            json_data=draw(JSON),
            final_score=draw(FLOATS),
            extra=draw(st.just({}) | st.fixed_dictionaries({"current_round": st.integers()})),
        )
        for _ in range(draw(st.integers(0, 4)))
    ]
    songs = [
        Song(pk=next(pks), artist=draw(short(128)), name=draw(short(128)))
        for _ in range(draw(st.integers(0, 3)))
    ]
    sections = [
        Section(
            pk=next(pks),
            playlist=draw(st.integers(1, 9)),
            song=draw(st.none() | st.sampled_from([s.pk for s in songs] or [None])),
            start_time=draw(FLOATS),
            duration=draw(FLOATS),
            filename=draw(short(255)),
            play_count=draw(st.integers(0, 2**31 - 1)),
            tag=draw(short(128)),
            group=draw(short(128)),
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    feedback = [
        Feedback(pk=next(pks), text=draw(TEXT), block=BLOCK) for _ in range(draw(st.integers(0, 2)))
    ]
    results: list[Result] = []
    for _ in range(draw(st.integers(0, 12))):
        trial = bool(sessions) and draw(st.booleans())
        results.append(
            Result(
                pk=next(pks),
                session=draw(st.sampled_from(sessions)).pk if trial else None,
                participant=None if trial else draw(st.sampled_from(participants)).pk,
                section=draw(st.none() | st.sampled_from([s.pk for s in sections] or [None])),
                created_at=draw(TIMES),
                question_key=draw(short(64)),
                expected_response=draw(st.none() | short(100)),
                given_response=draw(st.none() | short(100)),
                comment=draw(short(100)),
                score=draw(st.none() | FLOATS),
                scoring_rule=draw(short(64)),
                json_data=draw(JSON),
            )
        )
    tables: dict[str, list[Any]] = {
        "participant": participants,
        "session": sessions,
        "song": songs,
        "section": sections,
        "feedback": feedback,
    }
    if sessions or feedback:
        tables["block"] = [Block(pk=BLOCK, slug="prop-block")]
    return tables, results


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(graph=graphs())
def test_graph_round_trips_through_fixture_zip(
    graph: tuple[dict[str, list[Any]], list[Result]], tmp_path_factory: Any
) -> None:
    tables, results = graph
    out = Path(tmp_path_factory.mktemp("rt"))
    manager = get_plugin_manager(
        load_entrypoints=False, plugins=[MemoryPlugin(MemorySource(tables, results))]
    )
    template = parse_template(
        '[[sinks]]\ntype = "fixture-json"\npath = "g.zip"\n',
        file="t.toml",
        folder=out,
        sinks=load_registry(manager).sink_specs,
    )
    run_export(template, source="memory:", out_dir=out, plugin_manager=manager)

    with (
        FixtureZipSource(out / "g.zip", SourceOptions()) as source,
        source.read(Selection(blocks=("prop-block",))) as back,
    ):
        for key, records in tables.items():
            assert (
                list(back.table(key).values()) == sorted(records, key=lambda r: r.pk)
                if key != "section"
                else list(back.table(key).values()) == records
            ), key
        got = [r for batch in back.profile_results() for r in batch]
        got += [r for batch in back.trial_results() for r in batch]
    assert sorted(got, key=lambda r: r.pk) == sorted(results, key=lambda r: r.pk)

"""A small record graph with awkward values, served from memory, and a runner for
templates against it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aml_exportkit.pipeline import ExportReport, run_export
from aml_exportkit.plugins import get_plugin_manager, load_registry
from aml_exportkit.records import Block, Participant, Result, Section, Session, Song
from aml_exportkit.template.load import parse_template
from memory_source import MemoryPlugin, MemorySource

T0 = datetime(2024, 7, 22, 10, 26, 50, 911123, tzinfo=UTC)
CET = timezone(timedelta(hours=2))


def tables() -> tuple[dict[str, list[Any]], list[Result]]:
    """Block 1 with three sessions (session 12 has no results), two participants."""
    block = Block(pk=1, slug="blk", name="Blök ♪")
    participants = [
        Participant(
            pk=5,
            unique_hash="h5",
            country_code="nl",
            access_info='UA, "q"',
            participant_id_url=None,
        ),
        Participant(
            pk=6,
            unique_hash="h6",
            country_code="",
            access_info=None,
            participant_id_url="prolific-ü",
        ),
    ]
    sessions = [
        Session(
            pk=10,
            block=1,
            participant=5,
            playlist=None,
            started_at=T0,
            finished_at=T0 + timedelta(minutes=3),
            json_data={"experiment": "x", "n": [1, 2]},
            final_score=3.0,
        ),
        Session(
            pk=11,
            block=1,
            participant=6,
            playlist=None,
            started_at=T0.astimezone(CET),
            finished_at=None,
            json_data=None,
            final_score=0.0,
        ),
        Session(
            pk=12,
            block=1,
            participant=5,
            playlist=None,
            started_at=T0 + timedelta(days=1),
            finished_at=None,
            json_data={},
            final_score=0.0,
        ),
    ]
    songs = [Song(pk=30, artist="Dvořák, A.", name='Slavonic "No. 1"')]
    sections = [
        Section(
            pk=20,
            playlist=1,
            song=30,
            start_time=0.0,
            duration=2.5,
            filename="a.wav",
            play_count=3,
            tag="A",
            group="0",
        ),
    ]

    def result(pk: int, **kw: Any) -> Result:
        base: dict[str, Any] = {
            "pk": pk,
            "session": None,
            "participant": None,
            "section": None,
            "created_at": T0 + timedelta(seconds=pk),
            "question_key": "q",
            "expected_response": None,
            "given_response": None,
            "comment": "",
            "score": None,
            "scoring_rule": "",
            "json_data": {},
        }
        base.update(kw)
        return Result(**base)

    results = [
        result(
            100,
            session=10,
            section=20,
            question_key="choice",
            expected_response="A",
            given_response="A",
            score=1.0,
            scoring_rule="CORRECTNESS",
            json_data={
                "decision_time": 0.31099987030029297,
                "config": {"listen_first": True},
                "choices": [{"value": "A"}, {"value": "B"}],
                "value": "A",
                "key.with.dots": "dots",
                "ünï ♪": None,
                "empty": "",
            },
        ),
        result(
            101,
            session=10,
            section=20,
            question_key="choice",
            given_response="",
            score=0.0,
            json_data={"decision_time": 1e-300, "value": 7},
        ),
        result(
            102,
            session=10,
            question_key="choice",
            given_response=None,
            json_data=None,
            created_at=T0 - timedelta(seconds=5),
        ),
        result(
            103,
            session=11,
            question_key="speed",
            given_response="TIMEOUT",
            score=-2.5,
            comment="line\nbreak",
            json_data={"decision_time": 12345678901234567890},
        ),
        # profile answers (participant-bound)
        result(200, participant=5, question_key="msi_01", given_response="3", score=3.0),
        result(201, participant=5, question_key="age", given_response="", score=0.0),
        result(202, participant=6, question_key="msi_01", given_response=None),
    ]
    return (
        {
            "block": [block],
            "participant": participants,
            "session": sessions,
            "song": songs,
            "section": sections,
        },
        results,
    )


def run(text: str, out: Path, *, empty: bool = False, **kw: Any) -> ExportReport:
    """Run template ``text`` against the graph above (or, with ``empty``, the same block
    without sessions), writing into ``out``."""
    data, results = tables()
    if empty:
        data = {"block": data["block"]}
        results = []
    pm = get_plugin_manager(
        load_entrypoints=False, plugins=[MemoryPlugin(MemorySource(data, results))]
    )
    registry = load_registry(pm)
    template = parse_template(text, file="test.toml", folder=out, sinks=registry.sink_specs)
    return run_export(template, source="memory:", out_dir=out, plugin_manager=pm, **kw)

"""A small MUSCLE export zip made here, so that the plugin's tests need nothing else: three
participants with profile answers (a Likert scale, named choices, free text, an old-style
``question``), and a two-alternative trial per session."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

# The PostgreSQL fixtures of the main test suite (tests/conftest.py, on pythonpath): the
# snapshots cover MUSCLE HEAD's database too.
from conftest import muscle_head_db, pg_database, pg_server  # noqa: F401

LIKERT = [{"value": str(n), "label": label} for n, label in enumerate(
    ["Disagree", "Neutral", "Agree"], 1
)]  # fmt: skip
GENERATIONS = {"boomer": "1946–1964", "gen_x": "1965–1980", "gen_z": "1997 or later"}
AB = [{"value": "A", "label": "Answer A"}, {"value": "B", "label": "Answer B"}]

# participant → (likert answer, generation, free text); None: not answered
ANSWERS: dict[int, tuple[str | None, str | None, str]] = {
    1: ("3", "gen_x", "Cello, 'double' bass"),
    2: ("1", "boomer", "Erhu 二胡"),
    3: (None, "gen_z", ""),
}


def _record(model: str, pk: int, **fields: Any) -> dict[str, Any]:
    return {"model": model, "pk": pk, "fields": fields}


def _result(pk: int, *, session: int | None, participant: int | None, **fields: Any) -> Any:
    base: dict[str, Any] = {
        "session": session,
        "participant": participant,
        "section": None,
        "created_at": f"2024-05-01T10:00:{pk:02d}.125Z",
        "question_key": "",
        "expected_response": None,
        "given_response": None,
        "comment": "",
        "score": None,
        "scoring_rule": "",
        "json_data": {},
    }
    base.update(fields)
    return _record("result.result", pk, **base)


def make_zip(path: Path) -> Path:
    """Write the zip to ``path``."""
    participants, sessions, profiles, results = [], [], [], []
    pk = 1
    for p, (likert, generation, free) in ANSWERS.items():
        participants.append(
            _record(
                "participant.participant",
                p,
                unique_hash=f"hash-{p}",
                country_code="nl",
                access_info="test",
                participant_id_url=None,
            )
        )
        sessions.append(
            _record(
                "session.session",
                10 + p,
                block=1,
                participant=p,
                playlist=None,
                started_at=f"2024-05-01T09:0{p}:00.500Z",
                finished_at=f"2024-05-01T09:1{p}:00Z",
                json_data={},
                final_score=float(p),
            )
        )
        asked = [
            ("likert_01", likert, {"text": "I like this music.", "choices": LIKERT}),
            ("generation", generation, {"text": "When were you born?", "choices": GENERATIONS}),
            ("instrument", free, {"question": "Which instrument do you play best?"}),
        ]
        for key, answer, data in asked:
            score = float(answer) if key == "likert_01" and answer else None
            profiles.append(
                _result(
                    pk,
                    session=None,
                    participant=p,
                    question_key=key,
                    given_response=answer,
                    score=score,
                    json_data=data,
                )
            )
            pk += 1
        for given in ("A", "B") if p != 3 else ("B",):
            results.append(
                _result(
                    pk,
                    session=10 + p,
                    participant=None,
                    question_key="choice",
                    expected_response="A",
                    given_response=given,
                    score=1.0 if given == "A" else 0.0,
                    json_data={
                        "text": "A or B?",
                        "choices": AB,
                        "value": given,
                        "decision_time": 0.5 + pk / 10,
                    },
                )
            )
            pk += 1
    files = {
        "sessions.json": sessions,
        "participants.json": participants,
        "profiles.json": profiles,
        "results.json": results,
        "sections.json": [],
        "songs.json": [],
        "feedback.json": [],
    }
    with zipfile.ZipFile(path, "w") as zf:
        for name, records in files.items():
            # a fixed entry time: the same zip, byte for byte, on every run (snapshots)
            info = zipfile.ZipInfo(name, date_time=(2024, 5, 1, 12, 0, 0))
            zf.writestr(info, json.dumps(records, ensure_ascii=False))
    return path


@pytest.fixture
def muscle_zip(tmp_path: Path) -> Path:
    """The zip, named as MUSCLE names a block's download."""
    return make_zip(tmp_path / "likert-demo.zip")


@pytest.fixture
def reference_msi_zip() -> Path:
    """MUSCLE's reference zip of the MSI questionnaire, from the repository's test data."""
    from testdata import REFERENCE

    return REFERENCE / "head" / "block_msi-questionnaire.zip"

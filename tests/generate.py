"""Generated MUSCLE data for tests: a deterministic block of any size, as MUSCLE's export zip
or as rows in a database restored from MUSCLE HEAD's reference dump.

The shape follows MUSCLE's export (MUSCLE_EXPORT.md): one block of a two-alternative
experiment whose trial results carry ragged ``json_data`` (keys that only training rounds
have, occasional lists, nested dicts, unicode), about one session in ten unfinished, some
participants with a second session, profile answers bound to participants, sections
without a song. Everything is a function of ``(seed, index)``: the same arguments give the
same bytes.

    python tests/generate.py --sessions 60 --zip muscle_60.zip
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

#: The generated block's slug, in the zip and in a database.
BLOCK_SLUG = "generated-pitch"
FIXTURE_FILES = (
    "sessions.json",
    "participants.json",
    "profiles.json",
    "results.json",
    "sections.json",
    "songs.json",
    "feedback.json",
)
_START_MS = int(datetime(2024, 3, 4, 9, 0, tzinfo=UTC).timestamp() * 1000)
_COUNTRIES = ("nl", "nl", "de", "gb", "cz", "jp", "br", "")
_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile Safari ♪",
    'Mozilla/5.0 (compatible; ブラウザ/1.0; "Dvořák", comma)',
)
_COMMENTS = ("", "", "", "", "te zacht", 'said "hi", then left', "naïve — ✓")
_PROFILE_QUESTIONS = (
    ("dgf_country_of_origin", {"nl": "Nederland", "cz": "Česko", "jp": "日本", "other": "Other"}),
    ("dgf_generation", {"gen_z": "1997 or later", "millenial": "1981–1996", "gen_x": "1965–1980"}),
    ("msi_01_music_activities", {str(n): f"level {n}" for n in range(1, 8)}),
    ("dgf_musical_experience", {"yes": "Yes", "no": "No"}),
)
_ARTISTS = ("Antonín Dvořák", "Clara Schumann", "坂本龍一", "Sigur Rós")
_PLAIN = {"neutral": True}
_TWO = {"A": "___", "B": "___"}
_FEEDBACK = ("Leuk experiment!", "Zajímavé — díky! ♪", 'The "next" button,\nhard to find.')


@attrs.frozen
class Size:
    """How much to generate.

    :param sessions: sessions of the block.
    :param trials: trial results of a finished session.
    :param profiles: profile answers per participant.
    :param sections: sections of the block's playlist.
    :param seed: the seed every value derives from.
    """

    sessions: int
    trials: int = 80
    profiles: int = 6
    sections: int = 40
    seed: int = 7

    @property
    def participants(self) -> int:
        return max(1, self.sessions - self.sessions // 10)


@attrs.frozen
class Ids:
    """The first primary key of each table (a database already holds rows below them)."""

    block: int = 1
    playlist: int = 1
    participant: int = 1
    session: int = 1
    result: int = 1
    section: int = 1
    song: int = 1
    feedback: int = 1


def _when(ms: int) -> str:
    """Django's serializer format of a datetime: UTC, milliseconds, no fraction at zero."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}Z" if ms % 1000 == 0 else f"{text}.{ms % 1000:03d}Z"


def _rows(size: Size, ids: Ids) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Every table's ``(pk, fields)``, fields in MUSCLE's model order."""
    tables: dict[str, list[tuple[int, dict[str, Any]]]] = {name: [] for name in FIXTURE_FILES}
    songs = max(1, size.sections // 2)
    song_of = [None if i % 10 == 9 else i % songs for i in range(size.sections)]
    for i in range(size.sections):
        rng = random.Random(size.seed * 31 + i)
        song = song_of[i]
        tables["sections.json"].append(
            (
                ids.section + i,
                {
                    "playlist": ids.playlist,
                    "song": None if song is None else ids.song + song,
                    "start_time": 0.0 if i % 4 else round(rng.uniform(0, 20), 2),
                    "duration": round(rng.uniform(0.5, 4.0), 3),
                    "filename": f"pitch/P{i % 5}_{'AB'[i % 2]}.wav",
                    "play_count": rng.randint(0, 900),
                    "tag": f"{i % 4 + 1}{'AB'[i % 2]}",
                    "group": ("SAME", "CROSSED")[i % 2],
                },
            )
        )
    for song in sorted({s for s in song_of if s is not None}):
        artist = _ARTISTS[song % len(_ARTISTS)]
        tables["songs.json"].append(
            (ids.song + song, {"artist": artist, "name": f"Étude ♪ No. {song + 1}"})
        )
    for p in range(size.participants):
        rng = random.Random(size.seed * 37 + p)
        tables["participants.json"].append(
            (
                ids.participant + p,
                {
                    "unique_hash": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "country_code": rng.choice(_COUNTRIES),
                    "access_info": rng.choice(_AGENTS),
                    "participant_id_url": f"gen_{p + 1:05d}" if p % 20 == 0 else None,
                },
            )
        )
    pk = ids.result
    for p in range(size.participants):
        rng = random.Random(size.seed * 41 + p)
        for q in range(size.profiles):
            key, choices = _PROFILE_QUESTIONS[q % len(_PROFILE_QUESTIONS)]
            value = rng.choice(sorted(choices))
            json_data = {
                "key": key,
                "view": "RADIOS",
                "value": value,
                "choices": choices,
                "question": f"Question {q + 1} ♪",
                "is_skippable": q % 3 == 2,
                "decision_time": round(rng.uniform(0.8, 9.0), 6),
            }
            tables["profiles.json"].append(
                (
                    pk,
                    _result(
                        None,
                        ids.participant + p,
                        None,
                        _when(_START_MS + pk * 900),
                        key,
                        None,
                        value,
                        "",
                        None,
                        "",
                        json_data,
                    ),
                )
            )
            pk += 1
    for s in range(size.sessions):
        rng = random.Random(size.seed * 43 + s)
        participant = s if s < size.participants else rng.randrange(size.participants)
        finished = rng.random() >= 0.1
        trials = size.trials if finished else rng.randrange(size.trials)
        started = _START_MS + s * 95_000 + rng.randrange(60_000)
        sequence = [rng.randrange(size.sections) for _ in range(size.trials)]
        score = 0.0
        moment = started + 15_000
        session_pk = ids.session + s
        for j in range(trials):
            expected = rng.choice("AB")
            given = expected if rng.random() < 0.7 else ("B" if expected == "A" else "A")
            if j % 10 == 9 and rng.random() < 0.3:
                given = "C"
            points = 1.0 if given == expected else 0.0
            score += points
            decision = rng.random() * 2.5 + 0.05
            moment += int(decision * 1000) + 1_200 + rng.randrange(2_000)
            json_data: dict[str, Any] = {
                "key": "choice",
                "view": "BUTTON_ARRAY",
                "style": {"neutral": True, "boxed-theme": True} if j % 13 == 0 else _PLAIN,
                "value": given,
                "config": {"listen_first": True, "response_time": 5, "auto_advance": j >= 20},
                "choices": {**_TWO, "C": "Dvořák ♪"} if j % 10 == 9 else _TWO,
                "question": "Welk fragment klinkt hoger? ♪" if j % 10 == 9 else "",
                "result_id": pk,
                "decision_time": decision,
            }
            if j < 20:
                json_data["training"] = True
                json_data["feedback_shown"] = "correct" if points else "fout… ✗"
            if j % 17 == 5:
                json_data["replay_count"] = rng.randint(1, 4)
            if j % 40 == 39:
                json_data["rt_history"] = [round(decision * 1.1, 4), round(decision * 0.9, 4)]
            section = ids.section + sequence[j]
            tables["results.json"].append(
                (
                    pk,
                    _result(
                        session_pk,
                        None,
                        section,
                        _when(moment),
                        "choice",
                        expected,
                        given,
                        _COMMENTS[rng.randrange(len(_COMMENTS))],
                        points,
                        "CORRECTNESS",
                        json_data,
                    ),
                )
            )
            pk += 1
        session_json: dict[str, Any] = {
            "group": ("S1", "S2", "C1")[s % 3],
            "choices": {"A": "___", "B": "___"},
            "sequence": sequence,
            "experiment": "generated",
            "training_rounds": 20,
        }
        if s % 7 == 0:
            session_json["note"] = "herhaling — ♪"
        tables["sessions.json"].append(
            (
                session_pk,
                {
                    "block": ids.block,
                    "participant": ids.participant + participant,
                    "playlist": ids.playlist,
                    "started_at": _when(started),
                    "finished_at": _when(moment + 30_000) if finished else None,
                    "json_data": session_json,
                    "final_score": score if finished else 0.0,
                },
            )
        )
    for f in range(max(1, size.sessions // 20)):
        tables["feedback.json"].append(
            (ids.feedback + f, {"text": _FEEDBACK[f % len(_FEEDBACK)], "block": ids.block})
        )
    return tables


def _result(
    session: int | None,
    participant: int | None,
    section: int | None,
    created_at: str,
    question_key: str,
    expected: str | None,
    given: str | None,
    comment: str,
    score: float | None,
    rule: str,
    json_data: dict[str, Any],
) -> dict[str, Any]:
    return {
        "session": session,
        "participant": participant,
        "section": section,
        "created_at": created_at,
        "question_key": question_key,
        "expected_response": expected,
        "given_response": given,
        "comment": comment,
        "score": score,
        "scoring_rule": rule,
        "json_data": json_data,
    }


_MODELS = {
    "sessions.json": "session.session",
    "participants.json": "participant.participant",
    "profiles.json": "result.result",
    "results.json": "result.result",
    "sections.json": "section.section",
    "songs.json": "section.song",
    "feedback.json": "experiment.feedback",
}


def write_zip(path: Path, size: Size) -> dict[str, int]:
    """Write the block as MUSCLE's export zip (stored members, Django's JSON layout).

    :return: the objects in each member.
    """
    tables = _rows(size, Ids())
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name in FIXTURE_FILES:
            objects = [{"model": _MODELS[name], "pk": pk, "fields": f} for pk, f in tables[name]]
            # a fixed entry time: the same arguments give the same bytes (as documented)
            info = zipfile.ZipInfo(name, date_time=(2024, 3, 4, 9, 0, 0))
            archive.writestr(info, json.dumps(objects, ensure_ascii=False).encode("utf-8"))
    return {name: len(rows) for name, rows in tables.items()}


# -- a database ---------------------------------------------------------------------------------

_TABLES = {
    "sections.json": "section_section",
    "songs.json": "section_song",
    "participants.json": "participant_participant",
    "sessions.json": "session_session",
    "profiles.json": "result_result",
    "results.json": "result_result",
    "feedback.json": "experiment_feedback",
}
_COLUMNS = {
    "block": "block_id",
    "participant": "participant_id",
    "playlist": "playlist_id",
    "session": "session_id",
    "section": "section_id",
    "song": "song_id",
}


def fill_database(dsn: str, size: Size) -> dict[str, int]:
    """Add the block to a database restored from MUSCLE HEAD's reference dump: a copy of
    the dump's ``tafc-dvorak`` block row under :data:`BLOCK_SLUG`, its own playlist, and
    the generated rows, their keys above the dump's; sequences are moved past them.

    :return: the objects in each member of the block's export.
    """
    import psycopg

    with psycopg.connect(dsn) as conn:

        def next_id(table: str) -> int:
            row = conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()
            assert row is not None
            return int(row[0])

        ids = Ids(
            block=next_id("experiment_block"),
            playlist=next_id("section_playlist"),
            participant=next_id("participant_participant"),
            session=next_id("session_session"),
            result=next_id("result_result"),
            section=next_id("section_section"),
            song=next_id("section_song"),
            feedback=next_id("experiment_feedback"),
        )
        conn.execute(
            "CREATE TEMP TABLE new_block AS"
            " SELECT * FROM experiment_block WHERE slug = 'tafc-dvorak'"
        )
        conn.execute("UPDATE new_block SET id = %s, slug = %s", (ids.block, BLOCK_SLUG))
        conn.execute("INSERT INTO experiment_block SELECT * FROM new_block")
        conn.execute(
            "INSERT INTO section_playlist (id, name, process_csv, csv, url_prefix)"
            " VALUES (%s, 'Generated ♪', false, '', '')",
            (ids.playlist,),
        )
        conn.execute(
            "INSERT INTO experiment_block_playlists (block_id, playlist_id) VALUES (%s, %s)",
            (ids.block, ids.playlist),
        )
        tables = _rows(size, ids)
        for name in (
            "songs.json",
            "sections.json",
            "participants.json",
            "sessions.json",
            "profiles.json",
            "results.json",
            "feedback.json",
        ):
            rows = tables[name]
            columns = ["id", *(_COLUMNS.get(c, c) for c in rows[0][1])]
            quoted = ", ".join(f'"{c}"' for c in columns)
            with conn.cursor().copy(f"COPY {_TABLES[name]} ({quoted}) FROM STDIN") as copy:
                for pk, fields in rows:
                    copy.write_row([pk, *(_cell(v) for v in fields.values())])
        for table in set(_TABLES.values()) | {"experiment_block", "section_playlist"}:
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
    return {name: len(rows) for name, rows in tables.items()}


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--zip", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(write_zip(args.zip, Size(args.sessions))))


if __name__ == "__main__":
    main()

"""The research workflows against PostgreSQL: exclusions in SQL, ``--since`` on a database
that changed, and a database with zips in one run."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.contracts import SourceOptions
from aml_exportkit.errors import IntegrityError
from aml_exportkit.selection import Filter, Selection, session_matches
from aml_exportkit.sources.muscle_db_reader import MuscleDatabase
from aml_exportkit.tabular.sink import TableSink
from aml_exportkit.watermark import load_since
from testdata import csv_result_ids, read_trial_pks
from zipcases import mutated

pytestmark = pytest.mark.pg

SLUG = "tafc-dvorak"

FIXTURE = '[[sinks]]\ntype = "fixture-json"\npath = "block.zip"\n'


def _run(tmp_path: Path, text: str, sources: list[str], name: str, *extra: str) -> Any:
    template = tmp_path / f"{name}.toml"
    template.write_text(text, encoding="utf-8")
    args = ["run", str(template), "--out", str(tmp_path / name), "--block", SLUG, *extra]
    for source in sources:
        args += ["--source", source]
    return CliRunner().invoke(cli, args)


def _fixture(out: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(out / "block.zip") as archive:
        return {n: archive.read(n) for n in archive.namelist()}


def _toml_list(values: tuple[Any, ...]) -> str:
    return "[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def _filters(participants: dict[int, Any], sessions: list[Any]) -> list[Filter]:
    with_url = [p for p in participants.values() if p.participant_id_url]
    plain = next(p for p in participants.values() if not p.participant_id_url)
    url = with_url[0].participant_id_url
    return [
        Filter(exclude_participants=(plain.pk,)),
        Filter(exclude_participants=(plain.unique_hash, with_url[0].participant_id_url)),
        Filter(exclude_sessions=(sessions[0].pk, sessions[-1].pk)),
        Filter(exclude_participant_id_url=(url[:4] + "*",)),
        # in a pattern, SQL's _ and % stand for themselves
        Filter(exclude_participant_id_url=(url, url[:3] + "_" + url[4:], "%")),
        Filter(exclude_participant_id_url=("?" + url[1:-1] + "?", "nobody*")),
        Filter(finished_only=True, exclude_participants=(10**30, "nobody", with_url[-1].pk)),
    ]


@pytest.mark.parametrize("version", ["head", "v2024"])
def test_exclusions_in_sql_select_what_session_matches_selects(
    muscle_head_db: str,
    muscle_2024_db: str,
    reference_dir: Path,
    tmp_path: Path,
    version: str,
) -> None:
    uri = muscle_head_db if version == "head" else muscle_2024_db
    with MuscleDatabase(uri, SourceOptions()) as source:
        with source.read(Selection(blocks=(SLUG,))) as graph:
            sessions = list(graph.sessions.values())
            participants = dict(graph.participants)
        for i, flt in enumerate(_filters(participants, sessions)):
            expected = [
                s.pk for s in sessions if session_matches(flt, s, participants[s.participant])
            ]
            assert len(expected) < len(sessions), flt
            with source.read(Selection(blocks=(SLUG,), filter=flt)) as graph:
                assert list(graph.sessions) == expected, flt
                kept = {s.participant for s in graph.sessions.values()}
                assert set(graph.participants) == kept
                assert {r.participant for b in graph.profile_results() for r in b} <= kept
                assert {r.session for b in graph.trial_results() for r in b} <= set(expected)
                db_details = dict(graph.info.details)
            text = "[filter]\n" + "".join(
                f"{key} = {_toml_list(getattr(flt, key))}\n"
                for key in (
                    "exclude_participants",
                    "exclude_sessions",
                    "exclude_participant_id_url",
                )
                if getattr(flt, key)
            )
            text = text.replace("1000000000000000000000000000000, ", "")
            text += "finished_only = true\n" if flt.finished_only else ""
            from_db = _run(tmp_path, text + FIXTURE, [uri], f"db{i}")
            muscle_zip = str(reference_dir / version / f"block_{SLUG}.zip")
            from_zip = _run(tmp_path, text + FIXTURE, [muscle_zip], f"zip{i}")
            assert from_db.exit_code == 0, from_db.output
            assert from_zip.exit_code == 0, from_zip.output
            assert _fixture(tmp_path / f"db{i}") == _fixture(tmp_path / f"zip{i}"), flt
            zip_parts = json.loads((tmp_path / f"zip{i}" / "manifest.json").read_text("utf-8"))
            zip_details = zip_parts["source"]["parts"][0]["details"]
            for key in ("excluded_sessions", "excluded_participants"):
                assert db_details[key] == zip_details[key], (flt, key)
            assert db_details["excluded_sessions"] == len(sessions) - len(expected) or (
                flt.finished_only
            )


def _sql(uri: str, *statements: str) -> list[Any]:
    with psycopg.connect(uri, autocommit=True) as conn:
        rows: list[Any] = []
        for statement in statements:
            cur = conn.execute(statement)  # type: ignore[arg-type]
            if cur.description is not None:
                rows = cur.fetchall()
        return rows


def test_since_on_a_database_that_changed(
    pg_database: Callable[[Path | None], str],
    reference_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = pg_database(reference_dir / "head" / "muscle_head.sql")
    long_csv = '[[sinks]]\ntype = "csv-long"\npath = "long.csv"\n'
    first = _run(tmp_path, FIXTURE + long_csv, [uri], "part1")
    assert first.exit_code == 0, first.output
    manifest = json.loads((tmp_path / "part1" / "manifest.json").read_text("utf-8"))
    (mark,) = manifest["watermark"]["blocks"]
    assert mark["snapshot_time"]
    opened = [pk for pk, _, _ in mark["open_sessions"]]
    assert len(opened) >= 2
    block = mark["block"]
    grows, finishes = opened[0], opened[1]
    (new,) = _sql(
        uri,
        f"CREATE TEMP TABLE t AS SELECT * FROM session_session WHERE id = {grows}",
        "UPDATE t SET id = (SELECT max(id) + 1 FROM session_session), finished_at = now()",
        "INSERT INTO session_session SELECT * FROM t",
        "CREATE TEMP TABLE r AS SELECT * FROM result_result WHERE id = (SELECT max(id) FROM"
        f" result_result WHERE session_id IN (SELECT id FROM session_session"
        f" WHERE block_id = {block}))",
        f"UPDATE r SET id = (SELECT max(id) + 1 FROM result_result), session_id = {grows}",
        "INSERT INTO result_result SELECT * FROM r",
        f"UPDATE session_session SET finished_at = now() WHERE id = {finishes}",
        f"SELECT max(id) FROM session_session WHERE block_id = {block}",
    )
    since = str(tmp_path / "part1" / "manifest.json")
    # the engine's part holds exactly the trial results the source's own reader gives
    result = _run(tmp_path, long_csv, [uri], "part2long", "--since", since)
    assert result.exit_code == 0, result.output
    part = json.loads((tmp_path / "part2long" / "manifest.json").read_text("utf-8"))
    for mark in part["watermark"]["blocks"]:
        assert mark.pop("snapshot_time") > manifest["watermark"]["blocks"][0]["snapshot_time"]
    wanted = read_trial_pks(uri, Selection(blocks=(SLUG,), since=load_since(Path(since))))
    assert wanted
    assert csv_result_ids(tmp_path / "part2long" / "long.csv") == wanted
    second = _run(tmp_path, FIXTURE, [uri], "part2", "--since", since)
    assert second.exit_code == 0, second.output
    sessions = json.loads(_fixture(tmp_path / "part2")["sessions.json"])
    assert {o["pk"] for o in sessions} == {new[0], grows, finishes}
    # the next part starts from the chain's watermark: nothing is new any more
    third = _run(
        tmp_path, FIXTURE, [uri], "part3", "--since", str(tmp_path / "part2" / "manifest.json")
    )
    assert third.exit_code == 0, third.output
    assert json.loads(_fixture(tmp_path / "part3")["sessions.json"]) == []


def test_a_database_and_its_own_zip_give_the_database_alone(
    muscle_head_db: str, reference_dir: Path, tmp_path: Path
) -> None:
    muscle_zip = str(reference_dir / "head" / f"block_{SLUG}.zip")
    alone = _run(tmp_path, FIXTURE, [muscle_head_db], "alone")
    both = _run(tmp_path, FIXTURE, [muscle_head_db, muscle_zip], "both")
    assert alone.exit_code == 0, alone.output
    assert both.exit_code == 0, both.output
    assert _fixture(tmp_path / "both") == _fixture(tmp_path / "alone")
    manifest = json.loads((tmp_path / "both" / "manifest.json").read_text("utf-8"))
    (mark,) = manifest["watermark"]["blocks"]
    assert mark["snapshot_time"] == manifest["source"]["inputs"][0]["snapshot_time"]
    first, second = manifest["source"]["inputs"]
    assert first["snapshot_time"]
    assert first["database"]
    assert len(second["sha256"]) == 64


def test_a_database_and_a_zip_that_disagree(
    muscle_head_db: str, reference_dir: Path, tmp_path: Path
) -> None:
    def change(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        objects[0]["fields"]["given_response"] = "something else"
        return objects

    other = mutated(
        reference_dir / "head" / f"block_{SLUG}.zip", tmp_path / "other.zip", results_json=change
    )
    result = _run(tmp_path, FIXTURE, [muscle_head_db, str(other)], "out")
    assert result.exit_code == IntegrityError.exit_code, result.output
    assert "postgresql://" in result.output
    assert str(other) in result.output
    assert "with different content" in result.output


def test_experiment_and_block_columns_tell_the_rows_apart(
    muscle_head_db: str, reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv
    import io

    text = (
        '[[sinks]]\ntype = "csv-long"\npath = "long.csv"\n'
        '[sinks.columns]\nexperiment = ["slug", "name"]\nblock = ["id", "slug"]\n'
    )
    hooked = str(reference_dir / "head" / "block_hooked-eurovision.zip")
    result = _run(tmp_path, text, [muscle_head_db, hooked], "both")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "both" / "long.csv").read_text("utf-8"))))
    assert list(rows[0])[:4] == ["experiment_slug", "experiment_name", "block_id", "block_slug"]
    found = {(r["experiment_slug"], r["block_slug"]) for r in rows}
    # the database knows the block's experiment; a zip does not
    assert found == {("dvorak-listening", SLUG), ("", "hooked-eurovision")}
    # one source: the engine's table is its row builder's, fed the engine's batches
    got = []
    for by in ("engine", "builder"):
        with monkeypatch.context() as patch:
            if by == "builder":
                patch.setattr(TableSink, "engine_table", lambda self: None)
            single = _run(tmp_path, text, [muscle_head_db], f"one-{by}")
        assert single.exit_code == 0, single.output
        got.append((tmp_path / f"one-{by}" / "long.csv").read_bytes())
    assert got[0] == got[1]
    assert b"dvorak-listening" in got[0]


def test_since_with_a_block_added_per_block(muscle_head_db: str, tmp_path: Path) -> None:
    first = _run(tmp_path, FIXTURE, [muscle_head_db], "first")
    assert first.exit_code == 0, first.output
    since = str(tmp_path / "first" / "manifest.json")
    text = '[[sinks]]\ntype = "fixture-json"\npath = "{block}.zip"\n'
    template = tmp_path / "per-block.toml"
    template.write_text(text, encoding="utf-8")
    args = ["run", str(template), "--source", muscle_head_db, "--since", since]
    both = CliRunner().invoke(
        cli,
        [*args, "--out", str(tmp_path / "both"), "--block", SLUG, "--block", "hooked-eurovision"],
    )
    assert both.exit_code == 0, both.output
    with zipfile.ZipFile(tmp_path / "both" / f"{SLUG}.zip") as archive:
        assert json.loads(archive.read("sessions.json")) == []  # nothing new
    with zipfile.ZipFile(tmp_path / "both" / "hooked-eurovision.zip") as archive:
        assert json.loads(archive.read("sessions.json"))  # all of it: new to the chain
    manifest = json.loads((tmp_path / "both" / "manifest.json").read_text("utf-8"))
    assert {b["slug"] for b in manifest["watermark"]["blocks"]} == {SLUG, "hooked-eurovision"}
    # only blocks the manifest does not know: refused, nothing written
    other = CliRunner().invoke(
        cli, [*args, "--out", str(tmp_path / "other"), "--block", "hooked-eurovision"]
    )
    assert other.exit_code == 4
    assert "this manifest is of block(s) tafc-dvorak" in other.output
    assert not (tmp_path / "other").exists()


def test_a_manifest_of_another_database_with_the_same_block_pk_is_refused(
    muscle_head_db: str, muscle_2024_db: str, tmp_path: Path
) -> None:
    # pk 3 is bat-ref in the 2024 database and hooked-eurovision at HEAD: the earlier
    # manifest's session pks would silently leave out HEAD's sessions of the same pks
    text = '[[sinks]]\ntype = "csv-long"\npath = "trials.csv"\n'
    template = tmp_path / "t.toml"
    template.write_text(text, encoding="utf-8")

    def run(source: str, block: str, out: str, *extra: str) -> Any:
        args = ["run", str(template), "--source", source, "--block", block]
        return CliRunner().invoke(cli, [*args, "--out", str(tmp_path / out), *extra])

    assert run(muscle_2024_db, "bat-ref", "first").exit_code == 0
    since = str(tmp_path / "first" / "manifest.json")
    other = run(muscle_head_db, "hooked-eurovision", "other", "--since", since)
    assert other.exit_code == 4
    assert "bat-ref (pk 3)" in other.output
    assert "hooked-eurovision (pk 3)" in other.output
    assert not (tmp_path / "other").exists()

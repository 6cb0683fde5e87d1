"""A consistent snapshot while a writer keeps inserting into the same real database.

The writer commits transactions that each add one session with its results and one late
result to an existing session, and logs every commit. A consistent export must equal the
database after exactly some number k of those commits: every row of commits 1..k, none of
the later ones, no result without its session.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from aml_exportkit import load_template, run_export

WRITER = r"""
import json, sys, time
import psycopg
dsn, log, stop = sys.argv[1], sys.argv[2], sys.argv[3]
deadline = time.monotonic() + 120  # bounded, whatever happens to the test
with psycopg.connect(dsn, autocommit=True) as conn, open(log, "a") as out:
    participant, old_session = conn.execute(
        "SELECT participant_id, id FROM session_session ORDER BY id LIMIT 1").fetchone()
    n = 0
    while time.monotonic() < deadline:
        try:
            open(stop).close()
            break
        except FileNotFoundError:
            pass
        n += 1
        with conn.transaction():
            session = conn.execute(
                "INSERT INTO session_session (block_id, participant_id, playlist_id, started_at,"
                " json_data, final_score) VALUES (1, %s, NULL, now(), '{}', 0)"
                " RETURNING id", (participant,)).fetchone()[0]
            results = [conn.execute(
                "INSERT INTO result_result (session_id, created_at, question_key, comment,"
                " scoring_rule, json_data) VALUES (%s, now(), 'live', '', '', %s)"
                " RETURNING id", (owner, json.dumps({"n": n, "i": i}))).fetchone()[0]
                for i, owner in enumerate([session] * 20 + [old_session])]
        out.write(json.dumps({"n": n, "session": session, "results": results}) + "\n")
        out.flush()
        time.sleep(0.005)
"""

TEMPLATE = (
    '[source]\nblocks = ["pitch-categories-main"]\n'
    '[[sinks]]\ntype = "fixture-json"\npath = "export.zip"\n'
    '[[sinks]]\ntype = "csv-long"\npath = "export.csv"\n'
)


def commits(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def export(dsn: str, folder: Path) -> Path:
    template = folder / "t.toml"
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_text(TEMPLATE, encoding="utf-8")
    run_export(load_template(str(template)), source=dsn, out_dir=folder)
    return folder / "export.zip"


def members(path: Path) -> dict[str, list[dict[str, object]]]:
    with zipfile.ZipFile(path) as archive:
        return {n: json.loads(archive.read(n)) for n in archive.namelist()}


@pytest.mark.pg
def test_export_is_a_snapshot_while_a_writer_inserts(
    pg_database: object, generated_db: str, tmp_path: Path
) -> None:
    log, stop = tmp_path / "commits.log", tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, generated_db, str(log), str(stop)])
    try:
        deadline = time.monotonic() + 30
        while len(commits(log)) < 5:
            assert writer.poll() is None, "the writer died"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = len(commits(log))
        zip_path = export(generated_db, tmp_path / "live")
        after = len(commits(log))
        time.sleep(0.2)
    finally:
        stop.touch()
        writer.wait(timeout=30)
    assert after > before, "the writer must have committed while the export ran"
    data = members(zip_path)
    sessions = {o["pk"] for o in data["sessions.json"]}
    results = {o["pk"]: o["fields"]["session"] for o in data["results.json"]}
    # No result without its session.
    assert set(results.values()) <= sessions
    # Exactly the first k commits, for one k.
    done = commits(log)
    present = [c["session"] in sessions for c in done]
    k = sum(present)
    assert present == [True] * k + [False] * (len(done) - k), present
    assert before <= k <= after, (len(sessions), max(sessions), done[:2])
    for commit in done[:k]:
        assert all(r in results for r in commit["results"])  # type: ignore[union-attr]
    for commit in done[k:]:
        assert not any(r in results for r in commit["results"])  # type: ignore[union-attr]
    # Counts equal the snapshot's: the generated rows plus k commits of 21 results.
    meta = json.loads(
        subprocess.run(
            [
                "psql",
                "-XAtc",
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                " WHERE datname = current_database()",
                generated_db,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert len(sessions) == meta["counts"]["sessions.json"] + k
    assert len(results) == meta["counts"]["results.json"] + 21 * k

    # With the writer stopped, two exports of the same data are byte-identical.
    first = export(generated_db, tmp_path / "a")
    second = export(generated_db, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "a" / "export.csv").read_bytes() == (
        tmp_path / "b" / "export.csv"
    ).read_bytes()

"""A consistent snapshot while a writer inserts into the same real database.

The writer, a separate process with its own connection, commits one transaction each time
the test asks: one new session of the block with its results, and one late result to an
existing session. The test has it commit before the export, and again while the export is
inside its snapshot (after the small tables were read, before the results are streamed). A
consistent export equals the database after exactly the commits made before the snapshot:
every row of those, none of the later ones, no result without its session. Nothing waits
on time: each commit is a line the writer prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import generate
from aml_exportkit import load_template, run_export
from aml_exportkit.sources import muscle_db_reader

WRITER = r"""
import json, sys
import psycopg
dsn, slug = sys.argv[1], sys.argv[2]
with psycopg.connect(dsn, autocommit=True) as conn:
    block, = conn.execute("SELECT id FROM experiment_block WHERE slug = %s", (slug,)).fetchone()
    participant, old_session = conn.execute(
        "SELECT participant_id, id FROM session_session WHERE block_id = %s ORDER BY id LIMIT 1",
        (block,)).fetchone()
    for n, _ in enumerate(sys.stdin, start=1):
        with conn.transaction():
            session = conn.execute(
                "INSERT INTO session_session (block_id, participant_id, playlist_id, started_at,"
                " json_data, final_score) VALUES (%s, %s, NULL, now(), '{}', 0)"
                " RETURNING id", (block, participant)).fetchone()[0]
            results = [conn.execute(
                "INSERT INTO result_result (session_id, created_at, question_key, comment,"
                " scoring_rule, json_data) VALUES (%s, now(), 'live', '', '', %s)"
                " RETURNING id", (owner, json.dumps({"n": n, "i": i}))).fetchone()[0]
                for i, owner in enumerate([session] * 20 + [old_session])]
        print(json.dumps({"n": n, "session": session, "results": results}), flush=True)
"""

TEMPLATE = (
    f'[source]\nblocks = ["{generate.BLOCK_SLUG}"]\n'
    '[[sinks]]\ntype = "fixture-json"\npath = "export.zip"\n'
    '[[sinks]]\ntype = "csv-long"\npath = "export.csv"\n'
)


class Writer:
    """The writing process; :meth:`commit` returns once its transaction is committed."""

    def __init__(self, dsn: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WRITER, dsn, generate.BLOCK_SLUG],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.done: list[dict[str, Any]] = []

    def commit(self, times: int = 1) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        for _ in range(times):
            self.process.stdin.write("commit\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
            assert line, f"the writer ended (exit code {self.process.wait()})"
            self.done.append(json.loads(line))

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait() == 0


@pytest.fixture
def writer(generated_db: tuple[str, dict[str, int]]) -> Iterator[Writer]:
    started = Writer(generated_db[0])
    try:
        yield started
    finally:
        if started.process.poll() is None:
            started.stop()


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
    generated_db: tuple[str, dict[str, int]],
    writer: Writer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dsn, counts = generated_db
    writer.commit(5)
    build = muscle_db_reader.MuscleDatabase._build

    def build_then_let_the_writer_commit(self: Any, *args: Any, **kwargs: Any) -> Any:
        graph = build(self, *args, **kwargs)
        writer.commit(3)  # inside the snapshot, before any result is read
        return graph

    monkeypatch.setattr(muscle_db_reader.MuscleDatabase, "_build", build_then_let_the_writer_commit)
    zip_path = export(dsn, tmp_path / "live")
    monkeypatch.undo()
    writer.commit(2)
    writer.stop()
    data = members(zip_path)
    sessions = {o["pk"] for o in data["sessions.json"]}
    results = {o["pk"]: o["fields"]["session"] for o in data["results.json"]}
    # No result without its session.
    assert set(results.values()) <= sessions
    # Exactly the five commits made before the snapshot.
    present = [c["session"] in sessions for c in writer.done]
    assert present == [True] * 5 + [False] * 5, present
    for commit in writer.done[:5]:
        assert all(r in results for r in commit["results"])
    for commit in writer.done[5:]:
        assert not any(r in results for r in commit["results"])
    # Counts equal the snapshot's: the generated rows plus 5 commits of 21 results.
    assert len(sessions) == counts["sessions.json"] + 5
    assert len(results) == counts["results.json"] + 21 * 5

    # With the writer stopped, two exports of the same data are byte-identical.
    first = export(dsn, tmp_path / "a")
    second = export(dsn, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "a" / "export.csv").read_bytes() == (
        tmp_path / "b" / "export.csv"
    ).read_bytes()

"""Pooled datasets: a Hive-partitioned Parquet dataset (read back with DuckDB and
pyarrow.dataset) and the duckdb sink's database file (read back with duckdb)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.contracts import SourceOptions
from aml_exportkit.errors import SinkError, TemplateError
from aml_exportkit.pipeline import load_template, run_export
from aml_exportkit.rebuild import rebuild_json_data
from aml_exportkit.selection import Selection
from aml_exportkit.sources.fixture_zip import FixtureZipSource

ZIPS = ("block_hooked-eurovision.zip", "block_tafc-dvorak.zip")
PARTITIONED = """
[[sinks]]
type = "parquet"
path = "dataset"
rows = "both"
partition_by = ["experiment", "block"]

[[sinks]]
type = "parquet"
path = "whole.parquet"
rows = "both"
"""
HIVE = ds.partitioning(
    pa.schema([("experiment", pa.string()), ("block", pa.string())]), flavor="hive"
)


def export(tmp_path: Path, text: str, source: str, out: Path, **kwargs: Any) -> Any:
    template = tmp_path / "t.toml"
    template.write_text(text, encoding="utf-8")
    return run_export(load_template(str(template)), source=source, out_dir=out, **kwargs)


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.parquet"))
    }


def test_dataset_reads_as_one_table(reference_dir: Path, tmp_path: Path) -> None:
    source = str(reference_dir / "head" / ZIPS[0])
    out = tmp_path / "out"
    report = export(tmp_path, PARTITIONED, source, out)
    parts = sorted(p.relative_to(out / "dataset") for p in (out / "dataset").rglob("*.parquet"))
    assert [p.parent.as_posix() for p in parts] == [
        # profile answers belong to no block; a zip names no experiment
        "experiment=__HIVE_DEFAULT_PARTITION__/block=__HIVE_DEFAULT_PARTITION__",
        "experiment=__HIVE_DEFAULT_PARTITION__/block=hooked-eurovision",
    ]
    assert len({p.name for p in parts}) == 1  # one run, one part-file name
    # every part file is in the manifest, through the atomic output set
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    listed = {o["path"] for o in manifest["outputs"]}
    assert {f"dataset/{p.as_posix()}" for p in parts} <= listed
    assert sum(r.rows for r in report.outputs if r.path.name.startswith("part-")) == 151

    whole = pq.read_table(out / "whole.parquet")
    glob = str(out / "dataset" / "**" / "*.parquet")
    pooled = duckdb.sql(
        f"SELECT * FROM read_parquet('{glob}', hive_partitioning = true) ORDER BY result_id"
    ).arrow()
    pooled = pooled.read_all() if hasattr(pooled, "read_all") else pooled
    width = whole.num_columns
    assert pooled.column_names[:width] == whole.column_names
    assert set(pooled.column_names[width:]) == {"experiment", "block"}
    assert pooled.num_rows == whole.num_rows
    sorted_whole = whole.sort_by("result_id")
    for name in whole.column_names:
        assert pooled.column(name).to_pylist() == sorted_whole.column(name).to_pylist(), name
    blocks = duckdb.sql(
        f"SELECT block, count(*) FROM read_parquet('{glob}', hive_partitioning = true)"
        " GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert blocks == [("hooked-eurovision", 95), (None, 56)]

    dataset = ds.dataset(out / "dataset", format="parquet", partitioning=HIVE)
    table = dataset.to_table()
    assert table.num_rows == whole.num_rows
    assert table.column_names == [*whole.column_names, "experiment", "block"]
    trials = dataset.to_table(filter=ds.field("block") == "hooked-eurovision")
    assert set(trials.column("result_kind").to_pylist()) == {"trial"}

    # json_data comes back from the part files as from the single file
    pooled_data: dict[int, Any] = {}
    for part in parts:
        pooled_data.update(rebuild_json_data(out / "dataset" / part))
    assert pooled_data == rebuild_json_data(out / "whole.parquet")
    assert len(pooled_data) == 151


def test_a_second_run_adds_part_files(reference_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    text = PARTITIONED.split('[[sinks]]\ntype = "parquet"\npath = "whole')[0]
    export(tmp_path, text, str(reference_dir / "head" / ZIPS[0]), out)
    first = digests(out / "dataset")
    export(tmp_path, text, str(reference_dir / "head" / ZIPS[1]), out)
    second = digests(out / "dataset")
    assert {k: v for k, v in second.items() if k in first} == first  # nothing rewritten
    assert len(second) > len(first)
    blocks = duckdb.sql(
        f"SELECT DISTINCT block FROM read_parquet('{out}/dataset/**/*.parquet',"
        " hive_partitioning = true, union_by_name = true) ORDER BY ALL"
    ).fetchall()
    assert blocks == [("hooked-eurovision",), ("tafc-dvorak",), (None,)]


@pytest.mark.pg
def test_dataset_of_a_database_has_experiments(muscle_head_db: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    blocks = ["tafc-dvorak", "msi-questionnaire", "hooked-eurovision"]
    export(tmp_path, PARTITIONED, muscle_head_db, out, blocks=blocks)
    glob = str(out / "dataset" / "**" / "*.parquet")
    found = duckdb.sql(
        f"SELECT experiment, block, count(*) FROM read_parquet('{glob}',"
        " hive_partitioning = true) WHERE block IS NOT NULL GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    assert [(e, b) for e, b, _ in found] == [
        ("dvorak-listening", "tafc-dvorak"),
        ("hooked-eurovision", "hooked-eurovision"),
    ]
    dataset = ds.dataset(out / "dataset", format="parquet", partitioning="hive")
    assert dataset.to_table().num_rows == pq.read_table(out / "whole.parquet").num_rows


def test_partition_by_needs_a_long_exportkit_table(tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(
        '[[sinks]]\ntype = "parquet"\npath = "d"\nlayout = "wide"\npartition_by = ["block"]\n'
    )
    with pytest.raises(TemplateError, match="partition_by"):
        load_template(str(template))


# -- the duckdb sink -----------------------------------------------------------------------------

DUCKDB = '[[sinks]]\ntype = "duckdb"\npath = "all.duckdb"\n'


@pytest.mark.parametrize("name", ZIPS)
def test_duckdb_database_holds_every_record(name: str, reference_dir: Path, tmp_path: Path) -> None:
    zip_path = reference_dir / "head" / name
    out = tmp_path / "out"
    export(tmp_path, DUCKDB, str(zip_path), out)
    assert sorted(p.name for p in out.iterdir()) == ["all.duckdb", "manifest.json"]
    with (
        FixtureZipSource(zip_path, SourceOptions()) as source,
        source.read(Selection()) as graph,
    ):
        trials = [r for b in graph.trial_results() for r in b]
        profiles = [r for b in graph.profile_results() for r in b]
        sessions = dict(graph.sessions)
        participants = dict(graph.participants)
    db = duckdb.connect(str(out / "all.duckdb"), read_only=True)
    try:
        count = {
            t: db.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("sessions", "participants", "results", "profile_answers")
        }
        assert count == {
            "sessions": len(sessions),
            "participants": len(participants),
            "results": len(trials),
            "profile_answers": len(profiles),
        }
        rows = db.execute(
            "SELECT r.id, r.created_at, r.score, r.json_data, s.started_at"
            " FROM results r JOIN sessions s ON s.id = r.session_id ORDER BY r.id"
        ).fetchall()
        for (pk, created, score, data, started), result in zip(
            rows, sorted(trials, key=lambda r: r.pk), strict=True
        ):
            assert pk == result.pk
            assert created == result.created_at
            assert score == result.score
            assert json.loads(data) == result.json_data
            assert started == sessions[result.session].started_at
        types = dict(
            db.execute("SELECT column_name, column_type FROM (DESCRIBE results)").fetchall()
        )
        assert types["id"] == "BIGINT"
        assert types["created_at"] == "TIMESTAMP WITH TIME ZONE"
        assert types["score"] == "DOUBLE"
        assert types["json_data"] == "JSON"
        constraints = db.execute(
            "SELECT table_name, constraint_type FROM information_schema.table_constraints"
            " WHERE constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')"
        ).fetchall()
        assert ("results", "FOREIGN KEY") in constraints
        assert ("profile_answers", "FOREIGN KEY") in constraints
        assert {t for t, c in constraints if c == "PRIMARY KEY"} == {
            "blocks",
            "participants",
            "songs",
            "sections",
            "sessions",
            "results",
            "profile_answers",
        }
        db.close()
        db = duckdb.connect(str(out / "all.duckdb"))  # the keys hold: DuckDB checks them
        with pytest.raises(duckdb.ConstraintException):
            db.execute(
                "INSERT INTO results (id, session_id, created_at, question_key, comment,"
                " scoring_rule) VALUES (-1, -1, now(), 'q', '', '')"
            )
    finally:
        db.close()


def test_duckdb_sink_without_duckdb_says_how_to_install(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "duckdb", None)  # import duckdb now raises ImportError
    out = tmp_path / "out"
    # a command that works from a checkout too: no index serves aml-exportkit yet
    with pytest.raises(
        SinkError, match=r"needs duckdb, which is not installed: pip install duckdb$"
    ):
        export(tmp_path, DUCKDB, str(reference_dir / "head" / ZIPS[0]), out)
    assert not out.exists()
    # validate says the same before any run
    template = tmp_path / "duckdb-only.toml"
    template.write_text('[[sinks]]\ntype = "duckdb"\npath = "x.duckdb"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(template)])
    assert result.exit_code != 0
    assert "needs duckdb, which is not installed: pip install duckdb" in result.output


def _doc_block(doc: str, marker: str) -> str:
    """The code block of ``docs/<doc>`` that holds the line ``marker``."""
    text = (Path(__file__).resolve().parents[2] / "docs" / doc).read_text(encoding="utf-8")
    for block in text.split("```python\n")[1:]:
        code = block.split("```", 1)[0]
        if marker in code:
            return code
    raise AssertionError(f"no python block with {marker!r} in docs/{doc}")


def test_the_documented_readers_see_every_run_s_columns(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two runs of blocks with different json_data paths: pyarrow and pandas read the first
    # part file's schema unless told otherwise, and dropped the other run's columns silently
    text = PARTITIONED.split('[[sinks]]\ntype = "parquet"\npath = "whole')[0]
    out = tmp_path / "pooled"
    for name in ("block_bat-ref.zip", "block_tafc-dvorak.zip"):
        export(tmp_path, text, str(reference_dir / "v2024" / name), out)
    files = sorted(out.rglob("*.parquet"))
    names = set().union(*(pq.read_schema(f).names for f in files)) | {"experiment", "block"}
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    assert any(set(pq.read_schema(f).names) != names - {"experiment", "block"} for f in files)

    monkeypatch.chdir(out)
    scope: dict[str, Any] = {}
    exec(_doc_block("parquet.md", "ds.dataset("), scope)
    assert set(scope["table"].column_names) == names
    assert scope["table"].num_rows == rows

    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(_doc_block("recipes.md", 'pd.read_parquet("pooled/dataset"'), scope)
    assert set(scope["trials"].columns) == names
    assert len(scope["trials"]) == rows

"""The export engine's contract: every builtin template and every builtin sink, on every
reference zip, every block of MUSCLE HEAD's database and a generated block at two seeds,
writes what the snapshots in ``recorded/`` say, on every lane (``tests/snapshot.py`` says
how a digest is taken; decision 0023 says why; ``tests/snapshot_cases.py`` lists the cases).
The snapshots were recorded from the plain path, which the engine replaced: they are the
engine's reference (decision 0035).

Record them again after a deliberate change of output with ``EXPORTKIT_UPDATE_SNAPSHOTS=1``
and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import generate
import snapshot
from conftest import REFERENCE, REFERENCE_ZIPS
from snapshot import Run, Source
from snapshot_cases import (
    GENERATED,
    HEAD_BLOCKS,
    PLUGINS,
    RECORDED,
    RUN_IDS,
    RUNS,
    zip_name,
)


def _check(source: Source, run: Run, tmp_path: Path) -> None:
    got = snapshot.export_on_lanes(run, source, tmp_path, plugins=PLUGINS.get(run.name, ()))
    snapshot.check(RECORDED / f"{source.name}.json", run.name, got)


@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("zip_path", REFERENCE_ZIPS, ids=zip_name)
def test_reference_zip(zip_path: Path, run: Run, tmp_path: Path) -> None:
    _check(Source.zip(zip_name(zip_path), zip_path), run, tmp_path)


@pytest.mark.pg
@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("block", HEAD_BLOCKS)
def test_head_database(muscle_head_db: str, block: str, run: Run, tmp_path: Path) -> None:
    _check(Source.database(f"db-head-{block}", muscle_head_db, block), run, tmp_path)


@pytest.fixture(scope="module")
def generated_zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generated blocks as MUSCLE's zips, named as MUSCLE names them."""
    made = {}
    for name, size in GENERATED.items():
        path = tmp_path_factory.mktemp(name) / f"block_{generate.BLOCK_SLUG}.zip"
        generate.write_zip(path, size)
        made[name] = path
    return made


@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_block(
    generated_zips: dict[str, Path], name: str, run: Run, tmp_path: Path
) -> None:
    _check(Source.zip(name, generated_zips[name]), run, tmp_path)


@pytest.mark.pg
def test_head_blocks_are_all_covered(muscle_head_db: str) -> None:
    """A block added to the reference database gets snapshots too."""
    import psycopg

    with psycopg.connect(muscle_head_db) as conn:
        slugs = {row[0] for row in conn.execute("SELECT slug FROM experiment_block")}
    assert slugs == set(HEAD_BLOCKS)


def _sources() -> list[str]:
    return sorted(
        [zip_name(p) for p in REFERENCE_ZIPS]
        + [f"db-head-{b}" for b in HEAD_BLOCKS]
        + list(GENERATED)
    )


@pytest.mark.parametrize("source", _sources())
def test_no_stale_snapshots(source: str) -> None:
    """Each snapshot file holds exactly the cases above (no leftovers of removed cases),
    and exists."""
    file = RECORDED / f"{source}.json"
    if not snapshot.updating():
        assert file.exists(), f"{file.name} missing; record it with {snapshot.UPDATE_ENV}=1"
    snapshot.check_no_stale(file, RUN_IDS)


def test_no_snapshot_files_of_unknown_sources() -> None:
    known = {f"{s}.json" for s in _sources()}
    assert {p.name for p in RECORDED.glob("*.json")} <= known


def test_a_changed_byte_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: one byte more in an output, or one hex digit changed in the
    snapshot, is reported with the case and the file."""
    monkeypatch.delenv(snapshot.UPDATE_ENV, raising=False)
    zip_path = REFERENCE / "head" / "block_tafc-dvorak.zip"
    source = Source.zip(zip_name(zip_path), zip_path)
    run = next(r for r in RUNS if r.name == "muscle-dashboard:long")
    got = snapshot.export(run, source, tmp_path / "out")
    file = RECORDED / f"{source.name}.json"
    snapshot.check(file, run.name, got)  # as recorded

    csv = tmp_path / "out" / "tafc-dvorak-muscle-dashboard-long.csv"
    with csv.open("ab") as fh:
        fh.write(b"\n")
    changed = {**got, csv.name: snapshot.digest(csv)}
    named = r"muscle-dashboard:long.*\n.*dashboard-long\.csv"
    with pytest.raises(pytest.fail.Exception, match=named):
        snapshot.check(file, run.name, changed)

    copy = tmp_path / file.name
    cases = snapshot.load(file)
    digest = cases[run.name][csv.name]
    cases[run.name][csv.name] = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    snapshot.save(copy, cases)
    with pytest.raises(pytest.fail.Exception, match=r"differs from its snapshot"):
        snapshot.check(copy, run.name, got)


def test_canonical_forms_keep_the_values(tmp_path: Path) -> None:
    """A value changed in a Parquet file or a DuckDB database changes its digest."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    def parquet(values: list[float]) -> str:
        path = tmp_path / "t.parquet"
        pq.write_table(pa.table({"x": values}), path)
        return snapshot.digest(path)

    assert parquet([1.0, 2.0]) == parquet([1.0, 2.0])
    assert parquet([1.0, 2.0]) != parquet([1.0, 2.5])

    def database(value: int) -> str:
        path = tmp_path / f"t{value}.duckdb"
        con = duckdb.connect(str(path))
        con.execute("CREATE TABLE t (id BIGINT PRIMARY KEY, seen TIMESTAMPTZ)")
        con.execute(f"INSERT INTO t VALUES (1, to_timestamp({value}))")
        con.close()
        return snapshot.digest(path)

    assert database(5) != database(6)

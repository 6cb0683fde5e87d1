"""The export engine's contract: every builtin template and every builtin sink, on every
reference zip, every block of MUSCLE HEAD's database and a generated block at two seeds,
writes what the snapshots in ``recorded/`` say, on every lane (``tests/snapshot.py`` says
how a digest is taken; decision 0023 says why).

Record them again after a deliberate change of output with ``EXPORTKIT_UPDATE_SNAPSHOTS=1``
and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import generate
import snapshot
from aml_exportkit.plugins import get_plugin_manager, load_registry
from conftest import REFERENCE, REFERENCE_ZIPS
from snapshot import Run, Source
from testdata import guide_sink

RECORDED = Path(__file__).parent / "recorded"

#: The long tables that today's bulk lane writes, one table (one set of table options) per
#: run, each as CSV and as Parquet. (A run of several tables with different options is
#: refused by the lane when a chunk must be rendered again, and then runs on the plain path.)
BULK = {
    "long": "",
    "long-result-json": 'result_json = "json"\n',
    "long-flatten-options": """
[sinks.flatten]
lists = "index"
max_depth = 2
separator = "/"
exclude = ["style*"]
rename = { "result_json/value" = "answer" }
""",
    "long-every-field-no-json": """
result_json = "omit"
[sinks.columns]
experiment = ["id", "slug", "name"]
block = ["id", "slug", "name", "rules", "rounds", "bonus_points"]
session = ["id", "block", "participant", "playlist", "started_at", "finished_at", "final_score"]
participant = ["id", "unique_hash", "country_code", "access_info", "participant_id_url"]
result = ["id", "kind", "session", "participant", "section", "created_at", "question_key",
    "expected_response", "given_response", "comment", "score", "scoring_rule"]
section = ["id", "playlist", "song", "start_time", "duration", "filename", "play_count", "tag",
    "group"]
song = ["id", "artist", "name"]
""",
    # fails where json_data has a decision_time (two columns would share a name): the
    # error is recorded, and every lane must report it alike
    "long-rename-clash": """
[sinks.flatten]
rename = { "result_json.decision_time" = "result_id" }
""",
}
#: The Parquet writer's own options (one per run above), which do not change the table.
PARQUET_OPTIONS = {
    "long": "",
    "long-result-json": 'compression = "none"\n',
    "long-flatten-options": 'row_group_size = 10\ncompression = "snappy"\n',
    "long-every-field-no-json": 'compression = "gzip"\n',
    "long-rename-clash": "",
}


def _long_tables(options: str, parquet: str) -> str:
    return (
        f'[[sinks]]\ntype = "csv-long"\npath = "long.csv"\n{options}\n'
        f'[[sinks]]\ntype = "parquet"\npath = "long.parquet"\n{parquet}{options}'
    )


#: Every other sink with its defaults, and the options that take other code.
PLAIN = """
[[sinks]]
type = "fixture-json"
path = "export.zip"

[[sinks]]
type = "csv-wide"
path = "wide.csv"

[[sinks]]
type = "parquet"
path = "wide.parquet"
layout = "wide"

[[sinks]]
type = "duckdb"
path = "export.duckdb"

[[sinks]]
type = "csv-long"
path = "long-ms.csv"
timestamps = "ms"

[[sinks]]
type = "parquet"
path = "long-ms.parquet"
timestamps = "ms"

[[sinks]]
type = "csv-long"
path = "long-exploded.csv"
[sinks.flatten]
lists = "explode"

[[sinks]]
type = "csv-long"
path = "long-profiles-sessions-guarded.csv"
rows = "both"
profile = "columns"
session_json = "columns"
formula_guard = true

[[sinks]]
type = "csv-wide"
path = "wide-by-question-key.csv"
[sinks.wide]
key_by = "question_key"

[[sinks]]
type = "parquet"
path = "wide-by-participant-section.parquet"
layout = "wide"
[sinks.wide]
row_per = "participant"
key_by = "section"
"""

#: The wide tables, as CSV and as Parquet, one layout per run.
WIDE = {
    "wide": "",
    "wide-by-question-key": '[sinks.wide]\nkey_by = "question_key"\n',
    "wide-by-section": '[sinks.wide]\nkey_by = "section"\n',
    "wide-by-participant": '[sinks.wide]\nrow_per = "participant"\n',
    "wide-by-participant-question-key": (
        '[sinks.wide]\nrow_per = "participant"\nkey_by = "question_key"\n'
    ),
}


def _wide_tables(wide: str) -> str:
    return (
        f'[[sinks]]\ntype = "csv-wide"\npath = "wide.csv"\n{wide}\n'
        f'[[sinks]]\ntype = "parquet"\npath = "wide.parquet"\nlayout = "wide"\n{wide}'
    )


#: fixture-json on the engine: alone, and beside the long tables (each result parsed once,
#: every sink's part rendered from it).
FIXTURE = {
    "fixture-json": '[[sinks]]\ntype = "fixture-json"\npath = "export.zip"\n',
    "fixture-json-long": '[[sinks]]\ntype = "fixture-json"\npath = "export.zip"\n'
    'compression = "deflate"\n\n' + _long_tables("", ""),
}

#: The plugin guide's example sink (a third-party sink that takes rows) beside csv-long: the
#: engine writes the long table and hands the sink record batches (through the row adapter).
GUIDE_SINK = (
    '[[sinks]]\ntype = "csv-long"\npath = "long.csv"\n\n'
    '[[sinks]]\ntype = "jsonl"\npath = "results.jsonl"\n'
)
#: The plugins a run needs besides the builtins, by the run's name.
PLUGINS = {"csv-long-jsonl": (guide_sink(),)}

CODEBOOK = """
codebook = true

[[sinks]]
type = "csv-long"
path = "long.csv"

[[sinks]]
type = "parquet"
path = "wide.parquet"
layout = "wide"
"""

CLASSIC_CODEBOOK = """
extends = "muscle-classic:wide"
codebook = true
"""

#: Every builtin template, as MUSCLE's users run it.
BUILTINS = sorted(load_registry(get_plugin_manager(load_entrypoints=False)).template_specs)

RUNS = [
    # every builtin template is written by the engine (decision 0027)
    *(Run(name, name, bulk=True) for name in BUILTINS),
    *(Run(name, _long_tables(BULK[name], PARQUET_OPTIONS[name]), bulk=True) for name in BULK),
    *(Run(name, text, bulk=True) for name, text in FIXTURE.items()),
    Run("csv-long-jsonl", GUIDE_SINK, bulk=True),
    *(Run(name, _wide_tables(text), bulk="participant" not in name) for name, text in WIDE.items()),
    Run("other-sinks", PLAIN, bulk=True),
    Run("codebook", CODEBOOK),
    Run("codebook-classic-wide", CLASSIC_CODEBOOK),
    # the tables of the library's API, written to no file (the long one by the engine)
    Run("to_arrow:long", to_arrow="long", bulk=True),
    Run("to_arrow:wide", to_arrow="wide"),
]
RUN_IDS = [run.name for run in RUNS]

#: The blocks of MUSCLE HEAD's reference database (tests/data/README.md).
HEAD_BLOCKS = ("hooked-eurovision", "msi-questionnaire", "tafc-dvorak")
#: The generated blocks: sessions and seed.
GENERATED = {
    "generated-seed7": generate.Size(12, seed=7),
    "generated-seed23": generate.Size(12, seed=23),
}


def _zip_name(path: Path) -> str:
    return "zip-" + "-".join(path.relative_to(REFERENCE).with_suffix("").parts)


def _check(source: Source, run: Run, tmp_path: Path) -> None:
    got = snapshot.export_on_lanes(run, source, tmp_path, plugins=PLUGINS.get(run.name, ()))
    snapshot.check(RECORDED / f"{source.name}.json", run.name, got)


@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("zip_path", REFERENCE_ZIPS, ids=_zip_name)
def test_reference_zip(zip_path: Path, run: Run, tmp_path: Path) -> None:
    _check(Source.zip(_zip_name(zip_path), zip_path), run, tmp_path)


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
        [_zip_name(p) for p in REFERENCE_ZIPS]
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
    source = Source.zip(_zip_name(zip_path), zip_path)
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

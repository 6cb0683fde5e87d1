"""The snapshot cases (tests/snapshots/test_snapshots.py runs them all on every lane): each
case's run, the sources, and where their snapshots are recorded. Other tests run single
cases with a changed setting (small chunks, a short sample) with :func:`check_case`,
compared with the same recorded snapshot: the snapshots, recorded from the plain path the
engine replaced, are every export's reference (decision 0035)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import generate
import snapshot
from aml_exportkit.plugins import get_plugin_manager, load_registry
from conftest import REFERENCE
from snapshot import Run, Source
from testdata import guide_sink

RECORDED = Path(__file__).parent / "snapshots" / "recorded"

#: The long tables, one table (one set of table options) per run, each as CSV and as
#: Parquet.
LONG_TABLES = {
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
    *(Run(name, name) for name in BUILTINS),
    *(Run(name, _long_tables(LONG_TABLES[name], PARQUET_OPTIONS[name])) for name in LONG_TABLES),
    *(Run(name, text) for name, text in FIXTURE.items()),
    Run("csv-long-jsonl", GUIDE_SINK),
    *(Run(name, _wide_tables(text)) for name, text in WIDE.items()),
    Run("other-sinks", PLAIN),
    Run("codebook", CODEBOOK),
    Run("codebook-classic-wide", CLASSIC_CODEBOOK),
    # the tables of the library's API, written to no file (the long one by the engine)
    Run("to_arrow:long", to_arrow="long"),
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


def zip_name(path: Path) -> str:
    """The name of a reference zip's source (its snapshot file's)."""
    return "zip-" + "-".join(path.relative_to(REFERENCE).with_suffix("").parts)


def case(name: str) -> Run:
    """The case named ``name``."""
    return next(run for run in RUNS if run.name == name)


def check_case(name: str, source: Source, out: Path, *, plugins: Sequence[object] = ()) -> None:
    """Run case ``name`` on ``source`` once, into the empty folder ``out``, in the current
    environment (and with whatever the caller patched), and compare it with its recorded
    snapshot."""
    got = snapshot.export(case(name), source, out, plugins=plugins or PLUGINS.get(name, ()))
    snapshot.check(RECORDED / f"{source.name}.json", name, got)

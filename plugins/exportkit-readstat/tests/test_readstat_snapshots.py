"""The spss and stata sinks' part of the export engine's contract (decision 0023): what
they write on MUSCLE's reference zips, every block of MUSCLE HEAD's database, the generated
blocks and this plugin's own labelled zip, recorded in ``snapshots/`` by the mechanism of
``tests/snapshot.py``.

A ``.sav`` or ``.dta`` file carries its writing time (and ReadStat's version), so its digest
is taken over what pyreadstat reads back (:func:`readstat_canonical`). Record again with
``EXPORTKIT_UPDATE_SNAPSHOTS=1``.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import exportkit_readstat
import pytest

import generate
import snapshot
from snapshot import Run, Source
from testdata import REFERENCE

#: MUSCLE's dashboard zips (the gzip-wrapped copies of ``manage.py exportblock`` hold the same
#: data; reading them is the main suite's concern, tests/snapshots).
ZIPS = sorted(REFERENCE.glob("*/block_*.zip"))

RECORDED = Path(__file__).parent / "snapshots"

#: What pyreadstat reads back, but the file's creation and modification times.
META = (
    "file_format",
    "file_encoding",
    "file_label",
    "table_name",
    "notes",
    "number_rows",
    "number_columns",
    "column_names",
    "column_labels",
    "original_variable_types",
    "readstat_variable_types",
    "variable_value_labels",
    "value_labels",
    "variable_to_label",
    "missing_ranges",
    "missing_user_values",
    "variable_measure",
    "variable_display_width",
    "variable_storage_width",
    "variable_alignment",
)


def readstat_canonical(path: Path) -> bytes:
    """An SPSS or Stata file as pyreadstat reads it: the metadata in :data:`META` and every
    value, dates and times as the numbers the file stores (no conversion)."""
    pyreadstat = importlib.import_module("pyreadstat")
    read = pyreadstat.read_sav if path.suffix == ".sav" else pyreadstat.read_dta
    frame, meta = read(str(path), disable_datetime_conversion=True)
    values = {
        name: [None if isinstance(v, float) and math.isnan(v) else v for v in frame[name].tolist()]
        for name in frame.columns
    }
    described: dict[str, Any] = {key: getattr(meta, key, None) for key in META}
    return snapshot.canonical_json({"meta": described, "values": values})


snapshot.register_canonical(".sav", "readstat", readstat_canonical)
snapshot.register_canonical(".dta", "readstat", readstat_canonical)

#: Both sinks with their defaults (the wide table).
DEFAULTS = """
[[sinks]]
type = "spss"
path = "wide.sav"

[[sinks]]
type = "stata"
path = "wide.dta"
"""

#: Value labels from the questions, the long layout, the label options.
OPTIONS = """
[[sinks]]
type = "spss"
path = "wide-by-question-key.sav"
profile = "columns"
[sinks.wide]
key_by = "question_key"

[[sinks]]
type = "stata"
path = "long-questions.dta"
layout = "long"
profile = "columns"
variable_labels = "question"
file_label = "Long table ♪"

[[sinks]]
type = "spss"
path = "long-names.sav"
layout = "long"
variable_labels = "name"
value_labels = false
"""

RUNS = [Run("defaults", DEFAULTS), Run("options", OPTIONS)]
RUN_IDS = [run.name for run in RUNS]
HEAD_BLOCKS = ("hooked-eurovision", "msi-questionnaire", "tafc-dvorak")
#: Small: pyreadstat takes seconds for a table of a few thousand columns (a wide table).
GENERATED = {"generated-seed7": generate.Size(4, trials=20, seed=7)}


def _zip_name(path: Path) -> str:
    return "zip-" + "-".join(path.relative_to(REFERENCE).with_suffix("").parts)


def _check(source: Source, run: Run, tmp_path: Path) -> None:
    got = snapshot.export_on_lanes(run, source, tmp_path, plugins=[exportkit_readstat])
    snapshot.check(RECORDED / f"{source.name}.json", run.name, got)


@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("zip_path", ZIPS, ids=_zip_name)
def test_reference_zip(zip_path: Path, run: Run, tmp_path: Path) -> None:
    _check(Source.zip(_zip_name(zip_path), zip_path), run, tmp_path)


@pytest.mark.pg
@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("block", HEAD_BLOCKS)
def test_head_database(muscle_head_db: str, block: str, run: Run, tmp_path: Path) -> None:
    _check(Source.database(f"db-head-{block}", muscle_head_db, block), run, tmp_path)


@pytest.fixture(scope="module")
def generated_zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The generated blocks as MUSCLE's zips."""
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


@pytest.mark.parametrize("run", RUNS, ids=RUN_IDS)
def test_labelled_zip(muscle_zip: Path, run: Run, tmp_path: Path) -> None:
    """This plugin's own zip: Likert scales, named choices, old-style questions."""
    _check(Source.zip("likert-demo", muscle_zip), run, tmp_path / "out")


def _sources() -> list[str]:
    return sorted(
        [_zip_name(p) for p in ZIPS]
        + [f"db-head-{b}" for b in HEAD_BLOCKS]
        + [*GENERATED, "likert-demo"]
    )


@pytest.mark.parametrize("source", _sources())
def test_no_stale_snapshots(source: str) -> None:
    file = RECORDED / f"{source}.json"
    if not snapshot.updating():
        assert file.exists(), f"{file.name} missing; record it with {snapshot.UPDATE_ENV}=1"
    snapshot.check_no_stale(file, RUN_IDS)


def test_a_changed_value_changes_the_digest(tmp_path: Path) -> None:
    """The canonical form keeps the values: one cell changed, another digest."""
    pd = importlib.import_module("pandas")
    pyreadstat = importlib.import_module("pyreadstat")

    def digest(value: float, suffix: str) -> str:
        path = tmp_path / f"t{value}{suffix}"
        frame = pd.DataFrame({"x": [1.0, value], "s": ["a", "b"]})
        write = pyreadstat.write_sav if suffix == ".sav" else pyreadstat.write_dta
        write(frame, str(path))
        return snapshot.digest(path)

    for suffix in (".sav", ".dta"):
        assert digest(2.0, suffix) == digest(2.0, suffix)
        assert digest(2.0, suffix) != digest(2.5, suffix)

"""Where the test data is: MUSCLE's reference output under ``tests/data``, relative to the
repository (``tests/data/README.md`` says where each file comes from).

The one place that knows these paths: ``tests/conftest.py`` re-exports them and builds its
fixtures on them, and the readstat plugin's tests import them from here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
#: MUSCLE's own output, copied into the repository: ``head/`` and ``v2024/``.
REFERENCE = ROOT / "tests" / "data"
#: Every MUSCLE zip in the reference data (plain and gzip-wrapped).
REFERENCE_ZIPS = sorted(REFERENCE.glob("*/block_*.zip")) + sorted(
    REFERENCE.glob("*/exportblock_command/*.zip")
)

#: The plugin guide's worked example sink (``docs/plugin-guide.md``), which the benchmarks
#: load too.
GUIDE_SINK = ROOT / "benchmarks" / "plugin" / "exportkit_jsonl.py"


def guide_sink() -> ModuleType:
    """The plugin guide's example sink, imported from :data:`GUIDE_SINK` (a plugin for
    ``get_plugin_manager(plugins=[...])``)."""
    spec = importlib.util.spec_from_file_location("exportkit_jsonl", GUIDE_SINK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_trial_pks(uri: str, selection: object) -> list[int]:
    """The keys of the trial results the source's own reader gives for ``selection`` (an
    :class:`aml_exportkit.selection.Selection`), record by record, in order: the reference
    for which results a run exports."""
    from aml_exportkit.pipeline import open_source

    with open_source(uri) as source, source.read(selection) as graph:  # type: ignore[arg-type]
        return [r.pk for batch in graph.trial_results() for r in batch]


def csv_result_ids(path: Path) -> list[int]:
    """The ``result_id`` column of a long CSV table, in order."""
    import csv

    with path.open(encoding="utf-8", newline="") as fh:
        return [int(row["result_id"]) for row in csv.DictReader(fh) if row["result_id"]]

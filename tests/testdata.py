"""Where the test data is: MUSCLE's reference output under ``tests/data``, relative to the
repository (``tests/data/README.md`` says where each file comes from).

The one place that knows these paths: ``tests/conftest.py`` re-exports them and builds its
fixtures on them, and the readstat plugin's tests import them from here.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: MUSCLE's own output, copied into the repository: ``head/`` and ``v2024/``.
REFERENCE = ROOT / "tests" / "data"
#: Every MUSCLE zip in the reference data (plain and gzip-wrapped).
REFERENCE_ZIPS = sorted(REFERENCE.glob("*/block_*.zip")) + sorted(
    REFERENCE.glob("*/exportblock_command/*.zip")
)

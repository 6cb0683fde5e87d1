"""The test suite needs nothing outside the repository: its data is under tests/data, each
file accounted for in tests/data/README.md, and generated data comes from tests/generate.py."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import generate
from testdata import REFERENCE, ROOT

DATA_README = REFERENCE / "README.md"
#: Spellings of a path outside the repository that tests once used.
OUTSIDE = ("/work/", "EXPORTKIT_SHARED", '"shared"', "../shared", "bench/generate.py")


def _pattern(relative: str) -> str:
    """How the README names a file: a block's slug and a CSV variant as placeholders."""
    relative = re.sub(r"^(\w+/)block_[\w-]+\.(zip|csv)$", r"block_<slug>.\2", relative)
    relative = re.sub(
        r"^head/exportblock_command/[\w-]+\.zip$", "exportblock_command/<slug>.zip", relative
    )
    relative = re.sub(r"^v2024/csv/[\w-]+__\w+\.csv$", "csv/<slug>__<variant>.csv", relative)
    return relative.split("/")[-1] if relative.count("/") == 1 else relative


def test_every_data_file_is_described() -> None:
    text = DATA_README.read_text(encoding="utf-8")
    files = [p for p in REFERENCE.rglob("*") if p.is_file() and p != DATA_README]
    assert len(files) > 50
    missing = sorted(
        str(p.relative_to(REFERENCE))
        for p in files
        if f"`{_pattern(str(p.relative_to(REFERENCE)))}`" not in text
        and _pattern(str(p.relative_to(REFERENCE))) not in text
    )
    assert missing == []
    for commit in (
        "1fa9cb5ec7ea8b5490e319f749e359bbd040e6e2",
        "8aa6438da63444fbcdd0e125f07fff03cc6eea25",
    ):
        assert commit in text


def test_no_test_reads_outside_the_repository() -> None:
    offenders = []
    tests = [*(ROOT / "tests").rglob("*.py"), *(ROOT / "plugins").glob("*/tests/*.py")]
    for path in sorted(tests):
        if path == Path(__file__):
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(ROOT)}: {word}" for word in OUTSIDE if word in text]
    assert offenders == []


def test_the_generator_is_deterministic_and_muscles_shape(tmp_path: Path) -> None:
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    counts = generate.write_zip(first, generate.Size(12, trials=30))
    generate.write_zip(second, generate.Size(12, trials=30))
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert archive.namelist() == list(generate.FIXTURE_FILES)
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
        results = archive.read("results.json").decode("utf-8")
    assert results.startswith('[{"model": "result.result", "pk": ')
    assert results.count('}, {"model": ') == counts["results.json"] - 1
    assert counts["sessions.json"] == 12
    assert counts["participants.json"] < 12  # some participants came twice

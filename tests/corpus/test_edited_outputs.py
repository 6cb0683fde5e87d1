"""Bad-input corpus, part 6: our own outputs, edited, handed back in.

``exportkit rebuild`` reads a long table and its manifest, ``run --since`` an earlier
manifest. Both may have been edited by hand, truncated or crafted: every case gets one line
naming the file (and the row and column), never "internal error". docs/bad-input.md lists
each case.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.errors import EXIT_SOURCE

ZIP = "head/block_tafc-dvorak.zip"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, reference_dir: Path) -> Path:
    """A long CSV and its manifest, exported once for the module."""
    folder = tmp_path_factory.mktemp("exported")
    template = folder / "t.toml"
    template.write_text('[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n', encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        ["run", str(template), "--source", str(reference_dir / ZIP), "--out", str(folder / "o")],
    )
    assert result.exit_code == 0, result.output
    return folder / "o"


def one_line(result: Any) -> str:
    assert result.exit_code == EXIT_SOURCE, result.output
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1, result.stderr
    assert "internal error" not in lines[0]
    return lines[0]


def _cell(column: str, value: str) -> Callable[[list[list[str]]], None]:
    def change(rows: list[list[str]]) -> None:
        index = rows[0].index(column)
        row = next(r for r in rows[1:] if r[index] != "")
        row[index] = value

    return change


TABLE_EDITS: dict[str, tuple[Callable[[list[list[str]]], None], list[str]]] = {
    "not a number": (_cell("result_json.decision_time", "abc"), ["decision_time", "'abc'"]),
    "a number beyond a double": (
        _cell("result_json.decision_time", "1" * 400),
        ["beyond a double"],
    ),
    "not JSON": (_cell("result_json.choices", "{not json"), ["result_json.choices"]),
    "NaN in a JSON cell": (_cell("result_json.choices", "[NaN]"), ["NaN"]),
    "JSON nested too deeply": (
        _cell("result_json.choices", "[" * 5000 + "]" * 5000),
        ["nested more than"],
    ),
    "a result_id that is not an integer": (_cell("result_id", "x"), ["result_id 'x'"]),
    "a short row": (lambda rows: rows[1].pop(), ["the header has"]),
}


@pytest.mark.parametrize("case", list(TABLE_EDITS))
def test_an_edited_table(case: str, exported: Path, tmp_path: Path) -> None:
    change, words = TABLE_EDITS[case]
    folder = tmp_path / "o"
    shutil.copytree(exported, folder)
    with (exported / "r.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    change(rows)
    with (folder / "r.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    line = one_line(CliRunner().invoke(cli, ["rebuild", str(folder / "r.csv")]))
    assert "r.csv: row 2" in line
    for word in words:
        assert word in line, line


MANIFEST_EDITS = {
    "truncated": lambda text: text[: len(text) // 2],
    "nested too deeply": lambda text: "[" * 100_000,
    "an array": lambda text: "[]",
    "outputs of another shape": lambda text: json.dumps(
        {**json.loads(text), "outputs": [{"path": "r.csv", "columns": 7}]}
    ),
    "a template of another shape": lambda text: json.dumps({**json.loads(text), "template": "x"}),
}


@pytest.mark.parametrize("case", list(MANIFEST_EDITS))
def test_an_edited_manifest(case: str, exported: Path, reference_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "o"
    shutil.copytree(exported, folder)
    manifest = folder / "manifest.json"
    manifest.write_text(MANIFEST_EDITS[case](manifest.read_text(encoding="utf-8")))
    rebuilt = CliRunner().invoke(
        cli, ["rebuild", str(folder / "r.csv"), "--manifest", str(manifest)]
    )
    assert "manifest.json: " in one_line(rebuilt)
    template = tmp_path / "t.toml"
    template.write_text('[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n', encoding="utf-8")
    if case in ("truncated", "nested too deeply", "an array"):
        since = CliRunner().invoke(
            cli,
            [
                "run",
                str(template),
                "--source",
                str(reference_dir / ZIP),
                "--out",
                str(tmp_path / "new"),
                "--since",
                str(manifest),
            ],
        )
        assert "manifest.json: " in one_line(since)
        assert not (tmp_path / "new").exists()

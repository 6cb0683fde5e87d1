"""formula_guard: cells a spreadsheet would run as formulas get a leading apostrophe."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.tabular.table import guard_formula
from zipcases import Objects, mutated

ZIP = "head/block_hooked-eurovision.zip"
EVIL = ['=HYPERLINK("http://x","click")', "+1+2", "@SUM(A1)", "-2+3", "\tx"]


@pytest.mark.parametrize(
    ("text", "guarded"),
    [
        ("=1+1", "'=1+1"),
        ("+cmd", "'+cmd"),
        ("-x", "'-x"),
        ("@A1", "'@A1"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-15.0", "-15.0"),
        ("+3", "+3"),
        ("-1e5", "-1e5"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_guard_formula(text: str, guarded: str) -> None:
    assert guard_formula(text) == guarded
    assert guard_formula(-1.5) == -1.5  # numbers are not text


def export(tmp_path: Path, reference_dir: Path, sink: str, guard: bool) -> list[dict[str, str]]:
    def inject(objs: Objects) -> Objects:
        for obj, text in zip(objs, EVIL, strict=False):
            obj["fields"]["given_response"] = text
        return objs

    source = mutated(reference_dir / ZIP, tmp_path / "evil.zip", results_json=inject)
    template = tmp_path / "t.toml"
    template.write_text(
        f'[[sinks]]\ntype = "{sink}"\npath = "x.csv"\n'
        f"formula_guard = {'true' if guard else 'false'}\n",
        encoding="utf-8",
    )
    out = tmp_path / ("on" if guard else "off")
    result = CliRunner().invoke(
        cli, ["run", str(template), "--source", str(source), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with (out / "x.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_long_guards_only_when_asked(reference_dir: Path, tmp_path: Path) -> None:
    on = export(tmp_path, reference_dir, "csv-long", True)
    off = export(tmp_path, reference_dir, "csv-long", False)
    given_on = [row["result_given_response"] for row in on]
    given_off = [row["result_given_response"] for row in off]
    for text in EVIL:
        assert text in given_off
        assert text not in given_on
        assert "'" + text in given_on
    scores = [row["result_score"] for row in on]
    assert any(s.startswith("-") for s in scores)  # negative numbers stay numbers
    assert all(not s.startswith("'") for s in scores)


def test_csv_wide_guards_too(reference_dir: Path, tmp_path: Path) -> None:
    rows = export(tmp_path, reference_dir, "csv-wide", True)
    cells = [value for row in rows for value in row.values()]
    assert "'" + EVIL[0] in cells
    assert EVIL[0] not in cells

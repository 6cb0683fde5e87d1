"""MUSCLE's own CSVs, reproduced by the builtin templates: every classic CSV of
tests/data/v2024/csv (from the 2024 database, which knows block names and full-precision
times) and the three dashboard CSVs of tests/data/head (from the database, and from the zips
with times cut to milliseconds as the zips hold them). Compared as tables: the same header
set, the same multiset of rows, the same cell strings; row order and MUSCLE's unstable
column order are free."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.pipeline import load_template, run_export
from conftest import REFERENCE
from sinks.golden import read_table, table_differences

TEMPLATES = Path(__file__).parent / "templates"
CLASSIC = sorted((REFERENCE / "v2024" / "csv").glob("*.csv"))
DASHBOARD = sorted((REFERENCE / "head").glob("block_*.csv"))


def _template_for(variant: str) -> str:
    if "all_fields" in variant:
        return str(TEMPLATES / f"{variant}.toml")
    return f"muscle-classic:{variant}"


def _export(template: str, source: str, slug: str, out: Path) -> Path:
    report = run_export(load_template(template), source=source, blocks=[slug], out_dir=out)
    (output,) = report.outputs
    return output.path


def _rows(path: Path) -> int:
    return len(read_table(path)[1])


def test_every_reference_csv_has_a_template() -> None:
    assert len(CLASSIC) == 42
    for path in CLASSIC:
        template = _template_for(path.stem.split("__")[1])
        assert template.startswith("muscle-classic:") or Path(template).is_file(), path.name
    assert len(DASHBOARD) == 3


@pytest.mark.pg
@pytest.mark.parametrize("reference", CLASSIC, ids=lambda p: p.stem)
def test_classic_csv(reference: Path, muscle_2024_db: str, tmp_path: Path) -> None:
    slug, variant = reference.stem.split("__")
    template = _template_for(variant)
    got = _export(template, muscle_2024_db, slug, tmp_path)
    named = (
        f"{slug}-muscle-classic-{variant}.csv" if template.startswith("muscle-") else f"{slug}.csv"
    )
    assert got.name == named
    assert _rows(got) == _rows(reference) > 0
    assert table_differences(got, reference) == []
    # MUSCLE's classic writer: CRLF line ends, no BOM, header sorted as Python sorts
    raw = got.read_bytes()
    assert raw.endswith(b"\r\n")
    assert not raw.startswith(b"\xef\xbb\xbf")
    header = read_table(got)[0]
    assert header == sorted(header)


@pytest.mark.pg
@pytest.mark.parametrize("reference", DASHBOARD, ids=lambda p: p.stem)
def test_dashboard_csv_from_the_database(
    reference: Path, muscle_head_db: str, tmp_path: Path
) -> None:
    slug = reference.stem.removeprefix("block_")
    got = _export("muscle-dashboard:long", muscle_head_db, slug, tmp_path)
    assert _rows(got) == _rows(reference) > 0
    assert table_differences(got, reference) == []
    assert b"\r" not in got.read_bytes()


def _millis(column: str, text: str) -> str:
    # the zip holds created_at cut to milliseconds (Django's JSON encoder)
    if column == "created_at" and len(text) == len("2026-11-25 00:41:16.814980+00:00"):
        return text[:23] + text[26:]
    return text


@pytest.mark.parametrize("reference", DASHBOARD, ids=lambda p: p.stem)
def test_dashboard_csv_from_the_zip(reference: Path, tmp_path: Path) -> None:
    slug = reference.stem.removeprefix("block_")
    got = _export("muscle-dashboard:long", str(reference.with_suffix(".zip")), slug, tmp_path)
    assert _rows(got) == _rows(reference) > 0
    assert table_differences(got, reference, _millis) == []


def test_a_changed_cell_is_noticed(tmp_path: Path) -> None:
    """The mutated twin of the golden comparison: one changed cell must fail it."""
    reference = DASHBOARD[0]
    header, rows = read_table(reference)
    rows[3]["given_response"] += "x"
    twin = tmp_path / "twin.csv"
    with open(twin, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    assert table_differences(twin, reference) != []
    rows.pop()
    assert table_differences(twin, reference) != []


def test_cli_run_writes_exactly_one_csv(tmp_path: Path) -> None:
    out = tmp_path / "out"
    source = REFERENCE / "v2024" / "block_tafc-dvorak.zip"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "muscle-classic:long_json",
            "--source",
            str(source),
            "--block",
            "tafc-dvorak",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    files = list(out.glob("*.csv"))
    assert [f.name for f in files] == ["tafc-dvorak-muscle-classic-long_json.csv"]
    assert sorted(f.name for f in out.iterdir()) == [
        "tafc-dvorak-muscle-classic-long_json.csv",
        "tafc-dvorak-muscle-classic-long_json.manifest.json",
    ]
    assert _rows(files[0]) == 143


def test_builtin_runs_into_one_folder_keep_each_others_files(tmp_path: Path) -> None:
    """Each builtin template names its CSV and its manifest after itself (and the block)."""
    out = tmp_path / "out"
    source = REFERENCE / "v2024" / "block_tafc-dvorak.zip"
    for template in ("muscle-classic:long_json", "muscle-classic:wide", "muscle-dashboard:long"):
        args = ["run", template, "--source", str(source), "--block", "tafc-dvorak"]
        result = CliRunner().invoke(cli, [*args, "--out", str(out)])
        assert result.exit_code == 0, result.output
    stems = ["muscle-classic-long_json", "muscle-classic-wide", "muscle-dashboard-long"]
    assert sorted(f.name for f in out.iterdir()) == sorted(
        f"tafc-dvorak-{stem}{suffix}" for stem in stems for suffix in (".csv", ".manifest.json")
    )
    for stem in stems:
        manifest = json.loads((out / f"tafc-dvorak-{stem}.manifest.json").read_text("utf-8"))
        assert [o["path"] for o in manifest["outputs"]] == [f"tafc-dvorak-{stem}.csv"]


@pytest.mark.pg
def test_cli_run_from_the_database(muscle_2024_db: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["run", "muscle-classic:long_json", "--source", muscle_2024_db]
    result = CliRunner().invoke(cli, [*args, "--block", "bat-ref", "--out", str(out)])
    assert result.exit_code == 0, result.output
    got = out / "bat-ref-muscle-classic-long_json.csv"
    assert list(out.glob("*.csv")) == [got]
    reference = REFERENCE / "v2024" / "csv" / "bat-ref__long_json.csv"
    assert table_differences(got, reference) == []


def test_templates_command_lists_the_builtins() -> None:
    result = CliRunner().invoke(cli, ["templates"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    classic = [n for n in names if n.startswith("muscle-classic:")]
    assert len(classic) == 10
    assert "muscle-dashboard:long" in names


def test_an_empty_block_writes_what_muscle_writes(tmp_path: Path) -> None:
    """MUSCLE's classic export of a block without sessions is a lone CRLF (no header)."""
    empty = tmp_path / "empty.zip"
    shutil.copy(REFERENCE / "v2024" / "block_rhythm-final.zip", empty)
    text = (TEMPLATES / "long_all_fields_json_kept.toml").read_text(encoding="utf-8")
    text = text.replace("[[sinks]]", "[filter]\nparticipants = [999999]\n\n[[sinks]]")
    template_path = tmp_path / "t.toml"
    template_path.write_text(text, encoding="utf-8")
    report = run_export(
        load_template(str(template_path)),
        source=str(empty),
        blocks=["rhythm-final"],
        out_dir=tmp_path,
    )
    assert report.outputs[0].rows == 0
    assert report.outputs[0].path.read_bytes() == b"\r\n"

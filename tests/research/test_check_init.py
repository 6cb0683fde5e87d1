"""exportkit init (a starter template from the data) and exportkit check (drift)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.errors import EXIT_SINK, EXIT_VERIFY
from zipcases import Objects, mutated

ZIP = "head/block_tafc-dvorak.zip"


def init(tmp_path: Path, source: Path) -> Path:
    target = tmp_path / "starter.toml"
    result = CliRunner().invoke(cli, ["init", str(source), "-o", str(target)])
    assert result.exit_code == 0, result.output
    return target


def test_init_lists_every_path_and_runs(reference_dir: Path, tmp_path: Path) -> None:
    template = init(tmp_path, reference_dir / ZIP)
    text = template.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    include = data["sinks"][0]["flatten"]["include"]
    assert "decision_time" in include
    assert include == sorted(include)
    # types and frequencies as comments
    assert '"decision_time",  # result: number, 57 of 58 (98.3%)' in text
    assert data["source"]["blocks"] == ["tafc-dvorak"]
    runner = CliRunner()
    run = runner.invoke(cli, ["run", str(template), "--out", str(tmp_path / "out")])
    assert run.exit_code == 0, run.output
    assert (tmp_path / "out" / "tafc-dvorak.csv").is_file()
    check = runner.invoke(cli, ["check", str(template), "--strict"])
    assert check.exit_code == 0, check.output
    assert "paths in the data but not exported: 0" in check.stdout
    assert "tafc-dvorak.csv (csv-long): 58 rows" in check.stdout


def test_init_does_not_overwrite(reference_dir: Path, tmp_path: Path) -> None:
    template = init(tmp_path, reference_dir / ZIP)
    again = CliRunner().invoke(cli, ["init", str(reference_dir / ZIP), "-o", str(template)])
    assert again.exit_code == EXIT_SINK
    assert "--force" in again.stderr
    forced = CliRunner().invoke(
        cli, ["init", str(reference_dir / ZIP), "-o", str(template), "--force"]
    )
    assert forced.exit_code == 0


def test_check_reports_drift(reference_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(
        '[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n'
        '[sinks.flatten]\ninclude = ["decision_time", "no_such_key", "value"]\n'
        'rename = { "result_json.nothing" = "x" }\n',
        encoding="utf-8",
    )

    def conflict(objs: Objects) -> Objects:
        objs[0]["fields"]["json_data"]["value"] = 42
        return objs

    source = mutated(reference_dir / ZIP, tmp_path / "data.zip", results_json=conflict)
    result = CliRunner().invoke(
        cli, ["check", str(template), "--source", str(source), "--json", "--strict"]
    )
    assert result.exit_code == EXIT_VERIFY, result.output
    report = json.loads(result.stdout)
    sink = report["sinks"][0]
    assert "result: text" in sink["not_exported"]
    assert "result: decision_time" not in sink["not_exported"]
    assert sink["unused_patterns"] == ["no_such_key"]
    assert sink["unused_renames"] == ["result_json.nothing"]
    assert {(c["origin"], c["path"]) for c in report["conflicts"]} == {("trial", "value")}
    assert report["outputs"][0]["rows"] == 58
    assert "result_json.decision_time" in report["outputs"][0]["columns"]
    assert report["drift"] is True


def test_init_of_a_questionnaire_block_exports_its_answers(
    reference_dir: Path, tmp_path: Path
) -> None:
    """A block with profile answers only: the starter template's rows are those answers
    (not 0 trial results), and init says so on stderr and in the template."""
    target = tmp_path / "starter.toml"
    source = reference_dir / "head" / "block_msi-questionnaire.zip"
    result = CliRunner().invoke(cli, ["init", str(source), "-o", str(target)])
    assert result.exit_code == 0, result.output
    assert "no trial results, only 72 profile answers" in result.stderr
    text = target.read_text(encoding="utf-8")
    assert "# Note: the data holds no trial results" in text
    assert tomllib.loads(text)["sinks"][0]["rows"] == "profile"
    run = CliRunner().invoke(cli, ["run", str(target), "--out", str(tmp_path / "out")])
    assert run.exit_code == 0, run.output
    assert (tmp_path / "out" / "msi-questionnaire.csv").read_text().count("\n") == 73
    # a block with trial results keeps the default rows, and no note
    plain = CliRunner().invoke(cli, ["init", str(reference_dir / ZIP)])
    assert plain.stderr == ""
    assert "rows =" not in plain.stdout

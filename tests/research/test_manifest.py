"""manifest.json: versions, template, source checksum, outputs with sizes and checksums."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli

ZIP = "head/block_tafc-dvorak.zip"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(tmp_path: Path, reference_dir: Path, text: str, *extra: str) -> tuple[Any, Path]:
    template = tmp_path / "t.toml"
    template.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["run", str(template), "--source", str(reference_dir / ZIP), "--out", str(out), *extra]
    )
    return result, out


TEMPLATE = (
    "[filter]\nfinished_only = true\n"
    '[[sinks]]\ntype = "fixture-json"\npath = "{block}.zip"\n'
    '[[sinks]]\ntype = "csv-long"\npath = "{block}.csv"\n'
)


def test_manifest_describes_the_run(reference_dir: Path, tmp_path: Path) -> None:
    result, out = run(tmp_path, reference_dir, TEMPLATE, "--block", "tafc")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tool"]["name"] == "aml-exportkit"
    assert {p["plugin"] for p in manifest["plugins"]} >= {"aml_exportkit.sinks.fixture_json"}
    assert manifest["template"]["text"] == TEMPLATE
    assert manifest["template"]["sha256"] == hashlib.sha256(TEMPLATE.encode()).hexdigest()
    assert manifest["source"]["sha256"] == sha256(reference_dir / ZIP)
    assert manifest["source"]["parts"][0]["kind"] == "fixture-zip"
    assert manifest["selection"]["filter"]["finished_only"] is True
    assert manifest["selection"]["blocks"] == ["tafc"]
    outputs = {o["path"]: o for o in manifest["outputs"]}
    assert set(outputs) == {"tafc.zip", "tafc.csv"}
    for name, entry in outputs.items():
        assert entry["sha256"] == sha256(out / name)
        assert entry["bytes"] == (out / name).stat().st_size
        assert entry["rows"] > 0
    assert outputs["tafc.zip"]["sink"] == "fixture-json"
    assert manifest["result_counts"]["trial"] > 0


def test_manifest_can_be_turned_off(reference_dir: Path, tmp_path: Path) -> None:
    result, out = run(
        tmp_path,
        reference_dir,
        'manifest = false\n[[sinks]]\ntype = "fixture-json"\npath = "a.zip"\n',
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.zip"]


def test_no_manifest_after_a_failure(reference_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text('[[sinks]]\ntype = "fixture-json"\npath = "a.zip"\n')
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"garbage")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["run", str(template), "--source", str(bad), "--out", str(out)]
    )
    assert result.exit_code != 0
    assert not out.exists()


def test_manifest_goes_beside_outputs_without_out(reference_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(
        '[[sinks]]\ntype = "fixture-json"\npath = "exports/a/x.zip"\n'
        '[[sinks]]\ntype = "fixture-json"\npath = "exports/b/y.zip"\n'
    )
    result = CliRunner().invoke(cli, ["run", str(template), "--source", str(reference_dir / ZIP)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "exports" / "manifest.json").read_text())
    assert sorted(o["path"] for o in manifest["outputs"]) == ["a/x.zip", "b/y.zip"]


def test_manifest_gives_each_columns_origin(reference_dir: Path, tmp_path: Path) -> None:
    result, out = run(
        tmp_path,
        reference_dir,
        '[[sinks]]\ntype = "csv-long"\npath = "t.csv"\nsession_json = "columns"\n',
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    columns = {c["name"]: c for c in manifest["outputs"][0]["columns"]}
    header = (out / "t.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert list(columns) == header
    assert columns["result_given_response"] == {
        "name": "result_given_response",
        "origin": "result.given_response",
        "rule": "field",
        "type": "string",
    }
    assert columns["result_json.decision_time"] == {
        "name": "result_json.decision_time",
        "origin": "result.json_data",
        "path": "decision_time",
        "rule": "flatten",
        "type": "number",
        "json_types": ["absent", "number"],
        "json_path": ["decision_time"],
    }
    # a JSON null in some results, the key absent from others: JSON text cells
    assert columns["result_json.minValues"]["json_cells"] is True
    assert columns["result_json.minValues"]["json_types"] == ["absent", "null"]
    assert columns["session_started_at"]["origin"] == "session.started_at"


def test_manifest_credits_renamed_and_keyed_columns(reference_dir: Path, tmp_path: Path) -> None:
    result, out = run(
        tmp_path,
        reference_dir,
        '[[sinks]]\ntype = "csv-long"\npath = "long.csv"\n'
        '[sinks.flatten]\nrename = { "result_json.decision_time" = "rt_s" }\n'
        '[[sinks]]\ntype = "csv-wide"\npath = "wide.csv"\n'
        '[sinks.wide]\nkey_by = "question_key"\n',
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    long, wide = ({c["name"]: c for c in o["columns"]} for o in manifest["outputs"][:2])
    assert long["rt_s"]["origin"] == "result.json_data"
    assert long["rt_s"]["path"] == "decision_time"
    keyed = [c for c in wide.values() if "key" in c]
    assert keyed
    for column in keyed:
        assert column["key_by"] == "question_key"
        assert "MUSCLE" not in column["origin"], column
        assert column["origin"].startswith(("result.", "section.", "song.")), column
    assert not [c for c in wide.values() if "MUSCLE" in c["origin"]]


@pytest.mark.pg
def test_manifest_of_a_database_export(muscle_head_db: str, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text('[[sinks]]\ntype = "fixture-json"\npath = "a.zip"\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(template),
            "--source",
            muscle_head_db,
            "--block",
            "tafc-dvorak",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    source = json.loads((out / "manifest.json").read_text())["source"]
    assert source["database"] == muscle_head_db.rsplit("/", 1)[1]
    assert source["server_version"].startswith("15")
    assert source["migrations"]["experiment"]["applied"] > 50
    assert source["snapshot_time"].endswith("+00:00")
    assert source["parts"][0]["kind"] == "postgresql"

"""The codebook: a Frictionless Data Package that validates, and a codebook for people."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import frictionless
from click.testing import CliRunner

from aml_exportkit.cli import cli

ZIP = "head/block_hooked-eurovision.zip"
TEMPLATE = (
    'codebook = true\nname = "hooked demo"\n'
    '[[sinks]]\ntype = "csv-long"\npath = "long.csv"\nprofile = "columns"\n'
    '[[sinks]]\ntype = "csv-wide"\npath = "wide.csv"\n'
    '[[sinks]]\ntype = "parquet"\npath = "long.parquet"\n'
)


def export(tmp_path: Path, reference_dir: Path) -> Path:
    template = tmp_path / "t.toml"
    template.write_text(TEMPLATE, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["run", str(template), "--source", str(reference_dir / ZIP), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def test_datapackage_validates_with_frictionless(reference_dir: Path, tmp_path: Path) -> None:
    out = export(tmp_path, reference_dir)
    report = frictionless.validate(str(out / "datapackage.json"))
    assert report.valid, report.flatten(["rowNumber", "fieldName", "message"])[:5]
    package = json.loads((out / "datapackage.json").read_text())
    resources = {r["name"]: r for r in package["resources"]}
    assert set(resources) == {"long.csv", "wide.csv"}
    long_schema = resources["long.csv"]["schema"]
    assert long_schema["primaryKey"] == ["result_id"]
    assert long_schema["foreignKeys"] == [
        {"fields": ["session_id"], "reference": {"resource": "wide.csv", "fields": ["session_id"]}}
    ]
    assert resources["wide.csv"]["schema"]["primaryKey"] == ["session_id"]
    types = {f["name"]: f["type"] for f in long_schema["fields"]}
    assert types["session_started_at"] == "datetime"
    assert types["result_score"] == "number"
    assert types["result_id"] == "integer"
    assert types["result_given_response"] == "string"
    origins = {f["name"]: f["description"] for f in long_schema["fields"]}
    assert origins["result_json.decision_time"] == "result.json_data: decision_time"
    assert origins["session_final_score"] == "session.final_score"


def test_a_broken_table_fails_validation(reference_dir: Path, tmp_path: Path) -> None:
    out = export(tmp_path, reference_dir)
    rows = list(csv.reader((out / "long.csv").open(encoding="utf-8")))
    index = rows[0].index("result_score")
    rows[1][index] = "not a number"
    with (out / "long.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    assert not frictionless.validate(str(out / "datapackage.json")).valid


def test_codebook_lists_every_column_with_counts_and_labels(
    reference_dir: Path, tmp_path: Path
) -> None:
    out = export(tmp_path, reference_dir)
    text = (out / "codebook.md").read_text(encoding="utf-8")
    with (out / "long.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    for name in header:
        assert f"| `{name}` |" in text
    index = header.index("result_json.audio_latency_ms")
    missing = sum(1 for row in body if row[index] == "")
    assert missing > 0
    assert (
        f"| `result_json.audio_latency_ms` | result.json_data: audio_latency_ms | number |"
        f" {missing} | range" in text
    )
    assert "### `dgf_generation`: When were you born?" in text
    assert "- `gen_x`: 1965-1980" in text
    assert "## long.parquet" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"datapackage.json", "codebook.md"} <= {o["path"] for o in manifest["outputs"]}


def test_the_run_says_how_many_tables_the_codebook_describes(
    reference_dir: Path, tmp_path: Path
) -> None:
    # a codebook has no rows: the run names what it describes
    template = tmp_path / "t.toml"
    template.write_text(TEMPLATE, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["run", str(template), "--source", str(reference_dir / ZIP), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'datapackage.json'} (describes 3 tables)\n" in result.stdout
    assert f"wrote {out / 'codebook.md'} (describes 3 tables)\n" in result.stdout
    assert "wrote " + str(out / "long.csv") + " (" in result.stdout

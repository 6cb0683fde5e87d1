"""The manifest and the codebook credit every column to what it holds: renamed, prefixed
and keyed (wide, by question_key or by section) columns too; a column of text and numbers
is summarised as text."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest

from aml_exportkit.codebook import ColumnStats, _summary
from aml_exportkit.pipeline import load_template, run_export

ZIP = "head/block_hooked-eurovision.zip"
ZIP_2024 = "v2024/block_tafc-dvorak.zip"
TEMPLATE = """
codebook = true
[[sinks]]
type = "csv-long"
path = "long.csv"
rows = "both"
[sinks.prefix]
result = "rj"
[sinks.flatten]
rename = {{ "rj.decision_time" = "rt_s", "result_given_response" = "answer" }}

[[sinks]]
type = "csv-wide"
path = "wide.csv"
[sinks.wide]
key_by = "{key_by}"
"""


@pytest.mark.parametrize("key_by", ["question_key", "section", "number"])
def test_every_column_has_its_true_origin(key_by: str, reference_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(TEMPLATE.format(key_by=key_by), encoding="utf-8")
    out = tmp_path / "out"
    run_export(load_template(str(template)), source=str(reference_dir / ZIP), out_dir=out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    by_path = {o["path"]: {c["name"]: c for c in o.get("columns", [])} for o in manifest["outputs"]}
    long, wide = by_path["long.csv"], by_path["wide.csv"]
    assert long["rt_s"]["origin"] == "result.json_data"
    assert long["rt_s"]["json_path"] == ["decision_time"]
    assert long["answer"]["origin"] == "result.given_response"
    assert long["rj.choices"]["path"] == "choices"
    keyed = [c for c in wide.values() if c.get("key")]
    assert len(keyed) > 20
    for column in wide.values():
        assert "MUSCLE" not in column["origin"], column
    for column in keyed:
        assert column["key_by"] == key_by
        assert column["name"].startswith(column["key"] + ".")
    decision = [c for c in keyed if c.get("json_path") == ["decision_time"]]
    assert decision
    assert all(c["origin"] == "result.json_data" for c in decision)

    codebook = (out / "codebook.md").read_text(encoding="utf-8")
    assert "MUSCLE classic" not in codebook
    assert "| `rt_s` | result.json_data: decision_time |" in codebook
    package = json.loads((out / "datapackage.json").read_text(encoding="utf-8"))
    fields = {f["name"]: f for r in package["resources"] for f in r["schema"]["fields"]}
    assert fields["answer"]["description"] == "result.given_response"


def test_text_and_numbers_are_summarised_as_text() -> None:
    column = ColumnStats("result_given_response")
    for value in [str(n) for n in range(1, 8)] + [f"answer {n}" for n in range(28)]:
        column.add(value)
    assert column.type == "string"
    assert "range" not in _summary(column)
    assert "text and numbers" in _summary(column)
    numbers = ColumnStats("n")
    for n in range(40):
        numbers.add(str(n))
    assert _summary(numbers) == "range 0 to 39"


@pytest.mark.parametrize("zip_name", ["head/block_msi-questionnaire.zip", ZIP_2024])
@pytest.mark.parametrize("sink", ["csv-long", "csv-wide"])
def test_profile_columns_stay_plain_when_some_questions_went_unanswered(
    zip_name: str, sink: str, reference_dir: Path, tmp_path: Path
) -> None:
    # MUSCLE keeps a profile question shown but not answered as a null answer; another
    # participant was never asked it. Both are no answer (profile columns are not
    # json_data, and are not rebuilt): the cells stay the answers' text, not JSON text
    template = tmp_path / "t.toml"
    template.write_text(
        f'[[sinks]]\ntype = "{sink}"\npath = "t.csv"\nprofile = "columns"\nrows = "both"\n'
        if sink == "csv-long"
        else f'[[sinks]]\ntype = "{sink}"\npath = "t.csv"\nprofile = "columns"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    run_export(load_template(str(template)), source=str(reference_dir / zip_name), out_dir=out)
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    profile = [
        c for c in manifest["outputs"][0]["columns"] if c["origin"].startswith("profile answer")
    ]
    assert any({"null", "absent"} <= set(c["json_types"]) for c in profile)
    assert not [c["name"] for c in profile if c.get("json_cells")]
    with (out / "t.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with zipfile.ZipFile(reference_dir / zip_name) as archive:
        answers = json.loads(archive.read("profiles.json"))
    given: dict[str, set[str]] = {}
    for answer in answers:
        fields = answer["fields"]
        if fields["given_response"] is not None:
            given.setdefault(fields["question_key"], set()).add(fields["given_response"])
    for column in profile:
        if column["origin"] != "profile answer's given_response":
            continue
        cells = {row[column["name"]] for row in rows} - {""}
        assert cells <= given[column["path"]], column["name"]

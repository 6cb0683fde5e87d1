"""The spss and stata sinks, end to end: files written by a run, read back with pyreadstat."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import exportkit_readstat
import pyreadstat
import pytest
from click.testing import CliRunner

from aml_exportkit import (
    TemplateError,
    get_plugin_manager,
    load_registry,
    load_template,
    run_export,
    to_dataframe,
)
from aml_exportkit.cli import cli
from aml_exportkit.plugins import PluginManager

WIDE = """
name = "likert demo"
[source]
uri = "{zip}"

[[sinks]]
type = "{type}"
path = "out/demo{ext}"
profile = "columns"
{extra}
[sinks.wide]
key_by = "question_key"
"""


@pytest.fixture
def manager() -> PluginManager:
    """The builtins and this plugin, registered without its entry point."""
    return get_plugin_manager(load_entrypoints=False, plugins=[exportkit_readstat])


def run(tmp_path: Path, manager: PluginManager, text: str) -> Path:
    path = tmp_path / "template.toml"
    path.write_text(text, encoding="utf-8")
    template = load_template(str(path), registry=load_registry(manager))
    run_export(template, plugin_manager=manager)
    return path


def wide(zip_path: Path, kind: str, extra: str = "") -> str:
    ext = ".sav" if kind == "spss" else ".dta"
    return (
        WIDE.replace("{zip}", str(zip_path))
        .replace("{type}", kind)
        .replace("{ext}", ext)
        .replace("{extra}", extra)
    )


def test_spss_wide_has_labels_from_the_questions(
    tmp_path: Path, muscle_zip: Path, manager: PluginManager
) -> None:
    run(tmp_path, manager, wide(muscle_zip, "spss"))
    frame, meta = pyreadstat.read_sav(tmp_path / "out" / "demo.sav")
    assert len(frame) == 3  # one row per session
    labels = meta.column_names_to_labels
    values = meta.variable_value_labels
    # a Likert answer: numeric, labelled by the choices
    assert labels["profile_likert_01"] == "profile.likert_01: I like this music."
    assert values["profile_likert_01"] == {1.0: "Disagree", 2.0: "Neutral", 3.0: "Agree"}
    assert frame["profile_likert_01"].tolist()[:2] == [3.0, 1.0]
    assert math.isnan(frame["profile_likert_01"].tolist()[2])
    # named choices ({value: label}) stay text, labelled by text
    assert values["profile_generation"]["gen_x"] == "1965–1980"
    assert frame["profile_generation"].tolist() == ["gen_x", "boomer", "gen_z"]
    # an open question: the old "question" key gives its text, no value labels
    assert labels["profile_instrument"] == (
        "profile.instrument: Which instrument do you play best?"
    )
    assert "profile_instrument" not in values
    assert frame["profile_instrument"].tolist()[1] == "Erhu 二胡"
    # trial answers under their question key; a repeated key is choice~2
    assert labels["choice_result_given_response"] == "choice.result_given_response: A or B?"
    assert values["choice_result_given_response"] == {"A": "Answer A", "B": "Answer B"}
    assert values["choice_2_result_given_response"] == {"A": "Answer A", "B": "Answer B"}
    assert labels["choice_2_result_json_decision_time"].startswith(
        "choice~2.result_json.decision_time"
    )
    # the scores of profile answers: numbers, the question's text, no value labels
    assert labels["profile_score_likert_01"] == "profile_score.likert_01: score: I like this music."
    assert "profile_score_likert_01" not in values
    # unchanged names keep their name as the label
    assert labels["session_id"] == "session_id"
    assert meta.file_label == "likert demo"


def test_values_equal_the_table_of_the_same_template(
    tmp_path: Path, muscle_zip: Path, manager: PluginManager
) -> None:
    template = run(tmp_path, manager, wide(muscle_zip, "spss"))
    frame, meta = pyreadstat.read_sav(tmp_path / "out" / "demo.sav")
    table = to_dataframe(str(template), plugin_manager=manager)
    originals = [label.split(": ")[0] for label in meta.column_labels]
    assert originals == list(table.columns)
    assert frame["session_id"].tolist() == [float(v) for v in table["session_id"]]
    times = table["choice.result_json.decision_time"].tolist()
    assert frame["choice_result_json_decision_time"].tolist() == pytest.approx(times)
    started = [t.tz_convert(None) for t in table["session_started_at"]]
    for got, want in zip(frame["session_started_at"], started, strict=True):
        # SPSS keeps seconds as a double: microseconds may be off by one
        assert abs((got - want).total_seconds()) < 1e-5
    assert frame["participant_id_url"].tolist() == ["", "", ""]  # null text: empty string


def test_stata_labels_integers_only_and_keeps_names_short(
    tmp_path: Path, muscle_zip: Path, manager: PluginManager
) -> None:
    run(tmp_path, manager, wide(muscle_zip, "stata"))
    frame, meta = pyreadstat.read_dta(tmp_path / "out" / "demo.dta")
    assert len(frame) == 3
    assert all(len(name) <= 28 for name in frame.columns)
    values = meta.variable_value_labels
    assert values["profile_likert_01"] == {1: "Disagree", 2: "Neutral", 3: "Agree"}
    assert "profile_generation" not in values  # Stata cannot label text
    assert frame["profile_likert_01"].tolist()[:2] == [3.0, 1.0]
    labels = meta.column_names_to_labels
    assert all(len(label) <= 80 for label in labels.values())
    assert labels["choice_2_result_given_respon"] == "choice~2.result_given_response: A or B?"
    assert frame["session_final_score"].tolist() == [1.0, 2.0, 3.0]


def test_long_layout_has_a_row_per_result(
    tmp_path: Path, muscle_zip: Path, manager: PluginManager
) -> None:
    text = (
        f'[source]\nuri = "{muscle_zip}"\n'
        '[[sinks]]\ntype = "spss"\npath = "long.sav"\nlayout = "long"\n'
        'variable_labels = "question"\n'
    )
    run(tmp_path, manager, text)
    frame, meta = pyreadstat.read_sav(tmp_path / "long.sav")
    assert len(frame) == 5
    assert frame["result_given_response"].tolist() == ["A", "B", "A", "B", "B"]
    labels = meta.variable_value_labels
    assert labels["result_given_response"] == {"A": "Answer A", "B": "Answer B"}
    assert labels["result_json_value"] == {"A": "Answer A", "B": "Answer B"}
    # one question behind the column: its text; "question" mode drops the original name
    assert meta.column_names_to_labels["result_given_response"] == "A or B?"
    assert meta.column_names_to_labels["result_json_decision_time"] == ("result_json.decision_time")


def test_profile_rows_hold_several_questions(
    tmp_path: Path, muscle_zip: Path, manager: PluginManager
) -> None:
    text = (
        f'[source]\nuri = "{muscle_zip}"\n'
        '[[sinks]]\ntype = "stata"\npath = "profile.dta"\nlayout = "long"\nrows = "profile"\n'
    )
    run(tmp_path, manager, text)
    frame, meta = pyreadstat.read_dta(tmp_path / "profile.dta")
    assert len(frame) == 9
    # answers of three questions share the column: no single text, no common labels
    assert meta.column_names_to_labels["result_given_response"] == "result_given_response"
    assert "result_given_response" not in meta.variable_value_labels


def test_labels_can_be_turned_off(tmp_path: Path, muscle_zip: Path, manager: PluginManager) -> None:
    extra = 'variable_labels = "name"\nvalue_labels = false\nfile_label = "mine"'
    run(tmp_path, manager, wide(muscle_zip, "spss", extra))
    frame, meta = pyreadstat.read_sav(tmp_path / "out" / "demo.sav")
    assert meta.variable_value_labels == {}
    assert meta.column_names_to_labels["profile_likert_01"] == "profile.likert_01"
    assert frame["profile_likert_01"].tolist()[0] == "3"  # not labelled: stays text
    assert meta.file_label == "mine"


def test_the_msi_questionnaire_in_spss(
    tmp_path: Path, reference_msi_zip: Path, manager: PluginManager
) -> None:
    run(tmp_path, manager, wide(reference_msi_zip, "spss"))
    frame, meta = pyreadstat.read_sav(tmp_path / "out" / "demo.sav")
    assert len(frame) == 6
    scale = meta.variable_value_labels["profile_msi_01_music_activities"]
    assert scale[1.0] == "Completely Disagree"
    assert scale[7.0] == "Completely Agree"
    assert meta.column_names_to_labels["profile_msi_07_from_memory"] == (
        "profile.msi_07_from_memory: I can sing or play music from memory."
    )


def test_bad_options_name_their_key(
    tmp_path: Path, muscle_zip: Path, manager: PluginManager
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        f'[source]\nuri = "{muscle_zip}"\n'
        '[[sinks]]\ntype = "spss"\npath = "x.sav"\nvariable_labels = "all"\n',
        encoding="utf-8",
    )
    with pytest.raises(TemplateError, match=r"sinks\[0\]\.variable_labels"):
        load_template(str(path), registry=load_registry(manager))


def test_nothing_is_left_when_another_sink_fails(
    tmp_path: Path, muscle_zip: Path, manager: PluginManager
) -> None:
    (tmp_path / "blocked").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    text = (
        f'[source]\nuri = "{muscle_zip}"\n'
        '[[sinks]]\ntype = "spss"\npath = "ok.sav"\n'
        '[[sinks]]\ntype = "csv-long"\npath = "blocked"\n'
    )
    with pytest.raises(Exception, match="blocked"):
        run(tmp_path, manager, text)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "template.toml"])


def test_installed_plugin_is_listed_with_its_distribution(monkeypatch: Any) -> None:
    monkeypatch.delenv("EXPORTKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("EXPORTKIT_BLOCK_PLUGINS", raising=False)
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines() if line.startswith("  ")]
    lines = {row[0]: row for row in rows}
    assert lines["spss"][1] == "exportkit-readstat"
    assert lines["stata"][1] == "exportkit-readstat"


@pytest.mark.parametrize("module", ["pyreadstat", "pandas"])
def test_validate_names_the_missing_module(
    module: str, muscle_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pyreadstat (or pandas), the template fails validation, naming the install
    command, before any run reads the data (the plugin is installed: its entry point)."""
    path = tmp_path / "template.toml"
    path.write_text(wide(muscle_zip, "spss"), encoding="utf-8")
    monkeypatch.setitem(sys.modules, module, None)
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 6, result.output
    assert result.stderr.strip() == (
        f"exportkit: error: spss: needs {module}, which is not installed: pip install {module}"
    )


def test_an_unanswered_likert_question_stays_numeric(
    tmp_path: Path, reference_msi_zip: Path, manager: PluginManager
) -> None:
    # MUSCLE keeps a question shown but not answered as a null answer; with another
    # participant never asked it, the column holds nulls and missing answers: still the
    # numbers 1-7 with their labels, not JSON text
    import json
    import zipfile

    mutated = tmp_path / "block_msi-questionnaire.zip"
    with zipfile.ZipFile(reference_msi_zip) as source, zipfile.ZipFile(mutated, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "profiles.json":
                answers = json.loads(data)
                first = next(
                    a for a in answers if a["fields"]["question_key"] == "msi_01_music_activities"
                )
                first["fields"]["given_response"] = None
                first["fields"]["score"] = None
                answers.remove(
                    next(
                        a
                        for a in reversed(answers)
                        if a["fields"]["question_key"] == "msi_01_music_activities"
                    )
                )
                data = json.dumps(answers).encode()
            target.writestr(info, data)
    run(tmp_path, manager, wide(mutated, "spss"))
    frame, meta = pyreadstat.read_sav(tmp_path / "out" / "demo.sav")
    assert meta.readstat_variable_types["profile_msi_01_music_activities"] == "double"
    assert meta.readstat_variable_types["profile_score_msi_01_music_activities"] == "double"
    assert meta.variable_value_labels["profile_msi_01_music_activities"][7.0] == "Completely Agree"
    assert frame["profile_msi_01_music_activities"].isna().sum() == 2


@pytest.mark.parametrize("kind", ["spss", "stata"])
def test_whole_and_fractional_numbers_stay_one_numeric_variable(
    kind: str, tmp_path: Path, muscle_zip: Path, manager: PluginManager
) -> None:
    # a decision time of exactly 2 s beside 2.5 s makes the table's column JSON text (so
    # that 2 and 2.0 stay apart there); in SPSS and Stata, which hold numbers as doubles,
    # it is still the numeric variable, with null and a missing key both missing. Text
    # among the numbers keeps the variable text; text with nulls is the text.
    import json
    import zipfile

    mutated = tmp_path / "block_tafc-dvorak.zip"
    with zipfile.ZipFile(muscle_zip) as source, zipfile.ZipFile(mutated, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "results.json":
                results = json.loads(data)
                for i, result in enumerate(results):
                    extra = {"rt": 2 if i % 3 == 0 else 2.5, "text_too": "7" if i == 0 else 7}
                    if i % 4 == 1:
                        extra["maybe"] = None
                    elif i % 4 == 2:
                        extra["maybe"] = -0.5
                        extra["note"] = 'said "hi"'
                    elif i % 4 == 3:
                        extra["note"] = None
                    result["fields"]["json_data"] = {
                        **(result["fields"]["json_data"] or {}),
                        **extra,
                    }
                data = json.dumps(results).encode()
            target.writestr(info, data)
    ext = ".sav" if kind == "spss" else ".dta"
    run(
        tmp_path,
        manager,
        f'[source]\nuri = "{mutated}"\n[[sinks]]\ntype = "{kind}"\npath = "out/t{ext}"\n'
        'layout = "long"\nresult_json = "columns"\n',
    )
    read = pyreadstat.read_sav if kind == "spss" else pyreadstat.read_dta
    frame, meta = read(tmp_path / "out" / f"t{ext}")
    rt, maybe, text_too, note = (
        [c for c in frame.columns if c.endswith(suffix)]
        for suffix in ("_rt", "_maybe", "_text_too", "_note")
    )
    assert meta.readstat_variable_types[rt[0]] == "double"
    assert sorted(set(frame[rt[0]])) == [2.0, 2.5]
    assert meta.readstat_variable_types[maybe[0]] == "double"
    assert {v for v in frame[maybe[0]] if not math.isnan(v)} == {-0.5}
    assert meta.readstat_variable_types[text_too[0]] == "string"
    # text with nulls other rows lack: the text itself, not its JSON spelling
    assert meta.readstat_variable_types[note[0]] == "string"
    assert set(frame[note[0]]) == {'said "hi"', ""}

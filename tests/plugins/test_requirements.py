"""A sink's missing optional module stops ``validate`` and ``run`` before anything is read,
naming the command that installs it (``SinkSpec.requires``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aml_exportkit import Requirement, SinkSpec
from aml_exportkit.cli import cli
from aml_exportkit.contracts import BaseSink, unmet_requirements
from aml_exportkit.errors import EXIT_SINK

PARQUET = (
    '[[sinks]]\ntype = "csv-long"\npath = "a.csv"\n'
    '[[sinks]]\ntype = "parquet"\npath = "a.parquet"\n'
)
MESSAGE = "exportkit: error: parquet: needs pyarrow, which is not installed: pip install pyarrow"


def test_a_requirement_is_met_when_its_module_can_be_imported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Requirement(module="json", install="-").met()
    assert Requirement(module="xml.dom", install="-").met()
    assert not Requirement(module="no_such_module_for_exportkit", install="-").met()
    monkeypatch.setitem(sys.modules, "json", None)  # as if uninstalled
    assert not Requirement(module="json", install="-").met()


def test_unmet_requirements_name_each_sink_once() -> None:
    missing = Requirement(module="no_such_module_a", install="pip install a")
    also = Requirement(module="no_such_module_b", install="pip install b")
    present = Requirement(module="json", install="-")
    one = SinkSpec(name="one", description="", options=object, factory=BaseSink,
                   requires=(present, missing, also))  # fmt: skip
    two = SinkSpec(name="two", description="", options=object, factory=BaseSink)
    assert unmet_requirements([two, one, one]) == [(one, missing)]


def test_validate_names_the_install_command(
    tmp_path: Path, cli_runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "t.toml"
    template.write_text(PARQUET, encoding="utf-8")
    assert cli_runner.invoke(cli, ["validate", str(template)]).exit_code == 0
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    result = cli_runner.invoke(cli, ["validate", str(template)])
    assert result.exit_code == EXIT_SINK
    assert result.stderr.strip() == MESSAGE
    assert result.stdout == ""


def test_run_stops_before_reading_the_source(
    tmp_path: Path, cli_runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "t.toml"
    template.write_text(PARQUET, encoding="utf-8")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    # the source does not exist: the requirement is reported first, so nothing was read
    result = cli_runner.invoke(
        cli,
        [
            "run",
            str(template),
            "--source",
            str(tmp_path / "missing.zip"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == EXIT_SINK
    assert result.stderr.strip() == MESSAGE
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["spss", "stata"])
def test_validate_names_the_plugin_a_known_sink_comes_from(
    kind: str, tmp_path: Path, cli_runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the readstat plugin is an optional part of the install: without it, spss and stata
    # are unknown sinks, and the message says how to install them
    template = tmp_path / "t.toml"
    template.write_text(f'[[sinks]]\ntype = "{kind}"\npath = "a"\n', encoding="utf-8")
    assert cli_runner.invoke(cli, ["validate", str(template)]).exit_code == 0
    monkeypatch.setenv("EXPORTKIT_BLOCK_PLUGINS", "readstat")
    result = cli_runner.invoke(cli, ["validate", str(template)])
    assert result.exit_code != 0
    assert f"unknown sink '{kind}'" in result.stderr
    assert "exportkit-readstat" in result.stderr
    assert "pip install ./plugins/exportkit-readstat" in result.stderr
    assert "\n" not in result.stderr.strip()

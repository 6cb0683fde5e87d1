"""The CLI with click's runner: commands, overrides, exit codes, untouched output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.errors import EXIT_SOURCE, EXIT_TEMPLATE, EXIT_USAGE

ZIP = "head/block_hooked-eurovision.zip"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_run_with_template_source_and_block_placeholder(
    reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    (tmp_path / "in").mkdir()
    zip_path = tmp_path / "in" / "data.zip"
    zip_path.write_bytes((reference_dir / ZIP).read_bytes())
    template = write(
        tmp_path / "t.toml",
        '[source]\nuri = "in/data.zip"\n'
        'blocks = ["hooked-eurovision"]\n'
        '[[sinks]]\ntype = "fixture-json"\npath = "out/{block}.zip"\n',
    )
    result = cli_runner.invoke(cli, ["run", str(template)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "hooked-eurovision.zip").is_file()
    # sessions 10 + participants 9 (distinct) + 56 + 95 + 8 + 8 + 2
    assert "(188 rows)" in result.stdout


def test_command_line_overrides_the_template(
    reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    template = write(
        tmp_path / "t.toml",
        '[source]\nuri = "missing.zip"\n'
        'blocks = ["wrong"]\n'
        '[[sinks]]\ntype = "fixture-json"\npath = "{block}.zip"\n',
    )
    out = tmp_path / "elsewhere"
    result = cli_runner.invoke(
        cli,
        [
            "run",
            str(template),
            "--source",
            str(reference_dir / ZIP),
            "--block",
            "my-slug",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "my-slug.zip"]


def test_block_slug_is_guessed_from_the_file_name(
    reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    template = write(
        tmp_path / "t.toml", '[[sinks]]\ntype = "fixture-json"\npath = "{block}.zip"\n'
    )
    result = cli_runner.invoke(cli, ["run", str(template), "--source", str(reference_dir / ZIP)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "hooked-eurovision.zip").is_file()


def test_validate(tmp_path: Path, cli_runner: CliRunner) -> None:
    good = write(tmp_path / "good.toml", '[[sinks]]\ntype = "fixture-json"\npath = "a.zip"\n')
    result = cli_runner.invoke(cli, ["validate", str(good)])
    assert result.exit_code == 0
    assert "ok" in result.stdout


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("this is = = not toml", ["not valid TOML"]),
        (
            '[[sinks]]\ntype = "parqet"\npath = "a"\n',
            ["sinks[0].type", 'unknown sink "parqet"'.replace('"', "'"), "fixture-json"],
        ),
        ('colour = 1\n[[sinks]]\ntype = "fixture-json"\npath = "a"\n', ["colour", "unknown key"]),
        (
            '[[sinks]]\ntype = "fixture-json"\npath = "a"\ncompresion = "deflate"\n',
            ["sinks[0].compresion", "unknown key", "compression"],
        ),
        (
            '[[sinks]]\ntype = "fixture-json"\npath = "a"\ncompression = "zstd"\n',
            ["sinks[0].compression", "'stored', 'deflate'"],
        ),
        ('[[sinks]]\ntype = "fixture-json"\npath = 5\n', ["sinks[0].path", "string"]),
        (
            '[source]\nblocks = "one"\n[[sinks]]\ntype = "fixture-json"\npath = "a"\n',
            ["source.blocks"],
        ),
        (
            '[filter]\nfinished_only = "yes"\n[[sinks]]\ntype = "fixture-json"\npath = "a"\n',
            ["filter.finished_only", "boolean"],
        ),
        (
            '[filter]\nstarted_after = 2024-01-01T00:00:00\n[[sinks]]\ntype = "fixture-json"\n'
            'path = "a"\n',
            ["filter.started_after", "offset"],
        ),
        ('name = "x"\n', ["sinks", "exports nothing"]),
        (
            '[[sinks]]\ntype = "fixture-json"\npath = "{block}/a.zip"\n[[sinks]]\n'
            'type = "fixture-json"\npath = "b.zip"\n',
            ["sinks[1].path", "{block}"],
        ),
    ],
)
def test_invalid_templates_name_the_file_and_key(
    text: str, words: list[str], tmp_path: Path, cli_runner: CliRunner
) -> None:
    template = write(tmp_path / "bad.toml", text)
    result = cli_runner.invoke(cli, ["validate", str(template)])
    assert result.exit_code == EXIT_TEMPLATE, result.output
    line = result.stderr.strip()
    assert "\n" not in line
    assert str(template) in line
    for word in words:
        assert word in line, line


def test_missing_template_file(tmp_path: Path, cli_runner: CliRunner) -> None:
    result = cli_runner.invoke(cli, ["run", str(tmp_path / "nope.toml")])
    assert result.exit_code == EXIT_TEMPLATE
    assert "nope.toml" in result.stderr


def test_usage_error_exit_code(cli_runner: CliRunner) -> None:
    assert cli_runner.invoke(cli, ["run"]).exit_code == EXIT_USAGE


def test_inspect_text_and_json(reference_dir: Path, cli_runner: CliRunner) -> None:
    result = cli_runner.invoke(cli, ["inspect", str(reference_dir / ZIP)])
    assert result.exit_code == 0, result.output
    assert "hooked-eurovision (pk 3): 10 sessions" in result.stdout
    assert "results.json" in result.stdout
    as_json = cli_runner.invoke(cli, ["inspect", "--json", str(reference_dir / ZIP)])
    data = json.loads(as_json.stdout)
    assert data["counts"] == {
        "sessions.json": 10,
        "participants.json": 10,
        "profiles.json": 56,
        "results.json": 95,
        "sections.json": 8,
        "songs.json": 8,
        "feedback.json": 2,
    }
    assert data["schema_version"].startswith("MUSCLE v3.1.0")


def test_inspect_a_broken_source(tmp_path: Path, cli_runner: CliRunner) -> None:
    bad = write(tmp_path / "x.zip", "nope")
    result = cli_runner.invoke(cli, ["inspect", str(bad)])
    assert result.exit_code == EXIT_SOURCE
    assert "not a zip file" in result.stderr


def test_plugins_lists_sources_sinks_and_templates(cli_runner: CliRunner) -> None:
    result = cli_runner.invoke(cli, ["plugins"])
    assert result.exit_code == 0
    for word in ("sources:", "fixture-zip", "sinks:", "fixture-json", "templates:", "builtin"):
        assert word in result.stdout


def test_templates_command(cli_runner: CliRunner) -> None:
    assert cli_runner.invoke(cli, ["templates"]).exit_code == 0


def test_python_dash_m_runs_the_cli(reference_dir: Path, tmp_path: Path) -> None:
    template = write(tmp_path / "t.toml", '[[sinks]]\ntype = "fixture-json"\npath = "o.zip"\n')
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aml_exportkit",
            "run",
            str(template),
            "--source",
            str(reference_dir / ZIP),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o.zip").is_file()
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "aml_exportkit",
            "run",
            str(template),
            "--source",
            str(tmp_path / "missing.zip"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == EXIT_SOURCE
    assert "Traceback" not in failed.stderr


def test_failed_run_leaves_existing_output_untouched(
    reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    target = tmp_path / "o.zip"
    target.write_bytes(b"previous export")
    template = write(tmp_path / "t.toml", '[[sinks]]\ntype = "fixture-json"\npath = "o.zip"\n')
    bad = write(tmp_path / "bad.zip", "garbage")
    result = cli_runner.invoke(cli, ["run", str(template), "--source", str(bad)])
    assert result.exit_code == EXIT_SOURCE
    assert target.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip", "o.zip", "t.toml"]


def test_a_block_without_sessions_still_exports(tmp_path: Path, cli_runner: CliRunner) -> None:
    from zipcases import MEMBERS, write_zip

    empty = write_zip(tmp_path / "quiet-block.zip", {name: [] for name in MEMBERS})
    template = write(
        tmp_path / "t.toml",
        '[[sinks]]\ntype = "csv-long"\npath = "{block}.csv"\n'
        '[[sinks]]\ntype = "fixture-json"\npath = "{block}.zip"\n',
    )
    result = cli_runner.invoke(cli, ["run", str(template), "--source", str(empty)])
    assert result.exit_code == 0, result.output
    header = (tmp_path / "quiet-block.csv").read_text(encoding="utf-8").splitlines()
    assert len(header) == 1
    assert header[0].startswith("block_slug,session_id")
    assert (tmp_path / "quiet-block.zip").is_file()


def test_verify_takes_relative_paths(
    reference_dir: Path, cli_runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SOURCE and --against relative to the current folder, as every other command takes
    them (the export runs from a template in a temporary folder)."""
    monkeypatch.chdir(reference_dir)
    relative = "head/block_tafc-dvorak.zip"
    result = cli_runner.invoke(cli, ["verify", relative, "--against", relative])
    assert result.exit_code == 0, result.output
    assert "tafc-dvorak" in result.stdout


def test_inspect_names_an_exported_zips_block_by_its_slug(
    reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    """Our fixture zip names its block in the zip comment; the file name does not matter."""
    template = write(
        tmp_path / "t.toml", '[[sinks]]\ntype = "fixture-json"\npath = "{block}-fixtures.zip"\n'
    )
    source = str(reference_dir / "head" / "block_tafc-dvorak.zip")
    result = cli_runner.invoke(
        cli, ["run", str(template), "--source", source, "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    exported = tmp_path / "tafc-dvorak-fixtures.zip"
    inspected = cli_runner.invoke(cli, ["inspect", "--json", str(exported)])
    assert [b["slug"] for b in json.loads(inspected.stdout)["blocks"]] == ["tafc-dvorak"]
    renamed = exported.rename(tmp_path / "anything.zip")  # and a run reads it the same way
    again = write(tmp_path / "again.toml", '[[sinks]]\ntype = "csv-long"\npath = "{block}.csv"\n')
    result = cli_runner.invoke(
        cli, ["run", str(again), "--source", str(renamed), "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "tafc-dvorak.csv").exists()


def test_counts_of_one_are_singular(
    reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    """ "(1 row)", not "(1 rows)": one participant with one session gives one wide row."""
    from aml_exportkit.text import count

    assert [count(1, "row"), count(0, "row"), count(1234, "result")] == [
        "1 row",
        "0 rows",
        "1,234 results",
    ]
    template = write(
        tmp_path / "t.toml",
        "codebook = true\n[filter]\nparticipants = [1]\n"
        '[[sinks]]\ntype = "csv-wide"\npath = "w.csv"\n',
    )
    source = str(reference_dir / "head" / "block_tafc-dvorak.zip")
    result = cli_runner.invoke(
        cli, ["run", str(template), "--source", source, "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'w.csv'} (1 row)" in result.stdout
    assert "\n1 row, " in (tmp_path / "codebook.md").read_text(encoding="utf-8")

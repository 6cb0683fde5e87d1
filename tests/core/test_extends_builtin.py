"""A user's template can start from a builtin template and change it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from aml_exportkit.cli import cli

ZIP = "v2024/block_tafc-dvorak.zip"


def test_extending_a_classic_template(reference_dir: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text(
        'extends = "muscle-classic:long_json"\nname = "mine"\n'
        '[[sinks]]\npath = "{block}-mine.csv"\n',
        encoding="utf-8",
    )
    runner = CliRunner()
    ours = runner.invoke(
        cli,
        [
            "run",
            str(mine),
            "--source",
            str(reference_dir / ZIP),
            "--block",
            "tafc-dvorak",
            "--out",
            str(tmp_path / "a"),
        ],
    )
    builtin = runner.invoke(
        cli,
        [
            "run",
            "muscle-classic:long_json",
            "--source",
            str(reference_dir / ZIP),
            "--block",
            "tafc-dvorak",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert ours.exit_code == 0, ours.output
    assert builtin.exit_code == 0, builtin.output
    changed = (tmp_path / "a" / "tafc-dvorak-mine.csv").read_bytes()
    assert changed == (tmp_path / "b" / "tafc-dvorak-muscle-classic-long_json.csv").read_bytes()
    assert changed.count(b"\r\n") == 144  # header + 143 rows, CRLF as MUSCLE wrote

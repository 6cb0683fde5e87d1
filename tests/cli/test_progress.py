"""The progress display: rows, rate, ETA on stderr; off when stderr is not a terminal."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.progress import TerminalProgress, describe, format_duration

ZIP = "head/block_tafc-dvorak.zip"


def test_describe() -> None:
    assert format_duration(65) == "1:05"
    assert format_duration(3725) == "1:02:05"
    assert describe(500, 2000, 2.0) == "500 rows  250 rows/s  25%  ETA 0:06"
    assert describe(500, None, 2.0) == "500 rows  250 rows/s"


def test_terminal_progress_redraws_one_line_and_clears_it() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream, interval=0)
    progress.update(10, 100)
    progress.update(20, 100)
    progress.finish()
    text = stream.getvalue()
    assert text.count("\r") == 4  # two redraws, then blank and return
    assert "20 rows" in text
    assert "\n" not in text


def _template(tmp_path: Path) -> str:
    path = tmp_path / "t.toml"
    path.write_text('[[sinks]]\ntype = "fixture-json"\npath = "o.zip"\n', encoding="utf-8")
    return str(path)


def test_progress_is_off_when_stderr_is_not_a_terminal(
    reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    result = cli_runner.invoke(
        cli, ["run", _template(tmp_path), "--source", str(reference_dir / ZIP)]
    )
    assert result.exit_code == 0
    assert result.stderr == ""


def test_progress_can_be_forced_and_quiet_wins(
    reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    forced = cli_runner.invoke(
        cli, ["run", _template(tmp_path), "--source", str(reference_dir / ZIP), "--progress"]
    )
    assert forced.exit_code == 0
    assert "rows/s" in forced.stderr
    quiet = cli_runner.invoke(
        cli,
        ["run", _template(tmp_path), "--source", str(reference_dir / ZIP), "--progress", "--quiet"],
    )
    assert quiet.exit_code == 0
    assert quiet.stderr == ""
    assert quiet.stdout == ""


def test_progress_shows_on_a_real_terminal(reference_dir: Path, tmp_path: Path) -> None:
    # stderr is a pseudo-terminal here; stdout stays a pipe.
    leader, follower = pty.openpty()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import aml_exportkit.progress as p; p.TerminalProgress.__init__.__defaults__ = (0,);"
            "from aml_exportkit.cli import main; main()",
            "run",
            _template(tmp_path),
            "--source",
            str(reference_dir / ZIP),
        ],
        stderr=follower,
        stdout=subprocess.PIPE,
        check=False,
    )
    os.close(follower)
    shown = os.read(leader, 65536).decode()
    os.close(leader)
    assert done.returncode == 0
    assert "rows/s" in shown

"""Bad-input corpus, part 4: the command line itself.

A closed stdout ends quietly; arguments that are not UTF-8 and a repeated ``--source`` are
usage errors. Real processes where the exit code and the pipe matter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.errors import EXIT_BROKEN_PIPE, EXIT_SINK, EXIT_TEMPLATE, EXIT_USAGE

ZIP = "head/block_tafc-dvorak.zip"


def exportkit(
    *args: str | bytes, stdout: int | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "EXPORTKIT_DEBUG": ""}
    return subprocess.run(
        [sys.executable, "-m", "aml_exportkit", *args],
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        check=False,
    )


def with_closed_stdout(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run with a stdout whose reader is gone before the first byte is written (what
    ``| head -1`` becomes once head has its line), without any timing."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return exportkit(*args, stdout=write_end, cwd=cwd)
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [["plugins"], ["templates"], ["--help"], ["run", "--help"], ["--version"]],
    ids=lambda a: " ".join(a),
)
def test_a_closed_stdout_ends_quietly(args: list[str]) -> None:
    done = with_closed_stdout(*args)
    assert done.returncode in (0, EXIT_BROKEN_PIPE), done.stderr
    assert done.stderr == b""


def test_a_run_that_prints_to_a_closed_stdout(reference_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text('[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n', encoding="utf-8")
    done = with_closed_stdout(
        "run", str(template), "--source", str(reference_dir / ZIP), "--out", str(tmp_path / "out")
    )
    assert done.returncode == EXIT_BROKEN_PIPE, done.stderr
    assert done.stderr == b""
    # the outputs were committed before the line about them was printed
    assert (tmp_path / "out" / "r.csv").is_file()


def test_inspect_to_a_closed_stdout(reference_dir: Path) -> None:
    done = with_closed_stdout("inspect", str(reference_dir / ZIP))
    assert done.returncode == EXIT_BROKEN_PIPE, done.stderr
    assert done.stderr == b""


NOT_UTF8 = b"caf\xe9"


@pytest.mark.parametrize("where", ["template", "source", "out", "block"])
def test_an_argument_that_is_not_utf8(where: str, reference_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text('[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n', encoding="utf-8")
    args: dict[str, bytes] = {
        "template": bytes(template),
        "source": bytes(reference_dir / ZIP),
        "out": bytes(tmp_path / "out"),
        "block": b"tafc-dvorak",
    }
    if where in ("template", "source", "out"):
        args[where] = os.fsencode(tmp_path) + b"/" + NOT_UTF8
    else:
        args[where] = NOT_UTF8
    done = exportkit(
        "run",
        args["template"],
        "--source",
        args["source"],
        "--out",
        args["out"],
        "--block",
        args["block"],
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    lines = done.stderr.decode("utf-8").splitlines()
    assert len(lines) == 1, lines
    assert "not UTF-8" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.toml"]


def test_a_folder_that_is_not_utf8(reference_dir: Path, tmp_path: Path) -> None:
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/" + NOT_UTF8))
    folder.mkdir()
    shutil.copy(reference_dir / ZIP, folder / "block.zip")
    (folder / "t.toml").write_text(
        '[source]\nuri = "block.zip"\n[[sinks]]\ntype = "parquet"\npath = "r.parquet"\n',
        encoding="utf-8",
    )
    # outputs in it: no output (nor the manifest) could name them
    done = exportkit("run", "muscle-classic:long", "--source", str(reference_dir / ZIP), cwd=folder)
    assert done.returncode == EXIT_SINK, done.stderr
    assert "not UTF-8" in done.stderr.decode()
    # a source in it, named relative to the template
    done = exportkit("run", "t.toml", "--out", str(tmp_path / "out"), cwd=folder)
    assert done.returncode == EXIT_TEMPLATE, done.stderr
    assert "source.uri" in done.stderr.decode()
    assert len(done.stderr.decode().splitlines()) == 1
    assert sorted(p.name for p in folder.iterdir()) == ["block.zip", "t.toml"]
    assert not (tmp_path / "out").exists()
    # the same template with the source given as UTF-8 and outputs elsewhere works
    done = exportkit(
        "run",
        "t.toml",
        "--source",
        str(reference_dir / ZIP),
        "--out",
        str(tmp_path / "out"),
        cwd=folder,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "r.parquet").is_file()


def test_source_given_twice_is_an_error_for_check(reference_dir: Path, tmp_path: Path) -> None:
    """``check`` reads one source: a second --source is an error, never the last one."""
    template = tmp_path / "t.toml"
    template.write_text('[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n', encoding="utf-8")
    zip_path = str(reference_dir / ZIP)
    result = CliRunner().invoke(
        cli, ["check", str(template), "--source", zip_path, "--source", zip_path]
    )
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--source given 2 times" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.toml"]


def test_source_given_twice_is_merged_by_run(reference_dir: Path, tmp_path: Path) -> None:
    """``run`` merges every --source (the same object held twice is kept once): the same
    zip given twice exports what it exports once, never just the last source."""
    template = tmp_path / "t.toml"
    template.write_text('[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n', encoding="utf-8")
    zip_path = str(reference_dir / ZIP)
    tables = []
    for given in ([zip_path], [zip_path, zip_path]):
        out = tmp_path / f"out{len(given)}"
        args = ["run", str(template), "--out", str(out), "--quiet"]
        for uri in given:
            args += ["--source", uri]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        tables.append((out / "r.csv").read_bytes())
    assert tables[0] == tables[1]
    manifest = json.loads((tmp_path / "out2" / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["source"]["inputs"]) == 2

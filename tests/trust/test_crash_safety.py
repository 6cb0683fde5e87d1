"""Killing an export with csv-long, fixture-json and parquet sinks leaves nothing new.

The export runs in a real subprocess. A fourth sink (tests/slow_sink_module.py) waits, and
says so on stderr: at the first batch of trial results (the three others have written it),
or in its ``finish`` (the three others have finished their temporary files, and nothing is
in place yet). The test waits for that line, then sends SIGKILL or SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import slow_sink_module
from aml_exportkit.atomic import is_temporary_name
from aml_exportkit.errors import EXIT_INTERRUPTED
from conftest import ROOT

TEMPLATE = (
    '[[sinks]]\ntype = "csv-long"\npath = "trials.csv"\n'
    '[[sinks]]\ntype = "fixture-json"\npath = "fixtures.zip"\n'
    '[[sinks]]\ntype = "parquet"\npath = "trials.parquet"\n'
)
GATE = '[[sinks]]\ntype = "slow"\npath = "gate.txt"\nstage = "{stage}"\n'
STAGES = ("results", "finish")
TARGETS = ("trials.csv", "fixtures.zip", "trials.parquet", "manifest.json")


def start(
    zip_path: Path, tmp_path: Path, stage: str
) -> tuple[subprocess.Popen[str], Path, list[str]]:
    """Start the export, and return once its gate waits at ``stage``.

    :return: the process, the output folder, and the arguments of a run without the gate.
    """
    template = tmp_path / "t.toml"
    template.write_text(TEMPLATE, encoding="utf-8")
    gated = tmp_path / "gated.toml"
    gated.write_text(TEMPLATE + GATE.format(stage=stage), encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("a file of the researcher's that must survive")
    command = [sys.executable, "-m", "aml_exportkit", "run"]
    source = ["--source", str(zip_path), "--out", str(out)]
    env = {
        **os.environ,
        "EXPORTKIT_PLUGINS": "slow_sink_module",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [*command, str(gated), *source],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    slow_sink_module.wait_until_waiting(process)
    temps = sorted(p.name.split(".exportkit-")[0] for p in out.iterdir() if p.name.endswith(".tmp"))
    if stage == "finish":
        assert temps == [".fixtures.zip", ".gate.txt", ".trials.csv", ".trials.parquet"], temps
    else:
        assert ".fixtures.zip" in temps, temps
    return process, out, [*command, str(template), *source]


def assert_nothing_new(out: Path) -> None:
    assert not any((out / name).exists() for name in TARGETS)
    assert (out / "notes.txt").read_text() == "a file of the researcher's that must survive"


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_mid_export(stage: str, generated_zip: Path, tmp_path: Path) -> None:
    process, out, args = start(generated_zip, tmp_path, stage)
    process.kill()
    process.communicate()
    assert_nothing_new(out)
    leftovers = [p.name for p in out.iterdir() if p.name != "notes.txt"]
    assert leftovers
    # only the run's temporaries (a sink's files beside its temporary file included), which
    # the next run sweeps
    assert all(is_temporary_name(name) for name in leftovers), leftovers
    rerun = subprocess.run(args, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([*TARGETS, "notes.txt"])


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_sigint_mid_export(stage: str, generated_zip: Path, tmp_path: Path) -> None:
    process, out, args = start(generated_zip, tmp_path, stage)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate()
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert_nothing_new(out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # temporaries removed
    rerun = subprocess.run(args, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([*TARGETS, "notes.txt"])

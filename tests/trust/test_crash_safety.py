"""Killing a large export with csv-long, fixture-json and parquet sinks leaves nothing new.

The export runs in a real subprocess; the test waits until all three temporary files are
being written, then sends SIGKILL or SIGINT.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aml_exportkit.errors import EXIT_INTERRUPTED

TEMPLATE = (
    '[[sinks]]\ntype = "csv-long"\npath = "trials.csv"\n'
    '[[sinks]]\ntype = "fixture-json"\npath = "fixtures.zip"\n'
    '[[sinks]]\ntype = "parquet"\npath = "trials.parquet"\n'
)
TARGETS = ("trials.csv", "fixtures.zip", "trials.parquet", "manifest.json")


def start(zip_path: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], Path, list[str]]:
    template = tmp_path / "t.toml"
    template.write_text(TEMPLATE, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("a file of the researcher's that must survive")
    args = [
        sys.executable,
        "-m",
        "aml_exportkit",
        "run",
        str(template),
        "--source",
        str(zip_path),
        "--out",
        str(out),
    ]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        temps = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
        if len(temps) >= 3:
            break
        assert process.poll() is None, "the export ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return process, out, args


def assert_nothing_new(out: Path) -> None:
    assert not any((out / name).exists() for name in TARGETS)
    assert (out / "notes.txt").read_text() == "a file of the researcher's that must survive"


@pytest.mark.slow
def test_sigkill_mid_export(generated_zip: Path, tmp_path: Path) -> None:
    process, out, args = start(generated_zip, tmp_path)
    process.kill()
    process.communicate(timeout=30)
    assert_nothing_new(out)
    leftovers = [p.name for p in out.iterdir() if p.name != "notes.txt"]
    assert leftovers
    assert all(".exportkit-" in name and name.endswith(".tmp") for name in leftovers)
    rerun = subprocess.run(args, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([*TARGETS, "notes.txt"])


@pytest.mark.slow
def test_sigint_mid_export(generated_zip: Path, tmp_path: Path) -> None:
    process, out, args = start(generated_zip, tmp_path)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert_nothing_new(out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # temporaries removed
    rerun = subprocess.run(args, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([*TARGETS, "notes.txt"])

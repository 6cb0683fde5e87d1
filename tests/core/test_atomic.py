"""Atomic output: nothing appears unless every sink finished; signals clean up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import slow_sink_module
from aml_exportkit.atomic import OutputSet, remove_stale_temporaries
from aml_exportkit.errors import EXIT_INTERRUPTED, EXIT_SINK, EXIT_TERMINATED, SinkError
from aml_exportkit.pipeline import run_export
from aml_exportkit.plugins import get_plugin_manager, load_registry
from aml_exportkit.template.load import parse_template

ZIP = "head/block_tafc-dvorak.zip"
TESTS = Path(__file__).resolve().parents[1]


def test_a_failing_sink_leaves_no_output(reference_dir: Path, tmp_path: Path) -> None:
    manager = get_plugin_manager(load_entrypoints=False, plugins=[slow_sink_module])
    out = tmp_path / "new" / "folder"
    template = parse_template(
        '[[sinks]]\ntype = "fixture-json"\npath = "a.zip"\n'
        '[[sinks]]\ntype = "failing"\npath = "b.txt"\n',
        file="t.toml",
        folder=tmp_path,
        sinks=load_registry(manager).sink_specs,
    )
    with pytest.raises(SinkError, match="No space left"):
        run_export(template, source=str(reference_dir / ZIP), out_dir=out, plugin_manager=manager)
    assert list(tmp_path.iterdir()) == []  # not even the folders it made


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f".x.zip.exportkit-{dead.stdout.strip()}-abcd1234.tmp"
    # a file a sink keeps beside its temporary file (DuckDB's write-ahead log)
    beside = tmp_path / f".x.duckdb.exportkit-{dead.stdout.strip()}-abcd1234.tmp.wal"
    alive = tmp_path / f".y.zip.exportkit-{os.getpid()}-abcd1234.tmp"
    unrelated = tmp_path / ".x.zip.other.tmp"
    for path in (stale, beside, alive, unrelated):
        path.write_text("x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale, beside])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, unrelated.name])


def test_two_outputs_with_one_target_are_refused(tmp_path: Path) -> None:
    outputs = OutputSet()
    outputs.create(tmp_path / "a.csv")
    with pytest.raises(SinkError, match="same file"):
        outputs.create(tmp_path / "a.csv")
    outputs.discard()
    assert list(tmp_path.iterdir()) == []


def _start_slow_export(
    reference_dir: Path, tmp_path: Path
) -> tuple[subprocess.Popen[str], Path, Path]:
    """An export whose second sink waits until it is signalled; returns once it waits."""
    template = tmp_path / "t.toml"
    template.write_text(
        '[[sinks]]\ntype = "fixture-json"\npath = "a.zip"\n'
        '[[sinks]]\ntype = "slow"\npath = "b.txt"\n',
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "EXPORTKIT_PLUGINS": "slow_sink_module",
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aml_exportkit",
            "run",
            str(template),
            "--source",
            str(reference_dir / ZIP),
            "--out",
            str(out),
        ],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    slow_sink_module.wait_until_waiting(process)
    return process, out, template


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)]
)
def test_signal_mid_export_leaves_nothing(
    sig: signal.Signals, code: int, reference_dir: Path, tmp_path: Path
) -> None:
    process, out, _ = _start_slow_export(reference_dir, tmp_path)
    assert any(p.name.endswith(".tmp") for p in out.iterdir())
    process.send_signal(sig)
    _, stderr = process.communicate()
    assert process.returncode == code, stderr
    assert "no output was written" in stderr
    assert "Traceback" not in stderr
    assert not out.exists()


def test_sigkill_leaves_named_temporaries_that_the_next_run_removes(
    reference_dir: Path, tmp_path: Path
) -> None:
    process, out, template = _start_slow_export(reference_dir, tmp_path)
    process.kill()
    process.communicate()
    leftovers = sorted(p.name for p in out.iterdir())
    assert leftovers
    assert all(".exportkit-" in n and n.endswith(".tmp") for n in leftovers)
    template.write_text('[[sinks]]\ntype = "fixture-json"\npath = "a.zip"\n', encoding="utf-8")
    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "aml_exportkit",
            "run",
            str(template),
            "--source",
            str(reference_dir / ZIP),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.zip", "manifest.json"]


def test_failing_sink_exit_code_through_the_cli(reference_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text('[[sinks]]\ntype = "failing"\npath = "b.txt"\n', encoding="utf-8")
    env = {**os.environ, "EXPORTKIT_PLUGINS": "slow_sink_module", "PYTHONPATH": str(TESTS)}
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
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == EXIT_SINK, done.stderr
    assert "b.txt (failing)" in done.stderr
    assert not (tmp_path / "b.txt").exists()

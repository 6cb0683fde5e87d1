"""The number of worker processes: one per usable CPU unless ``--jobs``, ``EXPORTKIT_JOBS``
or the template's ``jobs`` says otherwise (in that order), and the same bytes for any."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from aml_exportkit import engine
from aml_exportkit.cli import cli
from aml_exportkit.errors import TemplateError
from aml_exportkit.pipeline import registry_for, run_export
from aml_exportkit.sources import fixture_zip_chunks
from aml_exportkit.template.load import parse_template

LONG_PARQUET = """
[[sinks]]
type = "csv-long"
path = "a.csv"
[[sinks]]
type = "parquet"
path = "a.parquet"
"""


@pytest.fixture(autouse=True)
def _many_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Enough chunks for three workers."""
    monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", 40_000)
    monkeypatch.delenv(engine.JOBS_ENV, raising=False)


def _run(source: Path, out: Path, *, head: str = "", jobs: int | None = None) -> dict[str, bytes]:
    registry = registry_for()
    template = parse_template(
        head + "manifest = false\n" + LONG_PARQUET,
        file="t.toml",
        folder=out,
        sinks=registry.sink_specs,
    )
    run_export(template, source=str(source), out_dir=out, jobs=jobs)
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_the_same_bytes_for_one_two_and_three_workers(generated_zip: Path, tmp_path: Path) -> None:
    outputs = {}
    for jobs in (1, 2, 3):
        outputs[jobs] = _run(generated_zip, tmp_path / str(jobs), jobs=jobs)
        assert engine.LAST_RUN["chunks"] > 3
        assert (engine.LAST_RUN["jobs"], engine.LAST_RUN["workers"]) == (jobs, jobs)
    assert outputs[1] == outputs[2] == outputs[3]
    assert set(outputs[1]) == {"a.csv", "a.parquet"}


def test_one_worker_per_usable_cpu_by_default(generated_zip: Path, tmp_path: Path) -> None:
    _run(generated_zip, tmp_path)
    assert engine.LAST_RUN["jobs"] == len(os.sched_getaffinity(0)) == engine.usable_cpus()


def test_option_over_environment_over_template(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(generated_zip, tmp_path / "t", head="jobs = 2\n")
    assert engine.LAST_RUN["jobs"] == 2
    monkeypatch.setenv(engine.JOBS_ENV, "3")
    _run(generated_zip, tmp_path / "e", head="jobs = 2\n")
    assert engine.LAST_RUN["jobs"] == 3
    _run(generated_zip, tmp_path / "o", head="jobs = 2\n", jobs=1)
    assert engine.LAST_RUN["jobs"] == 1


def test_the_command_line_option_reaches_the_engine(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "t.toml"
    template.write_text("manifest = false\n" + LONG_PARQUET, encoding="utf-8")
    monkeypatch.setenv(engine.JOBS_ENV, "1")
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(template),
            "--source",
            str(generated_zip),
            "--out",
            str(tmp_path / "out"),
            "--jobs",
            "3",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert engine.LAST_RUN["jobs"] == 3


@pytest.mark.parametrize("value", ["0", "-1"])
def test_the_option_must_be_at_least_one(value: str, generated_zip: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(LONG_PARQUET, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["run", str(template), "--source", str(generated_zip), "--out", str(out), "--jobs", value],
    )
    assert result.exit_code == 2
    assert "--jobs" in result.output
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "two", "1.5", "-2"])
def test_the_environment_variable_must_be_a_whole_number(
    value: str, generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(engine.JOBS_ENV, value)
    with pytest.raises(TemplateError) as caught:
        _run(generated_zip, tmp_path / "out")
    assert str(caught.value) == (
        f"EXPORTKIT_JOBS: expected a whole number of at least 1, got {value!r}"
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "t.toml: jobs: expected a whole number of at least 1, got 0"),
        ('"2"', "t.toml: jobs: "),
        ("true", "t.toml: jobs: "),
    ],
)
def test_the_template_key_must_be_a_whole_number(value: str, message: str, tmp_path: Path) -> None:
    registry = registry_for()
    with pytest.raises(TemplateError) as caught:
        parse_template(
            f"jobs = {value}\n" + LONG_PARQUET,
            file="t.toml",
            folder=tmp_path,
            sinks=registry.sink_specs,
        )
    assert str(caught.value).startswith(message), str(caught.value)


def test_the_run_says_where_its_cpu_time_went(generated_zip: Path, tmp_path: Path) -> None:
    _run(generated_zip, tmp_path, jobs=2)
    cpu = engine.LAST_RUN["cpu"]
    assert len(cpu["workers"]) == 2
    assert all(w is not None and w > 0 for w in cpu["workers"])
    # the Parquet encoder and the CSV's sha256 ran in threads of the parent
    assert set(cpu["threads"]) >= {"parquet", "sha256"}
    assert cpu["before"] > 0
    assert 0 <= cpu["main"] <= cpu["during"]
    assert sum(cpu["threads"].values()) <= cpu["during"] + 0.05
    # each worker's time: on a CPU, waiting for one, idle; together its life in the run
    for ran, waited, idle in cpu["workers_time"]:
        assert ran > 0
        assert waited >= 0
        assert idle >= 0
        assert ran + waited <= cpu["wall"] + 0.05
    assert cpu["main_waited"] >= 0


def test_a_process_cpu_time_is_read_from_proc() -> None:
    import time

    from aml_exportkit.engine.workers import process_cpu

    before = time.process_time()
    mine = process_cpu(os.getpid())
    assert mine is not None
    # clock ticks (1/100 s) against the finer process clock
    assert before - 0.05 <= mine <= time.process_time() + 0.05
    assert process_cpu(2**22 + 12345) is None  # above any pid this system hands out


def test_the_per_core_model_of_the_benchmarks() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        import cpu_model
    finally:
        sys.path.pop(0)
    parts = {
        "before": 1.0,
        "after": 0.5,
        "main": 0.5,
        "threads": {"parquet": 1.0, "sha256": 0.5},
        "workers": [4.0, 4.0],
    }
    # one core does everything; two share the 10 s during the workers
    assert cpu_model.predict(parts, 1) == pytest.approx(11.5)
    assert cpu_model.predict(parts, 2) == pytest.approx(1.5 + 5.0)
    # beyond, the Parquet thread (1 s) bounds the time during the workers
    assert cpu_model.predict(parts, 16) == pytest.approx(1.5 + 1.0)
    # one worker on two cores: the parent's work has the other core
    one = {**parts, "workers": [8.0]}
    assert cpu_model.predict(one, 2, workers=1) == pytest.approx(1.5 + 8.0)
    assert cpu_model.jobs_ratio(one, parts) == pytest.approx(9.5 / 6.5)
    text = cpu_model.render([("long", 1, one), ("long", 2, parts)])
    assert "16 cores" in text
    assert "long: two workers against one on two cores, as the model predicts: 1.46×" in text

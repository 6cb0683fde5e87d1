"""What the benchmark measures: every workload of issue 13's targets, and how to check it.

A workload is one ``exportkit run`` of one template. ``run.py targets`` hands each to the
bench kit's ``bench.py`` as a tool in two forms, on the zip (compared with the DuckDB
baseline) and on the database (compared with ``pg_copy``), and judges the medians against
the targets here. ``run.py memory`` runs the same templates once each on the zip.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def find_kit() -> Path:
    """The bench kit's folder: ``$EXPORTKIT_SHARED/bench`` (as for the tests), else the
    ``shared/bench`` beside the nearest folder above the repository that has one."""
    shared = os.environ.get("EXPORTKIT_SHARED")
    candidates = [Path(shared)] if shared else [p / "shared" for p in HERE.parents]
    for folder in candidates:
        if (folder / "bench" / "bench.py").is_file():
            return (folder / "bench").resolve()
    raise SystemExit("benchmarks: no bench kit found; set EXPORTKIT_SHARED to the folder of bench/")


#: The bench kit: generator, baselines and bench.py.
KIT = find_kit()
SINKS = HERE / "sinks"
PLUGIN_DIR = HERE / "plugin"
BLOCK = "pitch-categories-main"

#: Peak RSS allowed for every workload at every size (MB, the largest process).
RSS_LIMIT_MB = 400
#: Two workers against one on the long table: at least this much faster.
JOBS_SPEEDUP = 1.7
#: Environment variable the engine reads for its number of worker processes.
JOBS_ENV = "EXPORTKIT_JOBS"

# What the row-checked outputs (results*.csv, results*.parquet) hold, one row per …
TRIALS = "trials"  # … trial result
SESSIONS = "sessions"  # … session (wide tables)
TRIALS_PROFILES = "trials+profiles"  # … trial result, then profile answer (MUSCLE's dashboard)
CLASSIC_LONG = "classic-long"  # … trial result, and one per session without results

#: The plugin guide's example sink, registered without installing (see plugin/).
PLUGIN_ENV = {"PYTHONPATH": str(PLUGIN_DIR), "EXPORTKIT_PLUGINS": "exportkit_jsonl"}


@dataclass(frozen=True)
class Workload:
    """One template run as a benchmark tool.

    :param name: the tool's name in bench.py (its database form adds ``-db``).
    :param template: the template file.
    :param rows: what every ``results*`` table of the output has one row per (see the
        constants above); None when the workload writes no such table.
    :param zip_target: the most its median may take from the zip, as a multiple of the
        DuckDB baseline's; None for no time target.
    :param db_target: the same from PostgreSQL, as a multiple of ``pg_copy``'s.
    :param needs: further output files every run must leave.
    :param env: environment variables the command runs with.
    :param role: ``"target"`` (timed against the baselines), ``"jobs"`` (the one/two worker
        comparison, zip only) or ``"memory"`` (only for ``run.py memory``).
    """

    name: str
    template: Path
    rows: str | None
    zip_target: float | None = None
    db_target: float | None = None
    needs: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    role: str = "target"

    def command(self, database: bool) -> str:
        """The shell command bench.py runs, with its ``{zip}``/``{dsn}`` and ``{out}``."""
        env = dict(self.env)
        if "PYTHONPATH" in env and os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
        source = f"{{dsn}} --block {BLOCK}" if database else "{zip}"
        words = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
        words += [shlex.quote(sys.executable), "-m", "aml_exportkit", "run"]
        words += [shlex.quote(str(self.template)), "--source", source, "--out", "{out}", "--quiet"]
        return " ".join(words)

    def matches(self, wanted: set[str]) -> bool:
        """Whether ``--only`` names it, by workload name or template file name."""
        return bool({self.name, self.template.stem, self.template.name} & wanted)


LONG = HERE / "long.toml"


def _everyday(name: str, template: str, rows: str | None, **more: Any) -> Workload:
    """A workload with the targets of every export but the long table: at most DuckDB's time
    for the long table from the zip, and 2.5× ``pg_copy`` from PostgreSQL."""
    return Workload(name, SINKS / template, rows, zip_target=1.0, db_target=2.5, **more)


WORKLOADS: tuple[Workload, ...] = (
    Workload("long", LONG, TRIALS, zip_target=0.35, db_target=1.3),
    _everyday("csv-long", "csv_long.toml", TRIALS),
    _everyday("csv-wide", "csv_wide.toml", SESSIONS),
    _everyday("parquet-wide", "parquet_wide.toml", SESSIONS),
    _everyday("fixture-json", "fixture_json.toml", None, needs=("export.zip",)),
    _everyday("classic-long-json", "classic_long_json.toml", CLASSIC_LONG),
    _everyday("classic-wide", "classic_wide.toml", SESSIONS),
    _everyday("dashboard-long", "dashboard_long.toml", TRIALS_PROFILES),
    _everyday(
        "long-codebook", "long_codebook.toml", TRIALS, needs=("datapackage.json", "codebook.md")
    ),
    _everyday(
        "csv-long-jsonl", "csv_long_jsonl.toml", TRIALS, needs=("results.jsonl",), env=PLUGIN_ENV
    ),
    Workload("long-jobs1", LONG, TRIALS, env={JOBS_ENV: "1"}, role="jobs"),
    Workload("long-jobs2", LONG, TRIALS, env={JOBS_ENV: "2"}, role="jobs"),
    # not a target of its own; kept for the memory check (MUSCLE's classic "long")
    Workload(
        "classic-long", SINKS / "classic_long.toml", None, needs=("classic.csv",), role="memory"
    ),
)


def expected_rows(kind: str, meta: Mapping[str, Any]) -> int:
    """The rows a ``results*`` table of this kind must have, from the generator's manifest.

    :param kind: one of the row kinds above.
    :param meta: the generator's manifest (``<zip>.meta.json``).
    """
    counts = meta["counts"]
    if kind == TRIALS:
        return int(counts["results.json"])
    if kind == SESSIONS:
        return int(counts["sessions.json"])
    if kind == TRIALS_PROFILES:
        return int(counts["results.json"]) + int(counts["profiles.json"])
    if kind == CLASSIC_LONG:
        return int(counts["results.json"]) + _sessions_without_results(meta)
    raise ValueError(f"unknown row kind {kind!r}")


def _sessions_without_results(meta: Mapping[str, Any]) -> int:
    """Sessions without results; the manifest has no count, so ask the generator's plan
    (about 6 s at 50k sessions, hence the cache)."""
    key = json.dumps(meta["params"], sort_keys=True)
    if key not in _EMPTY_SESSIONS:
        sys.path.insert(0, str(KIT))
        try:
            import generate  # type: ignore[import-not-found]  # the kit's generate.py
        finally:
            sys.path.remove(str(KIT))
        params = generate.Params(**meta["params"])
        plans = (generate.session_plan(params, i) for i in range(params.sessions))
        _EMPTY_SESSIONS[key] = sum(plan.n_results == 0 for plan in plans)
    return _EMPTY_SESSIONS[key]


_EMPTY_SESSIONS: dict[str, int] = {}

"""How an export's time splits per core, and what more cores would give (``run.py model``).

One export runs in a child process that calls the command line in-process and then reports
what the engine measured (``engine.LAST_RUN["cpu"]``) and its own ``getrusage``:

- **before**: the parent's CPU before the workers start (reading the source's small tables,
  building the graph, the sample): serial.
- **during**: while the workers run, the parent's main thread (receiving chunks in order,
  the checks across chunks, appending spool files), its threads (Parquet encoding, the
  CSV's sha256, the profile answers) and the workers (parsing, checking, rendering).
- **after**: the parent's CPU after the engine returned (the sinks' finishing, e.g.
  fixture-json's zip member, and the manifest): serial.

CPU seconds, not wall time, because the machine is shared: a process waiting for a core
adds wall time but no CPU seconds (they still grow somewhat on a crowded machine, whose
caches and memory bandwidth are shared). The model (Amdahl's law with the parent's
threads as further serial bounds): with ``n`` cores and ``w`` workers,

    T(n) = before + after + max((W + M + P) / n, W / w, M, P_max)

where ``W`` is the workers' CPU, ``w`` their number (``n`` unless said otherwise), ``M``
the parent's main thread's CPU during the workers, ``P`` its threads' and ``P_max`` the
busiest thread's (each thread is serial itself). The first term is the work during the
workers shared over the cores, the second the workers' share when they are fewer than
the cores, the last two the parts that one thread must do in order. Each run is modelled
with its own figures: the workers' total hardly changes with their number (6.93 s with
one, 3.53 + 3.44 s with two, long.toml at 10k), so a run with two predicts 8 and 16 too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Cores the model predicts for.
CORES = (1, 2, 4, 8, 16)

_CHILD = r"""
import json, os, resource, sys, time
start = time.perf_counter()
from aml_exportkit import cli, engine
code = 0
try:
    sys.argv = ["exportkit", *sys.argv[1:]]
    cli.main()
except SystemExit as exc:
    code = exc.code or 0
end = time.perf_counter()
me = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(os.environ["EXPORTKIT_MODEL_OUT"], "w") as fh:
    json.dump({
        "rc": code,
        "start": start,
        "wall": end - start,
        "parent": me.ru_utime + me.ru_stime,
        "children": kids.ru_utime + kids.ru_stime,
        "engine": {k: v for k, v in engine.LAST_RUN.items() if k != "profiles"},
    }, fh)
"""


def measure(
    template: Path, source: str, jobs: int, out: Path, env: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Run one export with ``jobs`` workers and return where its CPU went (seconds).

    :param env: further environment variables for the export.
    :raises RuntimeError: when the export failed or the engine did not run it.
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        extra = dict(env or {})
        full = {**os.environ, **extra}
        if "PYTHONPATH" in extra and os.environ.get("PYTHONPATH"):
            full["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
        full.update(EXPORTKIT_JOBS=str(jobs), EXPORTKIT_MODEL_OUT=report.name)
        cmd = [sys.executable, "-c", _CHILD, "run", str(template), "--source", source]
        cmd += ["--out", str(out), "--quiet"]
        subprocess.run(cmd, check=True, env=full)
        raw = json.loads(Path(report.name).read_text())
    engine = raw["engine"]
    if raw["rc"] or "cpu" not in engine:
        raise RuntimeError(f"{template.name}: the engine did not run it ({engine})")
    return split(raw)


def split(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of one run's CPU (see the module's docstring) from the child's report."""
    cpu = raw["engine"]["cpu"]
    threads = dict(cpu["threads"])
    # the parent's CPU during the workers that no known thread accounts for (the source
    # zip's sha256 for the manifest, pyarrow's pool): a thread of its own
    other = cpu["during"] - cpu["main"] - sum(threads.values())
    if other > 0.05:
        threads["other"] = other
    workers = [w for w in cpu["workers"] if w is not None]
    return {
        "workers_n": len(cpu["workers"]),
        "before": cpu["before"],
        "main": cpu["main"],
        "threads": threads,
        "workers": workers,
        "after": raw["parent"] - cpu["before"] - cpu["during"],
        # (RUSAGE_CHILDREN: the workers and anything else the run started, all joined)
        "children": raw["children"],
        "wall": raw["wall"],
        # per worker: seconds on a CPU, waiting for one, idle (waiting for the parent)
        "workers_time": cpu.get("workers_time", []),
        "main_waited": cpu.get("main_waited"),
        "wall_before": cpu["at"] - raw["start"],
        "wall_during": cpu["wall"],
    }


def predict(parts: Mapping[str, Any], cores: int, workers: int | None = None) -> float:
    """The wall time the model predicts with ``cores`` cores and ``workers`` workers (as
    many as cores by default): fewer workers than cores leave the parent a core of its own
    (the workers' share is then ``W / workers``)."""
    work = sum(parts["workers"])
    threads = parts["threads"].values()
    spread = (work + parts["main"] + sum(threads)) / cores
    during = max(spread, work / (workers or cores), parts["main"], max(threads, default=0.0))
    return float(parts["before"] + parts["after"] + during)


def jobs_ratio(one: Mapping[str, Any], two: Mapping[str, Any]) -> float:
    """Two workers against one on two cores, as the model predicts them from the runs
    with one worker (``one``) and two (``two``): the ``long-jobs1``/``long-jobs2`` ratio."""
    return predict(one, 2, workers=1) / predict(two, 2)


def render(rows: Sequence[tuple[str, int, Mapping[str, Any]]]) -> str:
    """The measurements and the model's predictions as Markdown tables."""
    lines = [
        "| export | workers | before | main | threads | workers' CPU | workers idle |"
        " after | total CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, jobs, p in rows:
        threads = ", ".join(f"{k} {v:.2f}" for k, v in sorted(p["threads"].items())) or "-"
        work = " + ".join(f"{w:.2f}" for w in p["workers"])
        total = p["before"] + p["main"] + sum(p["threads"].values()) + sum(p["workers"])
        total += p["after"]
        idle = " + ".join(f"{t[2]:.2f}" for t in p.get("workers_time", []) if t) or "-"
        lines.append(
            f"| {name} | {jobs} | {p['before']:.2f} | {p['main']:.2f} | {threads} | {work} |"
            f" {idle} | {p['after']:.2f} | {total:.2f} |"
        )
    lines += [
        "",
        "| export | measured with | " + " | ".join(f"{c} cores" for c in CORES) + " |",
        "|---|---|" + "---|" * len(CORES),
    ]
    for name, jobs, p in rows:
        one = predict(p, 1)
        cells = [f"{predict(p, c):.1f} s ({one / predict(p, c):.2f}×)" for c in CORES]
        lines.append(f"| {name} | {jobs} workers | " + " | ".join(cells) + " |")
    lines.append("")
    by_name: dict[str, dict[int, Mapping[str, Any]]] = {}
    for name, jobs, p in rows:
        by_name.setdefault(name, {})[jobs] = p
    for name, runs in by_name.items():
        if 1 in runs and 2 in runs:
            lines.append(
                f"{name}: two workers against one on two cores, as the model predicts:"
                f" {jobs_ratio(runs[1], runs[2]):.2f}×"
            )
    return "\n".join(lines)

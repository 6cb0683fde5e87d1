#!/usr/bin/env python3
"""Measure aml_exportkit with the bench kit (../shared/bench/bench.py) against issue 13's targets.

  python benchmarks/run.py targets --sizes 1000,10000        # every workload, 3 reps
  python benchmarks/run.py targets --sizes 50000 --reps 1 --skip pandas
  python benchmarks/run.py targets --sizes 1000 --only long,csv-wide --no-db
  python benchmarks/run.py bench   --sizes 1000,10000        # long.toml only (targets --only long)
  python benchmarks/run.py memory  --sizes 1000,10000,50000
  python benchmarks/run.py memory  --sizes 50000 --only parquet_wide,fixture_json
  python benchmarks/run.py model   --sizes 10000 --only long,csv-long,fixture-json

``targets`` hands every workload of ``workloads.py`` to one bench.py run per size as two
tools, ``NAME`` on the zip and ``NAME-db`` on the PostgreSQL database, interleaved with the
kit's baselines. It then reads bench.py's JSON and prints, per workload, the median, the
peak RSS, the ratio to DuckDB's long table (zip) or to ``pg_copy`` (database), the target,
and pass or fail; and the one-worker/two-worker ratio on the long table (``long-jobs1`` and
``long-jobs2`` run with ``EXPORTKIT_JOBS=1`` and ``=2``). Every output table is checked for
its own row count (one per trial, per session, …), not only for bench.py's trial count.

Exit status: 0 when every run worked and every target is met, 2 when every run worked but
a target is missed, 1 when a run failed or wrote the wrong rows.

``memory`` runs every template once per size, on the zip and on the database (not with
``--no-db``), and records the peak RSS (GNU time's %M, the largest process of the tree) and
the sum over the process tree sampled from /proc.

``model`` runs each workload on the zip with one and with two workers, once, and prints where
the CPU seconds went (the parent before, beside and after the workers; each worker) and
what the per-core model of ``cpu_model.py`` predicts for 1, 2, 4, 8 and 16 cores.

Inputs are generated when missing: /tmp/bench/muscle_<N>.zip and the database
bench_<N> (names by thousands of sessions), with the kit's generator. bench.py's JSON, its
table and the targets table go to ``--results`` (default /tmp/bench/results). Nothing is
written into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workloads import (
    BLOCK,
    JOBS_SPEEDUP,
    KIT,
    RSS_LIMIT_MB,
    WORKLOADS,
    Workload,
    expected_rows,
)

PY = sys.executable
PG = "postgresql://postgres@127.0.0.1:5432"
#: The baseline each group's ratios are taken against.
BASELINE = {"zip": "duckdb", "db": "pg_copy"}
#: bench.py's status for a run that left no results*.csv/.parquet.
NO_TABLE = "no results*.csv/.parquet"


def label(sessions: int) -> str:
    return f"{sessions // 1000}k" if sessions % 1000 == 0 else str(sessions)


def ensure_inputs(sessions: int, data: Path, with_db: bool) -> tuple[Path, str | None]:
    zip_path = data / f"muscle_{label(sessions)}.zip"
    dsn = f"{PG}/bench_{label(sessions)}" if with_db else None
    args = [PY, str(KIT / "generate.py"), "--quiet", "--sessions", str(sessions)]
    if not (zip_path.exists() and Path(str(zip_path) + ".meta.json").exists()):
        print(f"generating {zip_path}", file=sys.stderr)
        subprocess.run([*args, "--zip", str(zip_path)], check=True, stdout=subprocess.DEVNULL)
    if dsn and not _db_ready(dsn, sessions):
        print(f"generating {dsn}", file=sys.stderr)
        subprocess.run([*args, "--postgres", dsn], check=True, stdout=subprocess.DEVNULL)
    return zip_path, dsn


def _db_ready(dsn: str, sessions: int) -> bool:
    try:
        import psycopg

        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database"
                " WHERE datname = current_database()"
            ).fetchone()
        meta = json.loads(row[0]) if row and row[0] else {}
        return bool(meta.get("params", {}).get("sessions") == sessions)
    except Exception:
        return False


# -- targets ---------------------------------------------------------------------------------


def targets(args: argparse.Namespace) -> int:
    chosen = [w for w in WORKLOADS if w.role in ("target", "jobs")]
    if args.only:
        wanted = set(args.only.split(","))
        chosen = [w for w in chosen if w.matches(wanted)]
    if not chosen:
        raise SystemExit(f"run.py: --only {args.only} names no workload")
    status = 0
    for sessions in args.sizes:
        zip_path, dsn = ensure_inputs(sessions, args.data, not args.no_db)
        stem = args.results / f"{args.what}_{label(sessions)}"
        tools = {w.name: (w, False) for w in chosen}
        if dsn:
            tools.update({w.name + "-db": (w, True) for w in chosen if w.role == "target"})
        cmd = [
            PY, str(KIT / "bench.py"), "--sessions", str(sessions), "--zip", str(zip_path),
            "--reps", str(args.reps), "--json-out", str(stem) + ".json",
            "--workdir", str(args.data / "work"), "--timeout", str(args.timeout),
        ]  # fmt: skip
        if dsn:
            cmd += ["--postgres", dsn]
        for name, (w, database) in tools.items():
            cmd += ["--tool", f"{name}={w.command(database)}"]
        if args.skip:
            cmd += ["--skip", args.skip]
        print("$ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
        Path(str(stem) + ".json").unlink(missing_ok=True)
        bench = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        print(bench.stdout)
        try:
            doc = json.loads(Path(str(stem) + ".json").read_text())
        except (OSError, ValueError):
            print(f"bench.py wrote no results (exit {bench.returncode})", file=sys.stderr)
            status = 1
            continue
        meta = json.loads(Path(str(zip_path) + ".meta.json").read_text())
        verdicts = judge(doc, tools, meta)
        text = render(verdicts, doc, sessions, dsn is not None)
        print(text)
        Path(str(stem) + ".md").write_text(bench.stdout + "\n" + text + "\n")
        Path(str(stem) + ".summary.json").write_text(json.dumps(verdicts, indent=1))
        status = max(status, _exit_status(verdicts))
    return status


def judge(
    doc: dict[str, Any], tools: dict[str, tuple[Workload, bool]], meta: dict[str, Any]
) -> list[dict[str, Any]]:
    """One verdict per bench.py entry: median, peak RSS, ratio, target and problems."""
    medians = {r["name"]: r["median_s"] for r in doc["results"]}
    verdicts: list[dict[str, Any]] = []
    for entry in doc["results"]:
        name = entry["name"]
        group = entry["group"]
        runs = entry["runs"]
        if name not in tools:  # a baseline: its own runs must have worked
            walls = [r["wall_s"] for r in runs if r["status"] == "ok"]
            problems = sorted({r["status"] for r in runs if r["status"] != "ok"})
            verdicts.append(_verdict(name, group, "baseline", walls, runs, problems))
            continue
        w, _ = tools[name]
        walls, problems = [], []
        for run in runs:
            problem = _run_problem(w, run, meta)
            if problem:
                problems.append(problem)
            else:
                walls.append(run["wall_s"])
        v = _verdict(name, group, w.role, walls, runs, sorted(set(problems)))
        base = medians.get(BASELINE[group])
        v["limit"] = w.zip_target if group == "zip" else w.db_target
        if v["median_s"] is not None and base:
            v["ratio"] = v["median_s"] / base
        if v["limit"] is not None and v["ratio"] is not None:
            v["time_ok"] = v["ratio"] <= v["limit"]
        verdicts.append(v)
    return verdicts


def _verdict(
    name: str,
    group: str,
    role: str,
    walls: Sequence[float],
    runs: Sequence[dict[str, Any]],
    problems: Sequence[str],
) -> dict[str, Any]:
    rss_mb = max((r["peak_rss_kb"] for r in runs), default=0) / 1024
    return {
        "name": name,
        "group": group,
        "role": role,
        "median_s": statistics.median(walls) if walls else None,
        "runs": len(runs),
        "peak_rss_mb": round(rss_mb),
        "rss_ok": rss_mb <= RSS_LIMIT_MB if role != "baseline" else None,
        "ratio": None,
        "limit": None,
        "time_ok": None,
        "problems": list(problems),
    }


def _run_problem(w: Workload, run: dict[str, Any], meta: dict[str, Any]) -> str | None:
    """What is wrong with one run, or None.

    bench.py compares every results*.csv/.parquet with the trial count and wants at least
    one; a wide table has one row per session and fixture-json writes a zip, so its row
    statuses are judged here again, by the workload's own row kind.
    """
    status = str(run["status"])
    if status == NO_TABLE:
        if w.rows is not None:
            return status
    elif status != "ok" and not status.startswith("rows "):
        return status  # exit code, timeout
    missing = [n for n in w.needs if n not in run["files"]]
    if missing:
        return "missing " + ", ".join(missing)
    if w.rows is not None:
        want = expected_rows(w.rows, meta)
        wrong = {f: n for f, n in run["rows"].items() if n != want}
        if wrong:
            return f"rows {wrong} != {want} ({w.rows})"
    return None


def _exit_status(verdicts: Sequence[dict[str, Any]]) -> int:
    if any(v["problems"] or v["median_s"] is None for v in verdicts):
        return 1
    jobs = _jobs_speedup(verdicts)
    missed = any(v["time_ok"] is False or v["rss_ok"] is False for v in verdicts)
    return 2 if missed or (jobs is not None and jobs < JOBS_SPEEDUP) else 0


def _jobs_speedup(verdicts: Sequence[dict[str, Any]]) -> float | None:
    medians = {v["name"]: v["median_s"] for v in verdicts}
    one, two = medians.get("long-jobs1"), medians.get("long-jobs2")
    return one / two if one and two else None


def render(
    verdicts: Sequence[dict[str, Any]], doc: dict[str, Any], sessions: int, with_db: bool
) -> str:
    """The targets table (Markdown), the baselines it is measured against, and the jobs line."""
    medians = {v["name"]: v["median_s"] for v in verdicts}
    reps = max((v["runs"] for v in verdicts), default=0)
    lines = [
        f"## Targets at {sessions:,} sessions ({doc['expected_rows']['zip']:,} trial results),"
        f" medians of {reps}",
        "",
        "| workload | source | median s | peak RSS MB | ratio | target | time | RSS ≤ "
        f"{RSS_LIMIT_MB} | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        if v["role"] == "baseline":
            continue
        base = BASELINE[v["group"]]
        lines.append(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                v["name"],
                "zip" if v["group"] == "zip" else "PostgreSQL",
                _num(v["median_s"]),
                v["peak_rss_mb"],
                f"{v['ratio']:.2f}× {base}" if v["ratio"] is not None else "-",
                f"≤ {v['limit']}× {base}" if v["limit"] is not None else "-",
                _mark(v["time_ok"]),
                _mark(v["rss_ok"]),
                "; ".join(v["problems"]) or "ok",
            )
        )
    lines.append("")
    shown = [b for b in ("duckdb", "pg_copy") if b in medians]
    lines.append(
        "Baselines (long table): "
        + ", ".join(f"{b} {_num(medians[b])} s" for b in shown)
        + ("" if with_db else " (no database: --no-db)")
    )
    for v in verdicts:
        if v["role"] == "baseline" and v["problems"]:
            lines.append(f"baseline {v['name']} failed: {'; '.join(v['problems'])}")
    jobs = _jobs_speedup(verdicts)
    if jobs is not None:
        lines.append(
            f"Two workers against one (long-jobs1 / long-jobs2, EXPORTKIT_JOBS): {jobs:.2f}×"
            f" (target ≥ {JOBS_SPEEDUP}×): {_mark(jobs >= JOBS_SPEEDUP)}"
        )
    lines.append(
        "bench.py's 'rows check' above compares every table with the trial count; the"
        " targets table checks each output by its own count (per session for wide tables)."
    )
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _mark(ok: bool | None) -> str:
    return "-" if ok is None else "pass" if ok else "**FAIL**"


# -- memory ----------------------------------------------------------------------------------


def _tree_rss(pid: int) -> int:
    """Resident set size (KiB) of ``pid`` and its descendants."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return total


def memory(args: argparse.Namespace) -> int:
    chosen = [w for w in WORKLOADS if w.role in ("target", "memory")]
    if args.only:
        chosen = [w for w in chosen if w.matches(set(args.only.split(",")))]
    rows = []
    for sessions in args.sizes:
        zip_path, dsn = ensure_inputs(sessions, args.data, not args.no_db)
        sources = [("zip", str(zip_path))] + ([("db", dsn)] if dsn else [])
        for w in chosen:
            for kind, source in sources:
                row = {"sessions": sessions, "workload": w.name, "source": kind}
                row.update(_peak_rss(w, source, args.data))
                rows.append(row)
                print(json.dumps(row), flush=True)
    (args.results / "memory.json").write_text(json.dumps(rows, indent=1))
    return 0 if all(r["rc"] == 0 for r in rows) else 1


def _peak_rss(w: Workload, source: str, data: Path) -> dict[str, Any]:
    """One run of ``w`` on ``source`` (zip or DSN): GNU time's peak RSS (the largest
    process) and the largest sum over the process tree sampled from /proc."""
    with tempfile.TemporaryDirectory(dir=data) as out:
        rss_file = Path(out) / "rss"
        cmd = [
            "/usr/bin/time", "-f", "%M", "-o", str(rss_file),
            PY, "-m", "aml_exportkit", "run", str(w.template), "--source", source,
            "--block", BLOCK, "--out", str(Path(out) / "o"), "--quiet",
        ]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env={**os.environ, **w.env})
        tree = 0
        while proc.poll() is None:
            tree = max(tree, _tree_rss(proc.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        peak = int(rss_file.read_text().split()[-1]) if rss_file.exists() else 0
    return {
        "template": w.template.name,
        "seconds": round(wall, 2),
        "peak_rss_mb": round(peak / 1024),
        "tree_rss_mb": round(tree / 1024),
        "rc": proc.returncode,
    }


# -- the per-core model -----------------------------------------------------------------------


def model(args: argparse.Namespace) -> int:
    import cpu_model

    chosen = [w for w in WORKLOADS if w.role == "target"]
    if args.only:
        chosen = [w for w in chosen if w.matches(set(args.only.split(",")))]
    rows: list[tuple[str, int, dict[str, Any]]] = []
    for sessions in args.sizes:
        zip_path, _ = ensure_inputs(sessions, args.data, False)
        for w in chosen:
            for jobs in (1, 2):
                with tempfile.TemporaryDirectory(dir=args.data) as out:
                    target = Path(out) / "o"
                    parts = cpu_model.measure(w.template, str(zip_path), jobs, target, w.env)
                name = f"{w.name} {label(sessions)}"
                rows.append((name, jobs, parts))
                print(json.dumps({"workload": name, "jobs": jobs, **parts}), flush=True)
    print(cpu_model.render(rows))
    (args.results / "model.json").write_text(json.dumps(rows, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("what", choices=("targets", "bench", "memory", "model"))
    ap.add_argument("--sizes", default="1000,10000,50000",
                    type=lambda s: [int(x) for x in s.split(",")])  # fmt: skip
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip", default="", help="baselines to leave out, e.g. pandas")
    ap.add_argument("--no-db", action="store_true", help="zip only (targets, memory)")
    ap.add_argument("--only", default="", help="these workloads only (names or templates)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per run (bench.py)")
    ap.add_argument("--data", type=Path, default=Path("/tmp/bench"))
    ap.add_argument("--results", type=Path, default=Path("/tmp/bench/results"))
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    if args.what == "memory":
        return memory(args)
    if args.what == "model":
        return model(args)
    if args.what == "bench":
        args.only = "long"
    return targets(args)


if __name__ == "__main__":
    sys.exit(main())

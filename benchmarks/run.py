#!/usr/bin/env python3
"""Run the benchmark kit (../shared/bench/bench.py) on aml_exportkit, and check peak memory.

  python benchmarks/run.py bench  --sizes 1000,10000      # 3 reps, all baselines
  python benchmarks/run.py bench  --sizes 50000 --reps 1 --skip pandas
  python benchmarks/run.py memory --sizes 1000,10000,50000
  python benchmarks/run.py memory --sizes 50000 --only parquet_wide,fixture_json

``bench`` times ``exportkit run benchmarks/long.toml`` on the zip (tool ``kit``) and on the
PostgreSQL database (tool ``kit-db``) against the kit's baselines, interleaved in one run,
and saves bench.py's JSON to ``--results`` (default /tmp/bench/results). ``memory`` runs
every sink of ``benchmarks/sinks/*.toml`` plus long.toml once per size and records the
peak RSS (GNU time's %M, the largest process of the tree) and the sum over the process
tree sampled from /proc (the bulk lane forks two workers).

Inputs are generated when missing: /tmp/bench/muscle_<N>.zip and the database
bench_<N> (names by thousands of sessions), with the kit's generator. Nothing is written
into the repository.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KIT = (HERE.parent.parent / "shared" / "bench").resolve()
PY = sys.executable
BLOCK = "pitch-categories-main"
PG = "postgresql://postgres@127.0.0.1:5432"


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
        return meta.get("params", {}).get("sessions") == sessions
    except Exception:
        return False


def tool(source: str, extra: str = "") -> str:
    return (
        f"{shlex.quote(PY)} -m aml_exportkit run {shlex.quote(str(HERE / 'long.toml'))}"
        f" --source {source} {extra} --out {{out}} --quiet"
    )


def bench(args: argparse.Namespace) -> int:
    status = 0
    for sessions in args.sizes:
        zip_path, dsn = ensure_inputs(sessions, args.data, not args.no_db)
        out = args.results / f"bench_{label(sessions)}.json"
        cmd = [
            PY, str(KIT / "bench.py"), "--sessions", str(sessions), "--zip", str(zip_path),
            "--reps", str(args.reps), "--json-out", str(out),
            "--workdir", str(args.data / "work"),
            "--tool", "kit=" + tool("{zip}"),
        ]  # fmt: skip
        if dsn:
            cmd += ["--postgres", dsn, "--tool", "kit-db=" + tool("{dsn}", f"--block {BLOCK}")]
        if args.skip:
            cmd += ["--skip", args.skip]
        print("$ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
        report = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        (args.results / f"bench_{label(sessions)}.md").write_text(report.stdout)
        print(report.stdout)
        status = status or report.returncode
    return status


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
    templates = [HERE / "long.toml", *sorted((HERE / "sinks").glob("*.toml"))]
    if args.only:
        wanted = set(args.only.split(","))
        templates = [t for t in templates if t.stem in wanted or t.name in wanted]
    rows = []
    for sessions in args.sizes:
        zip_path, _ = ensure_inputs(sessions, args.data, False)
        for template in templates:
            with tempfile.TemporaryDirectory(dir=args.data) as out:
                rss_file = Path(out) / "rss"
                cmd = [
                    "/usr/bin/time", "-f", "%M", "-o", str(rss_file),
                    PY, "-m", "aml_exportkit", "run", str(template), "--source", str(zip_path),
                    "--block", BLOCK, "--out", str(Path(out) / "o"), "--quiet",
                ]  # fmt: skip
                start = time.perf_counter()
                proc = subprocess.Popen(cmd)
                tree = 0
                while proc.poll() is None:
                    tree = max(tree, _tree_rss(proc.pid))
                    time.sleep(0.05)
                wall = time.perf_counter() - start
                peak = int(rss_file.read_text().split()[-1]) if rss_file.exists() else 0
                row = {
                    "sessions": sessions,
                    "template": template.name,
                    "seconds": round(wall, 2),
                    "peak_rss_mb": round(peak / 1024),
                    "tree_rss_mb": round(tree / 1024),
                    "rc": proc.returncode,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    (args.results / "memory.json").write_text(json.dumps(rows, indent=1))
    return 0 if all(r["rc"] == 0 for r in rows) else 1


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("what", choices=("bench", "memory"))
    ap.add_argument("--sizes", default="1000,10000,50000",
                    type=lambda s: [int(x) for x in s.split(",")])  # fmt: skip
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--skip", default="", help="baselines to leave out, e.g. pandas")
    ap.add_argument("--no-db", action="store_true", help="zip only")
    ap.add_argument("--only", default="", help="memory: these templates only, e.g. csv_wide,long")
    ap.add_argument("--data", type=Path, default=Path("/tmp/bench"))
    ap.add_argument("--results", type=Path, default=Path("/tmp/bench/results"))
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    args.results.mkdir(parents=True, exist_ok=True)
    return bench(args) if args.what == "bench" else memory(args)


if __name__ == "__main__":
    sys.exit(main())

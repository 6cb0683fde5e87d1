"""Load MUSCLE data into pandas without writing any file: the sample block in this folder
as a long table (one row per trial result) and a wide one (one row per session).

From a fresh clone (pyarrow comes with the package, pandas with the ``frames`` extra)::

    python3 -m venv .venv && . .venv/bin/activate
    pip install '.[frames]'          # or: pip install . pandas
    python examples/notebook.py

In a notebook, the same two calls work on your own data: a MUSCLE export zip, a
``postgresql://`` URI, or a template (``to_dataframe("export.toml")``). See
docs/embedding.md.
"""

from __future__ import annotations

from pathlib import Path

from aml_exportkit import to_dataframe

SAMPLE = Path(__file__).resolve().parent / "tafc-dvorak.zip"


def main() -> None:
    """Print a small summary of the sample block."""
    trials = to_dataframe(SAMPLE)
    print(
        f"{len(trials)} trial results, {trials['session_id'].nunique()} sessions,"
        f" {trials['participant_id'].nunique()} participants, blocks:"
        f" {', '.join(sorted(trials['block_slug'].unique()))}"
    )

    # Accuracy and decision time per song fragment (the two-alternative forced choice).
    summary = trials.groupby("section_group").agg(
        trials=("result_id", "size"),
        accuracy=("result_score", "mean"),
        decision_time=("result_json.decision_time", "median"),
    )
    print(summary.round(3).to_string())

    # One row per session, each result's columns side by side (01.result_score, ...).
    sessions = to_dataframe(SAMPLE, table="wide")
    scores = sessions.filter(like=".result_score")
    print(
        f"\n{len(sessions)} sessions x {scores.shape[1]} result scores;"
        f" mean final score {sessions['session_final_score'].mean():.2f}"
    )


if __name__ == "__main__":
    main()

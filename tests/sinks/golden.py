"""Comparing CSV files as tables: header set, multiset of rows, cell strings."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path


def read_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows (as dicts) of a CSV written with Python's csv module."""
    with open(path, encoding="utf-8", newline="") as f:
        records = list(csv.reader(f))
    if not records:
        return [], []
    header = records[0]
    return header, [dict(zip(header, r, strict=True)) for r in records[1:]]


def table_differences(got: Path, want: Path, normalize=None) -> list[str]:
    """Why two CSVs differ as tables (empty when equal); row order and column order are
    ignored. ``normalize(column, text)`` may rewrite cells of both sides first."""
    got_header, got_rows = read_table(got)
    want_header, want_rows = read_table(want)
    problems: list[str] = []
    if set(got_header) != set(want_header):
        problems.append(
            f"header: missing {sorted(set(want_header) - set(got_header))},"
            f" extra {sorted(set(got_header) - set(want_header))}"
        )
        return problems
    if len(got_header) != len(want_header):
        problems.append("header has duplicate columns")
    cols = sorted(want_header)

    def key(row: dict[str, str]) -> tuple[str, ...]:
        if normalize is None:
            return tuple(row[c] for c in cols)
        return tuple(normalize(c, row[c]) for c in cols)

    g = Counter(key(r) for r in got_rows)
    w = Counter(key(r) for r in want_rows)
    if g != w:
        missing = list((w - g).elements())[:2]
        extra = list((g - w).elements())[:2]
        for m, e in zip(missing, extra, strict=False):
            diff = {c: (a, b) for c, a, b in zip(cols, e, m, strict=True) if a != b}
            problems.append(f"row differs: {diff}")
        problems.append(f"{sum((w - g).values())} rows missing, {sum((g - w).values())} extra")
    return problems

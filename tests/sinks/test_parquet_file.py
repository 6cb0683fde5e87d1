"""The Parquet writer of bounded memory (``tabular/parquet_file.py``) writes pyarrow's bytes.

``ParquetFile`` writes each row group with a ``ParquetWriter`` of its own and the footer
itself; these tests compare its files with those of one ``ParquetWriter`` byte for byte
(row group counts on both sides of the Thrift list header's short form, every column type
the sinks write, nulls, each codec, no row group at all), and show that its memory does not
grow with the row groups while pyarrow's does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aml_exportkit.engine import native
from aml_exportkit.tabular import parquet_file
from aml_exportkit.tabular.parquet_file import ParquetFile

KINDS = (
    pa.string(),
    pa.float64(),
    pa.int64(),
    pa.timestamp("us", tz="UTC"),
    pa.bool_(),
)


def _schema(width: int) -> pa.Schema:
    fields = [pa.field(f"c{i}", KINDS[i % len(KINDS)]) for i in range(width)]
    return pa.schema(fields, metadata={"exportkit.template": "x" * 300})


def _table(schema: pa.Schema, rows: int, seed: int) -> pa.Table:
    columns = []
    for i, field in enumerate(schema):
        values = [(seed * 7919 + row * 31 + i) % 1009 for row in range(rows)]
        cells = [None if v % 5 == 0 else v for v in values]
        if field.type == pa.string():
            columns.append(pa.array([None if v is None else f"s{v}" for v in cells], field.type))
        elif field.type == pa.float64():
            columns.append(pa.array([None if v is None else v / 7 for v in cells], field.type))
        elif field.type == pa.bool_():
            columns.append(pa.array([None if v is None else v % 2 == 0 for v in cells]))
        else:
            columns.append(pa.array([None if v is None else v * 10**9 for v in cells], field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _both(tmp_path: Path, schema: pa.Schema, tables: list[pa.Table], **options: object) -> None:
    reference = tmp_path / "pyarrow.parquet"
    ours = tmp_path / "ours.parquet"
    with pq.ParquetWriter(reference, schema, **options) as writer:
        for table in tables:
            writer.write_table(table)
    with ParquetFile(ours, schema, **options) as writer:
        for table in tables:
            writer.write_table(table)
    assert ours.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ours.parquet", "pyarrow.parquet"]


@pytest.mark.parametrize("groups", [0, 1, 2, 14, 15, 16, 40])
@pytest.mark.parametrize("kernel", ["native", "python"])
def test_same_bytes_as_one_parquet_writer(
    groups: int, kernel: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kernel == "python":
        monkeypatch.setenv(native.ENV_SWITCH, "0")
    elif not native.available():
        pytest.skip("the native kernel is not built")
    schema = _schema(11)
    tables = [_table(schema, 1 + (g * 37) % 90, g) for g in range(groups)]
    _both(tmp_path, schema, tables, compression="zstd")


@pytest.mark.parametrize("compression", [None, "snappy", "gzip", "zstd"])
def test_each_codec_and_empty_row_groups(compression: str | None, tmp_path: Path) -> None:
    schema = _schema(6)
    tables = [_table(schema, 50, 1), _table(schema, 0, 2), _table(schema, 3000, 3)]
    _both(tmp_path, schema, tables, compression=compression)


def test_large_offsets(tmp_path: Path) -> None:
    # offsets past 2**21 and 2**28 take more varint bytes in the footer than in each part
    schema = pa.schema([pa.field("blob", pa.binary())])
    blob = pa.array([bytes(range(256)) * 4096 * 16], pa.binary())  # 16 MB, no dictionary
    tables = [pa.Table.from_arrays([blob], schema=schema)] * 20
    _both(tmp_path, schema, tables, compression=None, use_dictionary=False)


def _group(width: int, rows: int) -> bytes:
    """The row group (Thrift bytes) of a one-row-group file's footer."""
    sink = pa.BufferOutputStream()
    schema = _schema(width)
    pq.write_table(_table(schema, rows, 5), sink)
    data = sink.getvalue().to_pybytes()
    size = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - size : -8]
    return parquet_file._Layout(footer).group_rows(footer)[1]


GROUP = _group(9, 20)
needs_kernel = pytest.mark.skipif(not native.available(), reason="the native kernel is not built")


def _outcome(shift: Callable[[bytes, int], bytes], data: bytes, delta: int) -> bytes | str:
    try:
        return shift(data, delta)
    except ValueError:
        return "refused"


@needs_kernel
def test_the_kernel_shifts_as_python_does() -> None:
    from aml_exportkit.engine import _speedups as kernel

    for delta in (0, 1, 100, 2**20, 2**40, -4, 2**63 - 1):
        assert kernel.shift_offsets(GROUP, delta) == parquet_file.shift_offsets(GROUP, delta)
    assert parquet_file.shift_offsets(GROUP, 0) == GROUP
    assert parquet_file.shift_offsets(GROUP, 1) != GROUP
    for bad in (GROUP[:-1], GROUP + b"\0", b"", b"\x19\xfc", b"\x1c" * 200 + b"\0" * 200):
        with pytest.raises(ValueError, match="Parquet row group"):
            kernel.shift_offsets(bad, 5)
        with pytest.raises(ValueError, match="Parquet row group"):
            parquet_file.shift_offsets(bad, 5)


@needs_kernel
@given(st.binary(max_size=80), st.integers(-(2**40), 2**40))
def test_kernel_and_python_agree_on_any_bytes(data: bytes, delta: int) -> None:
    from aml_exportkit.engine import _speedups as kernel

    ours = _outcome(parquet_file.shift_offsets, data, delta)
    assert _outcome(kernel.shift_offsets, data, delta) == ours


@needs_kernel
@given(st.lists(st.tuples(st.integers(0, len(GROUP) - 1), st.integers(0, 255)), max_size=4))
def test_kernel_and_python_agree_on_damaged_groups(edits: list[tuple[int, int]]) -> None:
    from aml_exportkit.engine import _speedups as kernel

    data = bytearray(GROUP)
    for at, byte in edits:
        data[at] = byte
    ours = _outcome(parquet_file.shift_offsets, bytes(data), 4096)
    assert _outcome(kernel.shift_offsets, bytes(data), 4096) == ours


# A wide table's row groups: pyarrow's writer keeps ≈ 850 bytes of metadata per column and
# row group until it closes (then copies them), so its peak grows by ≈ 120 MB over these
# 60 row groups of 1,200 columns; ParquetFile's stays where one row group puts it.
GROWTH = textwrap.dedent(
    """
    import json, sys
    import pyarrow as pa, pyarrow.parquet as pq
    from aml_exportkit.tabular.parquet_file import ParquetFile

    which, path = sys.argv[1], sys.argv[2]
    schema = pa.schema([pa.field(f"c{i}", pa.float64()) for i in range(1200)])
    table = pa.Table.from_arrays([pa.array([float(i)]) for i in range(1200)], schema=schema)
    make = pq.ParquetWriter if which == "pyarrow" else ParquetFile
    writer = make(path, schema, compression="zstd")
    writer.write_table(table)
    def peak():  # VmHWM, not ru_maxrss: that one keeps the peak of the process exec'ing
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
    before = peak()
    for _ in range(59):
        writer.write_table(table)
    writer.close()
    after = peak()
    print(json.dumps([before // 1024, after // 1024]))
    """
)


def _growth(which: str, path: Path) -> tuple[int, int]:
    """The peak RSS (MB) after the first row group and at the end."""
    done = subprocess.run(
        [sys.executable, "-c", GROWTH, which, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    before, after = json.loads(done.stdout)
    return before, after


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_memory_does_not_grow_with_the_row_groups(tmp_path: Path) -> None:
    ours = _growth("ours", tmp_path / "ours.parquet")
    theirs = _growth("pyarrow", tmp_path / "pyarrow.parquet")
    assert (tmp_path / "ours.parquet").read_bytes() == (tmp_path / "pyarrow.parquet").read_bytes()
    assert theirs[1] - theirs[0] > 60, f"pyarrow's writer (MB): {theirs}; the test shows nothing"
    assert ours[1] - ours[0] < 15, f"ParquetFile's peak (MB) after 1 and 60 row groups: {ours}"

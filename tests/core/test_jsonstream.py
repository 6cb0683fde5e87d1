"""The incremental JSON array reader: equal to json.loads for any array, any chunking,
any formatting; bounded memory on a large file."""

from __future__ import annotations

import io
import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aml_exportkit.errors import SourceError
from aml_exportkit.jsonstream import iter_json_array

VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
# Objects shaped like Django's, with strings that contain the separator the fast path
# looks for.
OBJECTS = st.builds(
    lambda pk, data: {"model": "result.result", "pk": pk, "fields": {"json_data": data}},
    st.integers(),
    VALUES | st.just('}, {"model": ') | st.just({"x": '}, {"model": '}),
)


def read_all(data: bytes, read_size: int) -> list[Any]:
    return [
        x
        for batch in iter_json_array(io.BytesIO(data), name="f.json", read_size=read_size)
        for x in batch
    ]


@settings(max_examples=150, deadline=None)
@given(
    items=st.lists(OBJECTS | VALUES, max_size=25),
    read_size=st.integers(1, 300),
    indent=st.sampled_from([None, 2]),
)
def test_equals_json_loads(items: list[Any], read_size: int, indent: int | None) -> None:
    data = json.dumps(items, ensure_ascii=False, indent=indent).encode()
    assert read_all(data, read_size) == json.loads(data)


@pytest.mark.parametrize("big", [2**64 + 1, -(2**63) - 1, 10**40])
def test_integers_beyond_64_bits_stay_exact(big: int) -> None:
    items = [
        {"model": "result.result", "pk": pk, "fields": {"json_data": {"n": big + pk}}}
        for pk in range(50)
    ]
    data = ("[" + ", ".join(json.dumps(o) for o in items) + "]").encode()
    back = read_all(data, 1 << 20)
    assert back == items
    assert all(type(o["fields"]["json_data"]["n"]) is int for o in back)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", ["empty file"]),
        (b'{"a": 1}', ["expected a JSON array", "an object"]),
        (b"[1, 2", ["truncated"]),
        (b'[{"model": "x", "pk": 4}, {"a": NaN}]', ["NaN", "x 4"]),
        (b"[1,,2]", ["malformed", "byte 3"]),
        (b"[1] [2]", ["unexpected data", "byte 4"]),
        (b'["\xff"]', ["invalid UTF-8", "byte 2"]),
        (b'["abc', ["truncated"]),
    ],
)
def test_errors_name_the_file_and_place(data: bytes, words: list[str]) -> None:
    for read_size in (2, 1 << 20):
        with pytest.raises(SourceError) as info:
            read_all(data, read_size)
        message = str(info.value)
        assert message.startswith("f.json: ")
        for word in words:
            assert word in message


def test_memory_stays_flat_as_the_file_grows() -> None:
    def peak_for(n: int) -> tuple[int, int]:
        obj = {
            "model": "result.result",
            "pk": 0,
            "fields": {"json_data": {"text": "x" * 200, "values": list(range(20))}},
        }
        parts = []
        for pk in range(n):
            obj["pk"] = pk
            parts.append(json.dumps(obj))
        data = ("[" + ", ".join(parts) + "]").encode()
        tracemalloc.start()
        count = 0
        for batch in iter_json_array(io.BytesIO(data), name="r.json", read_size=64 << 10):
            count += len(batch)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == n
        return len(data), peak

    small_size, small_peak = peak_for(5_000)
    big_size, big_peak = peak_for(40_000)
    assert big_size > 7 * small_size
    # The window, not the file, bounds memory: 8x the data, about the same peak.
    assert big_peak < 2 * small_peak
    assert big_peak < big_size / 4

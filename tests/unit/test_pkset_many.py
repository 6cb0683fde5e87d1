"""PkSet's many-at-once operations (the engine's duplicate-key checks) agree with one key at a
time: the same pages, and the same key reported as already there."""

from __future__ import annotations

import array
import importlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aml_exportkit.engine import native
from aml_exportkit.graph import PkSet


def chunk(*keys: int) -> bytes:
    return array.array("q", keys).tobytes()


@pytest.fixture(params=["kernel", "numpy", "no-numpy"])
def numpy_or_not(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param != "kernel":  # (the kernel, when built, comes first: switched off here)
        monkeypatch.setenv(native.ENV_SWITCH, "0")
    elif not native.available():
        pytest.skip("the native kernel is not built here")
    if request.param == "no-numpy":
        real = importlib.import_module

        def without_numpy(name: str, *args: Any) -> Any:
            if name == "numpy":
                raise ImportError(name)
            return real(name, *args)

        monkeypatch.setattr(importlib, "import_module", without_numpy)


def test_add_many_matches_add(numpy_or_not: None) -> None:
    many, single = PkSet(), PkSet()
    for keys in [(5, 70_000, 1 << 40), (6, 65_535, 65_536), (), (131_072, 7)]:
        assert many.add_many(chunk(*keys)) is None
        for pk in keys:
            assert single.add(pk)
    assert many._pages == single._pages
    assert many.add_many(chunk(1_000, 70_000, 2_000)) == 70_000
    assert many.add_many(chunk(-3, -4)) is None
    assert many.add_many(chunk(-4)) == -4
    assert PkSet().add_many(chunk(9, 3, 9)) == 9


@given(
    st.lists(st.integers(0, 300_000), max_size=40, unique=True),
    st.lists(st.integers(-5, 300_000), max_size=40, unique=True),
)
def test_merge_is_adding_one_by_one(first: list[int], second: list[int]) -> None:
    a, b = PkSet(), PkSet()
    for pk in first:
        a.add(pk)
    for pk in second:
        b.add(pk)
    before = {n: bytes(p) for n, p in a._pages.items()}
    common = set(first) & set(second)
    found = a.merge(b)
    if common:
        assert found in common
        assert {n: bytes(p) for n, p in a._pages.items()} == before  # left as it was
    else:
        assert found is None
        one = PkSet()
        for pk in first + second:
            assert one.add(pk)
        assert a._pages == one._pages
        assert a._other == one._other

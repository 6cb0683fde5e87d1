"""The native kernel (``_speedups.c``) against the Python code it stands in for.

Every function of the kernel has a Python counterpart that stays the reference: the
column-wise flattener and cell formatting of ``tabular/render.py``, ``json.loads`` and
``repr``. These tests generate JSON and compare the two, and check that whatever the
kernel cannot treat exactly as Python does is refused (the engine then reads that chunk
with the Python reference reading).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aml_exportkit.engine import native
from aml_exportkit.engine.render import ColumnFlattener, column_types, join_rows, value_cells
from aml_exportkit.flatten import ColumnRegistry, Flattener, FlattenOptions
from aml_exportkit.graph import PkSet
from aml_exportkit.schema import RESULT

if not native.available():
    if os.environ.get("CI") == "true":
        pytest.fail("the native kernel was not built", pytrace=False)
    pytest.skip("the native kernel is not built here", allow_module_level=True)

from aml_exportkit.engine import _speedups as kernel

NAMES = tuple(f.name for f in RESULT.fields)

# Keys without the separator or brackets, so that two paths never share a column name
# (a clash is the flattener's error either way, tested elsewhere).
keys = st.text(alphabet='ab,"\n\\é\x01 ', max_size=3)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**53, 2**53 + 1, -(2**53), -(2**53) - 1, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6),
    st.sampled_from(["", ",", '"', "a\r\nb", "=1+2", "é,ü", "\x00\x1f\x7f"]),
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(keys, kids, max_size=3),
    max_leaves=12,
)
options = st.builds(
    FlattenOptions,
    max_depth=st.sampled_from([None, 0, 1, 2]),
    lists=st.sampled_from(["json", "index"]),
)


def _flattener(opts: FlattenOptions) -> ColumnFlattener:
    return ColumnFlattener(Flattener(opts, "result_json", "result_json", ColumnRegistry()))


def _python(docs: list[Any], opts: FlattenOptions) -> dict[str, tuple[list[str], set[type]]]:
    cols = _flattener(opts).columns(docs)
    return {n: (value_cells(v, set(map(type, v))), column_types(v)) for n, v in cols.items()}


def _native(texts: list[bytes], opts: FlattenOptions) -> dict[str, tuple[list[str], set[type]]]:
    cols = _flattener(opts).native_columns(texts, kernel)
    return {n: (c.cells, c.types) for n, c in cols.items()}


def _dumps(value: Any, style: int) -> bytes:
    if style == 0:
        return json.dumps(value).encode()  # as Django writes json_data
    if style == 1:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return json.dumps(value, indent=1).encode()  # whitespace everywhere


@settings(max_examples=400, deadline=None)
@given(st.lists(values, min_size=1, max_size=6), options, st.integers(0, 2))
def test_flatten_gives_the_python_cells_and_types(
    docs: list[Any], opts: FlattenOptions, style: int
) -> None:
    texts = [_dumps(d, style) for d in docs]
    assert _native(texts, opts) == _python([json.loads(t) for t in texts], opts)


@st.composite
def number_tokens(draw: st.DrawFn) -> str:
    """JSON number tokens in every spelling the grammar allows (not only Python's)."""
    sign = draw(st.sampled_from(["", "-"]))
    whole = draw(st.sampled_from(["0", "7", "10", "123456789", "9007199254740993"]))
    frac = draw(st.sampled_from(["", ".0", ".5", ".000001", ".1000", ".12345678901234567890"]))
    exp = draw(st.sampled_from(["", "e5", "E-5", "e+0", "e-320", "e300", "E16", "e-4", "e-5"]))
    return sign + whole + frac + exp


def _representable(token: str, value: float) -> bool:
    """Whether a double holds the token without overflow or underflow to zero."""
    mantissa = token.lower().split("e")[0]
    return math.isfinite(value) and (value != 0 or not any(c in "123456789" for c in mantissa))


@settings(max_examples=300, deadline=None)
@given(st.lists(number_tokens(), min_size=1, max_size=4))
def test_numbers_in_any_spelling(tokens: list[str]) -> None:
    parsed = [json.loads(t) for t in tokens]
    if not all(map(_representable, tokens, parsed)):
        return  # 1e400 and 1e-400 the kernel refuses (test_flatten_refuses_…)
    opts = FlattenOptions()
    texts = [t.encode() for t in tokens]
    assert _native(texts, opts) == _python(parsed, opts)
    listed = [f"[{t}]".encode() for t in tokens]
    assert _native(listed, opts) == _python([json.loads(t) for t in listed], opts)


def test_repr_of_many_doubles() -> None:
    rng = random.Random(6)
    doubles = [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(20_000)]
    doubles += [rng.random() * 10 ** rng.randint(-30, 30) for _ in range(20_000)]
    doubles += [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e16, 1e15, 1e-4, 1e-5]
    doubles += [0.1, 0.3, 2 / 3, 100.0, 123456789012345678.0, 9007199254740993.0]
    doubles = [d for d in doubles if math.isfinite(d)]
    doc = json.dumps(doubles).encode()
    ((cells, bits),) = kernel.flatten([doc], 0, False).values()
    assert bits == 64
    assert cells == ['"[' + ",".join(map(repr, doubles)) + ']"']
    flat = kernel.flatten([json.dumps(d).encode() for d in doubles], -1, False)
    assert flat[()][0] == [repr(d) for d in doubles]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(max_size=5), min_size=3, max_size=3), max_size=5))
def test_join_rows_is_the_python_join(rows: list[list[str]]) -> None:
    parts = [list(column) for column in zip(*rows, strict=True)] if rows else []
    if not parts:
        return
    assert kernel.join_rows(parts, len(rows)) == join_rows(parts, len(rows)).encode()


fields = st.fixed_dictionaries(
    {name: (values if name == "json_data" else scalars) for name in NAMES}
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2**70), 2**70), fields), max_size=5), st.randoms())
def test_parse_columns_is_json_loads(elements: list[Any], rnd: random.Random) -> None:
    objects = []
    for pk, values_ in elements:
        order = list(NAMES)
        rnd.shuffle(order)  # any key order
        fields_ = {k: values_[k] for k in order}
        objects.append({"model": "result.result", "pk": pk, "fields": fields_})
    body = ", ".join(json.dumps(o) for o in objects).encode()
    pks, columns = kernel.parse_columns(body, NAMES)
    expected = json.loads(b"[" + body + b"]")

    def same(a: Any, b: Any) -> bool:
        return type(a) is type(b) and repr(a) == repr(b)

    assert all(map(same, pks, [o["pk"] for o in expected]))
    for name, column in zip(NAMES, columns, strict=True):
        want = [o["fields"][name] for o in expected]
        if name == "json_data":
            assert [json.loads(t) for t in column] == want
        else:
            assert len(column) == len(want), name
            assert all(map(same, column, want)), name


@pytest.mark.parametrize(
    "doc",
    [
        b"NaN",
        b'{"a": Infinity}',
        b"1e400",
        b"-1e400",
        b"1e-400",
        b'"\\ud800"',
        b'"\\udc00x"',
        b'{"a": 1, "a": 2}',
        b'{"a": {"b": 1}, "a": {"c": 2}}',
        b'[{"a": 1, "a": 2}]',
        b'"\xff"',
        b'"\xed\xa0\x80"',
        b'"\xc0\xaf"',
        b'"a\x01"',
        b"",
        b"tru",
        b'"abc',
        b"01",
        b"1.",
        b"-",
        b"[1,]",
        b"[1] x",
        b'{"a" 1}',
        b"{'a': 1}",
    ],
)
def test_flatten_refuses_what_python_would_read_otherwise(doc: bytes) -> None:
    with pytest.raises(ValueError, match=r"^row 0: .* at byte \d+$"):
        kernel.flatten([doc], -1, False)


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        (b'{"a\\nb": 1}', b'{"a\nb": 1}'),  # a key known from its escaped form
        (b'{"a": "x\\ny"}', b'{"a": "x\ny"}'),  # a value cached from its escaped form
        (b'{"a": "\xc3\xa9"}', b'{"a": "\xc3"}'),
    ],
)
def test_no_shortcut_takes_bad_text(good: bytes, bad: bytes) -> None:
    """Known keys and cached values are matched by their raw bytes; a raw control
    character or broken UTF-8 must still be refused after a valid row."""
    kernel.flatten([good, good], -1, False)
    with pytest.raises(ValueError, match=r"^row 1: "):
        kernel.flatten([good, bad], -1, False)


GOOD = json.dumps(
    {"model": "result.result", "pk": 1, "fields": dict.fromkeys(NAMES, None)}
).encode()


@pytest.mark.parametrize(
    "body",
    [
        GOOD.replace(b'"pk": 1', b'"pk": 1, "extra": 2'),
        GOOD.replace(b'"result.result"', b'"session.session"'),
        GOOD.replace(b'"comment": null, ', b""),
        GOOD.replace(b'"comment": null', b'"comment": null, "comment": null'),
        GOOD.replace(b'"comment": null', b'"unknown": null'),
        b'{"model": "result.result", "pk": 1, "fields": []}',
        b"[]",
        GOOD + b" " + GOOD,
        GOOD[:-5],
    ],
)
def test_parse_columns_refuses_other_shapes(body: bytes) -> None:
    with pytest.raises(ValueError, match=r" at byte \d+$"):
        kernel.parse_columns(body, NAMES)


def test_parse_columns_of_nothing() -> None:
    pks, columns = kernel.parse_columns(b"  ", NAMES)
    assert pks == []
    assert all(c == [] for c in columns)


def test_switch_turns_the_kernel_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert native.kernel() is None
    monkeypatch.delenv(native.ENV_SWITCH)
    assert native.kernel() is kernel


created_at = st.one_of(
    st.datetimes(
        min_value=__import__("datetime").datetime(1, 1, 1),
        max_value=__import__("datetime").datetime(9999, 12, 31, 23, 59, 59),
    ).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S") + f".{d.microsecond // 1000:03d}Z"),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.from_regex(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z\Z"),
    st.sampled_from(
        [
            "2023-02-29T10:00:00Z",
            "2024-02-29T10:00:00Z",
            "1900-02-29T00:00:00.000Z",
            "2000-02-29T00:00:00.000Z",
            "0000-01-01T00:00:00Z",
            "2024-07-22T24:00:00Z",
            "2024-07-22T10:26:50.911+00:00",
            "2024-07-22 10:26:50Z",
            "2024-07-22T10:26:50.9Z",
            "２０２４-07-22T10:26:50Z",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(created_at, min_size=1, max_size=4))
def test_created_texts_is_the_python_conversion(values: list[str]) -> None:
    from aml_exportkit.engine.chunks import StandDown, created_texts

    def python() -> Any:
        # the Python code alone (the kernel switched off), or its refusal
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(native.ENV_SWITCH, "0")
            try:
                return created_texts(values)
            except StandDown:
                return StandDown

    fast = kernel.created_texts(values)
    if fast is not None:
        assert fast == python()
    try:
        assert created_texts(values) == python()
    except StandDown:
        assert python() is StandDown


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=5), st.sampled_from(["", ',"', "é\n"]))))
def test_str_cells_is_the_python_quoting(values: list[str | None]) -> None:
    from aml_exportkit.engine.render import str_cells

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(native.ENV_SWITCH, "0")
        expected = str_cells(values)
    assert kernel.str_cells(values) == expected
    assert kernel.str_cells([*values, 1.5]) is None  # another type: the Python code decides


#: Text for MUSCLE's cells: every character the csv writer may quote for, and wider ones
#: (two- and four-byte characters change the string's kind in CPython).
_CSV_TEXT = (
    st.text(alphabet=st.sampled_from(["a", ",", '"', "\r", "\n", " ", "\x00", "\t", "é", "€", "𝄞"]))
    | st.text()
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(_CSV_TEXT, max_size=8), line_end=st.sampled_from(["\r\n", "\n", "\r"]))
def test_csv_quote_is_the_csv_writers_quoting(values: list[str], line_end: str) -> None:
    """The kernel quotes each cell as Python's csv writer does (``csv_cells``, the
    reference), and ``csv_quoted`` gives the same cells with the kernel switched off."""
    from aml_exportkit.engine.muscle import _specials, csv_cells, csv_quoted

    reference = csv_cells(values, line_end)
    expected = [reference[v] for v in values]
    assert kernel.csv_quote(values, _specials(line_end)) == expected
    assert csv_quoted(values, line_end) == expected
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(native.ENV_SWITCH, "0")
        assert csv_quoted(values, line_end) == expected


def test_csv_quote_refuses_what_it_does_not_quote_like_the_writer() -> None:
    """A cell that is not a string, a special that is not ASCII, or specials without the
    quote are refused: the kernel never guesses."""
    with pytest.raises(TypeError):
        kernel.csv_quote(["a", 1], ',"')
    with pytest.raises(ValueError, match="ASCII"):
        kernel.csv_quote(["a"], ',"é')
    with pytest.raises(ValueError, match="quote must be special"):
        kernel.csv_quote(["a"], ",")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)), max_size=5))
def test_utc_texts_is_isoformat(values: list[Any]) -> None:
    assert kernel.utc_texts(values) == [d.isoformat(timespec="microseconds") for d in values]
    assert kernel.utc_texts(tuple(values)) == kernel.utc_texts(values)


def test_utc_texts_leaves_other_zones_to_python() -> None:
    import datetime as dt

    utc = dt.datetime(2024, 7, 1, 8, 1, 40, 151000, tzinfo=dt.UTC)
    assert kernel.utc_texts([utc]) == ["2024-07-01T08:01:40.151000+00:00"]
    assert kernel.utc_texts([utc, utc.replace(tzinfo=dt.timezone(dt.timedelta(hours=2)))]) is None
    assert kernel.utc_texts([utc.replace(tzinfo=None)]) is None
    assert kernel.utc_texts([utc, "2024"]) is None


def _mutations(draw: st.DrawFn) -> bytes:
    """Valid JSON text with a few bytes changed, cut short or doubled: the kernel must
    refuse or accept it, never crash or read past it."""
    text = bytearray(_dumps(draw(values), draw(st.integers(0, 2))))
    for _ in range(draw(st.integers(0, 3))):
        if not text:
            break
        at = draw(st.integers(0, len(text) - 1))
        text[at] = draw(st.sampled_from(list(b'"\\{}[],:0eE-.\x00\x80\xff tnf')))
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    return bytes(text)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.composite(_mutations)(), min_size=1, max_size=4), options)
def test_flatten_survives_broken_text(docs: list[bytes], opts: FlattenOptions) -> None:
    limit = -1 if opts.max_depth is None else opts.max_depth
    try:
        kernel.flatten(docs, limit, opts.lists == "index")
    except ValueError:
        return
    # accepted: then Python reads every text as the same JSON
    assert _native(docs, opts) == _python([json.loads(d) for d in docs], opts)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_parse_columns_survives_any_bytes(head: bytes, tail: bytes) -> None:
    with contextlib.suppress(ValueError):
        kernel.parse_columns(head + GOOD + tail, NAMES)
    with contextlib.suppress(ValueError):
        kernel.parse_columns(head, NAMES)


def test_no_memory_kept_between_calls() -> None:
    """Every object and buffer the kernel makes is released (on errors too): memory traced
    by tracemalloc does not grow over repeated calls."""
    import gc
    import tracemalloc

    docs = [
        _dumps({"a": [1, 2.5, "x"], "b": {"c": "y,z", "d": None}, "e": i}, 0) for i in range(50)
    ]
    body = b", ".join([GOOD] * 20)
    bad = [*docs, b'{"a": NaN}']

    def calls() -> None:
        kernel.flatten(docs, -1, False)
        kernel.flatten(docs, 1, True)
        kernel.parse_columns(body, NAMES)
        kernel.join_rows([["a"] * 10, ["é"] * 10], 10)
        kernel.str_cells(["a,b", None, "", "c"])
        kernel.csv_quote(["a,b", "", 'x"é', "c"], ',"\r\n')
        kernel.created_texts(["2024-07-22T10:26:50.911Z"])
        with contextlib.suppress(ValueError):
            kernel.flatten(bad, -1, False)
        with contextlib.suppress(ValueError):
            kernel.parse_columns(body + b", {", NAMES)

    for _ in range(20):  # warm up caches (interned strings, free lists)
        calls()
    gc.collect()
    tracemalloc.start()
    try:
        calls()
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(300):
            calls()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 20_000, grown


# Keys near page edges (65,536 keys a page), in a few pages, and some negative ones.
pks = st.one_of(
    st.integers(0, 3 << 16),
    st.sampled_from([0, 65535, 65536, 131071, 2**31 - 1, 2**40, 2**63 - 1]),
    st.integers(-(2**63), -1),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(pks, max_size=40), st.lists(pks, max_size=40))
def test_pkset_add_is_one_key_at_a_time(before: list[int], keys: list[int]) -> None:
    """``PkSet.add_many`` with the kernel (``pkset_add``) gives what ``add_each``, one key at
    a time, gives: the first key already there, and the same keys in the set after."""
    data = struct.pack(f"={len(keys)}q", *keys)
    sets = []
    for _ in range(2):
        pk_set = PkSet()
        for pk in before:
            pk_set.add(pk)
        sets.append(pk_set)
    native_set, reference = sets
    assert native.kernel() is not None
    assert native_set.add_many(data) == reference.add_each(data)
    for pk in [*before, *keys, *(k + 1 for k in keys), *(k - 1 for k in keys)]:
        assert (pk in native_set) == (pk in reference), pk


def test_pkset_add_refuses_a_page_of_another_size() -> None:
    with pytest.raises(TypeError, match="8192"):
        kernel.pkset_add({0: bytearray(10)}, struct.pack("=q", 5))

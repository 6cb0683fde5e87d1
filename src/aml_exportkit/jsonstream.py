"""Incremental parsing of one large JSON array, in bounded memory.

MUSCLE's fixture files are a single line, ``[obj, obj, ...]``, and ``results.json`` grows to
gigabytes. This reader keeps only a window of the file in memory and yields the array's
elements in lists.

Fast path: Django's serializer separates objects with ``}, {"model": ``, so the reader cuts
the window at the last such separator and parses everything before it with one ``orjson``
call. A cut inside a string or a nested value cannot parse as a complete array, so a parse
that succeeds proves the cut was at an element boundary. A window with a run of 19 digits
skips the fast path, because orjson turns integers beyond 64 bits into floats. Anything
else (other formatting, big integers, malformed text) goes through the slow path: the
standard library's ``raw_decode``, which also gives exact error positions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import IO, Any

import orjson

from .errors import SourceError

#: Django's separator between two objects of a fixture list.
_DJANGO_SEPARATOR = b'}, {"model": '
_WHITESPACE = b" \t\r\n"
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]*")
#: The start of a fixture object as Django writes it: its model and primary key.
_HEAD = re.compile(r'\{\s*"model"\s*:\s*"([^"\\]{1,100})"\s*,\s*"pk"\s*:\s*(-?\d{1,20})\s*[,}]')
# Every digit becomes b"0" and everything else a space, so that one C-speed find spots a
# run of 19 digits (the regex above scans about ten times slower).
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_NINETEEN_DIGITS = b"0" * 19
#: One element larger than this is refused, so that a broken file cannot fill memory.
MAX_ELEMENT_BYTES = 256 << 20


#: How deep a record may be nested: arrays and objects within each other, the record's
#: own object counted. A fixture object holds ``json_data`` two levels down, so its
#: ``json_data`` may be nested 252 levels. Deeper records are refused by every source and
#: command alike (docs/bad-input.md): orjson writes no deeper, and every step of an export
#: (parsing, flattening, pickling for the workers) handles this depth.
MAX_NESTING = 254
#: The same rule for a ``json_data`` value on its own (its record's two levels above it).
MAX_JSON_DATA_NESTING = MAX_NESTING - 2


def nesting_ok(value: Any, above: int = 0) -> bool:
    """Whether ``value``, inside ``above`` more levels, is nested at most
    :data:`MAX_NESTING` levels.

    orjson's encoder refuses more than 255 levels, checked in C (measured: 5 to 6 % of the
    time reading ``results.json`` takes): when it writes the value inside one level more,
    the value is within the limit. Otherwise (or when it cannot write the value at all, as
    an integer beyond 64 bits) the levels are counted in Python.
    """
    wrapped = value
    for _ in range(above + 1):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except (orjson.JSONEncodeError, RecursionError):
        return _nesting(value) + above <= MAX_NESTING
    return True


def _nesting(value: Any) -> int:
    """The levels of arrays and objects (lists, tuples, dicts) in ``value``, counted
    without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = tuple(item.values())
        if isinstance(item, list | tuple):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item if isinstance(v, dict | list | tuple))
    return deepest


def _check_nesting(items: list[Any], name: str) -> None:
    if nesting_ok(items):
        return  # (the list adds a level: when it fails, each item is measured on its own)
    item = next((item for item in items if not nesting_ok(item)), None)
    if item is None:
        return
    raise SourceError(
        f"{_describe_element(item)}: nested more than {MAX_NESTING} levels deep (json_data"
        f" may be nested {MAX_JSON_DATA_NESTING}); refusing it",
        file=name,
    )


#: A ``\\u`` escape of a UTF-16 surrogate; a lone one is no Unicode text.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def has_surrogate_escape(text: str | bytes) -> bool:
    """Whether JSON ``text`` may hold a lone surrogate (``"\\ud800"``): orjson refuses one,
    the standard library's parser (the slow path) does not, so its values are checked."""
    if isinstance(text, bytes):
        return _SURROGATE_ESCAPE.search(text.decode("latin-1")) is not None
    return _SURROGATE_ESCAPE.search(text) is not None


def _check_text(items: list[Any], name: str) -> None:
    """Refuse an element with a string (or key) holding a lone UTF-16 surrogate: it is no
    Unicode text, no sink can write it, and MUSCLE's database cannot hold it."""
    for item in items:
        try:
            json.dumps(item, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            code = ord(exc.object[exc.start])
            raise SourceError(
                f"{_describe_element(item)}: a string holds the lone surrogate \\u{code:04x},"
                " which is no Unicode text; refusing it",
                file=name,
            ) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class NumberOutOfRange(ValueError):
    """A JSON number no record may hold: beyond a double's range (``1e400``), or an
    integer with more than :data:`MAX_INT_DIGITS` digits."""


#: The most digits an integer may have: Python's default limit on converting between an
#: integer and its text (which guards against quadratic work), fixed here so that the
#: verdict never depends on the environment (``PYTHONINTMAXSTRDIGITS``).
MAX_INT_DIGITS = 4300


def exact_int(text: str) -> int:
    """A JSON integer, exactly, refusing one with more than :data:`MAX_INT_DIGITS` digits:
    Python can neither read nor write it, and a reader that keeps it (the native kernel
    copies text) must not give another verdict than one that cannot.

    :raises NumberOutOfRange: naming the integer's length.
    """
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise NumberOutOfRange(
            f"the integer {text[:20]}... has {digits:,} digits, more than the"
            f" {MAX_INT_DIGITS:,} an integer may have; refusing it"
        )
    try:
        return int(text)
    except ValueError:  # a lower PYTHONINTMAXSTRDIGITS
        raise NumberOutOfRange(
            f"the integer {text[:20]}... has {digits:,} digits, more than this Python reads"
            " (PYTHONINTMAXSTRDIGITS); refusing it"
        ) from None


def finite_float(text: str) -> float:
    """A JSON number with a fraction or an exponent as a float, refusing one beyond a
    double's range: it would become infinity, which no sink may write in its place (orjson
    refuses such a number too, so every reader gives the same verdict).

    :raises NumberOutOfRange: naming the number as written.
    """
    value = float(text)
    if value in (math.inf, -math.inf):
        shown = text if len(text) <= 40 else f"{text[:37]}..."
        raise NumberOutOfRange(f"the number {shown} is beyond a double's range; refusing it")
    return value


_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=finite_float, parse_int=exact_int
)


def loads_value(text: str) -> Any:
    """One JSON value from ``text`` under the readers' rules: no NaN or Infinity, no number
    beyond a double, no integer longer than :data:`MAX_INT_DIGITS` digits.

    :raises ValueError: for text that is not such a value (also when nested too deeply).
    """
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_NESTING} levels deep") from None


#: Only to name the element that holds an out-of-range number (an integer too long to
#: read becomes 0).
_LENIENT = json.JSONDecoder(parse_int=lambda t: int(t) if len(t) <= MAX_INT_DIGITS else 0)


class _Window:
    """A sliding window over a binary stream."""

    def __init__(self, stream: IO[bytes], read_size: int) -> None:
        self.stream = stream
        self.read_size = read_size
        self.buf = b""
        self.pos = 0
        self.base = 0  # absolute offset of buf[0]
        self.eof = False
        #: Absolute offset before which the fast path already failed once.
        self.slow_until = -1

    def fill(self, at_least: int = 0) -> None:
        """Drop what was consumed and read at least one more chunk (if any is left)."""
        if self.pos:
            self.base += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        want = max(self.read_size, at_least)
        chunks = [self.buf]
        got = 0
        while got < want and not self.eof:
            chunk = self.stream.read(want - got)
            if not chunk:
                self.eof = True
                break
            chunks.append(chunk)
            got += len(chunk)
        self.buf = b"".join(chunks)

    def skip_whitespace(self) -> None:
        """Advance past whitespace, reading more as needed."""
        while True:
            buf, pos = self.buf, self.pos
            n = len(buf)
            while pos < n and buf[pos] in _WHITESPACE:
                pos += 1
            self.pos = pos
            if pos < n or self.eof:
                return
            self.fill()

    def peek(self) -> int | None:
        """The next non-whitespace byte, or None at the end of the stream."""
        self.skip_whitespace()
        return self.buf[self.pos] if self.pos < len(self.buf) else None


def iter_json_array(
    stream: IO[bytes],
    *,
    name: str,
    read_size: int = 4 << 20,
    offset: int = 0,
    after: Any = None,
) -> Iterator[list[Any]]:
    """Yield the elements of the JSON array in ``stream``, a list at a time.

    :param stream: a binary stream holding one JSON array.
    :param name: the file name for error messages.
    :param read_size: bytes read at a time; memory stays a small multiple of it.
    :param offset: the file offset of the stream's first byte, for error messages (the
        engine reads a part of a file's array as an array of its own).
    :param after: the element before the stream's first one, for error messages.
    :raises SourceError: for text that is not one JSON array of valid JSON values, naming
        the file, the byte offset and the last element read before the fault.
    """
    window = _Window(stream, read_size)
    window.base = offset
    window.fill()
    first = window.peek()
    if first is None:
        raise SourceError("empty file, expected a JSON array", file=name)
    if first != ord("["):
        raise SourceError(
            f"expected a JSON array, found {_what_starts(window.buf[window.pos :])}", file=name
        )
    window.pos += 1
    last: Any = after
    if window.peek() == ord("]"):
        window.pos += 1
        _expect_end(window, name)
        return
    while True:
        if not window.eof and len(window.buf) - window.pos < window.read_size:
            window.fill()
        items = _fast_slice(window)
        if not items:
            items, closed = _slow_elements(window, name, last)
            if closed:
                if items:
                    _check_nesting(items, name)
                    yield items
                _expect_end(window, name)
                return
        _check_nesting(items, name)
        last = items[-1]
        yield items


def _fast_slice(window: _Window) -> list[Any] | None:
    """Parse every complete element up to the window's last Django separator, if that works.

    On success the window is left at the first byte of the element after the separator.
    """
    buf, pos = window.buf, window.pos
    if window.base + pos <= window.slow_until:
        return None
    cut = buf.rfind(_DJANGO_SEPARATOR, pos)
    if cut <= pos:
        # Not Django's formatting (or one huge element): parse this window the slow way.
        window.slow_until = window.base + len(buf)
        return None
    if buf[pos:cut].translate(_DIGITS_TO_ZERO).find(_NINETEEN_DIGITS) >= 0:
        # orjson turns integers beyond 64 bits into floats without a word; the standard
        # library keeps them exact. (A long digit run inside a string lands here too.)
        window.slow_until = window.base + cut
        return None
    try:
        items = orjson.loads(b"[" + buf[pos : cut + 1] + b"]")
    except orjson.JSONDecodeError:
        # Parse this stretch element by element; trying the whole window again after
        # each element would be quadratic.
        window.slow_until = window.base + cut
        return None
    window.pos = cut + 3  # past '}, '
    return items  # type: ignore[no-any-return]


def _slow_elements(window: _Window, name: str, last: Any) -> tuple[list[Any], bool]:
    """Parse elements with the standard library from the window's position: until the
    window is used up, the fast path may take over again, or the array closes.

    The window is decoded once per call, so the work stays linear in its size.
    Returns the elements and whether the closing ``]`` was reached.
    """
    while True:
        buf, pos = window.buf, window.pos
        raw = buf[pos:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if window.eof or exc.start < len(raw) - 3:
                raise SourceError(
                    f"invalid UTF-8 at byte {window.base + pos + exc.start}"
                    f" (after {_describe_element(last)})",
                    file=name,
                ) from None
            text = raw[: exc.start].decode("utf-8")  # a character cut by the chunk end
        items: list[Any] = []
        i = consumed = 0
        consumed_bytes = 0
        closed = False
        n = len(text)
        while True:
            i = _skip_ws(text, i)
            try:
                item, end = _DECODER.raw_decode(text, i)
            except json.JSONDecodeError as exc:
                unterminated = exc.msg.startswith("Unterminated string")
                if not window.eof and (unterminated or exc.pos >= n - 6):
                    break
                offset = window.base + pos + consumed_bytes
                offset += len(text[consumed : exc.pos].encode("utf-8"))
                truncated = window.eof and (unterminated or exc.pos >= len(text.rstrip()))
                state = "truncated" if truncated else "malformed"
                raise SourceError(
                    f"{state} JSON at byte {offset}: {exc.msg}"
                    f" (after {_describe_element(items[-1] if items else last)})",
                    file=name,
                ) from None
            except RecursionError:
                # too deep to parse at all: name the element by its head, as Django writes it
                head = _HEAD.match(text, i)
                shown = (
                    _describe_element({"model": head[1], "pk": int(head[2])})
                    if head
                    else f"the element after {_describe_element(items[-1] if items else last)}"
                )
                raise SourceError(
                    f"{shown}: nested more than {MAX_NESTING} levels deep (json_data may be"
                    f" nested {MAX_JSON_DATA_NESTING}); refusing it",
                    file=name,
                ) from None
            except NumberOutOfRange as exc:
                try:
                    shown = _describe_element(_LENIENT.raw_decode(text, i)[0])
                except ValueError:
                    shown = f"after {_describe_element(items[-1] if items else last)}"
                raise SourceError(f"{shown}: {exc}", file=name) from None
            except ValueError as exc:  # NaN, Infinity, -Infinity
                raise SourceError(
                    f"{exc} (after {_describe_element(items[-1] if items else last)})",
                    file=name,
                ) from None
            # A number that ends the window may go on in the next chunk ("0" then ".5").
            if not window.eof and _NUMBER_TAIL.fullmatch(text, end) is not None:
                break
            j = _skip_ws(text, end)
            if j >= n:
                if window.eof:
                    raise SourceError(
                        "truncated JSON: the array is not closed"
                        f" (after {_describe_element(item)})",
                        file=name,
                    )
                break
            if text[j] not in ",]":
                offset = window.base + pos + consumed_bytes
                offset += len(text[consumed:j].encode("utf-8"))
                raise SourceError(
                    f"malformed JSON at byte {offset}: expected ',' or ']' after"
                    f" {_describe_element(item)}",
                    file=name,
                )
            items.append(item)
            consumed_bytes += len(text[consumed : j + 1].encode("utf-8"))
            consumed = i = j + 1
            if text[j] == "]":
                closed = True
                break
            if window.base + pos + consumed_bytes > window.slow_until:
                break  # past the stretch the fast path failed on
        window.pos = pos + consumed_bytes
        if items and has_surrogate_escape(text):
            _check_text(items, name)
        if items or closed:
            return items, closed
        _read_more(window, name, last)


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in " \t\r\n":
        i += 1
    return i


def _read_more(window: _Window, name: str, last: Any) -> None:
    pending = len(window.buf) - window.pos
    if pending > MAX_ELEMENT_BYTES:
        raise SourceError(
            f"an element larger than {MAX_ELEMENT_BYTES >> 20} MiB at byte"
            f" {window.base + window.pos} (after {_describe_element(last)})",
            file=name,
        )
    window.fill(at_least=pending)


def _expect_end(window: _Window, name: str) -> None:
    if window.peek() is not None:
        raise SourceError(
            f"unexpected data after the JSON array at byte {window.base + window.pos}",
            file=name,
        )


def _describe_element(item: Any) -> str:
    if item is None:
        return "the start of the array"
    if isinstance(item, dict) and "pk" in item:
        model = str(item.get("model", "object")).rpartition(".")[2]
        return f"{model} {item['pk']!r}"
    return "the previous element"


def _what_starts(data: bytes) -> str:
    if data[:1] == b"{":
        return "an object"
    if data[:1] == b'"':
        return "a string"
    return f"{data[:16]!r}"

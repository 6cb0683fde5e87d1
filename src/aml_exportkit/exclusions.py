"""Exclusion lists: the ``exclude_file`` of ``[filter]``, and what a manifest may say of them.

The identifiers of excluded participants never leave the run: the manifest records how
many entries each list holds and a sha256 of the lists (:func:`digest`), and the template
text it copies has their values withheld (:func:`withhold_in_text`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import attrs

from .errors import TemplateError
from .selection import Filter

#: The ``[filter]`` keys whose values name participants or sessions.
LIST_KEYS = ("exclude_participants", "exclude_sessions", "exclude_participant_id_url")
_WHOLE_NUMBER = re.compile(r"[+-]?\d+")


def parse_exclude_file(text: str) -> tuple[int | str, ...]:
    """The entries of an exclude file: a whole number is a participant pk; a line in double
    quotes is the text inside them (JSON's escapes); any other line is text, stripped.
    Blank lines and lines starting with ``#`` are skipped. A leading byte order mark (as
    Windows editors and spreadsheets write it) is not part of the first entry: left in,
    it would turn a pk into text that matches no one.

    :raises ValueError: for a quoted line that is not one JSON string.
    """
    entries: list[int | str] = []
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _WHOLE_NUMBER.fullmatch(line):
            entries.append(int(line))
        elif line.startswith('"'):
            try:
                value = json.loads(line)
            except ValueError:
                value = None
            if not isinstance(value, str):
                raise ValueError(f"line {number}: a quoted entry must be one JSON string")
            entries.append(value)
        else:
            entries.append(line)
    return tuple(entries)


def read_exclude_file(flt: Filter, folder: Path, template_file: str) -> Filter:
    """``flt`` with the entries of its ``exclude_file`` (relative to ``folder``) read.

    :raises TemplateError: for a file that cannot be read or parsed, naming it.
    """
    if flt.exclude_file is None:
        return flt
    path = Path(flt.exclude_file).expanduser()
    if not path.is_absolute():
        path = folder / path
    try:
        entries = parse_exclude_file(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TemplateError(
            f"cannot read the exclude file {path}: {reason}",
            file=template_file,
            key_path="filter.exclude_file",
        ) from None
    return attrs.evolve(flt, excluded_from_file=entries)


def _public_keys() -> list[str]:
    return [f.name for f in attrs.fields(Filter) if not f.metadata.get("internal")]


def _token(value: int | str) -> str:
    return f"pk:{value}" if type(value) is int else f"text:{value}"


def digest(flt: Filter) -> dict[str, Any] | None:
    """What the manifest says of the exclusions: entries per list and one sha256.

    The sha256 is taken over the distinct entries, sorted by code point, each on a line
    of its own (newline-terminated): ``pk:N`` or ``text:VALUE`` for participants (inline
    and from the file alike), ``session:N``, ``pattern:P``; so a list can be checked
    against a manifest without the manifest holding it. None without exclusions.
    """
    if not flt.excludes:
        return None
    participants = sorted({_token(v) for v in flt.excluded_participants})
    sessions = sorted({f"session:{v}" for v in flt.exclude_sessions})
    patterns = sorted({f"pattern:{v}" for v in flt.exclude_participant_id_url})
    lines = sorted([*participants, *sessions, *patterns])
    return {
        "participants_listed": len(participants),
        "sessions_listed": len(sessions),
        "patterns": len(patterns),
        "sha256": hashlib.sha256("".join(f"{x}\n" for x in lines).encode("utf-8")).hexdigest(),
    }


def manifest_filter(flt: Filter) -> dict[str, Any]:
    """The filter as the manifest records it: the exclusion lists as counts only."""
    shown: dict[str, Any] = {}
    for key in _public_keys():
        value = getattr(flt, key)
        if key in LIST_KEYS:
            shown[key] = len(value)
        elif key == "exclude_file":
            shown[key] = None if value is None else Path(value).name
        else:
            shown[key] = value
    return shown


def withhold_in_text(text: str) -> str:
    """A template's TOML text with the arrays of :data:`LIST_KEYS` emptied, each with a
    comment saying how many entries were withheld (the text stays valid TOML)."""
    out: list[str] = []
    pos = 0
    key = re.compile(r"^[ \t]*(" + "|".join(LIST_KEYS) + r")[ \t]*=[ \t]*(?=\[)", re.M)
    while (m := key.search(text, pos)) is not None:
        end = _array_end(text, m.end())
        if end is None:  # not an array we can read: leave the rest alone (TOML rejects it)
            break
        count = _array_count(text[m.end() : end])
        out.append(text[pos : m.end()])
        out.append(f"[]  # {count} {'entry' if count == 1 else 'entries'} withheld")
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _array_end(text: str, start: int) -> int | None:
    """The index just past the TOML array that opens at ``start``."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c == "#":
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if c in "\"'":
            triple = text.startswith(c * 3, i)
            closing = c * 3 if triple else c
            j = i + len(closing)
            while j < n:
                if c == '"' and text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(closing, j):
                    break
                j += 1
            i = j + len(closing)
            continue
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _array_count(array: str) -> int:
    import tomllib

    try:
        return len(tomllib.loads(f"x = {array}")["x"])
    except (tomllib.TOMLDecodeError, TypeError):
        return 0

"""Variable names that SPSS and Stata accept, made from our table's column names.

The rules (also in the README), applied to the columns in table order:

1. Letters are reduced to ASCII (``é`` → ``e``); every character that is not an ASCII
   letter, digit or ``_`` becomes ``_`` (``profile.msi_01`` → ``profile_msi_01``).
2. A name that does not start with a letter gets ``v`` in front (``01.result_score`` →
   ``v01_result_score``); a reserved word gets ``v_`` (``with`` → ``v_with``).
3. Names are cut to the format's length: 64 characters for SPSS, 28 for Stata (Stata allows
   32, but pyreadstat names a variable's value label set after the variable with a number
   appended, and that name has the same limit).
4. Names must differ without regard to case (SPSS ignores case; for Stata it keeps the two
   formats' names alike): the first column keeps its name, a later one that would repeat
   it gets ``_2``, ``_3``, … (cut further so that the suffix fits).

The original column name always stays in the variable label.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Literal, TypeAlias

Format: TypeAlias = Literal["spss", "stata"]

MAX_LENGTH: dict[Format, int] = {"spss": 64, "stata": 28}

_SPSS_RESERVED = frozenset(
    ["all", "and", "by", "eq", "ge", "gt", "le", "lt", "ne", "not", "or", "to", "with"]
)
_STATA_RESERVED = frozenset(
    [
        "_all", "_b", "byte", "_coef", "_cons", "double", "float", "if", "in", "int",
        "long", "_n", "_pi", "_pred", "_rc", "_skip", "str", "strl", "using", "with",
    ]
)  # fmt: skip
_STATA_STR = re.compile(r"str\d+")
_NOT_WORD = re.compile(r"[^A-Za-z0-9_]")


def _reserved(name: str, fmt: Format) -> bool:
    low = name.lower()
    if fmt == "spss":
        return low in _SPSS_RESERVED
    return low in _STATA_RESERVED or _STATA_STR.fullmatch(low) is not None


def clean_name(column: str, fmt: Format) -> str:
    """The name rules 1 to 3 make of one column name (before collisions are resolved)."""
    ascii_text = unicodedata.normalize("NFKD", column).encode("ascii", "ignore").decode("ascii")
    name = _NOT_WORD.sub("_", ascii_text)
    if not name or not name[0].isalpha():
        name = "v" + name
    if _reserved(name, fmt):
        name = "v_" + name
    return name[: MAX_LENGTH[fmt]]


def variable_names(columns: Sequence[str], fmt: Format) -> list[str]:
    """Valid, distinct variable names for ``columns``, in the same order."""
    limit = MAX_LENGTH[fmt]
    used: set[str] = set()
    names: list[str] = []
    for column in columns:
        base = clean_name(column, fmt)
        name = base
        number = 2
        while name.lower() in used or _reserved(name, fmt):
            suffix = f"_{number}"
            name = base[: limit - len(suffix)] + suffix
            number += 1
        used.add(name.lower())
        names.append(name)
    return names


def renamed(columns: Iterable[str], names: Iterable[str]) -> dict[str, str]:
    """``{original: new}`` for the columns whose name changed."""
    return {c: n for c, n in zip(columns, names, strict=True) if c != n}

"""The engine's native kernel, ``_speedups.c``, when it is built and not switched off.

The kernel parses a chunk of ``results.json`` and flattens ``json_data`` straight into
finished CSV cells, the work that costs the engine most of its time in Python
(``docs/performance.md``). The Python code it replaces stays the reference:
``tests/native`` checks that both give the same cells and types, and the engine with the
kernel writes byte for byte what the recorded snapshots hold. ``EXPORTKIT_NATIVE=0`` switches the
kernel off; without a C compiler at install time it is simply absent.
"""

from __future__ import annotations

import os
from types import ModuleType

from ..tabular.table import Absent, BigInt

ENV_SWITCH = "EXPORTKIT_NATIVE"

try:
    from . import _speedups as _kernel

    _LOADED: ModuleType | None = _kernel
except ImportError:  # built without a C compiler
    _LOADED = None

#: The kernel's bits for the types a flattened column holds (as ``column_types`` has them).
TYPE_BITS: tuple[tuple[int, type], ...] = (
    (1, str),
    (2, int),
    (4, BigInt),
    (8, float),
    (16, bool),
    (32, type(None)),
    (64, list),
    (128, dict),
    (256, Absent),  # some rows lack the path
)


def kernel() -> ModuleType | None:
    """The kernel module, or None when it is not built or ``EXPORTKIT_NATIVE=0``."""
    if os.environ.get(ENV_SWITCH) == "0":
        return None
    return _LOADED


def available() -> bool:
    """Whether the kernel was built (whatever the switch says)."""
    return _LOADED is not None


def types_of(bits: int) -> set[type]:
    """The Python types that the kernel's type bits stand for."""
    return {t for bit, t in TYPE_BITS if bits & bit}

"""Fixtures of the engine's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aml_exportkit import engine
from aml_exportkit.engine import workers


@pytest.fixture
def no_stand_down(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if the engine stood down for any reason but ``EXPORTKIT_ENGINE=0``
    (the plain path asked for by a test comparing the two): issue 13 wants one path, and a
    stand-down reaching the run would send it to another. Whatever ``EXPORTKIT_ENGINE``
    a test sets, every decline of the run is noted here and checked at the end."""
    declined: list[str] = []
    decline = getattr(workers, "_decline", None)
    if decline is None:  # (no plain path left to stand down to)
        yield
        return

    def noting(reason: str) -> bool:
        declined.append(reason)
        return decline(reason)

    monkeypatch.setattr(workers, "_decline", noting)
    yield
    assert [r for r in declined if r != f"{engine.ENV_SWITCH}=0"] == []

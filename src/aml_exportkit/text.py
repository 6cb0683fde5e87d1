"""Wording shared by messages and generated text."""

from __future__ import annotations


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, the noun plural unless ``n`` is one: ``1 row``, ``1,024 rows``.

    :param noun: the singular; its plural adds ``s``.
    """
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"

"""What spans chunks, checked in the parent as the chunks arrive in order.

A worker checks its own chunk (:mod:`.chunks`); what no single chunk can see is checked
here, on each chunk's few summary values and its keys as packed ``int64`` bytes: no owner
(session or participant) split across two chunks, (owner, pk) order from one chunk to the
next, keys unique across chunks, and the count of rows and of kept missing references.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..graph import PkSet
from .chunks import StandDown

if TYPE_CHECKING:
    from ..graph import ResultChecker


class Spans:
    """The running checks over a sequence of chunks.

    :param disorder: the message when a chunk starts before the previous one ended.
    :param errors: the graph's checks whose errors a repeated key or a break in order
        raise, naming the record as the graph names it (None: :class:`StandDown`).
    """

    def __init__(
        self,
        disorder: str = "results are not ordered by (session, pk) across chunks",
        errors: ResultChecker | None = None,
    ) -> None:
        self.disorder = disorder
        self.errors = errors
        #: the keys of every chunk so far
        self.keys = PkSet()
        self.rows = 0
        #: rows kept although their section is missing
        self.missing = 0
        #: the CRC-32 and length of each chunk's bytes, when the source reports them
        self.crcs: list[tuple[int, int]] = []
        self._last: tuple[int, int] | None = None
        self._edge: int | None = None
        self._edged = False

    def take(
        self,
        *,
        rows: int,
        first: tuple[int, int] | None,
        last: tuple[int, int] | None,
        pks: bytes,
        missing: int,
        edges: tuple[int | None, int | None] | None = None,
        crc: tuple[int, int] | None = None,
    ) -> None:
        """Check one chunk against the ones before it.

        :param first: the (owner, pk) of its first kept row (None: it kept none).
        :param last: the (owner, pk) of its last kept row.
        :param pks: its keys as native ``int64`` bytes.
        :param edges: its first and last owner, kept or not (None: owners may span chunks).
        :raises StandDown: when an owner spans two chunks, the order breaks or a key repeats.
        """
        if edges is not None and edges[0] is not None:
            if self._edged and edges[0] == self._edge:
                raise StandDown("a session's results span two chunks")
            self._edge, self._edged = edges[1], True
        disordered = first is not None and self._last is not None and not self._last < first
        duplicate = self.keys.add_many(pks)
        if duplicate is not None:
            if self.errors is None:
                raise StandDown(f"duplicate primary key {duplicate}")
            # (the first of the chunk's keys, in output order, that an earlier chunk holds:
            # the record the graph names)
            if not (disordered and duplicate != first[1]):  # type: ignore[index]
                raise self.errors.duplicate(duplicate)
        if disordered:
            assert first is not None
            assert self._last is not None
            if self.errors is None:
                raise StandDown(self.disorder)
            raise self.errors.disorder(first, self._last)
        if first is not None:
            self._last = last
        self.rows += rows
        self.missing += missing
        if crc is not None:
            self.crcs.append(crc)

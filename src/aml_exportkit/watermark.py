"""Watermarks: what a run exported, per block, so that a later run exports only what is new
or changed (``exportkit run --since PREVIOUS/manifest.json``).

Every manifest holds one (``watermark``): for each block, the snapshot time, the highest
session and trial result pks seen, every exported session's pk (packed: sorted, as
zigzag varint deltas, zlib-compressed, base64), and, for each session unfinished then, its
number of trial results and its highest result pk. :class:`~aml_exportkit.selection.Since`
turns the earlier watermark into the rule of the next run; the next manifest's watermark is
the earlier one with this run's added, so that a chain of parts needs only its last
manifest.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import SourceError
from .graph import RecordGraph
from .manifest import parse_manifest
from .selection import BlockMark, Since

#: How the session pks of a block are packed.
ENCODING = "zigzag-varint-delta+zlib+base64"
FORMAT_VERSION = 1


def encode_pks(pks: Iterable[int]) -> str:
    """Sorted distinct ``pks`` as zigzag varint deltas, zlib-compressed, base64 (ASCII)."""
    out = bytearray()
    previous = 0
    for pk in sorted(set(pks)):
        delta = pk - previous
        previous = pk
        value = delta * 2 if delta >= 0 else -delta * 2 - 1
        while value >= 0x80:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        out.append(value)
    return base64.b64encode(zlib.compress(bytes(out), 9)).decode("ascii")


def decode_pks(text: str) -> list[int]:
    """The pks :func:`encode_pks` packed.

    :raises ValueError: for text it did not make.
    """
    try:
        data = zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True))
    except (zlib.error, ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"packed session pks that cannot be read ({exc})") from None
    pks: list[int] = []
    previous = 0
    value = 0
    shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        delta = value >> 1 if not value & 1 else -((value + 1) >> 1)
        previous += delta
        pks.append(previous)
        value = 0
        shift = 0
    if shift:
        raise ValueError("packed session pks end in the middle of a number")
    return pks


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def marks_of(graph: RecordGraph) -> list[BlockMark]:
    """The watermark of every block of ``graph``, once its trial results were read."""
    details = graph.info.details
    # a graph of several sources: the snapshot of the (first) database among them
    times = [details.get("snapshot_time")] + [
        part.get("snapshot_time") for part in details.get("sources", ())
    ]
    snapshot = _iso(next((t for t in times if t is not None), None))
    by_block: dict[int, list[Any]] = {pk: [] for pk in graph.blocks}
    for session in graph.sessions.values():
        if session.block is not None:
            by_block.setdefault(session.block, []).append(session)
    results = graph.open_session_results
    tops = graph.block_result_tops
    marks = []
    for block, sessions in by_block.items():
        marks.append(
            BlockMark(
                block=block,
                slug=graph.block_slug(block),
                seen=frozenset(s.pk for s in sessions),
                open={
                    s.pk: results.get(s.pk, (0, None)) for s in sessions if s.finished_at is None
                },
                max_session_pk=max((s.pk for s in sessions), default=None),
                max_result_pk=tops.get(block),
                snapshot_time=snapshot,
            )
        )
    return marks


def merge(earlier: Since | None, marks: Sequence[BlockMark]) -> list[BlockMark]:
    """This run's ``marks`` over the ``earlier`` watermark: sessions seen by either, open
    sessions as last seen, the higher pks; blocks this run did not read are carried over."""
    before = {m.block: m for m in earlier.marks} if earlier is not None else {}
    merged: list[BlockMark] = []
    for mark in marks:
        old = before.pop(mark.block, None)
        if old is None:
            merged.append(mark)
            continue
        opened = {pk: v for pk, v in old.open.items() if pk not in mark.seen}
        opened.update(mark.open)
        merged.append(
            BlockMark(
                block=mark.block,
                slug=mark.slug or old.slug,
                seen=old.seen | mark.seen,
                open=opened,
                max_session_pk=_top(old.max_session_pk, mark.max_session_pk),
                max_result_pk=_top(old.max_result_pk, mark.max_result_pk),
                snapshot_time=mark.snapshot_time,
            )
        )
    merged.extend(before.values())
    return sorted(merged, key=lambda m: m.block)


def _top(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def as_json(marks: Sequence[BlockMark]) -> dict[str, Any]:
    """The manifest's ``watermark``."""
    return {
        "format": FORMAT_VERSION,
        "blocks": [
            {
                "block": m.block,
                "slug": m.slug,
                "snapshot_time": m.snapshot_time,
                "max_session_pk": m.max_session_pk,
                "max_result_pk": m.max_result_pk,
                "sessions": {"count": len(m.seen), "encoding": ENCODING, "pks": encode_pks(m.seen)},
                "open_sessions": [[pk, count, top] for pk, (count, top) in sorted(m.open.items())],
            }
            for m in marks
        ],
    }


def load_since(path: Path) -> Since:
    """The watermark of the manifest at ``path``, for ``--since``.

    :raises SourceError: naming the file, when it cannot be read, is not an exportkit
        manifest, or holds no watermark this version reads.
    """
    label = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceError(
            "no such file (--since wants an earlier run's manifest.json)", file=label
        ) from None
    except IsADirectoryError:
        raise SourceError(
            "is a folder; --since wants the manifest.json inside it", file=label
        ) from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", file=label) from None
    document = parse_manifest(data, label)
    mark = document.get("watermark")
    if not isinstance(mark, Mapping) or mark.get("format") != FORMAT_VERSION:
        raise SourceError(
            "this manifest holds no watermark (written by an older exportkit, or edited);"
            " run a full export first",
            file=label,
        )
    try:
        marks = tuple(_mark(entry) for entry in mark["blocks"])
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(f"its watermark is damaged ({exc})", file=label) from None
    return Since(marks=marks, manifest_sha256=hashlib.sha256(data).hexdigest(), origin=label)


def _mark(entry: Mapping[str, Any]) -> BlockMark:
    sessions = entry["sessions"]
    if sessions["encoding"] != ENCODING:
        raise ValueError(f"unknown encoding {sessions['encoding']!r}")
    seen = frozenset(decode_pks(sessions["pks"]))
    if len(seen) != sessions["count"]:
        raise ValueError("the session count does not match the packed pks")
    opened = {
        int(pk): (int(count), None if top is None else int(top))
        for pk, count, top in entry["open_sessions"]
    }
    if not set(opened) <= seen:
        raise ValueError("an open session that was not exported")
    return BlockMark(
        block=int(entry["block"]),
        slug=entry.get("slug"),
        seen=seen,
        open=opened,
        max_session_pk=entry.get("max_session_pk"),
        max_result_pk=entry.get("max_result_pk"),
        snapshot_time=entry.get("snapshot_time"),
    )


def check_blocks(
    since: Since, blocks: Mapping[int, str | None], recorded: Mapping[int, str] | None = None
) -> None:
    """Refuse a watermark of none of this run's ``blocks`` (pk → slug): it would select
    everything. (A run may add blocks the earlier one did not have.)

    Refuse one whose block of a pk had another slug in a database than this run's
    ``recorded`` (pk → the slug a database holds; a zip's slug may be a guess from its file
    name): it is of another database, whose session pks would leave out this one's
    sessions of the same pks.

    :raises SourceError: naming the manifest and both sets of blocks.
    """
    if not since.marks or not blocks:
        return
    for mark in since.marks:
        slug = (recorded or {}).get(mark.block)
        # a snapshot time says the earlier slug was a database's too
        if mark.snapshot_time is not None and mark.slug and slug and mark.slug != slug:
            raise SourceError(
                f"this manifest's block {mark.slug} (pk {mark.block}) is {slug}"
                f" (pk {mark.block}) in this source: it is of another database (or the"
                " block was renamed since: then start again with a full export)",
                file=since.origin,
            )
    if any(m.block in blocks for m in since.marks):
        return
    theirs = ", ".join(f"{m.slug or '?'} (pk {m.block})" for m in since.marks)
    ours = ", ".join(f"{slug} (pk {pk})" for pk, slug in blocks.items())
    raise SourceError(
        f"this manifest is of block(s) {theirs}, but this run exports {ours}", file=since.origin
    )

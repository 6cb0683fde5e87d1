"""Several sources in one run: their graphs merged into one.

Each source reads the run's selection (a zip its own block, a database the blocks asked
for); the records of all of them go into one graph, so that every sink writes one table
whose block columns tell the rows apart. A primary key that two sources hold is one
object only when both hold the same content, up to what MUSCLE's zip keeps of it
(timestamps to the millisecond): then it is kept once, as the source with the finer
timestamps holds it. Any other difference is an error naming both sources. A zip knows of
its block only the pk (and the slug its file name suggests); a database's full record of
the same block is the same block.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import attrs

from .errors import IntegrityError
from .graph import GraphBuilder, MissingSections, RecordGraph, SourceInfo
from .records import Block, CompactJSON, Result

#: Results per batch of the merged streams.
BATCH_SIZE = 2000


def _comparable(value: Any) -> Any:
    """``value`` as it compares between sources: timestamps to the millisecond (MUSCLE's
    zip holds no more), compact JSON parsed."""
    if isinstance(value, datetime):
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, CompactJSON):
        return value.value()
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    return value


def _fields(record: Any) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in attrs.fields(type(record))}


def _fineness(record: Any) -> int:
    """How many of a record's timestamps carry more than milliseconds."""
    return sum(
        1 for v in _fields(record).values() if isinstance(v, datetime) and v.microsecond % 1000
    )


def same_object(a: Any, b: Any) -> Any | None:
    """The one record to keep when ``a`` and ``b`` (same model, same pk) are the same
    object, else None."""
    if type(a) is not type(b):
        return None
    if isinstance(a, Block):
        # a zip's block is its pk and a guessed slug: the same block as a full record
        fa, fb = _fields(a), _fields(b)
        if all(fa[k] == fb[k] or _unknown(fa[k]) or _unknown(fb[k]) for k in fa if k != "slug"):
            return (
                a
                if sum(not _unknown(v) for v in fa.values())
                >= sum(not _unknown(v) for v in fb.values())
                else b
            )
        return None
    if a == b:
        return a
    if _comparable(_fields(a)) != _comparable(_fields(b)):
        return None
    return b if _fineness(b) > _fineness(a) else a


def _unknown(value: Any) -> bool:
    return value is None or value == {} or value == ()


def merge_graphs(graphs: Sequence[RecordGraph]) -> RecordGraph:
    """One graph of the records of ``graphs`` (each read from one source).

    :raises IntegrityError: for a primary key two sources hold with different content,
        naming both sources.
    """
    infos = [g.info for g in graphs]
    labels = [i.location for i in infos]
    provided = frozenset.intersection(*(i.provided for i in infos))
    policy: MissingSections = (
        "keep" if any(g.missing_sections == "keep" for g in graphs) else "error"
    )
    builder = GraphBuilder(
        SourceInfo(
            kind="+".join(dict.fromkeys(i.kind for i in infos)),
            location=" + ".join(labels),
            schema_version="; ".join(dict.fromkeys(i.schema_version for i in infos)),
            provided=provided,
            details={"sources": [{"location": i.location, **i.details} for i in infos]},
        ),
        missing_sections=policy,
    )
    for key, table in builder.tables.items():
        holder: dict[int, str] = {}
        for graph, label in zip(graphs, labels, strict=True):
            for pk, record in graph.table(key).items():
                kept = table.get(pk)
                if kept is None:
                    table[pk] = record
                    holder[pk] = label
                    continue
                one = same_object(kept, record)
                if one is None:
                    raise IntegrityError(
                        f"{holder[pk]} and {label} both hold it, with different content",
                        file=label,
                        model=key,
                        pk=pk,
                    )
                table[pk] = one
        if key != "section":  # sections keep MUSCLE's order by playlist, source by source
            builder.tables[key] = dict(sorted(table.items()))
        builder.origins[key] = " + ".join(g.origin(key) for g in graphs)
    builder.set_result_origin("profile", " + ".join(labels))
    builder.set_result_origin("trial", " + ".join(labels))
    graph = builder.build(
        profile_results=lambda: _merged(graphs, labels, "profile"),
        trial_results=lambda: _merged(graphs, labels, "trial"),
    )
    estimates = [g.expected_trial_results for g in graphs]
    if None not in estimates:
        graph.expected_trial_results = sum(e for e in estimates if e is not None)
    return graph


def _merged(
    graphs: Sequence[RecordGraph], labels: Sequence[str], kind: str
) -> Iterator[list[Result]]:
    """The results of every graph, in (owner, pk) order, each object once."""
    owner = "session" if kind == "trial" else "participant"

    def stream(graph: RecordGraph, index: int) -> Iterator[tuple[int, int, int, Result]]:
        batches = graph.trial_results() if kind == "trial" else graph.profile_results()
        for batch in batches:
            for result in batch:
                yield getattr(result, owner), result.pk, index, result

    batch: list[Result] = []
    previous: tuple[int, int, int, Result] | None = None
    for item in heapq.merge(*(stream(g, i) for i, g in enumerate(graphs))):
        if previous is not None and item[:2] == previous[:2]:
            one = same_object(previous[3], item[3])
            if one is None:
                raise IntegrityError(
                    f"{labels[previous[2]]} and {labels[item[2]]} both hold it, with"
                    " different content",
                    file=labels[item[2]],
                    model="result",
                    pk=item[1],
                )
            previous = (*previous[:3], one)
            continue
        if previous is not None:
            batch.append(previous[3])
            if len(batch) >= BATCH_SIZE:
                yield batch
                batch = []
        previous = item
    if previous is not None:
        batch.append(previous[3])
    if batch:
        yield batch

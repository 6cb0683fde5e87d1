"""A chunk's part of the fixture zip's ``results.json``, rendered in a worker.

The fixture-json sink writes each trial result as Django's serializer does
(:func:`~aml_exportkit.sinks.fixture_json.encode_objects` on
:func:`~aml_exportkit.schema.make_fixture_encoder`'s objects). The engine calls those same
functions on records made from a chunk's checked columns, so the bytes cannot drift: a
chunk's text is its objects joined by ``", "``, and the parent joins the chunks' texts
(again with ``", "``) inside ``[`` and ``]``.
"""

from __future__ import annotations

from datetime import datetime

from ..jsonstream import nesting_ok
from ..records import Result
from ..schema import RESULT, make_fixture_encoder
from .chunks import ResultColumns, StandDown, json_value

_ENCODE_RESULT = make_fixture_encoder(RESULT)


def result_records(cols: ResultColumns) -> list[Result]:
    """A chunk's trial results as the records the plain path hands the sink."""
    fields = cols.fields
    data = cols.json_data
    if cols.json_raw:
        # (the kernel's texts are checked only as deep as the long table reads them)
        try:
            data = [json_value(t) for t in data]
        except (ValueError, RecursionError):
            raise StandDown("json_data: a text the plain path must judge") from None
        if not nesting_ok(data, 1):  # as finish_columns checks parsed values
            raise StandDown("json_data nested too deeply")
    # (created_at holds the CSV's text, ISO 8601 with the source's offset kept: it reads
    # back as the datetime the plain path's reader made)
    return [
        Result(
            pk=pk,
            session=session,
            participant=None,
            section=section,
            created_at=datetime.fromisoformat(created),
            question_key=key,
            expected_response=expected,
            given_response=given,
            comment=comment,
            score=score,
            scoring_rule=rule,
            json_data=value,
        )
        for pk, session, section, created, key, expected, given, comment, score, rule, value in zip(
            cols.pk,
            cols.session,
            cols.section,
            cols.created_at,
            fields["question_key"],
            fields["expected_response"],
            fields["given_response"],
            fields["comment"],
            fields["score"],
            fields["scoring_rule"],
            data,
            strict=True,
        )
    ]


def results_text(cols: ResultColumns) -> bytes:
    """The chunk's ``results.json`` objects, joined by ``", "`` (UTF-8; empty for none).

    An error (a value JSON cannot hold) makes the engine stand down; the plain path then
    reports it, naming the sink's file.
    """
    if not len(cols):
        return b""
    from ..sinks.fixture_json import encode_objects

    return encode_objects(result_records(cols), _ENCODE_RESULT, RESULT, "results.json")

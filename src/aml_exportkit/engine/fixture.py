"""A chunk's part of the fixture zip's ``results.json``, rendered in a worker.

The fixture-json sink writes each trial result as Django's serializer does
(:func:`~aml_exportkit.sinks.fixture_json.encode_objects` on
:func:`~aml_exportkit.schema.make_fixture_encoder`'s objects). The engine calls those same
functions on records made from a chunk's checked columns, so the bytes cannot drift: a
chunk's text is its objects joined by ``", "``, and the parent joins the chunks' texts
(again with ``", "``) inside ``[`` and ``]``.
"""

from __future__ import annotations

from ..schema import RESULT, make_fixture_encoder
from .batches import result_records
from .chunks import ResultColumns

_ENCODE_RESULT = make_fixture_encoder(RESULT)


def results_text(cols: ResultColumns) -> bytes:
    """The chunk's ``results.json`` objects, joined by ``", "`` (UTF-8; empty for none).

    :raises SinkError: for a value JSON cannot hold (NaN or Infinity), naming the member.
    """
    if not len(cols):
        return b""
    from ..sinks.fixture_json import encode_objects

    return encode_objects(result_records(cols), _ENCODE_RESULT, RESULT, "results.json")

"""The template as outputs record it: without secrets, without the identifiers of the
exclusion lists, and under ``[privacy]`` without raw identifiers.

``manifest.json`` and the Parquet key-value metadata both record the template; both take
it from here. A password may sit in any string of a template (``[source] uri``, a list of
URIs, a libpq ``key=value`` string), so every string value is scrubbed, not one key. When
nothing needs removing, the text is recorded exactly as written; otherwise the parsed
template is written back as TOML with the values replaced (comments are then lost, which
is the price of never copying the secret).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import tomli_w

from ..exclusions import LIST_KEYS, manifest_filter, withhold_in_text
from ..privacy import pseudonym, read_key
from ..redact import scrub
from .model import Template


def _walk(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: _walk(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, change) for v in value]
    return value


def _identifier_names(template: Template) -> Callable[[str], str] | None:
    """How a raw participant identifier named in the template is recorded under
    ``[privacy]``: its pseudonym when the run has a key, else a placeholder; None without
    ``[privacy]``."""
    if not template.privacy.is_active:
        return None
    key = read_key(template.privacy, template.file)
    if key is not None:
        return lambda value: pseudonym(key, "participant_id_url", value)
    return lambda value: "withheld"


def recorded_title(template: Template) -> str:
    """The title outputs give the template (the codebook's, datapackage.json's): its
    ``name``, else its file's stem, with any password hidden as in the recorded text."""
    return scrub(template.name or PurePath(template.file).stem)


def recorded_filter(template: Template) -> dict[str, Any]:
    """The template's ``[filter]`` as outputs record it: the exclusion lists as counts, and
    under ``[privacy]`` participant identifiers (strings) as pseudonyms, or ``withheld``
    without a key."""
    data = manifest_filter(template.filter)
    name = _identifier_names(template)
    if name is not None and data.get("participants"):
        data["participants"] = tuple(
            name(p) if isinstance(p, str) else p for p in data["participants"]
        )
    return data


def recorded_text(template: Template) -> str:
    """The template's text as outputs record it.

    :raises TemplateError: when ``[privacy]`` asks for a key that is missing.
    """
    text = withhold_in_text(template.text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:  # a template in memory with no text of its own
        return scrub(text)
    cleaned = _walk(data, scrub)
    # The lists are withheld in the text where it is plain (keeping the comments); any a
    # quoted, dotted or inline key hid from that are emptied here, in the parsed template.
    filter_table = cleaned.get("filter")
    if isinstance(filter_table, dict):
        for key in LIST_KEYS:
            if filter_table.get(key):
                filter_table[key] = []
    name = _identifier_names(template)
    participants = cleaned.get("filter", {}).get("participants")
    if name is not None and isinstance(participants, list):
        cleaned["filter"]["participants"] = [
            name(p) if isinstance(p, str) else p for p in participants
        ]
    if cleaned == data and scrub(text) == text:  # nothing in a value, nor in a comment
        return text
    return tomli_w.dumps(cleaned)

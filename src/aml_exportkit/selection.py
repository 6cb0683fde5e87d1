"""What an export selects: blocks, and the sessions within them.

Sources apply a :class:`Selection` where they read (the database source in SQL, the zip
source in Python); :func:`session_matches` is the one Python definition of the filter, so
both sources select the same sessions.
"""

from __future__ import annotations

import re
from datetime import datetime

import attrs

from .records import Participant, Session

#: What Django's SlugField accepts (``allow_unicode=False``): ASCII letters, digits, ``-``
#: and ``_``. A block's slug becomes part of output paths (``{block}``), so nothing else
#: may pass, wherever the slug comes from.
_SLUG = re.compile(r"[A-Za-z0-9_-]+")


def is_slug(text: str) -> bool:
    """Whether ``text`` is a valid MUSCLE slug (what Django's SlugField accepts)."""
    return _SLUG.fullmatch(text) is not None


@attrs.frozen(kw_only=True)
class Filter:
    """The template's ``[filter]`` table; every condition must hold for a session.

    :param finished_only: only finished sessions (``finished_at`` set).
    :param started_after: only sessions started at or after this instant.
    :param started_before: only sessions started before this instant.
    :param participants: only these participants: an integer is a participant's primary
        key, a string its ``participant_id_url``.
    """

    finished_only: bool = False
    started_after: datetime | None = None
    started_before: datetime | None = None
    participants: tuple[int | str, ...] = ()

    @property
    def is_empty(self) -> bool:
        """Whether the filter keeps every session."""
        return self == Filter()


@attrs.frozen(kw_only=True)
class Selection:
    """Blocks by slug, and the session filter.

    :param blocks: block slugs; empty means every block the source holds.
    :param filter: the session filter.
    """

    blocks: tuple[str, ...] = ()
    filter: Filter = Filter()


def session_matches(flt: Filter, session: Session, participant: Participant | None) -> bool:
    """Whether ``session`` (played by ``participant``) passes ``flt``.

    The selection follows the sessions: participants, profile answers and trial results
    are those of the sessions that pass, exactly as MUSCLE selects them for a block.
    """
    if flt.finished_only and session.finished_at is None:
        return False
    if flt.started_after is not None and session.started_at < flt.started_after:
        return False
    if flt.started_before is not None and session.started_at >= flt.started_before:
        return False
    if flt.participants:
        wanted = flt.participants
        if session.participant in wanted:
            return True
        url_id = participant.participant_id_url if participant is not None else None
        return url_id is not None and url_id in wanted
    return True

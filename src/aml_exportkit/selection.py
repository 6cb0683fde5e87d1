"""What an export selects: blocks, and the sessions within them.

Sources apply a :class:`Selection` where they read (the database source in SQL, the zip
source in Python); :func:`session_matches` is the one Python definition of the filter, so
both sources select the same sessions. The exclusion rules (:func:`is_excluded`) and the
rule of an incremental run (:meth:`Since.selects`) are part of it; the database source
spells each of them in SQL beside its condition.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
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
    :param exclude_participants: leave these participants out of every output (their
        sessions, results and profile answers): an integer is a participant's primary key,
        a string its ``unique_hash`` or its ``participant_id_url``. The manifest records
        how many were listed and a sha256 of the list, never the identifiers.
    :param exclude_file: a text file of more participants to leave out, one per line
        (relative to the template's folder): a whole number is a primary key, any other
        line a ``unique_hash`` or ``participant_id_url`` (write it in double quotes to
        match digits as text); blank lines and lines starting with ``#`` are skipped.
        The file is UTF-8; a byte order mark and Windows line ends are fine.
    :param exclude_sessions: leave these sessions (primary keys) and their results out.
    :param exclude_participant_id_url: leave out participants whose
        ``participant_id_url`` matches one of these patterns: ``*`` stands for any run of
        characters, ``?`` for one character, anything else for itself
        (``["test*", "pilot-*"]``).
    """

    finished_only: bool = False
    started_after: datetime | None = None
    started_before: datetime | None = None
    participants: tuple[int | str, ...] = ()
    exclude_participants: tuple[int | str, ...] = ()
    exclude_file: str | None = None
    exclude_sessions: tuple[int, ...] = ()
    exclude_participant_id_url: tuple[str, ...] = ()
    #: The entries of ``exclude_file``, read when the template is loaded.
    excluded_from_file: tuple[int | str, ...] = attrs.field(
        default=(), metadata={"internal": True}, repr=False
    )

    @property
    def is_empty(self) -> bool:
        """Whether the filter keeps every session."""
        return self == Filter()

    @property
    def excludes(self) -> bool:
        """Whether the filter leaves participants or sessions out by name."""
        return bool(
            self.exclude_participants
            or self.excluded_from_file
            or self.exclude_sessions
            or self.exclude_participant_id_url
        )

    @property
    def excluded_participants(self) -> tuple[int | str, ...]:
        """The participants left out, inline and from ``exclude_file``."""
        return self.exclude_participants + self.excluded_from_file


@attrs.frozen(kw_only=True)
class BlockMark:
    """The watermark of one block: what a run exported of it.

    :param block: the block's pk.
    :param slug: its slug, for messages.
    :param seen: the sessions exported (this run's and, for an incremental run, those of
        the runs before it).
    :param open: of those, the sessions unfinished when they were exported, each with its
        number of trial results and its highest result pk (None without results) then.
    :param max_session_pk: the highest session pk seen (None without sessions).
    :param max_result_pk: the highest trial result pk seen (None without results).
    :param snapshot_time: the instant the source showed (a database's snapshot; None for
        a zip), ISO 8601.
    """

    block: int
    slug: str | None
    seen: frozenset[int]
    open: Mapping[int, tuple[int, int | None]]
    max_session_pk: int | None
    max_result_pk: int | None
    snapshot_time: str | None = None


@attrs.frozen(kw_only=True)
class Since:
    """What earlier runs exported, for an incremental run (``--since``).

    A session is selected when no earlier run exported it (it is new, or it did not pass
    that run's filter), or when it was unfinished then and has since finished or gained
    (or lost) results. Sessions are always taken whole.

    :param marks: the earlier run's watermark, per block.
    :param manifest_sha256: the sha256 of the earlier run's manifest.
    :param origin: where that manifest was read from, for messages.
    """

    marks: tuple[BlockMark, ...]
    manifest_sha256: str = ""
    origin: str = ""
    seen: frozenset[int] = attrs.field(init=False)
    open: Mapping[int, tuple[int, int | None]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        # session pks are unique over blocks, so one set serves every block
        object.__setattr__(self, "seen", frozenset().union(*(m.seen for m in self.marks)))
        opened: dict[int, tuple[int, int | None]] = {}
        for mark in self.marks:
            opened.update(mark.open)
        object.__setattr__(self, "open", opened)

    def selects(self, session: Session, results: tuple[int, int | None] | None) -> bool:
        """Whether ``session`` is new or changed since.

        :param results: the session's trial results now, as (count, highest pk); needed
            only when :meth:`needs_results` says so.
        """
        if session.pk not in self.seen:
            return True
        then = self.open.get(session.pk)
        if then is None:
            return False
        if session.finished_at is not None:
            return True
        return (results or (0, None)) != then

    def needs_results(self, session: Session) -> bool:
        """Whether :meth:`selects` needs ``session``'s results to decide."""
        return session.pk in self.open and session.finished_at is None


@attrs.frozen(kw_only=True)
class Selection:
    """Blocks by slug, and the session filter.

    :param blocks: block slugs; empty means every block the source holds.
    :param filter: the session filter.
    :param since: for an incremental run, what the earlier run exported.
    """

    blocks: tuple[str, ...] = ()
    filter: Filter = Filter()
    since: Since | None = None


@functools.lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A ``participant_id_url`` pattern as a regular expression of the whole value:
    ``*`` any run of characters, ``?`` one character, anything else itself."""
    parts = [".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.S)


def glob_like(pattern: str) -> str:
    """The same pattern as a SQL ``LIKE`` pattern (escape character ``\\``)."""
    out = []
    for c in pattern:
        if c == "*":
            out.append("%")
        elif c == "?":
            out.append("_")
        elif c in "%_\\":
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def is_excluded(flt: Filter, session: Session, participant: Participant | None) -> bool:
    """Whether the filter's exclusions leave ``session`` (played by ``participant``) out."""
    if not flt.excludes:
        return False
    if session.pk in flt.exclude_sessions:
        return True
    listed = flt.excluded_participants
    if session.participant in listed:
        return True
    if participant is None:
        return False
    if participant.unique_hash in listed:
        return True
    url = participant.participant_id_url
    if url is None:
        return False
    if url in listed:
        return True
    return any(glob_regex(p).fullmatch(url) for p in flt.exclude_participant_id_url)


def session_matches(flt: Filter, session: Session, participant: Participant | None) -> bool:
    """Whether ``session`` (played by ``participant``) passes ``flt``.

    The selection follows the sessions: participants, profile answers and trial results
    are those of the sessions that pass, exactly as MUSCLE selects them for a block.
    """
    return passes_conditions(flt, session, participant) and not is_excluded(
        flt, session, participant
    )


def passes_conditions(flt: Filter, session: Session, participant: Participant | None) -> bool:
    """Whether ``session`` passes ``flt`` apart from its exclusions."""
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

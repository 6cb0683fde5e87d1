"""The record graph: small tables indexed by primary key, results streamed in batches.

A source builds a graph with :class:`GraphBuilder`. The builder rejects duplicate primary
keys as records arrive and, in :meth:`GraphBuilder.build`, every foreign key among the small
tables that points into a table the source provides. Results never sit in memory as a whole:
the source hands over two batch iterators (profile answers, then trial results), and the
graph checks each result as it passes: its kind, its foreign keys, that its primary key is
new, and that the stream is ordered by (session, pk) or (participant, pk).
"""

from __future__ import annotations

import array
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .errors import IntegrityError, SourceError
from .records import (
    Block,
    Experiment,
    Feedback,
    Participant,
    Phase,
    Playlist,
    Record,
    Result,
    Section,
    Session,
    Song,
)
from .schema import MODELS

if TYPE_CHECKING:
    from .engine import ProfileCheck, ResultChunks

#: What to do with a result whose section is not among the exported sections. MUSCLE's zip
#: lists only the sections of the playlists attached to the block at export time
#: (MUSCLE_EXPORT.md §5.3), so such a reference can be genuine.
MissingSections = Literal["error", "keep"]

#: A factory of result batches; called once.
ResultBatches = Callable[[], Iterable[Sequence[Result]]]

_PAGE_BITS = 16
_PAGE_SIZE = 1 << _PAGE_BITS


class PkSet:
    """A set of non-negative integer primary keys in about one bit per key.

    MUSCLE's keys are dense 32-bit serials, so pages of 65,536 bits cover them compactly;
    a Python ``set`` would cost ~60 bytes per key, which grows with millions of results.
    """

    __slots__ = ("_other", "_pages")

    def __init__(self) -> None:
        self._pages: dict[int, bytearray] = {}
        self._other: set[int] = set()

    def add(self, pk: int) -> bool:
        """Add ``pk``; return False if it was already there."""
        if pk < 0:
            if pk in self._other:
                return False
            self._other.add(pk)
            return True
        page_no, bit = pk >> _PAGE_BITS, pk & (_PAGE_SIZE - 1)
        page = self._pages.get(page_no)
        if page is None:
            page = self._pages[page_no] = bytearray(_PAGE_SIZE >> 3)
        byte, mask = bit >> 3, 1 << (bit & 7)
        if page[byte] & mask:
            return False
        page[byte] |= mask
        return True

    def __contains__(self, pk: object) -> bool:
        if type(pk) is not int:
            return False
        if pk < 0:
            return pk in self._other
        page = self._pages.get(pk >> _PAGE_BITS)
        bit = pk & (_PAGE_SIZE - 1)
        return page is not None and bool(page[bit >> 3] & (1 << (bit & 7)))

    def add_many(self, data: bytes) -> int | None:
        """Add keys given as native ``int64`` bytes (unique among themselves); return the
        first, in their order, that was already there (None if none was), in which case some
        may have been added.

        One key at a time (:meth:`add_each`, the reference) this cost ~0.5 µs per result in
        the engine's parent. The native kernel adds them as :meth:`add_each` does; without
        it, numpy (pyarrow's companion, optional) puts each page's keys in at once. Neither
        is imported for this when the kernel is there: numpy alone costs an export without
        Parquet 0.08 s of CPU (decision 0036).
        """
        kernel = importlib.import_module("aml_exportkit.engine.native").kernel()
        if kernel is not None:
            at: int = kernel.pkset_add(self._pages, data)
            if at < 0:
                return None
            pk: int = array.array("q", data[at * 8 : at * 8 + 8])[0]
            if pk >= 0:
                return pk  # already there
            return self.add_each(data[at * 8 :])  # negative keys and on: one at a time
        try:
            np: Any = importlib.import_module("numpy")
        except ImportError:
            np = None
        if np is None:
            return self.add_each(data)
        keys = np.frombuffer(data, dtype=np.int64)
        if not keys.size:
            return None
        if int(keys.min()) < 0:  # those live in a set: one at a time
            for pk in keys.tolist():
                if not self.add(pk):
                    return int(pk)
            return None
        numbers = keys >> _PAGE_BITS
        for number in np.unique(numbers).tolist():
            bits = keys[numbers == number] & (_PAGE_SIZE - 1)
            marks = np.zeros(_PAGE_SIZE, dtype=bool)
            marks[bits] = True
            if int(np.count_nonzero(marks)) != bits.size:  # repeated among themselves
                counts = np.bincount(bits, minlength=_PAGE_SIZE)
                return int(number << _PAGE_BITS | int(np.argmax(counts > 1)))
            packed = np.packbits(marks, bitorder="little")
            page = self._pages.get(number)
            if page is None:
                page = self._pages[number] = bytearray(_PAGE_SIZE >> 3)
            current = np.frombuffer(page, dtype=np.uint8)
            clash = current & packed
            if clash.any():
                # the first in the order given: keys of lower pages were new (and are added
                # now), those of this page and above are as they were
                return int(
                    next(k for k in keys.tolist() if k >> _PAGE_BITS >= number and k in self)
                )
            current |= packed
        return None

    def add_each(self, data: bytes) -> int | None:
        """:meth:`add_many` one key at a time: the reference of the faster ways."""
        for pk in array.array("q", data):
            if not self.add(pk):
                return pk
        return None

    def merge(self, other: PkSet) -> int | None:
        """Add the keys of ``other``, unless one is in both: return that one (and leave
        this set as it was). Page by page, as Python ints: a few µs per 65,536 keys."""
        merged: dict[int, bytes | bytearray] = {}
        for number, page in other._pages.items():
            have = self._pages.get(number)
            if have is None:
                merged[number] = page
                continue
            a, b = int.from_bytes(have, "little"), int.from_bytes(page, "little")
            if clash := a & b:
                return number << _PAGE_BITS | (clash & -clash).bit_length() - 1
            merged[number] = (a | b).to_bytes(len(have), "little")
        if clash_other := self._other & other._other:
            return min(clash_other)
        for number, bits in merged.items():
            self._pages[number] = bytearray(bits)
        self._other |= other._other
        return None


@attrs.frozen(kw_only=True)
class SourceInfo:
    """What a graph was read from.

    :param kind: the source's name, e.g. ``fixture-zip``.
    :param location: the path or URI, never with a password.
    :param schema_version: the MUSCLE schema era the source detected.
    :param provided: the models whose tables the source holds in full for the selection;
        foreign keys into these are checked, foreign keys into others are kept unchecked.
    :param details: anything else worth reporting (``exportkit inspect``, manifests).
    """

    kind: str
    location: str
    schema_version: str
    provided: frozenset[str]
    details: Mapping[str, Any] = attrs.field(factory=dict)


class GraphBuilder:
    """Collects the small tables of a graph and checks them.

    :param info: the source description.
    :param missing_sections: the policy for results whose section is not exported.
    """

    def __init__(self, info: SourceInfo, *, missing_sections: MissingSections = "error") -> None:
        self.info = info
        self.missing_sections = missing_sections
        self.tables: dict[str, dict[int, Any]] = {key: {} for key in MODELS if key != "result"}
        self.origins: dict[str, str] = {}

    def add(self, key: str, record: Record, origin: str, *, allow_repeat: bool = False) -> None:
        """Add a record of model ``key`` read from ``origin`` (a file or table name).

        :param allow_repeat: accept a second, identical copy of the record (MUSCLE's
            participants.json lists a participant once per session); a differing copy is
            still a duplicate primary key.
        :raises IntegrityError: for a duplicate primary key.
        """
        table = self.tables[key]
        self.origins.setdefault(key, origin)
        previous = table.get(record.pk)
        if previous is not None:
            if allow_repeat and previous == record:
                return
            detail = "" if not allow_repeat else " with different values"
            raise IntegrityError(
                f"duplicate primary key{detail} (first seen in {self.origins[key]})",
                file=origin,
                model=key,
                pk=record.pk,
            )
        table[record.pk] = record

    def set_result_origin(self, kind: Literal["profile", "trial"], origin: str) -> None:
        """Name the file or table the ``kind`` results come from, for messages."""
        self.origins[f"{kind}-result"] = origin

    def build(self, *, profile_results: ResultBatches, trial_results: ResultBatches) -> RecordGraph:
        """Check the foreign keys of the small tables and return the graph.

        :param profile_results: batches of profile answers, ordered by (participant, pk).
        :param trial_results: batches of trial results, ordered by (session, pk).
        """
        graph = RecordGraph(
            info=self.info,
            tables=self.tables,
            origins=self.origins,
            profile_batches=profile_results,
            trial_batches=trial_results,
            missing_sections=self.missing_sections,
        )
        graph.check_small_tables()
        return graph


class RecordGraph:
    """The records of one export: small tables in memory, results streamed once.

    Tables keep the order in which the source delivered them; sources deliver MUSCLE's
    export order (sessions by pk, sections by playlist name then pk, and so on).
    """

    def __init__(
        self,
        *,
        info: SourceInfo,
        tables: Mapping[str, Mapping[int, Any]],
        origins: Mapping[str, str],
        profile_batches: ResultBatches,
        trial_batches: ResultBatches,
        missing_sections: MissingSections = "error",
    ) -> None:
        self.info = info
        self._tables = tables
        self._origins = origins
        self._profile_batches: ResultBatches | None = profile_batches
        self._trial_batches: ResultBatches | None = trial_batches
        self._missing_sections = missing_sections
        self._result_pks = PkSet()
        #: Counts of results that passed, by kind; complete once both streams are consumed.
        self.result_counts: dict[str, int] = {"profile": 0, "trial": 0}
        #: Results kept although their section is not exported (``missing_sections="keep"``).
        self.missing_section_refs = 0
        #: The source's estimate of the number of trial results, for progress displays;
        #: a source may refine it while the results stream.
        self.expected_trial_results: int | None = None
        #: The source's raw access to the trial results in chunks, for the engine
        #: (:mod:`aml_exportkit.engine`); None when the source offers none (the engine
        #: then cuts the records of :meth:`trial_results` into chunks itself).
        self.result_chunks: ResultChunks[Any] | None = None
        #: The source's check of the profile answers in one go, for runs whose sinks do
        #: not use them; None if it has none.
        self.profile_check: ProfileCheck | None = None
        #: For the watermark of an incremental export (:mod:`aml_exportkit.watermark`),
        #: complete once the trial results are consumed: per unfinished session with trial
        #: results, (how many, the highest pk); per block pk, the highest trial result pk.
        self.open_session_results: dict[int, tuple[int, int]] = {}
        self.block_result_tops: dict[int | None, int] = {}

    # -- small tables ---------------------------------------------------------------------

    @property
    def experiments(self) -> Mapping[int, Experiment]:
        """Experiments by pk (empty when the source does not hold them)."""
        return self._tables["experiment"]

    @property
    def phases(self) -> Mapping[int, Phase]:
        """Phases by pk."""
        return self._tables["phase"]

    @property
    def blocks(self) -> Mapping[int, Block]:
        """The exported blocks by pk."""
        return self._tables["block"]

    @property
    def playlists(self) -> Mapping[int, Playlist]:
        """Playlists by pk (not in a fixture zip)."""
        return self._tables["playlist"]

    @property
    def sections(self) -> Mapping[int, Section]:
        """The sections of the blocks' playlists, by pk."""
        return self._tables["section"]

    @property
    def songs(self) -> Mapping[int, Song]:
        """The songs of those sections, by pk."""
        return self._tables["song"]

    @property
    def participants(self) -> Mapping[int, Participant]:
        """The participants of the exported sessions, each once, by pk."""
        return self._tables["participant"]

    @property
    def sessions(self) -> Mapping[int, Session]:
        """The exported sessions by pk."""
        return self._tables["session"]

    @property
    def feedback(self) -> Mapping[int, Feedback]:
        """The blocks' feedback by pk."""
        return self._tables["feedback"]

    def replace_table(self, key: str, records: Mapping[int, Any]) -> None:
        """Replace the small table of model ``key`` (e.g. pseudonymised participants).

        :raises ValueError: when the primary keys change: foreign keys point at them.
        """
        if set(records) != set(self._tables[key]):
            raise ValueError(f"replacing the {key} table must keep its primary keys")
        tables = dict(self._tables)
        tables[key] = dict(records)
        self._tables = tables

    def table(self, key: str) -> Mapping[int, Any]:
        """The small table of model ``key`` (e.g. ``"session"``)."""
        return self._tables[key]

    def origin(self, key: str) -> str:
        """The file or table the records of model ``key`` came from."""
        return self._origins.get(key, f"{key} records")

    def block_slug(self, pk: int | None) -> str | None:
        """The slug of block ``pk``, if known."""
        block = self._tables["block"].get(pk) if pk is not None else None
        return block.slug if block is not None else None

    def check_small_tables(self) -> None:
        """Check every foreign key among the small tables.

        :raises IntegrityError: for the first dangling foreign key, naming the record.
        """
        provided = self.info.provided
        for key, table in self._tables.items():
            model = MODELS[key]
            checks = [f for f in model.foreign_keys if f.fk in provided]
            if not checks or not table:
                continue
            for record in table.values():
                for field in checks:
                    value = getattr(record, field.name)
                    if value is not None and value not in self._tables[field.fk or ""]:
                        raise IntegrityError(
                            f"{field.name} {value} not found in {self.origin(field.fk or '')}",
                            file=self.origin(key),
                            model=key,
                            pk=record.pk,
                            field=field.name,
                            missing_pk=value,
                        )

    # -- results ----------------------------------------------------------------------------

    def profile_results(self) -> Iterator[Sequence[Result]]:
        """Batches of profile answers, ordered by (participant, pk), each checked.

        Profile answers are participant-wide: they include answers given in other blocks
        and questions never answered (``given_response`` null), as MUSCLE exports them.
        Can be iterated once.
        """
        batches = self._take("_profile_batches", "profile results")
        return self._checked(batches, "profile")

    def trial_results(self) -> Iterator[Sequence[Result]]:
        """Batches of trial results, ordered by (session, pk), each checked.

        Can be iterated once.
        """
        batches = self._take("_trial_batches", "trial results")
        return self._checked(batches, "trial")

    @property
    def missing_sections(self) -> MissingSections:
        """The policy for results whose section is not exported."""
        return self._missing_sections

    @property
    def result_pks(self) -> PkSet:
        """The primary keys of the results that passed so far."""
        return self._result_pks

    def settle_profile_results(self, keys: PkSet, count: int, missing_section_refs: int) -> bool:
        """Mark the profile answers as read by a check in one go (the source's
        :attr:`profile_check`), which applied the checks of :meth:`profile_results` to
        every one of them and collected their ``keys``.

        :return: False, changing nothing, when one of ``keys`` is already a result's key
            (reading them with :meth:`profile_results` then reports it).
        :raises RuntimeError: when the profile answers were already read.
        """
        if self._profile_batches is None:
            raise RuntimeError("the profile results were already read")
        if self._result_pks.merge(keys) is not None:
            return False
        self._take("_profile_batches", "profile results")
        self.result_counts["profile"] = count
        self.missing_section_refs += missing_section_refs
        return True

    def settle_trial_results(self, count: int, missing_section_refs: int) -> None:
        """Mark the trial results as read by the engine, which applied the checks of
        :meth:`trial_results` to every one of them (and added their keys to
        :attr:`result_pks`, and noted every session's run with :meth:`note_session_run`).

        :raises RuntimeError: when the trial results were already read.
        """
        self._take("_trial_batches", "trial results")
        self.result_counts["trial"] = count
        self.missing_section_refs += missing_section_refs

    def take_trial_batches(self) -> ResultBatches:
        """Take the source's batches of trial results as it gives them, unchecked: for the
        engine's reader of a source that offers no chunks of its own
        (:class:`~aml_exportkit.engine.from_records.RecordChunks`), which reads them once
        and gives back what it read with :meth:`give_trial_batches`, so that
        :meth:`trial_results` still reads (and checks) every one of them afterwards.

        :raises RuntimeError: when the trial results were already read or taken.
        """
        return self._take("_trial_batches", "trial results")

    def give_trial_batches(self, batches: ResultBatches) -> None:
        """Put back the batches :meth:`take_trial_batches` took (the same results, in the
        same batches, or the source's error at the same place).

        :raises RuntimeError: when the graph holds trial results already.
        """
        if self._trial_batches is not None:
            raise RuntimeError("the graph holds trial results already")
        self._trial_batches = batches

    def note_session_run(self, session: int, count: int, last: int) -> None:
        """Note that ``session``'s ``count`` trial results passed, the highest pk ``last``
        (for :attr:`open_session_results` and :attr:`block_result_tops`). Noting a session
        again with the same numbers changes nothing (the engine and the graph's own reading,
        :meth:`trial_results`, each note the sessions they read)."""
        record = self._tables["session"].get(session)
        block = record.block if record is not None else None
        top = self.block_result_tops.get(block)
        if top is None or last > top:
            self.block_result_tops[block] = last
        if record is not None and record.finished_at is None:
            self.open_session_results[session] = (count, last)

    def _take(self, attr: str, what: str) -> ResultBatches:
        batches: ResultBatches | None = getattr(self, attr)
        if batches is None:
            raise RuntimeError(f"the {what} of this graph were already read")
        setattr(self, attr, None)
        return batches

    def result_checker(self, kind: str, pks: PkSet | None = None) -> ResultChecker:
        """The checks of :meth:`trial_results` (``kind="trial"``) or :meth:`profile_results`
        (``"profile"``) for one result at a time, against ``pks`` (default: the graph's
        :attr:`result_pks`). The engine's readers apply them to a chunk that its columnar
        checks refuse, so that the error is the one this graph raises."""
        return ResultChecker(self, kind, self._result_pks if pks is None else pks)

    def _checked(self, batches: ResultBatches, kind: str) -> Iterator[Sequence[Result]]:
        checker = self.result_checker(kind)
        # each session's run: how many results, and the last (the highest) pk
        note = self.note_session_run if kind == "trial" else None
        run_owner: int | None = None
        run_length = 0
        count = 0
        check = checker.check
        for batch in batches():
            for result in batch:
                before = checker.last[1]  # the previous result's pk
                owner = check(result)
                if note is not None:
                    if owner != run_owner:
                        if run_owner is not None:
                            note(run_owner, run_length, before)
                        run_owner, run_length = owner, 0
                    run_length += 1
            count += len(batch)
            yield batch
        if note is not None and run_owner is not None:
            note(run_owner, run_length, checker.last[1])
        self.missing_section_refs += checker.missing
        self.result_counts[kind] = count


class ResultChecker:
    """The graph's checks of results, one at a time, in stream order: the kind (an owner and
    not the other), the owner and the section exist, the key is new, (owner, pk) order.

    :param graph: the graph whose sessions (participants) and sections the results refer to.
    :param kind: ``"trial"`` or ``"profile"``.
    :param pks: the keys seen so far (added to).
    """

    def __init__(self, graph: RecordGraph, kind: str, pks: PkSet) -> None:
        self.owner_field = "session" if kind == "trial" else "participant"
        self.other_field = "participant" if kind == "trial" else "session"
        self.kind = kind
        self.graph = graph
        self.owners = graph._tables[self.owner_field]
        self.sections = graph._tables["section"]
        self.check_sections = "section" in graph.info.provided
        self.keep_missing = graph.missing_sections == "keep"
        self.origin = graph._origins.get(f"{kind}-result", f"{kind} results")
        self.pks = pks
        #: the (owner, pk) of the last result that passed
        self.last = (-(1 << 63), -(1 << 63))
        #: results kept although their section is missing
        self.missing = 0

    def check(self, result: Result) -> int:
        """Check ``result`` after the ones before it; return its owner.

        :raises IntegrityError: for a wrong kind, a missing owner or section, a repeated key.
        :raises SourceError: when it comes before the last result in (owner, pk) order.
        """
        owner_field = self.owner_field
        owner = getattr(result, owner_field)
        pk = result.pk
        if owner is None or getattr(result, self.other_field) is not None:
            both = owner is not None
            raise IntegrityError(
                f"a {self.kind} result needs a {owner_field} and no {self.other_field}; it has "
                + ("both" if both else f"no {owner_field}"),
                file=self.origin,
                model="result",
                pk=pk,
                field=owner_field,
            )
        if owner not in self.owners:
            raise IntegrityError(
                f"{owner_field} {owner} not found in {self.graph.origin(owner_field)}",
                file=self.origin,
                model="result",
                pk=pk,
                field=owner_field,
                missing_pk=owner,
            )
        section = result.section
        if self.check_sections and section is not None and section not in self.sections:
            if not self.keep_missing:
                raise IntegrityError(
                    f"section {section} not found in {self.graph.origin('section')}"
                    " (MUSCLE exports only the sections of the playlists attached to"
                    ' the block now; set [source] missing_sections = "keep" to keep'
                    " the reference)",
                    file=self.origin,
                    model="result",
                    pk=pk,
                    field="section",
                    missing_pk=section,
                )
            self.missing += 1
        if not self.pks.add(pk):
            raise self.duplicate(pk)
        position = (owner, pk)
        if position <= self.last:
            raise self.disorder(position, self.last)
        self.last = position
        return owner  # type: ignore[no-any-return]

    def duplicate(self, pk: int) -> IntegrityError:
        """The error for a result whose key ``pk`` was seen before."""
        return IntegrityError("duplicate primary key", file=self.origin, model="result", pk=pk)

    def disorder(self, position: tuple[int, int], last: tuple[int, int]) -> SourceError:
        """The error for the result at (owner, pk) ``position`` after the one at ``last``."""
        owner_field = self.owner_field
        return SourceError(
            f"results are not ordered by ({owner_field}, pk): this one"
            f" ({owner_field} {position[0]}) comes after result {last[1]}"
            f" ({owner_field} {last[0]})",
            file=self.origin,
            model="result",
            pk=position[1],
        )

"""Source: MUSCLE's export zip (seven Django fixture files), plain or gzip-wrapped.

The dashboard's "Export JSON" writes a plain zip; ``manage.py exportblock`` writes the same
zip gzip-compressed under a ``.zip`` name, so the format is told by the first bytes, never by
the name. The small files are read into the graph; ``profiles.json`` and ``results.json`` are
streamed with :mod:`aml_exportkit.jsonstream` and never held whole.

MUSCLE's quirks handled here (reference READMEs, MUSCLE_EXPORT.md §2.3 and §5):

- ``participants.json`` repeats a participant once per session: identical copies are
  merged, differing ones are a duplicate-key error;
- ``results.json`` is ordered by session only: each session's results are sorted by pk;
- ``profiles.json`` holds answers from other blocks and unanswered questions: kept as they
  are;
- the zip names its block only by primary key: the slug comes from the template, or is
  guessed from the file name.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ..contracts import BlockSummary, Inventory, SourceOptions, SourceSpec
from ..engine import trim_heap
from ..errors import IntegrityError, SourceError
from ..graph import GraphBuilder, RecordGraph, SourceInfo
from ..hookspecs import hookimpl
from ..jsonstream import iter_json_array
from ..manifest import BackgroundHash
from ..records import Block, Participant, Record, Result, Session
from ..schema import (
    FIXTURE_FILES,
    slug_from_comment,
)
from ..selection import Selection, is_excluded, passes_conditions
from .fixture_zip_chunks import ZipProfileAnswers, ZipTrialResults, fixture_records, owner_runs

NAME = "fixture-zip"
#: A member that inflates more than this many times is refused (a zip bomb guard).
MAX_COMPRESSION_RATIO = 100
#: Results per batch handed to sinks.
BATCH_SIZE = 4096

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP_MAGIC = b"\x1f\x8b"
#: The compression methods of MUSCLE's zips (Python's zipfile writes these two).
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_METHOD_NAMES = {9: "deflate64", 12: "bzip2", 14: "LZMA", 93: "Zstandard", 99: "AES"}
_REQUIRED = tuple(f.name for f in FIXTURE_FILES if f.since is None)
_FILES = {f.name: f for f in FIXTURE_FILES}
_TIMESTAMP_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}T[\d:.]+(?:[+-][\d:]+|Z)?$")


def guess_block_slug(path: Path) -> str:
    """The block slug a MUSCLE zip's file name suggests.

    The dashboard names downloads ``<slug>-<timestamp>.zip`` and ``exportblock`` writes
    ``<slug>.zip``; a ``block_`` prefix (as in the reference files) is dropped too.
    """
    stem = path.name[: -len(".zip")] if path.name.endswith(".zip") else path.stem
    stem = _TIMESTAMP_SUFFIX.sub("", stem)
    return stem.removeprefix("block_")


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def _claims(uri: str) -> bool:
    # A path, or a file:// URI; anything else with a scheme (two or more letters, so that
    # a Windows drive letter still counts as a path) belongs to another source.
    return uri.startswith("file://") or not _SCHEME.match(uri)


class FixtureZipSource:
    """An open MUSCLE export zip.

    :param path: the zip (or gzip-wrapped zip).
    :param options: the template's source options.
    """

    #: A zip holds one block; in a run of several sources it reads its own.
    holds_one_block = True

    def __init__(self, path: Path, options: SourceOptions) -> None:
        self.path = path
        self.label = str(path)
        self.options = options
        self._spool: IO[bytes] | None = None
        self._chunks: ZipTrialResults | None = None
        self._zip = self._open()
        self.wrapped_in_gzip = self._spool is not None
        self.members = self._check_members()
        # A zip holds one block: the first slug it is read as is the only one it has.
        self._slug: str | None = None
        # The manifest names the input by its sha256. Hashing releases the GIL, so a
        # thread does it on the second core while the export parses.
        self._digest = BackgroundHash(self.path)

    def block_slug(self) -> str:
        """The block's slug: the one our fixture zip's comment names, else the one the
        file name suggests (:func:`guess_block_slug`)."""
        return slug_from_comment(self._zip.comment) or guess_block_slug(self.path)

    # -- opening and checking ---------------------------------------------------------------

    def _open(self) -> zipfile.ZipFile:
        try:
            with self.path.open("rb") as fh:
                head = fh.read(4)
        except FileNotFoundError:
            raise SourceError("no such file", file=self.label) from None
        except IsADirectoryError:
            raise SourceError("is a folder, not a MUSCLE export zip", file=self.label) from None
        except OSError as exc:
            raise SourceError(f"cannot read: {exc.strerror}", file=self.label) from None
        if head[:2] == _GZIP_MAGIC:
            return self._open_gzip()
        if head not in _ZIP_MAGIC:
            raise SourceError(
                "not a zip file (nor a gzip-wrapped zip as exportblock writes)"
                if head
                else "empty file, expected a MUSCLE export zip",
                file=self.label,
            )
        try:
            return zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise SourceError(f"broken or truncated zip: {exc}", file=self.label) from None

    def _open_gzip(self) -> zipfile.ZipFile:
        # A zip needs random access, so the inflated bytes go to an anonymous temporary
        # file: it disappears with the process, even one killed with SIGKILL.
        spool = tempfile.TemporaryFile(prefix="exportkit-gunzip-")  # noqa: SIM115
        try:
            limit = MAX_COMPRESSION_RATIO * self.path.stat().st_size + (1 << 20)
            with gzip.open(self.path, "rb") as gz:
                while chunk := gz.read(1 << 20):
                    spool.write(chunk)
                    if spool.tell() > limit:
                        raise SourceError(
                            f"the gzip data inflates more than {MAX_COMPRESSION_RATIO} times;"
                            " refusing a possible zip bomb",
                            file=self.label,
                        )
            spool.seek(0)
            head = spool.read(4)
            spool.seek(0)
            if head not in _ZIP_MAGIC:
                raise SourceError(
                    "gzip data that does not hold a zip (exportblock writes gzip(zip))",
                    file=self.label,
                )
            archive = zipfile.ZipFile(spool)
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            spool.close()
            raise SourceError(f"broken gzip-wrapped zip: {exc}", file=self.label) from None
        except BaseException:
            spool.close()
            raise
        self._spool = spool
        return archive

    def _check_members(self) -> dict[str, zipfile.ZipInfo]:
        members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            name = info.filename
            if name in members:
                raise SourceError(f"the zip holds {name!r} twice", file=self.label)
            if name not in _FILES:
                expected = ", ".join(_FILES)
                raise SourceError(
                    f"unexpected member {name!r}; a MUSCLE export holds: {expected}",
                    file=self.label,
                )
            if info.flag_bits & 0x1:
                raise SourceError(f"{name} is encrypted", file=self.label)
            if info.compress_type not in _METHODS:
                method = _METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
                raise SourceError(
                    f"{name} is compressed with {method}, which is not supported; a MUSCLE"
                    " export's members are stored or deflated",
                    file=self.label,
                )
            if (
                info.compress_type != zipfile.ZIP_STORED
                and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1)
            ):
                raise SourceError(
                    f"{name} would inflate {info.file_size // max(info.compress_size, 1)}"
                    f" times (more than {MAX_COMPRESSION_RATIO}); refusing a possible zip bomb",
                    file=self.label,
                )
            self._check_local_header(info)
            members[name] = info
        missing = [name for name in _REQUIRED if name not in members]
        if missing:
            raise SourceError(
                f"not a complete MUSCLE export: missing {', '.join(missing)}", file=self.label
            )
        return members

    def _check_local_header(self, info: zipfile.ZipInfo) -> None:
        """Refuse a member whose local header disagrees with the central directory.

        zipfile compares the two names when it opens a member; the engine reads byte
        ranges without opening, so every member is opened once here, whatever the sinks.
        """
        try:
            with self._zip.open(info):
                pass
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise SourceError(
                f"broken zip member {info.filename!r}: {exc}", file=self.label
            ) from None

    # -- reading ----------------------------------------------------------------------------

    def _where(self, member: str) -> str:
        return f"{self.label}: {member}"

    @contextlib.contextmanager
    def _member(self, name: str) -> Iterator[IO[bytes]]:
        try:
            with self._zip.open(self.members[name]) as stream:
                yield stream
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            # zipfile reports a corrupt directory with any of these (a negative seek gives
            # OSError, a bad header ValueError); all mean the same to a user.
            raise SourceError(f"broken zip member: {exc}", file=self._where(name)) from None

    def _records(
        self, name: str, read_fraction: Callable[[float], None] | None = None
    ) -> Iterator[Sequence[Record]]:
        """Decode member ``name`` in batches, checking each object's model label.

        :param read_fraction: told, before each batch, how much of the member was read.
        """
        with self._member(name) as stream:
            yield from fixture_records(
                stream,
                _FILES[name],
                self._where(name),
                size=self.members[name].file_size,
                read_fraction=read_fraction,
            )

    def _all(self, name: str) -> Iterator[Any]:
        if name not in self.members:
            return
        for batch in self._records(name):
            yield from batch

    def inspect(self) -> Inventory:
        """Count every member's objects and name the block, without building a graph."""
        counts: dict[str, int] = {}
        blocks: dict[int | None, int] = {}
        participants: set[int] = set()
        sessions: list[Session] = list(self._all("sessions.json"))
        for session in sessions:
            blocks[session.block] = blocks.get(session.block, 0) + 1
        counts["sessions.json"] = len(sessions)
        listed = 0
        for participant in self._all("participants.json"):
            listed += 1
            participants.add(participant.pk)
        counts["participants.json"] = listed
        for name in (
            "profiles.json",
            "results.json",
            "sections.json",
            "songs.json",
            "feedback.json",
        ):
            if name in self.members:
                counts[name] = sum(len(b) for b in self._records(name))
        notes = ["gzip-wrapped (as manage.py exportblock writes)"] if self.wrapped_in_gzip else []
        if listed != len(participants):
            notes.append(
                f"participants.json lists {listed} participants, {len(participants)} distinct"
                " (MUSCLE repeats a participant once per session)"
            )
        slug = self.block_slug()
        summaries = tuple(
            BlockSummary(pk=pk, slug=slug if len(blocks) == 1 else None, sessions=n)
            for pk, n in blocks.items()
        ) or (BlockSummary(pk=None, slug=slug, sessions=0),)
        return Inventory(
            kind=NAME,
            location=self.label,
            schema_version=self._schema_version(sessions),
            blocks=summaries,
            counts=counts,
            notes=tuple(notes),
        )

    def _first_fields(self, name: str) -> dict[str, Any]:
        """The ``fields`` of the first object of member ``name``, as written."""
        with self._member(name) as stream:
            # a small window: the default one (4 MB) parsed 8 MB of sessions.json here,
            # 0.1 s of the parent's CPU before the workers start (decision 0036)
            for items in iter_json_array(stream, name=self._where(name), read_size=1 << 16):
                first = items[0] if items else None
                if isinstance(first, dict) and isinstance(first.get("fields"), dict):
                    return first["fields"]  # type: ignore[no-any-return]
                break
        return {}

    def _schema_version(self, sessions: Sequence[Session]) -> str:
        keys = set(self._first_fields("sessions.json")) if sessions else set()
        if "experiment" in keys:
            return "MUSCLE before July 2024 (sessions name their block 'experiment')"
        if "current_round" in keys:
            return "MUSCLE July to October 2024 (sessions have current_round)"
        if "feedback.json" not in self.members:
            return "MUSCLE v3.0 (October to December 2024; no feedback.json)"
        return "MUSCLE v3.1.0 or later (7-file zip)"

    @contextlib.contextmanager
    def read(self, selection: Selection) -> Iterator[RecordGraph]:
        """Read the zip's block, filtered by ``selection``, as a graph."""
        if len(selection.blocks) > 1:
            raise SourceError(
                f"a fixture zip holds one block, but {len(selection.blocks)} were asked for"
                f" ({', '.join(selection.blocks)})",
                file=self.label,
            )
        slug = selection.blocks[0] if selection.blocks else self.block_slug()
        if self._slug is not None and slug != self._slug:
            raise SourceError(
                f"a fixture zip holds one block, read here as {self._slug!r}; it does not"
                f" hold block {slug!r}",
                file=self.label,
            )
        self._slug = slug
        yield self._build(selection)

    def _build(self, selection: Selection) -> RecordGraph:
        provided = frozenset({"session", "participant", "section", "song", "feedback", "block"})
        sessions = list(self._all("sessions.json"))
        slug = selection.blocks[0] if selection.blocks else self.block_slug()
        details: dict[str, Any] = {"gzip_wrapped": self.wrapped_in_gzip, "block_slug": slug}
        builder = GraphBuilder(
            SourceInfo(
                kind=NAME,
                location=self.label,
                schema_version=self._schema_version(sessions),
                provided=provided,
                details=details,
            ),
            missing_sections=self.options.missing_sections,
        )
        where = self._where
        all_participants: dict[int, Participant] = {}
        for participant in self._all("participants.json"):
            builder.add("participant", participant, where("participants.json"), allow_repeat=True)
            # the first copy, the one the graph keeps: repeats are freed
            all_participants.setdefault(participant.pk, participant)
        feedback = list(self._all("feedback.json"))
        block_pk = self._block_pk(sessions, feedback)
        if block_pk is not None:
            builder.add("block", Block(pk=block_pk, slug=slug), self.label)
        flt = selection.filter
        since = selection.since
        # An incremental run compares the results of sessions open then and open now.
        now = self._result_digests(
            {s.pk for s in sessions if since is not None and since.needs_results(s)}
        )
        kept_participants: set[int] = set()
        excluded_sessions: set[int] = set()
        left_out: set[int] = set()
        everyone = flt.is_empty  # (a comparison of filters: once, not per session)
        excludes = flt.excludes
        for session in sessions:
            participant = all_participants.get(session.participant)
            if (everyone or passes_conditions(flt, session, participant)) and (
                since is None or since.selects(session, now.get(session.pk))
            ):
                if not excludes or not is_excluded(flt, session, participant):
                    builder.add("session", session, where("sessions.json"))
                    kept_participants.add(session.participant)
                    continue
                left_out.add(session.participant)
                details["excluded_sessions"] = details.get("excluded_sessions", 0) + 1
            excluded_sessions.add(session.pk)
        if flt.excludes:
            details["excluded_participants"] = len(left_out - kept_participants)
            details.setdefault("excluded_sessions", 0)
        # Without a filter every listed participant stays, even one without a session here.
        excluded_participants: set[int] = set()
        if not flt.is_empty or since is not None:
            excluded_participants = set(all_participants) - kept_participants
            table = builder.tables["participant"]
            for pk in excluded_participants:
                del table[pk]
        for name, key in (
            ("sections.json", "section"),
            ("songs.json", "song"),
            ("feedback.json", "feedback"),
        ):
            for record in self._all(name):
                builder.add(key, record, where(name))
        builder.set_result_origin("profile", where("profiles.json"))
        builder.set_result_origin("trial", where("results.json"))
        graph = builder.build(
            profile_results=lambda: self._results(
                "profiles.json", "participant", excluded_participants
            ),
            trial_results=lambda: self._results(
                "results.json", "session", excluded_sessions, estimate=_estimator(graph)
            ),
        )
        # Parsing the small tables leaves free pages in the C heap (30 MB at 50k sessions);
        # hand them back before the results stream.
        trim_heap()
        # The engine reads results.json in byte ranges, in parallel (fixture_zip_chunks.py).
        self._chunks = ZipTrialResults(
            self._zip.fp.fileno(),  # type: ignore[union-attr]
            self.members["results.json"],
            frozenset(excluded_sessions),
            where=where("results.json"),
            inflate=lambda: self._member("results.json"),
        )
        graph.result_chunks = self._chunks
        if "profiles.json" in self.members:
            graph.profile_check = ZipProfileAnswers(
                self._zip.fp.fileno(),  # type: ignore[union-attr]
                self.members["profiles.json"],
                frozenset(excluded_participants),
            )
        return graph

    def _block_pk(self, sessions: Sequence[Session], feedback: Sequence[Any]) -> int | None:
        """The block every session and feedback belongs to; another block is an error."""
        block_pk: int | None = None
        first = ""
        for name, records in (("sessions.json", sessions), ("feedback.json", feedback)):
            model = "session" if name == "sessions.json" else "feedback"
            for record in records:
                if block_pk is None:
                    block_pk, first = record.block, f"{model} {record.pk}"
                    if block_pk is None:
                        raise IntegrityError(
                            "has no block, so it is not part of a block export",
                            file=self._where(name),
                            model=model,
                            pk=record.pk,
                            field="block",
                        )
                elif record.block != block_pk:
                    raise IntegrityError(
                        f"belongs to block {record.block}, but this export is of block"
                        f" {block_pk} (as {first} says); a MUSCLE export zip holds one block",
                        file=self._where(name),
                        model=model,
                        pk=record.pk,
                        field="block",
                    )
        return block_pk

    def _results(
        self,
        name: str,
        owner_field: str,
        excluded: set[int],
        estimate: Callable[[int, float], None] | None = None,
    ) -> Iterator[Sequence[Result]]:
        """Results of member ``name`` regrouped by (owner, pk), in batches.

        MUSCLE orders the file by owner only, so each owner's run is sorted by pk. Results
        of owners the filter dropped are skipped; anything else goes on to the graph's
        checks.
        """
        fraction = 0.0
        seen = 0

        def note(read: float) -> None:
            nonlocal fraction
            fraction = read

        def counted() -> Iterator[Sequence[Record]]:
            nonlocal seen
            for records in self._records(name, note if estimate is not None else None):
                if estimate is not None:
                    seen += len(records)
                    estimate(seen, fraction)
                yield records

        yield from owner_runs(counted(), owner_field, excluded, BATCH_SIZE)

    def _result_digests(self, wanted: set[int]) -> dict[int, tuple[int, int | None]]:
        """The number of trial results and the highest result pk of each ``wanted``
        session, from ``results.json`` (read only when some are wanted; the objects are
        only looked into, not made into records: the export reads them again, checked)."""
        found: dict[int, tuple[int, int | None]] = {}
        if not wanted:
            return found
        with self._member("results.json") as stream:
            for items in iter_json_array(stream, name=self._where("results.json")):
                for item in items:
                    fields = item.get("fields") if type(item) is dict else None
                    owner = fields.get("session") if type(fields) is dict else None
                    pk = item.get("pk")
                    if owner in wanted and type(pk) is int:
                        count, top = found.get(owner, (0, None))
                        found[owner] = (count + 1, pk if top is None or pk > top else top)
        return found

    def manifest_details(self) -> dict[str, Any]:
        """What the manifest records about this input: file name, size, sha256."""
        return {
            "file": self.path.name,
            "bytes": self.path.stat().st_size,
            "sha256": self._digest.result(),
            "gzip_wrapped": self.wrapped_in_gzip,
        }

    def close(self) -> None:
        """Close the zip and drop the inflated copy of a gzip-wrapped one."""
        self._zip.close()
        self._digest.cancel()
        if self._chunks is not None:
            self._chunks.close()
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def __enter__(self) -> FixtureZipSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _estimator(graph: RecordGraph) -> Callable[[int, float], None]:
    """Keep ``graph.expected_trial_results`` at the count the bytes read so far suggest."""

    def estimate(seen: int, fraction: float) -> None:
        if fraction > 0:
            graph.expected_trial_results = max(seen, round(seen / fraction))

    return estimate


def _open(uri: str, options: SourceOptions) -> FixtureZipSource:
    path = Path(uri.removeprefix("file://"))
    return FixtureZipSource(path, options)


@hookimpl
def exportkit_register_sources() -> list[SourceSpec]:
    """The fixture-zip source."""
    return [
        SourceSpec(
            name=NAME,
            description="MUSCLE's export zip (dashboard 'Export JSON', or exportblock's gzip)",
            claims=_claims,
            open=_open,
            uri_help="a path to a MUSCLE export .zip",
        )
    ]

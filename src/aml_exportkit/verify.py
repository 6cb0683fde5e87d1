"""``exportkit verify``: does a source export the same data as a reference?

The reference is either MUSCLE's own export zip (plain, or gzip-wrapped as ``exportblock``
writes it) or another source (a database URI, a zip read through our own reader). The
source is exported with the ``fixture-json`` sink into a temporary folder; then each of the
seven fixture files is compared with the reference's as a set of objects keyed by primary
key, so MUSCLE's free order inside a session and its repeated participants do not count as
differences, while any changed value does.

Memory grows with the number of objects (a primary key and a 64-bit digest each, about
100 bytes), never with their size.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
import orjson
import tomli_w

from .errors import SourceError
from .jsonstream import iter_json_array
from .pipeline import registry_for, run_export
from .plugins import PluginManager
from .schema import FIXTURE_FILES
from .template.load import parse_template

#: How many differing primary keys a file check keeps, per kind of difference.
MAX_LISTED = 5
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_NAMES = tuple(f.name for f in FIXTURE_FILES)


@attrs.frozen(kw_only=True)
class FileCheck:
    """One fixture file compared.

    :param name: the member, e.g. ``results.json``.
    :param ours: distinct objects in the source's export.
    :param reference: distinct objects in the reference.
    :param listed: objects the reference lists, repeats included (MUSCLE repeats
        participants once per session).
    :param changed: primary keys present on both sides with different values (first few).
    :param missing: primary keys only in the reference (first few).
    :param unexpected: primary keys only in the source's export (first few).
    :param differences: how many primary keys differ in all.
    :param identical_bytes: whether the member's bytes are the same, when the reference
        is also written by this tool; None when the reference is MUSCLE's own zip.
    :param absent: the reference has no such member (MUSCLE before v3.1.0 wrote no
        feedback.json); the file is then not compared.
    """

    name: str
    ours: int
    reference: int
    listed: int
    changed: tuple[int, ...] = ()
    missing: tuple[int, ...] = ()
    unexpected: tuple[int, ...] = ()
    differences: int = 0
    identical_bytes: bool | None = None
    absent: bool = False

    @property
    def equal(self) -> bool:
        """Whether both sides hold the same objects."""
        return self.absent or self.differences == 0


@attrs.frozen(kw_only=True)
class VerifyReport:
    """The outcome of :func:`verify_export`.

    :param source: what was exported (a path, or a URI without password).
    :param reference: what it was compared with.
    :param reference_kind: ``"MUSCLE export zip"`` or the reference source's name.
    :param blocks: the block slugs exported.
    :param files: one check per fixture file, in MUSCLE's member order.
    """

    source: str
    reference: str
    reference_kind: str
    blocks: tuple[str, ...]
    files: tuple[FileCheck, ...]

    @property
    def equal(self) -> bool:
        """Whether every file holds the same objects on both sides."""
        return all(f.equal for f in self.files)

    @property
    def identical_bytes(self) -> bool | None:
        """Whether every compared file has the same bytes on both sides; None when the
        reference is MUSCLE's own zip (whose order and repeats differ by design)."""
        flags = [f.identical_bytes for f in self.files if not f.absent]
        if any(flag is None for flag in flags):
            return None
        return all(flags)

    def summary(self) -> str:
        """One line: equal, or how many files differ."""
        differing = [f.name for f in self.files if not f.equal]
        if not differing:
            same = ", byte for byte" if self.identical_bytes else ""
            return f"equal: all {len(self.files)} files hold the same objects{same}"
        return f"{len(differing)} of {len(self.files)} files differ: {', '.join(differing)}"

    def lines(self) -> list[str]:
        """The report as a small table, for the command line."""
        blocks = ", ".join(self.blocks) or "(the only block)"
        out = [
            f"source:    {self.source} (blocks: {blocks})",
            f"reference: {self.reference} ({self.reference_kind})",
            "",
            f"{'file':<18} {'ours':>8} {'reference':>10}  result",
        ]
        for check in self.files:
            if check.absent:
                result = "not in the reference (not compared)"
            elif check.equal:
                result = "equal"
                if check.identical_bytes:
                    result += ", identical bytes"
                elif check.identical_bytes is False:
                    result += " (bytes differ in order only)"
                if check.listed != check.reference:
                    result += f" (reference lists {check.listed}, {check.reference} distinct)"
            else:
                parts = []
                for label, pks in (
                    ("changed", check.changed),
                    ("missing", check.missing),
                    ("unexpected", check.unexpected),
                ):
                    if pks:
                        parts.append(f"{label} pk {', '.join(map(str, pks))}")
                result = f"DIFFERENT ({check.differences} pks: {'; '.join(parts)})"
            out.append(f"{check.name:<18} {check.ours:>8} {check.reference:>10}  {result}")
        out.append("")
        out.append(self.summary())
        return out


def _digest(obj: Any) -> int:
    """A 64-bit digest of a fixture object's canonical JSON (keys sorted)."""
    try:
        text = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits
        text = json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


@attrs.define
class _Side:
    """One side of a member: primary key → digest, and the count of objects listed."""

    digests: dict[Any, int] = attrs.field(factory=dict)
    listed: int = 0
    repeated: set[Any] = attrs.field(factory=set)


def _read_side(stream: IO[bytes], where: str) -> _Side:
    side = _Side()
    for items in iter_json_array(stream, name=where):
        for obj in items:
            side.listed += 1
            pk = obj.get("pk") if isinstance(obj, dict) else None
            digest = _digest(obj)
            previous = side.digests.get(pk)
            if previous is not None and previous != digest:
                # two different objects under one key: keep the difference visible
                side.repeated.add(pk)
            side.digests[pk] = digest
    return side


def _pk_order(pk: Any) -> tuple[bool, int, str]:
    """Integers by value first, anything else (a broken file's pk) after, by its repr."""
    return (False, pk, "") if type(pk) is int else (True, 0, repr(pk))


def _compare(name: str, ours: _Side, theirs: _Side) -> FileCheck:
    changed = sorted(
        (pk for pk, d in ours.digests.items() if pk in theirs.digests and theirs.digests[pk] != d),
        key=_pk_order,
    )
    changed += sorted(ours.repeated | theirs.repeated, key=_pk_order)
    missing = sorted((pk for pk in theirs.digests if pk not in ours.digests), key=_pk_order)
    unexpected = sorted((pk for pk in ours.digests if pk not in theirs.digests), key=_pk_order)
    return FileCheck(
        name=name,
        ours=len(ours.digests),
        reference=len(theirs.digests),
        listed=theirs.listed,
        changed=tuple(changed[:MAX_LISTED]),
        missing=tuple(missing[:MAX_LISTED]),
        unexpected=tuple(unexpected[:MAX_LISTED]),
        differences=len(changed) + len(missing) + len(unexpected),
    )


@contextlib.contextmanager
def _open_zip(path: Path) -> Iterator[zipfile.ZipFile]:
    """A MUSCLE zip, plain or gzip-wrapped (told by its first bytes, as MUSCLE names both
    ``.zip``)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    try:
        if head == _GZIP_MAGIC:
            with tempfile.TemporaryFile(prefix="exportkit-verify-") as spool:
                with gzip.open(path, "rb") as gz:
                    shutil.copyfileobj(gz, spool, 1 << 20)
                spool.seek(0)
                with zipfile.ZipFile(spool) as archive:
                    yield archive
        else:
            with zipfile.ZipFile(path) as archive:
                yield archive
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise SourceError(f"not a readable MUSCLE export zip: {exc}", file=str(path)) from None


def _export(
    uri: str,
    blocks: Sequence[str],
    out: Path,
    plugin_manager: PluginManager | None,
) -> str:
    """Export ``uri`` to the fixture-json zip ``out``; return the source's location.

    ``uri`` goes to the run as an override, as ``exportkit run --source`` passes it: a
    relative path is the caller's, not one inside the template's (temporary) folder.
    """
    registry = registry_for(plugin_manager)
    text = tomli_w.dumps(
        {
            # verify compares what is there: a reference to a section of a detached
            # playlist is kept, not an error
            "source": {"blocks": list(blocks), "missing_sections": "keep"},
            "sinks": [{"type": "fixture-json", "path": str(out)}],
        }
    )
    template = parse_template(text, file="<verify>", folder=out.parent, sinks=registry.sink_specs)
    report = run_export(template, source=uri, plugin_manager=plugin_manager)
    return report.sources[0].location if report.sources else uri


def _is_path(reference: str) -> bool:
    return "://" not in reference or reference.startswith("file://")


def verify_export(
    source: str,
    reference: str,
    *,
    blocks: Sequence[str] = (),
    plugin_manager: PluginManager | None = None,
) -> VerifyReport:
    """Export ``source`` and compare it, file by file, with ``reference``.

    :param source: a source URI or zip path, as ``exportkit run --source`` takes.
    :param reference: MUSCLE's export zip of the same block (a path), or another source
        (a URI), which is then exported too and also compared byte for byte.
    :param blocks: the block slugs; for a zip reference the default is the slug its file
        name suggests.
    :param plugin_manager: the plugins to use (default: a fresh manager).
    :raises ExportkitError: when either side cannot be read; differences are not errors
        but the report's content.
    """
    wanted = tuple(blocks)
    with tempfile.TemporaryDirectory(prefix="exportkit-verify-") as tmp:
        folder = Path(tmp)
        ours_path = folder / "ours.zip"
        if _is_path(reference):
            ref_path = Path(reference.removeprefix("file://"))
            if not wanted:
                wanted = (_guess_slug(ref_path),)
            location = _export(source, wanted, ours_path, plugin_manager)
            with zipfile.ZipFile(ours_path) as ours, _open_zip(ref_path) as theirs:
                files = _compare_zips(ours, theirs, str(ref_path), byte_check=False)
            return VerifyReport(
                source=location,
                reference=str(ref_path),
                reference_kind="MUSCLE export zip",
                blocks=wanted,
                files=files,
            )
        location = _export(source, wanted, ours_path, plugin_manager)
        ref_out = folder / "reference.zip"
        ref_location = _export(reference, wanted, ref_out, plugin_manager)
        with zipfile.ZipFile(ours_path) as ours, zipfile.ZipFile(ref_out) as theirs:
            files = _compare_zips(ours, theirs, ref_location, byte_check=True)
        kind = registry_for(plugin_manager).source_for(reference).name
        return VerifyReport(
            source=location,
            reference=ref_location,
            reference_kind=f"{kind}, exported by this tool",
            blocks=wanted,
            files=files,
        )


def _guess_slug(path: Path) -> str:
    # MUSCLE names downloads <slug>-<timestamp>.zip and exportblock writes <slug>.zip
    from .sources.fixture_zip import guess_block_slug

    return guess_block_slug(path)


def _compare_zips(
    ours: zipfile.ZipFile, theirs: zipfile.ZipFile, where: str, *, byte_check: bool
) -> tuple[FileCheck, ...]:
    present = set(theirs.namelist())
    checks: list[FileCheck] = []
    for name in _ZIP_NAMES:
        with ours.open(name) as stream:
            mine = _read_side(stream, f"(our export): {name}")
        if name not in present:
            checks.append(
                FileCheck(name=name, ours=len(mine.digests), reference=0, listed=0, absent=True)
            )
            continue
        with theirs.open(name) as stream:
            other = _read_side(stream, f"{where}: {name}")
        check = _compare(name, mine, other)
        if byte_check:
            check = attrs.evolve(check, identical_bytes=ours.read(name) == theirs.read(name))
        checks.append(check)
    return tuple(checks)

"""``manifest.json``: what a run read, how, and what it wrote, with checksums.

Written beside the outputs by every run (unless the template says ``manifest = false``),
through the same atomic output set as the outputs themselves, so it appears only with them.
It records the tool and plugin versions, the template text and its sha256, the source (a
zip's sha256, or the database, its server version, MUSCLE's migration state and the
snapshot time), the filters, the transforms (pseudonymisation, with a key fingerprint, never
the key), and every output file with its row count, size, sha256 and columns.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from . import __version__, exclusions
from .codebook import column_info, header_of
from .contracts import OutputReport
from .errors import SourceError, TemplateError
from .graph import SourceInfo
from .plugins import PluginManager
from .template.model import Template
from .template.recorded import recorded_filter, recorded_text

FORMAT_VERSION = 1


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


#: Digests that a writer computed while it wrote a file: path → (identity, hex digest).
_KNOWN: dict[str, tuple[tuple[int, ...], str]] = {}


def _identity(path: Path) -> tuple[int, ...]:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def remember_sha256(path: Path, digest: str) -> None:
    """Note the sha256 of a file just written (the engine hashes its CSV as it writes
    it, beside the export): :func:`file_sha256` then need not read the file again, as
    long as its size, times and inode are unchanged."""
    _KNOWN[str(Path(path).absolute())] = (_identity(path), digest)


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file: the one noted by :func:`remember_sha256` while the file
    is unchanged, else read from the file."""
    known = _KNOWN.pop(str(Path(path).absolute()), None)
    if known is not None and known[0] == _identity(path):
        return known[1]
    return sha256_file(path)


class BackgroundHash:
    """The sha256 of a file, computed in a daemon thread (hashlib releases the GIL, so it
    runs on another core) that never holds up the process's exit.

    :param path: the file.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stop = threading.Event()
        self._digest: str | None = None
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="exportkit-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        digest = hashlib.sha256()
        try:
            with self._path.open("rb") as fh:
                while not self._stop.is_set() and (block := fh.read(1 << 20)):
                    digest.update(block)
        except OSError as exc:
            self._error = exc
            return
        if not self._stop.is_set():
            self._digest = digest.hexdigest()

    def result(self) -> str:
        """Wait for the digest.

        :raises OSError: when the file could not be read.
        """
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._digest is None:
            raise RuntimeError("the hash was cancelled")
        return self._digest

    def cancel(self) -> None:
        """Stop hashing (the result is then unavailable)."""
        self._stop.set()


def parse_manifest(data: bytes | str, file: str) -> Mapping[str, Any]:
    """The manifest in ``data`` (the bytes of ``file``), parsed and checked to be ours.

    Every reader of a manifest a user hands in (``--since``, ``exportkit rebuild``) goes
    through here, so that an edited, truncated or crafted file gets one clear line.

    :raises SourceError: naming ``file``, when it is not JSON (nested too deeply for the
        parser included) or not a manifest written by exportkit.
    """
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SourceError("not JSON, so not an exportkit manifest", file=file) from None
    if not isinstance(document, Mapping) or not isinstance(document.get("tool"), Mapping):
        raise SourceError("not a manifest written by exportkit", file=file)
    if document["tool"].get("name") != "aml-exportkit":
        raise SourceError("not a manifest written by exportkit", file=file)
    return document


def manifest_folder(targets: Sequence[Path], out_dir: Path | None, template: Template) -> Path:
    """Where the manifest (and the codebook) go: ``--out`` when given, else the folder all
    outputs share.

    That folder must be one the template names: its own folder or one inside it (where
    relative sink paths lead), or the folder of one of the outputs. Outputs in unrelated
    folders (``/a/x.csv`` and ``/b/y.csv``) share only a folder nobody asked to write into
    (``/``), so the run is refused rather than writing the manifest there.

    :raises TemplateError: naming the template's sinks, for such outputs.
    """
    if out_dir is not None:
        return out_dir.absolute()
    if not targets:
        return template.folder
    parents = [Path(os.path.abspath(t)).parent for t in targets]
    shared = Path(os.path.commonpath(parents))
    home = Path(os.path.abspath(template.folder))
    if shared in parents or shared == home or home in shared.parents:
        return shared
    raise TemplateError(
        f"the outputs share no folder the template names (only {shared}); the manifest"
        " and the codebook go beside the outputs, so give --out or write every output"
        " under one folder",
        file=template.file,
        key_path="sinks",
    )


def plugin_versions(pm: PluginManager) -> list[dict[str, Any]]:
    """Every registered plugin with its distribution and that distribution's version."""
    rows: list[dict[str, Any]] = []
    for name, _plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        dist = pm.distribution_of(str(name))
        version: str | None = __version__
        if dist is not None:
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                version = None
        rows.append(
            {"plugin": str(name), "distribution": dist or "aml-exportkit", "version": version}
        )
    return rows


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if attrs.has(type(value)):
        return _jsonable(attrs.asdict(value, recurse=False))
    return value


def output_entry(report: OutputReport, written: Path, folder: Path, sink: str) -> dict[str, Any]:
    """One output file: where, which sink, rows, bytes, sha256 and (when reported) columns.

    :param written: the file as it is now (the temporary file, before the rename).
    """
    target = report.path.absolute()
    try:
        shown = str(target.relative_to(folder))
    except ValueError:
        shown = str(target)
    entry: dict[str, Any] = {
        "path": shown,
        "sink": sink,
        "rows": report.rows,
        "bytes": written.stat().st_size,
        "sha256": file_sha256(written),
    }
    columns = report.columns
    if not columns and report.path.suffix in (".csv", ".parquet"):
        # Sinks that do not report their columns: name each column's origin by the
        # naming rules of our tables and of MUSCLE's CSVs.
        columns = tuple(column_info(name) for name in header_of(written, report.path.suffix))
    if columns:
        entry["columns"] = [
            {k: v for k, v in attrs.asdict(column).items() if v is not None} for column in columns
        ]
    return entry


def build_manifest(
    *,
    template: Template,
    pm: PluginManager,
    sources: Iterable[SourceInfo],
    source_details: Mapping[str, Any],
    blocks: Sequence[str],
    outputs: Sequence[dict[str, Any]],
    transforms: Sequence[Mapping[str, Any]],
    result_counts: Mapping[str, int],
    watermark: Mapping[str, Any] | None = None,
    since: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest as a JSON-ready dict; the template without secrets, exclusion lists
    or (under ``[privacy]``) raw identifiers, as :mod:`~aml_exportkit.template.recorded`
    records it.

    :param watermark: what the run exported per block (:mod:`aml_exportkit.watermark`).
    :param since: for an incremental run, the earlier manifest's sha256 and what was new.
    """
    text = recorded_text(template)
    return {
        "manifest_version": FORMAT_VERSION,
        "tool": {"name": "aml-exportkit", "version": __version__},
        "plugins": plugin_versions(pm),
        "template": {
            "file": template.file,
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "text": text,
        },
        "source": {
            "parts": [
                {
                    "kind": info.kind,
                    "location": info.location,
                    "schema_version": info.schema_version,
                    "details": _jsonable(info.details),
                }
                for info in sources
            ],
            **_jsonable(source_details),
        },
        "selection": {
            "blocks": list(blocks),
            "filter": _jsonable(recorded_filter(template)),
            "exclusions": exclusions.digest(template.filter),
        },
        "transforms": [_jsonable(t) for t in transforms],
        "result_counts": dict(result_counts),
        "outputs": list(outputs),
        "since": dict(since) if since is not None else None,
        "watermark": dict(watermark) if watermark is not None else None,
    }


def dumps(manifest: Mapping[str, Any]) -> bytes:
    """The manifest's bytes: indented, keys in the order built, UTF-8, a final newline."""
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

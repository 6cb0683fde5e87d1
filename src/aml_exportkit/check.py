"""``exportkit check``: compare a template with the data it will export.

It lists the json_data paths in the data that the template's tables do not export, the
template's paths (include/exclude globs, renames) that match nothing in the data, and the
paths whose values have more than one type. It also runs the export into a temporary folder
(deleted afterwards) to report what each output would hold: rows and columns.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from .codebook import header_of
from .contracts import SourceOptions
from .flatten import FlattenOptions, _matches, column_name, is_selected
from .pipeline import leaves_out, open_source, resolve_source_uri, run_export
from .plugins import PluginManager, get_plugin_manager, load_registry
from .scan import DataScan, JsonScan, PathStats, scan_graph
from .selection import Selection
from .template.model import Template
from .text import count


@attrs.frozen(kw_only=True)
class SinkDrift:
    """How one tabular sink's json_data rules meet the data."""

    index: int
    type: str
    path: str
    not_exported: tuple[str, ...]
    unused_patterns: tuple[str, ...]
    unused_renames: tuple[str, ...]


@attrs.frozen(kw_only=True)
class OutputPreview:
    """What one output of a dry run holds."""

    path: str
    sink: str
    rows: int
    columns: tuple[str, ...]


@attrs.frozen(kw_only=True)
class CheckReport:
    """Everything ``exportkit check`` found."""

    documents: dict[str, int]
    paths: dict[str, tuple[PathStats, ...]]
    conflicts: tuple[tuple[str, PathStats], ...]
    sinks: tuple[SinkDrift, ...]
    outputs: tuple[OutputPreview, ...]

    @property
    def has_drift(self) -> bool:
        """Whether anything is worth a look: unexported paths, unused template paths or
        type conflicts."""
        return bool(self.conflicts) or any(
            s.not_exported or s.unused_patterns or s.unused_renames for s in self.sinks
        )

    def lines(self) -> list[str]:
        """The report as text lines."""
        out = [
            "data: " + ", ".join(count(n, f"{kind} document") for kind, n in self.documents.items())
        ]
        for kind, stats in self.paths.items():
            total = self.documents.get(kind, 0)
            out.append(f"{kind} json_data paths: {len(stats)}")
            out += [f"  {s.text}: {s.describe(total)}" for s in stats]
        out.append(f"type conflicts: {len(self.conflicts)}")
        out += [f"  {kind} {s.text}: {', '.join(sorted(s.types))}" for kind, s in self.conflicts]
        for sink in self.sinks:
            out.append(f"sinks[{sink.index}] ({sink.type}, {sink.path}):")
            out.append(f"  paths in the data but not exported: {len(sink.not_exported)}")
            out += [f"    {p}" for p in sink.not_exported]
            out.append(
                f"  template paths never seen in the data: "
                f"{len(sink.unused_patterns) + len(sink.unused_renames)}"
            )
            out += [f"    {p}" for p in sink.unused_patterns]
            out += [f"    rename {r}" for r in sink.unused_renames]
        out.append("outputs:")
        for output in self.outputs:
            out.append(
                f"  {output.path} ({output.sink}): {count(output.rows, 'row')},"
                f" {count(len(output.columns), 'column')}"
            )
            if output.columns:
                out.append("    " + ", ".join(output.columns))
        return out

    def as_json(self) -> dict[str, Any]:
        """The report as JSON-ready data."""

        def stats(s: PathStats, total: int) -> dict[str, Any]:
            return {"path": s.text, "count": s.count, "of": total, "types": dict(s.types)}

        return {
            "documents": self.documents,
            "paths": {
                k: [stats(s, self.documents.get(k, 0)) for s in v] for k, v in self.paths.items()
            },
            "conflicts": [
                {"origin": k, "path": s.text, "types": dict(s.types)} for k, s in self.conflicts
            ],
            "sinks": [attrs.asdict(s) for s in self.sinks],
            "outputs": [attrs.asdict(o) for o in self.outputs],
            "drift": self.has_drift,
        }


def _sink_drift(index: int, sink: Any, found: DataScan) -> SinkDrift | None:
    options = sink.options
    flatten: FlattenOptions | None = getattr(options, "flatten", None)
    if flatten is None or getattr(options, "style", "exportkit") != "exportkit":
        return None
    not_exported: list[str] = []
    seen: list[tuple[str, PathStats]] = []
    modes = (
        (
            "session",
            getattr(options, "session_json", "omit"),
            found.session,
            options.prefix.session,
        ),
        ("result", getattr(options, "result_json", "omit"), found.trial, options.prefix.result),
    )
    for kind, mode, scan, prefix in modes:
        for stats in scan.sorted():
            seen.append((prefix, stats))
            if mode == "omit" or (mode == "columns" and not is_selected(stats.path, flatten)):
                not_exported.append(f"{kind}: {stats.text}")
    patterns = (*flatten.include, *flatten.exclude)
    unused = tuple(
        p for p in patterns if not any(_matches(s.path, (p,), flatten.separator) for _, s in seen)
    )
    names = {column_name(s.path, flatten.separator, prefix) for prefix, s in seen}
    renames = tuple(name for name in flatten.rename if name not in names)
    return SinkDrift(
        index=index,
        type=sink.type,
        path=sink.path,
        not_exported=tuple(not_exported),
        unused_patterns=unused,
        unused_renames=renames,
    )


def _columns(path: Path) -> tuple[str, ...]:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            return tuple(archive.namelist())
    return tuple(header_of(path))


def check_template(
    template: Template,
    *,
    source: str | None = None,
    blocks: Sequence[str] | None = None,
    plugin_manager: PluginManager | None = None,
) -> CheckReport:
    """Scan the data the template selects, compare it with the template, and preview the
    outputs with a dry run.

    :raises ExportkitError: as a run would.
    """
    pm = plugin_manager or get_plugin_manager()
    registry = load_registry(pm)
    uri = resolve_source_uri(template, source)
    selection = Selection(blocks=tuple(blocks or template.source.blocks), filter=template.filter)
    options = SourceOptions(missing_sections=template.source.missing_sections)
    with (
        open_source(uri, options=options, registry=registry) as opened,
        opened.read(selection) as graph,
    ):
        found = scan_graph(graph)
    scans: dict[str, JsonScan] = {
        "session": found.session,
        "trial": found.trial,
        "profile": found.profile,
    }
    conflicts = tuple(
        (kind, stats)
        for kind, scan in scans.items()
        for stats in scan.sorted()
        if stats.conflicting
    )
    drift = tuple(d for i, sink in enumerate(template.sinks) if (d := _sink_drift(i, sink, found)))
    # The preview writes into a temporary folder: a path that would leave it (absolute,
    # ~, ..) is previewed under sinks[i]/ instead.
    confined = tuple(
        attrs.evolve(sink, path=f"sinks[{i}]/{PurePosixPath(sink.path).name}")
        if leaves_out(sink.path)
        else sink
        for i, sink in enumerate(template.sinks)
    )
    with tempfile.TemporaryDirectory(prefix="exportkit-check-") as folder:
        report = run_export(
            template.evolve(manifest=False, sinks=confined),
            source=uri,
            blocks=blocks,
            out_dir=Path(folder),
            plugin_manager=pm,
        )
        previews = tuple(
            OutputPreview(
                path=str(o.path.relative_to(folder)),
                sink=o.sink,
                rows=o.rows,
                columns=_columns(o.path),
            )
            for o in report.outputs
        )
    return CheckReport(
        documents={k: s.documents for k, s in scans.items()},
        paths={k: tuple(s.sorted()) for k, s in scans.items() if s.paths},
        conflicts=conflicts,
        sinks=drift,
        outputs=previews,
    )

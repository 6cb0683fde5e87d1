"""One export run: template → source → graph → sinks → files renamed into place.

This module imports no builtin source or sink by name; it knows them only through the
plugin registry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from . import codebook, fastlane, manifest
from .atomic import OutputSet
from .contracts import (
    OutputReport,
    Sink,
    SinkContext,
    Source,
    SourceOptions,
    unmet_requirements,
)
from .errors import SinkError, TemplateError
from .graph import RecordGraph, SourceInfo
from .plugins import PluginManager, Registry, get_plugin_manager, load_registry
from .progress import NullProgress, Progress
from .records import Result
from .selection import Selection
from .template.load import load_template as _load_template
from .template.model import SinkTable, Template

BLOCK_PLACEHOLDER = "{block}"


@attrs.frozen(kw_only=True)
class ExportReport:
    """What a run wrote.

    :param outputs: every file, with its row count.
    :param sources: what each part of the run read.
    :param result_counts: profile answers and trial results that passed, summed over parts.
    """

    outputs: tuple[OutputReport, ...]
    sources: tuple[SourceInfo, ...]
    result_counts: dict[str, int]


def registry_for(plugin_manager: PluginManager | None = None) -> Registry:
    """The registry of ``plugin_manager``, or of a fresh default manager."""
    return load_registry(plugin_manager or get_plugin_manager())


def load_template(ref: str, *, registry: Registry | None = None) -> Template:
    """Load a template from a path or a builtin name, checked against the installed sinks."""
    registry = registry or registry_for()
    return _load_template(ref, sinks=registry.sink_specs, templates=registry.template_specs)


def check_requirements(template: Template, registry: Registry) -> None:
    """Stop when a sink of ``template`` needs a module this install lacks
    (:attr:`~aml_exportkit.contracts.SinkSpec.requires`).

    :raises SinkError: naming the sink, the module and the command that installs it.
    """
    specs = [registry.sinks[sink.type].spec for sink in template.sinks]
    for spec, requirement in unmet_requirements(specs):
        raise requirement.error(spec.name)


def validate_template(ref: str, *, registry: Registry | None = None) -> Template:
    """Everything ``validate`` checks without reading a source: the template itself, that
    its sink paths agree on ``{block}``, and that its sinks' modules are installed.

    :raises ExportkitError: for the first problem.
    """
    registry = registry or registry_for()
    template = load_template(ref, registry=registry)
    _per_block(template)
    check_requirements(template, registry)
    return template


def resolve_source_uri(template: Template, override: str | None) -> str:
    """The source URI of a run: ``override`` as given, else the template's, with a relative
    path taken relative to the template's folder."""
    if override:
        return override
    uri = template.source.uri
    if not uri:
        raise TemplateError(
            "no source: set [source] uri or pass --source",
            file=template.file,
            key_path="source.uri",
        )
    if "://" in uri:
        return uri
    return str(template.folder / uri)


def open_source(
    uri: str,
    *,
    options: SourceOptions | None = None,
    registry: Registry | None = None,
) -> Source:
    """Open the source that claims ``uri`` (a zip path or a ``postgresql://`` URI)."""
    registry = registry or registry_for()
    spec = registry.source_for(uri)
    return spec.open(uri, options or SourceOptions())


def _per_block(template: Template) -> bool:
    marked = [BLOCK_PLACEHOLDER in sink.path for sink in template.sinks]
    if any(marked) and not all(marked):
        index = marked.index(False)
        raise TemplateError(
            f"some sink paths contain {BLOCK_PLACEHOLDER} and this one does not; either"
            " every output is per block or none is",
            file=template.file,
            key_path=f"sinks[{index}].path",
        )
    return all(marked)


def _target(
    sink: SinkTable, index: int, template: Template, out_dir: Path | None, block_slug: str | None
) -> Path:
    raw = sink.path
    if BLOCK_PLACEHOLDER in raw:
        if not block_slug:
            raise TemplateError(
                f"{BLOCK_PLACEHOLDER} needs the block's slug, which the source does not know;"
                " name the block in [source] blocks or with --block",
                file=template.file,
                key_path=f"sinks[{index}].path",
            )
        raw = raw.replace(BLOCK_PLACEHOLDER, block_slug)
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = (out_dir if out_dir is not None else template.folder) / path
    return path


def run_export(
    template: Template,
    *,
    source: str | None = None,
    blocks: Sequence[str] | None = None,
    out_dir: Path | None = None,
    plugin_manager: PluginManager | None = None,
    progress: Progress | None = None,
) -> ExportReport:
    """Run ``template``: read the source, feed every sink, then move the outputs into place.

    :param template: the loaded template.
    :param source: a source URI that overrides ``[source] uri``.
    :param blocks: block slugs that override ``[source] blocks``.
    :param out_dir: the folder relative sink paths are relative to (default: the
        template's folder).
    :param plugin_manager: the plugins to use (default: a fresh manager).
    :param progress: receives the running count of trial results written.
    :raises ExportkitError: for any problem; the output locations are then as they were.
    """
    pm = plugin_manager or get_plugin_manager()
    registry = load_registry(pm)
    check_requirements(template, registry)
    uri = resolve_source_uri(template, source)
    wanted = tuple(blocks) if blocks else template.source.blocks
    per_block = _per_block(template)
    units: list[tuple[str, ...]] = (
        [(slug,) for slug in wanted] if per_block and wanted else [wanted]
    )
    progress = progress or NullProgress()
    outputs = OutputSet()
    written: list[tuple[str, OutputReport]] = []
    infos: list[SourceInfo] = []
    transforms: list[Mapping[str, Any]] = []
    counts = {"profile": 0, "trial": 0}
    slugs: list[str] = []  # what {block} became, per unit
    questions = codebook.QuestionCollector() if template.codebook else None
    observers = [questions.add] if questions is not None else []
    try:
        with open_source(
            uri,
            options=SourceOptions(missing_sections=template.source.missing_sections),
            registry=registry,
        ) as opened:
            for unit in units:
                selection = Selection(blocks=unit, filter=template.filter)
                with opened.read(selection) as graph:
                    transforms.extend(_prepare(pm, graph, template))
                    slug = _single_slug(graph, unit) if per_block else None
                    if slug:
                        slugs.append(slug)
                    sinks = _make_sinks(template, registry, outputs, out_dir, slug)
                    written.extend(_drive(graph, sinks, progress, observers))
                    infos.append(graph.info)
                    for kind, n in graph.result_counts.items():
                        counts[kind] += n
            if questions is not None:
                folder = manifest.manifest_folder([r.path for _, r in written], out_dir, template)
                current = [(r, outputs.pending_path(r.path)) for _, r in written]
                title = template.name or Path(template.file).stem
                written.extend(
                    ("codebook", r)
                    for r in codebook.write_codebook(
                        folder, outputs.create, current, questions.found, title
                    )
                )
            if template.manifest:
                _write_manifest(
                    template,
                    pm,
                    opened,
                    outputs,
                    out_dir,
                    wanted,
                    written,
                    infos,
                    transforms,
                    counts,
                    slugs or list(wanted),
                )
        outputs.commit()
    except BaseException:
        outputs.discard()
        raise
    finally:
        progress.finish()
    return ExportReport(
        outputs=tuple(report for _, report in written),
        sources=tuple(infos),
        result_counts=counts,
    )


def _prepare(pm: PluginManager, graph: RecordGraph, template: Template) -> list[Mapping[str, Any]]:
    """Let every plugin change the small tables (pseudonymisation) before the sinks start."""
    results = pm.hook.exportkit_prepare_graph(graph=graph, template=template)
    return [r for r in reversed(results) if r]


def _write_manifest(
    template: Template,
    pm: PluginManager,
    source: Source,
    outputs: OutputSet,
    out_dir: Path | None,
    blocks: Sequence[str],
    written: Sequence[tuple[str, OutputReport]],
    infos: Sequence[SourceInfo],
    transforms: Sequence[Mapping[str, Any]],
    counts: Mapping[str, int],
    slugs: Sequence[str],
) -> None:
    folder = manifest.manifest_folder([r.path for _, r in written], out_dir, template)
    entries = [
        manifest.output_entry(report, outputs.pending_path(report.path), folder, sink)
        for sink, report in written
    ]
    details_of = getattr(source, "manifest_details", None)
    details = details_of() if callable(details_of) else {}
    document = manifest.build_manifest(
        template=template,
        pm=pm,
        sources=infos,
        source_details=details,
        blocks=blocks,
        outputs=entries,
        transforms=transforms,
        result_counts=counts,
    )
    path = outputs.create(folder / _manifest_name(template, slugs))
    path.write_bytes(manifest.dumps(document))


def _manifest_name(template: Template, slugs: Sequence[str]) -> str:
    """The template's ``manifest_name``, ``{block}`` expanded to the run's slug(s)."""
    name = template.manifest_name
    if BLOCK_PLACEHOLDER not in name:
        return name
    if not slugs:
        raise TemplateError(
            f"{BLOCK_PLACEHOLDER} needs the block's slug, which the source does not know;"
            " name the block in [source] blocks or with --block",
            file=template.file,
            key_path="manifest_name",
        )
    return name.replace(BLOCK_PLACEHOLDER, "+".join(slugs))


def _single_slug(graph: RecordGraph, unit: Sequence[str]) -> str | None:
    """The slug that ``{block}`` becomes: the graph's one block, else the one slug asked
    for, else what the source guessed (a zip of a block without sessions or feedback does
    not even name the block's primary key)."""
    slugs = [block.slug for block in graph.blocks.values()]
    if len(slugs) == 1:
        return slugs[0]
    if not slugs and len(unit) == 1:
        return unit[0]
    guess = graph.info.details.get("block_slug") if not slugs else None
    return guess if isinstance(guess, str) else None


def _make_sinks(
    template: Template,
    registry: Registry,
    outputs: OutputSet,
    out_dir: Path | None,
    slug: str | None,
) -> list[tuple[SinkContext, Sink]]:
    made: list[tuple[SinkContext, Sink]] = []
    for index, table in enumerate(template.sinks):
        spec = registry.sinks[table.type].spec
        context = SinkContext(
            name=table.type,
            index=index,
            options=table.options,
            target=_target(table, index, template, out_dir, slug),
            outputs=outputs,
            template=template,
            needs_profiles=spec.needs_profiles,
            bulk=spec.bulk,
        )
        made.append((context, spec.factory(context)))
    return made


def _drive(
    graph: RecordGraph,
    sinks: list[tuple[SinkContext, Sink]],
    progress: Progress,
    observers: Sequence[Callable[[Sequence[Result]], None]] = (),
) -> list[tuple[str, OutputReport]]:
    live = [sink for _, sink in sinks]
    try:
        for context, sink in sinks:
            with _naming(context):
                sink.begin(graph)
        readers = [(c, s) for c, s in sinks if c.needs_profiles]
        profiles = _ProfileReader(graph, readers, observers)
        # The bulk lane writes the long tables straight from the source's raw results when
        # it can (docs/performance.md), reading the profile answers in a thread while its
        # workers run; otherwise the profile answers come first, then every sink gets
        # checked Result batches.
        beside = None if profiles.started else profiles.read
        if not fastlane.run(graph, sinks, progress, observed=bool(observers), beside=beside):
            profiles.read()
            done = 0
            for batch in graph.trial_results():
                for observe in observers:
                    observe(batch)
                for context, sink in sinks:
                    with _naming(context):
                        sink.write_results(batch)
                done += len(batch)
                progress.update(done, graph.expected_trial_results)
        reports: list[tuple[str, OutputReport]] = []
        for context, sink in sinks:
            with _naming(context):
                reports.extend(
                    (context.name, attrs.evolve(report, sink=context.name))
                    for report in sink.finish()
                )
        return reports
    except BaseException:
        for sink in live:
            with contextlib.suppress(Exception):
                sink.abort()
        raise


class _ProfileReader:
    """Hands the profile answers to the sinks that read them and to the observers, once.

    Sinks whose spec reads profile answers may find at run time that their table has no
    use for them (:meth:`~aml_exportkit.tabular.sink.TabularSink.wants_profiles`); when no
    sink and no observer uses them, the answers are only checked, in bulk when the source
    can (:func:`~aml_exportkit.fastlane.check_profiles`), else through the graph.
    """

    def __init__(
        self,
        graph: RecordGraph,
        readers: Sequence[tuple[SinkContext, Sink]],
        observers: Sequence[Callable[[Sequence[Result]], None]],
    ) -> None:
        self.graph = graph
        self.readers = [(c, s) for c, s in readers if getattr(s, "wants_profiles", _yes)()]
        self.observers = observers
        self.check_only = bool(readers) and not (self.readers or observers)
        self.started = not (readers or observers)

    def read(self) -> None:
        """Read them, unless that was done (or begun) already."""
        if self.started:
            return
        self.started = True
        if self.check_only and fastlane.check_profiles(self.graph):
            return
        for batch in self.graph.profile_results():
            for observe in self.observers:
                observe(batch)
            for context, sink in self.readers:
                with _naming(context):
                    sink.write_profiles(batch)


def _yes() -> bool:
    return True


@contextlib.contextmanager
def _naming(context: SinkContext) -> Iterator[None]:
    """Turn an OS error inside a sink into a SinkError that names the sink and its path."""
    try:
        yield
    except OSError as exc:
        raise SinkError(
            f"cannot write: {exc.strerror or exc}", sink=context.name, path=str(context.target)
        ) from None

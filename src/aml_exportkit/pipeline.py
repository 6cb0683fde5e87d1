"""One export run: template → source → graph → sinks → files renamed into place.

This module imports no builtin source or sink by name; it knows them only through the
plugin registry.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs

from . import codebook, engine, manifest
from .atomic import OutputSet, control_character, is_utf8, shown_path
from .contracts import (
    OutputReport,
    ResultBatch,
    Sink,
    SinkContext,
    Source,
    SourceOptions,
    hand_result_batch,
    unmet_requirements,
)
from .errors import PluginError, SinkError, SourceError, TemplateError
from .graph import RecordGraph, SourceInfo
from .multisource import merge_graphs
from .plugins import PluginManager, Registry, get_plugin_manager, load_registry
from .progress import NullProgress, Progress
from .records import Result
from .scan import DataScan
from .selection import BlockMark, Selection, Since, is_slug
from .template.load import load_template as _load_template
from .template.model import SinkTable, Template
from .template.recorded import recorded_title
from .watermark import as_json as watermark_json
from .watermark import check_blocks, load_since, marks_of
from .watermark import merge as merge_marks

BLOCK_PLACEHOLDER = "{block}"
#: The builtin plugin that applies ``[privacy]``.
PRIVACY_PLUGIN = "aml_exportkit.privacy"


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
    its sink paths agree on ``{block}`` and hold with or without ``--out``, and that its
    sinks' modules are installed.

    :raises ExportkitError: for the first problem.
    """
    registry = registry or registry_for()
    template = load_template(ref, registry=registry)
    _per_block(template)
    check_sink_paths(template, None)
    check_requirements(template, registry)
    return template


def resolve_source_uris(
    template: Template, overrides: str | Sequence[str] | None = None
) -> list[str]:
    """The source URIs of a run: ``overrides`` as given, else the template's ``[source]
    uri`` or ``uris``, with a relative path taken relative to the template's folder.

    :raises TemplateError: when there is no source, or the template sets both keys.
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    if overrides:
        return list(overrides)
    table = template.source
    if table.uri and table.uris:
        raise TemplateError(
            "set [source] uri or uris, not both", file=template.file, key_path="source.uris"
        )
    listed = list(table.uris) if table.uris else [table.uri] if table.uri else []
    if not listed:
        raise TemplateError(
            "no source: set [source] uri (or uris) or pass --source",
            file=template.file,
            key_path="source.uri",
        )
    return [_local_uri(template, uri) for uri in listed]


def _local_uri(template: Template, uri: str) -> str:
    """``uri`` as given when it names a server, else a path relative to the template's
    folder, which must be UTF-8 text (the manifest names it)."""
    if "://" in uri:
        return uri
    path = str(template.folder / uri)
    if not is_utf8(path):
        raise TemplateError(
            f"the source's path {shown_path(path)!r} is not UTF-8 text (the template's folder"
            " name); the manifest names it, so it must be",
            file=template.file,
            key_path="source.uri",
        )
    return path


def resolve_source_uri(template: Template, override: str | None) -> str:
    """The one source URI of a run that reads one source (see :func:`resolve_source_uris`).

    :raises TemplateError: when the template lists several sources.
    """
    uris = resolve_source_uris(template, override)
    if len(uris) > 1:
        raise TemplateError(
            f"this reads one source, and [source] uris lists {len(uris)}; pass one with --source",
            file=template.file,
            key_path="source.uris",
        )
    return uris[0]


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


def check_sink_paths(template: Template, out_dir: Path | None) -> None:
    """Refuse sink paths that could write anywhere but where the user asked.

    Every path: no control character (NUL, a line break, a tab), and not ending in ``/``
    (that names a folder). With ``out_dir``
    (``--out``), every output must land inside it: no absolute path, no ``~``, no ``..``
    that climbs out (``sub/../r.zip`` stays inside and is fine). Runs before anything is
    read; ``{block}`` can only become a slug, which holds no ``/`` or ``.``.

    :raises TemplateError: naming the sink's ``path`` key.
    """
    for index, sink in enumerate(template.sinks):
        raw = sink.path
        problem = None
        control = control_character(raw)
        if control is not None:
            problem = f"contains {control}; a sink path names a file"
        elif raw.endswith(("/", "/.", "/..")) or raw in (".", ".."):
            problem = "names a folder; a sink path names a file"
        elif out_dir is not None:
            problem = leaves_out(raw)
        if problem is not None:
            raise TemplateError(
                f"{raw!r} {problem}", file=template.file, key_path=f"sinks[{index}].path"
            )


def leaves_out(raw: str) -> str | None:
    """Why the sink path ``raw`` would not stay inside ``--out``, or None when it does."""
    inside = posixpath.normpath(raw.replace(BLOCK_PLACEHOLDER, "block"))
    if raw.startswith("~"):
        return "starts with '~'; with --out, sink paths are relative to --out"
    if posixpath.isabs(raw):
        return "is absolute; with --out, sink paths are relative to --out"
    if inside in (".", "..") or inside.startswith("../"):
        return "climbs out of --out with '..'"
    return None


def _check_slugs(template: Template, blocks: Sequence[str] | None) -> None:
    """Refuse block slugs Django's SlugField would not hold (they may become paths)."""
    given = blocks if blocks else template.source.blocks
    for index, slug in enumerate(given):
        if not is_slug(slug):
            raise TemplateError(
                f"{slug!r} is not a block slug (letters, digits, '-' and '_' only)",
                file=template.file,
                key_path="--block" if blocks else f"source.blocks[{index}]",
            )


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
        # _single_slug checked it; checked again here, where it becomes a path
        if not is_slug(block_slug):
            raise TemplateError(
                f"the block slug {block_slug!r} is not a slug; it cannot become a path",
                file=template.file,
                key_path=f"sinks[{index}].path",
            )
        raw = raw.replace(BLOCK_PLACEHOLDER, block_slug)
    if out_dir is not None:
        path = out_dir / raw
        # A symbolic link inside --out must not lead the output out of it.
        root = os.path.realpath(out_dir)
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise TemplateError(
                f"{sink.path!r} leads out of --out through a symbolic link",
                file=template.file,
                key_path=f"sinks[{index}].path",
            )
        return path
    path = Path(raw).expanduser()
    return path if path.is_absolute() else template.folder / path


def run_export(
    template: Template,
    *,
    source: str | Sequence[str] | None = None,
    blocks: Sequence[str] | None = None,
    out_dir: Path | None = None,
    plugin_manager: PluginManager | None = None,
    progress: Progress | None = None,
    since: str | Path | Since | None = None,
    jobs: int | None = None,
) -> ExportReport:
    """Run ``template``: read the source(s), feed every sink, then move the outputs into
    place.

    :param template: the loaded template.
    :param source: a source URI, or several, that replace ``[source] uri`` (or ``uris``).
        Several sources go into one table (:mod:`aml_exportkit.multisource`).
    :param blocks: block slugs that override ``[source] blocks``.
    :param out_dir: the folder every output must land in (``--out``); without it, sink
        paths are relative to the template's folder (a builtin template's: the current
        folder).
    :param plugin_manager: the plugins to use (default: a fresh manager).
    :param progress: receives the running count of trial results written.
    :param since: an earlier run's ``manifest.json`` (or its loaded watermark): export
        only the sessions new or changed since that run (:mod:`aml_exportkit.watermark`).
    :param jobs: the engine's worker processes (``--jobs``); it overrides
        ``EXPORTKIT_JOBS``, which overrides the template's ``jobs`` (default: one per CPU).
    :raises ExportkitError: for any problem; the output locations are then as they were.
    """
    check_sink_paths(template, out_dir)
    _check_slugs(template, blocks)
    workers = engine.jobs_setting(jobs, template.jobs)
    per_block = _per_block(template)
    pm = plugin_manager or get_plugin_manager()
    if template.privacy.is_active and not pm.has_plugin(PRIVACY_PLUGIN):
        _privacy_missing()  # early, before a long read; prepare_graph checks it was applied
    registry = load_registry(pm)
    check_requirements(template, registry)
    uris = resolve_source_uris(template, source)
    earlier = since if since is None or isinstance(since, Since) else load_since(Path(since))
    # a block named twice is one block (each unit of a {block} run writes its own files)
    wanted = tuple(dict.fromkeys(blocks or template.source.blocks))
    if per_block and len(uris) > 1:
        raise TemplateError(
            f"{BLOCK_PLACEHOLDER} in sink paths needs one source; {len(uris)} sources go into"
            " one table (its block columns tell the rows apart)",
            file=template.file,
            key_path="sinks[0].path",
        )
    units: list[tuple[str, ...]] = (
        [(slug,) for slug in wanted] if per_block and wanted else [wanted]
    )
    progress = progress or NullProgress()
    outputs = OutputSet(keep_existing=earlier is not None)
    written: list[tuple[str, OutputReport]] = []
    infos: list[SourceInfo] = []
    transforms: list[Mapping[str, Any]] = []
    marks: list[BlockMark] = []
    found: dict[int, str | None] = {}  # the run's blocks, pk → slug
    recorded: dict[int, str] = {}  # the slugs a database holds (a block record with rules)
    counts = {"profile": 0, "trial": 0}
    sessions = 0
    slugs: list[str] = []  # what {block} became, per unit
    questions = codebook.QuestionCollector() if template.codebook else None
    # the column statistics of the files the engine wrote (counted as it wrote them)
    counted: dict[Path, tuple[list[codebook.ColumnStats], int]] = {}
    try:
        with contextlib.ExitStack() as stack:
            opened = [
                stack.enter_context(
                    open_source(
                        uri,
                        options=SourceOptions(missing_sections=template.source.missing_sections),
                        registry=registry,
                    )
                )
                for uri in uris
            ]
            for unit in units:
                selection = Selection(blocks=unit, filter=template.filter, since=earlier)
                progress.phase("reading")
                with _read(opened, selection) as graph:
                    found.update((pk, b.slug) for pk, b in graph.blocks.items())
                    recorded.update(
                        (pk, b.slug)
                        for pk, b in graph.blocks.items()
                        if b.slug and b.rules is not None
                    )
                    if earlier is not None and len(units) == 1:
                        check_blocks(earlier, found, recorded)  # before any output is written
                    transforms.extend(prepare_graph(pm, graph, template))
                    slug = _single_slug(graph, unit) if per_block else None
                    if slug:
                        slugs.append(slug)
                    sinks = _make_sinks(template, registry, outputs, out_dir, slug)
                    written.extend(drive(graph, sinks, progress, questions, workers, counted))
                    infos.append(graph.info)
                    marks.extend(marks_of(graph))
                    sessions += len(graph.sessions)
                    for kind, n in graph.result_counts.items():
                        counts[kind] += n
            if earlier is not None:
                check_blocks(earlier, found, recorded)
            if questions is not None:
                progress.phase("codebook")
                folder = manifest.manifest_folder([r.path for _, r in written], out_dir, template)
                current = [(r, outputs.pending_path(r.path)) for _, r in written]
                title = recorded_title(template)
                written.extend(
                    ("codebook", r)
                    for r in codebook.write_codebook(
                        folder,
                        functools.partial(outputs.create, describes_run=True),
                        current,
                        questions.found,
                        title,
                        counted,
                    )
                )
            if template.manifest:
                progress.phase("manifest")
                increment = (
                    {"manifest_sha256": earlier.manifest_sha256, "sessions": sessions}
                    if earlier is not None
                    else None
                )
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
                    watermark_json(merge_marks(earlier, marks)),
                    increment,
                    slugs or list(wanted),
                )
        outputs.commit()
    except OSError as exc:  # one no sink turned into a SinkError (codebook, manifest)
        outputs.discard()
        raise SinkError(
            f"cannot write: {exc.strerror or exc}",
            sink="output",
            path=str(exc.filename) if exc.filename else "",
        ) from None
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


@contextlib.contextmanager
def _read(sources: Sequence[Source], selection: Selection) -> Iterator[RecordGraph]:
    """The graph of ``selection``: one source's, or every source's merged into one.

    With several sources, a source that holds one block (a zip: ``holds_one_block``)
    reads its own block, named by the source, and the others the blocks asked for.
    """
    if len(sources) == 1:
        with sources[0].read(selection) as graph:
            yield graph
        return
    own = attrs.evolve(selection, blocks=())
    with contextlib.ExitStack() as stack:
        graphs = [
            stack.enter_context(
                source.read(own if getattr(source, "holds_one_block", False) else selection)
            )
            for source in sources
        ]
        yield merge_graphs(graphs)


def prepare_graph(
    pm: PluginManager, graph: RecordGraph, template: Template
) -> list[Mapping[str, Any]]:
    """Let every plugin change the small tables (pseudonymisation) before any output sees
    them; return what each did, for the manifest.

    :raises PluginError: when the template has ``[privacy]`` and no loaded plugin applied
        it (``EXPORTKIT_BLOCK_PLUGINS`` must not switch privacy off).
    """
    results = pm.hook.exportkit_prepare_graph(graph=graph, template=template)
    done = [r for r in reversed(results) if r]
    if template.privacy.is_active and not any("privacy" in r for r in done):
        _privacy_missing()
    return done


def _privacy_missing() -> NoReturn:
    raise PluginError(
        "the template has [privacy], but the plugin that applies it is not loaded (is it in"
        " EXPORTKIT_BLOCK_PLUGINS?); nothing is exported without it",
        plugin=PRIVACY_PLUGIN,
    )


def _write_manifest(
    template: Template,
    pm: PluginManager,
    sources: Sequence[Source],
    outputs: OutputSet,
    out_dir: Path | None,
    blocks: Sequence[str],
    written: Sequence[tuple[str, OutputReport]],
    infos: Sequence[SourceInfo],
    transforms: Sequence[Mapping[str, Any]],
    counts: Mapping[str, int],
    marks: Mapping[str, Any],
    since: Mapping[str, Any] | None,
    slugs: Sequence[str],
) -> None:
    folder = manifest.manifest_folder([r.path for _, r in written], out_dir, template)
    entries = [
        manifest.output_entry(report, outputs.pending_path(report.path), folder, sink)
        for sink, report in written
    ]
    found = []
    for source in sources:
        details_of = getattr(source, "manifest_details", None)
        found.append(details_of() if callable(details_of) else {})
    # one source's checksum or snapshot stays where it always was; several are listed
    details = found[0] if len(found) == 1 else {"inputs": found}
    document = manifest.build_manifest(
        template=template,
        pm=pm,
        sources=infos,
        source_details=details,
        blocks=blocks,
        outputs=entries,
        transforms=transforms,
        result_counts=counts,
        watermark=marks,
        since=since,
    )
    path = outputs.create(folder / _manifest_name(template, slugs), describes_run=True)
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
    not even name the block's primary key).

    :raises SourceError: when the slug the data gives is not a valid slug (a database row
        or a zip's file name could hold anything).
    """
    blocks = list(graph.blocks.values())
    if len(blocks) == 1:
        slug = blocks[0].slug
        if slug is not None and not is_slug(slug):
            guessed = graph.info.details.get("block_slug") == slug
            raise SourceError(
                f"slug {slug!r} is not a valid slug (letters, digits, '-' and '_'); it"
                " cannot become an output path"
                + ("; name the block with --block" if guessed else ""),
                file=graph.info.location,
                model="block",
                pk=blocks[0].pk,
            )
        return slug
    if not blocks and len(unit) == 1:
        return unit[0]
    guess = graph.info.details.get("block_slug") if not blocks else None
    if not isinstance(guess, str):
        return None
    if not is_slug(guess):
        raise SourceError(
            f"the file name suggests the block slug {guess!r}, which is not a valid slug"
            " (letters, digits, '-' and '_'); name the block with --block",
            file=graph.info.location,
        )
    return guess


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
            engine=spec.engine,
        )
        made.append((context, spec.factory(context)))
    return made


def drive(
    graph: RecordGraph,
    sinks: list[tuple[SinkContext, Sink]],
    progress: Progress,
    questions: codebook.QuestionCollector | None = None,
    jobs: int | None = None,
    counted: dict[Path, tuple[list[codebook.ColumnStats], int]] | None = None,
) -> list[tuple[str, OutputReport]]:
    """Begin every sink, hand it the graph's results through the engine, and finish it:
    the reports of every file written (every sink aborted when anything fails)."""
    live = [sink for _, sink in sinks]
    observers = [questions.add] if questions is not None else []
    try:
        for context, sink in sinks:
            with _naming(context):
                sink.begin(graph)
        readers = [(c, s) for c, s in sinks if c.needs_profiles]
        profiles = _ProfileReader(graph, readers, observers)
        # The engine reads every run's trial results (the source's raw results in chunks, or
        # its records cut between sessions; docs/performance.md): it writes its tables
        # itself, reads the profile answers in a thread while its workers run, and hands
        # the other sinks the trial results as record batches as the chunks arrive (after
        # the profile answers); bad input ends the run with the source's error. There is no
        # other path (decision 0035). The codebook's questions of the trial results come
        # from the engine's chunks, after those of the profile answers; the column
        # statistics of the files the engine writes are counted by its workers.
        beside = None if profiles.started else profiles.read
        trial_questions = DataScan() if questions is not None else None
        with _naming_engine(sinks):
            engine.run(
                graph,
                sinks,
                progress,
                beside=beside,
                jobs=jobs,
                questions=trial_questions,
                feed=_feed,
                counted=counted if questions is not None else None,
            )
        if questions is not None and trial_questions is not None:
            questions.found.merge_questions(trial_questions)
        progress.phase("writing")
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
    sink and no observer uses them, the answers are only checked, in one go when the source
    can (:func:`~aml_exportkit.engine.check_profiles`), else through the graph.
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
        if self.check_only and engine.check_profiles(self.graph):
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
def _naming_engine(sinks: Sequence[tuple[SinkContext, Sink]]) -> Iterator[None]:
    """Turn an OS error of the engine (which writes the sinks' files itself) into a
    SinkError naming the sink whose file it was (the first sink when the error does not
    say which file)."""
    try:
        yield
    except OSError as exc:
        if not sinks:  # (a run without sinks writes nothing: not a sink's error)
            raise
        named = str(exc.filename) if exc.filename else ""
        context = next((c for c, _ in sinks if named and _temp_of(c) == named), sinks[0][0])
        reason = exc.strerror or str(exc)
        raise SinkError(
            f"cannot write: {reason}", sink=context.name, path=str(context.target)
        ) from None


def _temp_of(context: SinkContext) -> str:
    try:
        return str(context.outputs.pending_path(context.target))
    except KeyError:
        return ""


def _feed(context: SinkContext, sink: Sink, batch: ResultBatch) -> None:
    """Hand a batch of the engine's to a sink it does not write, naming the sink on error."""
    with _naming(context):
        hand_result_batch(sink, batch)


@contextlib.contextmanager
def _naming(context: SinkContext) -> Iterator[None]:
    """Turn an OS error inside a sink into a SinkError that names the sink and its path."""
    try:
        yield
    except OSError as exc:
        raise SinkError(
            f"cannot write: {exc.strerror or exc}", sink=context.name, path=str(context.target)
        ) from None

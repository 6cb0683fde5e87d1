"""Every hook a plugin can implement. All names start with ``exportkit_``.

A plugin is a module (or object) with functions marked ``@hookimpl``::

    from aml_exportkit import hookimpl

    @hookimpl
    def exportkit_register_sinks():
        return [SinkSpec(name="jsonl", ...)]

Builtin sources, sinks and templates are plugins of exactly this kind. Third-party
plugins register through the entry-point group ``aml_exportkit``. ``docs/hooks.md``
documents each hook; a test fails when a hook is missing there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from .contracts import SinkSpec, SourceSpec, TemplateSpec
from .graph import RecordGraph

if TYPE_CHECKING:
    from .template.model import Template

PROJECT_NAME = "aml_exportkit"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def exportkit_register_sources() -> Iterable[SourceSpec]:
    """Declare the kinds of source this plugin reads.

    :return: source descriptions. Each claims the URIs it reads
        (:attr:`SourceSpec.claims`); exactly one source may claim a URI.

    Results combine: every plugin's sources are collected. A source name used by two
    plugins is an error naming both.

    Example::

        @hookimpl
        def exportkit_register_sources():
            return [SourceSpec(name="csv-dir", description="...",
                               claims=lambda uri: uri.startswith("csvdir://"),
                               open=open_csv_dir)]
    """
    raise NotImplementedError


@hookspec
def exportkit_register_sinks() -> Iterable[SinkSpec]:
    """Declare the kinds of sink (output format) this plugin writes.

    :return: sink descriptions. :attr:`SinkSpec.name` is the ``type`` a template's
        ``[[sinks]]`` entry uses; :attr:`SinkSpec.options` is the attrs class its other
        keys are checked against.

    Results combine: every plugin's sinks are collected. A sink name used by two plugins
    is an error naming both.

    Example::

        @hookimpl
        def exportkit_register_sinks():
            return [SinkSpec(name="jsonl", description="one JSON object per result",
                             options=JsonlOptions, factory=JsonlSink,
                             extensions=(".jsonl",))]
    """
    raise NotImplementedError


@hookspec
def exportkit_register_templates() -> Iterable[TemplateSpec]:
    """Ship ready-made templates, usable by name wherever a template path is accepted.

    :return: template descriptions with their TOML text. Use a prefix of your own in the
        names (``myplugin:name``).

    Results combine: every plugin's templates are collected. A template name used by two
    plugins is an error naming both.

    Example::

        @hookimpl
        def exportkit_register_templates():
            return [TemplateSpec(name="mylab:trials", description="...",
                                 text=files("mylab").joinpath("trials.toml").read_text())]
    """
    raise NotImplementedError


@hookspec
def exportkit_prepare_graph(graph: RecordGraph, template: Template) -> Mapping[str, Any] | None:
    """Change the graph's small tables after the source has read them and before any sink
    sees them: for example, pseudonymise participants (the builtin ``[privacy]`` table is
    implemented this way).

    :param graph: the graph of one block (or of all blocks of the run); replace records with
        :meth:`RecordGraph.replace_table`, keeping primary keys and foreign keys intact.
        Results stream later and cannot be changed here.
    :param template: the run's template.
    :return: ``None``, or a JSON-ready mapping that the run's ``manifest.json`` records under
        ``transforms`` (say what was changed, never secrets).

    Every implementation is called, in registration order (builtins first).

    Example::

        @hookimpl
        def exportkit_prepare_graph(graph, template):
            graph.replace_table("participant", {
                pk: attrs.evolve(p, access_info=None) for pk, p in graph.participants.items()
            })
            return {"dropped": ["access_info"]}
    """
    raise NotImplementedError

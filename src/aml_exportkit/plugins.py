"""The plugin manager, and the registry of what the plugins provide.

Builtins are ordinary plugin modules listed in :data:`DEFAULT_PLUGINS` and registered with
the same ``register`` call as third-party plugins from the entry-point group
``aml_exportkit``. Every run makes a fresh manager; nothing is global.

Environment:

- ``EXPORTKIT_PLUGINS=package.module,other`` also registers these importable modules as
  plugins, without packaging them (for trying a plugin out);
- ``EXPORTKIT_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry-point plugins;
- ``EXPORTKIT_BLOCK_PLUGINS=name,other`` skips plugins (builtin module names, entry-point
  names or distribution names).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import attrs
import pluggy

from . import hookspecs
from .contracts import SinkSpec, SourceSpec, TemplateSpec
from .errors import PluginError, SourceError

#: The builtin plugin modules, registered first, in this order.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "aml_exportkit.sources.fixture_zip",
    "aml_exportkit.sources.muscle_db",
    "aml_exportkit.sinks.fixture_json",
    "aml_exportkit.sinks.csv_long",
    "aml_exportkit.sinks.csv_wide",
    "aml_exportkit.sinks.parquet",
    "aml_exportkit.sinks.duckdb",
    "aml_exportkit.builtin_templates",
    "aml_exportkit.privacy",
)
#: The entry-point group third-party plugins register in.
ENTRY_POINT_GROUP = "aml_exportkit"
ENV_DISABLE_AUTOLOAD = "EXPORTKIT_DISABLE_PLUGIN_AUTOLOAD"
ENV_BLOCK = "EXPORTKIT_BLOCK_PLUGINS"
ENV_EXTRA = "EXPORTKIT_PLUGINS"

T = TypeVar("T", SourceSpec, SinkSpec, TemplateSpec)


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which distribution provided each plugin."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        #: plugin name → distribution name, for third-party plugins.
        self.distributions: dict[str, str] = {}

    def distribution_of(self, plugin_name: str) -> str | None:
        """The distribution that provides ``plugin_name``, or None for a builtin."""
        return self.distributions.get(plugin_name)


def _names_from_env(variable: str) -> list[str]:
    raw = os.environ.get(variable, "")
    return [name.strip() for name in raw.split(",") if name.strip()]


def get_plugin_manager(
    *,
    load_entrypoints: bool | None = None,
    blocked: Iterable[str] = (),
    plugins: Iterable[object] = (),
) -> PluginManager:
    """Make a new plugin manager with the builtins, ``plugins`` and the entry points.

    :param load_entrypoints: load the ``aml_exportkit`` entry-point group; by default
        unless ``EXPORTKIT_DISABLE_PLUGIN_AUTOLOAD`` is set.
    :param blocked: plugin or distribution names to skip, besides ``EXPORTKIT_BLOCK_PLUGINS``.
    :param plugins: extra plugin objects to register (for embedding and tests).
    :raises PluginError: for a plugin that cannot be loaded or implements an unknown hook,
        naming its distribution.
    """
    if load_entrypoints is None:
        load_entrypoints = not os.environ.get(ENV_DISABLE_AUTOLOAD)
    skip = set(blocked) | set(_names_from_env(ENV_BLOCK))
    pm = PluginManager()
    for module_name in DEFAULT_PLUGINS:
        if module_name not in skip:
            _register(pm, importlib.import_module(module_name), module_name, None)
    for plugin in plugins:
        _register(pm, plugin, None, None)
    for module_name in _names_from_env(ENV_EXTRA):
        if module_name in skip:
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(
                f"cannot be imported (named in {ENV_EXTRA}): {exc}", plugin=module_name
            ) from None
        _register(pm, module, module_name, None)
    if load_entrypoints:
        _load_entrypoints(pm, skip)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = str(pm.get_name(exc.plugin) or repr(exc.plugin))
        raise PluginError(
            f"implements a hook that does not exist: {exc}",
            plugin=name,
            distribution=pm.distribution_of(name),
        ) from None
    return pm


def _register(pm: PluginManager, plugin: object, name: str | None, dist: str | None) -> None:
    try:
        registered = pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        plugin_name = str(name or getattr(plugin, "__name__", repr(plugin)))
        raise PluginError(
            f"cannot be registered: {exc}", plugin=plugin_name, distribution=dist
        ) from None
    if dist is not None and registered is not None:
        pm.distributions[registered] = dist


def _load_entrypoints(pm: PluginManager, skip: set[str]) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        if ep.name in skip or (dist and dist in skip) or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # any import-time failure of foreign code
            raise PluginError(
                f"cannot be loaded ({type(exc).__name__}: {exc}); uninstall it or set"
                f" {ENV_BLOCK}={ep.name}",
                plugin=ep.name,
                distribution=dist,
            ) from None
        _register(pm, plugin, ep.name, dist)


@attrs.frozen
class Provided(Generic[T]):
    """Something a plugin provides, with who provides it."""

    spec: T
    plugin: str
    distribution: str | None

    @property
    def provider(self) -> str:
        """The distribution's name, or ``builtin``."""
        return self.distribution or "builtin"


@attrs.frozen
class Registry:
    """What the loaded plugins provide, by name."""

    sources: Mapping[str, Provided[SourceSpec]]
    sinks: Mapping[str, Provided[SinkSpec]]
    templates: Mapping[str, Provided[TemplateSpec]]

    @property
    def sink_specs(self) -> Mapping[str, SinkSpec]:
        """Sink descriptions by name."""
        return {name: p.spec for name, p in self.sinks.items()}

    @property
    def template_specs(self) -> Mapping[str, TemplateSpec]:
        """Builtin template descriptions by name."""
        return {name: p.spec for name, p in self.templates.items()}

    def source_for(self, uri: str) -> SourceSpec:
        """The one source that claims ``uri``.

        :raises SourceError: when no source claims it.
        :raises PluginError: when several do.
        """
        claimants = [p for p in self.sources.values() if _claims(p, uri)]
        if not claimants:
            known = "; ".join(
                f"{p.spec.name}: {p.spec.uri_help or p.spec.description}"
                for p in self.sources.values()
            )
            raise SourceError(f"no installed source reads this ({known})", file=uri)
        if len(claimants) > 1:
            names = ", ".join(f"{p.spec.name} ({p.provider})" for p in claimants)
            raise PluginError(
                f"several sources claim {uri!r}: {names}; block one with {ENV_BLOCK}",
                plugin=claimants[1].plugin,
                distribution=claimants[1].distribution,
            )
        return claimants[0].spec


def _claims(provided: Provided[SourceSpec], uri: str) -> bool:
    try:
        return bool(provided.spec.claims(uri))
    except Exception as exc:
        raise PluginError(
            f"source {provided.spec.name!r} failed to check a URI: {exc}",
            plugin=provided.plugin,
            distribution=provided.distribution,
        ) from None


def load_registry(pm: PluginManager) -> Registry:
    """Call the register hooks of every plugin and index the results by name.

    Each plugin's implementation is called on its own, so that a failure or a clash names
    the plugin and its distribution.

    :raises PluginError: for a hook that fails or returns something invalid, or a name
        that two plugins use.
    """
    return Registry(
        sources=_collect(pm, "exportkit_register_sources", SourceSpec),
        sinks=_collect(pm, "exportkit_register_sinks", SinkSpec),
        templates=_collect(pm, "exportkit_register_templates", TemplateSpec),
    )


def _collect(pm: PluginManager, hook_name: str, kind: type[T]) -> dict[str, Provided[T]]:
    found: dict[str, Provided[T]] = {}
    hook = getattr(pm.hook, hook_name)
    # pluggy calls implementations last-registered first; list them in registration order.
    for impl in reversed(hook.get_hookimpls()):
        plugin_name = impl.plugin_name
        dist = pm.distribution_of(plugin_name)
        function: Callable[[], Any] = impl.function
        try:
            specs = list(function() or ())
        except Exception as exc:
            raise PluginError(
                f"{hook_name} failed: {type(exc).__name__}: {exc}",
                plugin=plugin_name,
                distribution=dist,
            ) from None
        for spec in specs:
            if not isinstance(spec, kind):
                raise PluginError(
                    f"{hook_name} returned {type(spec).__name__}, expected {kind.__name__}",
                    plugin=plugin_name,
                    distribution=dist,
                )
            other = found.get(spec.name)
            if other is not None:
                raise PluginError(
                    f"{kind.__name__} {spec.name!r} is provided twice: by {other.provider}"
                    f" (plugin {other.plugin!r}) and by {dist or 'builtin'}",
                    plugin=plugin_name,
                    distribution=dist,
                )
            found[spec.name] = Provided(spec, plugin_name, dist)
    return found

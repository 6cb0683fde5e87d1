"""Reference documentation generated from the code, so that it cannot drift.

``docs/templates.md`` and ``docs/hooks.md`` hold generated sections between the markers
``<!-- generated:NAME -->`` and ``<!-- end generated:NAME -->``. Regenerate them with::

    python -m aml_exportkit.docgen docs/templates.md docs/hooks.md

and a test fails when a committed file differs from what the code says.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args, get_origin

import attrs

from . import hookspecs
from .plugins import Registry, get_plugin_manager, load_registry
from .selection import Filter
from .template.model import SourceTable, Template

_PARAM = re.compile(r":param (\w+):\s*(.*?)(?=\n\s*:\w|\Z)", re.S)


def param_docs(cls: type[Any]) -> dict[str, str]:
    """The ``:param name:`` texts of a class's docstring and its bases' (the class's own
    win), joined onto one line each."""
    found: dict[str, str] = {}
    for klass in cls.__mro__:
        doc = klass.__dict__.get("__doc__") or ""
        for name, text in _PARAM.findall(inspect.cleandoc(doc)):
            found.setdefault(name, " ".join(text.split()))
    return found


def type_name(tp: Any) -> str:
    """A short, readable name of a field type, as a template author sees it."""
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is typing.Literal:
        return " \\| ".join(f'`"{a}"`' if isinstance(a, str) else f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        suffix = " (optional)" if type(None) in args else ""
        return " or ".join(names) + suffix
    if origin in (tuple, list):
        return f"array of {type_name(args[0])}" if args else "array"
    if origin in (dict, typing.Mapping) or tp in (dict,):
        return "table"
    if attrs.has(tp):
        return "table"
    scalars: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if tp in scalars:
        return scalars[tp]
    if getattr(tp, "__name__", "") == "datetime":
        return "date-time with offset"
    if tp is Any:
        return "any"
    return str(getattr(tp, "__name__", tp))


def _default(field: attrs.Attribute[Any]) -> str:
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        default = default.factory()  # type: ignore[union-attr]
    if attrs.has(type(default)):
        return "see below"
    if isinstance(default, str):
        return f'`"{default}"`'
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if default is None:
        return "none"
    if default == ():
        return "`[]`"
    return f"`{default!r}`"


def _rows(cls: type[Any], prefix: str) -> Iterator[tuple[str, Any, attrs.Attribute[Any], str]]:
    docs = param_docs(cls)
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        if field.metadata.get("internal"):
            continue
        yield f"{prefix}{field.name}", hints[field.name], field, docs.get(field.name, "")


def table_of(
    cls: type[Any], prefix: str, heading: str, skip: frozenset[str] = frozenset()
) -> list[str]:
    """Markdown for one attrs class: a heading and a row per key; nested attrs classes
    get their own table after it. Keys in ``skip`` are left out."""
    lines = [heading, "", "| key | type | default | meaning |", "|---|---|---|---|"]
    nested: list[tuple[type[Any], str]] = []
    for path, tp, field, doc in _rows(cls, prefix):
        if path in skip:
            continue
        inner = [a for a in (tp, *get_args(tp)) if attrs.has(a)]
        if inner:
            nested.append((inner[0], f"{path}."))
        lines.append(f"| `{path}` | {type_name(tp)} | {_default(field)} | {doc} |")
    lines.append("")
    for inner_cls, inner_prefix in nested:
        lines += table_of(inner_cls, inner_prefix, f"#### `{inner_prefix.rstrip('.')}`")
    return lines


def undocumented_keys(registry: Registry) -> list[str]:
    """Template keys whose class docstring says nothing about them."""
    missing: list[str] = []

    def walk(cls: type[Any], prefix: str) -> None:
        for path, tp, _field, doc in _rows(cls, prefix):
            if not doc:
                missing.append(path)
            for inner in (tp, *get_args(tp)):
                if attrs.has(inner):
                    walk(inner, f"{path}.")

    for cls, prefix in _template_classes(registry):
        walk(cls, prefix)
    return missing


def _template_classes(registry: Registry) -> list[tuple[type[Any], str]]:
    classes: list[tuple[type[Any], str]] = [
        (Template, ""),
        (SourceTable, "source."),
        (Filter, "filter."),
    ]
    for name, provided in sorted(registry.sinks.items()):
        classes.append((provided.spec.options, f"sinks[type={name}]."))
    return classes


def template_reference(registry: Registry) -> str:
    """The generated part of docs/templates.md: every key of every table."""
    lines: list[str] = []
    top = [
        (Template, "", "### Top level"),
        (SourceTable, "source.", "### `[source]`"),
        (Filter, "filter.", "### `[filter]`"),
    ]
    for cls, prefix, heading in top:
        lines += table_of(cls, prefix, heading, skip=frozenset({"source", "filter", "sinks"}))
    lines += [
        "### `[[sinks]]`",
        "",
        "Every sink entry has `type` (the sink's name) and `path` (the output file; "
        "`{block}` becomes the block's slug). With `--out`, paths are relative to it and "
        "must stay inside it: an absolute path, one starting with `~` or one that climbs "
        "out with `..` is refused before anything is read. Without `--out`, paths are "
        "relative to the template's folder (for a builtin template, which has none: the "
        "current folder). Two sinks may not write one file, and only regular files are "
        "replaced. Its other keys belong to the sink:",
        "",
    ]
    for name, provided in sorted(registry.sinks.items()):
        spec = provided.spec
        lines += table_of(
            spec.options,
            "",
            f'#### `type = "{name}"` ({provided.provider}): {spec.description}',
        )
    return "\n".join(lines).rstrip() + "\n"


def hook_reference() -> str:
    """The generated part of docs/hooks.md: every hook with its signature and docstring."""
    lines: list[str] = []
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if not name.startswith("exportkit_"):
            continue
        signature = inspect.signature(function)
        lines += [f"### `{name}{signature}`", "", inspect.getdoc(function) or "", ""]
    return "\n".join(lines).rstrip() + "\n"


GENERATORS: dict[str, Callable[[Registry], str]] = {
    "template-keys": template_reference,
    "hooks": lambda registry: hook_reference(),
}


def render(text: str, registry: Registry) -> str:
    """``text`` with every generated section replaced by fresh output."""
    for name, generate in GENERATORS.items():
        pattern = re.compile(
            rf"(<!-- generated:{name} -->\n).*?(<!-- end generated:{name} -->)", re.S
        )
        text = pattern.sub(lambda m, g=generate: m[1] + g(registry) + m[2], text)  # type: ignore[misc]
    return text


def main(argv: list[str]) -> int:
    """Rewrite the generated sections of the given Markdown files."""
    registry = load_registry(get_plugin_manager(load_entrypoints=False))
    for arg in argv:
        path = Path(arg)
        text = path.read_text(encoding="utf-8")
        path.write_text(render(text, registry), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

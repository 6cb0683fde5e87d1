"""Reading templates: TOML text → checked :class:`Template`, every error with its key path."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import control_character
from ..contracts import SinkSpec, TemplateSpec
from ..errors import TemplateError
from ..exclusions import read_exclude_file
from .convert import describe_value, iter_problems, make_converter
from .model import SinkTable, Template

_CONVERTER = make_converter()
#: A UTF-8 byte-order mark, as some Windows editors write at the start of a file.
_BOM = "\ufeff"
#: Sinks that a plugin of this repository provides, and how to install it: a template
#: naming one without the plugin gets the command, not only the list of installed sinks.
PLUGIN_SINKS = dict.fromkeys(
    ("spss", "stata"),
    "the exportkit-readstat plugin, which is not installed; from a checkout of"
    " aml_exportkit: pip install ./plugins/exportkit-readstat",
)


def _raise_problems(exc: BaseException, *, file: str, prefix: str = "") -> None:
    problems = list(iter_problems(exc))
    path, message = problems[0]
    if prefix:
        path = f"{prefix}.{path}" if path and not path.startswith("[") else prefix + path
    more = len(problems) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    raise TemplateError(message, file=file, key_path=path) from None


def structure_options(
    data: Mapping[str, Any], options_type: type[Any], *, file: str, key_path: str
) -> Any:
    """Check a sink's (or plugin's) options against its attrs class.

    :raises TemplateError: naming ``file`` and the key path below ``key_path``.
    """
    try:
        return _CONVERTER.structure(dict(data), options_type)
    except Exception as exc:  # cattrs raises groups of any exception type
        _raise_problems(exc, file=file, prefix=key_path)
        raise  # unreachable: _raise_problems always raises


def parse_template(
    text: str,
    *,
    file: str,
    folder: Path,
    sinks: Mapping[str, SinkSpec],
    templates: Mapping[str, TemplateSpec] | None = None,
) -> Template:
    """Parse and check a template's TOML text.

    :param text: the TOML text.
    :param file: the file name (or builtin name) for messages.
    :param folder: the folder its relative paths are relative to.
    :param sinks: the installed sinks by name; each ``[[sinks]]`` entry is checked against
        its sink's options class.
    :param templates: the builtin templates by name, for ``extends``.
    :raises TemplateError: naming ``file`` and the key path of the first problem.
    """
    text = text.removeprefix(_BOM)
    templates = templates or {}
    top = file if file in templates else str((folder / Path(file).name).resolve())
    data = _resolve_extends(
        parse_toml(text, file),
        file=file,
        folder=folder,
        templates=templates,
        seen=((top, file),),
    )
    raw_sinks = data.pop("sinks", None)
    if raw_sinks is None:
        raise TemplateError(
            "no [[sinks]]: the template exports nothing", file=file, key_path="sinks"
        )
    if not isinstance(raw_sinks, list) or not raw_sinks:
        raise TemplateError(
            f"expected an array of tables ([[sinks]]), got {describe_value(raw_sinks)}",
            file=file,
            key_path="sinks",
        )
    tables = tuple(
        _parse_sink(raw, index, file=file, sinks=sinks) for index, raw in enumerate(raw_sinks)
    )
    try:
        template = _CONVERTER.structure(data, Template)
    except Exception as exc:
        _raise_problems(exc, file=file)
        raise
    if template.jobs is not None and template.jobs < 1:
        raise TemplateError(
            f"expected a whole number of at least 1, got {template.jobs}",
            file=file,
            key_path="jobs",
        )
    name = template.manifest_name
    if (
        name in ("", ".", "..")
        or Path(name).name != name
        or "\\" in name
        or control_character(name) is not None
    ):
        raise TemplateError(
            f"{name!r} is not a file name: the manifest goes beside the outputs",
            file=file,
            key_path="manifest_name",
        )
    return template.evolve(
        sinks=tables,
        file=file,
        text=text,
        folder=folder,
        filter=read_exclude_file(template.filter, folder, file),
    )


def parse_toml(text: str, file: str) -> dict[str, Any]:
    """The TOML ``text`` of the template ``file`` as a dict, read as if a byte-order mark
    it starts with were not there.

    :raises TemplateError: for text that is not TOML.
    """
    try:
        return tomllib.loads(text.removeprefix(_BOM))
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"not valid TOML: {exc}", file=file) from None
    except RecursionError:  # arrays or inline tables within each other: tomllib recurses
        raise TemplateError("not valid TOML: nested too deeply", file=file) from None


def _resolve_extends(
    data: dict[str, Any],
    *,
    file: str,
    folder: Path,
    templates: Mapping[str, TemplateSpec],
    seen: tuple[tuple[str, str], ...],
) -> dict[str, Any]:
    """Merge ``data`` over the template it ``extends``, recursively.

    :param seen: the chain so far: each template's identity (a builtin's name or a
        file's resolved path) and how it was named.
    """
    base_ref = data.pop("extends", None)
    if base_ref is None:
        return data
    if not isinstance(base_ref, str):
        raise TemplateError(
            f"expected a string, got {describe_value(base_ref)}", file=file, key_path="extends"
        )
    builtin = templates.get(base_ref)
    if builtin is not None:
        base_file, base_text, base_folder = base_ref, builtin.text, folder
    else:
        path = folder / base_ref
        try:
            base_text = path.read_text(encoding="utf-8").removeprefix(_BOM)
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(
                f"cannot read the template it extends ({path}): {exc}",
                file=file,
                key_path="extends",
            ) from None
        base_file, base_folder = str(path.resolve()), path.parent
    if base_file in (identity for identity, _ in seen):
        chain = " -> ".join((*(shown for _, shown in seen), base_ref))
        raise TemplateError(
            f"templates extend each other in a circle: {chain}", file=file, key_path="extends"
        )
    base = _resolve_extends(
        parse_toml(base_text, base_file),
        file=base_file,
        folder=base_folder,
        templates=templates,
        seen=(*seen, (base_file, base_ref)),
    )
    merged: dict[str, Any] = _merge(base, data)
    return merged


def _merge(base: Any, override: Any) -> Any:
    """``override`` over ``base``: tables key by key, the sinks array entry by entry."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if key == "sinks" and isinstance(value, list) and isinstance(base.get(key), list):
                old = base[key]
                merged[key] = [
                    _merge(old[i], value[i])
                    if i < len(old) and i < len(value)
                    else (value[i] if i < len(value) else old[i])
                    for i in range(max(len(old), len(value)))
                ]
            else:
                merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return override


def _parse_sink(raw: Any, index: int, *, file: str, sinks: Mapping[str, SinkSpec]) -> SinkTable:
    where = f"sinks[{index}]"
    if not isinstance(raw, dict):
        raise TemplateError(
            f"expected a table, got {describe_value(raw)}", file=file, key_path=where
        )
    options = dict(raw)
    for key in ("type", "path"):
        if key not in options:
            raise TemplateError("missing required key", file=file, key_path=f"{where}.{key}")
        if not isinstance(options[key], str) or not options[key]:
            raise TemplateError(
                f"expected a non-empty string, got {describe_value(options[key])}",
                file=file,
                key_path=f"{where}.{key}",
            )
    kind = options.pop("type")
    path = options.pop("path")
    spec = sinks.get(kind)
    if spec is None:
        known = ", ".join(sorted(sinks)) or "none"
        plugin = PLUGIN_SINKS.get(kind)
        hint = f": it comes from {plugin}" if plugin else ""
        raise TemplateError(
            f"unknown sink {kind!r}{hint}; installed: {known}",
            file=file,
            key_path=f"{where}.type",
        )
    structured = structure_options(options, spec.options, file=file, key_path=where)
    return SinkTable(type=kind, path=path, options=structured)


def load_template(
    ref: str,
    *,
    sinks: Mapping[str, SinkSpec],
    templates: Mapping[str, TemplateSpec],
) -> Template:
    """Load a template from a file path or by a builtin template's name.

    A builtin's relative paths are relative to the current folder.

    :raises TemplateError: for a missing file, an unknown builtin name or an invalid
        template.
    """
    builtin = templates.get(ref)
    if builtin is not None:
        return parse_template(
            builtin.text, file=ref, folder=Path.cwd(), sinks=sinks, templates=templates
        )
    path = Path(ref)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        hint = ""
        if ":" in ref and templates:
            hint = f"; builtin templates: {', '.join(sorted(templates))}"
        raise TemplateError(f"no such template file or builtin template{hint}", file=ref) from None
    except OSError as exc:
        raise TemplateError(f"cannot read the template: {exc.strerror}", file=ref) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"not UTF-8 text (byte {exc.start})", file=ref) from None
    return parse_template(
        text, file=ref, folder=path.absolute().parent, sinks=sinks, templates=templates
    )

"""Builtin templates: MUSCLE's ten classic CSV templates (``muscle-classic:NAME``) and its
2026 dashboard CSV (``muscle-dashboard:long``). Each is an ordinary template file in this
package; ``exportkit templates`` lists them and every command that takes a template path
takes their names too."""

from __future__ import annotations

import tomllib
from importlib import resources

from ..contracts import TemplateSpec
from ..hookspecs import hookimpl

#: The classic export's template keys, in the order of MUSCLE's form.
CLASSIC_NAMES = (
    "wide",
    "wide_json",
    "wide_results",
    "wide_results_json",
    "wide_profile",
    "long",
    "long_json",
    "long_results",
    "long_results_json",
    "long_profile",
)


def _files() -> list[tuple[str, str]]:
    names = [(f"muscle-classic:{n}", f"muscle_classic_{n}.toml") for n in CLASSIC_NAMES]
    names.append(("muscle-dashboard:long", "muscle_dashboard_long.toml"))
    return names


def template_text(name: str) -> str:
    """The TOML text of builtin template ``name``.

    :raises KeyError: for an unknown name.
    """
    files = dict(_files())
    return resources.files(__name__).joinpath(files[name]).read_text(encoding="utf-8")


@hookimpl
def exportkit_register_templates() -> list[TemplateSpec]:
    """MUSCLE's classic and dashboard CSV templates."""
    specs = []
    for name, _ in _files():
        text = template_text(name)
        description = str(tomllib.loads(text).get("description", ""))
        specs.append(TemplateSpec(name=name, description=description, text=text))
    return specs

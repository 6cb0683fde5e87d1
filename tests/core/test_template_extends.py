"""``extends``: start from another template (a file or a builtin) and change it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aml_exportkit.contracts import TemplateSpec
from aml_exportkit.errors import TemplateError
from aml_exportkit.plugins import get_plugin_manager, load_registry
from aml_exportkit.template.load import load_template

SINKS = load_registry(get_plugin_manager(load_entrypoints=False)).sink_specs
BUILTIN = TemplateSpec(
    name="lab:base",
    description="a base",
    text='name = "base"\n[source]\nblocks = ["b"]\n[[sinks]]\ntype = "fixture-json"\n'
    'path = "{block}.zip"\n',
)


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_extends_a_file_and_overrides_keys(tmp_path: Path) -> None:
    write(
        tmp_path / "base.toml",
        'name = "base"\n[source]\nblocks = ["a"]\n'
        '[[sinks]]\ntype = "fixture-json"\npath = "a.zip"\n',
    )
    child = write(
        tmp_path / "child.toml",
        'extends = "base.toml"\ndescription = "mine"\n'
        '[source]\nmissing_sections = "keep"\n[[sinks]]\ncompression = "deflate"\n'
        '[[sinks]]\ntype = "fixture-json"\npath = "second.zip"\n',
    )
    template = load_template(child, sinks=SINKS, templates={})
    assert template.name == "base"
    assert template.description == "mine"
    assert template.source.blocks == ("a",)
    assert template.source.missing_sections == "keep"
    assert [s.path for s in template.sinks] == ["a.zip", "second.zip"]
    assert template.sinks[0].options.compression == "deflate"
    assert template.sinks[1].options.compression == "stored"


def test_extends_a_builtin(tmp_path: Path) -> None:
    child = write(tmp_path / "c.toml", 'extends = "lab:base"\n[[sinks]]\npath = "x.zip"\n')
    template = load_template(child, sinks=SINKS, templates={"lab:base": BUILTIN})
    assert template.source.blocks == ("b",)
    assert template.sinks[0].path == "x.zip"


def test_errors_in_the_base_name_the_base(tmp_path: Path) -> None:
    write(tmp_path / "base.toml", '[[sinks]]\ntype = "fixture-json"\npath = "a"\nzip = 1\n')
    child = write(tmp_path / "child.toml", 'extends = "base.toml"\n')
    with pytest.raises(TemplateError, match=r"sinks\[0\]\.zip"):
        load_template(child, sinks=SINKS, templates={})


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ({"a.toml": 'extends = "a.toml"\n'}, ["circle"]),
        ({"a.toml": 'extends = "b.toml"\n', "b.toml": 'extends = "a.toml"\n'}, ["circle"]),
        ({"a.toml": 'extends = "missing.toml"\n'}, ["extends", "missing.toml"]),
        ({"a.toml": "extends = 3\n"}, ["extends", "string"]),
    ],
)
def test_bad_extends(files: dict[str, str], words: list[str], tmp_path: Path) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(TemplateError) as info:
        load_template(str(tmp_path / "a.toml"), sinks=SINKS, templates={})
    for word in words:
        assert word in str(info.value)

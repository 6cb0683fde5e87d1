"""The reference docs are generated from the code; these tests fail when they drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aml_exportkit import errors
from aml_exportkit.docgen import render, undocumented_keys
from aml_exportkit.plugins import get_plugin_manager, load_registry

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REGISTRY = load_registry(get_plugin_manager(load_entrypoints=False))


@pytest.mark.parametrize("name", ["templates.md", "hooks.md"])
def test_generated_reference_is_current(name: str) -> None:
    text = (DOCS / name).read_text(encoding="utf-8")
    assert "<!-- generated:" in text
    assert render(text, REGISTRY) == text, (
        f"docs/{name} is out of date: run python -m aml_exportkit.docgen docs/{name}"
    )


def test_every_template_key_has_a_description() -> None:
    assert undocumented_keys(REGISTRY) == []


def test_every_hook_is_in_the_hook_reference() -> None:
    from aml_exportkit import hookspecs

    text = (DOCS / "hooks.md").read_text(encoding="utf-8")
    hooks = [n for n in dir(hookspecs) if n.startswith("exportkit_")]
    assert hooks
    for hook in hooks:
        assert f"### `{hook}(" in text


def test_every_exit_code_is_documented() -> None:
    text = (DOCS / "exit-codes.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| `?(\w+)`? \|", text, re.M))
    codes = {getattr(errors, n) for n in dir(errors) if n.startswith("EXIT_")}
    assert {int(c) for c in rows} >= codes
    for cls in errors.ERROR_CLASSES:
        assert f"`{cls.__name__}`" in text
        assert rows[str(cls.exit_code)]


def test_every_command_is_in_the_getting_started_guide() -> None:
    from aml_exportkit.cli import cli

    text = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    for name in cli.commands:
        assert f"exportkit {name}" in text, name


def test_the_pseudonymised_share_recipe_runs(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from aml_exportkit.cli import cli

    text = (DOCS / "recipes.md").read_text(encoding="utf-8")
    template = text.split("# share.toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "share.toml").write_text(template, encoding="utf-8")
    monkeypatch.setenv("LAB_EXPORT_KEY", "a key of at least sixteen characters")
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(tmp_path / "share.toml"),
            "--source",
            str(reference_dir / "head" / "block_tafc-dvorak.zip"),
            "--out",
            str(tmp_path / "share"),
        ],
    )
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "share").iterdir())
    assert names == [
        "codebook.md",
        "datapackage.json",
        "manifest.json",
        "tafc-dvorak-fixtures.zip",
        "tafc-dvorak-trials.csv",
    ]


def test_the_readme_lists_each_document_once() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)]+)\)", readme)
    assert links
    assert sorted(set(links)) == sorted(links), "a document is listed twice"


def test_getting_started_says_how_to_install_from_a_checkout() -> None:
    text = (ROOT / "docs" / "getting-started.md").read_text(encoding="utf-8")
    assert "pip install ." in text
    assert "pip install -e ." in text

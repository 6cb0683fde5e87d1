"""The reference docs are generated from the code; these tests fail when they drift."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aml_exportkit import errors
from aml_exportkit.docgen import render, undocumented_keys
from aml_exportkit.plugins import get_plugin_manager, load_registry
from testdata import GUIDE_SINK, guide_sink

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


#: The plugin guide's worked example, as the guide shows it.
GUIDE_EXAMPLE = "```python\n# src/exportkit_jsonl/__init__.py\n"


def test_the_plugin_guides_example_fits_on_a_screen_and_is_the_benchmarks_sink() -> None:
    guide = (DOCS / "plugin-guide.md").read_text(encoding="utf-8")
    example = guide.split(GUIDE_EXAMPLE, 1)[1].split("```", 1)[0]
    assert sum(1 for line in example.splitlines() if line.strip()) <= 45
    assert "def encode_result_batch" in example
    assert "result_rows(batch)" in example
    module = GUIDE_SINK.read_text(encoding="utf-8")
    assert module.split('"""\n\n', 1)[1] == example


def test_the_plugin_guides_example_runs_beside_csv_long_on_the_engine(
    generated_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guide's sink beside csv-long: the engine hands the sink batches (many chunks),
    and every file is the same as in one chunk (the snapshot case ``csv-long-jsonl`` pins
    those bytes), one line per trial result."""
    from aml_exportkit import engine
    from aml_exportkit.pipeline import run_export
    from aml_exportkit.sources import fixture_zip_chunks
    from aml_exportkit.template.load import parse_template

    pm = get_plugin_manager(load_entrypoints=False, plugins=[guide_sink()])
    registry = load_registry(pm)
    text = (
        'manifest = false\n[[sinks]]\ntype = "csv-long"\npath = "long.csv"\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n'
    )
    written = {}
    for chunk in (4 << 20, 40_000):
        monkeypatch.setattr(fixture_zip_chunks, "CHUNK_BYTES", chunk)
        out = tmp_path / str(chunk)
        template = parse_template(text, file="t.toml", folder=out, sinks=registry.sink_specs)
        run_export(template, source=str(generated_zip), out_dir=out, plugin_manager=pm)
        written[chunk] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert engine.LAST_RUN["batch_sinks"] == 1
    assert engine.LAST_RUN["encoding_sinks"] == 1
    assert engine.LAST_RUN["chunks"] > 10
    assert written[40_000] == written[4 << 20]
    assert written[40_000]["out.jsonl"].count(b"\n") == engine.LAST_RUN["rows"]

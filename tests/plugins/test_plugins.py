"""Plugin loading: builtins and entry points through the same hooks, errors that name
the distribution, clashes that name both providers."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import dummy_sink_module
from aml_exportkit import PluginError, SinkSpec, hookimpl
from aml_exportkit.pipeline import run_export
from aml_exportkit.plugins import (
    DEFAULT_PLUGINS,
    ENV_BLOCK,
    ENV_DISABLE_AUTOLOAD,
    get_plugin_manager,
    load_registry,
)
from aml_exportkit.template.load import parse_template
from testdata import REFERENCE


class FakeDist:
    def __init__(self, name: str) -> None:
        self.name = name


class FakeEntryPoint:
    def __init__(self, name: str, target: Any, dist: str) -> None:
        self.name = name
        self._target = target
        self.dist = FakeDist(dist)

    def load(self) -> Any:
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    found: list[FakeEntryPoint] = []

    def fake(*, group: str) -> list[FakeEntryPoint]:
        assert group == "aml_exportkit"
        return found

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    monkeypatch.delenv(ENV_DISABLE_AUTOLOAD, raising=False)
    monkeypatch.delenv(ENV_BLOCK, raising=False)
    return found


def test_builtins_register_through_the_hooks() -> None:
    manager = get_plugin_manager(load_entrypoints=False)
    assert all(manager.has_plugin(name) for name in DEFAULT_PLUGINS)
    registry = load_registry(manager)
    assert "fixture-json" in registry.sinks
    assert registry.sinks["fixture-json"].provider == "builtin"
    assert "fixture-zip" in registry.sources


def test_the_database_source_registers_without_psycopg() -> None:
    spec = load_registry(get_plugin_manager(load_entrypoints=False)).sources["postgresql"].spec
    assert spec.claims("postgresql://u@h/db")
    assert not spec.claims("block.zip")


#: Run in a child: a zip export to CSV and Parquet, then the heavy modules it imported.
_IMPORTED = """
import json, sys
from aml_exportkit import cli
sys.argv = ["exportkit", *sys.argv[1:], "--quiet"]
try:
    cli.main()
except SystemExit as exc:
    assert not exc.code, exc.code
heavy = ("psycopg", "duckdb", "pandas", "polars", "jinja2", "hypothesis", "pyarrow", "numpy")
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def test_a_zip_export_imports_only_what_it_uses(tmp_path: Path) -> None:
    """The database source's psycopg (and the sinks' libraries) load only when used: they
    cost the parent CPU before the engine's workers start (decision 0036)."""
    zip_path = REFERENCE / "head" / "block_hooked-eurovision.zip"
    template = tmp_path / "t.toml"
    csv = '[[sinks]]\ntype = "csv-long"\npath = "o.csv"\n'
    parquet = '[[sinks]]\ntype = "parquet"\npath = "o.parquet"\n'
    imported = {}
    for name, text in (("csv", csv), ("both", csv + parquet)):
        template.write_text(text)
        args = ["run", str(template), "--source", str(zip_path), "--out", str(tmp_path / name)]
        done = subprocess.run(
            [sys.executable, "-c", _IMPORTED, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        imported[name] = json.loads(done.stdout.splitlines()[-1])
    assert imported == {"csv": [], "both": ["numpy", "pyarrow"]}


def test_each_call_gives_a_fresh_manager() -> None:
    first = get_plugin_manager(load_entrypoints=False, plugins=[dummy_sink_module])
    second = get_plugin_manager(load_entrypoints=False)
    assert "lines" in load_registry(first).sinks
    assert "lines" not in load_registry(second).sinks


def test_entry_point_plugin_is_loaded_and_named(entry_points: list[FakeEntryPoint]) -> None:
    entry_points.append(FakeEntryPoint("lines", dummy_sink_module, "exportkit-lines"))
    registry = load_registry(get_plugin_manager())
    assert registry.sinks["lines"].provider == "exportkit-lines"
    assert registry.sinks["lines"].plugin == "lines"


def test_entry_point_sink_runs(
    entry_points: list[FakeEntryPoint], reference_dir: Path, tmp_path: Path
) -> None:
    entry_points.append(FakeEntryPoint("lines", dummy_sink_module, "exportkit-lines"))
    manager = get_plugin_manager()
    template = parse_template(
        '[[sinks]]\ntype = "lines"\npath = "r.txt"\nprefix = "r"\n',
        file="t.toml",
        folder=tmp_path,
        sinks=load_registry(manager).sink_specs,
    )
    run_export(
        template,
        source=str(reference_dir / "head" / "block_tafc-dvorak.zip"),
        out_dir=tmp_path,
        plugin_manager=manager,
    )
    lines = (tmp_path / "r.txt").read_text().splitlines()
    assert len(lines) == 58
    assert all(line.startswith("r") for line in lines)


def test_broken_plugin_names_its_distribution(entry_points: list[FakeEntryPoint]) -> None:
    entry_points.append(
        FakeEntryPoint("broken", ImportError("no module named yaml"), "exportkit-broken")
    )
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    message = str(info.value)
    assert "exportkit-broken" in message
    assert "no module named yaml" in message
    assert ENV_BLOCK in message


def test_a_broken_plugin_can_be_blocked(
    entry_points: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry_points.append(FakeEntryPoint("broken", ImportError("x"), "exportkit-broken"))
    monkeypatch.setenv(ENV_BLOCK, "exportkit-broken")
    assert "fixture-json" in load_registry(get_plugin_manager()).sinks
    monkeypatch.delenv(ENV_BLOCK)
    monkeypatch.setenv(ENV_DISABLE_AUTOLOAD, "1")
    assert "fixture-json" in load_registry(get_plugin_manager()).sinks


def test_failing_hook_names_its_distribution(entry_points: list[FakeEntryPoint]) -> None:
    plugin = types.SimpleNamespace()

    @hookimpl
    def exportkit_register_sinks() -> list[SinkSpec]:
        raise RuntimeError("boom")

    plugin.exportkit_register_sinks = exportkit_register_sinks
    entry_points.append(FakeEntryPoint("failing", plugin, "exportkit-failing"))
    with pytest.raises(PluginError, match=r"exportkit-failing.*boom"):
        load_registry(get_plugin_manager())


def test_sink_name_clash_names_both(entry_points: list[FakeEntryPoint]) -> None:
    plugin = types.SimpleNamespace()

    @hookimpl
    def exportkit_register_sinks() -> list[SinkSpec]:
        return [
            SinkSpec(
                name="fixture-json", description="mine", options=object, factory=lambda ctx: None
            )
        ]  # type: ignore[arg-type,return-value]

    plugin.exportkit_register_sinks = exportkit_register_sinks
    entry_points.append(FakeEntryPoint("clash", plugin, "exportkit-clash"))
    with pytest.raises(PluginError) as info:
        load_registry(get_plugin_manager())
    assert "builtin" in str(info.value)
    assert "exportkit-clash" in str(info.value)


def test_misspelt_hook_is_caught(entry_points: list[FakeEntryPoint]) -> None:
    plugin = types.SimpleNamespace()

    @hookimpl
    def exportkit_register_sink() -> list[SinkSpec]:  # missing "s"
        return []

    plugin.exportkit_register_sink = exportkit_register_sink
    entry_points.append(FakeEntryPoint("typo", plugin, "exportkit-typo"))
    with pytest.raises(PluginError, match=r"exportkit-typo.*does not exist"):
        get_plugin_manager()


def test_wrong_return_type_is_caught(entry_points: list[FakeEntryPoint]) -> None:
    plugin = types.SimpleNamespace()

    @hookimpl
    def exportkit_register_sinks() -> list[str]:
        return ["csv"]

    plugin.exportkit_register_sinks = exportkit_register_sinks
    entry_points.append(FakeEntryPoint("wrong", plugin, "exportkit-wrong"))
    with pytest.raises(PluginError, match="returned str, expected SinkSpec"):
        load_registry(get_plugin_manager())

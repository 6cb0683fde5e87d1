"""Every result's json_data comes back exactly from a long table and its manifest:
``"7"`` against ``7``, null against an absent key, big integers, ``-0.0`` (docs/flattening.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aml_exportkit import engine
from aml_exportkit.contracts import SourceOptions
from aml_exportkit.errors import SourceError
from aml_exportkit.pipeline import run_export
from aml_exportkit.plugins import get_plugin_manager, load_registry
from aml_exportkit.rebuild import rebuild_json_data
from aml_exportkit.records import Block, Participant, Result, Session
from aml_exportkit.selection import Selection
from aml_exportkit.sources.fixture_zip import FixtureZipSource
from aml_exportkit.template.load import parse_template
from conftest import REFERENCE, REFERENCE_ZIPS
from memory_source import MemoryPlugin, MemorySource


def strict(value: Any, doubles: bool = False) -> Any:
    """``value`` with every type spelt out: 7 and 7.0, -0.0 and 0.0, "7" and 7 differ;
    object keys in any order.

    :param doubles: the value came back from Parquet, where a column of integers and
        floats is a double: an integer a double holds exactly counts as that float (``7``
        as ``7.0``, the same JSON number); -0.0 and 0 still differ, big integers stay."""
    if isinstance(value, dict):
        return ("object", sorted((k, strict(v, doubles)) for k, v in value.items()))
    if isinstance(value, list):
        return ("array", [strict(v, doubles) for v in value])
    if doubles and type(value) is int and abs(value) <= 2**53:
        value = float(value)
    if isinstance(value, float):
        return ("number", repr(value))
    return (type(value).__name__, value)


def sink_text(sink: str, extra: str) -> str:
    path = "t.parquet" if sink == "parquet" else "t.csv"
    return f'[[sinks]]\ntype = "{sink}"\npath = "{path}"\n{extra}'


VARIANTS = {
    "csv": ("csv-long", 'rows = "both"\n'),
    "parquet": ("parquet", 'rows = "both"\n'),
    "csv-trials-engine": ("csv-long", ""),
    "parquet-trials-engine": ("parquet", ""),
    "index": ("csv-long", 'rows = "both"\n[sinks.flatten]\nlists = "index"\n'),
    "explode": ("parquet", 'rows = "both"\n[sinks.flatten]\nlists = "explode"\n'),
    "depth1-renamed": (
        "csv-long",
        'rows = "both"\n[sinks.flatten]\nmax_depth = 1\nseparator = "/"\n'
        'rename = { "result_json/decision_time" = "rt_s" }\n',
    ),
    "whole": ("parquet", 'rows = "both"\nresult_json = "json"\n'),
}


def originals(zip_path: Path, trials_only: bool) -> dict[int, Any]:
    with (
        FixtureZipSource(zip_path, SourceOptions()) as source,
        source.read(Selection()) as graph,
    ):
        found = [] if trials_only else [r for b in graph.profile_results() for r in b]
        found += [r for b in graph.trial_results() for r in b]
    return {r.pk: r.json_data for r in found}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize(
    "zip_path", REFERENCE_ZIPS, ids=[str(p.relative_to(REFERENCE)) for p in REFERENCE_ZIPS]
)
def test_reference_zips_rebuild_exactly(
    zip_path: Path, variant: str, tmp_path: Path, reference_dir: Path
) -> None:
    sink, extra = VARIANTS[variant]
    template = tmp_path / "t.toml"
    template.write_text(sink_text(sink, extra), encoding="utf-8")
    out = tmp_path / "out"
    from aml_exportkit.pipeline import load_template

    run_export(load_template(str(template)), source=str(zip_path), out_dir=out)
    table = out / ("t.parquet" if sink == "parquet" else "t.csv")
    rebuilt = rebuild_json_data(table)
    want = originals(zip_path, trials_only="trials" in variant)
    assert list(rebuilt) == list(want) or sorted(rebuilt) == sorted(want)
    doubles = sink == "parquet"
    assert {pk: strict(v, doubles) for pk, v in rebuilt.items()} == {
        pk: strict(v, doubles) for pk, v in want.items()
    }


def test_engine_writes_json_text_cells(reference_dir: Path, tmp_path: Path) -> None:
    """The reference zip of the HOOKED block has a column of nulls that other results
    lack; the engine writes it as JSON text, byte for byte as the sink's row builder (fed
    the engine's batches) writes it."""
    from aml_exportkit.pipeline import load_template
    from aml_exportkit.tabular.sink import TableSink

    zip_path = reference_dir / "head" / "block_hooked-eurovision.zip"
    template = tmp_path / "t.toml"
    template.write_text(sink_text("csv-long", ""), encoding="utf-8")
    outputs = {}
    for by in ("engine", "builder"):
        out = tmp_path / by
        with pytest.MonkeyPatch.context() as patch:
            if by == "builder":
                patch.setattr(TableSink, "engine_table", lambda self: None)
            run_export(load_template(str(template)), source=str(zip_path), out_dir=out)
            assert engine.LAST_RUN["batch_sinks"] == (by == "builder")
        outputs[by] = (out / "t.csv").read_bytes()
    assert outputs["engine"] == outputs["builder"]
    assert b",null," in outputs["engine"]


def test_include_globs_cannot_be_rebuilt(reference_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(
        sink_text("csv-long", '[sinks.flatten]\ninclude = ["decision_time"]\n'), encoding="utf-8"
    )
    from aml_exportkit.pipeline import load_template

    out = tmp_path / "out"
    zip_path = reference_dir / "head" / "block_tafc-dvorak.zip"
    run_export(load_template(str(template)), source=str(zip_path), out_dir=out)
    with pytest.raises(SourceError, match="include or exclude"):
        rebuild_json_data(out / "t.csv")


# -- generated data ---------------------------------------------------------------------------

#: Few keys, so that results meet in the same columns with different types.
KEYS = st.sampled_from(["a", "b", "a.b", "ünï ♪", "[x]", ""])
#: The values whose types a plain cell would lose.
TRICKY = st.sampled_from(["7", 7, 7.0, -0.0, 0.0, 2**70, -(2**64), "", "true", True, None, "null"])
JSON: st.SearchStrategy[Any] = st.recursive(
    TRICKY
    | st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=10,
)


def generated(values: list[Any]) -> tuple[dict[str, list[Any]], list[Result]]:
    from datetime import UTC, datetime

    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    participant = Participant(
        pk=1, unique_hash="h", country_code="nl", access_info=None, participant_id_url=None
    )
    session = Session(
        pk=2,
        block=3,
        participant=1,
        playlist=None,
        started_at=t0,
        finished_at=None,
        json_data={},
        final_score=0.0,
    )
    results = [
        Result(
            pk=10 + i,
            session=2 if i % 3 else None,
            participant=None if i % 3 else 1,
            section=None,
            created_at=t0,
            question_key="q",
            expected_response=None,
            given_response=None,
            comment="",
            score=None,
            scoring_rule="",
            json_data=value,
        )
        for i, value in enumerate(values)
    ]
    tables: dict[str, list[Any]] = {
        "participant": [participant],
        "session": [session],
        "block": [Block(pk=3, slug="b")],
    }
    return tables, results


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    values=st.lists(st.dictionaries(KEYS, JSON, max_size=4) | JSON, min_size=1, max_size=8),
    variant=st.sampled_from(["csv", "parquet", "index", "explode"]),
)
def test_generated_json_data_rebuilds_exactly(
    values: list[Any], variant: str, tmp_path_factory: Any
) -> None:
    sink, extra = VARIANTS[variant]
    tables, results = generated(values)
    out = Path(tmp_path_factory.mktemp("rb"))
    manager = get_plugin_manager(
        load_entrypoints=False, plugins=[MemoryPlugin(MemorySource(tables, results))]
    )
    template = parse_template(
        sink_text(sink, extra),
        file="t.toml",
        folder=out,
        sinks=load_registry(manager).sink_specs,
    )
    run_export(template, source="memory:", out_dir=out, plugin_manager=manager)
    rebuilt = rebuild_json_data(out / ("t.parquet" if sink == "parquet" else "t.csv"))
    doubles = sink == "parquet"
    assert {pk: strict(v, doubles) for pk, v in rebuilt.items()} == {
        r.pk: strict(r.json_data, doubles) for r in results
    }


def test_rebuild_command_prints_json_lines(reference_dir: Path, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from aml_exportkit.cli import cli

    zip_path = reference_dir / "head" / "block_tafc-dvorak.zip"
    template = tmp_path / "t.toml"
    template.write_text(sink_text("csv-long", 'rows = "both"\n'), encoding="utf-8")
    out = tmp_path / "out"
    runner = CliRunner()
    ran = runner.invoke(cli, ["run", str(template), "--source", str(zip_path), "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    result = runner.invoke(cli, ["rebuild", str(out / "t.csv")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    want = originals(zip_path, trials_only=False)
    assert {line["result_id"]: strict(line["json_data"]) for line in lines} == {
        pk: strict(v) for pk, v in want.items()
    }
    (out / "manifest.json").unlink()
    missing = runner.invoke(cli, ["rebuild", str(out / "t.csv")])
    assert missing.exit_code == 4
    assert "no manifest beside the table" in missing.output


def test_only_the_tables_own_sink_decides(reference_dir: Path, tmp_path: Path) -> None:
    """Another sink's include globs or omitted json do not stop this table's rebuild."""
    template = tmp_path / "t.toml"
    template.write_text(
        sink_text("csv-long", "")
        + '[[sinks]]\ntype = "csv-long"\npath = "other.csv"\n'
        + '[sinks.flatten]\ninclude = ["decision_time"]\n'
        + '[[sinks]]\ntype = "csv-long"\npath = "none.csv"\nresult_json = "omit"\n',
        encoding="utf-8",
    )
    from aml_exportkit.pipeline import load_template

    out = tmp_path / "out"
    zip_path = reference_dir / "head" / "block_tafc-dvorak.zip"
    run_export(load_template(str(template)), source=str(zip_path), out_dir=out)
    want = originals(zip_path, trials_only=True)
    assert {k: strict(v) for k, v in rebuild_json_data(out / "t.csv").items()} == {
        k: strict(v) for k, v in want.items()
    }
    with pytest.raises(SourceError, match="include or exclude"):
        rebuild_json_data(out / "other.csv")
    with pytest.raises(SourceError, match="omit"):
        rebuild_json_data(out / "none.csv")


@pytest.mark.parametrize("sink", ["csv-long", "parquet"])
def test_a_number_column_rebuilds(sink: str, tmp_path: Path) -> None:
    """Integers and floats in one column are a plain number column; a CSV gives back 2 as
    2, Parquet (a double) as 2.0; -0.0, inf and nulls stay; a big integer beside a float
    keeps the column JSON text."""
    values = [
        {"t": 2, "big": 2**60 + 1},
        {"t": 2.5, "big": 0.5},
        {"t": -0.0},
        {"t": float("inf"), "n": 1},
        {"t": None, "n": 1.5},
    ]
    tables, results = generated(values)
    out = tmp_path / "out"
    manager = get_plugin_manager(
        load_entrypoints=False, plugins=[MemoryPlugin(MemorySource(tables, results))]
    )
    template = parse_template(
        sink_text(sink, 'rows = "both"\n'),
        file="t.toml",
        folder=out,
        sinks=load_registry(manager).sink_specs,
    )
    run_export(template, source="memory:", out_dir=out, plugin_manager=manager)
    table = out / ("t.parquet" if sink == "parquet" else "t.csv")
    import json

    columns = {
        c["name"]: c
        for c in json.loads((out / "manifest.json").read_text(encoding="utf-8"))["outputs"][0][
            "columns"
        ]
    }
    assert not columns["result_json.t"].get("json_cells")
    assert not columns["result_json.n"].get("json_cells")
    assert columns["result_json.big"]["json_cells"] is True
    rebuilt = rebuild_json_data(table)
    doubles = sink == "parquet"
    assert {pk: strict(v, doubles) for pk, v in rebuilt.items()} == {
        r.pk: strict(r.json_data, doubles) for r in results
    }
    if not doubles:
        assert {pk: strict(v) for pk, v in rebuilt.items()} == {
            r.pk: strict(r.json_data) for r in results
        }


def test_the_json_text_rule() -> None:
    """Which columns need JSON text: one rule for CSV and Parquet, both lanes."""
    from aml_exportkit.tabular.table import Absent, BigInt, column_kind, needs_json_cells

    assert not needs_json_cells({int, float})
    assert column_kind({int, float, type(None)}) == "float"
    assert column_kind({int, float, Absent}) == "float"
    assert needs_json_cells({int, float, type(None), Absent})  # null against a missing key
    assert needs_json_cells({int, BigInt, float})  # a double would round the big integer
    assert needs_json_cells({BigInt, float})
    assert not needs_json_cells({int, BigInt})  # integers alone: their digits, exactly
    assert needs_json_cells({str, int})
    assert needs_json_cells({str, float})
    assert needs_json_cells({bool, int})

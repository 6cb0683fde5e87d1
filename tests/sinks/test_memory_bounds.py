"""The memory savings of the row builders' sinks change no output byte.

Each saving works in slices or settles state early; these tests make the slices tiny (or
feed the builders the way the graph does) and compare with the outputs of the defaults.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aml_exportkit.pipeline import run_export
from aml_exportkit.plugins import PluginManager, load_registry
from aml_exportkit.records import Result
from aml_exportkit.sinks import fixture_json
from aml_exportkit.tabular.muscle import ClassicBuilder
from aml_exportkit.tabular.options import Classic
from aml_exportkit.tabular.spill import GroupSpill
from aml_exportkit.template.load import parse_template
from conftest import REFERENCE

ZIPS = [
    REFERENCE / "head" / "block_tafc-dvorak.zip",
    REFERENCE / "v2024" / "block_rhythm-final.zip",
]


def _export(source: Path, out: Path, text: str, plugin_manager: PluginManager) -> None:
    out.mkdir()
    template = parse_template(
        text, file="t.toml", folder=out, sinks=load_registry(plugin_manager).sink_specs
    )
    run_export(template, source=str(source), out_dir=out, plugin_manager=plugin_manager)


@pytest.mark.parametrize("source", ZIPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_json_written_in_slices_is_the_same_zip(
    source: Path, tmp_path: Path, plugin_manager: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = '[[sinks]]\ntype = "fixture-json"\npath = "out.zip"\n'
    _export(source, tmp_path / "whole", text, plugin_manager)
    monkeypatch.setattr(fixture_json, "MEMBER_SLICE", 1)
    _export(source, tmp_path / "sliced", text, plugin_manager)
    whole = (tmp_path / "whole" / "out.zip").read_bytes()
    assert (tmp_path / "sliced" / "out.zip").read_bytes() == whole


class _Graph:
    """Just enough of a graph for the classic builder's profile columns."""

    def __init__(self) -> None:
        self.sessions: dict[int, object] = {}


def _answer(pk: int, participant: int, key: str, given: str | None, minutes: int) -> Result:
    return Result(
        pk=pk,
        session=None,
        participant=participant,
        section=None,
        created_at=datetime(2024, 7, 1, tzinfo=UTC) + timedelta(minutes=minutes),
        question_key=key,
        expected_response=None,
        given_response=given,
        comment="",
        score=1.5 if key == "q2" else None,
        scoring_rule="",
        json_data=None,
    )


def _classic() -> ClassicBuilder:
    options = Classic(options=("export_profile",))
    return ClassicBuilder(options, _Graph(), wide=False)  # type: ignore[arg-type]


def test_classic_profiles_settle_per_participant() -> None:
    builder = _classic()
    # participant 1: q1 answered twice (the later creation wins, in the first's place)
    builder.add_profiles(
        [
            _answer(1, 1, "q1", "late", 9),
            _answer(2, 1, "q2", "b", 5),
            _answer(3, 1, "q1", "early", 1),
        ]
    )
    builder.add_profiles([_answer(4, 2, "q1", None, 1), _answer(5, 3, "q3", "c", 2)])
    assert builder._profile(1) == {"q1": "late", "q2": "b", "q2_score": "1.5"}
    assert list(builder._profile(1)) == ["q1", "q2", "q2_score"]
    assert builder._profile(2) == {}
    assert builder._profile(3) == {"q3": "c"}
    assert builder._profile(4) == {}


def test_classic_profiles_out_of_order_are_refused() -> None:
    builder = _classic()
    builder.add_profiles([_answer(1, 1, "q1", "a", 1), _answer(2, 2, "q1", "a", 1)])
    with pytest.raises(ValueError, match="not contiguous"):
        builder.add_profiles([_answer(3, 1, "q2", "b", 1), _answer(4, 3, "q2", "b", 1)])


@pytest.mark.parametrize(
    "keys",
    [
        [(1, 0), (2, 0), (2, 1), (5, 0)],  # in order already: read back without a sort
        [(5, 0), (2, 1), (1, 0), (2, 0)],  # out of order: sorted on disk
        [(1, 1), (1, 0), (3, 0)],
    ],
)
def test_group_spill_reads_groups_in_order(keys: list[tuple[int, int]]) -> None:
    spill = GroupSpill()
    try:
        for group, order in keys:
            spill.append(group, order, f"{group}.{order}")
        got = list(spill.groups())
    finally:
        spill.close()
    expected: dict[int, list[str]] = {}
    for group, order in sorted(keys):
        expected.setdefault(group, []).append(f"{group}.{order}")
    assert got == list(expected.items())

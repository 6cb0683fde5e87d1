"""Golden tests: every reference zip → graph → fixture-json equals MUSCLE's own zip."""

from __future__ import annotations

import gzip
import json
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from aml_exportkit.contracts import SourceOptions
from aml_exportkit.pipeline import run_export
from aml_exportkit.plugins import PluginManager, load_registry
from aml_exportkit.selection import Selection
from aml_exportkit.sources.fixture_zip import FixtureZipSource
from aml_exportkit.template.load import parse_template
from conftest import REFERENCE_ZIPS
from zipcases import MEMBERS

IDS = [f"{p.parent.name}/{p.name}" for p in REFERENCE_ZIPS]


def muscle_members(path: Path) -> dict[str, list[dict[str, object]]]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: json.loads(archive.read(name)) for name in archive.namelist()}


def canonical(objects: list[dict[str, object]]) -> Counter[str]:
    return Counter(json.dumps(o, sort_keys=True, ensure_ascii=False) for o in objects)


def export_zip(source: Path, target: Path, plugin_manager: PluginManager) -> Path:
    template = parse_template(
        '[[sinks]]\ntype = "fixture-json"\npath = "out.zip"\n',
        file="t.toml",
        folder=target.parent,
        sinks=load_registry(plugin_manager).sink_specs,
    )
    run_export(template, source=str(source), out_dir=target.parent, plugin_manager=plugin_manager)
    produced = target.parent / "out.zip"
    produced.rename(target)
    return target


def test_reference_zips_are_present() -> None:
    assert len(REFERENCE_ZIPS) >= 8


@pytest.mark.parametrize("reference", REFERENCE_ZIPS, ids=IDS)
def test_fixture_json_has_muscles_objects(
    reference: Path, tmp_path: Path, plugin_manager: PluginManager
) -> None:
    ours = muscle_members(export_zip(reference, tmp_path / "ours.zip", plugin_manager))
    theirs = muscle_members(reference)
    assert list(ours) == list(MEMBERS)
    assert set(theirs) <= set(ours)
    for name in MEMBERS:
        expected = theirs.get(name, [])
        if name == "participants.json":
            # MUSCLE repeats a participant once per session; we write each once.
            unique = {json.dumps(o, sort_keys=True, ensure_ascii=False) for o in expected}
            assert len(unique) == len({o["pk"] for o in expected})
            assert canonical(ours[name]) == Counter(unique), name
        else:
            assert canonical(ours[name]) == canonical(expected), name
        # Field order and key order inside json_data are kept too.
        by_pk = {o["pk"]: json.dumps(o, ensure_ascii=False) for o in expected}
        assert all(json.dumps(o, ensure_ascii=False) == by_pk[o["pk"]] for o in ours[name])
    assert sum(len(v) for v in ours.values()) > 0


@pytest.mark.parametrize("reference", REFERENCE_ZIPS, ids=IDS)
def test_output_reads_back_as_the_same_graph(
    reference: Path, tmp_path: Path, plugin_manager: PluginManager
) -> None:
    ours = export_zip(reference, tmp_path / "ours.zip", plugin_manager)

    def snapshot(path: Path) -> dict[str, object]:
        with (
            FixtureZipSource(path, SourceOptions()) as source,
            source.read(Selection(blocks=("b",))) as graph,
        ):
            tables = {
                key: dict(graph.table(key))
                for key in ("block", "session", "participant", "section", "song", "feedback")
            }
            profiles = [r for batch in graph.profile_results() for r in batch]
            trials = [r for batch in graph.trial_results() for r in batch]
        return {"tables": tables, "profiles": profiles, "trials": trials}

    first, second = snapshot(reference), snapshot(ours)
    assert first == second
    assert first["tables"]["session"]  # type: ignore[index]


@pytest.mark.parametrize("reference", REFERENCE_ZIPS[:3], ids=IDS[:3])
def test_two_runs_give_identical_bytes(
    reference: Path, tmp_path: Path, plugin_manager: PluginManager
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = export_zip(reference, tmp_path / "a" / "x.zip", plugin_manager).read_bytes()
    b = export_zip(reference, tmp_path / "b" / "x.zip", plugin_manager).read_bytes()
    assert a == b
    # Fixed entry times, so the bytes do not depend on the clock.
    with zipfile.ZipFile(tmp_path / "a" / "x.zip") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_gzip_wrapped_and_plain_export_give_the_same_output(
    reference_dir: Path, tmp_path: Path, plugin_manager: PluginManager
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = reference_dir / "head" / "block_tafc-dvorak.zip"
    wrapped = reference_dir / "head" / "exportblock_command" / "tafc-dvorak.zip"
    assert wrapped.read_bytes()[:2] == b"\x1f\x8b"
    a = export_zip(plain, tmp_path / "a" / "x.zip", plugin_manager).read_bytes()
    b = export_zip(wrapped, tmp_path / "b" / "x.zip", plugin_manager).read_bytes()
    assert a == b


def test_text_utf8_cannot_carry_is_escaped_not_refused() -> None:
    """A lone surrogate (a plugin may put one in a record; the sources refuse them) is
    written escaped, the same JSON value; NaN is refused naming the record."""
    from aml_exportkit.errors import SinkError
    from aml_exportkit.records import Song
    from aml_exportkit.schema import MODELS, make_fixture_encoder
    from aml_exportkit.sinks.fixture_json import encode_objects

    model = MODELS["song"]
    encode = make_fixture_encoder(model)
    songs = [Song(pk=1, artist="a\ud800b", name="n"), Song(pk=2, artist="ok", name="é")]
    text = encode_objects(songs, encode, model, "songs.json")
    assert json.loads(b"[" + text + b"]")[0]["fields"]["artist"] == "a\ud800b"
    assert "é".encode() in text
    with pytest.raises(SinkError, match="song 3"):
        encode_objects(
            [Song(pk=3, artist="x", name="n", extra={"f": float("nan")})],
            encode,
            model,
            "songs.json",
        )

"""Several sources in one run (``--source`` repeated, ``[source] uris``): one table, the
block columns telling rows apart; an object held twice kept once; a primary key held with
different content an error naming both sources; each source's checksum in the manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.errors import IntegrityError, TemplateError
from aml_exportkit.pipeline import load_template, run_export
from zipcases import mutated

TAFC = "head/block_tafc-dvorak.zip"
HOOKED = "head/block_hooked-eurovision.zip"

TEMPLATE = """
[[sinks]]
type = "fixture-json"
path = "block.zip"

[[sinks]]
type = "csv-long"
path = "long.csv"
rows = "both"
"""


def _run(tmp_path: Path, sources: list[Path], name: str, text: str = TEMPLATE) -> Any:
    template = tmp_path / "t.toml"
    template.write_text(text, encoding="utf-8")
    args = ["run", str(template), "--out", str(tmp_path / name)]
    for source in sources:
        args += ["--source", str(source)]
    return CliRunner().invoke(cli, args)


def _fixture(out: Path) -> dict[str, list[dict[str, Any]]]:
    with zipfile.ZipFile(out / "block.zip") as archive:
        return {n: json.loads(archive.read(n)) for n in archive.namelist()}


def _rows(out: Path) -> list[dict[str, str]]:
    text = (out / "long.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def test_two_blocks_go_into_one_table(reference_dir: Path, tmp_path: Path) -> None:
    result = _run(tmp_path, [reference_dir / TAFC, reference_dir / HOOKED], "both")
    assert result.exit_code == 0, result.output
    for one, name in ((TAFC, "tafc"), (HOOKED, "hooked")):
        single = _run(tmp_path, [reference_dir / one], name)
        assert single.exit_code == 0, single.output
    both, tafc, hooked = (_fixture(tmp_path / n) for n in ("both", "tafc", "hooked"))
    for member in ("sessions.json", "results.json"):
        assert sorted(o["pk"] for o in both[member]) == sorted(
            {o["pk"] for o in tafc[member]} | {o["pk"] for o in hooked[member]}
        )
    rows = _rows(tmp_path / "both")
    trial = [r for r in rows if r["result_kind"] == "trial"]
    assert {r["block_slug"] for r in trial} == {"tafc-dvorak", "hooked-eurovision"}
    by_block = {
        slug: sorted(r["result_id"] for r in trial if r["block_slug"] == slug)
        for slug in ("tafc-dvorak", "hooked-eurovision")
    }
    assert by_block["tafc-dvorak"] == sorted(
        r["result_id"] for r in _rows(tmp_path / "tafc") if r["result_kind"] == "trial"
    )
    manifest = json.loads((tmp_path / "both" / "manifest.json").read_text(encoding="utf-8"))
    inputs = manifest["source"]["inputs"]
    assert [i["sha256"] for i in inputs] == [
        hashlib.sha256((reference_dir / p).read_bytes()).hexdigest() for p in (TAFC, HOOKED)
    ]
    assert {b["slug"] for b in manifest["watermark"]["blocks"]} == {
        "tafc-dvorak",
        "hooked-eurovision",
    }


def test_the_same_source_twice_is_kept_once(reference_dir: Path, tmp_path: Path) -> None:
    twice = _run(tmp_path, [reference_dir / TAFC, reference_dir / TAFC], "twice")
    once = _run(tmp_path, [reference_dir / TAFC], "once")
    assert twice.exit_code == 0, twice.output
    assert once.exit_code == 0, once.output
    assert _fixture(tmp_path / "twice") == _fixture(tmp_path / "once")
    assert (tmp_path / "twice" / "long.csv").read_bytes() == (
        tmp_path / "once" / "long.csv"
    ).read_bytes()


@pytest.mark.parametrize("member", ["results.json", "sessions.json", "profiles.json"])
def test_one_key_with_two_contents_names_both_sources(
    reference_dir: Path, tmp_path: Path, member: str
) -> None:
    changed: dict[str, Any] = {}

    def change(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        target = objects[len(objects) // 2]
        target["fields"]["json_data" if member == "sessions.json" else "comment"] = "changed"
        changed["pk"] = target["pk"]
        return objects

    other = mutated(
        reference_dir / TAFC, tmp_path / "other.zip", **{member.replace(".", "_"): change}
    )
    result = _run(tmp_path, [reference_dir / TAFC, other], "out")
    assert result.exit_code == IntegrityError.exit_code, result.output
    (line,) = result.output.strip().splitlines()
    assert str(reference_dir / TAFC) in line
    assert str(other) in line
    model = "session" if member == "sessions.json" else "result"
    assert f"{model} {changed['pk']}" in line
    assert not (tmp_path / "out").exists()


def test_uris_in_the_template(reference_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(
        f'[source]\nuris = ["{reference_dir / TAFC}", "{reference_dir / HOOKED}"]\n' + TEMPLATE,
        encoding="utf-8",
    )
    report = run_export(load_template(str(template)), out_dir=tmp_path / "lib")
    assert len(report.sources) == 1
    assert len(report.sources[0].details["sources"]) == 2
    assert report.result_counts["trial"] == sum(
        1 for r in _rows(tmp_path / "lib") if r["result_kind"] == "trial"
    )


def test_uri_and_uris_together_is_an_error(reference_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(
        f'[source]\nuri = "{reference_dir / TAFC}"\nuris = ["{reference_dir / HOOKED}"]\n'
        + TEMPLATE,
        encoding="utf-8",
    )
    with pytest.raises(TemplateError, match=r"source\.uris: set \[source\] uri or uris"):
        run_export(load_template(str(template)), out_dir=tmp_path / "lib")


def test_per_block_paths_with_several_sources_are_an_error(
    reference_dir: Path, tmp_path: Path
) -> None:
    text = '[[sinks]]\ntype = "csv-long"\npath = "{block}.csv"\n'
    result = _run(tmp_path, [reference_dir / TAFC, reference_dir / HOOKED], "out", text)
    assert result.exit_code == TemplateError.exit_code
    assert "needs one source" in result.output
    assert not (tmp_path / "out").exists()

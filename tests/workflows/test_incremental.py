"""Incremental export (``--since``) from zips: the watermark, the rule, the chain of parts.

The earlier state of a block is made from a reference zip: two sessions not yet started,
one finished session still open, one open session with a result fewer. Exporting the
earlier zip, then the real one ``--since`` that manifest, must select exactly the new and
changed sessions, whole; and the parts, combined as docs/recipes.md says, give what a full
export gives.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from aml_exportkit.cli import cli
from aml_exportkit.errors import SourceError
from aml_exportkit.pipeline import load_template, run_export
from aml_exportkit.watermark import decode_pks, encode_pks, load_since
from zipcases import mutated, read_members

ZIP = "v2024/block_tafc-dvorak.zip"
DOCS = Path(__file__).resolve().parents[2] / "docs"

TEMPLATE = """
[[sinks]]
type = "fixture-json"
path = "block.zip"

[[sinks]]
type = "csv-long"
path = "long.csv"
"""


def _earlier(reference: Path, target: Path) -> tuple[Path, set[int]]:
    """The block as it was earlier, and the sessions an export since then must select."""
    members = read_members(reference)
    sessions = sorted(members["sessions.json"], key=lambda o: o["pk"])
    results = members["results.json"]
    counts: dict[int, int] = {}
    for r in results:
        counts[r["fields"]["session"]] = counts.get(r["fields"]["session"], 0) + 1
    new = {o["pk"] for o in sessions[-2:]}
    finished = [o for o in sessions if o["fields"]["finished_at"] and o["pk"] not in new]
    opened = [o for o in sessions if not o["fields"]["finished_at"] and o["pk"] not in new]
    now_finished = finished[0]["pk"]
    grew = next(o["pk"] for o in opened if counts.get(o["pk"], 0) >= 2)
    unchanged_open = [o["pk"] for o in opened if o["pk"] != grew]
    assert unchanged_open  # a session open then and now, with the same results: not selected
    last_of_grew = max(r["pk"] for r in results if r["fields"]["session"] == grew)

    def sessions_then(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = [o for o in objects if o["pk"] not in new]
        for o in kept:
            if o["pk"] == now_finished:
                o["fields"]["finished_at"] = None
        return kept

    def results_then(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [o for o in objects if o["fields"]["session"] not in new and o["pk"] != last_of_grew]

    path = mutated(reference, target, sessions_json=sessions_then, results_json=results_then)
    return path, new | {now_finished, grew}


def _run(template: Path, source: Path, out: Path, *extra: str) -> Any:
    return CliRunner().invoke(
        cli, ["run", str(template), "--source", str(source), "--out", str(out), *extra]
    )


def _fixture(out: Path) -> dict[str, list[dict[str, Any]]]:
    with zipfile.ZipFile(out / "block.zip") as archive:
        return {n: json.loads(archive.read(n)) for n in archive.namelist()}


@pytest.fixture
def parts(reference_dir: Path, tmp_path: Path) -> dict[str, Any]:
    template = tmp_path / "t.toml"
    template.write_text(TEMPLATE, encoding="utf-8")
    now = reference_dir / ZIP
    then, expected = _earlier(now, tmp_path / "then.zip")
    first = _run(template, then, tmp_path / "part1")
    assert first.exit_code == 0, first.output
    second = _run(
        template, now, tmp_path / "part2", "--since", str(tmp_path / "part1" / "manifest.json")
    )
    assert second.exit_code == 0, second.output
    full = _run(template, now, tmp_path / "full")
    assert full.exit_code == 0, full.output
    return {"template": template, "now": now, "expected": expected, "tmp": tmp_path}


def test_since_selects_new_and_changed_sessions_whole(parts: dict[str, Any]) -> None:
    tmp = parts["tmp"]
    got = _fixture(tmp / "part2")
    assert {o["pk"] for o in got["sessions.json"]} == parts["expected"]
    full = _fixture(tmp / "full")
    for session in parts["expected"]:  # whole sessions: every result of each
        mine = [o for o in got["results.json"] if o["fields"]["session"] == session]
        all_of_it = [o for o in full["results.json"] if o["fields"]["session"] == session]
        assert mine == all_of_it
    manifest = json.loads((tmp / "part2" / "manifest.json").read_text(encoding="utf-8"))
    earlier = (tmp / "part1" / "manifest.json").read_bytes()
    assert manifest["since"] == {
        "manifest_sha256": hashlib.sha256(earlier).hexdigest(),
        "sessions": len(parts["expected"]),
    }


def test_the_watermark_carries_on_so_a_third_part_is_empty(parts: dict[str, Any]) -> None:
    tmp = parts["tmp"]
    third = _run(
        parts["template"],
        parts["now"],
        tmp / "part3",
        "--since",
        str(tmp / "part2" / "manifest.json"),
    )
    assert third.exit_code == 0, third.output
    assert _fixture(tmp / "part3")["sessions.json"] == []
    marks = [
        json.loads((tmp / d / "manifest.json").read_text(encoding="utf-8"))["watermark"]
        for d in ("full", "part2", "part3")
    ]
    # a chain of parts ends where one full export stands (apart from the snapshot time)
    assert marks[1] == marks[0]
    assert marks[2] == marks[0]
    (block,) = marks[0]["blocks"]
    full = _fixture(tmp / "full")
    assert block["max_session_pk"] == max(o["pk"] for o in full["sessions.json"])
    assert block["max_result_pk"] == max(o["pk"] for o in full["results.json"])
    assert sorted(decode_pks(block["sessions"]["pks"])) == sorted(
        o["pk"] for o in full["sessions.json"]
    )
    assert {pk for pk, _, _ in block["open_sessions"]} == {
        o["pk"] for o in full["sessions.json"] if o["fields"]["finished_at"] is None
    }


def test_parts_combine_into_the_full_export(parts: dict[str, Any]) -> None:
    """The recipe's rule: a later part's sessions replace the earlier parts' rows of them."""
    tmp = parts["tmp"]
    combined: dict[str, dict[int, dict[str, Any]]] = {}
    results: dict[int, list[dict[str, Any]]] = {}
    for part in ("part1", "part2"):
        fixture = _fixture(tmp / part)
        for name in ("sessions.json", "participants.json"):
            for o in fixture[name]:
                combined.setdefault(name, {})[o["pk"]] = o
        redone = {o["pk"] for o in fixture["sessions.json"]}
        for session in redone:
            results[session] = []
        for o in fixture["results.json"]:
            results[o["fields"]["session"]].append(o)
    full = _fixture(tmp / "full")
    assert sorted(combined["sessions.json"].values(), key=lambda o: o["pk"]) == sorted(
        full["sessions.json"], key=lambda o: o["pk"]
    )
    flat = sorted((o for rs in results.values() for o in rs), key=lambda o: o["pk"])
    assert flat == sorted(full["results.json"], key=lambda o: o["pk"])


def test_the_engine_selects_what_the_sources_reader_selects(parts: dict[str, Any]) -> None:
    """The engine's part holds exactly the trial results the source's own reader gives for
    ``--since``, and its watermark is the full export's."""
    from aml_exportkit.selection import Selection
    from aml_exportkit.watermark import load_since
    from testdata import csv_result_ids, read_trial_pks

    tmp = parts["tmp"]
    template = tmp / "long.toml"
    template.write_text('[[sinks]]\ntype = "csv-long"\npath = "long.csv"\n', encoding="utf-8")
    since = tmp / "part1" / "manifest.json"
    result = _run(template, parts["now"], tmp / "engine", "--since", str(since))
    assert result.exit_code == 0, result.output
    wanted = read_trial_pks(str(parts["now"]), Selection(since=load_since(since)))
    assert wanted
    assert csv_result_ids(tmp / "engine" / "long.csv") == wanted
    manifest = json.loads((tmp / "engine" / "manifest.json").read_text("utf-8"))
    full = json.loads((tmp / "full" / "manifest.json").read_text("utf-8"))
    assert manifest["watermark"] == full["watermark"]


def test_library_since(parts: dict[str, Any]) -> None:
    tmp = parts["tmp"]
    template = load_template(str(parts["template"]))
    since = load_since(tmp / "part1" / "manifest.json")
    report = run_export(template, source=str(parts["now"]), out_dir=tmp / "lib", since=since)
    assert report.result_counts["trial"] > 0
    assert {o["pk"] for o in _fixture(tmp / "lib")["sessions.json"]} == parts["expected"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"{not json", "not JSON"),
        (b'{"tool": {"name": "something-else"}}', "not a manifest written by exportkit"),
        (b'{"tool": {"name": "aml-exportkit"}, "watermark": null}', "holds no watermark"),
        (
            b'{"tool": {"name": "aml-exportkit"}, "watermark": {"format": 1, "blocks":'
            b' [{"block": 1, "sessions": {"count": 3, "encoding": "x", "pks": ""}}]}}',
            "damaged",
        ),
    ],
)
def test_a_bad_since_manifest_is_a_one_line_error(
    reference_dir: Path, tmp_path: Path, content: bytes | None, message: str
) -> None:
    template = tmp_path / "t.toml"
    template.write_text(TEMPLATE, encoding="utf-8")
    manifest = tmp_path / "m.json"
    if content is not None:
        manifest.write_bytes(content)
    result = _run(template, reference_dir / ZIP, tmp_path / "out", "--since", str(manifest))
    assert result.exit_code == SourceError.exit_code
    (line,) = result.output.strip().splitlines()
    assert message in line
    assert str(manifest) in line
    assert not (tmp_path / "out").exists()


def test_a_manifest_of_another_block_is_refused(reference_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(TEMPLATE, encoding="utf-8")
    other = _run(template, reference_dir / "v2024/block_bat-ref.zip", tmp_path / "other")
    assert other.exit_code == 0, other.output
    since = tmp_path / "other" / "manifest.json"
    result = _run(template, reference_dir / ZIP, tmp_path / "out", "--since", str(since))
    assert result.exit_code == SourceError.exit_code
    assert "this manifest is of block(s) bat-ref" in result.output
    assert "this run exports tafc-dvorak" in result.output
    assert not (tmp_path / "out").exists()


def test_packed_pks_round_trip() -> None:
    for pks in ([], [7], [1, 2, 3, 1000, 10**12], [5, 3, 3, 0]):
        assert decode_pks(encode_pks(pks)) == sorted(set(pks))
    wide = list(range(1, 50_000, 3))
    assert len(encode_pks(wide)) < 200  # regular gaps pack to almost nothing
    with pytest.raises(ValueError, match="cannot be read"):
        decode_pks("not base64!")


def _block(marker: str) -> str:
    """The code block of docs/recipes.md that starts with the line ``marker``."""
    text = (DOCS / "recipes.md").read_text(encoding="utf-8")
    return marker + text.split(marker, 1)[1].split("```", 1)[0]


def _ok(template: Path, source: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(
        cli, ["run", str(template), "--source", str(source), "--out", str(out), *extra]
    )
    assert result.exit_code == 0, result.output


def test_combining_parts_gives_the_full_export(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb
    import pandas as pd

    now = reference_dir / ZIP
    (tmp_path / "then").mkdir()  # the file name gives the block's slug
    then, expected = _earlier(now, tmp_path / "then" / "block_tafc-dvorak.zip")
    template = tmp_path / "trials.toml"
    template.write_text('[[sinks]]\ntype = "csv-long"\npath = "trials.csv"\n', "utf-8")
    _ok(template, then, tmp_path / "parts" / "2025-05-01")
    _run(
        template,
        now,
        tmp_path / "parts" / "2025-05-08",
        "--since",
        str(tmp_path / "parts" / "2025-05-01" / "manifest.json"),
    )
    _ok(template, now, tmp_path / "full")
    (tmp_path / "full" / "manifest.json").unlink()
    monkeypatch.chdir(tmp_path)
    full = pd.read_csv("full/trials.csv").sort_values("result_id", ignore_index=True)
    assert full["session_id"].isin(expected).any()

    con = duckdb.connect()
    for statement in _block("-- trials.sql").split(";"):
        if statement.strip():
            con.execute(statement)
    from_sql = con.execute("SELECT * FROM trials ORDER BY result_id").df()
    whole = con.execute("SELECT * FROM read_csv('full/trials.csv') ORDER BY result_id").df()
    assert len(whole) == len(full)
    pd.testing.assert_frame_equal(from_sql[list(whole.columns)], whole)

    scope: dict[str, object] = {}
    exec(_block("from pathlib import Path"), scope)
    trials = scope["trials"]
    assert isinstance(trials, pd.DataFrame)
    trials = trials.drop(columns="part").sort_values("result_id", ignore_index=True)
    read = scope["read_part"]
    assert callable(read)
    whole_text = read("full/trials.csv").astype({"session_id": "int64", "result_id": "int64"})
    whole_text = whole_text.sort_values("result_id", ignore_index=True)
    pd.testing.assert_frame_equal(trials[list(whole_text.columns)], whole_text)


@given(st.lists(st.integers(-(2**62), 2**62), max_size=300))
@settings(max_examples=200, deadline=None)
def test_any_pks_round_trip(pks: list[int]) -> None:
    assert decode_pks(encode_pks(pks)) == sorted(set(pks))


def test_a_part_never_replaces_an_earlier_export(parts: dict[str, Any]) -> None:
    # a part written into the folder of the export it follows would replace the whole
    # earlier table (or DuckDB database) with the part alone: refused, nothing written
    tmp = parts["tmp"]
    template = tmp / "pool.toml"
    template.write_text(
        TEMPLATE + '\n[[sinks]]\ntype = "duckdb"\npath = "study.duckdb"\n', encoding="utf-8"
    )
    out = tmp / "same"
    then = tmp / "then.zip"
    assert _run(template, then, out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = _run(template, parts["now"], out, "--since", str(out / "manifest.json"))
    assert result.exit_code != 0
    assert "block.zip" in result.stderr
    assert "--since" in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_pooled_dataset_grows_in_one_folder(parts: dict[str, Any]) -> None:
    # a Hive dataset's part files are new files: its folder takes every part, and the
    # manifest beside it (which carries the chain on) is the latest run's
    tmp = parts["tmp"]
    template = tmp / "dataset.toml"
    template.write_text(
        '[[sinks]]\ntype = "parquet"\npath = "dataset"\npartition_by = ["block"]\n',
        encoding="utf-8",
    )
    out = tmp / "pooled"
    assert _run(template, tmp / "then.zip", out).exit_code == 0
    first = sorted(out.rglob("*.parquet"))
    kept = [p.read_bytes() for p in first]
    again = _run(template, parts["now"], out, "--since", str(out / "manifest.json"))
    assert again.exit_code == 0, again.output
    files = sorted(out.rglob("*.parquet"))
    assert len(files) == 2 * len(first)
    assert [p.read_bytes() for p in first] == kept
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["since"]["sessions"] == len(parts["expected"])


def test_the_pandas_recipe_reads_every_part_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pandas guesses each file's column types on its own: a part whose section_tag holds
    # only "0" must not come back as the number 0.0 beside another part's text
    import pandas as pd

    # and a json_data key only the later part holds: a column the earlier part lacks
    header = "session_id,result_id,section_tag,result_given_response,result_json.new\n"
    parts = {
        "2025-05-01": header.rsplit(",", 1)[0] + "\n1,10,A,left\n1,11,B,right\n2,20,A,\n",
        "2025-05-08": header + "2,20,0,007,x\n2,21,0,1,\n",
    }
    for name, text in parts.items():
        (tmp_path / "parts" / name).mkdir(parents=True)
        (tmp_path / "parts" / name / "trials.csv").write_text(text, encoding="utf-8")
    full = tmp_path / "full.csv"
    full.write_text(header + "1,10,A,left,\n1,11,B,right,\n2,20,0,007,x\n2,21,0,1,\n", "utf-8")
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(_block("from pathlib import Path"), scope)
    trials = scope["trials"]
    assert isinstance(trials, pd.DataFrame)
    read = scope.get("read_part", pd.read_csv)
    assert callable(read)
    expected = read(full).astype({"session_id": "int64", "result_id": "int64"})
    got = trials.drop(columns="part").sort_values("result_id", ignore_index=True)
    pd.testing.assert_frame_equal(got[list(expected.columns)], expected)
    assert list(got["section_tag"]) == ["A", "B", "0", "0"]
    assert list(got["result_given_response"])[2] == "007"

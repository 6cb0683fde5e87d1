"""Bad-input corpus, part 1: zips, JSON and the record graph.

Every case must get one line naming the file and the record, its documented exit code, no
traceback and no output. Every case is a mutated twin of a golden reference zip that the
golden tests accept (and test_the_unmutated_twin_succeeds runs the twin itself).
docs/bad-input.md lists the whole corpus.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.errors import EXIT_INTEGRITY, EXIT_SOURCE
from zipcases import Objects, mutated

REFERENCE_ZIP = "head/block_tafc-dvorak.zip"


def _dangling_session(objs: Objects) -> Objects:
    objs[3]["fields"]["session"] = 999_999
    return objs


def _dangling_participant(objs: Objects) -> Objects:
    objs[0]["fields"]["participant"] = 424_242
    return objs


def _duplicate_result(objs: Objects) -> Objects:
    return [*objs, dict(objs[-1])]


def _duplicate_session(objs: Objects) -> Objects:
    return [*objs, {**objs[0], "fields": {**objs[0]["fields"], "final_score": 99.0}}]


def _both_owners(objs: Objects) -> Objects:
    objs[0]["fields"]["participant"] = 1
    return objs


def _no_owner(objs: Objects) -> Objects:
    objs[0]["fields"]["session"] = None
    return objs


def _bad_datetime(objs: Objects) -> Objects:
    objs[1]["fields"]["started_at"] = "yesterday at noon"
    return objs


def _missing_fields(objs: Objects) -> Objects:
    del objs[0]["fields"]
    return objs


def _unknown_model(objs: Objects) -> Objects:
    objs[0]["model"] = "experiment.nonsense"
    return objs


def _other_block(objs: Objects) -> Objects:
    objs[2]["fields"]["block"] = 77
    return objs


def _malformed(objs: Objects) -> bytes:
    from zipcases import django_dumps

    return django_dumps(objs)[:-40] + b"{{{"


def _nan(objs: Objects) -> bytes:
    from zipcases import django_dumps

    return django_dumps(objs).replace(b'"score": 1.0', b'"score": NaN', 1)


def _top_level_object(objs: Objects) -> bytes:
    return b'{"model": "result.result"}'


def _infinity(objs: Objects) -> bytes:
    from zipcases import django_dumps

    return django_dumps(objs).replace(b'"score": 1.0', b'"score": -Infinity', 1)


def _invalid_utf8(objs: Objects) -> bytes:
    from zipcases import django_dumps

    return django_dumps(objs).replace("Dvořák".encode(), b"Dvo\xc5\x99\xff", 1)


def _string_participant(objs: Objects) -> Objects:
    objs[0]["fields"]["participant"] = str(objs[0]["fields"]["participant"])
    return objs


def _huge_string(objs: Objects) -> Objects:
    objs[0]["fields"]["given_response"] = "x" * (10 << 20)
    return objs


CASES: dict[str, tuple[dict[str, Callable[[Objects], Any] | None], int, list[str]]] = {
    "dangling session": (
        {"results_json": _dangling_session},
        EXIT_INTEGRITY,
        ["results.json", "result", "session 999999 not found"],
    ),
    "dangling participant": (
        {"sessions_json": _dangling_participant},
        EXIT_INTEGRITY,
        ["sessions.json", "session", "participant 424242 not found"],
    ),
    "duplicate result pk": (
        {"results_json": _duplicate_result},
        EXIT_INTEGRITY,
        ["results.json", "result", "duplicate primary key"],
    ),
    "duplicate session pk": (
        {"sessions_json": _duplicate_session},
        EXIT_INTEGRITY,
        ["sessions.json", "session 1", "duplicate primary key"],
    ),
    "result with both owners": (
        {"results_json": _both_owners},
        EXIT_INTEGRITY,
        ["results.json", "result", "both"],
    ),
    "result with no owner": (
        {"results_json": _no_owner},
        EXIT_INTEGRITY,
        ["results.json", "result", "no session"],
    ),
    "session of another block": (
        {"sessions_json": _other_block},
        EXIT_INTEGRITY,
        ["sessions.json", "session", "block 77"],
    ),
    "unparseable datetime": (
        {"sessions_json": _bad_datetime},
        EXIT_SOURCE,
        ["sessions.json", "session", "started_at", "yesterday"],
    ),
    "missing fields": (
        {"results_json": _missing_fields},
        EXIT_SOURCE,
        ["results.json", "result", "fields"],
    ),
    "unknown model label": (
        {"results_json": _unknown_model},
        EXIT_SOURCE,
        ["results.json", "experiment.nonsense"],
    ),
    "malformed json": (
        {"results_json": _malformed},
        EXIT_SOURCE,
        ["results.json", "JSON", "byte", "after result"],
    ),
    "NaN": ({"results_json": _nan}, EXIT_SOURCE, ["results.json", "NaN"]),
    "wrong top-level type": (
        {"results_json": _top_level_object},
        EXIT_SOURCE,
        ["results.json", "expected a JSON array"],
    ),
    "missing member": ({"results_json": None}, EXIT_SOURCE, ["missing results.json"]),
    "Infinity": ({"results_json": _infinity}, EXIT_SOURCE, ["results.json", "Infinity"]),
    "invalid UTF-8": (
        {"songs_json": _invalid_utf8},
        EXIT_SOURCE,
        ["songs.json", "invalid UTF-8", "byte"],
    ),
    "integer as a string": (
        {"sessions_json": _string_participant},
        EXIT_SOURCE,
        ["sessions.json", "session", "participant", "expected integer"],
    ),
    "a 10 MB string": (
        {"results_json": _huge_string},
        EXIT_SOURCE,
        ["results.json", "result", "given_response", "10,485,760", "100"],
    ),
}


def run_cli(runner: CliRunner, zip_path: Path, out: Path) -> Any:
    template = out.parent / "t.toml"
    template.write_text('[[sinks]]\ntype = "fixture-json"\npath = "result.zip"\n', encoding="utf-8")
    return runner.invoke(cli, ["run", str(template), "--source", str(zip_path), "--out", str(out)])


def assert_clean_failure(result: Any, code: int, words: list[str], out: Path) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


@pytest.mark.parametrize("case", list(CASES))
def test_mutated_reference_zip_fails_cleanly(
    case: str, reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    changes, code, words = CASES[case]
    bad = mutated(reference_dir / REFERENCE_ZIP, tmp_path / "bad.zip", **changes)
    result = run_cli(cli_runner, bad, tmp_path / "out")
    assert_clean_failure(result, code, [str(bad), *words], tmp_path / "out")


def test_the_unmutated_twin_succeeds(
    reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    good = mutated(reference_dir / REFERENCE_ZIP, tmp_path / "good.zip")
    result = run_cli(cli_runner, good, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "result.zip").is_file()


def _truncated(src: Path, dst: Path) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])


def _not_a_zip(src: Path, dst: Path) -> None:
    dst.write_text("session_id,score\n1,2\n", encoding="utf-8")


def _gzip_garbage(src: Path, dst: Path) -> None:
    dst.write_bytes(gzip.compress(b"this is not a zip at all" * 100))


def _empty(src: Path, dst: Path) -> None:
    dst.write_bytes(b"")


FILE_CASES = {
    "truncated zip": (_truncated, ["zip"]),
    "not a zip": (_not_a_zip, ["not a zip file"]),
    "gzip around garbage": (_gzip_garbage, ["gzip"]),
    "empty file": (_empty, ["empty file"]),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_broken_files_fail_cleanly(
    case: str, reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    make, words = FILE_CASES[case]
    bad = tmp_path / "bad.zip"
    make(reference_dir / REFERENCE_ZIP, bad)
    result = run_cli(cli_runner, bad, tmp_path / "out")
    assert_clean_failure(result, EXIT_SOURCE, [str(bad), *words], tmp_path / "out")


def _zip_with(path: Path, entries: list[tuple[str, bytes, int]]) -> None:
    import warnings
    import zipfile

    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        for name, data, method in entries:
            archive.writestr(name, data, compress_type=method)


def _members(reference: Path) -> list[tuple[str, bytes, int]]:
    import zipfile

    with zipfile.ZipFile(reference) as archive:
        return [(n, archive.read(n), zipfile.ZIP_STORED) for n in archive.namelist()]


def test_zip_bomb_guard(reference_dir: Path, tmp_path: Path, cli_runner: CliRunner) -> None:
    import zipfile

    entries = _members(reference_dir / REFERENCE_ZIP)
    entries[0] = ("sessions.json", b"[" + b" " * (20 << 20) + b"]", zipfile.ZIP_DEFLATED)
    bad = tmp_path / "bomb.zip"
    _zip_with(bad, entries)
    result = run_cli(cli_runner, bad, tmp_path / "out")
    assert_clean_failure(
        result, EXIT_SOURCE, [str(bad), "sessions.json", "inflate", "zip bomb"], tmp_path / "out"
    )


def test_extra_member(reference_dir: Path, tmp_path: Path, cli_runner: CliRunner) -> None:
    bad = tmp_path / "extra.zip"
    _zip_with(bad, [*_members(reference_dir / REFERENCE_ZIP), ("notes.txt", b"hi", 0)])
    result = run_cli(cli_runner, bad, tmp_path / "out")
    assert_clean_failure(
        result, EXIT_SOURCE, [str(bad), "unexpected member 'notes.txt'"], tmp_path / "out"
    )


def test_duplicate_member(reference_dir: Path, tmp_path: Path, cli_runner: CliRunner) -> None:
    entries = _members(reference_dir / REFERENCE_ZIP)
    bad = tmp_path / "dup.zip"
    _zip_with(bad, [*entries, entries[3]])
    result = run_cli(cli_runner, bad, tmp_path / "out")
    assert_clean_failure(result, EXIT_SOURCE, [str(bad), "'results.json' twice"], tmp_path / "out")


def test_a_10_mb_string_inside_json_data_is_fine(
    reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    def big(objs: Objects) -> Objects:
        objs[0]["fields"]["json_data"]["note"] = "♪" * (10 << 20)
        return objs

    good = mutated(reference_dir / REFERENCE_ZIP, tmp_path / "big.zip", results_json=big)
    result = run_cli(cli_runner, good, tmp_path / "out")
    assert result.exit_code == 0, result.output


def test_missing_source_file(tmp_path: Path, cli_runner: CliRunner) -> None:
    result = run_cli(cli_runner, tmp_path / "nope.zip", tmp_path / "out")
    assert_clean_failure(result, EXIT_SOURCE, ["nope.zip", "no such file"], tmp_path / "out")


def test_missing_section_is_an_error_unless_kept(
    reference_dir: Path, tmp_path: Path, cli_runner: CliRunner
) -> None:
    def drop_first_section(objs: Objects) -> Objects:
        return objs[1:]

    bad = mutated(
        reference_dir / REFERENCE_ZIP, tmp_path / "bad.zip", sections_json=drop_first_section
    )
    result = run_cli(cli_runner, bad, tmp_path / "out")
    assert_clean_failure(
        result,
        EXIT_INTEGRITY,
        ["results.json", "section", "not found", "missing_sections"],
        tmp_path / "out",
    )
    template = tmp_path / "keep.toml"
    template.write_text(
        '[source]\nmissing_sections = "keep"\n[[sinks]]\ntype = "fixture-json"\npath = "r.zip"\n',
        encoding="utf-8",
    )
    kept = cli_runner.invoke(
        cli, ["run", str(template), "--source", str(bad), "--out", str(tmp_path / "out2")]
    )
    assert kept.exit_code == 0, kept.output
    assert (tmp_path / "out2" / "r.zip").is_file()


def test_gzip_bomb_guard(tmp_path: Path, cli_runner: CliRunner) -> None:
    bad = tmp_path / "bomb.zip"
    bad.write_bytes(gzip.compress(b"PK\x03\x04" + b"\0" * (50 << 20)))
    result = run_cli(cli_runner, bad, tmp_path / "out")
    assert_clean_failure(result, EXIT_SOURCE, [str(bad), "zip bomb"], tmp_path / "out")

"""Bad-input corpus, part 5: odd files get one verdict, whatever the sinks and the path.

Numbers beyond a double's range, deep nesting, zips whose headers disagree or whose
compression we do not read, templates with a byte-order mark or a circular ``extends``.
Each case runs every sink on its own (so that the engine takes the tables it can), with
and without the native kernel: every run must give the same one-line error, or the same
bytes. docs/bad-input.md lists each case.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.errors import EXIT_SINK, EXIT_SOURCE, EXIT_TEMPLATE
from aml_exportkit.jsonstream import MAX_INT_DIGITS, MAX_JSON_DATA_NESTING
from zipcases import Objects, django_dumps, mutated

ZIP = "head/block_tafc-dvorak.zip"
SINKS = ("fixture-json", "csv-long", "csv-wide", "parquet")
#: the engine with the native kernel, and with its Python reference
PATHS = ({}, {"EXPORTKIT_NATIVE": "0"})


def export(source: Path | str, sink: str, out: Path, env: dict[str, str], *extra: str) -> Any:
    template = out.parent / f"{sink}.toml"
    template.write_text(f'[[sinks]]\ntype = "{sink}"\npath = "x"\n', encoding="utf-8")
    return CliRunner(env=env).invoke(
        cli, ["run", str(template), "--source", str(source), "--out", str(out), *extra]
    )


def failure_line(result: Any, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1, result.stderr
    assert "internal error" not in lines[0]
    return lines[0]


def refused_everywhere(source: Path, tmp_path: Path, words: list[str]) -> None:
    """Every sink, on every path, refuses ``source`` with the same line."""
    seen = set()
    for sink in SINKS:
        for n, env in enumerate(PATHS):
            out = tmp_path / f"out-{sink}-{n}"
            line = failure_line(export(source, sink, out, env), EXIT_SOURCE)
            for word in words:
                assert word in line, (sink, env, line)
            assert not out.exists(), (sink, env)
            seen.add(line)
    assert len(seen) == 1, seen


def with_raw(value: bytes, key: str = "json_data") -> Callable[[Objects], bytes]:
    """A change that puts ``value`` (raw JSON text) into the first object's ``key``."""

    def change(objs: Objects) -> bytes:
        objs[0]["fields"][key] = "__RAW__"
        return django_dumps(objs).replace(b'"__RAW__"', value, 1)

    return change


def first_pk(reference_dir: Path, member: str) -> int:
    with zipfile.ZipFile(reference_dir / ZIP) as archive:
        return int(json.loads(archive.read(member))[0]["pk"])


# -- 5. the same value, the same verdict ----------------------------------------------------

BEYOND_DOUBLE = {
    "1e400": b'{"x": 1e400}',
    "-1.5e999": b'{"x": [1, -1.5e999]}',
    "a 400-digit mantissa": b'{"x": 1' + b"0" * 400 + b".5}",
    "beside a wide integer": b'{"x": 1e400, "y": 123456789012345678901234}',
}


@pytest.mark.parametrize("case", list(BEYOND_DOUBLE))
def test_a_number_beyond_a_double(case: str, reference_dir: Path, tmp_path: Path) -> None:
    source = mutated(
        reference_dir / ZIP,
        tmp_path / "block_tafc-dvorak.zip",
        results_json=with_raw(BEYOND_DOUBLE[case]),
    )
    pk = first_pk(reference_dir, "results.json")
    refused_everywhere(source, tmp_path, ["results.json", f"result {pk}", "beyond a double"])


def test_a_number_beyond_a_double_in_a_session(reference_dir: Path, tmp_path: Path) -> None:
    source = mutated(
        reference_dir / ZIP,
        tmp_path / "block_tafc-dvorak.zip",
        sessions_json=with_raw(b'{"x": 1e400}'),
    )
    pk = first_pk(reference_dir, "sessions.json")
    refused_everywhere(source, tmp_path, ["sessions.json", f"session {pk}", "beyond a double"])


def test_an_integer_beyond_a_double_is_kept_exactly(reference_dir: Path, tmp_path: Path) -> None:
    digits = b"1" + b"0" * 400
    source = mutated(
        reference_dir / ZIP,
        tmp_path / "block_tafc-dvorak.zip",
        results_json=with_raw(b'{"x": ' + digits + b"}"),
    )
    for sink in ("csv-long", "fixture-json"):
        for n, env in enumerate(PATHS):
            out = tmp_path / f"out-{sink}-{n}"
            result = export(source, sink, out, env)
            assert result.exit_code == 0, result.output
            data = (out / "x").read_bytes()
            if sink == "fixture-json":
                with zipfile.ZipFile(out / "x") as archive:
                    data = archive.read("results.json")
            assert digits in data, (sink, env)


@pytest.mark.parametrize("sign", ["", "-"])
def test_an_integer_too_long_to_read_is_refused_everywhere(
    sign: str, reference_dir: Path, tmp_path: Path
) -> None:
    # Python reads no integer beyond MAX_INT_DIGITS; the native kernel copies text and
    # would keep it, so it must refuse the chunk and leave the verdict to the Python
    # reference reading.
    digits = sign.encode() + b"1" + b"0" * MAX_INT_DIGITS
    source = mutated(
        reference_dir / ZIP,
        tmp_path / "block_tafc-dvorak.zip",
        results_json=with_raw(b'{"x": ' + digits + b"}"),
    )
    pk = first_pk(reference_dir, "results.json")
    refused_everywhere(source, tmp_path, [f"result {pk}", f"{MAX_INT_DIGITS + 1:,} digits"])


def test_the_longest_integer_is_kept_exactly(reference_dir: Path, tmp_path: Path) -> None:
    digits = b"1" + b"0" * (MAX_INT_DIGITS - 1)
    source = mutated(
        reference_dir / ZIP,
        tmp_path / "block_tafc-dvorak.zip",
        results_json=with_raw(b'{"x": ' + digits + b"}"),
    )
    for n, env in enumerate(PATHS):
        out = tmp_path / f"out{n}"
        result = export(source, "csv-long", out, env)
        assert result.exit_code == 0, result.output
        assert digits in (out / "x").read_bytes(), env


def test_a_tiny_number_is_kept_as_every_reader_reads_it(
    reference_dir: Path, tmp_path: Path
) -> None:
    source = mutated(
        reference_dir / ZIP,
        tmp_path / "block_tafc-dvorak.zip",
        results_json=with_raw(b'{"x": 1e-300}'),
    )
    texts = set()
    for n, env in enumerate(PATHS):
        out = tmp_path / f"out{n}"
        result = export(source, "csv-long", out, env)
        assert result.exit_code == 0, result.output
        texts.add((out / "x").read_bytes())
    assert len(texts) == 1
    assert b"1e-300" in texts.pop()


def _patch_results_header(
    data: bytearray, *, name: bytes | None = None, method: int | None = None
) -> bytes:
    """The zip's bytes with results.json's local header (and, for the method, its
    central directory entry) changed in place."""
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("results.json")
    local = info.header_offset
    if name is not None:
        length = struct.unpack("<H", data[local + 26 : local + 28])[0]
        assert len(name) == length
        data[local + 30 : local + 30 + length] = name
    if method is not None:
        struct.pack_into("<H", data, local + 8, method)
        at = data.find(b"PK\x01\x02")
        while at >= 0:
            length = struct.unpack("<H", data[at + 28 : at + 30])[0]
            if data[at + 46 : at + 46 + length] == b"results.json":
                struct.pack_into("<H", data, at + 10, method)
            at = data.find(b"PK\x01\x02", at + 4)
    return bytes(data)


def test_a_local_header_that_names_another_member(reference_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "block_tafc-dvorak.zip"
    data = bytearray((reference_dir / ZIP).read_bytes())
    source.write_bytes(_patch_results_header(data, name=b"resultz.json"))
    refused_everywhere(source, tmp_path, ["results.json", "resultz.json", "differ"])
    inspected = CliRunner().invoke(cli, ["inspect", str(source)])
    assert "differ" in failure_line(inspected, EXIT_SOURCE)


@pytest.mark.parametrize(("method", "name"), [(9, "deflate64"), (12, "bzip2"), (99, "AES")])
def test_an_unsupported_compression(
    method: int, name: str, reference_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "block_tafc-dvorak.zip"
    data = bytearray((reference_dir / ZIP).read_bytes())
    source.write_bytes(_patch_results_header(data, method=method))
    refused_everywhere(source, tmp_path, ["results.json", name, "not supported"])


# -- 6. deep nesting ------------------------------------------------------------------------


def nested(levels: int, objects: bool) -> bytes:
    if objects:  # alternate objects and arrays, both count
        half = levels // 2
        return b'{"a": [' * half + b"1" + b"]}" * half
    return b"[" * levels + b"1" + b"]" * levels


@pytest.mark.parametrize("levels", [MAX_JSON_DATA_NESTING + 1, 500, 1100, 100_000])
def test_json_data_nested_too_deeply(levels: int, reference_dir: Path, tmp_path: Path) -> None:
    source = mutated(
        reference_dir / ZIP,
        tmp_path / "block_tafc-dvorak.zip",
        results_json=with_raw(nested(levels, objects=levels % 2 == 0)),
    )
    pk = first_pk(reference_dir, "results.json")
    refused_everywhere(source, tmp_path, ["results.json", f"result {pk}:", "nested more than"])
    template = tmp_path / "csv-long.toml"
    for args in (
        ["inspect", str(source)],
        ["init", str(source)],
        ["check", str(template), "--source", str(source)],
        ["verify", str(source), "--against", str(reference_dir / ZIP)],
    ):
        line = failure_line(CliRunner().invoke(cli, args), EXIT_SOURCE)
        assert "nested more than" in line, (args, line)


@pytest.mark.parametrize("objects", [False, True])
def test_json_data_nested_to_the_limit_is_exported_alike(
    objects: bool, reference_dir: Path, tmp_path: Path
) -> None:
    source = mutated(
        reference_dir / ZIP,
        tmp_path / "block_tafc-dvorak.zip",
        results_json=with_raw(nested(MAX_JSON_DATA_NESTING, objects)),
    )
    for sink in SINKS:
        outputs = set()
        for n, env in enumerate(PATHS):
            out = tmp_path / f"out-{sink}-{n}"
            result = export(source, sink, out, env)
            assert result.exit_code == 0, (sink, env, result.output)
            outputs.add((out / "x").read_bytes())
        assert len(outputs) == 1, sink


@pytest.mark.pg
@pytest.mark.parametrize(
    ("document", "words"),
    [
        # jsonb keeps numbers as numeric: 1e400 comes back as the integer it equals (kept
        # exactly, as any integer beyond 64 bits); one with a fraction is a double's job
        (b'{"x": 1' + b"0" * 400 + b".5}", ["beyond a double"]),
        (nested(MAX_JSON_DATA_NESTING + 2, objects=True), ["nested more than"]),
        (b'{"x": 1' + b"0" * MAX_INT_DIGITS + b"}", [f"{MAX_INT_DIGITS + 1:,} digits"]),
    ],
    ids=["beyond a double", "deep", "a long integer"],
)
def test_a_database_gives_the_same_verdicts(
    document: bytes, words: list[str], pg_database: Any, reference_dir: Path, tmp_path: Path
) -> None:
    import psycopg

    dsn = pg_database(reference_dir / "head" / "muscle_head.sql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        pk = conn.execute(
            "SELECT min(r.id) FROM result_result r JOIN session_session s ON s.id = r.session_id"
            " WHERE s.block_id = 1"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "UPDATE result_result SET json_data = %s::jsonb WHERE id = %s",
            (document.decode(), pk),
        )
    seen = set()
    for sink in SINKS:
        for n, env in enumerate(PATHS):
            out = tmp_path / f"out-{sink}-{n}"
            line = failure_line(export(dsn, sink, out, env, "--block", "tafc-dvorak"), EXIT_SOURCE)
            for word in (f"result {pk}", *words):
                assert word in line, (sink, env, line)
            seen.add(line)
    assert len(seen) == 1, seen


# -- 6. --block, byte-order marks, circular extends -----------------------------------------


def test_a_template_with_a_byte_order_mark(reference_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "base.toml"
    base.write_bytes(b"\xef\xbb\xbf" + b'[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n')
    child = tmp_path / "child.toml"
    child.write_bytes(b"\xef\xbb\xbf" + b'extends = "base.toml"\nname = "bom"\n')
    for template in (base, child):
        result = CliRunner().invoke(
            cli,
            [
                "run",
                str(template),
                "--source",
                str(reference_dir / ZIP),
                "--out",
                str(tmp_path / template.stem),
            ],
        )
        assert result.exit_code == 0, result.output
        assert (tmp_path / template.stem / "r.csv").is_file()


@pytest.mark.parametrize(
    ("files", "chain"),
    [
        ({"t.toml": "t.toml"}, "t.toml"),
        ({"t.toml": "b.toml", "b.toml": "t.toml"}, "b.toml -> t.toml"),
        (
            {"t.toml": "b.toml", "b.toml": "sub/c.toml", "sub/c.toml": "../b.toml"},
            "b.toml -> sub/c.toml -> ../b.toml",
        ),
        ({"t.toml": "./t.toml"}, "./t.toml"),
    ],
)
def test_a_circular_extends_names_the_chain(
    files: dict[str, str], chain: str, tmp_path: Path
) -> None:
    for name, base in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f'extends = "{base}"\n[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n', encoding="utf-8"
        )
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "t.toml")])
    line = failure_line(result, EXIT_TEMPLATE)
    # the template named on the command line as given, then each extends as written
    assert line.endswith(f"in a circle: {tmp_path / 't.toml'} -> {chain}"), line


def test_an_exclude_file_with_a_byte_order_mark(reference_dir: Path, tmp_path: Path) -> None:
    # the mark must not turn the first entry into text that matches no one: the listed
    # participant is left out exactly as from the same file without it
    with zipfile.ZipFile(reference_dir / ZIP) as archive:
        participants = json.loads(archive.read("participants.json"))
    pk = participants[0]["pk"]
    texts = []
    for n, mark in enumerate((b"", b"\xef\xbb\xbf")):
        folder = tmp_path / f"t{n}"
        folder.mkdir()
        (folder / "out.txt").write_bytes(mark + f"{pk}\n".encode())
        template = folder / "t.toml"
        template.write_text(
            '[filter]\nexclude_file = "out.txt"\n[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n',
            encoding="utf-8",
        )
        source = str(reference_dir / ZIP)
        result = CliRunner().invoke(
            cli, ["run", str(template), "--source", source, "--out", str(folder / "o")]
        )
        assert result.exit_code == 0, result.output
        texts.append((folder / "o" / "r.csv").read_text(encoding="utf-8"))
    assert texts[0] == texts[1]


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        (
            "UPDATE result_result SET score = 'Infinity' WHERE id = {result}",
            ["result {result}", "field 'score'", "inf"],
        ),
        (
            "UPDATE result_result SET score = '-Infinity' WHERE id = {result}",
            ["result {result}", "field 'score'", "-inf"],
        ),
        (
            "UPDATE session_session SET final_score = 'NaN' WHERE id = {session}",
            ["session {session}", "field 'final_score'", "nan"],
        ),
    ],
    ids=["infinity", "minus infinity", "NaN"],
)
def test_a_database_float_that_is_not_finite(
    statement: str, words: list[str], pg_database: Any, reference_dir: Path, tmp_path: Path
) -> None:
    # PostgreSQL's double precision holds infinity and NaN; a fixture zip cannot (JSON),
    # and fixture-json refused it while the tables wrote 'inf': one verdict, at the source
    import psycopg

    dsn = pg_database(reference_dir / "head" / "muscle_head.sql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        result, session = conn.execute(
            "SELECT min(r.id), min(s.id) FROM result_result r"
            " JOIN session_session s ON s.id = r.session_id WHERE s.block_id = 1"
        ).fetchone()  # type: ignore[misc]
        conn.execute(statement.format(result=result, session=session))
    seen = set()
    for sink in (*SINKS, "duckdb"):
        for n, env in enumerate(PATHS):
            out = tmp_path / f"out-{sink}-{n}"
            line = failure_line(export(dsn, sink, out, env, "--block", "tafc-dvorak"), EXIT_SOURCE)
            for word in words:
                assert word.format(result=result, session=session) in line, (sink, env, line)
            assert not out.exists()
            seen.add(line)
    assert len(seen) == 1, seen


@pytest.mark.parametrize("sink", ["spss", "stata"])
def test_text_with_a_nul_in_a_format_that_cannot_hold_it(
    sink: str, reference_dir: Path, tmp_path: Path
) -> None:
    # ReadStat writes C strings: "a\0b" came back as "a", with exit 0
    def change(objs: Objects) -> Objects:
        objs[0]["fields"]["given_response"] = "a\u0000b"
        return objs

    source = mutated(reference_dir / ZIP, tmp_path / "block_tafc-dvorak.zip", results_json=change)
    for n, env in enumerate(PATHS):
        out = tmp_path / f"out{n}"
        result = export(source, sink, out, env)
        assert result.exit_code == EXIT_SINK, result.output
        line = failure_line(result, EXIT_SINK)
        assert "result_given_response" in line, line
        assert "NUL character" in line, line
        assert not out.exists()
    # the formats that hold it keep it exactly
    out = tmp_path / "kept"
    assert export(source, "duckdb", out, {}).exit_code == 0
    import duckdb

    with duckdb.connect(str(out / "x"), read_only=True) as db:
        found = db.execute(
            "SELECT count(*) FROM results WHERE given_response = 'a' || chr(0) || 'b'"
        ).fetchall()
    assert found == [(1,)]


@pytest.mark.parametrize(
    "raw",
    [b'"a\\ud800b"', b'"\\udc00"', b'{"k\\ud800": 1}', b'["x", "\\uDBFF"]'],
    ids=["lone high", "lone low", "in a key", "upper-case hex"],
)
def test_a_lone_surrogate_escape(raw: bytes, reference_dir: Path, tmp_path: Path) -> None:
    # valid JSON syntax but no Unicode text: orjson refused it, the standard library's
    # parser (the slow path) let it through to the sinks, which each failed their own way
    # (duckdb with "internal error")
    source = mutated(
        reference_dir / ZIP, tmp_path / "block_tafc-dvorak.zip", results_json=with_raw(raw)
    )
    pk = first_pk(reference_dir, "results.json")
    refused_everywhere(source, tmp_path, [f"result {pk}", "lone surrogate"])
    out = tmp_path / "duckdb"
    line = failure_line(export(source, "duckdb", out, {}), EXIT_SOURCE)
    assert "lone surrogate" in line


def test_a_surrogate_pair_escape_is_kept(reference_dir: Path, tmp_path: Path) -> None:
    source = mutated(
        reference_dir / ZIP,
        tmp_path / "block_tafc-dvorak.zip",
        results_json=with_raw(b'{"t": "\\ud83c\\udfa7"}'),
    )
    for n, env in enumerate(PATHS):
        out = tmp_path / f"out{n}"
        assert export(source, "csv-long", out, env).exit_code == 0
        assert "\U0001f3a7" in (out / "x").read_text(encoding="utf-8")

"""Bad-input corpus, part 2: templates and databases, through the CLI.

Each case must get one line naming the template key or the database, its documented exit
code, no traceback, and no output. docs/bad-input.md lists the whole corpus.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.errors import EXIT_DATABASE, EXIT_SINK, EXIT_TEMPLATE
from conftest import REFERENCE

ZIP = REFERENCE / "head" / "block_tafc-dvorak.zip"
SINK = '[[sinks]]\ntype = "fixture-json"\npath = "out.zip"\n'

TEMPLATE_CASES: dict[str, tuple[str, list[str]]] = {
    "not TOML": ("[[sinks]\ntype = ", ["not valid TOML"]),
    "unknown key": ("colour = 'blue'\n" + SINK, ["colour", "unknown key"]),
    "unknown key in a sink": (
        SINK + 'compresion = "deflate"\n',
        ["sinks[0].compresion", "unknown key", "compression"],
    ),
    "wrong type": (
        '[filter]\nfinished_only = "yes"\n' + SINK,
        ["filter.finished_only", "expected a boolean"],
    ),
    "wrong type in an array": (
        '[source]\nblocks = ["a", 3]\n' + SINK,
        ["source.blocks[1]", "expected a string"],
    ),
    "unknown sink": (
        '[[sinks]]\ntype = "parqet"\npath = "x"\n',
        ["sinks[0].type", "unknown sink 'parqet'", "csv-long", "fixture-json", "parquet"],
    ),
    "unknown field": (
        '[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n[sinks.columns]\n'
        'result = ["id", "colour"]\n',
        ["sinks[0].columns.result[1]", "colour"],
    ),
    "unknown choice": (SINK + 'compression = "zstd"\n', ["sinks[0].compression", "'stored'"]),
    "date-time without an offset": (
        "[filter]\nstarted_after = 2024-07-01T00:00:00\n" + SINK,
        ["filter.started_after", "offset"],
    ),
    "no sinks": ('name = "x"\n', ["sinks", "exports nothing"]),
    "missing sink path": ('[[sinks]]\ntype = "csv-long"\n', ["sinks[0].path", "missing"]),
    "mixed {block} paths": (
        '[[sinks]]\ntype = "fixture-json"\npath = "{block}.zip"\n' + SINK,
        ["sinks[1].path", "{block}"],
    ),
    "extends a missing file": ('extends = "nowhere.toml"\n' + SINK, ["extends", "nowhere.toml"]),
    "extends in a circle": ('extends = "t.toml"\n' + SINK, ["extends", "circle"]),
    "pseudonymise without a key": (
        '[privacy]\npseudonymise = ["unique_hash"]\n' + SINK,
        ["privacy.key_env"],
    ),
}


def run(tmp_path: Path, text: str, source: str) -> tuple[Any, Path]:
    template = tmp_path / "t.toml"
    template.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["run", str(template), "--source", source, "--out", str(out)])
    return result, out


def assert_clean_failure(result: Any, code: int, words: list[str], out: Path) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("case", list(TEMPLATE_CASES))
def test_bad_template(case: str, tmp_path: Path) -> None:
    text, words = TEMPLATE_CASES[case]
    result, out = run(tmp_path, text, str(ZIP))
    assert_clean_failure(result, EXIT_TEMPLATE, [str(tmp_path / "t.toml"), *words], out)


def test_output_path_that_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    template = tmp_path / "t.toml"
    template.write_text('[[sinks]]\ntype = "fixture-json"\npath = "a-file/sub/x.zip"\n')
    result = CliRunner().invoke(cli, ["run", str(template), "--source", str(ZIP)])
    assert_clean_failure(
        result, EXIT_SINK, ["a-file/sub", "cannot create the folder"], tmp_path / "nothing-here"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "t.toml"]


# -- databases ------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _admin(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def _with(dsn: str, **parts: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info.update(parts)
    user = info.get("user", "postgres")
    password = f":{info['password']}" if info.get("password") else ""
    return (
        f"postgresql://{user}{password}@{info.get('host', '127.0.0.1')}:"
        f"{info.get('port', 5432)}/{info['dbname']}"
    )


@pytest.mark.pg
def test_unreachable_server(pg_server: str, tmp_path: Path) -> None:
    uri = f"postgresql://someone:pw-1@127.0.0.1:{_closed_port()}/muscle"
    result, out = run(tmp_path, SINK, uri)
    assert_clean_failure(
        result, EXIT_DATABASE, ["postgresql://someone@127.0.0.1", "cannot reach the server"], out
    )
    assert "pw-1" not in result.output


@pytest.mark.pg
def test_wrong_credentials(muscle_head_db: str, tmp_path: Path) -> None:
    uri = _with(muscle_head_db, user=f"ghost_{uuid.uuid4().hex[:8]}", password="pw-2")
    result, out = run(tmp_path, SINK, uri)
    assert_clean_failure(result, EXIT_DATABASE, ["wrong credentials"], out)
    assert "pw-2" not in result.output


@pytest.mark.pg
def test_not_a_muscle_database(pg_database: Callable[[Path | None], str], tmp_path: Path) -> None:
    result, out = run(tmp_path, SINK, pg_database(None))
    assert_clean_failure(result, EXIT_DATABASE, ["not a MUSCLE database", "session_session"], out)


@pytest.mark.pg
def test_unsupported_muscle_version(
    pg_database: Callable[[Path | None], str], tmp_path: Path
) -> None:
    old = pg_database(None)
    _admin(
        old,
        "CREATE TABLE experiment_experiment (id integer PRIMARY KEY, slug varchar(64))",
        "CREATE TABLE session_session (id integer PRIMARY KEY, experiment_id integer,"
        " participant_id integer, current_round integer)",
    )
    result, out = run(tmp_path, SINK, old)
    assert_clean_failure(result, EXIT_DATABASE, ["unsupported MUSCLE version", "supported:"], out)


@pytest.mark.pg
def test_missing_permission(muscle_head_db: str, tmp_path: Path) -> None:
    role = f"exportkit_corpus_{uuid.uuid4().hex[:8]}"
    dbname = psycopg.conninfo.conninfo_to_dict(muscle_head_db)["dbname"]
    _admin(
        muscle_head_db,
        f'CREATE ROLE "{role}" LOGIN',
        f'GRANT CONNECT ON DATABASE "{dbname}" TO "{role}"',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"',
        f'REVOKE SELECT ON participant_participant FROM "{role}"',
    )
    try:
        result, out = run(tmp_path, SINK, _with(muscle_head_db, user=role))
        assert_clean_failure(
            result, EXIT_DATABASE, ["missing permission", "participant_participant"], out
        )
    finally:
        _admin(muscle_head_db, f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"')


@pytest.mark.pg
def test_unknown_block(muscle_head_db: str, tmp_path: Path) -> None:
    template = '[source]\nblocks = ["no-such-block"]\n' + SINK
    result, out = run(tmp_path, template, muscle_head_db)
    assert result.exit_code != 0
    assert_clean_failure(result, result.exit_code, ["no-such-block", "tafc-dvorak"], out)


def test_a_rename_onto_a_column_the_data_makes(tmp_path: Path) -> None:
    text = (
        '[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n[sinks.flatten]\n'
        'rename = { "result_json.key" = "result_json.view" }\n'
    )
    result, out = run(tmp_path, text, str(ZIP))
    assert_clean_failure(
        result, EXIT_SINK, ["x.csv (csv-long)", "'result_json.view'", "result_json 'key'"], out
    )


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 100_000,
        "x = " + "{a = " * 20_000,
        '[[sinks]]\ntype = "csv-long"\npath = "r.csv"\nflatten = ' + "[" * 3000 + "]" * 3000,
    ],
    ids=["open arrays", "inline tables", "inside a sink"],
)
@pytest.mark.parametrize("command", ["run", "validate", "check"])
def test_a_template_nested_too_deeply(command: str, text: str, tmp_path: Path) -> None:
    # tomllib recurses; the command line said "internal error" (only the export page
    # caught it): the loader's parse_toml now gives the one line for everyone
    template = tmp_path / "t.toml"
    template.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, [command, str(template)])
    assert result.exit_code == EXIT_TEMPLATE, result.output
    lines = [line for line in result.stderr.splitlines() if line]
    assert lines == [f"exportkit: error: {template}: not valid TOML: nested too deeply"]

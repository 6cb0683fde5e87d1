"""A password from the URI or from PGPASSWORD never reaches output, messages or manifests.

The shared test server trusts 127.0.0.1, so it accepts any password: the export succeeds
with one in the URI, and every byte written or printed can be searched for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

URI_SECRET = "Uri-S3cret-pw"
ENV_SECRET = "Env-S3cret-pw"
TEMPLATE = (
    '[source]\nblocks = ["tafc-dvorak"]\n'
    '[[sinks]]\ntype = "fixture-json"\npath = "{block}.zip"\n'
    '[[sinks]]\ntype = "csv-long"\npath = "{block}.csv"\n'
    '[[sinks]]\ntype = "parquet"\npath = "{block}.parquet"\n'
)


def with_password(dsn: str) -> str:
    return dsn.replace("postgres@", f"postgres:{URI_SECRET}@", 1)


def run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGPASSWORD": ENV_SECRET, "EXPORTKIT_DEBUG": ""}
    return subprocess.run(
        [sys.executable, "-m", "aml_exportkit", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )


def everything_written(folder: Path) -> str:
    texts = []
    for path in folder.rglob("*"):
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                texts += [archive.read(n).decode("utf-8", "replace") for n in archive.namelist()]
        elif path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


@pytest.mark.pg
def test_passwords_never_appear(muscle_head_db: str, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(TEMPLATE, encoding="utf-8")
    uri = with_password(muscle_head_db)
    out = tmp_path / "out"
    done = run(["run", str(template), "--source", uri, "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (out / "manifest.json").is_file()
    printed = done.stdout + done.stderr
    written = everything_written(out)
    assert "postgresql://postgres@" in written  # the manifest names the database...
    for secret in (URI_SECRET, ENV_SECRET):
        assert secret not in written  # ...but not the password
        assert secret not in printed

    failures = [
        [
            "run",
            str(template),
            "--source",
            uri,
            "--block",
            "no-such-block",
            "--out",
            str(tmp_path / "x"),
        ],
        [
            "run",
            str(template),
            "--source",
            f"postgresql://postgres:{URI_SECRET}@127.0.0.1:1/muscle",
            "--out",
            str(tmp_path / "y"),
        ],
        ["inspect", uri.rsplit("/", 1)[0] + "/exportkit_no_such_database"],
        ["verify", uri, "--against", uri + "_missing", "--block", "tafc-dvorak"],
    ]
    for args in failures:
        failed = run(args, tmp_path)
        assert failed.returncode != 0, args
        assert failed.stderr.strip(), args
        for secret in (URI_SECRET, ENV_SECRET):
            assert secret not in failed.stdout + failed.stderr, (args, failed.stderr)
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "y").exists()


# Sources no source reads, or that psycopg cannot parse, are echoed in the error line: the
# password in them must not be. Each runs through every command that takes a source.
UNREADABLE = {
    "an unknown scheme": "mysql://me:{pw}@h/db",
    "an unknown query parameter": "postgresql://h/db?password={pw}&nosuch=1",
    "a percent-encoded parameter name": "postgresql://h/db?%70assword={pw}&nosuch=1",
    "a libpq key=value string": "host=h password={pw} dbname=d",
    "a quoted libpq password": "host=h password='{pw} x' nosuch=1",
    "a line break in the password": "postgresql://me:{pw}\nx@h/db?nosuch=1",
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_a_source_echoed_in_an_error_shows_no_password(case: str, tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text('[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n', encoding="utf-8")
    source = UNREADABLE[case].format(pw=URI_SECRET)
    commands = (
        ["run", str(template), "--source", source, "--out", str(tmp_path / "out")],
        ["check", str(template), "--source", source],
        ["inspect", source],
    )
    for args in commands:
        done = run(args, tmp_path)
        assert done.returncode not in (0, 1), (args, done.stderr)
        assert done.stderr.startswith("exportkit: error: "), done.stderr
        assert URI_SECRET not in done.stderr + done.stdout, (args, done.stderr)

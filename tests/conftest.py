"""Shared fixtures: reference data, plugin managers, the CLI runner, PostgreSQL databases.

Test data: MUSCLE's reference output under ``tests/data``, found by ``tests/testdata.py``
(re-exported here: ``ROOT``, ``REFERENCE``, ``REFERENCE_ZIPS``), and generated MUSCLE data
from ``tests/generate.py``. Nothing is read from outside the repository.

PostgreSQL tests are marked ``pg``. They run against the real server at 127.0.0.1:5432
(override with EXPORTKIT_TEST_PG). Without a server they are skipped, except under
``CI=true``, where a missing server fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import generate
from aml_exportkit.plugins import PluginManager, get_plugin_manager
from testdata import REFERENCE, REFERENCE_ZIPS, ROOT

__all__ = ["REFERENCE", "REFERENCE_ZIPS", "ROOT"]  # re-exported for the tests
PG_BASE = os.environ.get("EXPORTKIT_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``tests/data``: MUSCLE's reference output; never written to."""
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data not found at {REFERENCE}")
    return REFERENCE


@pytest.fixture
def plugin_manager() -> PluginManager:
    """A fresh plugin manager with the builtins only (no entry points)."""
    return get_plugin_manager(load_entrypoints=False)


@pytest.fixture
def cli_runner() -> CliRunner:
    """click's runner, with stderr kept apart from stdout."""
    return CliRunner()


# -- PostgreSQL ---------------------------------------------------------------------------------


def _server_answers() -> str | None:
    """None if the server answers, else why not."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        return f"psycopg missing: {exc}"
    try:
        with psycopg.connect(f"{PG_BASE}/postgres", connect_timeout=5):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The server's base URI; skips (or, under CI=true, fails) without a server."""
    problem = _server_answers()
    if problem is not None:
        message = f"PostgreSQL at {PG_BASE} does not answer: {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return PG_BASE


def _admin(base: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def psql(dsn: str, *args: str) -> None:
    """Run psql against ``dsn``, stopping at the first error."""
    exe = shutil.which("psql")
    if exe is None:
        pytest.fail("psql is not installed")
    subprocess.run(
        [exe, "-X", "-q", "-v", "ON_ERROR_STOP=1", *args, dsn],
        check=True,
        stdout=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def pg_database(pg_server: str) -> Iterator[Callable[[Path | None], str]]:
    """A factory: ``pg_database(dump)`` makes a uniquely named database, restores ``dump``
    (a plain SQL file) into it if given, and returns its URI. Every database it made is
    dropped at the end of the test session."""
    made: list[str] = []

    def make(dump: Path | None = None) -> str:
        name = f"exportkit_test_{uuid.uuid4().hex[:12]}"
        _admin(pg_server, f'CREATE DATABASE "{name}"')
        made.append(name)
        dsn = f"{pg_server}/{name}"
        if dump is not None:
            psql(dsn, "-f", str(dump))
        return dsn

    yield make
    for name in made:
        _admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def muscle_head_db(pg_database: Callable[[Path | None], str]) -> str:
    """MUSCLE HEAD's reference database, restored once per test session."""
    return pg_database(REFERENCE / "head" / "muscle_head.sql")


@pytest.fixture(scope="session")
def muscle_2024_db(pg_database: Callable[[Path | None], str]) -> str:
    """MUSCLE's January 2025 reference database, restored once per test session."""
    return pg_database(REFERENCE / "v2024" / "muscle_2024.sql")


# -- generated data (tests/generate.py) ---------------------------------------------------------


@pytest.fixture(scope="session")
def generated_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MUSCLE export zip of 60 generated sessions (~4.5k trial results, ragged json_data,
    unfinished sessions)."""
    path = tmp_path_factory.mktemp("generated") / "muscle_60.zip"
    generate.write_zip(path, generate.Size(60))
    return path


@pytest.fixture(scope="session")
def small_generated_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MUSCLE export zip of 40 generated sessions (~3k trial results)."""
    path = tmp_path_factory.mktemp("generated_small") / "muscle_40.zip"
    generate.write_zip(path, generate.Size(40))
    return path


@pytest.fixture(scope="session")
def generated_db(pg_database: Callable[[Path | None], str]) -> tuple[str, dict[str, int]]:
    """MUSCLE HEAD's reference database plus the block ``generate.BLOCK_SLUG`` of 60
    generated sessions: its URI, and the objects in each member of the block's export."""
    dsn = pg_database(REFERENCE / "head" / "muscle_head.sql")
    return dsn, generate.fill_database(dsn, generate.Size(60))

"""``python manage.py exportkit`` in a minimal Django project against the 2024 reference
database: the same files as ``exportkit run``, our errors as one-line CommandErrors with the
same exit codes, and the database password never shown.

Django runs in a subprocess: its settings are process-global and other tests configure it
differently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.pg

TESTS = Path(__file__).resolve().parents[1]
PASSWORD = "pw-Never.Shown/42"
BLOCK = "bat-ref"
TEMPLATE = """
name = "command test"
[source]
uri = "ignored.zip"   # the command always reads the project's database
[[sinks]]
type = "fixture-json"
path = "{block}.zip"
[[sinks]]
type = "csv-long"
path = "{block}-long.csv"
profile = "columns"
[[sinks]]
type = "csv-wide"
path = "{block}-wide.csv"
"""


def _env(dsn: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="contrib_django.project.settings",
        PYTHONPATH=os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p),
        EXPORTKIT_DJANGO_TEST_DSN=dsn,
        EXPORTKIT_DJANGO_TEST_PASSWORD=PASSWORD,
        **extra,
    )
    return env


def manage(dsn: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """``python -m django exportkit ARGS`` in the test project."""
    done = subprocess.run(
        [sys.executable, "-m", "django", "exportkit", *args],
        env=_env(dsn, **extra),
        capture_output=True,
        text=True,
        check=False,
    )
    assert PASSWORD not in done.stdout + done.stderr
    return done


def exportkit(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``exportkit`` command, for comparison."""
    return subprocess.run(
        [sys.executable, "-m", "aml_exportkit", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "export.toml"
    path.write_text(TEMPLATE, encoding="utf-8")
    return path


def test_run_writes_what_exportkit_run_writes(
    muscle_2024_db: str, template: Path, tmp_path: Path
) -> None:
    ours = manage(
        muscle_2024_db, "run", str(template), "--block", BLOCK, "--out", str(tmp_path / "a")
    )
    assert ours.returncode == 0, ours.stderr
    assert f"wrote {tmp_path / 'a' / (BLOCK + '.zip')}" in ours.stdout
    theirs = exportkit(
        "run", str(template), "--source", muscle_2024_db, "--block", BLOCK,
        "--out", str(tmp_path / "b"), "--quiet",
    )  # fmt: skip
    assert theirs.returncode == 0, theirs.stderr
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names == sorted(
        [f"{BLOCK}.zip", f"{BLOCK}-long.csv", f"{BLOCK}-wide.csv", "manifest.json"]
    )
    for name in names:
        if name != "manifest.json":
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    a, b = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in "ab")
    assert a["outputs"] == b["outputs"]
    assert PASSWORD not in (tmp_path / "a" / "manifest.json").read_text()


def test_run_since_an_earlier_run(muscle_2024_db: str, template: Path, tmp_path: Path) -> None:
    first = manage(muscle_2024_db, "run", str(template), "--block", BLOCK, "--out", str(tmp_path))
    assert first.returncode == 0, first.stderr
    since = str(tmp_path / "manifest.json")
    again = manage(
        muscle_2024_db, "run", str(template), "--block", BLOCK, "--out", str(tmp_path / "b"),
        "--since", since, "--quiet",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    with zipfile.ZipFile(tmp_path / "b" / f"{BLOCK}.zip") as archive:
        assert json.loads(archive.read("sessions.json")) == []  # nothing changed since
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["since"]["sessions"] == 0
    bad = manage(muscle_2024_db, "run", str(template), "--since", str(tmp_path / "nope.json"))
    assert bad.returncode == 4
    assert "nope.json: no such file" in bad.stderr


def test_inspect_and_validate(muscle_2024_db: str, template: Path) -> None:
    shown = manage(muscle_2024_db, "inspect", "--json")
    assert shown.returncode == 0, shown.stderr
    inventory = json.loads(shown.stdout)
    assert BLOCK in [b["slug"] for b in inventory["blocks"]]
    text = manage(muscle_2024_db, "inspect")
    assert "blocks:" in text.stdout
    checked = manage(muscle_2024_db, "validate", str(template))
    assert checked.returncode == 0
    assert "ok (3 sink(s): fixture-json, csv-long, csv-wide)" in checked.stdout


def _message(stderr: str, prefix: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr  # one line, no traceback
    assert lines[0].startswith(prefix), stderr
    return lines[0][len(prefix) :]


def test_errors_are_command_errors_with_exportkits_line_and_exit_code(
    muscle_2024_db: str, template: Path, tmp_path: Path
) -> None:
    ours = manage(muscle_2024_db, "run", str(template), "--block", "no-such-block")
    theirs = exportkit(
        "run", str(template), "--source", muscle_2024_db, "--block", "no-such-block",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert ours.returncode == theirs.returncode != 0
    assert _message(ours.stderr, "CommandError: ") == _message(theirs.stderr, "exportkit: error: ")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[sinks]]\ntype = "nope"\npath = "x"\n', encoding="utf-8")
    ours = manage(muscle_2024_db, "validate", str(bad))
    theirs = exportkit("validate", str(bad))
    assert ours.returncode == theirs.returncode == 3
    assert _message(ours.stderr, "CommandError: ") == _message(theirs.stderr, "exportkit: error: ")


def test_database_problems_never_show_the_password(muscle_2024_db: str, template: Path) -> None:
    missing = manage(muscle_2024_db, "inspect", "--database", "empty")
    assert missing.returncode == 8  # a DatabaseError, as exportkit exits
    assert "exportkit_no_such_database" in _message(missing.stderr, "CommandError: ")
    unknown = manage(muscle_2024_db, "run", str(template), "--database", "replica")
    assert unknown.returncode == 2
    assert _message(unknown.stderr, "CommandError: ") == (
        "no database 'replica' in settings.DATABASES (known: default, empty)"
    )
    sqlite = manage(
        muscle_2024_db, "inspect", EXPORTKIT_DJANGO_TEST_ENGINE="django.db.backends.sqlite3"
    )
    assert sqlite.returncode == 2
    assert "needs a PostgreSQL database" in _message(sqlite.stderr, "CommandError: ")


def test_the_password_is_scrubbed_from_any_message(muscle_2024_db: str) -> None:
    # a database name that holds the password: the server's refusal repeats it
    from urllib.parse import quote

    dsn = muscle_2024_db.rsplit("/", 1)[0] + "/" + quote("x" + PASSWORD, safe="")
    shown = manage(dsn, "inspect")
    assert shown.returncode == 8
    assert "***" in _message(shown.stderr, "CommandError: ")

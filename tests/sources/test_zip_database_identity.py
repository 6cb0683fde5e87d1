"""With ``timestamps = "ms"``, a template gives the same bytes from MUSCLE's zip of a block
and from the database the zip came from: every builtin template, every block of both
reference data sets (HEAD and January 2025). The one thing a zip cannot hold is a block's
name (MUSCLE_EXPORT.md: the zip's ``sessions.json`` names the block by pk, and no member
holds the block itself): the classic templates that write ``block_name`` differ in that
column alone, empty from the zip. The database does not blank it to agree: that would
drop what the database holds."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from aml_exportkit.pipeline import load_template, registry_for, run_export
from conftest import REFERENCE

pytestmark = pytest.mark.pg

BLOCKS = (
    ("head", "tafc-dvorak"),
    ("head", "hooked-eurovision"),
    ("head", "msi-questionnaire"),
    ("v2024", "tafc-dvorak"),
    ("v2024", "rhythm-final"),
    ("v2024", "bat-ref"),
)
DATABASES = {"head": "muscle_head_db", "v2024": "muscle_2024_db"}
TEMPLATES = sorted(registry_for().template_specs)
#: Our own style, long and wide, besides the builtin (MUSCLE) templates.
OWN = {
    "exportkit-long": '[[sinks]]\ntype = "csv-long"\npath = "{block}.csv"\nrows = "both"\n'
    'session_json = "columns"\nprofile = "columns"\ntimestamps = "ms"\n',
    "exportkit-wide": '[[sinks]]\ntype = "csv-wide"\npath = "{block}.csv"\n'
    'profile = "columns"\ntimestamps = "ms"\n[sinks.wide]\nkey_by = "question_key"\n',
}


def _export(template: Path, source: str, slug: str, out: Path) -> bytes:
    report = run_export(load_template(str(template)), source=source, blocks=[slug], out_dir=out)
    (output,) = [o for o in report.outputs if o.path.suffix == ".csv"]
    return output.path.read_bytes()


def _both(
    template: Path, slug: str, db: str, tmp_path: Path, version: str = "head"
) -> tuple[bytes, bytes]:
    zipped = REFERENCE / version / f"block_{slug}.zip"
    return (
        _export(template, str(zipped), slug, tmp_path / "zip"),
        _export(template, db, slug, tmp_path / "db"),
    )


@pytest.mark.parametrize(("version", "slug"), BLOCKS)
@pytest.mark.parametrize("name", TEMPLATES + sorted(OWN))
def test_zip_and_database_give_the_same_bytes(
    name: str, version: str, slug: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    template = tmp_path / "t.toml"
    if name in OWN:
        template.write_text(OWN[name], encoding="utf-8")
    else:
        template.write_text(f'extends = "{name}"\n[[sinks]]\ntimestamps = "ms"\n')
    database = request.getfixturevalue(DATABASES[version])
    from_zip, from_db = _both(template, slug, database, tmp_path, version)
    if from_zip == from_db:
        return
    # only the block's name, which no zip holds, may differ
    zip_rows = list(csv.reader(io.StringIO(from_zip.decode("utf-8"), newline="")))
    db_rows = list(csv.reader(io.StringIO(from_db.decode("utf-8"), newline="")))
    assert zip_rows[0] == db_rows[0]
    assert "block_name" in zip_rows[0], name
    column = zip_rows[0].index("block_name")
    assert len(zip_rows) == len(db_rows)
    for ours, theirs in zip(zip_rows[1:], db_rows[1:], strict=True):
        assert ours[column] == ""
        assert theirs[column]
        assert ours[:column] + ours[column + 1 :] == theirs[:column] + theirs[column + 1 :]


def test_without_ms_the_database_keeps_its_microseconds(
    muscle_head_db: str, tmp_path: Path
) -> None:
    template = tmp_path / "t.toml"
    template.write_text('extends = "muscle-dashboard:long"\n', encoding="utf-8")
    from_zip, from_db = _both(template, "tafc-dvorak", muscle_head_db, tmp_path)
    assert from_zip != from_db
    assert b"16.814000+00:00" in from_zip
    assert b"16.814980+00:00" in from_db

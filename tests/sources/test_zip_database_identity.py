"""With ``timestamps = "ms"``, a template gives the same bytes from MUSCLE's zip of a block
and from the database the zip came from: every builtin template, every block of the HEAD
reference data. The one thing a zip cannot hold is a block's name (MUSCLE_EXPORT.md): the
classic templates that write ``block_name`` differ in that column alone."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from aml_exportkit.pipeline import load_template, registry_for, run_export
from conftest import REFERENCE

pytestmark = pytest.mark.pg

BLOCKS = ("tafc-dvorak", "hooked-eurovision", "msi-questionnaire")
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


def _both(template: Path, slug: str, db: str, tmp_path: Path) -> tuple[bytes, bytes]:
    zipped = REFERENCE / "head" / f"block_{slug}.zip"
    return (
        _export(template, str(zipped), slug, tmp_path / "zip"),
        _export(template, db, slug, tmp_path / "db"),
    )


@pytest.mark.parametrize("slug", BLOCKS)
@pytest.mark.parametrize("name", TEMPLATES + sorted(OWN))
def test_zip_and_database_give_the_same_bytes(
    name: str, slug: str, muscle_head_db: str, tmp_path: Path
) -> None:
    template = tmp_path / "t.toml"
    if name in OWN:
        template.write_text(OWN[name], encoding="utf-8")
    else:
        template.write_text(f'extends = "{name}"\n[[sinks]]\ntimestamps = "ms"\n')
    from_zip, from_db = _both(template, slug, muscle_head_db, tmp_path)
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

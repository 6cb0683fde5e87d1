"""The template as outputs record it: no password from any string or comment, and under
``[privacy]`` no raw participant identifier; ``[privacy]`` cannot be switched off.

Every byte each sink writes (zip members, CSV, Parquet with its key-value metadata, the
manifest, the codebook) is searched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.errors import EXIT_PLUGIN, PluginError
from aml_exportkit.redact import scrub

ZIP = "head/block_tafc-dvorak.zip"
SINKS = (
    '[[sinks]]\ntype = "fixture-json"\npath = "r.zip"\n'
    '[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n'
    '[[sinks]]\ntype = "csv-wide"\npath = "w.csv"\n'
    '[[sinks]]\ntype = "parquet"\npath = "r.parquet"\n'
)
KEY = "0123456789abcdef-a-test-key"


def everything_written(folder: Path) -> str:
    texts = []
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                texts += [archive.read(n).decode("utf-8", "replace") for n in archive.namelist()]
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            metadata = pq.read_schema(path).metadata or {}
            texts += [v.decode("utf-8", "replace") for v in metadata.values()]
            texts.append(pq.read_table(path).to_pandas().to_csv())
        elif path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def run(tmp_path: Path, text: str, reference_dir: Path, **env: str) -> tuple[Any, Path]:
    template = tmp_path / "t.toml"
    template.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner(env=env).invoke(
        cli,
        ["run", str(template), "--source", str(reference_dir / ZIP), "--out", str(out)],
    )
    return result, out


PASSWORDS = {
    "source uri": ('[source]\nuri = "postgresql://me:{pw}@127.0.0.1:1/db"\n', "{pw}"),
    "a password with @ and /": (
        '[source]\nuri = "postgresql://me:{pw}@/x@127.0.0.1:1/db"\n',
        "{pw}",
    ),
    "query parameter": ('name = "postgresql://127.0.0.1/db?user=me&password={pw}"\n', "{pw}"),
    "libpq key=value": ("description = \"host=h password='{pw} x' dbname=d\"\n", "{pw}"),
    "a list of URIs": ('description = "see"\n', "{pw}"),
    "a comment": ("# was: postgresql://me:{pw}@old-host/db\n", "{pw}"),
    # libpq decodes a query parameter's name: %70assword is password
    "a percent-encoded parameter name": (
        'name = "postgresql://127.0.0.1/db?user=me&%70ass%77ord={pw}"\n',
        "{pw}",
    ),
    # libpq reads a URI's password up to the first '@' or '/', line breaks and all
    "a line break in a URI's password": (
        'description = "postgresql://me:{pw}\\nmore@127.0.0.1:1/db"\n',
        "{pw}",
    ),
}


@pytest.mark.parametrize("case", list(PASSWORDS))
def test_no_password_in_any_output(case: str, reference_dir: Path, tmp_path: Path) -> None:
    secret = "S3cret-" + case.replace(" ", "-").replace("@", "").replace("/", "")
    head, _ = PASSWORDS[case]
    head = head.replace("{pw}", secret)
    if case == "a list of URIs":
        head = f'description = "mirrors: postgresql://a:{secret}@h1/db postgresql://b:{secret}@h2/db"\n'
    result, out = run(tmp_path, head + SINKS, reference_dir)
    assert result.exit_code == 0, result.output
    written = everything_written(out)
    assert "r.csv" in written  # the manifest is among what was searched
    assert secret not in written
    assert secret not in result.output
    # what is recorded is still a valid template, with the password replaced
    manifest = json.loads((out / "manifest.json").read_text())
    recorded = tomllib.loads(manifest["template"]["text"])
    assert recorded["sinks"][0]["path"] == "r.zip"


def test_a_template_without_secrets_is_recorded_as_written(
    reference_dir: Path, tmp_path: Path
) -> None:
    text = "# a comment\nname = 'plain'\n" + SINKS
    result, out = run(tmp_path, text, reference_dir)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["template"]["text"] == text


def test_scrub() -> None:
    assert scrub("postgresql://u:p@h/db") == "postgresql://u:***@h/db"
    assert scrub("postgresql://u@h/db") == "postgresql://u@h/db"
    assert scrub("x?sslpassword=a&password=b&c=d") == "x?sslpassword=***&password=***&c=d"
    assert scrub("host=h PASSWORD = 'a b' x=1") == "host=h PASSWORD = *** x=1"
    assert scrub("x?%70assword=b&%75ser=u") == "x?%70assword=***&%75ser=u"
    assert scrub("postgresql://u:a b\nc@h/db") == "postgresql://u:***@h/db"
    assert scrub("postgresql://h:5432/db") == "postgresql://h:5432/db"


PRIVACY = (
    '[filter]\nparticipants = ["RAW-ID-4711", 1]\n'
    '[privacy]\npseudonymise = ["unique_hash", "participant_id_url"]\nkey_env = "EK_KEY"\n'
)
DROP_ONLY = '[filter]\nparticipants = ["RAW-ID-4711"]\n[privacy]\ndrop = ["access_info"]\n'


@pytest.mark.parametrize("text", [PRIVACY, DROP_ONLY], ids=["pseudonymised", "dropped"])
def test_no_raw_identifier_from_the_template(
    text: str, reference_dir: Path, tmp_path: Path
) -> None:
    result, out = run(tmp_path, "codebook = true\n" + text + SINKS, reference_dir, EK_KEY=KEY)
    assert result.exit_code == 0, result.output
    written = everything_written(out)
    assert "manifest_version" in written
    assert "RAW-ID-4711" not in written


def test_privacy_cannot_be_switched_off_by_blocking_its_plugin(
    reference_dir: Path, tmp_path: Path
) -> None:
    template = tmp_path / "t.toml"
    template.write_text(PRIVACY.replace('["RAW-ID-4711", 1]', "[]") + SINKS, encoding="utf-8")
    env = {
        **os.environ,
        "EK_KEY": KEY,
        "EXPORTKIT_BLOCK_PLUGINS": "aml_exportkit.privacy",
        "EXPORTKIT_DEBUG": "",
    }
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aml_exportkit",
            "run",
            str(template),
            "--source",
            str(reference_dir / ZIP),
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == EXIT_PLUGIN, done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert "[privacy]" in done.stderr
    assert not out.exists()


def test_privacy_must_be_applied_not_only_registered(reference_dir: Path, tmp_path: Path) -> None:
    """A plugin under the privacy module's name that does not apply it is caught too."""
    from aml_exportkit import to_dataframe
    from aml_exportkit.pipeline import load_template, run_export
    from aml_exportkit.plugins import get_plugin_manager, load_registry

    manager = get_plugin_manager(load_entrypoints=False, blocked=["aml_exportkit.privacy"])
    manager.register(object(), name="aml_exportkit.privacy")
    path = tmp_path / "t.toml"
    path.write_text('[privacy]\ndrop = ["access_info"]\n' + SINKS, encoding="utf-8")
    template = load_template(str(path), registry=load_registry(manager))
    with pytest.raises(PluginError, match=r"\[privacy\]"):
        run_export(
            template,
            source=str(reference_dir / ZIP),
            out_dir=tmp_path / "out",
            plugin_manager=manager,
        )
    assert not (tmp_path / "out").exists()
    with pytest.raises(PluginError, match=r"\[privacy\]"):
        to_dataframe(str(path), source=str(reference_dir / ZIP), plugin_manager=manager)


def test_the_engines_parquet_records_no_password(reference_dir: Path, tmp_path: Path) -> None:
    text = (
        '[source]\nuri = "postgresql://me:Lane-S3cret@127.0.0.1:1/db"\n'
        '[[sinks]]\ntype = "parquet"\npath = "r.parquet"\n'
    )
    result, out = run(tmp_path, text, reference_dir)
    assert result.exit_code == 0, result.output
    written = everything_written(out)
    assert "postgresql://me:***@127.0.0.1:1/db" in written
    assert "Lane-S3cret" not in written


@pytest.mark.parametrize(
    "head",
    [
        '[filter]\n"exclude_participants" = ["RAW-EXCLUDED-17"]\n',
        'filter.exclude_participants = ["RAW-EXCLUDED-17"]\n',
        'filter = { exclude_participant_id_url = ["RAW-EXCLUDED-17*"] }\n',
        "[filter]\n'exclude_sessions' = [987654321]\n",
        '[filter]\nexclude_participants = [ # inline\n  "RAW-EXCLUDED-17",\n]\n',
    ],
    ids=["quoted key", "dotted key", "inline table", "single-quoted key", "multi-line"],
)
def test_no_excluded_identifier_whatever_the_toml_spelling(
    head: str, reference_dir: Path, tmp_path: Path
) -> None:
    # the exclusion lists are withheld in the recorded template however TOML spells the key
    result, out = run(tmp_path, head + SINKS, reference_dir)
    assert result.exit_code == 0, result.output
    written = everything_written(out)
    assert "manifest_version" in written
    assert "RAW-EXCLUDED-17" not in written
    assert "987654321" not in written
    recorded = json.loads((out / "manifest.json").read_text())["template"]["text"]
    assert tomllib.loads(recorded)["filter"]  # still a template, with the lists empty


def test_no_password_from_the_name_in_titles_and_labels(
    reference_dir: Path, tmp_path: Path
) -> None:
    # the name becomes the codebook's and datapackage.json's title and an SPSS or Stata
    # file label: the same rule as for the recorded text
    secret = "S3cret-in-the-name"
    head = f'name = "postgresql://me:{secret}@h/db"\ncodebook = true\n'
    extra = (
        '[[sinks]]\ntype = "spss"\npath = "r.sav"\n'
        '[[sinks]]\ntype = "stata"\npath = "r.dta"\n'
        '[[sinks]]\ntype = "duckdb"\npath = "r.duckdb"\n'
    )
    result, out = run(tmp_path, head + SINKS + extra, reference_dir)
    assert result.exit_code == 0, result.output
    assert (out / "codebook.md").is_file()
    written = everything_written(out)
    assert "postgresql://me:***@h/db" in written
    assert secret not in written

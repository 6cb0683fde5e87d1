"""[privacy]: keyed pseudonyms, dropped and coarsened fields, no raw identifier anywhere."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.errors import EXIT_TEMPLATE
from aml_exportkit.privacy import coarsen_country, coarsen_user_agent, key_fingerprint
from zipcases import read_members

ZIP = "head/block_hooked-eurovision.zip"
KEY = "correct horse battery staple"
SINKS = (
    '[[sinks]]\ntype = "fixture-json"\npath = "share.zip"\n'
    '[[sinks]]\ntype = "csv-long"\npath = "long.csv"\n'
    '[sinks.columns]\nparticipant = ["unique_hash", "participant_id_url", "country_code",'
    ' "access_info"]\n'
    '[[sinks]]\ntype = "parquet"\npath = "long.parquet"\n'
    '[sinks.columns]\nparticipant = ["unique_hash", "participant_id_url", "country_code",'
    ' "access_info"]\n'
)
PRIVACY = (
    '[privacy]\npseudonymise = ["unique_hash", "participant_id_url"]\n'
    'drop = ["access_info"]\nkey_env = "EXPORTKIT_TEST_KEY"\n'
)


def export(
    tmp_path: Path,
    reference_dir: Path,
    name: str,
    text: str,
    key: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, str, Path]:
    if key is None:
        monkeypatch.delenv("EXPORTKIT_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("EXPORTKIT_TEST_KEY", key)
    template = tmp_path / f"{name}.toml"
    template.write_text(text, encoding="utf-8")
    out = tmp_path / name
    result = CliRunner().invoke(
        cli, ["run", str(template), "--source", str(reference_dir / ZIP), "--out", str(out)]
    )
    return result.exit_code, result.output, out


def every_text(folder: Path) -> str:
    """All text in every output file, zip members and Parquet values included."""
    chunks: list[str] = []
    for path in folder.rglob("*"):
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                chunks += [archive.read(n).decode() for n in archive.namelist()]
        elif path.suffix == ".parquet":
            table = pq.read_table(path)
            chunks.append(json.dumps(table.to_pylist(), default=str, ensure_ascii=False))
            chunks.append(
                json.dumps(
                    {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
                )
            )
        elif path.is_file():
            chunks.append(path.read_bytes().decode("utf-8"))
    return "\n".join(chunks)


def identifiers(reference_dir: Path) -> set[str]:
    found: set[str] = set()
    for p in read_members(reference_dir / ZIP)["participants.json"]:
        for field in ("unique_hash", "participant_id_url", "access_info"):
            if p["fields"][field]:
                found.add(p["fields"][field])
    return found


def test_no_raw_identifier_in_any_output(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output, out = export(tmp_path, reference_dir, "p", PRIVACY + SINKS, KEY, monkeypatch)
    assert code == 0, output
    text = every_text(out)
    raw = identifiers(reference_dir)
    assert len(raw) > 10
    assert [value for value in raw if value in text] == []
    assert KEY not in text
    manifest = json.loads((out / "manifest.json").read_text())
    privacy = manifest["transforms"][0]["privacy"]
    assert privacy["key_fingerprint"] == key_fingerprint(KEY.encode())
    assert privacy["pseudonymised"] == ["unique_hash", "participant_id_url"]
    # The control: without [privacy] the identifiers are there, so the scan can fail.
    code, output, plain = export(tmp_path, reference_dir, "plain", SINKS, None, monkeypatch)
    assert code == 0, output
    assert all(value in every_text(plain) for value in raw)


def participants(out: Path) -> dict[int, dict[str, object]]:
    with zipfile.ZipFile(out / "share.zip") as archive:
        objects = json.load(io.BytesIO(archive.read("participants.json")))
    return {o["pk"]: o["fields"] for o in objects}


def test_same_key_same_pseudonyms_other_key_others(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = export(tmp_path, reference_dir, "a", PRIVACY + SINKS, KEY, monkeypatch)[2]
    second = export(tmp_path, reference_dir, "b", PRIVACY + SINKS, KEY, monkeypatch)[2]
    other = export(tmp_path, reference_dir, "c", PRIVACY + SINKS, KEY + "!", monkeypatch)[2]
    assert participants(first) == participants(second)
    assert (first / "share.zip").read_bytes() == (second / "share.zip").read_bytes()
    a, c = participants(first), participants(other)
    assert all(a[pk]["unique_hash"] != c[pk]["unique_hash"] for pk in a)
    assert all(len(str(p["unique_hash"])) == 64 for p in a.values())
    assert all(p["access_info"] is None for p in a.values())
    # null stays null: participants without a URL id keep none
    assert any(p["participant_id_url"] is None for p in a.values())


@pytest.mark.parametrize(
    ("privacy", "key", "words"),
    [
        ('[privacy]\npseudonymise = ["unique_hash"]\n', KEY, ["privacy.key_env"]),
        (
            '[privacy]\npseudonymise = ["unique_hash"]\nkey_env = "EXPORTKIT_TEST_KEY"\n',
            None,
            ["privacy.key_env", "EXPORTKIT_TEST_KEY", "not set"],
        ),
        (
            '[privacy]\npseudonymise = ["unique_hash"]\nkey_env = "EXPORTKIT_TEST_KEY"\n',
            "short",
            ["at least 16"],
        ),
        (
            '[privacy]\npseudonymise = ["participant_id_url"]\ndrop = ["participant_id_url"]\n'
            'key_env = "EXPORTKIT_TEST_KEY"\n',
            KEY,
            ["privacy.drop", "both"],
        ),
        ('[privacy]\npseudonymise = ["email"]\n', KEY, ["privacy.pseudonymise[0]"]),
    ],
)
def test_bad_privacy_settings(
    privacy: str,
    key: str | None,
    words: list[str],
    reference_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, output, out = export(tmp_path, reference_dir, "x", privacy + SINKS, key, monkeypatch)
    assert code == EXIT_TEMPLATE, output
    for word in words:
        assert word in output
    assert not out.exists()
    assert key is None or key == "short" or key not in output


def test_coarsening(reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = '[privacy]\ncoarsen_country = "continent"\ncoarsen_user_agent = true\n' + SINKS
    code, output, out = export(tmp_path, reference_dir, "c", text, None, monkeypatch)
    assert code == 0, output
    found = participants(out)
    assert {p["country_code"] for p in found.values()} <= {"EU", "AS", "SA", "NA", ""}
    assert {p["access_info"] for p in found.values()} <= {
        "Chrome / Android",
        "Chrome / Linux",
        "Safari / iOS",
        "Firefox / Windows",
        "Chrome / Windows",
        "Safari / macOS",
        "Edge / Windows",
    }


def test_coarsen_helpers() -> None:
    assert coarsen_country("NL") == "EU"
    assert coarsen_country("br") == "SA"
    assert coarsen_country("") == ""
    assert coarsen_country("zz") == "??"
    assert coarsen_user_agent(None) is None
    assert (
        coarsen_user_agent(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) "
            "AppleWebKit/605.1.15 Version/17.4 Mobile/15E148 Safari/604.1"
        )
        == "Safari / iOS"
    )
    assert coarsen_user_agent("curl/8.0") == "other / other"


def test_profile_answers_are_not_coarsened(
    reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What docs/privacy.md says: [privacy] changes the participant record, never an answer
    (a country question's answer stays as given under coarsen_country)."""
    source = reference_dir / "head" / "block_msi-questionnaire.zip"
    template = tmp_path / "t.toml"
    template.write_text(
        '[privacy]\ncoarsen_country = "continent"\n'
        '[[sinks]]\ntype = "fixture-json"\npath = "share.zip"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["run", str(template), "--source", str(source), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output

    def answers(path: Path) -> list[tuple[int, str | None]]:
        return sorted(
            (p["pk"], p["fields"]["given_response"])
            for p in read_members(path)["profiles.json"]
            if p["fields"]["question_key"] == "dgf_country_of_origin"
        )

    given = answers(source)
    assert given  # the block asks it
    assert answers(out / "share.zip") == given
    codes = {
        p["fields"]["country_code"] for p in read_members(out / "share.zip")["participants.json"]
    }
    assert codes <= {"AF", "AN", "AS", "EU", "NA", "OC", "SA", "??", ""}  # coarsened
    text = (Path(__file__).resolve().parents[2] / "docs" / "privacy.md").read_text("utf-8")
    assert "Profile answers are not coarsened" in text

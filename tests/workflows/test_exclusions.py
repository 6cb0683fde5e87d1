"""``[filter]`` exclusions: listed participants, an exclude file, sessions, id patterns.

An excluded participant's sessions, results and profile answers are absent from every
output (tables, fixture zip, codebook, wide columns); the manifest says how many entries
were listed and gives a sha256 of the lists, never the identifiers.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from aml_exportkit.cli import cli
from aml_exportkit.errors import TemplateError
from aml_exportkit.exclusions import digest, parse_exclude_file, withhold_in_text
from aml_exportkit.pipeline import load_template, open_source, run_export
from aml_exportkit.records import Participant, Session
from aml_exportkit.selection import Filter, Selection, glob_regex, session_matches

ZIP = "v2024/block_tafc-dvorak.zip"
DOCS = Path(__file__).resolve().parents[2] / "docs"

SINKS = """
[[sinks]]
type = "fixture-json"
path = "block.zip"

[[sinks]]
type = "csv-long"
path = "long.csv"

[[sinks]]
type = "csv-wide"
path = "wide.csv"

[[sinks]]
type = "parquet"
path = "long.parquet"
"""


def _graph_of(zip_path: Path) -> tuple[dict[int, Session], dict[int, Participant]]:
    with open_source(str(zip_path)) as source, source.read(Selection()) as graph:
        return dict(graph.sessions), dict(graph.participants)


def _run(tmp_path: Path, reference_dir: Path, text: str, *extra: str) -> tuple[Any, Path]:
    template = tmp_path / "t.toml"
    template.write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["run", str(template), "--source", str(reference_dir / ZIP), "--out", str(out), *extra],
    )
    return result, out


def _all_bytes(folder: Path) -> bytes:
    data = b""
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                data += b"".join(archive.read(n) for n in archive.namelist())
        elif path.is_file():
            data += path.read_bytes()
    return data


def test_excluded_participants_are_absent_from_every_output(
    reference_dir: Path, tmp_path: Path
) -> None:
    sessions, participants = _graph_of(reference_dir / ZIP)
    with_url = [p for p in participants.values() if p.participant_id_url]
    by_pk, by_hash = with_url[0], next(p for p in participants.values() if p not in with_url)
    by_pattern = [p for p in with_url if p.participant_id_url.startswith("PROLIFIC-100")]
    assert by_pattern
    session_gone = next(s for s in sessions.values() if s.participant not in (by_pk.pk,))
    (tmp_path / "withdrawn.txt").write_text(
        f"# withdrawn in May\n\n{by_hash.unique_hash}\n", encoding="utf-8"
    )
    text = (
        "codebook = true\n[filter]\n"
        f"exclude_participants = [{by_pk.pk}]\n"
        'exclude_file = "withdrawn.txt"\n'
        f"exclude_sessions = [{session_gone.pk}]\n"
        'exclude_participant_id_url = ["PROLIFIC-100?"]\n' + SINKS
    )
    gone = {by_pk.pk, by_hash.pk} | {p.pk for p in by_pattern}
    flt = Filter(
        exclude_participants=(by_pk.pk, by_hash.unique_hash),
        exclude_sessions=(session_gone.pk,),
        exclude_participant_id_url=("PROLIFIC-100?",),
    )
    kept = [s for s in sessions.values() if session_matches(flt, s, participants[s.participant])]
    assert kept
    assert len(kept) < len(sessions)
    assert not {s.participant for s in kept} & gone
    result, out = _run(tmp_path, reference_dir, text)
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out / "block.zip") as archive:
        fixture = {n: json.loads(archive.read(n)) for n in archive.namelist()}
    assert sorted(o["pk"] for o in fixture["sessions.json"]) == sorted(s.pk for s in kept)
    listed = {o["pk"] for o in fixture["participants.json"]}
    assert listed == {s.participant for s in kept}
    for name in ("profiles.json", "results.json"):
        owners = {o["fields"]["participant"] for o in fixture[name]} - {None}
        owners |= {
            sessions[o["fields"]["session"]].participant
            for o in fixture[name]
            if o["fields"]["session"] is not None
        }
        assert not owners & gone, name
        assert session_gone.pk not in {o["fields"]["session"] for o in fixture[name]}
    everything = _all_bytes(out)
    for participant in participants.values():
        if participant.pk in gone:
            assert participant.unique_hash.encode() not in everything
            if participant.participant_id_url:
                assert participant.participant_id_url.encode() not in everything
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    part = manifest["source"]["parts"][0]["details"]
    assert part["excluded_sessions"] == len(sessions) - len(kept)
    assert part["excluded_participants"] == len(gone)
    exclusions = manifest["selection"]["exclusions"]
    assert exclusions["participants_listed"] == 2
    assert exclusions["sessions_listed"] == 1
    assert exclusions["patterns"] == 1
    lines = sorted([f"pk:{by_pk.pk}", f"text:{by_hash.unique_hash}"])
    lines += [f"session:{session_gone.pk}", "pattern:PROLIFIC-100?"]
    expected = hashlib.sha256("".join(x + "\n" for x in sorted(lines)).encode()).hexdigest()
    assert exclusions["sha256"] == expected
    assert manifest["selection"]["filter"]["exclude_participants"] == 1
    assert manifest["selection"]["filter"]["exclude_file"] == "withdrawn.txt"
    shown = manifest["template"]["text"].splitlines()
    assert "exclude_participants = []  # 1 entry withheld" in shown
    assert "exclude_sessions = []  # 1 entry withheld" in shown
    # the sha256 is of the recorded text: a hash of the original would let a reader test
    # guesses of the withheld identifiers
    recorded = manifest["template"]["text"]
    assert manifest["template"]["sha256"] == hashlib.sha256(recorded.encode()).hexdigest()
    assert manifest["template"]["sha256"] != hashlib.sha256(text.encode()).hexdigest()


def test_the_engine_leaves_out_what_the_sources_reader_leaves_out(
    reference_dir: Path, tmp_path: Path
) -> None:
    """The engine exports exactly the trial results the source's own reader gives for the
    filter, in order."""
    from testdata import csv_result_ids, read_trial_pks

    text = '[filter]\nexclude_participant_id_url = ["PROLIFIC-*"]\n'
    text += '[[sinks]]\ntype = "csv-long"\npath = "long.csv"\n'
    result, out = _run(tmp_path, reference_dir, text)
    assert result.exit_code == 0, result.output
    written = (out / "long.csv").read_bytes()
    assert b"PROLIFIC-" not in written
    template = load_template(str(tmp_path / "t.toml"))
    wanted = read_trial_pks(str(reference_dir / ZIP), Selection(filter=template.filter))
    everything = read_trial_pks(str(reference_dir / ZIP), Selection())
    assert csv_result_ids(out / "long.csv") == wanted
    assert len(wanted) < len(everything)


def test_patterns_mean_the_same_in_python_and_sql() -> None:
    from aml_exportkit.selection import glob_like

    assert glob_regex("test*").fullmatch("test-7")
    assert glob_regex("test*").fullmatch("test")
    assert not glob_regex("test*").fullmatch("a-test")
    assert glob_regex("p?-1").fullmatch("pX-1")
    assert not glob_regex("p?-1").fullmatch("p-1")
    assert glob_regex("a.b[1]").fullmatch("a.b[1]")
    assert not glob_regex("a.b").fullmatch("axb")
    assert glob_like("50%_a*b?\\") == "50\\%\\_a%b_\\\\"


def test_exclude_file_entries() -> None:
    text = '# comment\n\n  42 \n"17"\nabc-def\n"with \\"quote\\""\n-3\n'
    assert parse_exclude_file(text) == (42, "17", "abc-def", 'with "quote"', -3)
    with pytest.raises(ValueError, match="line 1"):
        parse_exclude_file('"unclosed\n')


def test_an_exclude_file_saved_by_windows_tools_reads_the_same(
    reference_dir: Path, tmp_path: Path
) -> None:
    # Notepad and Excel write a byte order mark and CRLF: the first entry must still be a
    # pk, or the participant it names would silently stay in the export
    plain = "# withdrawn\n\n{pk}\n{hash}\n"
    sessions, participants = _graph_of(reference_dir / ZIP)
    first, second = list(participants)[:2]
    text = plain.format(pk=first, hash=participants[second].unique_hash)
    assert parse_exclude_file("\ufeff" + text.replace("\n", "\r\n")) == (
        first,
        participants[second].unique_hash,
    )
    (tmp_path / "withdrawn.txt").write_bytes(
        b"\xef\xbb\xbf" + f"{first}\r\n{participants[second].unique_hash}\r\n".encode()
    )
    template = load_template(
        str(_write(tmp_path, '[filter]\nexclude_file = "withdrawn.txt"\n' + SINKS))
    )
    assert template.filter.excluded_participants == (first, participants[second].unique_hash)
    report = run_export(template, source=str(reference_dir / ZIP), out_dir=tmp_path / "o")
    assert report.sources[0].details["excluded_participants"] == 2
    assert report.sources[0].details["excluded_sessions"] == sum(
        1 for s in sessions.values() if s.participant in (first, second)
    )


def test_a_missing_exclude_file_names_the_key(tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(
        '[filter]\nexclude_file = "nope.txt"\n[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n',
        encoding="utf-8",
    )
    with pytest.raises(TemplateError, match=r"filter\.exclude_file: cannot read"):
        load_template(str(template))
    result = CliRunner().invoke(cli, ["validate", str(template)])
    assert result.exit_code != 0
    assert "nope.txt" in result.output


def test_exclusion_keys_are_typed(tmp_path: Path) -> None:
    template = tmp_path / "t.toml"
    template.write_text(
        '[filter]\nexclude_sessions = ["x"]\n[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n',
        encoding="utf-8",
    )
    with pytest.raises(TemplateError, match=r"exclude_sessions\[0\]"):
        load_template(str(template))


def test_withheld_text_stays_valid_toml() -> None:
    import tomllib

    text = (
        "[filter]\n"
        'exclude_participants = [1, "a]b", # note ]\n  \'c\', """d\n]"""]\n'
        'exclude_participant_id_url = ["x*"]\nfinished_only = true\n'
    )
    shown = withhold_in_text(text)
    data = tomllib.loads(shown)
    assert data["filter"] == {
        "exclude_participants": [],
        "exclude_participant_id_url": [],
        "finished_only": True,
    }
    assert "a]b" not in shown
    assert "x*" not in shown
    assert "4 entries withheld" in shown


def test_the_documented_digest() -> None:
    """docs/manifest.md's shell line gives the sha256 the manifest records."""
    text = (DOCS / "manifest.md").read_text(encoding="utf-8")
    printed = text.split("printf '", 1)[1].split("'", 1)[0].replace("\\n", "\n")
    flt = Filter(
        exclude_participants=(57, 12),
        exclude_sessions=(3001,),
        exclude_participant_id_url=("test*", "pilot-*"),
    )
    found = digest(flt)
    assert found is not None
    assert found["sha256"] == hashlib.sha256(printed.encode()).hexdigest()


def test_digest_ignores_order_and_repeats() -> None:
    one = digest(Filter(exclude_participants=(3, "a"), exclude_sessions=(5, 5)))
    two = digest(Filter(exclude_participants=("a", 3, 3), exclude_sessions=(5,)))
    assert one == two
    assert one is not None
    assert one["participants_listed"] == 2
    assert digest(Filter()) is None
    assert digest(Filter(exclude_participants=(3,))) != digest(Filter(exclude_participants=("3",)))


def test_library_run_with_exclusions(reference_dir: Path, tmp_path: Path) -> None:
    sessions, participants = _graph_of(reference_dir / ZIP)
    first = next(iter(participants))
    template = load_template(
        str(_write(tmp_path, f"[filter]\nexclude_participants = [{first}]\n" + SINKS))
    )
    report = run_export(template, source=str(reference_dir / ZIP), out_dir=tmp_path / "o")
    info = report.sources[0].details
    assert info["excluded_participants"] == 1
    assert info["excluded_sessions"] == sum(1 for s in sessions.values() if s.participant == first)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_excluding_is_the_same_as_never_having_the_participants(
    reference_dir: Path, tmp_path: Path
) -> None:
    """Every output (tables, wide columns, fixture zip, codebook) of a run that excludes
    participants is byte for byte the output of a zip that never held them."""
    from zipcases import mutated

    sessions, participants = _graph_of(reference_dir / ZIP)
    gone = {p.pk for p in participants.values() if (p.participant_id_url or "").startswith("P")}
    gone.add(next(iter(participants)))
    assert 0 < len(gone) < len(participants)
    gone_sessions = {s.pk for s in sessions.values() if s.participant in gone}

    def drop(owner: str, keys: set[int]) -> Any:
        return lambda objects: [o for o in objects if o["fields"][owner] not in keys]

    without = mutated(
        reference_dir / ZIP,
        tmp_path / "block_tafc-dvorak.zip",
        sessions_json=lambda objects: [o for o in objects if o["pk"] not in gone_sessions],
        participants_json=lambda objects: [o for o in objects if o["pk"] not in gone],
        profiles_json=drop("participant", gone),
        results_json=drop("session", gone_sessions),
    )
    top = 'codebook = true\nname = "t"\n'
    sinks = SINKS + '[sinks.wide]\nkey_by = "question_key"\n'
    listed = ", ".join(str(pk) for pk in sorted(gone))
    (tmp_path / "a").mkdir()
    excluding, _ = _run(
        tmp_path / "a", reference_dir, f"{top}[filter]\nexclude_participants = [{listed}]\n{sinks}"
    )
    assert excluding.exit_code == 0, excluding.output
    template = tmp_path / "b.toml"
    template.write_text(top + sinks, encoding="utf-8")
    never = CliRunner().invoke(
        cli, ["run", str(template), "--source", str(without), "--out", str(tmp_path / "b")]
    )
    assert never.exit_code == 0, never.output
    a, b = tmp_path / "a" / "out", tmp_path / "b"
    names = sorted(p.name for p in b.iterdir() if p.name != "manifest.json")
    assert names == sorted(p.name for p in a.iterdir() if p.name != "manifest.json")
    assert "codebook.md" in names
    assert "wide.csv" in names
    for name in names:
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            tables = [pq.read_table(folder / name) for folder in (a, b)]
            assert tables[0].equals(tables[1])
            metadata = pq.ParquetFile(a / name).schema_arrow.metadata
            assert b"3 entries withheld" in metadata[b"exportkit.template"]
            continue
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _block(marker: str) -> str:
    """The code block of docs/recipes.md that starts with the line ``marker``."""
    text = (DOCS / "recipes.md").read_text(encoding="utf-8")
    return marker + text.split(marker, 1)[1].split("```", 1)[0]


def test_the_exclusion_recipe_runs(reference_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "study.toml").write_text(_block("# study.toml"), encoding="utf-8")
    (tmp_path / "withdrawn.txt").write_text(_block("# withdrawn.txt"), encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        [
            "run",
            str(tmp_path / "study.toml"),
            "--source",
            str(reference_dir / ZIP),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["selection"]["exclusions"]["participants_listed"] == 4
    assert manifest["selection"]["exclusions"]["patterns"] == 2


def test_to_dataframe_reads_the_exclude_file_of_a_filter_it_is_given(
    reference_dir: Path, tmp_path: Path
) -> None:
    from aml_exportkit.frames import to_dataframe

    _, participants = _graph_of(reference_dir / ZIP)
    gone = next(iter(participants.values()))
    (tmp_path / "withdrawn.txt").write_text(f"{gone.unique_hash}\n", encoding="utf-8")
    template = _write(tmp_path, '[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n')
    everyone = to_dataframe(str(template), source=str(reference_dir / ZIP))
    assert gone.pk in set(everyone["participant_id"])
    some = to_dataframe(
        str(template),
        source=str(reference_dir / ZIP),
        filter=Filter(exclude_file="withdrawn.txt"),
    )
    assert gone.pk not in set(some["participant_id"])
    assert len(some) < len(everyone)


_texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(
    participants=st.lists(st.one_of(st.integers(-(2**63), 2**63 - 1), _texts), max_size=6),
    patterns=st.lists(_texts, max_size=4),
    other=_texts,
)
@settings(max_examples=200, deadline=None)
def test_withheld_text_of_any_list_is_valid_toml_without_the_lists(
    participants: list[int | str], patterns: list[str], other: str
) -> None:
    import tomllib

    import tomli_w

    text = tomli_w.dumps(
        {
            "name": other,
            "filter": {
                "exclude_participants": participants,
                "exclude_participant_id_url": patterns,
                "finished_only": True,
            },
        },
        multiline_strings=True,
    )
    shown = tomllib.loads(withhold_in_text(text))
    assert shown["name"] == other
    assert shown["filter"] == {
        "exclude_participants": [],
        "exclude_participant_id_url": [],
        "finished_only": True,
    }

"""The PostgreSQL source against MUSCLE's reference databases (HEAD and January 2025).

Golden checks: for every block of both reference dumps, database → fixture-json holds the
same objects per file as MUSCLE's own zip, and the same bytes as zip → fixture-json. Then
filters (against ``session_matches``), block selection, the snapshot, schema detection,
connection and permission errors, ``exportkit verify``, and Django's ``loaddata`` round trip.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
import tomli_w

from aml_exportkit.contracts import SourceOptions
from aml_exportkit.errors import DatabaseError, SourceError
from aml_exportkit.pipeline import run_export
from aml_exportkit.plugins import PluginManager, load_registry
from aml_exportkit.schema import MODELS
from aml_exportkit.selection import Filter, Selection, session_matches
from aml_exportkit.sources.muscle_db_reader import (
    MuscleDatabase,
    Scrubber,
    Target,
    _connect_problem,
    _loads,
    _make_result,
    target_of,
)
from aml_exportkit.template.load import parse_template
from aml_exportkit.verify import verify_export
from conftest import REFERENCE

DJANGO_LOADDATA = Path(__file__).resolve().parent / "django_muscle" / "loaddata.py"
FIXTURE_FILES = (
    "sessions.json",
    "participants.json",
    "profiles.json",
    "results.json",
    "sections.json",
    "songs.json",
    "feedback.json",
)
HEAD_BLOCKS = ("tafc-dvorak", "msi-questionnaire", "hooked-eurovision")
V2024_BLOCKS = ("tafc-dvorak", "rhythm-final", "bat-ref")
CASES = [("head", s) for s in HEAD_BLOCKS] + [("v2024", s) for s in V2024_BLOCKS]

pytestmark = pytest.mark.pg


# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dbs(muscle_head_db: str, muscle_2024_db: str) -> dict[str, str]:
    """The two reference databases by version."""
    return {"head": muscle_head_db, "v2024": muscle_2024_db}


def export(
    pm: PluginManager,
    uri: str,
    blocks: tuple[str, ...],
    out: Path,
    flt: dict[str, Any] | None = None,
) -> Path:
    """Run a fixture-json template; return the zip written."""
    data: dict[str, Any] = {
        "source": {"uri": uri, "blocks": list(blocks)},
        "sinks": [{"type": "fixture-json", "path": str(out)}],
    }
    if flt:
        data["filter"] = flt
    template = parse_template(
        tomli_w.dumps(data),
        file="test.toml",
        folder=out.parent,
        sinks=load_registry(pm).sink_specs,
    )
    run_export(template, plugin_manager=pm)
    return out


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def canonical(objects: list[Any]) -> list[str]:
    return sorted(json.dumps(o, sort_keys=True, ensure_ascii=False) for o in objects)


def other_dsn(base: str, **parts: str) -> str:
    """The URI ``base`` with its user, password or dbname replaced."""
    params = psycopg.conninfo.conninfo_to_dict(base)
    params.update(parts)
    user = quote(str(params["user"]), safe="")
    password = f":{quote(str(params['password']), safe='')}" if params.get("password") else ""
    return (
        f"postgresql://{user}{password}@{params['host']}:{params.get('port', 5432)}"
        f"/{params['dbname']}"
    )


def admin(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def no_files(folder: Path) -> bool:
    return not any(p.is_file() for p in folder.rglob("*"))


# -- golden comparisons -----------------------------------------------------------------------


@pytest.mark.parametrize(("version", "slug"), CASES, ids=[f"{v}-{s}" for v, s in CASES])
def test_database_export_matches_muscle_zip_and_zip_source(
    dbs: dict[str, str], plugin_manager: PluginManager, tmp_path: Path, version: str, slug: str
) -> None:
    muscle_zip = REFERENCE / version / f"block_{slug}.zip"
    from_db = members(export(plugin_manager, dbs[version], (slug,), tmp_path / "db.zip"))
    from_zip = members(export(plugin_manager, str(muscle_zip), (slug,), tmp_path / "zip.zip"))
    theirs = members(muscle_zip)
    assert list(from_db) == list(FIXTURE_FILES)
    for name in FIXTURE_FILES:
        ours = json.loads(from_db[name])
        reference = json.loads(theirs[name])
        if name == "participants.json":  # MUSCLE HEAD lists a participant once per session
            reference = list({o["pk"]: o for o in reference}.values())
        assert canonical(ours) == canonical(reference), name
        assert from_db[name] == from_zip[name], f"{name} differs from the zip source's bytes"


def test_inspect_reports_versions_blocks_and_counts(
    dbs: dict[str, str], plugin_manager: PluginManager
) -> None:
    with MuscleDatabase(dbs["head"], SourceOptions()) as source:
        head = source.inspect()
    with MuscleDatabase(dbs["v2024"], SourceOptions()) as source:
        old = source.inspect()
    assert "v5.1 or later" in head.schema_version
    assert "v3" in old.schema_version
    assert [(b.slug, b.name, b.sessions) for b in head.blocks] == [
        ("tafc-dvorak", "Dvořák A/B", 9),
        ("msi-questionnaire", "Gold-MSI general", 6),
        ("hooked-eurovision", "Hooked – Eurovision edition", 10),
    ]
    # v3 names are the first translated content row, as MUSCLE's CSV block_name shows
    assert [(b.slug, b.name, b.sessions) for b in old.blocks] == [
        ("tafc-dvorak", "A or B? Dvořák ♪", 13),
        ("rhythm-final", "Musical background questionnaire", 10),
        ("bat-ref", "Beat Alignment ♩", 10),
    ]
    assert head.counts["result_result"] == 259
    assert head.counts["result_result (trial)"] == 153
    assert old.counts["session_session"] == 33
    assert head.location.startswith("postgresql://postgres@127.0.0.1:")


def test_graph_holds_blocks_phases_experiments_and_playlists(dbs: dict[str, str]) -> None:
    with (
        MuscleDatabase(dbs["head"], SourceOptions()) as source,
        source.read(Selection(blocks=("tafc-dvorak",))) as graph,
    ):
        (block,) = graph.blocks.values()
        assert (block.slug, block.name, block.rules, block.rounds) == (
            "tafc-dvorak",
            "Dvořák A/B",
            "TWO_ALTERNATIVE_FORCED",
            8,
        )
        assert block.rules_config == {}
        assert block.playlists == (1,)
        assert block.extra["name_en"] == "Dvořák A/B"
        (phase,) = graph.phases.values()
        assert block.phase == phase.pk
        assert graph.experiments[phase.experiment].slug == "dvorak-listening"
        assert graph.experiments[phase.experiment].name == "Dvořák ♪ Listening Study"
        assert graph.playlists[1].name == "Dvořák ♪ TAFC"
        assert graph.info.provided >= {"block", "playlist", "section", "session"}
    with (
        MuscleDatabase(dbs["v2024"], SourceOptions()) as source,
        source.read(Selection(blocks=("tafc-dvorak",))) as graph,
    ):
        (block,) = graph.blocks.values()
        assert block.name == "A or B? Dvořák ♪"
        assert block.description == "Choose A or B"
        assert block.extra["name_nl"] == "A of B?"
        assert block.rules_config is None  # no such column before v5.1
        (experiment,) = graph.experiments.values()
        assert experiment.name == "Listening Lab ♪"
        assert experiment.extra["name_nl"] == "Luisterlab ♪"


# -- selection ------------------------------------------------------------------------------


def _all_sessions(uri: str, slug: str) -> tuple[list[Any], dict[int, Any]]:
    with (
        MuscleDatabase(uri, SourceOptions()) as source,
        source.read(Selection(blocks=(slug,))) as graph,
    ):
        return list(graph.sessions.values()), dict(graph.participants)


def _filters(sessions: list[Any], participants: dict[int, Any]) -> list[Filter]:
    # Cut to milliseconds: the zip (compared with below) holds no more, so a boundary
    # between two microseconds of one millisecond would split the two sources.
    starts = sorted(
        s.started_at.replace(microsecond=s.started_at.microsecond // 1000 * 1000) for s in sessions
    )
    middle = starts[len(starts) // 2]
    with_url = next(p for p in participants.values() if p.participant_id_url)
    some_pk = sessions[0].participant
    return [
        Filter(finished_only=True),
        Filter(started_after=middle),
        Filter(started_before=middle),
        Filter(started_after=starts[1], started_before=starts[-2], finished_only=True),
        Filter(participants=(some_pk,)),
        Filter(participants=(with_url.participant_id_url,)),
        Filter(participants=(some_pk, with_url.participant_id_url, 10**30, "nobody")),
        Filter(started_after=starts[-1] + dt.timedelta(seconds=1)),
    ]


@pytest.mark.parametrize("version", ["head", "v2024"])
def test_filters_select_what_session_matches_selects(
    dbs: dict[str, str], plugin_manager: PluginManager, tmp_path: Path, version: str
) -> None:
    slug = "tafc-dvorak"
    uri = dbs[version]
    sessions, participants = _all_sessions(uri, slug)
    muscle_zip = REFERENCE / version / f"block_{slug}.zip"
    for i, flt in enumerate(_filters(sessions, participants)):
        expected = [
            s.pk for s in sessions if session_matches(flt, s, participants.get(s.participant))
        ]
        with (
            MuscleDatabase(uri, SourceOptions()) as source,
            source.read(Selection(blocks=(slug,), filter=flt)) as graph,
        ):
            assert list(graph.sessions) == expected, flt
            kept = {s.participant for s in graph.sessions.values()}
            assert set(graph.participants) == kept
            trial = [r for batch in graph.trial_results() for r in batch]
            profile = [r for batch in graph.profile_results() for r in batch]
            assert {r.session for r in trial} <= set(expected)
            assert {r.participant for r in profile} <= kept
        # the zip source filters in Python: both must give the same bytes
        toml_filter: dict[str, Any] = {
            k: v
            for k, v in {
                "finished_only": flt.finished_only or None,
                "started_after": flt.started_after,
                "started_before": flt.started_before,
                "participants": [
                    p for p in flt.participants if not (isinstance(p, int) and p > 2**62)
                ]
                or None,
            }.items()
            if v is not None
        }
        from_db = export(plugin_manager, uri, (slug,), tmp_path / f"db{i}.zip", toml_filter)
        from_zip = export(
            plugin_manager, str(muscle_zip), (slug,), tmp_path / f"zip{i}.zip", toml_filter
        )
        assert members(from_db) == members(from_zip), flt


def test_experiment_slug_selects_its_blocks(dbs: dict[str, str]) -> None:
    with MuscleDatabase(dbs["head"], SourceOptions()) as source:
        with source.read(Selection(blocks=("dvorak-listening",))) as graph:
            by_experiment = [b.slug for b in graph.blocks.values()]
            sessions = list(graph.sessions)
        with source.read(Selection(blocks=("msi-questionnaire", "tafc-dvorak"))) as graph:
            assert [b.slug for b in graph.blocks.values()] == by_experiment
            assert list(graph.sessions) == sessions
    assert by_experiment == ["tafc-dvorak", "msi-questionnaire"]
    assert len(sessions) == 15
    assert sessions == sorted(sessions)


def test_unknown_slug_and_missing_slug_are_clear_errors(dbs: dict[str, str]) -> None:
    with MuscleDatabase(dbs["head"], SourceOptions()) as source:
        with pytest.raises(SourceError) as info, source.read(Selection(blocks=("nope",))):
            pass
        message = str(info.value)
        assert "'nope'" in message
        assert "tafc-dvorak" in message
        assert "hooked-eurovision" in message
        with pytest.raises(SourceError, match="name the block") as info, source.read(Selection()):
            pass
        assert "3 blocks" in str(info.value)


def test_results_must_be_read_inside_the_snapshot(dbs: dict[str, str]) -> None:
    with MuscleDatabase(dbs["head"], SourceOptions()) as source:
        with source.read(Selection(blocks=("tafc-dvorak",))) as graph:
            pass
        with pytest.raises(RuntimeError, match="inside its"):
            list(graph.trial_results())


# -- snapshot and schema tolerance (on private copies, since they write) -----------------------


@pytest.fixture
def head_copy(pg_database: Callable[[Path | None], str]) -> str:
    return pg_database(REFERENCE / "head" / "muscle_head.sql")


def test_export_is_one_snapshot_while_muscle_writes(head_copy: str) -> None:
    with (
        MuscleDatabase(head_copy, SourceOptions()) as source,
        source.read(Selection(blocks=("tafc-dvorak",))) as graph,
    ):
        session = next(iter(graph.sessions.values()))
        with psycopg.connect(head_copy, autocommit=True) as writer:
            writer.execute(
                "INSERT INTO result_result (id, created_at, question_key, comment,"
                " scoring_rule, session_id, json_data) VALUES"
                " (100000, now(), 'late', '', '', %s, '{}')",
                (session.pk,),
            )
            writer.execute("DELETE FROM result_result WHERE participant_id IS NOT NULL")
            writer.execute("UPDATE session_session SET final_score = -1")
        trial = [r.pk for batch in graph.trial_results() for r in batch]
        profile = [r.pk for batch in graph.profile_results() for r in batch]
    assert 100000 not in trial
    assert len(trial) == 58
    assert len(profile) == 69


def test_every_read_of_one_source_shares_the_snapshot(head_copy: str) -> None:
    """A per-block run reads each block separately; all come from one snapshot. A failed
    read ends it, and the next read starts a fresh one."""
    with MuscleDatabase(head_copy, SourceOptions()) as source:
        with source.read(Selection(blocks=("tafc-dvorak",))) as graph:
            first = len(graph.sessions)
        admin(head_copy, "DELETE FROM session_session WHERE block_id = 2")
        with source.read(Selection(blocks=("msi-questionnaire",))) as graph:
            assert len(graph.sessions) == 6
            assert sum(len(b) for b in graph.trial_results()) == 0
        with pytest.raises(SourceError), source.read(Selection(blocks=("nope",))):
            pass
        with source.read(Selection(blocks=("msi-questionnaire",))) as graph:
            assert len(graph.sessions) == 0
    assert first == 9


def test_undeclared_columns_are_kept_and_jsonb_order_and_big_ints(
    head_copy: str, plugin_manager: PluginManager, tmp_path: Path
) -> None:
    admin(
        head_copy,
        "ALTER TABLE session_session ADD COLUMN current_round integer NOT NULL DEFAULT 1",
        'UPDATE result_result SET json_data = \'{"zz": 1, "a": 123456789012345678901234567890,'
        ' "nested": {"b": [1.5, null, "ü"]}}\' WHERE id = (SELECT min(id) FROM result_result'
        " WHERE session_id IN (SELECT id FROM session_session WHERE block_id = 1))",
    )
    out = members(export(plugin_manager, head_copy, ("tafc-dvorak",), tmp_path / "x.zip"))
    sessions = json.loads(out["sessions.json"])
    assert all(s["fields"]["current_round"] == 1 for s in sessions)
    assert '{"a": 123456789012345678901234567890, "zz": 1, "nested": {"b": [1.5, null, "ü"]}}' in (
        out["results.json"].decode("utf-8")
    )


def test_result_row_maker_follows_the_schema() -> None:
    """_make_result spells the fields out for speed; it must follow schema.py's order."""
    model = MODELS["result"]
    row = (7, *(f"value of {f.name}" for f in model.fields[:-1]), b'{"k": 1}')
    result = _make_result(row)
    assert result.pk == 7
    for field in model.fields[:-1]:
        assert getattr(result, field.name) == f"value of {field.name}"
    assert model.fields[-1].name == "json_data"
    assert result.json_data == {"k": 1}


def test_loads_keeps_order_and_big_integers() -> None:
    assert list(_loads(b'{"b": 1, "a": 2}')) == ["b", "a"]
    big = 123456789012345678901234567890
    assert _loads(memoryview(b'{"n": 123456789012345678901234567890}'))["n"] == big
    assert _loads(b'{"n": -9223372036854775809}')["n"] == -(2**63) - 1
    assert _loads('{"x": 0.31099987030029297}')["x"] == 0.31099987030029297


# -- schema detection -------------------------------------------------------------------------


def test_not_a_muscle_database(pg_database: Callable[[Path | None], str]) -> None:
    empty = pg_database(None)
    with pytest.raises(DatabaseError) as info:
        MuscleDatabase(empty, SourceOptions())
    message = str(info.value)
    assert "not a MUSCLE database: table session_session not found" in message
    assert message.startswith("postgresql://postgres@127.0.0.1:")


def test_pre_july_2024_schema_is_refused(pg_database: Callable[[Path | None], str]) -> None:
    old = pg_database(None)
    admin(
        old,
        "CREATE TABLE experiment_experiment (id integer PRIMARY KEY, slug varchar(64))",
        "CREATE TABLE session_session (id integer PRIMARY KEY, experiment_id integer,"
        " participant_id integer, current_round integer)",
    )
    with pytest.raises(DatabaseError) as info:
        MuscleDatabase(old, SourceOptions())
    message = str(info.value)
    assert "unsupported MUSCLE version" in message
    assert "session_session.experiment_id" in message
    assert "before July 2024" in message
    assert "supported:" in message


def test_missing_table_is_named(pg_database: Callable[[Path | None], str]) -> None:
    broken = pg_database(REFERENCE / "head" / "muscle_head_schema.sql")
    admin(broken, "DROP TABLE result_result CASCADE")
    with pytest.raises(DatabaseError, match="table result_result not found"):
        MuscleDatabase(broken, SourceOptions())


# -- connection errors ------------------------------------------------------------------------


def test_unreachable_server_writes_nothing(
    pg_server: str, plugin_manager: PluginManager, tmp_path: Path
) -> None:
    uri = f"postgresql://someone:s3cret-pw@127.0.0.1:{closed_port()}/muscle"
    with pytest.raises(DatabaseError) as info:
        export(plugin_manager, uri, ("x",), tmp_path / "out" / "x.zip")
    message = str(info.value)
    assert "cannot reach the server" in message
    assert "s3cret-pw" not in message
    assert message.startswith("postgresql://someone@127.0.0.1:")
    assert "\n" not in message
    assert no_files(tmp_path)


def test_wrong_credentials_never_show_the_password(
    muscle_head_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared test server trusts 127.0.0.1 (pg_hba ``trust``), so it cannot refuse a
    password; a role that does not exist is refused the same way, before any query.
    test_wrong_password_is_refused_without_showing_it uses a private cluster for that."""
    monkeypatch.setenv("PGPASSWORD", "env-secret-1")
    uri = other_dsn(muscle_head_db, user=f"ghost_{uuid.uuid4().hex[:8]}", password="p@ss:w/rd")
    with pytest.raises(DatabaseError) as info:
        MuscleDatabase(uri, SourceOptions())
    message = str(info.value)
    assert "wrong credentials" in message
    assert "does not exist" in message
    for secret in ("p@ss:w/rd", "p%40ss", "env-secret-1"):
        assert secret not in message
    assert "\n" not in message


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def password_server() -> Iterator[str]:
    """A private, throw-away PostgreSQL cluster that wants a scram password, since the test
    server trusts 127.0.0.1. Yields its URI without the password (which is "right-pw").
    Skipped where no such cluster can be started (no server binaries, no postgres user):
    the shared server's tests cover the rest."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries to start a password-protected cluster")
    # Not under pytest's tmp_path: its parent is private to root, and the server runs as
    # the postgres user.
    folder = Path(tempfile.mkdtemp(prefix="exportkit-pwcluster-"))
    (folder / "pw").write_text("right-pw\n")
    data = folder / "data"
    # the server refuses to run as root
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data)]
    port = closed_port()
    try:
        if run_as:
            subprocess.run(["chown", "-R", "postgres", str(folder)], check=True)
        subprocess.run(
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                f"--pwfile={folder / 'pw'}",
            ],
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"cannot make a private PostgreSQL cluster: {exc}")
    # The server runs as our child, so that we wait for it to answer, or to end: no deadline
    # (pg_ctl -w would give up after 60 seconds on a busy machine).
    with open(folder / "log", "wb") as log:
        server = subprocess.Popen(
            [
                *run_as,
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(folder),
                "-h",
                "127.0.0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ready = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]
    try:
        while subprocess.run(ready, check=False).returncode != 0:
            if server.poll() is not None:
                pytest.skip(
                    f"the private PostgreSQL cluster did not start: {(folder / 'log').read_text()}"
                )
            time.sleep(0.1)  # between polls only
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, check=False)
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def test_wrong_password_is_refused_without_showing_it(
    password_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    wrong = password_server.replace("postgres@", "postgres:wr0ng%2Fpw@")
    with pytest.raises(DatabaseError) as info:
        MuscleDatabase(wrong, SourceOptions())
    message = str(info.value)
    assert 'wrong credentials: password authentication failed for user "postgres"' in message
    assert "wr0ng" not in message
    assert message.startswith("postgresql://postgres@127.0.0.1:")
    with pytest.raises(DatabaseError, match="none was given"):
        MuscleDatabase(password_server, SourceOptions())
    monkeypatch.setenv("PGPASSWORD", "env-wr0ng")
    with pytest.raises(DatabaseError) as info:
        MuscleDatabase(password_server, SourceOptions())
    assert "env-wr0ng" not in str(info.value)
    assert "wrong credentials" in str(info.value)
    monkeypatch.setenv("PGPASSWORD", "right-pw")  # the right one gets past the login
    with pytest.raises(DatabaseError, match="not a MUSCLE database"):
        MuscleDatabase(password_server, SourceOptions())


def test_missing_database(muscle_head_db: str) -> None:
    uri = other_dsn(muscle_head_db, dbname="exportkit_no_such_db")
    with pytest.raises(DatabaseError, match="no such database"):
        MuscleDatabase(uri, SourceOptions())


def test_missing_select_permission_is_named(
    muscle_head_db: str, plugin_manager: PluginManager, tmp_path: Path
) -> None:
    role = f"exportkit_reader_{uuid.uuid4().hex[:8]}"
    dbname = psycopg.conninfo.conninfo_to_dict(muscle_head_db)["dbname"]
    admin(
        muscle_head_db,
        f'CREATE ROLE "{role}" LOGIN',
        f'GRANT CONNECT ON DATABASE "{dbname}" TO "{role}"',
        f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"',
        f'REVOKE SELECT ON result_result FROM "{role}"',
    )
    try:
        uri = other_dsn(muscle_head_db, user=role)
        with pytest.raises(DatabaseError) as info:
            export(plugin_manager, uri, ("tafc-dvorak",), tmp_path / "out.zip")
        message = str(info.value)
        assert "missing permission" in message
        assert "result_result" in message
        assert no_files(tmp_path)
    finally:
        admin(muscle_head_db, f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"')


def test_cli_reports_database_errors_in_one_line(
    pg_server: str, cli_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aml_exportkit.cli import cli

    monkeypatch.setenv("EXPORTKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    uri = f"postgresql://u:hunter2@127.0.0.1:{closed_port()}/db"
    result = cli_runner.invoke(cli, ["inspect", uri])
    assert result.exit_code == 8
    assert result.stderr.count("\n") == 1
    assert "hunter2" not in result.stderr + result.stdout


def test_error_text_classification_and_scrubbing() -> None:
    target = Target("u", "h", "5432", "d")
    refused = (
        'connection failed: connection to server at "10.0.0.1", port 5432 failed: FATAL:'
        '  password authentication failed for user "u"'
    )
    assert _connect_problem(refused, target) == (
        'wrong credentials: password authentication failed for user "u"'
    )
    assert "none was given" in _connect_problem("fe_sendauth: no password supplied", target)
    scrub = Scrubber("postgresql://u:p%40ss@h/d", {"password": "p@ss"})
    assert scrub("bad uri postgresql://u:p%40ss@h/d and p@ss") == (
        "bad uri postgresql://u:***@h/d and ***"
    )
    with pytest.raises(DatabaseError) as info:
        target_of("postgresql://u:topsecret@[::1")
    assert "topsecret" not in str(info.value)


# -- verify -----------------------------------------------------------------------------------


def test_verify_against_muscle_zip_and_between_sources(
    dbs: dict[str, str], plugin_manager: PluginManager
) -> None:
    zip_path = REFERENCE / "head" / "exportblock_command" / "hooked-eurovision.zip"  # gzip
    report = verify_export(dbs["head"], str(zip_path), plugin_manager=plugin_manager)
    assert report.equal
    assert report.blocks == ("hooked-eurovision",)
    assert report.identical_bytes is None
    participants = report.files[1]
    assert (participants.ours, participants.reference, participants.listed) == (9, 9, 10)
    other = REFERENCE / "head" / "block_tafc-dvorak.zip"
    report = verify_export(
        dbs["head"], str(other), blocks=("hooked-eurovision",), plugin_manager=plugin_manager
    )
    assert not report.equal
    assert "7 of 7 files differ" in report.summary()
    report = verify_export(
        str(REFERENCE / "v2024" / "block_bat-ref.zip"),
        dbs["v2024"],
        blocks=("bat-ref",),
        plugin_manager=plugin_manager,
    )
    assert report.equal
    assert report.identical_bytes


def test_verify_command_exit_codes(
    dbs: dict[str, str], cli_runner: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aml_exportkit.cli import cli

    monkeypatch.setenv("EXPORTKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    good = cli_runner.invoke(
        cli, ["verify", dbs["v2024"], "--against", str(REFERENCE / "v2024" / "block_bat-ref.zip")]
    )
    assert good.exit_code == 0, good.stderr
    assert "equal: all 7 files" in good.stdout
    bad = cli_runner.invoke(
        cli,
        [
            "verify",
            dbs["v2024"],
            "--against",
            str(REFERENCE / "v2024" / "block_bat-ref.zip"),
            "--block",
            "rhythm-final",
        ],
    )
    assert bad.exit_code == 9
    assert "DIFFERENT" in bad.stdout
    assert bad.stderr.startswith("exportkit: error: ")


# -- Django round trip ------------------------------------------------------------------------

_CONFIG_TABLES = (
    "experiment_experiment",
    "experiment_phase",
    "experiment_block",
    "section_playlist",
    "experiment_block_playlists",
)


def _copy_tables(src: str, dst: str, tables: tuple[str, ...]) -> None:
    with psycopg.connect(src) as source, psycopg.connect(dst) as target:
        for table in tables:
            with (
                source.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as out,  # type: ignore[arg-type]
                target.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as into,  # type: ignore[arg-type]
            ):
                for data in out:
                    into.write(data)


@pytest.fixture
def django_env() -> None:
    """Django is a test dependency; say so plainly if it is missing."""
    pytest.importorskip("django")


@pytest.mark.parametrize(
    ("version", "blocks"), [("head", HEAD_BLOCKS), ("v2024", V2024_BLOCKS)], ids=["head", "v2024"]
)
def test_django_loaddata_round_trip(
    django_env: None,
    dbs: dict[str, str],
    pg_database: Callable[[Path | None], str],
    plugin_manager: PluginManager,
    tmp_path: Path,
    version: str,
    blocks: tuple[str, ...],
) -> None:
    """Our fixture-json, loaded by Django's own ``loaddata``, exports to the same bytes.

    The target is a fresh database restored from the *schema* dump, so it holds no rows.
    The exported models point at experiments, phases, blocks and playlists, which the
    export does not carry (as MUSCLE's zip does not); those configuration rows are copied
    from the source database first, exactly as they are. Then every block's fixture files
    go into one ``loaddata`` call (participants and profile answers shared by blocks are
    simply saved twice), and each block is exported again and compared byte for byte.
    """
    schema = "muscle_head_schema.sql" if version == "head" else "muscle_2024_schema.sql"
    fresh = pg_database(REFERENCE / version / schema)
    _copy_tables(dbs[version], fresh, _CONFIG_TABLES)
    first: dict[str, dict[str, bytes]] = {}
    paths: list[str] = []
    for slug in blocks:
        zip_path = export(plugin_manager, dbs[version], (slug,), tmp_path / f"{slug}.zip")
        first[slug] = members(zip_path)
        folder = tmp_path / slug
        folder.mkdir()
        for name, data in first[slug].items():
            (folder / name).write_bytes(data)
            paths.append(str(folder / name))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, str(DJANGO_LOADDATA), fresh, *paths],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Installed" in done.stdout
    for slug in blocks:
        again = members(export(plugin_manager, fresh, (slug,), tmp_path / f"again-{slug}.zip"))
        assert again == first[slug], slug
    report = verify_export(fresh, dbs[version], blocks=(blocks[0],), plugin_manager=plugin_manager)
    assert report.equal
    assert report.identical_bytes

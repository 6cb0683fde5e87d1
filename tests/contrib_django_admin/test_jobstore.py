"""The export page's parts that need neither Django nor a database: job folders, output
paths, progress fields and the URI built from Django's DATABASES."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from aml_exportkit.contrib.django.conf import (
    folder_templates,
    uri_from_database_settings,
)
from aml_exportkit.contrib.django.jobstore import (
    FAILED,
    RUNNING,
    WAITING,
    JobStore,
    check_output_paths,
    valid_job_id,
    write_json,
    zip_outputs,
)
from aml_exportkit.contrib.django.worker import (
    check_upload_extends,
    main,
    progress_fields,
)
from aml_exportkit.errors import TemplateError
from aml_exportkit.pipeline import load_template
from aml_exportkit.sources.muscle_db import target_of


def test_job_ids_are_random_tokens(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    ids = {store.create({"blocks": []}) for _ in range(20)}
    assert len(ids) == 20
    assert all(valid_job_id(i) for i in ids)
    assert (tmp_path / "jobs").stat().st_mode & 0o077 == 0
    for bad in ("", "../x", "A" * 32, "0" * 33, "0" * 31 + "/", "0" * 31 + "\n"):
        assert not valid_job_id(bad)
        with pytest.raises(ValueError, match="not a job id"):
            store.folder(bad)


def test_a_reader_never_sees_half_a_status(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job_id = store.create({"blocks": []})
    stop = threading.Event()
    big = {"state": RUNNING, "filler": "x" * 200_000}

    def writer() -> None:
        while not stop.is_set():
            store.set_status(job_id, big)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(300):
            status = store.status(job_id)
            assert status is not None
            assert status["state"] in (WAITING, RUNNING)
    finally:
        stop.set()
        thread.join()
    assert not [p for p in (tmp_path / job_id).iterdir() if p.name.endswith(".tmp")]


def test_a_job_whose_worker_died_is_failed(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job_id = store.create({"blocks": []})
    store.set_status(job_id, {"state": RUNNING})
    store.record_worker(job_id, 2**22 + 12345)  # above pid_max's default: no such process
    assert store.status(job_id)["state"] == RUNNING  # recent: it may still be starting
    path = tmp_path / job_id / "status.json"
    write_json(path, {"state": RUNNING, "updated": 0})
    assert store.status(job_id)["state"] == FAILED
    store.record_worker(job_id, os.getpid())
    assert store.status(job_id)["state"] == RUNNING


def test_cleanup_removes_old_jobs_only(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    old, new = store.create({}), store.create({})
    spec = json.loads((tmp_path / old / "job.json").read_text())
    (tmp_path / old / "job.json").write_text(json.dumps({**spec, "created": 0}))
    (tmp_path / "not-a-job").mkdir()
    assert store.cleanup(max_age=60) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([new, "not-a-job"])
    assert [job_id for job_id, _ in store.jobs()] == [new]


@pytest.mark.parametrize(
    "path",
    ["/etc/{block}.csv", "../{block}.csv", "a/../../{block}.csv", "~/{block}.csv", "C:/x.csv"],
)
def test_output_paths_must_stay_in_the_job(tmp_path: Path, path: str) -> None:
    template_file = tmp_path / "t.toml"
    template_file.write_text(f'[[sinks]]\ntype = "csv-long"\npath = "{path}"\n')
    template = load_template(str(template_file))
    with pytest.raises(TemplateError, match=r"sinks\[0\]\.path: .* leaves the export folder"):
        check_output_paths(template, ["tafc-dvorak"])


def test_relative_output_paths_are_fine(tmp_path: Path) -> None:
    template_file = tmp_path / "t.toml"
    template_file.write_text('[[sinks]]\ntype = "csv-long"\npath = "tables/{block}.csv"\n')
    check_output_paths(load_template(str(template_file)), ["a", "b"])
    check_output_paths(load_template("muscle-classic:long_json"), [])


def test_an_upload_extends_builtins_only() -> None:
    check_upload_extends('extends = "muscle-classic:long"', "u.toml", ["muscle-classic:long"])
    with pytest.raises(TemplateError, match=r"^u\.toml: extends: an uploaded template"):
        check_upload_extends('extends = "base.toml"', "u.toml", ["muscle-classic:long"])
    with pytest.raises(TemplateError, match=r"^u\.toml: not valid TOML"):
        check_upload_extends("extends = ", "u.toml", [])


def test_progress_fields() -> None:
    fields = progress_fields(500, 2000, 2.0)
    assert fields == {
        "rows": 500,
        "expected": 2000,
        "rate": 250.0,
        "elapsed": 2.0,
        "percent": 25.0,
        "eta": "0:06",
    }
    assert progress_fields(10, None, 0)["eta"] is None


def test_zip_outputs_keeps_relative_paths(tmp_path: Path) -> None:
    import zipfile

    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    (out / "tables" / "a.csv").write_text("x\n1\n")
    size = zip_outputs(out, tmp_path / "export.zip")
    assert size == (tmp_path / "export.zip").stat().st_size
    with zipfile.ZipFile(tmp_path / "export.zip") as archive:
        assert archive.namelist() == ["manifest.json", "tables/a.csv"]


def test_folder_templates_are_listed_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "b.toml").write_text('description = "B"\n[[sinks]]\n')
    (folder / "a.toml").write_text("not toml [")
    (folder / "notes.txt").write_text("")
    (tmp_path / "outside.toml").write_text("")
    (folder / "link.toml").symlink_to(tmp_path / "outside.toml")
    choices = folder_templates([folder.resolve()])
    assert [(c.value, c.label) for c in choices] == [
        ("folder:0:a.toml", "lab/a.toml"),
        ("folder:0:b.toml", "lab/b.toml: B"),
    ]
    assert choices[0].ref == str((folder / "a.toml").resolve())


def test_the_uri_from_djangos_settings() -> None:
    db = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "muscle",
        "USER": "reader",
        "PASSWORD": "p@ss:w/rd%",
        "HOST": "db.example",
        "PORT": 5433,
        "OPTIONS": {"sslmode": "require", "pool": True, "server_side_binding": True},
    }
    uri = uri_from_database_settings(db)
    assert uri == "postgresql://reader:p%40ss%3Aw%2Frd%25@db.example:5433/muscle?sslmode=require"
    target, params, _ = target_of(uri)
    assert str(target) == "postgresql://reader@db.example:5433/muscle"
    assert params["password"] == "p@ss:w/rd%"
    socket = uri_from_database_settings({**db, "HOST": "/run/postgresql", "PASSWORD": ""})
    assert (
        socket == "postgresql://reader@/muscle?host=%2Frun%2Fpostgresql&port=5433&sslmode=require"
    )
    assert uri_from_database_settings({"ENGINE": "django.db.backends.postgresql"}) == (
        "postgresql:///"
    )
    with pytest.raises(ValueError, match="needs a PostgreSQL database"):
        uri_from_database_settings({"ENGINE": "django.db.backends.sqlite3", "NAME": "x"})


def test_the_worker_refuses_a_wrong_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["only-one"]) == 2
    assert "usage:" in capsys.readouterr().out


def test_a_previewed_job_is_exported_once(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job_id = store.create({})
    assert store.claim_export(job_id)
    assert not store.claim_export(job_id)

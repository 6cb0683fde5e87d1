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
    DONE,
    FAILED,
    QUEUED,
    RUNNING,
    WAITING,
    JobLimits,
    JobStore,
    check_output_paths,
    valid_job_id,
    write_json,
    zip_outputs,
)
from aml_exportkit.contrib.django.worker import (
    StatusProgress,
    check_upload_reads_no_file,
    main,
    progress_fields,
)
from aml_exportkit.errors import TemplateError
from aml_exportkit.pipeline import load_template
from aml_exportkit.sources.muscle_db_reader import target_of


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
    check_upload_reads_no_file('extends = "muscle-classic:long"', "u.toml", ["muscle-classic:long"])
    with pytest.raises(TemplateError, match=r"^u\.toml: extends: an uploaded template"):
        check_upload_reads_no_file('extends = "base.toml"', "u.toml", ["muscle-classic:long"])
    with pytest.raises(TemplateError, match=r"^u\.toml: not valid TOML"):
        check_upload_reads_no_file("extends = ", "u.toml", [])


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


def _waiting_job(store: JobStore, user: int) -> str:
    job_id = store.create({"blocks": [], "user_id": user})
    store.wait(job_id, "export")
    return job_id


def test_dispatch_starts_the_oldest_waiting_jobs_within_the_limits(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    started: list[str] = []

    def start(job_id: str, mode: str) -> int:
        assert mode == "export"
        started.append(job_id)
        return os.getpid()  # a live process: the job counts as running

    a1, a2, b1, c1 = (_waiting_job(store, user) for user in (1, 1, 2, 3))
    limits = JobLimits(total=2, per_user=1)
    assert store.dispatch(limits, start) == [a1, b1]
    assert store.status(a2)["state"] == WAITING  # its user has a job running
    assert store.status(c1)["state"] == WAITING  # two run in total
    assert store.status(a1)["state"] == QUEUED
    assert store.dispatch(limits, start) == []
    store.set_status(a1, {"state": DONE})
    assert store.dispatch(limits, start) == [a2]
    assert started == [a1, b1, a2]
    assert store.dispatch(JobLimits(), start) == [c1]  # no limits


def test_a_worker_that_cannot_start_fails_its_job(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    job_id = _waiting_job(store, 1)

    def start(job_id: str, mode: str) -> int:
        raise OSError(12, "Cannot allocate memory")

    assert store.dispatch(JobLimits(total=1), start) == []
    status = store.status(job_id)
    assert status["state"] == FAILED
    assert status["error"] == "the export process could not start (Cannot allocate memory)"


def test_job_files_and_the_root_are_private(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    store = JobStore(root)
    job_id = store.create({"blocks": []}, upload_text="name = 'x'\n")
    store.record_worker(job_id, 1)
    assert root.stat().st_mode & 0o777 == 0o700
    folder = root / job_id
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in ("job.json", "status.json", "template.toml", "worker.pid"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600, name


def test_status_progress_counts_on_across_blocks() -> None:
    written: list[dict[str, object]] = []
    progress = StatusProgress(written.append, known_total=250)
    progress.phase("reading")
    progress.update(100, None)
    progress.phase("writing")
    assert written[-1]["phase"] == "writing"
    assert written[-1]["rows"] == 100
    assert written[-1]["percent"] == 40.0
    progress.phase("reading")  # the next block counts from zero
    progress.last = 0.0  # past the interval
    progress.update(50, None)
    assert (written[-1]["rows"], written[-1]["percent"]) == (150, 60.0)
    # without a preview, the source's estimate (of this block) counts
    progress = StatusProgress(written.append)
    progress.update(30, 120)
    assert (written[-1]["expected"], written[-1]["percent"]) == (120, 25.0)

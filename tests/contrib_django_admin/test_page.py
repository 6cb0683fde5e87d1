"""The export page with Django's test Client against the restored 2024 database: the
permission, uploads, paths that try to leave their folders, CSRF, failed jobs with the
command line's error line, reloads, cleanup, and the database password nowhere."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from aml_exportkit.cli import cli
from aml_exportkit.contrib.django.jobstore import DONE, FAILED, RUNNING, JobStore
from conftest import REFERENCE
from contrib_django_admin.helpers import (
    FAILING,
    NO_PERMISSION,
    OTHER_RESEARCHER,
    PAGE,
    PASSWORD,
    RESEARCHER,
    SLUG,
    TEMPLATE,
    Project,
    form_errors,
    post_form_error,
    start_job,
    unescape,
    upload_file,
    wait_settled,
)
from sinks.golden import read_table

pytestmark = pytest.mark.pg

#: the builtin template names its manifest after itself and the block
MANIFEST = f"{SLUG}-muscle-classic-long_json.manifest.json"

Client = Callable[..., Any]


def _cli_error(tmp_path: Path, name: str, text: str, *args: str) -> str:
    """The line ``exportkit`` prints after "exportkit: error: " for the same template."""
    (tmp_path / name).write_text(text, encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(cli, [*args[:1], name, *args[1:]])
    finally:
        os.chdir(cwd)
    assert result.exit_code != 0
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("exportkit: error: ")]
    return line.removeprefix("exportkit: error: ")


# -- who may see what --------------------------------------------------------------------


def test_the_permission_opens_the_page(project: Project, client_for: Client) -> None:
    from django.test import Client as DjangoClient

    response = client_for(RESEARCHER).get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'value="tafc-dvorak"' in html
    assert f'value="{TEMPLATE}" selected' in html
    assert 'value="folder:0:trials.toml"' in html
    # anonymous: to the admin's login
    response = DjangoClient().get(PAGE)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login/")


def test_staff_without_the_permission_get_403_everywhere(
    project: Project, client_for: Client
) -> None:
    researcher = client_for(RESEARCHER)
    job_id = start_job(researcher)
    assert wait_settled(researcher, job_id)["state"] == DONE
    staff = client_for(NO_PERMISSION)
    for method, url in (
        ("get", PAGE),
        ("get", f"{PAGE}?job={job_id}"),
        ("post", PAGE),
        ("get", f"{PAGE}jobs/{job_id}/status"),
        ("get", f"{PAGE}jobs/{job_id}/download"),
        ("post", f"{PAGE}jobs/{job_id}/run"),
        ("post", f"{PAGE}jobs/{job_id}/cancel"),
    ):
        response = getattr(staff, method)(url)
        assert response.status_code == 403, (method, url, response.status_code)
    # and the admin index does not link to the page
    assert "Export page" not in staff.get("/admin/").content.decode()
    assert "Export page" in researcher.get("/admin/").content.decode()


def test_a_non_staff_user_with_the_permission_is_sent_to_the_login(
    project: Project, client_for: Client
) -> None:
    from django.contrib.auth.models import User

    user = User.objects.get(username=OTHER_RESEARCHER)
    user.is_staff = False
    user.save()
    try:
        response = client_for(OTHER_RESEARCHER).get(PAGE)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/admin/login/")
    finally:
        user.is_staff = True
        user.save()


def test_another_researchers_job_is_not_found(project: Project, client_for: Client) -> None:
    researcher = client_for(RESEARCHER)
    job_id = start_job(researcher, "_preview")
    wait_settled(researcher, job_id)
    other = client_for(OTHER_RESEARCHER)
    assert other.get(f"{PAGE}jobs/{job_id}/status").status_code == 404
    assert other.get(f"{PAGE}jobs/{job_id}/download").status_code == 404
    assert other.get(f"{PAGE}?job={job_id}").status_code == 404
    assert job_id not in other.get(PAGE).content.decode()


def test_the_admin_index_link_leads_to_the_page(project: Project, client_for: Client) -> None:
    from aml_exportkit.contrib.django.models import ExportPage

    label = ExportPage._meta.app_label
    response = client_for(RESEARCHER).get(f"/admin/{label}/exportpage/")
    assert response.status_code == 302
    assert response.headers["Location"] == PAGE
    assert client_for(NO_PERMISSION).get(f"/admin/{label}/exportpage/").status_code == 403


# -- preview, run, download ------------------------------------------------------------------


def test_preview_then_run_then_download(project: Project, client_for: Client) -> None:
    client = client_for(RESEARCHER)
    job_id = start_job(client, "_preview")
    status = wait_settled(client, job_id)
    assert status["state"] == "checked", status
    golden_header, golden_rows = read_table(REFERENCE / "v2024" / "csv" / f"{SLUG}__long_json.csv")
    (output,) = status["preview"]["outputs"]
    assert output["path"] == f"{SLUG}-muscle-classic-long_json.csv"
    assert output["rows"] == len(golden_rows)
    assert set(output["columns"]) == set(golden_header)
    assert "download" not in status
    html = client.get(f"{PAGE}?job={job_id}").content.decode()
    assert 'id="job-run"' in html
    assert f"{len(golden_header)} columns" in html

    response = client.post(f"{PAGE}jobs/{job_id}/run")
    assert response.status_code == 302
    status = wait_settled(client, job_id)
    assert status["state"] == DONE, status
    assert status["rows"] == len(golden_rows)
    assert status["preview"]["outputs"][0]["rows"] == len(golden_rows)
    response = client.get(status["download"])
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/zip"
    assert response.headers["Content-Disposition"].startswith(f'attachment; filename="{SLUG}-')
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        assert sorted(archive.namelist()) == sorted(
            [f"{SLUG}-muscle-classic-long_json.csv", MANIFEST, "datapackage.json", "codebook.md"]
        )
    # a previewed job runs once; a second "run" only shows it again
    assert client.post(f"{PAGE}jobs/{job_id}/run").status_code == 302
    assert wait_settled(client, job_id)["state"] == DONE


def test_a_folder_template_runs(project: Project, client_for: Client) -> None:
    client = client_for(RESEARCHER)
    job_id = start_job(client, template="folder:0:trials.toml", blocks=["bat-ref", SLUG])
    status = wait_settled(client, job_id)
    assert status["state"] == DONE, status
    assert sorted(o["path"] for o in status["outputs"]) == [
        "bat-ref-trials.csv",
        f"{SLUG}-trials.csv",
    ]


def test_a_reload_shows_the_existing_job(project: Project, client_for: Client) -> None:
    client = client_for(RESEARCHER)
    job_id = start_job(client)
    wait_settled(client, job_id)
    html = client.get(f"{PAGE}?job={job_id}").content.decode()
    assert 'id="job-panel"' in html
    assert 'data-state="done"' in html
    assert 'id="job-download"' in html
    # a new session of the same user (another browser) lists it too
    again = client_for(RESEARCHER).get(PAGE).content.decode()
    assert f"?job={job_id}" in again


def test_a_malformed_job_id_is_not_found(project: Project, client_for: Client) -> None:
    client = client_for(RESEARCHER)
    for job in ("../../etc/passwd", "0" * 31, "G" * 32, "%2e%2e%2f" * 4):
        assert client.get(f"{PAGE}?job={job}").status_code == 404
    assert client.get(f"{PAGE}jobs/..%2f..%2fetc/status").status_code == 404
    assert client.get(f"{PAGE}jobs/{'0' * 32}/status").status_code == 404


# -- templates from the form -------------------------------------------------------------


def test_a_template_value_cannot_name_a_path(project: Project, client_for: Client) -> None:
    client = client_for(RESEARCHER)
    outside = project.template_dir.parent / "outside.toml"
    outside.write_text('[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n', encoding="utf-8")
    for value in (
        "folder:0:../outside.toml",
        f"folder:0:{outside}",
        str(outside),
        "folder:1:trials.toml",
        "builtin:../../outside",
    ):
        response = client.post(PAGE, {"blocks": [SLUG], "template": value, "_export": "1"})
        assert response.status_code == 200, value
        assert "Select a valid choice" in unescape(form_errors(response)), value


def test_a_symlink_out_of_the_template_folder_is_not_offered(
    project: Project, client_for: Client
) -> None:
    outside = project.template_dir.parent / "secret.toml"
    outside.write_text('[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n', encoding="utf-8")
    link = project.template_dir / "linked.toml"
    link.symlink_to(outside)
    try:
        html = client_for(RESEARCHER).get(PAGE).content.decode()
        assert "linked.toml" not in html
        assert "trials.toml" in html
    finally:
        link.unlink()


def test_an_upload_is_checked_like_the_command_line_checks_it(
    project: Project, client_for: Client, tmp_path: Path
) -> None:
    client = client_for(RESEARCHER)
    text = '[[sinks]]\ntype = "csv-long"\npath = "{block}.csv"\ncompresion = "x"\n'
    error = post_form_error(client, upload=upload_file("mine.toml", text))
    assert _cli_error(tmp_path, "mine.toml", text, "validate") in unescape(error)
    assert "mine.toml: sinks[0]" in unescape(error)

    error = post_form_error(client, upload=upload_file("broken.toml", "[[sinks]\n"))
    assert "broken.toml: not valid TOML" in unescape(error)
    error = post_form_error(
        client, upload=upload_file("latin1.toml", "name = 'Dvořák'".encode("cp1250"))
    )
    assert "latin1.toml: not UTF-8 text" in unescape(error)
    error = post_form_error(client, upload=upload_file("big.toml", "# " + "x" * 20_000))
    assert "the limit is 16,384" in unescape(error)
    error = post_form_error(client)
    assert "Choose a template file" in unescape(error)
    error = post_form_error(client, upload=upload_file("../../../x/evil.toml", text))
    assert "evil.toml: sinks[0]" in unescape(error)
    assert "../" not in unescape(error)


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/tmp/exportkit-escape-{block}.csv", "sinks[0].path"),
        ("../{block}.csv", "sinks[0].path"),
        ("out/../../{block}.csv", "sinks[0].path"),
        ("~/{block}.csv", "sinks[0].path"),
    ],
)
def test_an_upload_cannot_write_outside_the_job(
    project: Project, client_for: Client, path: str, where: str
) -> None:
    text = f'[[sinks]]\ntype = "csv-long"\npath = "{path}"\n'
    error = unescape(post_form_error(client_for(RESEARCHER), upload=upload_file("up.toml", text)))
    assert f"up.toml: {where}: " in error
    assert "leaves the export folder" in error


def test_an_upload_cannot_extend_a_file(project: Project, client_for: Client) -> None:
    client = client_for(RESEARCHER)
    folder_template = str(project.template_dir / "trials.toml")
    for base in ("/etc/passwd", "../../../../etc/passwd", folder_template):
        text = f'extends = "{base}"\n[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n'
        error = unescape(post_form_error(client, upload=upload_file("ext.toml", text)))
        assert "ext.toml: extends: an uploaded template may extend only a builtin" in error
        assert "root:" not in error
    # a builtin is fine
    text = 'extends = "muscle-classic:long_json"\nname = "mine"\n'
    job_id = start_job(client, template="upload", upload=upload_file("ext.toml", text))
    assert wait_settled(client, job_id)["state"] == DONE


# -- CSRF -------------------------------------------------------------------------------------


def test_csrf_is_enforced(project: Project, client_for: Client) -> None:
    client = client_for(RESEARCHER, enforce_csrf_checks=True)
    data = {"blocks": [SLUG], "template": TEMPLATE, "_export": "1"}
    assert client.post(PAGE, data).status_code == 403
    page = client.get(PAGE)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token
    response = client.post(PAGE, {**data, "csrfmiddlewaretoken": token[1]})
    assert response.status_code == 302
    job_id = response.headers["Location"].rsplit("=", 1)[1]
    assert client.post(f"{PAGE}jobs/{job_id}/cancel").status_code == 403
    wait_settled(client, job_id)


# -- failures -------------------------------------------------------------------------------


def test_a_failed_job_shows_the_command_lines_error(
    project: Project, client_for: Client, tmp_path: Path
) -> None:
    assert "EXPORTKIT_ADMIN_TEST_NO_SUCH_KEY" not in os.environ
    client = client_for(RESEARCHER)
    job_id = start_job(client, template="upload", upload=upload_file("pseudo.toml", FAILING))
    status = wait_settled(client, job_id)
    assert status["state"] == FAILED
    expected = _cli_error(
        tmp_path, "pseudo.toml", FAILING, "run", "--source", project.dsn, "--block", SLUG
    )
    assert status["error"] == expected
    assert expected.startswith("pseudo.toml: privacy.key_env: the environment variable")
    assert status["exit_code"] == 3
    assert "download" not in status
    html = unescape(client.get(f"{PAGE}?job={job_id}").content.decode())
    assert f"exportkit: error: {expected}" in html
    assert client.get(f"{PAGE}jobs/{job_id}/download").status_code == 404


def test_a_vanished_worker_is_reported_as_failed(project: Project, client_for: Client) -> None:
    client = client_for(RESEARCHER)
    job_id = start_job(client, "_preview")
    wait_settled(client, job_id)
    store = JobStore(project.job_dir)
    dead = subprocess.Popen(["true"])
    dead.wait()
    store.record_worker(job_id, dead.pid)
    store.set_status(job_id, {"state": RUNNING, "phase": "export"})
    assert client.get(f"{PAGE}jobs/{job_id}/status").json()["state"] == RUNNING
    status = json.loads((project.job_dir / job_id / "status.json").read_text())
    status["updated"] -= 60
    (project.job_dir / job_id / "status.json").write_text(json.dumps(status))
    status = client.get(f"{PAGE}jobs/{job_id}/status").json()
    assert status["state"] == FAILED
    assert "ended unexpectedly" in status["error"]


# -- cleanup -----------------------------------------------------------------------------------


def test_old_jobs_are_cleaned_up_when_the_page_loads(project: Project, client_for: Client) -> None:
    client = client_for(RESEARCHER)
    store = JobStore(project.job_dir)
    old = store.create({"blocks": [SLUG], "user_id": None, "template": {}})
    running = store.create({"blocks": [SLUG], "user_id": None, "template": {}})
    fresh = store.create({"blocks": [SLUG], "user_id": None, "template": {}})
    for job_id in (old, running):
        spec_path = project.job_dir / job_id / "job.json"
        spec = json.loads(spec_path.read_text())
        spec["created"] = time.time() - 3600 - 10  # the test project's max age is an hour
        spec_path.write_text(json.dumps(spec))
    store.record_worker(running, os.getpid())  # a worker that is still alive
    store.set_status(running, {"state": RUNNING})
    (project.job_dir / old / "export.zip").write_bytes(b"PK")
    assert client.get(PAGE).status_code == 200
    assert not (project.job_dir / old).exists()
    assert (project.job_dir / running).is_dir()
    assert (project.job_dir / fresh).is_dir()
    # once its worker is gone, the old running job goes too
    store.set_status(running, {"state": DONE})
    client.post(PAGE, {"blocks": [SLUG], "template": "upload", "_export": "1"})
    assert not (project.job_dir / running).exists()


# -- the password ---------------------------------------------------------------------------


def test_the_database_password_reaches_no_page_and_no_file(
    project: Project, client_for: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.conf import settings

    assert settings.DATABASES["default"]["PASSWORD"] == PASSWORD
    started: list[tuple[Any, dict[str, Any]]] = []
    real_popen = subprocess.Popen

    def spy(args: Any, **kwargs: Any) -> Any:
        started.append((args, kwargs))
        return real_popen(args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", spy)
    client = client_for(RESEARCHER)
    job_id = start_job(client, "_preview")
    pages = [client.get(f"{PAGE}jobs/{job_id}/status").content]
    wait_settled(client, job_id)
    client.post(f"{PAGE}jobs/{job_id}/run")
    status = wait_settled(client, job_id)
    failing = start_job(client, template="upload", upload=upload_file("pseudo.toml", FAILING))
    wait_settled(client, failing)
    pages += [
        client.get(PAGE).content,
        client.get(f"{PAGE}?job={job_id}").content,
        client.get(f"{PAGE}?job={failing}").content,
        client.get(f"{PAGE}jobs/{job_id}/status").content,
        client.get(f"{PAGE}jobs/{failing}/status").content,
        b"".join(client.get(status["download"]).streaming_content),
    ]
    for body in pages:
        assert PASSWORD.encode() not in body
    for path in project.job_dir.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert len(started) == 3
    for args, kwargs in started:
        assert PASSWORD not in " ".join(map(str, args))
        assert PASSWORD not in "".join(kwargs["env"].values())
        assert kwargs["env"]["HOME"] == os.environ["HOME"]


def test_the_worker_does_not_inherit_the_password_from_the_environment(
    project: Project, client_for: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """MUSCLE's settings read the password from the environment (SQL_PASSWORD): a template
    must not be able to name that variable, e.g. as the pseudonymisation key."""
    from django.test import override_settings

    monkeypatch.setenv("SQL_PASSWORD", PASSWORD)
    text = FAILING.replace("EXPORTKIT_ADMIN_TEST_NO_SUCH_KEY", "SQL_PASSWORD")
    client = client_for(RESEARCHER)
    # a deployment that (unwisely) allows the variable still does not hand it over
    with override_settings(EXPORTKIT_ALLOWED_KEY_ENV=["SQL_PASSWORD"]):
        job_id = start_job(client, template="upload", upload=upload_file("pseudo.toml", text))
    status = wait_settled(client, job_id)
    assert status["state"] == FAILED
    assert "the environment variable SQL_PASSWORD is not set" in status["error"]


def test_cancel_stops_the_worker_and_leaves_no_output(
    project: Project, client_for: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from conftest import ROOT

    # a sink that waits (tests/slow_sink_module.py), in this process and in the worker
    monkeypatch.setenv("EXPORTKIT_PLUGINS", "slow_sink_module")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"), prepend=os.pathsep)
    marker = tmp_path / "marker"
    monkeypatch.setenv("SLOW_SINK_MARKER", str(marker))
    text = '[[sinks]]\ntype = "slow"\npath = "{block}.txt"\n'
    client = client_for(RESEARCHER)
    job_id = start_job(client, template="upload", upload=upload_file("slow.toml", text))
    # the sink writes the marker (whole, by rename) once it waits, until it is signalled
    while not marker.exists():
        status = client.get(f"{PAGE}jobs/{job_id}/status").json()
        assert not status["settled"], f"the job ended before the slow sink waited: {status}"
        time.sleep(0.05)  # between polls only: the loop ends on the marker, not on time
    temporary = Path(marker.read_text())
    assert temporary.exists()
    assert client.get(f"{PAGE}jobs/{job_id}/status").json()["state"] == RUNNING
    assert client.post(f"{PAGE}jobs/{job_id}/cancel").status_code == 302
    status = wait_settled(client, job_id)
    assert status["state"] == FAILED
    assert status["error"] == "terminated; no output was written"
    assert status["exit_code"] == 143
    assert not temporary.exists()
    assert not (project.job_dir / job_id / "export.zip").exists()


def test_a_broken_plugin_is_named_on_the_page(
    project: Project, client_for: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPORTKIT_PLUGINS", "no_such_exportkit_plugin_module")
    response = client_for(RESEARCHER).get(PAGE)
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert "exportkit: error: plugin 'no_such_exportkit_plugin_module'" in html
    assert 'id="export-form"' not in html

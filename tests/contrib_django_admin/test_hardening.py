"""The export page under crafted input and load (issue 14, item 8), with Django's test
Client: nested uploads, key variables, server paths in errors, odd sink paths, oversized
uploads, the cap on running jobs, file modes, the admin's 403/404 and the progress line."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aml_exportkit.contrib.django.jobstore import (
    CHECKED,
    DONE,
    FAILED,
    RUNNING,
    WAITING,
    JobStore,
)
from conftest import ROOT
from contrib_django_admin.gate_sink import Gates, gated_template
from contrib_django_admin.helpers import (
    FAILING,
    NO_PERMISSION,
    OTHER_RESEARCHER,
    PAGE,
    RESEARCHER,
    SLUG,
    Project,
    post_form_error,
    start_job,
    unescape,
    upload_file,
    wait_settled,
)

pytestmark = pytest.mark.pg

Client = Callable[..., Any]


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Gates]:
    """The gated sink, loaded here and in the workers; its gates in ``tmp_path/gates``.
    Every gate is opened at the end, so that no worker stays blocked."""
    monkeypatch.setenv("EXPORTKIT_PLUGINS", "contrib_django_admin.gate_sink")
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"), prepend=os.pathsep)
    gates = Gates(tmp_path / "gates")
    try:
        yield gates
    finally:
        gates.close()


def _status(client: Any, job_id: str) -> dict[str, Any]:
    response = client.get(f"{PAGE}jobs/{job_id}/status")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def _looks_like_the_admin(html: str) -> None:
    """The admin's header, breadcrumbs and style sheet are on the page."""
    assert 'id="header"' in html
    assert 'id="site-name"' in html
    assert 'class="breadcrumbs"' in html
    assert "admin/css/base.css" in html


# -- crafted uploads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 100_000,
        "x = " + "[" * 5_000 + "]" * 5_000,
        "x = " + "{a = " * 20_000,
        "[[sinks]]\n" + "x = " + "[" * 3_000 + "1" + "]" * 3_000,
    ],
    ids=["open-arrays", "closed-arrays", "inline-tables", "inside-a-sink"],
)
def test_deeply_nested_toml_is_a_form_error(
    project: Project, client_for: Client, text: str
) -> None:
    from django.test import override_settings

    with override_settings(EXPORTKIT_MAX_TEMPLATE_BYTES=512 * 1024):
        error = unescape(
            post_form_error(client_for(RESEARCHER), upload=upload_file("deep.toml", text))
        )
    assert "deep.toml: not valid TOML" in error


@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "~/.pgpass", "../../settings.txt", "excluded.txt"],
    ids=["absolute", "home", "climbing", "relative"],
)
def test_an_upload_reads_no_file_of_the_server(
    project: Project, client_for: Client, path: str
) -> None:
    # the lines of any file the server can read would become exclusions, counted in the
    # manifest; an upload reads no server file, as its extends may name only builtins
    text = f'[filter]\nexclude_file = "{path}"\n[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n'
    error = unescape(post_form_error(client_for(RESEARCHER), upload=upload_file("x.toml", text)))
    assert "x.toml: filter.exclude_file: an uploaded template reads no file" in error


def test_an_upload_with_a_byte_order_mark_is_read(project: Project, client_for: Client) -> None:
    # read as the command line reads it (docs/bad-input.md), not refused as not TOML
    upload = upload_file("b.toml", "\ufeff" + _key_ok())
    assert start_job(client_for(RESEARCHER), template="upload", upload=upload)


# -- key variables ---------------------------------------------------------------------------


def _key_template(name: str) -> str:
    return FAILING.replace("EXPORTKIT_ADMIN_TEST_NO_SUCH_KEY", name)


def test_key_env_may_name_only_allowed_variables(
    project: Project, client_for: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPORTKIT_ADMIN_TEST_SHORT_KEY", "12345")
    monkeypatch.delenv("EXPORTKIT_ADMIN_TEST_ABSENT", raising=False)
    client = client_for(RESEARCHER)
    before = set(project.job_dir.iterdir())
    errors = {}
    for name in ("HOME", "PATH", "EXPORTKIT_ADMIN_TEST_SHORT_KEY", "EXPORTKIT_ADMIN_TEST_ABSENT"):
        error = unescape(post_form_error(client, upload=upload_file("k.toml", _key_template(name))))
        errors[name] = error.replace(name, "NAME")
    # one message, whether the variable exists, is long, is short or is missing
    assert len(set(errors.values())) == 1, errors
    (message,) = set(errors.values())
    assert "k.toml: privacy.key_env: 'NAME' is not a key variable this page may use" in message
    assert "characters" not in message
    assert "not set" not in message
    # no job, so no manifest and no fingerprint of any of them
    assert set(project.job_dir.iterdir()) == before
    # key_env without pseudonymise is refused just the same
    text = '[privacy]\nkey_env = "PATH"\n[[sinks]]\ntype = "csv-long"\npath = "x.csv"\n'
    assert "'PATH' is not a key variable" in unescape(
        post_form_error(client, upload=upload_file("k.toml", text))
    )


def test_the_worker_checks_key_env_again(tmp_path: Path) -> None:
    """A job folder whose spec allows no key variable (say, written before the setting
    changed) is refused by the worker too, before the variable is read."""
    from aml_exportkit.contrib.django.worker import load_job_template
    from aml_exportkit.errors import TemplateError
    from aml_exportkit.plugins import get_plugin_manager, load_registry

    (tmp_path / "template.toml").write_text(_key_template("PATH"), encoding="utf-8")
    spec = {"template": {"kind": "upload", "ref": "k.toml", "label": "k.toml"}}
    registry = load_registry(get_plugin_manager(load_entrypoints=False))
    with pytest.raises(TemplateError, match="'PATH' is not a key variable"):
        load_job_template(spec, tmp_path, registry)
    spec["allowed_key_env"] = ["PATH"]  # type: ignore[assignment]
    assert load_job_template(spec, tmp_path, registry).privacy.key_env == "PATH"


# -- server paths in errors -------------------------------------------------------------------


def test_errors_in_the_browser_name_no_server_path(project: Project, client_for: Client) -> None:
    """A folder template's errors name it by its full path on the command line; the page
    names the file alone, on the form and in a failed job."""
    client = client_for(RESEARCHER)
    folder = project.template_dir
    failing = folder / "failing.toml"
    broken = folder / "broken.toml"
    failing.write_text(FAILING, encoding="utf-8")  # fails at run time: the key is not set
    broken.write_text('[[sinks]]\ntype = "csv-long"\npath = "x.csv"\nnope = 1\n', "utf-8")
    try:
        response = client.post(
            PAGE, {"blocks": [SLUG], "template": "folder:0:broken.toml", "_export": "1"}
        )
        assert response.status_code == 200
        html = unescape(response.content.decode())
        assert "broken.toml: sinks[0]" in html
        assert str(folder) not in html

        job_id = start_job(client, template="folder:0:failing.toml")
        status = wait_settled(client, job_id)
        assert status["state"] == FAILED
        assert status["error"].startswith("failing.toml: privacy.key_env: ")
        pages = [
            json.dumps(status),
            unescape(client.get(f"{PAGE}?job={job_id}").content.decode()),
        ]
        for page in pages:
            for server_path in (str(folder), str(project.job_dir), "/tmp/"):
                assert server_path not in page
    finally:
        failing.unlink()
        broken.unlink()


def test_redacted_lines_keep_paths_inside_the_zip() -> None:
    from aml_exportkit.contrib.django.jobstore import redact_paths

    folder = Path("/srv/jobs/0123")
    line = f"cannot write {folder}/out/sub/r.csv: no space; see /etc/exportkit/x.toml line 3"
    assert redact_paths(line, folder) == "cannot write sub/r.csv: no space; see x.toml line 3"
    kept = "path 'a/b.csv' is fine at 1,000 rows/s, see https://example.org/x/y"
    assert redact_paths(kept) == kept


# -- sink paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("a\\u0000b.csv", "control character"),
        ("a\\nb.csv", "control character"),
        (".", "does not name a file"),
        ("{block}/", "does not name a file"),
        ("out/./{block}.csv", "does not name a file"),
    ],
    ids=["nul", "newline", "dot", "trailing-slash", "dot-part"],
)
def test_odd_sink_paths_are_refused(
    project: Project, client_for: Client, path: str, reason: str
) -> None:
    text = f'[[sinks]]\ntype = "csv-long"\npath = "{path}"\n'
    error = unescape(post_form_error(client_for(RESEARCHER), upload=upload_file("p.toml", text)))
    assert "p.toml: sinks[0].path: " in error
    assert reason in error


# -- oversized uploads --------------------------------------------------------------------------


class _Reads:
    """Counts the request bytes the server reads (the test Client's payload)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from django.test import client

        self.total = 0
        real = client.FakePayload.read

        def read(payload: Any, *args: Any, **kwargs: Any) -> bytes:
            data: bytes = real(payload, *args, **kwargs)
            self.total += len(data)
            return data

        monkeypatch.setattr(client.FakePayload, "read", read)


def _spooled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of uploads Django's disk handler was given."""
    from django.core.files import uploadhandler

    names: list[str] = []
    real = uploadhandler.TemporaryFileUploadHandler.new_file

    def new_file(handler: Any, *args: Any, **kwargs: Any) -> None:
        names.append(str(args[1] if len(args) > 1 else kwargs.get("file_name")))
        real(handler, *args, **kwargs)

    monkeypatch.setattr(uploadhandler.TemporaryFileUploadHandler, "new_file", new_file)
    return names


def test_an_oversized_upload_is_refused_before_it_is_read(
    project: Project, client_for: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.test import override_settings

    client = client_for(RESEARCHER)
    reads = _Reads(monkeypatch)
    spooled = _spooled(monkeypatch)
    before = set(project.job_dir.iterdir())
    big = b"# " + b"x" * (8 * 1024 * 1024)
    with override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=0):  # Django would spool to disk
        response = client.post(
            PAGE,
            {
                "blocks": [SLUG],
                "template": "upload",
                "_export": "1",
                "upload": upload_file("big.toml", big),
            },
        )
    assert response.status_code == 413
    html = unescape(response.content.decode())
    _looks_like_the_admin(html)
    assert "at most 16,384 bytes" in html
    assert reads.total == 0, "the body was read"
    assert spooled == []
    assert set(project.job_dir.iterdir()) == before


def test_an_upload_within_the_request_limit_stays_in_memory(
    project: Project, client_for: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the template limit but under the request's: read, in memory only, and refused
    by the form with the true size."""
    from django.test import override_settings

    client = client_for(RESEARCHER)
    spooled = _spooled(monkeypatch)
    with override_settings(FILE_UPLOAD_MAX_MEMORY_SIZE=0):
        error = unescape(
            post_form_error(client, upload=upload_file("big.toml", "# " + "x" * 100_000))
        )
        assert "The file has 100,002 bytes; the limit is 16,384." in error
        job_id = start_job(client, template="upload", upload=upload_file("ok.toml", _key_ok()))
    assert spooled == []
    assert wait_settled(client, job_id)["state"] == DONE


def _key_ok() -> str:
    return '[[sinks]]\ntype = "csv-long"\npath = "{block}.csv"\n'


# -- the cap on running jobs --------------------------------------------------------------------


def _wait_for_state(store: JobStore, job_id: str, leaving: str) -> dict[str, Any]:
    """Read the job's status file (not the page, which would start jobs itself) until the
    job leaves state ``leaving``; the worker that ends starts the next job. No deadline:
    the change of state is the event waited for."""
    import time

    while True:
        status = store.status(job_id) or {}
        if status.get("state") != leaving:
            return status
        time.sleep(0.05)  # between reads only


def test_jobs_over_the_total_cap_wait_and_start_when_a_slot_frees(
    project: Project, client_for: Client, gated: Gates
) -> None:
    from django.test import override_settings

    store = JobStore(project.job_dir)
    gated.add("finish-1")
    researcher, other = client_for(RESEARCHER), client_for(OTHER_RESEARCHER)
    with override_settings(EXPORTKIT_MAX_RUNNING_JOBS=1, EXPORTKIT_MAX_RUNNING_JOBS_PER_USER=5):
        first = start_job(
            researcher,
            template="upload",
            upload=upload_file("g.toml", gated_template(gated.folder)),
        )
        gated.arrive("finish-1")
        second = start_job(other)
        status = _status(other, second)
        assert status["state"] == WAITING
        assert status["label"] == "waiting"
        assert status["progress_text"] == "waiting for a free slot (1 at once, 5 per user)"
        html = other.get(f"{PAGE}?job={second}").content.decode()
        assert 'data-state="waiting"' in html
        assert "waiting for a free slot" in html
        assert _status(researcher, first)["label"] == "running"
        gated.release("finish-1")
        # the first job's worker starts the second when it ends
        assert wait_settled(researcher, first)["state"] == DONE
        assert _wait_for_state(store, second, WAITING)["state"] != WAITING
        assert wait_settled(other, second)["state"] == DONE


def test_jobs_over_the_per_user_cap_wait_while_others_run(
    project: Project, client_for: Client, gated: Gates
) -> None:
    from django.test import override_settings

    gated.add("finish-1")
    researcher, other = client_for(RESEARCHER), client_for(OTHER_RESEARCHER)
    with override_settings(EXPORTKIT_MAX_RUNNING_JOBS=3, EXPORTKIT_MAX_RUNNING_JOBS_PER_USER=1):
        first = start_job(
            researcher,
            template="upload",
            upload=upload_file("g.toml", gated_template(gated.folder)),
        )
        gated.arrive("finish-1")
        second = start_job(researcher)
        assert _status(researcher, second)["state"] == WAITING
        # another user's job runs meanwhile
        third = start_job(other)
        assert wait_settled(other, third)["state"] == DONE
        assert _status(researcher, second)["state"] == WAITING
        # a waiting job can be cancelled; it never ran
        fourth = start_job(researcher)
        assert researcher.post(f"{PAGE}jobs/{fourth}/cancel").status_code == 302
        cancelled = _status(researcher, fourth)
        assert cancelled["state"] == FAILED
        assert cancelled["error"] == "terminated before it started; no output was written"
        gated.release("finish-1")
        assert wait_settled(researcher, first)["state"] == DONE
        assert wait_settled(researcher, second)["state"] == DONE


# -- file modes ----------------------------------------------------------------------------------


def test_job_files_are_private(project: Project, client_for: Client, tmp_path: Path) -> None:
    from django.test import override_settings

    root = tmp_path / "jobs"
    root.mkdir(mode=0o755)
    root.chmod(0o755)  # an existing root, open to others
    client = client_for(RESEARCHER)
    with override_settings(EXPORTKIT_JOB_DIR=str(root)):
        preview = start_job(
            client, "_preview", template="upload", upload=upload_file("t.toml", _key_ok())
        )
        assert wait_settled(client, preview)["state"] == CHECKED
        assert client.post(f"{PAGE}jobs/{preview}/run").status_code == 302
        assert wait_settled(client, preview)["state"] == DONE
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    names = set()
    for path in root.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        names.add(path.name)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    for name in (
        "job.json",
        "status.json",
        "template.toml",
        "worker.log",
        "worker.pid",
        "export.zip",
        "export.claimed",
        f"{SLUG}.csv",
        "manifest.json",
        "out",
    ):
        assert name in names, name


# -- the admin's 403 and 404 ---------------------------------------------------------------------


def test_403_and_404_are_pages_of_the_admin(project: Project, client_for: Client) -> None:
    researcher = client_for(RESEARCHER)
    job_id = start_job(researcher, "_preview")
    wait_settled(researcher, job_id)
    cases = [
        (client_for(NO_PERMISSION), "get", PAGE, 403),
        (client_for(NO_PERMISSION), "get", f"{PAGE}jobs/{job_id}/status", 403),
        (client_for(OTHER_RESEARCHER), "get", f"{PAGE}?job={job_id}", 404),
        (client_for(OTHER_RESEARCHER), "get", f"{PAGE}jobs/{job_id}/download", 404),
        (researcher, "get", f"{PAGE}jobs/not-a-job/status", 404),
        (researcher, "get", f"{PAGE}jobs/{'0' * 32}/status", 404),
        (client_for(RESEARCHER, enforce_csrf_checks=True), "post", PAGE, 403),
    ]
    for client, method, url, code in cases:
        response = getattr(client, method)(url)
        assert response.status_code == code, (url, response.status_code)
        html = response.content.decode()
        _looks_like_the_admin(html)
        assert f"<h1>{code} " in html
        assert job_id not in html


# -- progress ------------------------------------------------------------------------------------


def test_progress_names_the_phase_with_percent_and_eta(
    project: Project, client_for: Client, gated: Gates
) -> None:
    """A previewed export of two blocks, stopped at the gates: while the second block is
    read, the page shows the rows of the total (from the preview) with a percentage and
    an ETA; while the sink writes, the phase; the state is "running" throughout."""
    client = client_for(RESEARCHER)
    blocks = [SLUG, "bat-ref"]
    job_id = start_job(
        client,
        "_preview",
        blocks=blocks,
        template="upload",
        upload=upload_file("g.toml", gated_template(gated.folder)),
    )
    preview = wait_settled(client, job_id)
    assert preview["state"] == CHECKED
    total = preview["preview"]["documents"]["trial"]
    gated.add("results-2", "finish-2")
    client.post(f"{PAGE}jobs/{job_id}/run")

    gated.arrive("results-2")  # the first block is read and written; the second is read
    status = _status(client, job_id)
    assert (status["state"], status["label"], status["phase"]) == (RUNNING, "running", "reading")
    first = status["rows"]
    assert 0 < first < total
    assert status["expected"] == total
    assert status["percent"] == round(100 * first / total, 1)
    assert status["bar"] == status["percent"]
    assert status["eta"]
    assert status["progress_text"].startswith(
        f"reading: {first:,} of {total:,} trial results ({status['percent']}%), "
    )
    assert f"ETA {status['eta']}" in status["progress_text"]
    html = unescape(client.get(f"{PAGE}?job={job_id}").content.decode())
    assert status["progress_text"] in html
    assert f'value="{status["percent"]}"' in html

    gated.release("results-2")
    gated.arrive("finish-2")
    status = _status(client, job_id)
    assert (status["label"], status["phase"]) == ("running", "writing")
    assert status["progress_text"] == f"writing the outputs ({total:,} trial results read)"
    assert status["bar"] is None
    gated.release("finish-2")
    done = wait_settled(client, job_id)
    assert done["state"] == DONE
    assert done["rows"] == total

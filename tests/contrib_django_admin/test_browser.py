"""The export page in headless Chromium against the dev server: a researcher logs in,
previews and runs ``muscle-classic:long_json`` on block ``tafc-dvorak`` of the 2024
reference database and downloads the zip, whose CSV equals MUSCLE's own; a staff user
without the permission gets 403; a running export shows its phase, percentage and ETA.
Every step is saved as a screenshot."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import REFERENCE
from contrib_django_admin.gate_sink import Gates, gated_template
from contrib_django_admin.helpers import (
    FAILING,
    NO_PERMISSION,
    PASSWORD,
    RESEARCHER,
    USER_PASSWORD,
    Screens,
    copy_for_docs,
)
from sinks.golden import read_table, table_differences

pytestmark = [pytest.mark.pg, pytest.mark.browser]

SLUG = "tafc-dvorak"
TEMPLATE = "builtin:muscle-classic:long_json"
#: the builtin template names its manifest after itself and the block
MANIFEST = f"{SLUG}-muscle-classic-long_json.manifest.json"
GOLDEN = REFERENCE / "v2024" / "csv" / f"{SLUG}__long_json.csv"


def _wait(
    condition: Callable[[], Any], what: str = "", unless: Callable[[], Any] | None = None
) -> Any:
    """Poll ``condition`` until it holds and return its value; fail as soon as ``unless``
    holds (the page settled the other way). No deadline: the page's change is the event."""
    while True:
        value = condition()
        if value:
            return value
        if unless is not None and unless():
            pytest.fail(f"waiting for {what or condition}: the page settled otherwise")
        time.sleep(0.1)  # between polls only


def _state_is(driver: Any, state: str) -> Any:
    """Wait until the job's state is ``state``; fail if the job failed instead."""
    return _wait(
        lambda: _text(driver, "#job-state") == state,
        what=f"job state {state}",
        unless=lambda: state != "failed" and _text(driver, "#job-state") == "failed",
    )


def _text(driver: Any, css: str) -> str:
    """The text of the first element matching ``css``, read in one step in the page (the
    page reloads itself when a job settles, so an element found may be gone a moment
    later); textContent, because CSS shows the state in capitals."""
    from selenium.common.exceptions import WebDriverException

    script = "var e = document.querySelector(arguments[0]); return e ? e.textContent : '';"
    try:
        return str(driver.execute_script(script, css) or "").strip()
    except WebDriverException:  # between two documents
        return ""


def _log_in(driver: Any, base: str, username: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/admin/login/?next=/admin/")
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(USER_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # the index itself, not the login page (whose ?next=/admin/ ends the same way)
    _wait(
        lambda: urllib.parse.urlsplit(driver.current_url)[2:4] == ("/admin/", ""),
        what="the admin index",
        unless=lambda: driver.find_elements(By.CSS_SELECTOR, ".errornote"),
    )


def _fetch(driver: Any, url: str) -> tuple[int, bytes]:
    """GET ``url`` with the browser's session cookie, outside the browser (for the status
    code, which the browser does not expose)."""
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    request = urllib.request.Request(url, headers={"Cookie": cookies})
    try:
        with urllib.request.urlopen(request) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def test_researcher_exports_a_block(
    live_server: str, browser: Any, screens: Screens, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    _log_in(driver, live_server, RESEARCHER)
    shot = screens("admin-index")
    # The admin index links to the page for a user with the permission.
    driver.find_element(By.LINK_TEXT, "Export page").click()
    _wait(lambda: "/admin/exportkit/" in driver.current_url, what="the export page")
    assert "Export results" in driver.title
    shot = screens("export-form")
    copy_for_docs(shot, "admin-page-form.png")

    driver.find_element(By.CSS_SELECTOR, f"input[name=blocks][value='{SLUG}']").click()
    Select(driver.find_element(By.ID, "id_template")).select_by_value(TEMPLATE)
    screens("block-and-template-picked")
    driver.find_element(By.ID, "submit-preview").click()

    # The page polls the status and reloads itself when the preview is ready.
    _state_is(driver, "checked")
    header, rows = read_table(GOLDEN)
    preview = driver.find_element(By.ID, "job-preview")
    assert f"{SLUG}-muscle-classic-long_json.csv" in preview.text
    assert _text(driver, "#job-preview td.rows") == str(len(rows))
    assert f"{len(header)} columns" in preview.text
    shot = screens("preview")
    copy_for_docs(shot, "admin-page-preview.png")

    driver.find_element(By.ID, "job-run").click()
    _state_is(driver, "done")
    link = driver.find_element(By.ID, "job-download")
    shot = screens("done")
    copy_for_docs(shot, "admin-page-done.png")
    assert PASSWORD not in driver.page_source

    link.click()
    downloads: Path = driver.downloads
    zips = _wait(
        lambda: (
            [p for p in downloads.glob("*.zip") if p.stat().st_size > 0]
            and not list(downloads.glob("*.crdownload"))
            and list(downloads.glob("*.zip"))
        ),
        what="the download",
    )
    (archive_path,) = zips
    assert archive_path.name.startswith(f"{SLUG}-muscle-classic_long_json-")
    with zipfile.ZipFile(archive_path) as archive:
        names = set(archive.namelist())
        assert names == {
            f"{SLUG}-muscle-classic-long_json.csv",
            MANIFEST,
            "datapackage.json",
            "codebook.md",
        }
        archive.extractall(tmp_path / "unzipped")
    got = tmp_path / "unzipped" / f"{SLUG}-muscle-classic-long_json.csv"
    assert table_differences(got, GOLDEN) == []
    assert len(read_table(got)[1]) == len(rows) > 0
    manifest = json.loads((tmp_path / "unzipped" / MANIFEST).read_text("utf-8"))
    assert {o["path"] for o in manifest["outputs"]} == names - {MANIFEST}
    assert PASSWORD not in json.dumps(manifest)
    # The page after the download: the job stays listed, with its download.
    driver.refresh()
    assert "done" in driver.find_element(By.ID, "recent-jobs").text
    screens("after-reload")


def test_staff_without_the_permission_gets_403(
    live_server: str, browser: Any, screens: Screens, client_for: Callable[..., Any]
) -> None:
    from selenium.webdriver.common.by import By

    from contrib_django_admin.helpers import wait_settled

    # A finished job of a researcher: its status and download must stay closed too.
    researcher = client_for(RESEARCHER)
    response = researcher.post(
        "/admin/exportkit/", {"blocks": [SLUG], "template": TEMPLATE, "_export": "1"}
    )
    job_id = response.headers["Location"].rsplit("=", 1)[1]
    assert wait_settled(researcher, job_id)["state"] == "done"

    driver = browser
    _log_in(driver, live_server, NO_PERMISSION)
    screens("admin-index-without-link")
    assert not driver.find_elements(By.LINK_TEXT, "Export page")
    driver.get(f"{live_server}/admin/exportkit/")
    assert "403" in driver.find_element(By.TAG_NAME, "h1").text
    screens("page-forbidden")
    driver.get(f"{live_server}/admin/exportkit/jobs/{job_id}/status")
    screens("status-forbidden")
    for path in ("", f"jobs/{job_id}/status", f"jobs/{job_id}/download", f"?job={job_id}"):
        status, body = _fetch(driver, f"{live_server}/admin/exportkit/{path}")
        assert status == 403, (path, status)
        assert SLUG.encode() not in body


def test_an_uploaded_template_that_fails_shows_the_error_line(
    live_server: str, browser: Any, screens: Screens, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    upload = tmp_path / "pseudonymised.toml"
    upload.write_text(FAILING, encoding="utf-8")
    driver = browser
    _log_in(driver, live_server, RESEARCHER)
    driver.get(f"{live_server}/admin/exportkit/?block={SLUG}")
    assert driver.find_element(By.CSS_SELECTOR, f"input[value='{SLUG}']").is_selected()
    Select(driver.find_element(By.ID, "id_template")).select_by_value("upload")
    driver.find_element(By.ID, "id_upload").send_keys(str(upload))
    screens("upload-picked")
    driver.find_element(By.ID, "submit-run").click()
    _state_is(driver, "failed")
    line = _text(driver, "#job-error")
    assert line == (
        "exportkit: error: pseudonymised.toml: privacy.key_env: the environment variable"
        " EXPORTKIT_ADMIN_TEST_NO_SUCH_KEY is not set (or empty)"
    )
    assert not driver.find_elements(By.ID, "job-download")
    shot = screens("failed")
    copy_for_docs(shot, "admin-page-failed.png")


def test_a_running_export_shows_its_phase_percentage_and_eta(
    live_server: str, browser: Any, screens: Screens, tmp_path: Path
) -> None:
    """A previewed export of two blocks through the gated sink: held while the second
    block is read, the page says "running" with the rows of the preview's total, the
    percentage, the ETA and a filled bar; held while the sink writes, it names that
    phase."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    gates = Gates(tmp_path / "gates")
    upload = tmp_path / "gated.toml"
    upload.write_text(gated_template(gates.folder), encoding="utf-8")
    driver = browser
    wait = WebDriverWait(driver, 60, poll_frequency=0.1)
    try:
        _log_in(driver, live_server, RESEARCHER)
        driver.get(f"{live_server}/admin/exportkit/?block={SLUG}&block=bat-ref")
        Select(driver.find_element(By.ID, "id_template")).select_by_value("upload")
        driver.find_element(By.ID, "id_upload").send_keys(str(upload))
        driver.find_element(By.ID, "submit-preview").click()
        wait.until(lambda d: _text(d, "#job-state") == "checked")
        gates.add("results-2", "finish-2")
        driver.find_element(By.ID, "job-run").click()

        gates.arrive("results-2")
        wait.until(
            lambda d: (
                _text(d, "#job-state") == "running" and "ETA" in _text(d, "#job-progress-text")
            )
        )
        line = _text(driver, "#job-progress-text")
        found = re.fullmatch(
            r"reading: ([\d,]+) of ([\d,]+) trial results \(([\d.]+)%\),"
            r" [\d,]+ rows/s, ETA \d+:\d\d",
            line,
        )
        assert found, line
        done, total = (int(found[i].replace(",", "")) for i in (1, 2))
        assert 0 < done < total
        # the job's row in "Your recent jobs" follows too
        assert _text(driver, "#recent-jobs tr.selected td.recent-state") == "running"
        bar = driver.find_element(By.ID, "job-progress").get_attribute("value")
        assert float(bar) == float(found[3]) > 0
        screens("reading")

        gates.release("results-2")
        gates.arrive("finish-2")
        wait.until(lambda d: _text(d, "#job-progress-text").startswith("writing the outputs"))
        assert _text(driver, "#job-state") == "running"
        assert _text(driver, "#job-progress-text") == (
            f"writing the outputs ({total:,} trial results read)"
        )
        screens("writing")

        gates.release("finish-2")
        wait.until(lambda d: _text(d, "#job-state") == "done")
        screens("done")
    finally:
        gates.close()

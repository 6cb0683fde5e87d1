"""Constants and helpers of the export page's tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import attrs

from conftest import ROOT

SETTINGS = "contrib_django_admin.project.settings"
PAGE = "/admin/exportkit/"
SLUG = "tafc-dvorak"
TEMPLATE = "builtin:muscle-classic:long_json"
TESTS = ROOT / "tests"
#: Set as the database's password; the server trusts local connections and never asks for
#: it, so the tests can look for it everywhere it must not be.
PASSWORD = "exportkit-Secret-pw-7Qz"
USER_PASSWORD = "not-a-real-password-1"
RESEARCHER = "ek_researcher"
NO_PERMISSION = "ek_staff_only"
OTHER_RESEARCHER = "ek_other_researcher"
SCREENSHOTS = Path(
    os.environ.get("EXPORTKIT_SCREENSHOTS", ROOT / "tests" / "artifacts" / "screenshots")
)
CHROMIUM = os.environ.get("EXPORTKIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("EXPORTKIT_CHROMEDRIVER", "/usr/bin/chromedriver")

FOLDER_TEMPLATE = """\
name = "trials-long"
description = "Trial results of the block, one row each"

[[sinks]]
type = "csv-long"
path = "{block}-trials.csv"
"""


@attrs.frozen
class Project:
    """The configured test project.

    :param dsn: the restored database (no password in it).
    :param env: the environment a dev server of the project needs.
    :param job_dir: ``EXPORTKIT_JOB_DIR``.
    :param template_dir: the one folder of ``EXPORTKIT_TEMPLATE_DIRS``.
    """

    dsn: str
    env: dict[str, str]
    job_dir: Path
    template_dir: Path


#: An uploaded template that fails at run time: its pseudonymisation key is not set.
FAILING = """\
name = "pseudonymised"
[privacy]
pseudonymise = ["unique_hash"]
key_env = "EXPORTKIT_ADMIN_TEST_NO_SUCH_KEY"

[[sinks]]
type = "csv-long"
path = "{block}.csv"
"""


def upload_file(name: str, text: str | bytes) -> Any:
    """A file for the form's ``upload`` field."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = text.encode("utf-8") if isinstance(text, str) else text
    return SimpleUploadedFile(name, data, content_type="application/toml")


def start_job(client: Any, action: str = "_export", **fields: Any) -> str:
    """Submit the form (``tafc-dvorak``, the default template unless ``fields`` say
    otherwise); return the new job's id."""
    data = {"blocks": [SLUG], "template": TEMPLATE, action: "1", **fields}
    response = client.post(PAGE, data)
    assert response.status_code == 302, form_errors(response)
    location: str = response.headers["Location"]
    match = re.fullmatch(r"/admin/exportkit/\?job=([0-9a-f]{32})", location)
    assert match, location
    return match[1]


def form_errors(response: Any) -> str:
    """The form's error lists in a page, joined."""
    page = response.content.decode()
    return " | ".join(re.findall(r'<ul class="errorlist"[^>]*>(.*?)</ul>', page, re.S))


def post_form_error(client: Any, **fields: Any) -> str:
    """Submit an upload that the form must refuse; return its errors."""
    data = {"blocks": [SLUG], "template": "upload", "_export": "1", **fields}
    response = client.post(PAGE, data)
    assert response.status_code == 200, "the form should be shown again with an error"
    return form_errors(response)


def unescape(text: str) -> str:
    """``text`` with HTML's character references resolved."""
    return html.unescape(text)


def wait_settled(client: Any, job_id: str) -> dict[str, Any]:
    """Poll a job's status endpoint until it settles (its worker ended, whatever the
    outcome); return the status. No deadline: a settled job is the event waited for."""
    url = f"/admin/exportkit/jobs/{job_id}/status"
    while True:
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        status: dict[str, Any] = response.json()
        if status["settled"]:
            return status
        time.sleep(0.1)  # between polls only


def missing_browser() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Screens:
    """Saves numbered screenshots of one test into the screenshot folder."""

    def __init__(self, driver: Any, prefix: str) -> None:
        self.driver = driver
        self.prefix = prefix
        self.count = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for old in SCREENSHOTS.glob(f"{prefix}-*.png"):
            old.unlink()

    def __call__(self, step: str) -> Path:
        self.count += 1
        path = SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{step}.png"
        # The whole page, not only the window (Chromium's DevTools capture).
        import base64

        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": min(size["height"], 4000),
                    "scale": 1,
                },
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def copy_for_docs(path: Path, name: str) -> None:
    """With ``EXPORTKIT_DOCS_SCREENSHOTS=1``, copy a screenshot to docs/images/ (used to
    refresh the documentation's pictures, never in CI)."""
    if os.environ.get("EXPORTKIT_DOCS_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "images" / name
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, target)

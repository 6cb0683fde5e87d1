"""The export page's test project: a database restored from MUSCLE's 2024 reference dump,
Django set up in this process (for the test Client), users with and without the permission,
and, for the browser tests, the dev server in a subprocess and headless Chromium.

Under ``CI=true`` a missing Chromium, ChromeDriver or selenium fails the browser tests;
elsewhere it skips them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import REFERENCE
from contrib_django_admin.helpers import (
    CHROMEDRIVER,
    CHROMIUM,
    FOLDER_TEMPLATE,
    NO_PERMISSION,
    OTHER_RESEARCHER,
    PASSWORD,
    RESEARCHER,
    SETTINGS,
    TESTS,
    USER_PASSWORD,
    Project,
    Screens,
    free_port,
    missing_browser,
)


@pytest.fixture(scope="session")
def project(
    pg_database: Callable[[Path | None], str], tmp_path_factory: pytest.TempPathFactory
) -> Project:
    """Django configured in this process against a fresh copy of the 2024 dump, the app
    migrated, and three users: a researcher with the permission, another one, and a staff
    user without it."""
    pytest.importorskip("django")
    from django.conf import settings

    if settings.configured and os.environ.get("DJANGO_SETTINGS_MODULE") != SETTINGS:
        pytest.fail("Django was already configured by another test module in this process")
    dsn = pg_database(REFERENCE / "v2024" / "muscle_2024.sql")
    job_dir = tmp_path_factory.mktemp("exportkit-jobs")
    template_dir = tmp_path_factory.mktemp("exportkit-templates")
    (template_dir / "trials.toml").write_text(FOLDER_TEMPLATE, encoding="utf-8")
    env = {
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "EXPORTKIT_ADMIN_TEST_DSN": dsn,
        "EXPORTKIT_ADMIN_TEST_PASSWORD": PASSWORD,
        "EXPORTKIT_JOB_DIR": str(job_dir),
        "EXPORTKIT_TEMPLATE_DIRS": str(template_dir),
    }
    # The settings module reads these when Django sets up; they stay set only for that,
    # apart from DJANGO_SETTINGS_MODULE, which Django itself reads again later.
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
    finally:
        for key, value in saved.items():
            if key == "DJANGO_SETTINGS_MODULE":
                continue
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    _make_users()
    return Project(dsn=dsn, env=env, job_dir=job_dir, template_dir=template_dir)


def _make_users() -> None:
    from django.contrib.auth.models import Permission, User

    permission = Permission.objects.get(codename="run_export")
    for name, allowed in ((RESEARCHER, True), (OTHER_RESEARCHER, True), (NO_PERMISSION, False)):
        user, _ = User.objects.get_or_create(username=name, defaults={"is_staff": True})
        user.set_password(USER_PASSWORD)
        user.save()
        if allowed:
            user.user_permissions.add(permission)


@pytest.fixture
def client_for(project: Project) -> Callable[..., Any]:
    """``client_for(username, enforce_csrf_checks=False)``: a logged-in test Client."""
    from django.test import Client

    def make(username: str, **kwargs: Any) -> Any:
        client = Client(**kwargs)
        assert client.login(username=username, password=USER_PASSWORD)
        return client

    return make


# -- the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def live_server(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test project under Django's dev server in a subprocess; yields its base URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("runserver") / "runserver.log"
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    # The gated sink (gate_sink.py) lets the progress test hold a job where it looks.
    plugins = "contrib_django_admin.gate_sink"
    env = {**os.environ, **project.env, "PYTHONPATH": path, "EXPORTKIT_PLUGINS": plugins}
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "runserver",
                f"127.0.0.1:{port}",
                "--noreload",
                "--insecure",  # serve the admin's CSS with DEBUG off
            ],
            env=env,
            cwd=TESTS,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # until the server answers, or ends (no deadline: its answer is the event)
        while True:
            try:
                with urllib.request.urlopen(f"{url}/admin/login/"):
                    break
            except (urllib.error.URLError, ConnectionError):
                if server.poll() is not None:
                    pytest.fail("the dev server did not start:\n" + log.read_text())
                time.sleep(0.2)  # between polls only
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium through ChromeDriver, downloading into ``tmp_path/downloads``."""
    problem = missing_browser()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screens(browser: Any, request: pytest.FixtureRequest) -> Screens:
    """``screens("step")`` saves a screenshot named after the test and the step."""
    return Screens(browser, request.node.name.removeprefix("test_").replace("_", "-"))

"""A minimal Django project with the export page, for the tests: the admin, auth and the
app, against a database restored from MUSCLE's reference dump.

The database and the folders come from the environment, which the tests' fixtures set
(``EXPORTKIT_ADMIN_TEST_DSN``, ``EXPORTKIT_ADMIN_TEST_PASSWORD``, ``EXPORTKIT_JOB_DIR``,
``EXPORTKIT_TEMPLATE_DIRS``), so that the dev server in a subprocess sees the same.
"""

from __future__ import annotations

import os
import urllib.parse

_dsn = urllib.parse.urlsplit(
    os.environ.get("EXPORTKIT_ADMIN_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
)

SECRET_KEY = "exportkit-admin-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "contrib_django_admin.project.urls"
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "aml_exportkit.contrib.django",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _dsn.path.lstrip("/"),
        "USER": _dsn.username or "postgres",
        # The server trusts local connections and never asks for it: the tests check that
        # this value reaches no page, status file or worker command line.
        "PASSWORD": os.environ.get("EXPORTKIT_ADMIN_TEST_PASSWORD", ""),
        "HOST": _dsn.hostname or "127.0.0.1",
        "PORT": str(_dsn.port or 5432),
    }
}

EXPORTKIT_JOB_DIR = os.environ.get("EXPORTKIT_JOB_DIR") or None
EXPORTKIT_TEMPLATE_DIRS = [
    d for d in os.environ.get("EXPORTKIT_TEMPLATE_DIRS", "").split(os.pathsep) if d
]
EXPORTKIT_JOB_MAX_AGE = 3600
EXPORTKIT_MAX_TEMPLATE_BYTES = 16 * 1024
# The failing upload of the tests names this (unset) variable as its key.
EXPORTKIT_ALLOWED_KEY_ENV = ["EXPORTKIT_ADMIN_TEST_NO_SUCH_KEY"]

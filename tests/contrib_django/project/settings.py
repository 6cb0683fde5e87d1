"""The smallest Django project with the app: only ``aml_exportkit.contrib.django``, and
``DATABASES`` pointing at a database restored from MUSCLE's reference dump.

The tests run ``python -m django`` in a subprocess with this module as
``DJANGO_SETTINGS_MODULE``; the database comes from the environment they set
(``EXPORTKIT_DJANGO_TEST_DSN``, ``EXPORTKIT_DJANGO_TEST_PASSWORD``,
``EXPORTKIT_DJANGO_TEST_ENGINE``).
"""

from __future__ import annotations

import os
import urllib.parse

_dsn = urllib.parse.urlsplit(
    os.environ.get("EXPORTKIT_DJANGO_TEST_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
)

SECRET_KEY = "exportkit-command-tests-only"
USE_TZ = True
INSTALLED_APPS = ["aml_exportkit.contrib.django"]
DATABASES = {
    "default": {
        "ENGINE": os.environ.get("EXPORTKIT_DJANGO_TEST_ENGINE", "django.db.backends.postgresql"),
        "NAME": _dsn.path.lstrip("/"),
        "USER": _dsn.username or "postgres",
        # The server trusts local connections and never asks for it: the tests check that it
        # is never shown.
        "PASSWORD": os.environ.get("EXPORTKIT_DJANGO_TEST_PASSWORD", ""),
        "HOST": _dsn.hostname or "127.0.0.1",
        "PORT": str(_dsn.port or 5432),
    },
    "empty": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "exportkit_no_such_database",
        "USER": "postgres",
        "PASSWORD": os.environ.get("EXPORTKIT_DJANGO_TEST_PASSWORD", ""),
        "HOST": _dsn.hostname or "127.0.0.1",
        "PORT": str(_dsn.port or 5432),
    },
}

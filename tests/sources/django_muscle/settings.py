"""Django settings for loading fixtures into a MUSCLE database.

The database comes from the environment variable ``EXPORTKIT_DJANGO_DSN``
(``postgresql://user[:password]@host:port/dbname``).
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

_dsn = urlsplit(os.environ["EXPORTKIT_DJANGO_DSN"])

SECRET_KEY = "exportkit-tests-only"
DEBUG = False
# As MUSCLE: aware datetimes, Amsterdam as the display zone (storage is UTC either way).
USE_TZ = True
TIME_ZONE = "Europe/Amsterdam"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django_muscle.experiment",
    "django_muscle.section",
    "django_muscle.participant",
    "django_muscle.session",
    "django_muscle.result",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _dsn.path.lstrip("/"),
        "USER": unquote(_dsn.username or ""),
        "PASSWORD": unquote(_dsn.password or ""),
        "HOST": _dsn.hostname or "",
        "PORT": str(_dsn.port or ""),
    }
}

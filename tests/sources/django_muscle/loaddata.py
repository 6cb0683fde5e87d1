"""Run Django's ``loaddata`` on fixture files: ``python loaddata.py DSN FILE...``.

Run as a subprocess, so that Django's global settings and app registry never touch the
test process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    """Load the fixture files ``argv[1:]`` into the database ``argv[0]``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ["EXPORTKIT_DJANGO_DSN"] = argv[0]
    os.environ["DJANGO_SETTINGS_MODULE"] = "django_muscle.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("loaddata", *argv[1:], verbosity=1)


if __name__ == "__main__":
    main(sys.argv[1:])

"""``python manage.py exportkit``: run aml_exportkit against the project's own database.

::

    python manage.py exportkit run TEMPLATE [--block SLUG ...] [--out DIR] [--database ALIAS]
    python manage.py exportkit inspect [--database ALIAS] [--json]
    python manage.py exportkit validate TEMPLATE

The source is the PostgreSQL database of ``settings.DATABASES[ALIAS]`` (default
``default``), whatever the template's ``[source] uri`` says. Its password goes to the
database source inside this process only: it is never printed, and it is removed from any
message that might hold it. Our errors become ``CommandError`` with the one-line message
and the exit code of ``exportkit`` (docs/exit-codes.md). ``docs/embedding.md`` documents it.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError

from aml_exportkit.contrib.django.conf import uri_from_database_settings
from aml_exportkit.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, ExportkitError
from aml_exportkit.pipeline import load_template, open_source, run_export, validate_template
from aml_exportkit.plugins import get_plugin_manager, load_registry
from aml_exportkit.text import count


class Command(BaseCommand):
    """Export MUSCLE data from this project's database with aml_exportkit templates."""

    help = (
        "Export MUSCLE data from this project's database (settings.DATABASES) with"
        " aml_exportkit templates: run, inspect, validate."
    )
    # The export reads MUSCLE's tables; the project's own checks are not its business, and a
    # failing check in an unrelated app must not block an export.
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: Any) -> None:
        """The three actions and their options."""
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        run = actions.add_parser("run", help="Run a template against the database.")
        run.add_argument("template", help="A template file or a builtin template's name.")
        run.add_argument(
            "--block",
            dest="blocks",
            action="append",
            default=[],
            metavar="SLUG",
            help="A block slug (repeatable); overrides [source] blocks.",
        )
        run.add_argument(
            "--out",
            dest="out_dir",
            metavar="DIR",
            help="Folder for relative sink paths (default: the template's folder).",
        )
        run.add_argument(
            "--since",
            metavar="MANIFEST",
            help="An earlier run's manifest.json: export only the sessions new or changed since.",
        )
        run.add_argument("--quiet", "-q", action="store_true", help="Print nothing on success.")
        inspect = actions.add_parser("inspect", help="Show the blocks and counts it holds.")
        inspect.add_argument("--json", dest="as_json", action="store_true", help="Print JSON.")
        validate = actions.add_parser("validate", help="Check a template without running it.")
        validate.add_argument("template", help="A template file or a builtin template's name.")
        for sub in (run, inspect):
            sub.add_argument(
                "--database",
                default="default",
                metavar="ALIAS",
                help="The DATABASES alias to export from (default: default).",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the action; every failure becomes a one-line CommandError."""
        secrets: list[str] = []
        try:
            action = options["action"]
            if action == "validate":
                self.validate(options["template"])
                return
            uri, secrets = self.database_uri(options["database"])
            if action == "inspect":
                self.inspect(uri, options["as_json"])
            else:
                self.run(
                    uri,
                    options["template"],
                    options["blocks"],
                    options["out_dir"],
                    options["quiet"],
                    options["since"],
                )
        except CommandError as exc:
            raise CommandError(_scrub(str(exc), secrets), returncode=exc.returncode) from None
        except ExportkitError as exc:
            raise CommandError(_scrub(str(exc), secrets), returncode=exc.exit_code) from None
        except KeyboardInterrupt:
            raise CommandError(
                "interrupted; no output was written", returncode=EXIT_INTERRUPTED
            ) from None
        except Exception as exc:
            # one line, as exportkit prints it; a traceback could show the password
            raise CommandError(
                _scrub(
                    f"internal error ({type(exc).__name__}: {exc}); no output was written",
                    secrets,
                ),
                returncode=EXIT_INTERNAL,
            ) from None

    # -- the database ------------------------------------------------------------------------

    def database_uri(self, alias: str) -> tuple[str, list[str]]:
        """The ``postgresql://`` URI of ``DATABASES[alias]``, and the texts to keep out of
        messages (the password, raw and as quoted in the URI)."""
        from django.conf import settings

        databases = getattr(settings, "DATABASES", {}) or {}
        if alias not in databases:
            known = ", ".join(sorted(databases)) or "none"
            raise CommandError(
                f"no database {alias!r} in settings.DATABASES (known: {known})",
                returncode=EXIT_USAGE,
            )
        entry = databases[alias]
        try:
            uri = uri_from_database_settings(entry)
        except ValueError as exc:
            raise CommandError(f"DATABASES[{alias!r}]: {exc}", returncode=EXIT_USAGE) from None
        password = str(entry.get("PASSWORD") or "")
        secrets = [password, urllib.parse.quote(password, safe="")] if password else []
        return uri, secrets

    # -- actions -----------------------------------------------------------------------------

    def run(
        self,
        uri: str,
        template: str,
        blocks: Sequence[str],
        out_dir: str | None,
        quiet: bool,
        since: str | None = None,
    ) -> None:
        """``run``: the template, with the database as its source (``--since``: only what
        is new or changed since an earlier run, as ``exportkit run --since``)."""
        manager = get_plugin_manager()
        loaded = load_template(template, registry=load_registry(manager))
        report = run_export(
            loaded,
            source=uri,
            blocks=list(blocks) or None,
            out_dir=Path(out_dir) if out_dir else None,
            plugin_manager=manager,
            since=since,
        )
        if not quiet:
            for output in report.outputs:
                self.stdout.write(f"wrote {output.path} ({count(output.rows, 'row')})")

    def inspect(self, uri: str, as_json: bool) -> None:
        """``inspect``: the blocks and row counts, as ``exportkit inspect`` shows them."""
        with open_source(uri, registry=load_registry(get_plugin_manager())) as opened:
            inventory = opened.inspect()
        if as_json:
            self.stdout.write(json.dumps(inventory.as_json(), indent=2, ensure_ascii=False))
            return
        for line in inventory.lines():
            self.stdout.write(line)

    def validate(self, template: str) -> None:
        """``validate``: load and check the template."""
        loaded = validate_template(template, registry=load_registry(get_plugin_manager()))
        kinds = ", ".join(sink.type for sink in loaded.sinks)
        self.stdout.write(f"{loaded.file}: ok ({len(loaded.sinks)} sink(s): {kinds})")


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text

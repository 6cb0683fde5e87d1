"""The export page's settings, the database it exports from, and its template choices.

Settings (all optional):

- ``EXPORTKIT_TEMPLATE_DIRS``: folders whose ``*.toml`` files the page offers as templates;
- ``EXPORTKIT_JOB_DIR``: where job folders live (default: ``aml_exportkit_jobs`` in the
  system's temporary folder);
- ``EXPORTKIT_JOB_MAX_AGE``: seconds after which a finished job and its download are
  deleted (default 86400);
- ``EXPORTKIT_MAX_TEMPLATE_BYTES``: the largest template upload (default 256 KiB);
- ``EXPORTKIT_DATABASE``: the ``DATABASES`` alias to export from (default ``default``;
  a read-only replica's alias keeps the export's load off MUSCLE's primary);
- ``EXPORTKIT_ALLOWED_KEY_ENV``: the environment variables an uploaded template may name
  as its ``[privacy] key_env`` (default none);
- ``EXPORTKIT_MAX_RUNNING_JOBS`` and ``EXPORTKIT_MAX_RUNNING_JOBS_PER_USER``: how many
  jobs run at once, in total and per user (default 4 and 2; ``None``: no limit); the
  others wait.
"""

from __future__ import annotations

import tempfile
import tomllib
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ...plugins import Registry
from .jobstore import JobLimits, JobStore

DEFAULT_MAX_AGE = 86400
DEFAULT_MAX_TEMPLATE_BYTES = 256 * 1024
DEFAULT_MAX_RUNNING_JOBS = 4
DEFAULT_MAX_RUNNING_JOBS_PER_USER = 2

#: libpq connection parameters that a Django ``OPTIONS`` dict may carry and that mean the
#: same to the worker's connection.
LIBPQ_OPTIONS = (
    "sslmode",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslcrl",
    "connect_timeout",
    "options",
    "target_session_attrs",
    "service",
    "passfile",
    "gssencmode",
    "krbsrvname",
)


def _settings() -> Any:
    from django.conf import settings

    return settings


def setting(name: str, default: Any) -> Any:
    """``settings.<name>``, or ``default`` when it is not set."""
    return getattr(_settings(), name, default)


def job_store() -> JobStore:
    """The job store under ``EXPORTKIT_JOB_DIR``."""
    root = setting("EXPORTKIT_JOB_DIR", None)
    if not root:
        root = Path(tempfile.gettempdir()) / "aml_exportkit_jobs"
    return JobStore(Path(root))


def job_max_age() -> float:
    """``EXPORTKIT_JOB_MAX_AGE`` in seconds."""
    return float(setting("EXPORTKIT_JOB_MAX_AGE", DEFAULT_MAX_AGE))


def max_template_bytes() -> int:
    """``EXPORTKIT_MAX_TEMPLATE_BYTES``."""
    return int(setting("EXPORTKIT_MAX_TEMPLATE_BYTES", DEFAULT_MAX_TEMPLATE_BYTES))


def allowed_key_env() -> list[str]:
    """``EXPORTKIT_ALLOWED_KEY_ENV``: the variables an upload may name as its key."""
    names = setting("EXPORTKIT_ALLOWED_KEY_ENV", ())
    return [names] if isinstance(names, str) else [str(n) for n in names]


def job_limits() -> JobLimits:
    """``EXPORTKIT_MAX_RUNNING_JOBS`` and ``EXPORTKIT_MAX_RUNNING_JOBS_PER_USER``."""

    def limit(name: str, default: int) -> int | None:
        value = setting(name, default)
        return None if value is None else max(1, int(value))

    return JobLimits(
        total=limit("EXPORTKIT_MAX_RUNNING_JOBS", DEFAULT_MAX_RUNNING_JOBS),
        per_user=limit("EXPORTKIT_MAX_RUNNING_JOBS_PER_USER", DEFAULT_MAX_RUNNING_JOBS_PER_USER),
    )


def database_alias() -> str:
    """``EXPORTKIT_DATABASE``: the alias in ``DATABASES`` to export from."""
    return str(setting("EXPORTKIT_DATABASE", "default"))


def uri_from_database_settings(db: Mapping[str, Any]) -> str:
    """A ``postgresql://`` URI for one entry of Django's ``DATABASES``.

    The URI carries the password: it must go only to the worker process, never into a
    page, a status file, a log line or a command line.

    :param db: e.g. ``settings.DATABASES["default"]``.
    :raises ValueError: for a database that is not PostgreSQL.
    """
    engine = str(db.get("ENGINE", ""))
    if "postgresql" not in engine and "postgis" not in engine:
        raise ValueError(f"the export page needs a PostgreSQL database, not {engine!r}")
    quote = urllib.parse.quote
    user = str(db.get("USER") or "")
    password = str(db.get("PASSWORD") or "")
    host = str(db.get("HOST") or "")
    port = str(db.get("PORT") or "")
    query: dict[str, str] = {}
    netloc = ""
    if user or password:
        netloc = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    if host.startswith("/"):  # a Unix socket folder goes into the query
        query["host"] = host
    elif host:
        netloc += f"[{host}]" if ":" in host else host
    if port:
        if "host" in query:
            query["port"] = port
        else:
            netloc += f":{port}"
    options = db.get("OPTIONS") or {}
    for key in LIBPQ_OPTIONS:
        value = options.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            query[key] = str(value)
    text = f"postgresql://{netloc}/{quote(str(db.get('NAME') or ''), safe='')}"
    return text + ("?" + urllib.parse.urlencode(query) if query else "")


def database_uri() -> str:
    """The URI of the database named by ``EXPORTKIT_DATABASE``."""
    return uri_from_database_settings(_settings().DATABASES[database_alias()])


def database_password() -> str:
    """The password of the database named by ``EXPORTKIT_DATABASE`` ('' when none)."""
    return str(_settings().DATABASES[database_alias()].get("PASSWORD") or "")


# -- templates ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TemplateChoice:
    """A template the page offers.

    :param value: the form value (never a path: the server looks it up).
    :param label: what the page shows.
    :param kind: ``builtin`` or ``folder``.
    :param ref: a builtin's name or a folder template's absolute path (server side only).
    :param group: the heading of its group in the list.
    """

    value: str
    label: str
    kind: str
    ref: str
    group: str


def template_dirs() -> list[Path]:
    """``EXPORTKIT_TEMPLATE_DIRS`` as absolute paths."""
    dirs = setting("EXPORTKIT_TEMPLATE_DIRS", ())
    if isinstance(dirs, str | Path):
        dirs = [dirs]
    return [Path(d).resolve() for d in dirs]


def _describe(path: Path) -> str:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ""
    text = data.get("description") or data.get("name") or ""
    return str(text) if isinstance(text, str) else ""


def folder_templates(dirs: Sequence[Path]) -> list[TemplateChoice]:
    """The ``*.toml`` files directly inside ``dirs``; a file (or symlink) that resolves to
    somewhere outside its folder is left out."""
    found: list[TemplateChoice] = []
    for index, folder in enumerate(dirs):
        try:
            files = sorted(folder.glob("*.toml"))
        except OSError:
            continue
        for path in files:
            real = path.resolve()
            if not real.is_file() or not real.is_relative_to(folder):
                continue
            about = _describe(real)
            found.append(
                TemplateChoice(
                    value=f"folder:{index}:{path.name}",
                    label=f"{folder.name}/{path.name}" + (f": {about}" if about else ""),
                    kind="folder",
                    ref=str(real),
                    group=f"Templates in {folder.name}/",
                )
            )
    return found


def template_choices(registry: Registry) -> list[TemplateChoice]:
    """Every template the page offers: the builtins, then the folder templates."""
    builtins = [
        TemplateChoice(
            value=f"builtin:{name}",
            label=f"{name}: {spec.description}" if spec.description else name,
            kind="builtin",
            ref=name,
            group="Builtin templates",
        )
        for name, spec in registry.template_specs.items()
    ]
    return builtins + folder_templates(template_dirs())


# -- blocks ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BlockChoice:
    """A block of the MUSCLE database.

    :param slug: the block's slug (the form value).
    :param experiment: the slug of its experiment, '' when it has none.
    :param sessions: how many sessions it has.
    """

    slug: str
    experiment: str
    sessions: int

    @property
    def label(self) -> str:
        """``slug (experiment, N sessions)``."""
        where = f"{self.experiment}, " if self.experiment else ""
        return f"{self.slug} ({where}{self.sessions} session{'s' if self.sessions != 1 else ''})"


#: Blocks with their experiment and session count; the same joins on every MUSCLE version
#: the database source supports (a block's phase, the phase's experiment).
_BLOCKS_SQL = """
SELECT b.slug, COALESCE(e.slug, ''), COUNT(s.id)
FROM experiment_block b
LEFT JOIN experiment_phase p ON p.id = b.phase_id
LEFT JOIN experiment_experiment e ON e.id = p.experiment_id
LEFT JOIN session_session s ON s.block_id = b.id
GROUP BY b.slug, e.slug
ORDER BY COALESCE(e.slug, ''), b.slug
"""


def muscle_blocks() -> list[BlockChoice]:
    """The blocks of the database named by ``EXPORTKIT_DATABASE``.

    :raises django.db.DatabaseError: when MUSCLE's tables are not there.
    """
    from django.db import connections, transaction

    alias = database_alias()
    # A savepoint: a failing query must not break the request's transaction (ATOMIC_REQUESTS).
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute(_BLOCKS_SQL)
        return [
            BlockChoice(slug=str(slug), experiment=str(exp), sessions=int(n))
            for slug, exp, n in cursor.fetchall()
        ]

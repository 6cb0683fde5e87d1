"""The PostgreSQL source's plugin: it registers the source without importing psycopg.

The reading itself is :mod:`aml_exportkit.sources.muscle_db_reader`, imported when a
``postgresql://`` URI is opened: psycopg and its types cost the parent about 0.1 s of CPU
before the engine's workers start, which an export from a zip has no use for
(decision 0036).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..contracts import SourceOptions, SourceSpec
from ..hookspecs import hookimpl

if TYPE_CHECKING:
    from .muscle_db_reader import MuscleDatabase

NAME = "postgresql"
SCHEMES = ("postgresql://", "postgres://")


def _claims(uri: str) -> bool:
    return uri.startswith(SCHEMES)


def _open(uri: str, options: SourceOptions) -> MuscleDatabase:
    reader = importlib.import_module("aml_exportkit.sources.muscle_db_reader")
    database: MuscleDatabase = reader.MuscleDatabase(uri, options)
    return database


@hookimpl
def exportkit_register_sources() -> list[SourceSpec]:
    """The PostgreSQL source."""
    return [
        SourceSpec(
            name=NAME,
            description="MUSCLE's PostgreSQL database (one consistent snapshot per export)",
            claims=_claims,
            open=_open,
            uri_help="postgresql://user@host:port/dbname",
        )
    ]

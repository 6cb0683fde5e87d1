"""The error hierarchy, and the exit code of each error class.

The library raises these and never prints or exits; the CLI turns them into one line on
stderr and the exit code below. ``docs/exit-codes.md`` documents the same table, and a test
keeps the two in step.
"""

from __future__ import annotations

from typing import ClassVar

from .redact import scrub

#: Exit codes of the ``exportkit`` command, one place for all of them.
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_TEMPLATE = 3
EXIT_SOURCE = 4
EXIT_INTEGRITY = 5
EXIT_SINK = 6
EXIT_PLUGIN = 7
EXIT_DATABASE = 8
EXIT_VERIFY = 9
EXIT_INTERRUPTED = 130
#: stdout was closed by its reader (``exportkit plugins | head -1``): quiet, as SIGPIPE
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143


class ExportkitError(Exception):
    """Base class of every error meant for a user.

    :param message: what went wrong, without the location.
    Subclasses add context fields and build a location prefix from them, so that
    ``str(error)`` reads ``where: what``, with any password a URI or a libpq string
    carries hidden (:func:`aml_exportkit.redact.scrub`): the line is shown to people,
    whatever text a source, a library or a user put into it.
    """

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = EXIT_INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def location(self) -> str:
        """The place the error is about (a file, a record, a key path), or ''."""
        return ""

    def __reduce__(self) -> tuple[object, ...]:
        # keyword-only context fields: pickled as the instance's state, so that an error
        # raised in one of the engine's worker processes arrives whole in the parent
        return (_rebuild, (type(self), self.message), self.__dict__)

    def __str__(self) -> str:
        where = self.location()
        return scrub(f"{where}: {self.message}" if where else self.message)


def _rebuild(cls: type[ExportkitError], message: str) -> ExportkitError:
    error = cls.__new__(cls)
    ExportkitError.__init__(error, message)
    return error


class TemplateError(ExportkitError):
    """A template (TOML) is unreadable or invalid.

    :param file: the template's file name, or a builtin template's name.
    :param key_path: where in the template, e.g. ``sinks[1].path``; '' for the whole file.
    """

    code = "template"
    exit_code = EXIT_TEMPLATE

    def __init__(self, message: str, *, file: str, key_path: str = "") -> None:
        super().__init__(message)
        self.file = file
        self.key_path = key_path

    def location(self) -> str:
        return ": ".join(part for part in (self.file, self.key_path) if part)


class SourceError(ExportkitError):
    """Input that cannot be read: a broken zip, malformed JSON, a wrong value type.

    :param file: the file (or ``zip: member``, or database table) at fault.
    :param model: the record's kind, e.g. ``result``, when one record is at fault.
    :param pk: that record's primary key.
    """

    code = "source"
    exit_code = EXIT_SOURCE

    def __init__(
        self,
        message: str,
        *,
        file: str = "",
        model: str | None = None,
        pk: object = None,
    ) -> None:
        super().__init__(message)
        self.file = file
        self.model = model
        self.pk = pk

    def location(self) -> str:
        parts = [self.file] if self.file else []
        if self.model is not None:
            parts.append(self.model if self.pk is None else f"{self.model} {self.pk}")
        return ": ".join(parts)


class IntegrityError(SourceError):
    """The records do not fit together: a dangling foreign key, a duplicate primary key,
    a result with neither or both of session and participant, a session of another block.

    :param field: the field at fault, e.g. ``session``.
    :param missing_pk: for a dangling foreign key, the primary key that was not found.
    """

    code = "integrity"
    exit_code = EXIT_INTEGRITY

    def __init__(
        self,
        message: str,
        *,
        file: str = "",
        model: str | None = None,
        pk: object = None,
        field: str | None = None,
        missing_pk: object = None,
    ) -> None:
        super().__init__(message, file=file, model=model, pk=pk)
        self.field = field
        self.missing_pk = missing_pk


class SinkError(ExportkitError):
    """A sink cannot write its output.

    :param sink: the sink's type name, e.g. ``fixture-json``.
    :param path: the target path.
    """

    code = "sink"
    exit_code = EXIT_SINK

    def __init__(self, message: str, *, sink: str, path: str = "") -> None:
        super().__init__(message)
        self.sink = sink
        self.path = path

    def location(self) -> str:
        return f"{self.path} ({self.sink})" if self.path else self.sink


class PluginError(ExportkitError):
    """A plugin fails to load, declares something invalid, or clashes with another.

    :param plugin: the plugin's name (its entry point name or module).
    :param distribution: the installed distribution that provides it, when known.
    """

    code = "plugin"
    exit_code = EXIT_PLUGIN

    def __init__(self, message: str, *, plugin: str, distribution: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.distribution = distribution

    def location(self) -> str:
        if self.distribution:
            return f"plugin {self.plugin!r} (distribution {self.distribution})"
        return f"plugin {self.plugin!r}"


class DatabaseError(ExportkitError):
    """The database cannot be reached or read, or is not a supported MUSCLE database.

    :param target: the server and database, never with a password.
    """

    code = "database"
    exit_code = EXIT_DATABASE

    def __init__(self, message: str, *, target: str = "") -> None:
        super().__init__(message)
        self.target = target

    def location(self) -> str:
        return self.target


class VerifyError(ExportkitError):
    """A verification (``exportkit verify``) found differences."""

    code = "verify"
    exit_code = EXIT_VERIFY


#: Every error class with its exit code, for the docs and the CLI tests.
ERROR_CLASSES: tuple[type[ExportkitError], ...] = (
    TemplateError,
    SourceError,
    IntegrityError,
    SinkError,
    PluginError,
    DatabaseError,
    VerifyError,
)

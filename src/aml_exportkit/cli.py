"""The ``exportkit`` command: parse options, call the library, map errors to exit codes.

Every command is a thin layer over the library; errors become one line on stderr and the
exit code of their class (see :mod:`aml_exportkit.errors` and ``docs/exit-codes.md``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TypeVar

import click

from . import __version__
from .atomic import is_utf8, shown_path
from .errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    ExportkitError,
)
from .pipeline import (
    load_template,
    open_source,
    registry_for,
    run_export,
    validate_template,
)
from .plugins import Registry, get_plugin_manager, load_registry
from .progress import TerminalProgress
from .redact import scrub
from .text import count

F = TypeVar("F", bound=Callable[..., Any])


class Terminated(BaseException):
    """Raised in the main thread when SIGTERM arrives, so that cleanup code runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    raise Terminated()


def _fail(message: str, code: int) -> NoReturn:
    # every error line passes here: an internal error's text or an argument may hold a URI
    click.echo(f"exportkit: error: {scrub(message)}", err=True)
    sys.exit(code)


def _stdout_closed() -> NoReturn:
    """Leave quietly when the reader of stdout went away (``exportkit plugins | head -1``),
    as a command killed by SIGPIPE would: no message, exit 141."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail
    except (OSError, ValueError, AttributeError):
        pass
    sys.exit(EXIT_BROKEN_PIPE)


def _debug() -> bool:
    return bool(os.environ.get("EXPORTKIT_DEBUG"))


def _registry() -> Registry:
    return load_registry(get_plugin_manager())


def guarded(func: F) -> F:
    """Run a command body, turning errors and interrupts into one line and an exit code."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return func(*args, **kwargs)
        except ExportkitError as exc:
            if _debug():
                traceback.print_exc()
            _fail(str(exc), exc.exit_code)
        except BrokenPipeError:
            _stdout_closed()
        except KeyboardInterrupt:
            _fail("interrupted; no output was written", EXIT_INTERRUPTED)
        except Terminated:
            _fail("terminated; no output was written", EXIT_TERMINATED)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if _debug():
                traceback.print_exc()
                # (a worker's failure: its own traceback, from the worker process)
                print(getattr(exc, "traceback", ""), end="", file=sys.stderr)
            _fail(
                f"internal error ({type(exc).__name__}: {exc}); no output was written."
                " Set EXPORTKIT_DEBUG=1 for a traceback and report it",
                EXIT_INTERNAL,
            )
        finally:
            signal.signal(signal.SIGTERM, previous)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper  # type: ignore[return-value]


class _Commands(click.Group):
    """The command group; refuses arguments that are not UTF-8 before any command runs."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for arg in args:
            if not is_utf8(arg):
                _fail(
                    f"the argument {shown_path(arg)!r} is not UTF-8 text; paths and names"
                    " must be UTF-8",
                    EXIT_USAGE,
                )
        return super().parse_args(ctx, args)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Run the command line; click's own output (``--help``, ``--version``) to a
        closed stdout ends as a command's does."""
        try:
            return super().main(*args, **kwargs)
        except SystemExit as exc:
            # click catches EPIPE itself, wraps stdout so that nothing more is written, and
            # exits 1: the code of an internal error here
            if exc.code == 1 and type(sys.stdout).__name__.endswith("PacifyFlushWrapper"):
                _stdout_closed()
            raise


def one_source(sources: Sequence[str]) -> str | None:
    """The ``--source`` of a command: given once or not at all.

    :raises click.UsageError: when given more than once (it is never silently the last).
    """
    if len(sources) > 1:
        raise click.UsageError(
            f"--source given {len(sources)} times; give one source (a zip path or a"
            " postgresql:// URI)"
        )
    return sources[0] if sources else None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="exportkit")
def cli() -> None:
    """Export MUSCLE experiment data (fixture zips, CSV, Parquet, DuckDB) by templates.

    Set EXPORTKIT_DEBUG=1 to see tracebacks, EXPORTKIT_DISABLE_PLUGIN_AUTOLOAD=1 to load no
    third-party plugins, EXPORTKIT_BLOCK_PLUGINS=a,b to skip some.
    """


@cli.command()
@click.argument("template")
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="URI",
    help="A zip path or postgresql:// URI; overrides [source] uri. Repeat it to export"
    " several sources (zips, databases) into one table.",
)
@click.option(
    "--block",
    "blocks",
    multiple=True,
    metavar="SLUG",
    help="A block slug (repeatable); overrides [source] blocks.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder every output and the manifest go into; sink paths must then be relative"
    " and stay inside it. Without --out, sink paths are relative to the template's folder"
    " (for a builtin template: the current folder).",
)
@click.option(
    "--since",
    "since",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="MANIFEST",
    help="An earlier run's manifest.json: export only the sessions new or changed since"
    " (started later, or unfinished then and finished or with new results now), whole."
    " The part goes to new files: it never replaces an existing one (but the manifest).",
)
@click.option(
    "--jobs",
    "jobs",
    type=click.IntRange(min=1),
    metavar="N",
    help="Worker processes (default: EXPORTKIT_JOBS, else the template's jobs, else one per"
    " CPU). The outputs are the same for any N.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing on success; no progress.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show rows, rate and ETA on stderr (default: when stderr is a terminal).",
)
@guarded
def run(
    template: str,
    sources: Sequence[str],
    blocks: Sequence[str],
    out_dir: Path | None,
    since: Path | None,
    jobs: int | None,
    quiet: bool,
    progress: bool | None,
) -> None:
    """Run TEMPLATE (a TOML file or a builtin template's name).

    With --since, the new manifest names the earlier one by its sha256 and carries the
    watermark on, so that each part needs only the last part's manifest;
    docs/recipes.md shows how to combine the parts.
    """
    manager = get_plugin_manager()
    registry = load_registry(manager)
    loaded = load_template(template, registry=registry)
    show = (not quiet and sys.stderr.isatty()) if progress is None else progress and not quiet
    report = run_export(
        loaded,
        source=sources or None,
        blocks=blocks or None,
        out_dir=out_dir,
        since=since,
        jobs=jobs,
        plugin_manager=manager,
        progress=TerminalProgress(sys.stderr) if show else None,
    )
    if not quiet:
        for output in report.outputs:
            # a codebook's "rows" are the tables it describes
            what = (
                f"describes {count(output.rows, 'table')}"
                if output.sink == "codebook"
                else count(output.rows, "row")
            )
            click.echo(f"wrote {output.path} ({what})")


@cli.command()
@click.argument("template")
@guarded
def validate(template: str) -> None:
    """Check TEMPLATE without running it."""
    loaded = validate_template(template, registry=_registry())
    kinds = ", ".join(sink.type for sink in loaded.sinks)
    click.echo(f"{loaded.file}: ok ({len(loaded.sinks)} sink(s): {kinds})")


@cli.command()
@click.argument("source")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@guarded
def inspect(source: str, as_json: bool) -> None:
    """Show what SOURCE holds: blocks, counts per table, schema version."""
    with open_source(source, registry=_registry()) as opened:
        inventory = opened.inspect()
    if as_json:
        click.echo(json.dumps(inventory.as_json(), indent=2, ensure_ascii=False))
        return
    for line in inventory.lines():
        click.echo(line)


@cli.command()
@guarded
def plugins() -> None:
    """List the sources, sinks and templates, with the plugin that provides each."""
    registry = _registry()
    for title, entries in (
        ("sources", registry.sources),
        ("sinks", registry.sinks),
        ("templates", registry.templates),
    ):
        click.echo(f"{title}:")
        if not entries:
            click.echo("  (none)")
        for name, provided in entries.items():
            click.echo(f"  {name:<24} {provided.provider:<18} {provided.spec.description}")


@cli.command()
@guarded
def templates() -> None:
    """List the builtin templates, usable by name wherever a template is accepted."""
    registry = registry_for()
    if not registry.templates:
        click.echo("(no builtin templates installed)")
    for name, provided in registry.templates.items():
        click.echo(f"{name:<32} {provided.spec.description}")


@cli.command()
@click.argument("source")
@click.option(
    "--against",
    "reference",
    required=True,
    metavar="ZIP_OR_URI",
    help="MUSCLE's export zip of the block, or another source (e.g. a postgresql:// URI).",
)
@click.option(
    "--block",
    "blocks",
    multiple=True,
    metavar="SLUG",
    help="A block slug (repeatable); default: the slug the zip's name suggests.",
)
@guarded
def verify(source: str, reference: str, blocks: Sequence[str]) -> None:
    """Check that SOURCE exports the same objects as a reference, file by file.

    Exit 0 when every fixture file holds the same objects, 9 when any differs.
    """
    from .errors import VerifyError
    from .verify import verify_export

    report = verify_export(source, reference, blocks=blocks, plugin_manager=get_plugin_manager())
    for line in report.lines():
        click.echo(line)
    if not report.equal:
        raise VerifyError(report.summary())


@cli.command()
@click.argument("template")
@click.option("--source", "sources", multiple=True, metavar="URI", help="Overrides [source] uri.")
@click.option("--block", "blocks", multiple=True, metavar="SLUG", help="Overrides [source] blocks.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--strict", is_flag=True, help="Exit 9 when anything drifted.")
@guarded
def check(
    template: str, sources: Sequence[str], blocks: Sequence[str], as_json: bool, strict: bool
) -> None:
    """Compare TEMPLATE with the data: json_data paths not exported, template paths never
    seen, type conflicts; and what each output would hold (rows, columns)."""
    from .check import check_template
    from .errors import VerifyError

    source = one_source(sources)
    manager = get_plugin_manager()
    loaded = load_template(template, registry=load_registry(manager))
    report = check_template(loaded, source=source, blocks=blocks or None, plugin_manager=manager)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2, ensure_ascii=False))
    else:
        for line in report.lines():
            click.echo(line)
    if strict and report.has_drift:
        raise VerifyError("the template and the data have drifted apart (see above)")


@cli.command()
@click.argument("source")
@click.option("--block", "blocks", multiple=True, metavar="SLUG", help="Block slug(s) to scan.")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the template to this file (default: print it).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing --output file.")
@guarded
def init(source: str, blocks: Sequence[str], output: Path | None, force: bool) -> None:
    """Write a starter template for SOURCE that lists every field and json_data path found,
    with its type and how often it occurs."""
    from .atomic import OutputSet
    from .errors import SinkError
    from .init import init_template

    folder = output.absolute().parent if output is not None else Path.cwd()
    text, hint = init_template(source, blocks=blocks, registry=_registry(), template_folder=folder)
    if hint:
        click.echo(f"exportkit: note: {hint}", err=True)
    if output is None:
        click.echo(text, nl=False)
        return
    if output.exists() and not force:
        raise SinkError("exists; pass --force to overwrite it", sink="init", path=str(output))
    outputs = OutputSet()
    try:
        outputs.create(output).write_text(text, encoding="utf-8")
        outputs.commit()
    except BaseException:
        outputs.discard()
        raise
    click.echo(f"wrote {output}")


@cli.command()
@click.argument("table", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--manifest",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The run's manifest.json (default: the one beside TABLE or in a folder above).",
)
@guarded
def rebuild(table: Path, manifest: Path | None) -> None:
    """Print every result's json_data, rebuilt exactly from TABLE (a long CSV or Parquet
    file in the exportkit style) and its manifest, as JSON lines:
    {"result_id": ..., "json_data": ...}. From Parquet, a whole number in a column of
    integers and floats comes back as a float (2.0 for 2, the same JSON number); a CSV
    gives back 2. See docs/flattening.md."""
    from .rebuild import rebuild_json_data

    for pk, data in rebuild_json_data(table, manifest).items():
        line = {"result_id": pk, "json_data": data}
        click.echo(json.dumps(line, ensure_ascii=False, separators=(",", ":")))


def main() -> None:
    """Entry point of the ``exportkit`` console script."""
    try:
        cli(prog_name="exportkit")
    except BrokenPipeError:  # click's own output (--help, --version) to a closed pipe
        _stdout_closed()

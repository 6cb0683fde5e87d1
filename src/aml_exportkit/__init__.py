"""aml_exportkit: export MUSCLE experiment data through templates and plugins.

The public API::

    from aml_exportkit import load_template, run_export, open_source

    template = load_template("export.toml")
    report = run_export(template, source="block.zip", out_dir=Path("out"))

    trials = to_dataframe("block.zip")  # the long table as a pandas DataFrame, no files
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aml-exportkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from .contracts import (
    BaseSink,
    EncodingSink,
    Inventory,
    OutputReport,
    Requirement,
    ResultBatch,
    Sink,
    SinkContext,
    SinkSpec,
    Source,
    SourceOptions,
    SourceSpec,
    TemplateSpec,
    result_rows,
)
from .errors import (
    DatabaseError,
    ExportkitError,
    IntegrityError,
    PluginError,
    SinkError,
    SourceError,
    TemplateError,
)
from .frames import to_arrow, to_dataframe
from .graph import RecordGraph
from .hookspecs import hookimpl
from .pipeline import ExportReport, load_template, open_source, run_export
from .plugins import get_plugin_manager, load_registry
from .rebuild import rebuild_json_data
from .selection import Filter, Selection

__all__ = [
    "BaseSink",
    "DatabaseError",
    "EncodingSink",
    "ExportReport",
    "ExportkitError",
    "Filter",
    "IntegrityError",
    "Inventory",
    "OutputReport",
    "PluginError",
    "RecordGraph",
    "Requirement",
    "ResultBatch",
    "Selection",
    "Sink",
    "SinkContext",
    "SinkError",
    "SinkSpec",
    "Source",
    "SourceError",
    "SourceOptions",
    "SourceSpec",
    "TemplateError",
    "TemplateSpec",
    "__version__",
    "get_plugin_manager",
    "hookimpl",
    "load_registry",
    "load_template",
    "open_source",
    "rebuild_json_data",
    "result_rows",
    "run_export",
    "to_arrow",
    "to_dataframe",
]

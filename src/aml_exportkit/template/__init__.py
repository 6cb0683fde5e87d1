"""Export templates: TOML files that say what to export and how."""

from .load import load_template, parse_template
from .model import SinkTable, SourceTable, Template

__all__ = ["SinkTable", "SourceTable", "Template", "load_template", "parse_template"]

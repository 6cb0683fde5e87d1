"""exportkit-readstat: SPSS (``.sav``) and Stata (``.dta``) sinks for aml_exportkit.

Installed, it registers the sink types ``spss`` and ``stata`` through the entry-point group
``aml_exportkit``; ``exportkit plugins`` lists them. See the README for the keys, the naming
and labelling rules, and the memory limit.
"""

from __future__ import annotations

from aml_exportkit import SinkSpec, hookimpl

from .names import variable_names
from .sink import REQUIRES, ReadstatOptions, SpssSink, StataSink

__all__ = ["ReadstatOptions", "SpssSink", "StataSink", "exportkit_register_sinks", "variable_names"]


@hookimpl
def exportkit_register_sinks() -> list[SinkSpec]:
    """The ``spss`` and ``stata`` sinks."""
    return [
        SinkSpec(
            name="spss",
            description="SPSS .sav (pyreadstat): names, variable and value labels",
            options=ReadstatOptions,
            factory=SpssSink,
            extensions=(".sav",),
            requires=REQUIRES,
        ),
        SinkSpec(
            name="stata",
            description="Stata .dta (pyreadstat): names, variable and value labels",
            options=ReadstatOptions,
            factory=StataSink,
            extensions=(".dta",),
            requires=REQUIRES,
        ),
    ]

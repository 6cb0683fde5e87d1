"""The native kernel of the bulk lane (src/aml_exportkit/_speedups.c).

Everything else is configured in pyproject.toml. The extension is optional: without a C
compiler the package installs and runs on its Python code (docs/performance.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "aml_exportkit._speedups",
            ["src/aml_exportkit/_speedups.c", "src/aml_exportkit/_floats.cpp"],
            extra_compile_args=["-O2"],
            libraries=["stdc++"],
            optional=True,
        )
    ]
)

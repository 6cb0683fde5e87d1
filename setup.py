"""The engine's native kernel (src/aml_exportkit/engine/_speedups.c).

Everything else is configured in pyproject.toml. The extension is optional: without a C
compiler the package installs and runs on its Python code (docs/performance.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "aml_exportkit.engine._speedups",
            ["src/aml_exportkit/engine/_speedups.c", "src/aml_exportkit/engine/_floats.cpp"],
            extra_compile_args=["-O2"],
            libraries=["stdc++"],
            optional=True,
        )
    ]
)

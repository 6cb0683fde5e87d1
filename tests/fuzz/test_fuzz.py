"""Hypothesis-driven fuzzing of the zip reader and the template loader.

Only the project's own errors may come out, never another exception. The number of
examples is bounded (EXPORTKIT_FUZZ_EXAMPLES, default 150 per target) so CI time stays fixed.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aml_exportkit.contracts import SourceOptions
from aml_exportkit.errors import ExportkitError
from aml_exportkit.plugins import get_plugin_manager, load_registry
from aml_exportkit.selection import Selection
from aml_exportkit.sources.fixture_zip import FixtureZipSource
from aml_exportkit.template.load import parse_template
from conftest import REFERENCE

EXAMPLES = int(os.environ.get("EXPORTKIT_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SEED_ZIP = (REFERENCE / "head" / "block_hooked-eurovision.zip").read_bytes()
with zipfile.ZipFile(io.BytesIO(SEED_ZIP)) as _archive:
    SEED_MEMBERS = {n: _archive.read(n) for n in _archive.namelist()}
SINKS = load_registry(get_plugin_manager(load_entrypoints=False)).sink_specs


def read_everything(path: Path) -> None:
    with FixtureZipSource(path, SourceOptions()) as source:
        source.inspect()
        with source.read(Selection()) as graph:
            for _ in graph.profile_results():
                pass
            for _ in graph.trial_results():
                pass


def check_zip_bytes(data: bytes, tmp: Path) -> None:
    path = tmp / "fuzz.zip"
    path.write_bytes(data)
    with contextlib.suppress(ExportkitError):
        read_everything(path)


@st.composite
def mutated_bytes(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


@FUZZ
@given(data=mutated_bytes(SEED_ZIP))
def test_mutated_zip_files(data: bytes, tmp_path_factory: Any) -> None:
    check_zip_bytes(data, tmp_path_factory.mktemp("z"))


@FUZZ
@given(member=st.sampled_from(sorted(SEED_MEMBERS)), data=st.data())
def test_mutated_json_members(member: str, data: st.DataObject, tmp_path_factory: Any) -> None:
    members = dict(SEED_MEMBERS)
    members[member] = data.draw(mutated_bytes(members[member]))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    check_zip_bytes(buffer.getvalue(), tmp_path_factory.mktemp("j"))


@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes(data: bytes, tmp_path_factory: Any) -> None:
    check_zip_bytes(data, tmp_path_factory.mktemp("r"))


TOML_SCALARS = (
    st.text(max_size=10)
    | st.integers()
    | st.booleans()
    | st.floats(allow_nan=False)
    | st.datetimes()
)
KEYS = st.sampled_from(
    [
        "name",
        "description",
        "extends",
        "source",
        "filter",
        "sinks",
        "type",
        "path",
        "uri",
        "blocks",
        "finished_only",
        "started_after",
        "participants",
        "compression",
        "missing_sections",
        "x",
    ]
)
TOML_VALUES: st.SearchStrategy[Any] = st.recursive(
    TOML_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=10,
)


@FUZZ
@given(document=st.dictionaries(KEYS, TOML_VALUES, max_size=5))
def test_structured_templates(document: dict[str, Any], tmp_path_factory: Any) -> None:
    try:
        text = tomli_w.dumps(document)
    except (TypeError, ValueError):
        return  # not representable in TOML (e.g. a heterogenous array); nothing to test
    folder = tmp_path_factory.mktemp("t")
    with contextlib.suppress(ExportkitError):
        parse_template(text, file="fuzz.toml", folder=folder, sinks=SINKS)


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_template_text(text: str, tmp_path_factory: Any) -> None:
    with contextlib.suppress(ExportkitError):
        parse_template(text, file="fuzz.toml", folder=tmp_path_factory.mktemp("t"), sinks=SINKS)

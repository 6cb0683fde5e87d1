"""The progress protocol names each phase of a run, in order, and counts rows only while
the source is read."""

from __future__ import annotations

from pathlib import Path

from aml_exportkit.pipeline import run_export
from aml_exportkit.plugins import PluginManager, load_registry
from aml_exportkit.progress import Phase
from aml_exportkit.template.load import parse_template
from conftest import REFERENCE_ZIPS


class Recorder:
    """Keeps every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def update(self, done: int, expected: int | None) -> None:
        self.calls.append(("update", done))

    def phase(self, name: Phase) -> None:
        self.calls.append(("phase", name))

    def finish(self) -> None:
        self.calls.append(("finish", None))


def test_phases_come_in_order(tmp_path: Path, plugin_manager: PluginManager) -> None:
    template = parse_template(
        'manifest = true\ncodebook = true\n[[sinks]]\ntype = "csv-long"\npath = "r.csv"\n',
        file="t.toml",
        folder=tmp_path,
        sinks=load_registry(plugin_manager).sink_specs,
    )
    recorder = Recorder()
    report = run_export(
        template,
        source=str(REFERENCE_ZIPS[0]),
        out_dir=tmp_path,
        plugin_manager=plugin_manager,
        progress=recorder,
    )
    phases = [value for kind, value in recorder.calls if kind == "phase"]
    assert phases == ["reading", "writing", "codebook", "manifest"]
    reading = recorder.calls.index(("phase", "reading"))
    writing = recorder.calls.index(("phase", "writing"))
    updates = [i for i, (kind, _) in enumerate(recorder.calls) if kind == "update"]
    assert updates, "rows were counted"
    assert all(reading < i < writing for i in updates)
    assert recorder.calls[updates[-1]] == ("update", report.result_counts["trial"])
    assert recorder.calls[-1] == ("finish", None)

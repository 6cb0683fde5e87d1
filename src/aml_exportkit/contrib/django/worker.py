"""The worker process of one export job: ``python -m aml_exportkit.contrib.django.worker
JOB_FOLDER MODE``, with the database URI as JSON (``{"uri": ...}``) on standard input.

MODE ``check`` previews the job (``exportkit check``: each output's rows and columns);
``export`` runs it with the manifest and the codebook on and zips the outputs. Either way
the worker reports through the job's ``status.json`` and never imports Django, so a job
runs the same whatever the web server does meanwhile.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from ...check import check_template
from ...errors import ExportkitError, TemplateError
from ...pipeline import load_template, run_export
from ...plugins import Registry, get_plugin_manager, load_registry
from ...progress import Phase, format_duration
from ...sources.muscle_db_reader import Scrubber
from ...template.load import parse_template, parse_toml
from ...template.model import Template
from .jobstore import (
    CHECKED,
    CHECKING,
    DONE,
    FAILED,
    OUT_DIR,
    RUNNING,
    UPLOAD_FILE,
    ZIP_FILE,
    JobLimits,
    JobStore,
    check_key_env,
    check_output_paths,
    redact_paths,
    start_worker,
    zip_outputs,
)

#: Seconds between two status writes while rows stream: live enough for a person, and
#: cheap next to the export.
STATUS_INTERVAL = 0.25


class Terminated(BaseException):
    """SIGTERM arrived (the page's cancel, or a shutdown): unwind so outputs are discarded."""


def _on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    raise Terminated()


def check_upload_reads_no_file(text: str, file: str, builtin_names: Sequence[str]) -> None:
    """Refuse an uploaded template that would read a file from the server's disk: an
    ``extends`` of anything but a builtin template, or a ``[filter] exclude_file`` (an
    absolute or ``~`` path reaches any file the server can read, and its lines would
    become exclusions that the manifest counts).

    :param text: the uploaded TOML text.
    :param file: its name, for the message.
    :param builtin_names: the builtin templates' names.
    :raises TemplateError: for such a key, or for text that is not TOML.
    """
    data = parse_toml(text, file)
    base = data.get("extends")
    if base is not None and base not in builtin_names:
        raise TemplateError(
            f"an uploaded template may extend only a builtin template, not {base!r}",
            file=file,
            key_path="extends",
        )
    filter_table = data.get("filter")
    if isinstance(filter_table, dict) and "exclude_file" in filter_table:
        raise TemplateError(
            "an uploaded template reads no file from the server; list the participants"
            " in exclude_participants instead",
            file=file,
            key_path="filter.exclude_file",
        )


def load_job_template(spec: Mapping[str, Any], folder: Path, registry: Registry) -> Template:
    """The template of a job: a builtin by name, a folder template by its path, or the
    uploaded text stored in the job's folder.

    :raises TemplateError: when it cannot be loaded.
    """
    ref = spec["template"]
    kind, name = ref["kind"], ref["ref"]
    if kind == "upload":
        text = (folder / UPLOAD_FILE).read_text(encoding="utf-8")
        check_upload_reads_no_file(text, ref["label"], list(registry.template_specs))
        template = parse_template(
            text,
            file=ref["label"],
            folder=folder,
            sinks=registry.sink_specs,
            templates=registry.template_specs,
        )
        check_key_env(template, list(spec.get("allowed_key_env") or ()))
        return template
    if kind not in ("builtin", "folder"):
        raise TemplateError(f"unknown template kind {kind!r}", file=str(name))
    return load_template(str(name), registry=registry)


class StatusProgress:
    """Writes the phase, rows, rate, percent and ETA into the job's status: row counts at
    most every :data:`STATUS_INTERVAL` seconds, a new phase at once.

    A run that reads block by block counts from zero for each block; the rows of the
    blocks already read are added, so the count never goes back.

    :param write: stores a status update (merged into the job's base status).
    :param known_total: the number of trial results when the preview counted them; it is
        exact, so it goes before the source's estimate.
    """

    def __init__(
        self, write: Callable[[dict[str, Any]], None], known_total: int | None = None
    ) -> None:
        self.write = write
        self.known_total = known_total
        self.started = time.monotonic()
        self.last = 0.0
        self.before = 0  # rows of the blocks read before this one
        self.done = 0  # rows of this block
        self.estimate: int | None = None  # the source's estimate for this block
        self.current = ""

    @property
    def expected(self) -> int | None:
        """The total the percentage refers to, when anything knows it."""
        if self.known_total is not None:
            return self.known_total
        return None if self.estimate is None else self.before + self.estimate

    def update(self, done: int, expected: int | None) -> None:
        """Report ``done`` trial results of ``expected``, if the interval has passed."""
        self.done, self.estimate = done, expected
        now = time.monotonic()
        if now - self.last < STATUS_INTERVAL:
            return
        self.last = now
        self._write(now)

    def phase(self, name: Phase | str) -> None:
        """Report the new phase (with the rows counted so far) at once."""
        if name == "reading" and self.current not in ("", "reading"):  # the next block
            self.before, self.done, self.estimate = self.before + self.done, 0, None
        self.current = name
        self._write(time.monotonic())

    def _write(self, now: float) -> None:
        fields = progress_fields(self.before + self.done, self.expected, now - self.started)
        self.write({**fields, "phase": self.current or "reading"})

    def finish(self) -> None:
        """Nothing to clear: the final status follows."""


def progress_fields(done: int, expected: int | None, elapsed: float) -> dict[str, Any]:
    """The progress part of a status: rows, expected, rate (rows/s), percent, ETA."""
    rate = done / elapsed if elapsed > 0 else 0.0
    fields: dict[str, Any] = {
        "rows": done,
        "expected": expected,
        "rate": round(rate, 1),
        "elapsed": round(elapsed, 2),
        "percent": None,
        "eta": None,
    }
    if expected and expected >= done:
        fields["percent"] = round(100 * done / expected, 1)
        if rate > 0:
            fields["eta"] = format_duration((expected - done) / rate)
    return fields


def run_job(store: JobStore, job_id: str, mode: str, uri: str) -> dict[str, Any]:
    """Run job ``job_id`` in ``mode`` (``check`` or ``export``) against ``uri``; return
    its final status (also written to ``status.json``)."""
    folder = store.folder(job_id)
    spec = store.spec(job_id)
    if spec is None:
        raise SystemExit(f"no job in {folder}")
    previous = store.status(job_id) or {}
    base: dict[str, Any] = {
        "mode": mode,
        "started": time.time(),
        "preview": previous.get("preview"),
    }
    store.set_status(job_id, {**base, "state": CHECKING if mode == "check" else RUNNING})
    scrub = Scrubber(uri, {})
    blocks: list[str] = list(spec.get("blocks") or [])
    try:
        pm = get_plugin_manager()
        registry = load_registry(pm)
        template = load_job_template(spec, folder, registry)
        check_output_paths(template, blocks)
        if mode == "check":
            report = check_template(template, source=uri, blocks=blocks or None, plugin_manager=pm)
            final = {
                **base,
                "state": CHECKED,
                "preview": {
                    "outputs": [
                        {
                            "path": o.path,
                            "sink": o.sink,
                            "rows": o.rows,
                            "columns": list(o.columns),
                        }
                        for o in report.outputs
                    ],
                    "documents": dict(report.documents),
                    "drift": report.has_drift,
                },
            }
        else:
            out = folder / OUT_DIR
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(mode=0o700)

            def write(fields: dict[str, Any]) -> None:
                store.set_status(job_id, {**base, "state": RUNNING, **fields})

            started = time.monotonic()
            progress = StatusProgress(write, _previewed_trials(base["preview"]))
            export = run_export(
                template.evolve(manifest=True, codebook=True),
                source=uri,
                blocks=blocks or None,
                out_dir=out,
                plugin_manager=pm,
                progress=progress,
            )
            progress.phase("zipping")
            size = zip_outputs(out, folder / ZIP_FILE)
            trials = export.result_counts.get("trial", 0)
            final = {
                **base,
                **progress_fields(trials, trials, time.monotonic() - started),
                "state": DONE,
                # The template's own outputs; the codebook's files are in the zip too.
                "outputs": [
                    {"path": str(o.path.relative_to(out)), "rows": o.rows}
                    for o in export.outputs
                    if o.sink != "codebook"
                ],
                "zip_bytes": size,
            }
    except ExportkitError as exc:
        final = _failure(base, redact_paths(scrub(str(exc)), folder), exc.exit_code)
    except Terminated:
        final = _failure(base, "terminated; no output was written", 143)
    except Exception as exc:
        traceback.print_exc()
        line = (
            f"internal error ({type(exc).__name__}: {exc}); no output was written."
            " The traceback is in the job's worker.log; please report it"
        )
        final = _failure(base, redact_paths(scrub(line), folder), 1)
    final["finished"] = time.time()
    store.set_status(job_id, final)
    return final


def _previewed_trials(preview: Any) -> int | None:
    """The number of trial results the job's preview counted, if it was previewed."""
    documents = preview.get("documents") if isinstance(preview, dict) else None
    count = documents.get("trial") if isinstance(documents, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def start_next(store: JobStore, job_id: str, uri: str) -> list[str]:
    """Start the jobs that waited for the slot this job frees, under the limits its spec
    records; return their ids. The new workers get the same database URI on stdin and
    this worker's environment (already without the password)."""
    spec = store.spec(job_id) or {}

    def start(other: str, mode: str) -> int:
        return start_worker(store.folder(other), mode, {"uri": uri})

    return store.dispatch(JobLimits.from_json(spec.get("limits")), start)


def _failure(base: Mapping[str, Any], line: str, code: int) -> dict[str, Any]:
    return {**base, "state": FAILED, "error": line, "exit_code": code}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``worker.py JOB_FOLDER MODE`` with ``{"uri": ...}`` on stdin."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[1] not in ("check", "export"):
        print("usage: python -m aml_exportkit.contrib.django.worker JOB_FOLDER check|export")
        return 2
    folder = Path(args[0]).absolute()
    secrets_doc = json.loads(sys.stdin.read() or "{}")
    os.umask(0o077)  # outputs hold participant data: this user only
    signal.signal(signal.SIGTERM, _on_sigterm)
    store = JobStore(folder.parent)
    uri = str(secrets_doc["uri"])
    final = run_job(store, folder.name, args[1], uri)
    try:
        start_next(store, folder.name, uri)
    except Exception:  # the job's own result stands; the page dispatches again on its next poll
        traceback.print_exc()
    return 0 if final["state"] != FAILED else int(final.get("exit_code") or 1)


if __name__ == "__main__":
    sys.exit(main())

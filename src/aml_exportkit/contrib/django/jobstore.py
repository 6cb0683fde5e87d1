"""Export jobs as folders on disk: the spec, the live status, the outputs and the download.

This module does not import Django: the web views and the worker process
(:mod:`aml_exportkit.contrib.django.worker`) share it, and the worker runs without Django.

A job folder ``<root>/<job id>/`` holds:

- ``job.json``: what to run (blocks, template reference, owner), written once by the web;
- ``status.json``: where the job is (state, rows, rate, ETA, preview, error), rewritten
  atomically by whoever owns the job at that moment, so a reader never sees half a file;
- ``template.toml``: an uploaded template's text;
- ``out/``: the export's files; ``export.zip``: the download; ``worker.log``: the worker's
  stderr, for the operator, never served.

Every folder is 0700 and every file 0600: jobs hold participant data. A job waits
(``waiting``) until :meth:`JobStore.dispatch` finds a free slot under the deployment's
limits; the web process dispatches when a job is submitted and while a waiting job's page
polls, and a worker dispatches when its job ends (decision 0020).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from ...atomic import control_character
from ...errors import TemplateError
from ...template.model import Template

#: Job ids are random tokens; anything else in a URL is refused before it touches a path.
JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")

JOB_FILE = "job.json"
STATUS_FILE = "status.json"
UPLOAD_FILE = "template.toml"
OUT_DIR = "out"
ZIP_FILE = "export.zip"
LOG_FILE = "worker.log"
PID_FILE = "worker.pid"
RUN_CLAIM_FILE = "export.claimed"
#: In the root: held while waiting jobs are started, so two dispatchers never start one
#: job twice or overshoot the limits.
DISPATCH_LOCK = ".dispatch.lock"

#: States of a job. A job waits for a slot, is started (``queued`` until its worker
#: reports), then checks or runs. A preview ends in ``checked``; an export in ``done``
#: or ``failed``.
WAITING = "waiting"
QUEUED = "queued"
CHECKING = "checking"
CHECKED = "checked"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
#: States in which a worker process owns the job (and takes a slot).
ACTIVE = frozenset({QUEUED, CHECKING, RUNNING})
#: States in which the job is not settled yet: the page keeps polling.
PENDING = ACTIVE | {WAITING}
#: Where the page stops polling.
SETTLED = frozenset({CHECKED, DONE, FAILED})

#: A worker that has not touched its status for this long while its process is gone is
#: reported as failed (a SIGKILL or an out-of-memory kill leaves no last word).
_LOST_WORKER_GRACE = 5.0


def new_job_id() -> str:
    """A fresh random job id (128 bits, hex)."""
    return secrets.token_hex(16)


def valid_job_id(job_id: str) -> bool:
    """Whether ``job_id`` has the shape of an id this module made."""
    return bool(JOB_ID_RE.fullmatch(job_id))


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, then a rename.

    :param path: the target file.
    :param data: JSON-ready data.
    """
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_private(path: Path, data: bytes, *, append: bool = False) -> None:
    """Write ``data`` to a file only this user may read (0600, also when it existed).

    :param path: the file; a symbolic link there is refused.
    :param data: its bytes.
    :param append: add to the file instead of replacing it.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def open_log(path: Path) -> int:
    """A file descriptor appending to ``path`` (0600), for a worker's stderr."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (and is not a zombie we could reap)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child of this process that exited but was not reaped yet still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


class JobStore:
    """The job folders under one root.

    :param root: the folder that holds one folder per job; created (mode 0700) on first use.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def ensure_root(self) -> None:
        """Create the root folder, or tighten an existing one: readable by this user only
        (jobs hold participant data)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.root.stat().st_mode & 0o077:
            self.root.chmod(0o700)

    def folder(self, job_id: str) -> Path:
        """The folder of ``job_id``.

        :raises ValueError: for an id that is not one this module makes.
        """
        if not valid_job_id(job_id):
            raise ValueError("not a job id")
        return self.root / job_id

    def create(self, spec: Mapping[str, Any], upload_text: str | None = None) -> str:
        """Make a job folder with its spec and a ``queued`` status; return the new id.

        :param spec: what to run (see :func:`aml_exportkit.contrib.django.worker.run_job`).
        :param upload_text: an uploaded template's text, stored as ``template.toml``.
        """
        self.ensure_root()
        job_id = new_job_id()
        folder = self.folder(job_id)
        folder.mkdir(mode=0o700)
        write_json(folder / JOB_FILE, {**spec, "id": job_id, "created": time.time()})
        if upload_text is not None:
            write_private(folder / UPLOAD_FILE, upload_text.encode("utf-8"))
        self.set_status(job_id, {"state": WAITING})
        return job_id

    def spec(self, job_id: str) -> dict[str, Any] | None:
        """The job's ``job.json``, or None for an unknown job."""
        return read_json(self.folder(job_id) / JOB_FILE)

    def status(self, job_id: str) -> dict[str, Any] | None:
        """The job's status, or None for an unknown job.

        A job whose worker vanished without writing a last status is reported as failed.
        """
        folder = self.folder(job_id)
        status = read_json(folder / STATUS_FILE)
        if status is None:
            return None
        if status.get("state") in ACTIVE:
            pid = self.worker_pid(job_id)
            stale = time.time() - float(status.get("updated", 0)) > _LOST_WORKER_GRACE
            if pid is not None and stale and not pid_alive(pid):
                status = {
                    **status,
                    "state": FAILED,
                    "error": "the export process ended unexpectedly; no output was written",
                }
        return status

    def worker_pid(self, job_id: str) -> int | None:
        """The process id of the job's latest worker, or None before one started."""
        try:
            return int((self.folder(job_id) / PID_FILE).read_text(encoding="ascii"))
        except (OSError, ValueError):
            return None

    def record_worker(self, job_id: str, pid: int) -> None:
        """Remember the worker's process id (a file of its own: the worker may already be
        rewriting ``status.json``)."""
        write_private(self.folder(job_id) / PID_FILE, str(pid).encode("ascii"))

    def claim_export(self, job_id: str) -> bool:
        """Claim the one export run of a previewed job; False when it was claimed before
        (a double click, or two tabs), so that only one worker starts."""
        try:
            fd = os.open(self.folder(job_id) / RUN_CLAIM_FILE, os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def set_status(self, job_id: str, status: Mapping[str, Any]) -> None:
        """Replace the job's status (adding the time of the update)."""
        write_json(self.folder(job_id) / STATUS_FILE, {**status, "updated": time.time()})

    def wait(self, job_id: str, mode: str, preview: Any = None) -> None:
        """Put the job in line to run in ``mode`` (``check`` or ``export``); it starts when
        :meth:`dispatch` finds a free slot."""
        self.set_status(job_id, {"state": WAITING, "mode": mode, "preview": preview})

    @contextlib.contextmanager
    def _dispatch_lock(self) -> Iterator[None]:
        self.ensure_root()
        fd = os.open(self.root / DISPATCH_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def dispatch(self, limits: JobLimits, start: Callable[[str, str], int]) -> list[str]:
        """Start waiting jobs, oldest first, as far as ``limits`` allow; return their ids.

        :param limits: how many jobs may run at once, in total and per user.
        :param start: starts the worker of a job in a mode and returns its process id.
        """
        with self._dispatch_lock():
            running: Counter[Any] = Counter()
            waiting: list[tuple[str, Any, dict[str, Any]]] = []
            for job_id, spec in self.jobs():
                status = self.status(job_id) or {}
                if status.get("state") in ACTIVE:
                    running[spec.get("user_id")] += 1
                elif status.get("state") == WAITING:
                    waiting.append((job_id, spec.get("user_id"), status))
            started: list[str] = []
            for job_id, user, status in reversed(waiting):  # jobs() lists the newest first
                if limits.total is not None and running.total() >= limits.total:
                    break
                if limits.per_user is not None and running[user] >= limits.per_user:
                    continue
                self.set_status(job_id, {**status, "state": QUEUED})
                try:
                    pid = start(job_id, str(status.get("mode") or "export"))
                except OSError as exc:
                    line = f"the export process could not start ({exc.strerror or exc})"
                    self.set_status(
                        job_id, {**status, "state": FAILED, "error": line, "exit_code": 1}
                    )
                    continue
                self.record_worker(job_id, pid)
                running[user] += 1
                started.append(job_id)
            return started

    def cancel_waiting(self, job_id: str) -> bool:
        """End a job that still waits for a slot; False when it is not waiting (any more)."""
        with self._dispatch_lock():
            status = self.status(job_id) or {}
            if status.get("state") != WAITING:
                return False
            line = "terminated before it started; no output was written"
            ended = {"state": FAILED, "error": line, "exit_code": 143, "finished": time.time()}
            self.set_status(job_id, {**status, **ended})
            return True

    def jobs(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every job with its spec, newest first."""
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return
        found: list[tuple[float, str, dict[str, Any]]] = []
        for entry in entries:
            if not valid_job_id(entry.name):
                continue
            spec = read_json(entry / JOB_FILE)
            if spec is not None:
                found.append((float(spec.get("created", 0)), entry.name, spec))
        for _, job_id, spec in sorted(found, key=lambda item: item[0], reverse=True):
            yield job_id, spec

    def cleanup(self, max_age: float, now: float | None = None) -> list[str]:
        """Delete the folders of jobs older than ``max_age`` seconds whose worker is not
        running; return their ids.

        :param max_age: the age (from the job's creation) after which a job goes.
        :param now: the current time (for tests).
        """
        now = time.time() if now is None else now
        removed: list[str] = []
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return removed
        for entry in entries:
            if not valid_job_id(entry.name) or not entry.is_dir():
                continue
            spec = read_json(entry / JOB_FILE)
            created = float(spec.get("created", 0)) if spec else entry.stat().st_mtime
            if now - created <= max_age:
                continue
            status = self.status(entry.name) or {}
            pid = self.worker_pid(entry.name)
            if status.get("state") in ACTIVE and pid is not None and pid_alive(pid):
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        return removed


@attrs.frozen(kw_only=True)
class JobLimits:
    """How many jobs may run at once (None: no limit).

    :param total: jobs of all users together.
    :param per_user: jobs of one user.
    """

    total: int | None = None
    per_user: int | None = None

    def as_json(self) -> dict[str, int | None]:
        """The limits as stored in a job's spec (a worker that ends dispatches with them)."""
        return {"total": self.total, "per_user": self.per_user}

    @classmethod
    def from_json(cls, data: Any) -> JobLimits:
        """The limits stored in a job's spec; none when they are missing."""
        data = data if isinstance(data, dict) else {}

        def number(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        return cls(total=number("total"), per_user=number("per_user"))


# -- starting the worker -----------------------------------------------------------------


def start_worker(
    folder: Path, mode: str, secrets_doc: Mapping[str, Any], hide: Sequence[str] = ()
) -> int:
    """Start the worker process for the job in ``folder``; return its process id.

    The database URI (with its password) goes to the worker on its standard input, so that
    it is in no command line, no environment and no file. The worker runs in its own
    session: it outlives the web request, and a restart of the web server.

    :param folder: the job's folder.
    :param mode: ``check`` (the preview) or ``export``.
    :param secrets_doc: what the worker needs but must not be written down (``uri``).
    :param hide: secrets (the database password) that the worker's environment must not
        hold: variables of the web process that contain one are left out, so that a
        template cannot name them, e.g. as its ``[privacy] key_env``.
    """
    secrets = [h for h in hide if h]
    env = {k: v for k, v in os.environ.items() if not any(h in v for h in secrets)}
    log = open_log(folder / LOG_FILE)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "aml_exportkit.contrib.django.worker", str(folder), mode],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=log,
            close_fds=True,
            start_new_session=True,
            env=env,
            cwd=folder,
        )
    finally:
        os.close(log)
    assert process.stdin is not None
    try:
        process.stdin.write(json.dumps(dict(secrets_doc)).encode("utf-8"))
        process.stdin.close()
    except BrokenPipeError:  # the worker died at once; its status tells why
        pass
    # Reap the child when it ends, so that a long-lived web process collects no zombies.
    threading.Thread(
        target=process.wait, name=f"exportkit-reaper-{process.pid}", daemon=True
    ).start()
    return process.pid


# -- output paths --------------------------------------------------------------------------


def _path_problem(raw: str) -> str | None:
    """Why a sink path (``{block}`` filled in) may not be used on the page, or None."""
    if control_character(raw) is not None:
        return "contains a control character (such as NUL or a line break)"
    text = raw.replace("\\", "/")
    pure = PurePosixPath(text)
    if text.startswith("~") or pure.is_absolute() or ".." in pure.parts or text[1:2] == ":":
        return "leaves the export folder"
    if any(part in ("", ".") for part in text.split("/")):
        return "does not name a file (an empty or '.' part, or a trailing '/')"
    return None


def check_output_paths(template: Template, blocks: Sequence[str]) -> None:
    """Refuse a template whose outputs could land outside the job's output folder, or
    whose paths do not plainly name a file.

    Every sink path must be relative, without ``..`` and without ``~``, also after
    ``{block}`` became each block's slug; it may hold no control character, no empty or
    ``.`` part and no trailing ``/``.

    :param template: the loaded template.
    :param blocks: the block slugs of the run.
    :raises TemplateError: naming the sink's path key.
    """
    slugs = list(blocks) or ["block"]
    for index, sink in enumerate(template.sinks):
        for slug in slugs:
            problem = _path_problem(sink.path.replace("{block}", slug))
            if problem is not None:
                raise TemplateError(
                    f"{sink.path!r} {problem}; on this page every output path must be a"
                    " relative file path, without '..' or '~'",
                    file=template.file,
                    key_path=f"sinks[{index}].path",
                )


def check_key_env(template: Template, allowed: Sequence[str]) -> None:
    """Refuse a ``[privacy] key_env`` that the deployment does not allow.

    The message is the same whether or not the variable exists, and nothing reads the
    variable before this check: an uploaded template learns nothing about the server's
    environment.

    :param template: the loaded template.
    :param allowed: the variable names the deployment allows (``EXPORTKIT_ALLOWED_KEY_ENV``).
    :raises TemplateError: naming ``privacy.key_env``.
    """
    name = template.privacy.key_env
    if name is not None and name not in allowed:
        raise TemplateError(
            f"{name!r} is not a key variable this page may use; ask the administrators"
            " which ones EXPORTKIT_ALLOWED_KEY_ENV lists",
            file=template.file,
            key_path="privacy.key_env",
        )


#: The folders of an absolute path (up to its last part), where a path starts a word.
_FOLDERS = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"]+/)*(?=[^\s/'\"])")


def redact_paths(text: str, folder: Path | None = None) -> str:
    """``text`` without the server's folders, for a line a browser shows.

    A path in the job's ``out/`` becomes relative to it (as in the zip); any other
    absolute path keeps only its last part.

    :param text: an error line.
    :param folder: the job's folder, if known.
    """
    if folder is not None:
        text = text.replace(f"{folder / OUT_DIR}/", "")
    return _FOLDERS.sub("", text)


def zip_outputs(out_dir: Path, target: Path) -> int:
    """Zip every file under ``out_dir`` (paths relative to it) into ``target`` atomically;
    return the zip's size in bytes."""
    import zipfile

    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
                archive.write(path, path.relative_to(out_dir).as_posix())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return target.stat().st_size

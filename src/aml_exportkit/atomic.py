"""Atomic output: write temporary files beside their targets, rename them all at the end.

Temporary files are named ``.<target name>.exportkit-<pid>-<token>.tmp`` so that a person
sees what they are and a later run can remove the ones whose process is gone (a run killed
with SIGKILL cannot clean up after itself).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

from .errors import SinkError

_TEMP_RE = re.compile(r"^\..+\.exportkit-(?P<pid>\d+)-[0-9a-f]+\.tmp$")


def _temp_name(target: Path) -> str:
    return f".{target.name}.exportkit-{os.getpid()}-{secrets.token_hex(4)}.tmp"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove temporary files of runs that died in ``folder``; return what was removed."""
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if match and not _alive(int(match["pid"])):
            try:
                entry.unlink()
                removed.append(entry)
            except OSError:
                pass
    return removed


class OutputSet:
    """The temporary files of one run and the targets they become.

    :meth:`create` hands out a temporary path beside each target; :meth:`commit` renames
    every one into place; :meth:`discard` removes them, and any folder the run created,
    so that a failed run leaves the output location as it was.
    """

    def __init__(self) -> None:
        self._pending: dict[Path, Path] = {}
        self._made_dirs: list[Path] = []

    @property
    def targets(self) -> tuple[Path, ...]:
        """The targets handed out so far."""
        return tuple(self._pending)

    def create(self, target: Path) -> Path:
        """Reserve ``target`` and return the temporary path to write instead.

        :raises SinkError: when two outputs of the run have the same target, or the
            target's folder cannot be made.
        """
        target = target.absolute()
        if target in self._pending:
            raise SinkError(
                "two outputs of this run write the same file", sink="output", path=str(target)
            )
        if target.is_dir():
            raise SinkError("the output path is a folder", sink="output", path=str(target))
        self._make_parents(target.parent)
        remove_stale_temporaries(target.parent)
        temp = target.parent / _temp_name(target)
        self._pending[target] = temp
        return temp

    def pending_path(self, target: Path) -> Path:
        """The temporary file that will become ``target``.

        :raises KeyError: when ``target`` was not created in this set.
        """
        return self._pending[target.absolute()]

    def _make_parents(self, folder: Path) -> None:
        missing: list[Path] = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except OSError as exc:
                raise SinkError(
                    f"cannot create the folder: {exc.strerror}", sink="output", path=str(path)
                ) from None
            self._made_dirs.append(path)

    def commit(self) -> None:
        """Rename every temporary file onto its target."""
        for target, temp in self._pending.items():
            try:
                os.replace(temp, target)
            except OSError as exc:
                raise SinkError(
                    f"cannot move the output into place: {exc.strerror}",
                    sink="output",
                    path=str(target),
                ) from None
        self._pending.clear()
        self._made_dirs.clear()

    def discard(self) -> None:
        """Remove every temporary file and every folder this run created."""
        for temp in self._pending.values():
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        self._pending.clear()
        for folder in reversed(self._made_dirs):
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._made_dirs.clear()

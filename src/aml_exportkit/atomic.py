"""Atomic output: write temporary files beside their targets, rename them all at the end.

Temporary files are named ``.<target name>.exportkit-<pid>-<token>.tmp`` so that a person
sees what they are and a later run can remove the ones whose process is gone (a run killed
with SIGKILL cannot clean up after itself). While the run's files are renamed into place,
each replaced file is kept aside as ``.<target name>.exportkit-<pid>-<token>.old`` until
every rename succeeded, so that a failed rename puts every target back as it was.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import unicodedata
from pathlib import Path

from .errors import SinkError

# A sink may keep files named after its temporary file (DuckDB's ``<temp>.wal``): they
# are the run's temporaries too.
_TEMP_RE = re.compile(
    r"^\.(?P<name>.+)\.exportkit-(?P<pid>\d+)-[0-9a-f]+\.(?P<kind>tmp(?:\.[A-Za-z0-9]+)?|old)$"
)
#: What the temporary name adds to the target's name: ``.`` + ``.exportkit-<pid>-<8 hex>.tmp``.
_TEMP_EXTRA = len(".") + len(".exportkit-") + 10 + len("-") + 8 + len(".tmp")
#: The longest file name (in bytes) the file systems we run on accept.
NAME_MAX = 255


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is a run's temporary file (its output's, a file a sink keeps beside
    it, or a replaced file kept aside): what a later run sweeps once that run is gone."""
    return _TEMP_RE.match(name) is not None


def _temp_name(target: Path, kind: str = "tmp") -> str:
    return f".{target.name}.exportkit-{os.getpid()}-{secrets.token_hex(4)}.{kind}"


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
    """Remove temporary files of runs that died in ``folder``; return what was removed.

    A kept-aside old file (``.old``) whose target is missing (the run died between moving
    it aside and renaming the new file in) is put back instead.
    """
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if not match or _alive(int(match["pid"])):
            continue
        target = folder / match["name"]
        try:
            if match["kind"] == "old" and not os.path.lexists(target):
                os.replace(entry, target)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


def _check_replaceable(target: Path) -> None:
    """Refuse a target that exists and is not a regular file (a folder, a FIFO, a device):
    only regular files are replaced."""
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise SinkError(
            f"cannot check the target: {exc.strerror}", sink="output", path=str(target)
        ) from None
    if stat.S_ISREG(mode):
        return
    kind = (
        "a folder"
        if stat.S_ISDIR(mode)
        else "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    raise SinkError(
        f"the output path is {kind}; only regular files are replaced",
        sink="output",
        path=str(target),
    )


def is_utf8(text: str) -> bool:
    """Whether ``text`` came from UTF-8 bytes: Python keeps bytes that are not UTF-8 (in
    arguments, file names) as lone surrogates (PEP 383), which no output can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_path(text: str) -> str:
    """``text`` for a message, with bytes that are not UTF-8 shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def control_character(text: str) -> str | None:
    """How the first control character in ``text`` (a path) is shown in a message, or None:
    a NUL ends a path for the OS, and a line break or a tab makes a name that messages,
    listings and the manifest cannot show on one line."""
    for char in text:
        if ord(char) < 32 or ord(char) == 127:
            return "a NUL character" if char == "\0" else f"the control character {char!r}"
    return None


def _check_name(target: Path) -> None:
    """Refuse a path the OS cannot take, or no output can record, with a clear message
    rather than an OS error."""
    text = str(target)
    control = control_character(text)
    if control is not None:
        raise SinkError(f"the path contains {control}", sink="output", path=repr(text))
    if not is_utf8(text):
        raise SinkError(
            "the path is not UTF-8 text; outputs and the manifest name it, so it must be",
            sink="output",
            path=shown_path(text),
        )
    size = len(os.fsencode(target.name))
    if size + _TEMP_EXTRA > NAME_MAX:
        raise SinkError(
            f"the file name has {size} bytes; at most {NAME_MAX - _TEMP_EXTRA} fit beside"
            f" the temporary name's {_TEMP_EXTRA} extra bytes",
            sink="output",
            path=text,
        )


class OutputSet:
    """The temporary files of one run and the targets they become.

    :meth:`create` hands out a temporary path beside each target; :meth:`commit` renames
    every one into place, all or nothing; :meth:`discard` removes them, and any folder the
    run created, so that a failed run leaves the output location as it was.

    :param keep_existing: refuse to replace an existing file (an incremental run writes a
        part, which must not replace the earlier export it follows), except the files that
        describe the run (:meth:`create` with ``describes_run``).
    """

    def __init__(self, *, keep_existing: bool = False) -> None:
        self._keep_existing = keep_existing
        self._pending: dict[Path, Path] = {}
        #: each target's real path (``..`` and symbolic links resolved, letter case and
        #: Unicode form folded) → the target
        self._real: dict[str, Path] = {}
        self._made_dirs: list[Path] = []

    @property
    def targets(self) -> tuple[Path, ...]:
        """The targets handed out so far."""
        return tuple(self._pending)

    def create(self, target: Path, *, describes_run: bool = False) -> Path:
        """Reserve ``target`` and return the temporary path to write instead.

        :param describes_run: the target is the manifest or the codebook, which the latest
            run may replace even with ``keep_existing`` (the manifest carries the chain of
            parts on).
        :raises SinkError: when two outputs of the run are one file (also through ``..``
            or a symbolic link), one output's path is the folder of another, the target
            exists and is not a regular file, exists at all under ``keep_existing``, or its
            folder cannot be made.
        """
        target = _key(target)
        _check_name(target)
        if self._keep_existing and not describes_run and os.path.lexists(target):
            raise SinkError(
                "exists and holds an earlier export; a --since run writes its part to new"
                " files and never replaces one: give the part another --out folder",
                sink="output",
                path=str(target),
            )
        real = _fold(os.path.realpath(target))
        other = self._real.get(real)
        if other is not None:
            same = "" if other == target else f" (also written as {other})"
            if other != target and os.path.realpath(other) != os.path.realpath(target):
                same += (
                    "; names that differ only in letter case or Unicode form are one file"
                    " on macOS and Windows"
                )
            raise SinkError(
                f"two outputs of this run write the same file{same}",
                sink="output",
                path=str(target),
            )
        for known, path in self._real.items():
            if known.startswith(real + os.sep) or real.startswith(known + os.sep):
                raise SinkError(
                    f"one output's path is the folder of another ({path})",
                    sink="output",
                    path=str(target),
                )
        _check_replaceable(target)
        self._make_parents(target.parent)
        remove_stale_temporaries(target.parent)
        temp = target.parent / _temp_name(target)
        self._pending[target] = temp
        self._real[real] = target
        return temp

    def pending_path(self, target: Path) -> Path:
        """The temporary file that will become ``target``.

        :raises KeyError: when ``target`` was not created in this set.
        """
        return self._pending[_key(target)]

    def _make_parents(self, folder: Path) -> None:
        missing: list[Path] = []
        while not os.path.lexists(folder):
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
        """Rename every temporary file onto its target, all or nothing.

        Each file that a rename replaces is kept aside (a hard link, else a rename) until
        every rename succeeded. When one fails, the renames done so far are undone, so
        every target is as it was, and the temporary files stay for :meth:`discard`.

        :raises SinkError: naming the target whose rename failed.
        """
        done: list[tuple[Path, Path | None]] = []
        try:
            for target, temp in self._pending.items():
                _check_replaceable(target)
                backup = _keep_aside(target)
                try:
                    os.replace(temp, target)
                except BaseException:
                    if backup is not None:
                        _restore(backup, target)
                    raise
                done.append((target, backup))
        except OSError as exc:
            failed = target
            self._undo(done)
            raise SinkError(
                f"cannot move the output into place: {exc.strerror or exc}; no output was changed",
                sink="output",
                path=str(failed),
            ) from None
        except BaseException:
            self._undo(done)
            raise
        for _target, backup in done:
            if backup is not None:
                with contextlib.suppress(OSError):
                    backup.unlink()
        self._pending.clear()
        self._real.clear()
        self._made_dirs.clear()

    def _undo(self, done: list[tuple[Path, Path | None]]) -> None:
        for target, backup in reversed(done):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, target)
                else:
                    target.unlink()

    def discard(self) -> None:
        """Remove every temporary file and every folder this run created.

        Never raises: it runs while another error is on its way to the user, and must not
        take its place.
        """
        for temp in self._pending.values():
            with contextlib.suppress(OSError, ValueError):
                temp.unlink()
        self._pending.clear()
        self._real.clear()
        for folder in reversed(self._made_dirs):
            with contextlib.suppress(OSError, ValueError):
                folder.rmdir()
        self._made_dirs.clear()


def _fold(path: str) -> str:
    """``path`` as a file system that ignores letter case and Unicode form sees it (macOS,
    Windows): two outputs of a run must differ here too, or the one would replace the other
    wherever the outputs are copied to such a disk (or written on one)."""
    return unicodedata.normalize("NFC", path).casefold()


def _key(target: Path) -> Path:
    """``target`` absolute, with ``.`` and ``..`` folded (as the OS reads a path whose
    folders do not exist yet)."""
    return Path(os.path.abspath(target))


def _keep_aside(target: Path) -> Path | None:
    """Keep the file ``target`` names under a temporary name until the commit is done;
    None when there is none."""
    if not os.path.lexists(target):
        return None
    backup = target.parent / _temp_name(target, "old")
    try:
        os.link(target, backup, follow_symlinks=False)
    except OSError:
        # a file system without hard links: move it aside (the target is briefly absent)
        os.rename(target, backup)
    return backup


def _restore(backup: Path, target: Path) -> None:
    with contextlib.suppress(OSError):
        os.replace(backup, target)

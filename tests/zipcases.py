"""Build MUSCLE-style export zips for tests, from scratch or by mutating a reference zip."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Objects = list[dict[str, Any]]

MEMBERS = (
    "sessions.json",
    "participants.json",
    "profiles.json",
    "results.json",
    "sections.json",
    "songs.json",
    "feedback.json",
)


def read_members(path: Path) -> dict[str, Objects]:
    """The parsed members of a (plain) MUSCLE zip."""
    with zipfile.ZipFile(path) as archive:
        return {name: json.loads(archive.read(name)) for name in archive.namelist()}


def django_dumps(objects: Objects) -> bytes:
    """Serialise as Django's serializer does (one line, ', ' between objects)."""
    return ("[" + ", ".join(json.dumps(o, ensure_ascii=False) for o in objects) + "]").encode()


def write_zip(path: Path, members: Mapping[str, Objects | bytes]) -> Path:
    """Write a zip with the given members (objects are serialised, bytes written raw)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            data = content if isinstance(content, bytes) else django_dumps(content)
            archive.writestr(name, data)
    return path


def mutated(
    source: Path, target: Path, **changes: Callable[[Objects], Objects | bytes] | None
) -> Path:
    """Copy ``source`` to ``target``, changing members: ``results_json=fn`` replaces
    results.json by ``fn(objects)``; ``None`` drops the member."""
    members: dict[str, Objects | bytes] = dict(read_members(source))
    for key, change in changes.items():
        name = key.replace("_json", ".json")
        if change is None:
            members.pop(name)
        else:
            members[name] = change(members[name])  # type: ignore[arg-type]
    return write_zip(target, members)

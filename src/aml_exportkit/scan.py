"""What the data holds: every json_data path with its types and how often it occurs.

Used by ``exportkit check`` (drift between a template and the data), ``exportkit init``
(a starter template listing what there is) and the codebook (choice labels).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from .flatten import Path, path_text
from .graph import RecordGraph
from .records import JSONValue, Result
from .schema import json_type


def leaves(value: JSONValue, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every leaf of a JSON value (non-empty objects are walked, lists are leaves)."""
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from leaves(child, (*path, key))
    else:
        yield path, value


@attrs.define
class PathStats:
    """How one json_data path occurs.

    :param path: the path as a tuple of keys.
    :param count: in how many documents it occurs.
    :param types: how often each JSON type occurs at it.
    """

    path: Path
    count: int = 0
    types: Counter[str] = attrs.field(factory=Counter)

    @property
    def text(self) -> str:
        """The path as text, e.g. ``config.auto_advance``."""
        return path_text(self.path)

    @property
    def conflicting(self) -> bool:
        """Whether it holds more than one type, nulls not counted (integers and numbers
        count as one)."""
        kinds = {("number" if t == "integer" else t) for t in self.types if t != "null"}
        return len(kinds) > 1

    def describe(self, documents: int) -> str:
        """``string, 9,876 of 10,000 (98.8%)``."""
        kinds = "/".join(t for t, _ in self.types.most_common())
        share = f" ({100 * self.count / documents:.1f}%)" if documents else ""
        return f"{kinds}, {self.count:,} of {documents:,}{share}"


@attrs.define
class JsonScan:
    """The json_data paths of one kind of document (sessions, trial results, profiles)."""

    documents: int = 0
    paths: dict[Path, PathStats] = attrs.field(factory=dict)

    def add(self, value: JSONValue) -> None:
        """Count one document."""
        self.documents += 1
        for path, leaf in leaves(value):
            if not path:
                continue
            stats = self.paths.get(path)
            if stats is None:
                stats = self.paths[path] = PathStats(path)
            stats.count += 1
            stats.types[json_type(leaf)] += 1

    def sorted(self) -> list[PathStats]:
        """Paths in text order."""
        return sorted(self.paths.values(), key=lambda s: s.text)


@attrs.define
class DataScan:
    """Everything :func:`scan_graph` found."""

    session: JsonScan = attrs.field(factory=JsonScan)
    trial: JsonScan = attrs.field(factory=JsonScan)
    profile: JsonScan = attrs.field(factory=JsonScan)
    question_keys: Counter[str] = attrs.field(factory=Counter)
    #: question_key → {choice value: label} found in json_data ``choices``.
    choices: dict[str, dict[str, str]] = attrs.field(factory=dict)
    #: question_key → question text found in json_data (``text`` or ``question``).
    questions: dict[str, str] = attrs.field(factory=dict)

    def merge_questions(self, later: DataScan) -> None:
        """Take in the questions ``later`` found in the results that follow these: the same
        as noting those results here in order (counts add up, the first text and the
        first label of a choice win, labels keep the order they were first met in)."""
        self.question_keys.update(later.question_keys)
        for key, text in later.questions.items():
            self.questions.setdefault(key, text)
        for key, labels in later.choices.items():
            mine = self.choices.setdefault(key, {})
            for value, label in labels.items():
                mine.setdefault(value, label)

    def add_results(self, batch: Iterable[Result], scan: JsonScan) -> None:
        """Count a batch of results of one kind."""
        for result in batch:
            scan.add(result.json_data)
            self.question_keys[result.question_key] += 1
            note_question(self, result.question_key, result.json_data)


def note_question(found: DataScan, key: str, data: JSONValue) -> None:
    """Remember a question's text and its choice labels from a result's json_data."""
    if not isinstance(data, dict):
        return
    text = data.get("text") or data.get("question")
    if isinstance(text, str) and text and key not in found.questions:
        found.questions[key] = text
    choices = data.get("choices")
    labels: dict[str, str] = found.choices.setdefault(key, {}) if choices else {}
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and "value" in choice:
                labels.setdefault(str(choice["value"]), str(choice.get("label", "")))
    elif isinstance(choices, dict):
        for value, label in choices.items():
            labels.setdefault(str(value), str(label))


def scan_graph(graph: RecordGraph) -> DataScan:
    """Read every session and result of ``graph`` (consuming its result streams)."""
    found = DataScan()
    for session in graph.sessions.values():
        found.session.add(session.json_data)
    for batch in graph.profile_results():
        found.add_results(batch, found.profile)
    for batch in graph.trial_results():
        found.add_results(batch, found.trial)
    return found


def field_names(models: Mapping[str, Any]) -> dict[str, list[str]]:
    """The declared fields of some record types, by model key (for listings)."""
    return {key: [f.name for f in attrs.fields(cls)] for key, cls in models.items()}

"""Variable and value labels from the questions MUSCLE stored in results' ``json_data``.

A question result's ``json_data`` carries its text (``text``, or ``question`` in older
blocks) and, for closed questions, its ``choices``: a list of ``{"value", "label"}`` objects
or a ``{value: label}`` object. The sink notes every question it sees, then ties columns to
questions by our tables' naming rules (docs/csv.md); the README lists them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from aml_exportkit.frames import TableOptions
from aml_exportkit.records import Result

#: The result columns that hold a given answer: a choice's value when the question has
#: choices.
ANSWER_FIELDS = ("result_given_response", "result_expected_response")
_SESSION_KEY = re.compile(r"s\d+")


@attrs.define
class Question:
    """What the results tell about one question key.

    :param text: the first non-empty text seen.
    :param choices: choice value (as text) → label; the first label of a value wins.
    """

    text: str | None = None
    choices: dict[str, str] = attrs.field(factory=dict)


@attrs.define
class QuestionBook:
    """Every question of the results a sink was fed, by kind of result."""

    questions: dict[str, Question] = attrs.field(factory=dict)
    #: question keys of profile answers and of trial results
    profile_keys: set[str] = attrs.field(factory=set)
    trial_keys: set[str] = attrs.field(factory=set)

    def add(self, batch: Iterable[Result], *, profile: bool) -> None:
        """Note the questions of a batch of results."""
        keys = self.profile_keys if profile else self.trial_keys
        for result in batch:
            keys.add(result.question_key)
            question = self.questions.setdefault(result.question_key, Question())
            _note(question, result.json_data)


def _note(question: Question, data: Any) -> None:
    if not isinstance(data, dict):
        return
    text = data.get("text") or data.get("question")
    if question.text is None and isinstance(text, str) and text.strip():
        question.text = text.strip()
    choices = data.get("choices")
    pairs: Iterable[tuple[Any, Any]] = ()
    if isinstance(choices, list):
        pairs = (
            (c["value"], c.get("label")) for c in choices if isinstance(c, dict) and "value" in c
        )
    elif isinstance(choices, dict):
        pairs = choices.items()
    for value, label in pairs:
        if value is None or isinstance(value, dict | list):
            continue
        question.choices.setdefault(_text(value), str(label) if label is not None else "")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@attrs.frozen
class Tie:
    """What a column holds, as far as questions go.

    :param keys: the questions whose answers (or other values) the column holds.
    :param answers: whether the column holds the answers (choice values) themselves.
    :param score: whether it holds the profile answers' scores.
    """

    keys: tuple[str, ...]
    answers: bool
    score: bool = False


def tie_columns(
    columns: Sequence[str],
    book: QuestionBook,
    options: TableOptions,
    *,
    layout: str,
) -> dict[str, Tie]:
    """Which question(s) each column belongs to, by the naming rules of our tables (the
    exportkit style; MUSCLE's classic styles get no question ties)."""
    if options.style != "exportkit":
        return {}
    sep = options.flatten.separator
    profile = f"{options.prefix.profile}{sep}"
    score = f"{options.prefix.profile_score}{sep}"
    answer_fields = (*ANSWER_FIELDS, f"{options.prefix.result}{sep}value")
    if layout == "long":
        rows = options.rows
        row_keys = set()
        if rows in ("trial", "both"):
            row_keys |= book.trial_keys
        if rows in ("profile", "both"):
            row_keys |= book.profile_keys
    else:
        row_keys = set(book.trial_keys)
    every = tuple(sorted(row_keys))
    ties: dict[str, Tie] = {}
    for column in columns:
        if column.startswith(profile) and column[len(profile) :] in book.questions:
            ties[column] = Tie((column[len(profile) :],), answers=True)
            continue
        if column.startswith(score) and column[len(score) :] in book.questions:
            ties[column] = Tie((column[len(score) :],), answers=False, score=True)
            continue
        if column in answer_fields and layout == "long":
            ties[column] = Tie(every, answers=True)
            continue
        parts = column.split(sep)
        if layout == "wide" and len(parts) > 2 and _SESSION_KEY.fullmatch(parts[0]):
            parts = parts[1:]  # participant rows: s1.<key>.<column>
        if layout != "wide" or len(parts) < 2:
            continue
        head, rest = parts[0], sep.join(parts[1:])
        key = head.split("~")[0]
        if head.isdigit():  # keyed by number: any trial question may be behind it
            if rest in answer_fields:
                ties[column] = Tie(every, answers=True)
        elif key in book.questions and key in book.trial_keys:
            ties[column] = Tie((key,), answers=rest in answer_fields)
    return ties


def question_text(tie: Tie, book: QuestionBook) -> str | None:
    """The text of the one question behind a column (None for several or none)."""
    if len(tie.keys) != 1:
        return None
    text = book.questions[tie.keys[0]].text
    return f"score: {text}" if tie.score and text else text


def merged_choices(keys: Iterable[str], book: QuestionBook) -> dict[str, str] | None:
    """The choices of every question in ``keys`` together; None when there are none, or
    when one value has two different labels."""
    merged: dict[str, str] = {}
    for key in keys:
        for value, label in book.questions[key].choices.items():
            if merged.setdefault(value, label) != label:
                return None
    return merged or None


def as_number(text: str) -> float | None:
    """A choice value as a number (None when it is not one)."""
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None

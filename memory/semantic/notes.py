"""Semantic memory's values: a :class:`Note` to remember, a recalled :class:`Hit`, an :class:`Episode`, and the
checks every batch of notes passes before anything is written.

Input rules, enforced for a whole batch before anything is written:

- text must contain a non-whitespace character (``ValueError("note text is empty")``) and be at
  most ``MAX_TEXT_CHARS`` characters; NUL characters are removed, everything else (emoji, RTL,
  combining marks, other controls) is stored exactly as given; lone surrogates are rejected;
- ``at`` must be a datetime; a naive one is taken to be UTC, an aware one is converted to UTC;
- ``scope``, ``source`` and ``ref`` (when given) must be non-empty strings; a missing ``ref`` is
  set to the note's generated id.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from memory.db import utcnow
from memory.errors import InternalError
from memory.semantic.contracts import MemoryUnavailable

MAX_TEXT_CHARS = 100_000


@dataclass(frozen=True)
class Note:
    """Something to remember. ``ref`` is the caller's handle (e.g. a message id); None means generated."""

    text: str
    source: str = "chat"
    at: datetime = field(default_factory=utcnow)
    scope: str = "default"
    ref: str | None = None


@dataclass(frozen=True)
class Hit:
    """One recalled note, with its original text; ``score`` is higher for better hits."""

    id: str
    ref: str
    text: str
    score: float
    at: datetime
    source: str
    scope: str


@dataclass(frozen=True)
class Episode:
    """A closed stretch of conversation in a scope and its summary (by ``summarizer``)."""

    id: str
    scope: str
    start: datetime
    end: datetime
    turns: int
    summarizer: str
    summary: str


class EmbedderUnavailable(MemoryUnavailable):
    """Notes could not be written because the embedder failed (a model server down, a network fault);
    the index itself is fine, so nothing needs rebuilding: retry later."""


class InvalidNote(InternalError, ValueError):
    """A note was refused; ``index`` is its position in the batch. Nothing of the batch was written."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


def check_scope(scope: object) -> str:
    if not isinstance(scope, str) or not scope.strip():
        raise ValueError("scope must be a non-empty string")
    return scope


def _check_name(value: object, what: str, index: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidNote(f"note {what} must be a non-empty string", index)
    return value


def clean(note: Note, index: int) -> dict[str, Any]:
    if not isinstance(note, Note):
        raise TypeError(f"expected a Note, got {type(note).__name__}")
    if not isinstance(note.text, str):
        raise InvalidNote("note text must be a string", index)
    text = note.text.replace("\x00", "")
    if not text.strip():
        raise InvalidNote("note text is empty", index)
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidNote(f"note text is {len(text)} characters long; the limit is {MAX_TEXT_CHARS}", index)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidNote(f"note text is not valid Unicode (lone surrogate at {exc.start})", index) from None
    if not isinstance(note.at, datetime):
        raise InvalidNote("note at must be a datetime", index)
    at = note.at.replace(tzinfo=UTC) if note.at.tzinfo is None else note.at.astimezone(UTC)
    note_id = str(uuid.uuid4())
    return {
        "id": note_id,
        "scope": _check_name(note.scope, "scope", index),
        "ref": note_id if note.ref is None else _check_name(note.ref, "ref", index),
        "source": _check_name(note.source, "source", index),
        "text": text,
        "at": at,
    }


def check_notes(notes: Sequence[Note]) -> None:
    """Raise ``InvalidNote`` (or ``TypeError``) for the first note ``add_many`` would refuse; write nothing."""
    for index, note in enumerate(notes):
        clean(note, index)

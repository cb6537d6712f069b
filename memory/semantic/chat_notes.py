"""What semantic memory is fed from the conversation, and how to feed it again from the canonical copy.

A chat message becomes a note written as ``[25 November 2026] operator: text`` (the date in the
operator's time zone): ``memory.semantic.turns`` reads the speaker from it, and the date in the text lets a
question like "what did I say in May?" match. SQLite keeps the canonical copy of everything semantic
memory holds (the operator's messages in the event log, remembered notes in the notes table), so a
lost or corrupt index can be rebuilt from it (:func:`notes_from_log`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from memory.db import Event
from memory.notes import StoredNote
from memory.semantic.notes import Note
from memory.semantic.turns import parse

OPERATOR = "operator"
COO = "COO"


def chat_note(text: str, at: datetime, channel: str, ref: str, scope: str, tz: str, speaker: str = OPERATOR) -> Note:
    """The note for one chat message (``speaker`` said ``text`` at ``at``)."""
    day = at.astimezone(ZoneInfo(tz))
    return Note(
        text=f"[{day.day} {day:%B %Y}] {speaker}: {text}",
        source=f"chat:{channel}",
        at=at,
        scope=scope,
        ref=ref,
    )


def said(text: str, source: str) -> str:
    """What a note says: a chat note without the date and speaker it carries for search."""
    return parse(text).body if source.startswith("chat:") else text


def is_chat_message(event: Event) -> bool:
    """An operator's free-text message (not a command, a button press, a pairing code or a message
    redacted by /forget)."""
    text = str(event.payload.get("text", ""))
    return (
        event.kind == "message.in"
        and event.payload.get("kind") == "message"
        and not event.payload.get("redacted")
        and bool(text.strip())
        and not text.startswith("/")
    )


def forgotten_refs(events: Iterable[Event]) -> set[str]:
    """The refs that ``/forget`` removed, from the log's ``memory.forgotten`` events."""
    return {str(event.payload.get("ref")) for event in events if event.kind == "memory.forgotten"}


def notes_from_log(
    events: Iterable[Event], remembered: Iterable[StoredNote], scope: str, tz: str, forgotten: set[str]
) -> list[Note]:
    """Everything semantic memory should hold, rebuilt from SQLite, minus what was forgotten, oldest first
    (``add_many`` takes each scope in the order it was said: episodes and reply context follow it)."""
    notes = [Note(text=n.text, source=n.source, at=n.at, scope=n.scope, ref=n.ref) for n in remembered]
    for event in events:
        if is_chat_message(event):
            channel = (event.session or "chat").split(":", 1)[0]
            text = str(event.payload["text"])
            notes.append(chat_note(text, event.at, channel, f"msg-{event.id}", scope, tz))
    return sorted((n for n in notes if n.ref not in forgotten), key=lambda n: n.at)

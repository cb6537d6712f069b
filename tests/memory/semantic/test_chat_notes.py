"""Rebuilding semantic memory from SQLite: what it holds, in the order it was said."""

from __future__ import annotations

from datetime import UTC, datetime

from memory.db import Event
from memory.notes import StoredNote
from memory.semantic.chat_notes import notes_from_log

MAY_8 = datetime(2023, 5, 8, 9, 0, tzinfo=UTC)


def message(event_id: int, minute: int, text: str, **extra: object) -> Event:
    at = MAY_8.replace(minute=minute)
    return Event(event_id, at, "telegram:1", "telegram:1", "message.in", {"kind": "message", "text": text, **extra})


def test_the_log_comes_back_oldest_first_without_what_was_forgotten_or_redacted() -> None:
    events = [
        message(1, 0, "Acme pays net 45"),
        message(2, 20, "the spare key is under the mat"),
        message(3, 30, "[forgotten]", redacted=True),
        message(4, 40, "/status"),
    ]
    remembered = [
        StoredNote("n-1", "default", "remember:telegram:1", "Lisbon office opens at nine", MAY_8.replace(minute=10))
    ]
    notes = notes_from_log(events, remembered, "default", "UTC", forgotten={"msg-2"})
    assert [n.ref for n in notes] == ["msg-1", "n-1"]  # in the order it was said: episodes follow it
    assert notes[0].text == "[8 May 2023] operator: Acme pays net 45"

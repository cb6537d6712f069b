"""Notes the operator asked us to remember: kept in SQLite (for export) and in semantic memory.
``/forget`` removes them from both; the event log records only that a note was added or removed."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from memory.db import Database, utcnow
from memory.lines import Line, Table, row_line

NOTES_SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    ref TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    source TEXT NOT NULL,
    text TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


MAX_NOTE_CHARS = 100_000
"""The longest note ``/remember`` can store: a chat message's limit (``bot.dispatcher.MAX_INPUT_CHARS``)."""


@dataclass(frozen=True)
class StoredNote:
    """One remembered note."""

    ref: str
    scope: str
    source: str
    text: str
    at: datetime


_NoteFields: Any = row_line(StoredNote, checks={"text": Field(max_length=MAX_NOTE_CHARS)})


class NoteLine(_NoteFields):
    """One remembered note in a backup (the fields of :class:`StoredNote`)."""


_NOTES = Table("notes", NoteLine)


class NoteLedger:
    """The SQLite side of remembered notes."""

    name: ClassVar[str] = "notes"
    version: ClassVar[int] = 1
    line: ClassVar[type[Line]] = NoteLine
    tables: ClassVar[tuple[Table, ...]] = (_NOTES,)
    """In a backup (``memory.portable``): every note."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """Create the table."""
        await self._db.script(NOTES_SCHEMA)

    async def add(self, note: StoredNote) -> None:
        """Keep a note."""
        await self._db.write(
            "INSERT OR REPLACE INTO notes (ref, scope, source, text, at) VALUES (?, ?, ?, ?, ?)",
            (note.ref, note.scope, note.source, note.text, note.at.isoformat()),
        )

    async def remove(self, ref: str) -> bool:
        """Delete a note; True when it existed."""
        return (await self._db.write("DELETE FROM notes WHERE ref = ?", (ref,))).rowcount == 1

    async def all(self) -> list[StoredNote]:
        """Every note, oldest first."""
        rows = await self._db.fetchall("SELECT ref, scope, source, text, at FROM notes ORDER BY at")
        return [StoredNote(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4])) for r in rows]

    async def dump(self) -> list[dict[str, Any]]:
        """Every note, oldest first."""
        return [_NOTES.read(r) for r in await self._db.fetchall(_NOTES.select("ORDER BY at"))]

    async def restore(self, lines: Sequence[NoteLine]) -> None:
        """Keep the notes as they are."""
        rows = [_NOTES.values(n) for n in lines]

        def work(conn: sqlite3.Connection) -> None:
            _NOTES.insert(conn, rows)

        await self._db.run_transaction(work)


def new_ref() -> str:
    """A short, readable note reference."""
    return "n-" + utcnow().strftime("%y%m%d%H%M%S%f")[:-3]

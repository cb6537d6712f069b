"""Notes the operator asked us to remember: kept in SQLite (for export) and in semantic memory.
``/forget`` removes them from both; the event log records only that a note was added or removed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from memory.db import Database, utcnow

NOTES_SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    ref TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    source TEXT NOT NULL,
    text TEXT NOT NULL,
    at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class StoredNote:
    """One remembered note."""

    ref: str
    scope: str
    source: str
    text: str
    at: datetime


class NoteLedger:
    """The SQLite side of remembered notes."""

    def __init__(self, db: Database) -> None:
        self._conn = db.connection

    async def setup(self) -> None:
        """Create the table."""
        await self._conn.executescript(NOTES_SCHEMA)
        await self._conn.commit()

    async def add(self, note: StoredNote) -> None:
        """Keep a note."""
        await self._conn.execute(
            "INSERT OR REPLACE INTO notes (ref, scope, source, text, at) VALUES (?, ?, ?, ?, ?)",
            (note.ref, note.scope, note.source, note.text, note.at.isoformat()),
        )
        await self._conn.commit()

    async def remove(self, ref: str) -> bool:
        """Delete a note; True when it existed."""
        cur = await self._conn.execute("DELETE FROM notes WHERE ref = ?", (ref,))
        await self._conn.commit()
        return cur.rowcount == 1

    async def all(self) -> list[StoredNote]:
        """Every note, oldest first."""
        async with self._conn.execute("SELECT ref, scope, source, text, at FROM notes ORDER BY at") as cur:
            return [StoredNote(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4])) for r in await cur.fetchall()]


def new_ref() -> str:
    """A short, readable note reference."""
    return "n-" + utcnow().strftime("%y%m%d%H%M%S%f")[:-3]

"""The event log in a backup (``events.jsonl``): every event, with its id, as stored."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, ClassVar

from memory.db import Database, Event
from memory.lines import Line, Table, row_line

_EventFields: Any = row_line(Event)


class EventLine(_EventFields):
    """One event (the fields of ``memory.db.Event``)."""


_EVENTS = Table("events", EventLine)


def events_query(tail: str) -> str:
    """``SELECT`` of the event log's exported columns, then ``tail`` (a WHERE, an ORDER BY)."""
    return _EVENTS.select(tail)


def event_line(row: Any) -> dict[str, Any]:
    """A row of :func:`events_query` as ``coo export`` writes it."""
    return _EVENTS.read(row)


class EventLog:
    """The event log's rows (``memory.portable``); its table is made by ``Database.migrate``."""

    name: ClassVar[str] = "events"
    version: ClassVar[int] = 1
    line: ClassVar[type[Line]] = EventLine
    tables: ClassVar[tuple[Table, ...]] = (_EVENTS,)

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """Nothing to do: opening the database made the table."""

    async def dump(self) -> list[dict[str, Any]]:
        """Every event, oldest first."""
        return [_EVENTS.read(row) for row in await self._db.fetchall(_EVENTS.select("ORDER BY id"))]

    async def restore(self, lines: Sequence[EventLine]) -> None:
        """Append the events with their ids, in id order (the message index fills as they go in)."""
        rows = [_EVENTS.values(e) for e in sorted(lines, key=lambda e: e.id)]

        def work(conn: sqlite3.Connection) -> None:
            _EVENTS.insert(conn, rows)

        await self._db.run_transaction(work)

"""Follow-ups: who to get back to, about what, and when (UTC), with where each came from (the operator, the
model, or an email sent with no reply yet) and what became of it.

States: ``open`` (waiting for its day), ``proposed`` (its card or reminder came up, once: the approval it
was proposed under is kept), ``done``, ``cancelled``. An automatic follow-up is unique per sent email.

Sent emails and their replies, as follow-ups are matched against them, are read by ``memory.followup_mail``.

In a backup (``followups.jsonl``, ``memory.portable``) every follow-up is one :class:`FollowupLine`; what an
import may not trust (a card that came up) is changed by ``bot/backup.py`` first.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from memory.db import Database, utcnow
from memory.followup_mail import FollowupMail, Unanswered, stamp
from memory.lines import Line, Table, row_line
from memory.rows import RowReader

__all__ = ["Followup", "FollowupLine", "FollowupStore", "NewFollowup", "Source", "State", "Unanswered", "stamp"]

Source = Literal["manual", "model", "auto"]
State = Literal["open", "proposed", "done", "cancelled"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS followups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    contact TEXT NOT NULL,
    email TEXT NOT NULL DEFAULT '',
    what TEXT NOT NULL,
    due_at TEXT NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('manual', 'model', 'auto')),
    message_id TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    refs TEXT NOT NULL DEFAULT '[]',
    state TEXT NOT NULL CHECK (state IN ('open', 'proposed', 'done', 'cancelled')),
    approval_id TEXT,
    delivered INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS followups_due ON followups(state, due_at);
CREATE UNIQUE INDEX IF NOT EXISTS followups_auto ON followups(message_id) WHERE source = 'auto';
CREATE INDEX IF NOT EXISTS followups_undelivered ON followups(id) WHERE state = 'proposed' AND delivered = 0;
"""


@dataclass(frozen=True)
class Followup:
    """One follow-up. ``message_id``/``subject``/``refs``: the email it follows up on, when there is one."""

    id: int
    contact: str
    email: str
    what: str
    due: datetime
    source: Source
    message_id: str
    subject: str
    refs: tuple[str, ...]
    state: State
    approval_id: str | None
    delivered: bool
    created_at: datetime
    updated_at: datetime


# A follow-up's due time is stored as ``due_at``.
_followup = RowReader(Followup, names={"due": "due_at"})
_COLUMNS = _followup.columns
_INSERT = (
    f"INSERT OR IGNORE INTO followups ({_COLUMNS.removeprefix('id, ')}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', NULL, 0, ?, ?)"
)


_FollowupFields: Any = row_line(Followup, times=str, names={"due": "due_at"}, checks={"id": Field(ge=1)})


class FollowupLine(_FollowupFields):
    """One follow-up in a backup (the fields of :class:`Followup`, its due time as ``due_at``). Times are
    stored as :func:`stamp` writes them (UTC, to the second: the due check compares them as text), so a
    line's time in another form is written that way."""

    @field_validator("due_at", "created_at", "updated_at")
    @classmethod
    def _stamped(cls, value: str) -> str:
        at = datetime.fromisoformat(value)
        if at.tzinfo is None:
            raise ValueError("a time needs its zone (UTC offset)")
        return stamp(at)

    @model_validator(mode="after")
    def _open_has_no_card(self) -> FollowupLine:
        # Only a follow-up that came up has a card or was shown; an open one holding either is not ours.
        if self.state == "open" and (self.approval_id is not None or self.delivered):
            raise ValueError(f"follow-up {self.id} is open, so it cannot have a card or have been shown")
        if self.source == "auto" and not self.message_id:
            raise ValueError(f"automatic follow-up {self.id} names no sent email")
        return self


_FOLLOWUPS = Table("followups", FollowupLine)


@dataclass(frozen=True)
class NewFollowup:
    """What a new follow-up is made of."""

    contact: str
    what: str
    due: datetime
    source: Source
    email: str = ""
    message_id: str = ""
    subject: str = ""
    refs: tuple[str, ...] = ()


class FollowupStore(FollowupMail):
    """The ``followups`` table in the application database."""

    name: ClassVar[str] = "followups"
    version: ClassVar[int] = 1
    line: ClassVar[type[Line]] = FollowupLine
    tables: ClassVar[tuple[Table, ...]] = (_FOLLOWUPS,)
    """In a backup (``memory.portable``): every follow-up, closed ones included. The reply cursor and when
    automatic follow-ups began are not: they count this install's mail, which a backup does not carry."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """Create the table (idempotent)."""
        await self._db.script(_SCHEMA)

    async def dump(self) -> list[dict[str, Any]]:
        """Every follow-up, by id."""
        return [_FOLLOWUPS.read(r) for r in await self._db.fetchall(_FOLLOWUPS.select("ORDER BY id"))]

    async def restore(self, lines: Sequence[FollowupLine]) -> None:
        """Write the follow-ups as they are, ids kept (a card's name is made from its follow-up's id)."""
        rows = [_FOLLOWUPS.values(f) for f in lines]

        def work(conn: sqlite3.Connection) -> None:
            _FOLLOWUPS.insert(conn, rows)

        await self._db.run_transaction(work)

    async def add(self, new: NewFollowup) -> Followup:
        """Store a new open follow-up."""
        now = stamp(utcnow())
        written = await self._db.write(_INSERT.replace("INSERT OR IGNORE", "INSERT"), (*_values(new), now, now))
        found = await self.get(int(written.lastrowid or 0))
        assert found is not None
        return found

    async def add_auto(self, items: Sequence[NewFollowup]) -> int:
        """Store automatic follow-ups, at most one per sent email (a second is ignored); how many were new."""
        now = stamp(utcnow())
        rows = [(*_values(n), now, now) for n in items]

        def work(conn: sqlite3.Connection) -> int:
            return sum(conn.execute(_INSERT, row).rowcount for row in rows)

        return await self._db.run_transaction(work)

    async def get(self, followup_id: int) -> Followup | None:
        """One follow-up."""
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM followups WHERE id = ?", (followup_id,))
        return _followup(row) if row else None

    async def listing(self, states: Iterable[State] = ("open", "proposed"), limit: int = 50) -> list[Followup]:
        """Follow-ups in ``states``, soonest due first."""
        wanted = tuple(states)
        marks = ", ".join("?" * len(wanted))
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM followups WHERE state IN ({marks}) ORDER BY due_at, id LIMIT ?", (*wanted, limit)
        )
        return [_followup(r) for r in rows]

    async def count(self, states: Iterable[State] = ("open", "proposed")) -> int:
        """How many follow-ups are in ``states``."""
        wanted = tuple(states)
        row = await self._db.fetchone(
            f"SELECT COUNT(*) FROM followups WHERE state IN ({', '.join('?' * len(wanted))})", wanted
        )
        return int(row[0])

    async def due(self, now: datetime, limit: int = 200) -> list[Followup]:
        """Open follow-ups due at or before ``now``, oldest due first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM followups WHERE state = 'open' AND due_at <= ? ORDER BY due_at, id LIMIT ?",
            (stamp(now), limit),
        )
        return [_followup(r) for r in rows]

    async def between(self, start: datetime, end: datetime) -> list[Followup]:
        """Open or proposed follow-ups due in ``[start, end)`` (a day, for the digest)."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM followups WHERE state IN ('open', 'proposed') AND due_at >= ? AND due_at < ? "
            "ORDER BY due_at, id LIMIT 100",
            (stamp(start), stamp(end)),
        )
        return [_followup(r) for r in rows]

    async def undelivered(self) -> list[Followup]:
        """Proposed follow-ups whose card or reminder has not been shown yet (a crash came between)."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM followups WHERE state = 'proposed' AND delivered = 0 ORDER BY id LIMIT 200"
        )
        return [_followup(r) for r in rows]

    async def mark_proposed(self, followup_id: int, approval_id: str | None) -> bool:
        """An open follow-up came up (under ``approval_id`` when it is a card); False when it was not open."""
        written = await self._db.write(
            "UPDATE followups SET state = 'proposed', approval_id = ?, updated_at = ? WHERE id = ? AND state = 'open'",
            (approval_id, stamp(utcnow()), followup_id),
        )
        return written.rowcount == 1

    async def mark_delivered(self, followup_id: int) -> None:
        """Its card or reminder was shown."""
        await self._db.write("UPDATE followups SET delivered = 1 WHERE id = ?", (followup_id,))

    async def close(self, followup_id: int, state: Literal["done", "cancelled"]) -> Followup | None:
        """Mark an open or proposed follow-up done or cancelled; None when there is none such."""
        written = await self._db.write(
            "UPDATE followups SET state = ?, updated_at = ? WHERE id = ? AND state IN ('open', 'proposed')",
            (state, stamp(utcnow()), followup_id),
        )
        return await self.get(followup_id) if written.rowcount == 1 else None

    async def answered(self, message_ids: Sequence[str]) -> list[Followup]:
        """Open or proposed automatic follow-ups of the sent emails ``message_ids``."""
        found: list[Followup] = []
        for start in range(0, len(message_ids), 500):
            part = list(message_ids[start : start + 500])
            rows = await self._db.fetchall(
                f"SELECT {_COLUMNS} FROM followups WHERE source = 'auto' AND state IN ('open', 'proposed') "
                f"AND message_id IN ({', '.join('?' * len(part))})",
                part,
            )
            found += [_followup(r) for r in rows]
        return found


def _values(new: NewFollowup) -> tuple[Any, ...]:
    return (
        new.contact,
        new.email,
        new.what,
        stamp(new.due),
        new.source,
        new.message_id,
        new.subject,
        json.dumps(list(new.refs)),
    )

"""Evidence that reached a goal from outside after its tasks ran (an invoice a task sent, paid at Stripe): the
verifier reads it with the ledger's facts. One row per source (a replayed event is one fact).

In a backup (``goal_evidence.jsonl``, ``memory.portable``) each fact is one :class:`EvidenceLine`. Evidence is
only input to the verifier: restoring it judges nothing, and ``bot/backup.py`` takes it only for a goal and
task the same export has."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, field_validator

from memory.db import Database, utcnow
from memory.lines import Line, Table, row_line

EVIDENCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS goal_evidence (
    source TEXT PRIMARY KEY,
    goal_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    fact TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS goal_evidence_goal ON goal_evidence(goal_id, at);
"""


@dataclass(frozen=True)
class Evidence:
    """One fact about one task's outcome, where it came from and the event that recorded it."""

    source: str
    goal_id: str
    task_id: str
    fact: str
    event_id: int
    at: datetime


_EvidenceFields: Any = row_line(
    Evidence,
    times=str,
    checks={"source": Field(min_length=1), "goal_id": Field(min_length=1), "task_id": Field(min_length=1)},
)


class EvidenceLine(_EvidenceFields):
    """One fact about one task's outcome in a backup (the fields of :class:`Evidence`, its time as stored)."""

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        if datetime.fromisoformat(value).tzinfo is None:
            raise ValueError("a time needs its zone (UTC offset)")
        return value


_EVIDENCE = Table("goal_evidence", EvidenceLine)


class EvidenceStore:
    """Adds and reads evidence; each new fact is an event in the same commit."""

    name: ClassVar[str] = "goal_evidence"
    version: ClassVar[int] = 1
    line: ClassVar[type[Line]] = EvidenceLine
    tables: ClassVar[tuple[Table, ...]] = (_EVIDENCE,)
    """In a backup (``memory.portable``): every fact."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ready = False

    async def setup(self) -> None:
        """Create the table."""
        await self._db.script(EVIDENCE_SCHEMA)

    async def dump(self) -> list[dict[str, Any]]:
        """Every fact, oldest first."""
        return [_EVIDENCE.read(r) for r in await self._db.fetchall(_EVIDENCE.select("ORDER BY at, source"))]

    async def restore(self, lines: Sequence[EvidenceLine]) -> None:
        """Write the facts as they are (nothing is verified again: that takes a new fact)."""
        rows = [_EVIDENCE.values(e) for e in lines]

        def work(conn: sqlite3.Connection) -> None:
            _EVIDENCE.insert(conn, rows)

        await self._db.run_transaction(work)

    async def add(self, source: str, goal_id: str, task_id: str, fact: str, actor: str) -> bool:
        """Record a fact; False when ``source`` was recorded already (nothing written)."""
        async with self._db.transaction() as tx:
            if await tx.fetchone("SELECT 1 FROM goal_evidence WHERE source = ?", (source,)):
                return False
            payload = {"goal_id": goal_id, "task_id": task_id, "fact": fact, "source": source}
            event_id = await tx.append_event("goal.evidence", actor, payload)
            await tx.execute(
                "INSERT INTO goal_evidence (source, goal_id, task_id, fact, event_id, at) VALUES (?, ?, ?, ?, ?, ?)",
                (source, goal_id, task_id, fact, event_id, utcnow().isoformat()),
            )
        return True

    async def for_goal(self, goal_id: str) -> list[Evidence]:
        """A goal's evidence, oldest first (none on a data directory whose table is not made yet)."""
        if not self._ready:
            found = await self._db.fetchone(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'goal_evidence'", ()
            )
            if found is None:
                return []
            self._ready = True
        rows = await self._db.fetchall(
            "SELECT source, goal_id, task_id, fact, event_id, at FROM goal_evidence WHERE goal_id = ? ORDER BY at",
            (goal_id,),
        )
        return [Evidence(r[0], r[1], r[2], r[3], r[4], datetime.fromisoformat(r[5])) for r in rows]

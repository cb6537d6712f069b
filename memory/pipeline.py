"""The sales pipeline: each contact's stage (lead, talking, proposal, customer, lost) with its history, and one
next step with a date.

It sits beside the contact records rather than inside them: a stage move is an append-only row naming who
moved it and why (an operator's command, a payment at Stripe), which the versioned record of a contact does not
say, and stage and next step change far more often than a contact's name or address. Every write appends its
event to the event log in the same commit (the audit log shows each move).

In a backup (``pipeline.jsonl``, ``memory.portable``) each contact is one :class:`PipelineLine`: its moves and
its next step. It is only data (nothing sends or schedules from it; the planner reads it quoted as data), so an
import writes it back as it is.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, field_validator, model_validator

from memory.db import Database, utcnow
from memory.lines import Line, Table, row_line

PIPELINE_SCHEMA = """
CREATE TABLE IF NOT EXISTS pipeline_stages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id TEXT NOT NULL,
    stage TEXT NOT NULL CHECK (stage IN ('lead','talking','proposal','customer','lost')),
    actor TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    event_id INTEGER NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pipeline_stages_contact ON pipeline_stages(contact_id, id);
CREATE TABLE IF NOT EXISTS pipeline_next (
    contact_id TEXT PRIMARY KEY,
    what TEXT NOT NULL,
    due TEXT NOT NULL,
    actor TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    at TEXT NOT NULL
);
"""

Stage = Literal["lead", "talking", "proposal", "customer", "lost"]
STAGES: tuple[Stage, ...] = get_args(Stage)
MAX_WHAT = 300


def _zoned(value: str) -> str:
    if datetime.fromisoformat(value).tzinfo is None:
        raise ValueError("a time needs its zone (UTC offset)")
    return value


@dataclass(frozen=True)
class StageMove:
    """One move of one contact into a stage: who made it, why, when (its id keeps the order of the history)."""

    id: int
    contact_id: str
    stage: Stage
    actor: str
    reason: str
    event_id: int
    at: datetime


@dataclass(frozen=True)
class NextStep:
    """A contact's next step and the day it is due (in the operator's zone)."""

    contact_id: str
    what: str
    due: date
    actor: str
    event_id: int
    at: datetime


_StageFields: Any = row_line(StageMove, times=str, checks={"id": Field(ge=1)})
_NextFields: Any = row_line(NextStep, times=str, days=str, checks={"what": Field(min_length=1, max_length=MAX_WHAT)})


class StageLine(_StageFields):
    """One stage move, nested in its contact's line (the fields of :class:`StageMove`, its time as stored)."""

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        return _zoned(value)


class NextLine(_NextFields):
    """A contact's next step, nested in its contact's line (the fields of :class:`NextStep`, as stored)."""

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        return _zoned(value)

    @field_validator("due")
    @classmethod
    def _day(cls, value: str) -> str:
        date.fromisoformat(value)
        return value


class PipelineLine(Line):
    """One contact's pipeline: every stage move, oldest first, and its next step."""

    contact_id: str = Field(min_length=1)
    stages: list[StageLine]
    next: NextLine | None

    @model_validator(mode="after")
    def _own_rows(self) -> PipelineLine:
        if not self.stages and self.next is None:
            raise ValueError(f"contact {self.contact_id} has no stage and no next step")
        named = [m.contact_id for m in self.stages] + ([self.next.contact_id] if self.next else [])
        for other in named:
            if other != self.contact_id:
                raise ValueError(f"a row of contact {other} is listed under contact {self.contact_id}")
        return self


_STAGES = Table("pipeline_stages", StageLine)
_NEXT = Table("pipeline_next", NextLine)


class PipelineStore:
    """Reads and writes stages and next steps; each write is an event in the same commit."""

    name: ClassVar[str] = "pipeline"
    version: ClassVar[int] = 1
    line: ClassVar[type[Line]] = PipelineLine
    tables: ClassVar[tuple[Table, ...]] = (_STAGES, _NEXT)
    """In a backup (``memory.portable``): every contact's stage history and next step."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """Create the tables."""
        await self._db.script(PIPELINE_SCHEMA)

    async def dump(self) -> list[dict[str, Any]]:
        """Each contact with a stage or a next step: its moves (oldest first) and its next step."""
        stages: dict[str, list[dict[str, Any]]] = {}
        for row in await self._db.fetchall(_STAGES.select("ORDER BY contact_id, id")):
            move = _STAGES.read(row)
            stages.setdefault(move["contact_id"], []).append(move)
        steps = {s["contact_id"]: s for s in (_NEXT.read(r) for r in await self._db.fetchall(_NEXT.select()))}
        return [
            {"contact_id": c, "stages": stages.get(c, []), "next": steps.get(c)} for c in sorted(stages.keys() | steps)
        ]

    async def restore(self, lines: Sequence[PipelineLine]) -> None:
        """Write the moves and next steps as they are."""
        moves = [_STAGES.values(m) for line in lines for m in line.stages]
        steps = [_NEXT.values(line.next) for line in lines if line.next is not None]

        def work(conn: sqlite3.Connection) -> None:
            _STAGES.insert(conn, moves)
            _NEXT.insert(conn, steps)

        await self._db.run_transaction(work)

    async def ready(self) -> bool:
        """True when the tables exist (a reader on a data directory set up before the pipeline finds none)."""
        row = await self._db.fetchone(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pipeline_stages'", ()
        )
        return row is not None

    async def move(self, contact_id: str, stage: Stage, actor: str, reason: str = "") -> StageMove | None:
        """Put a contact in ``stage``; None (and nothing written) when it is in that stage already."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        at = utcnow()
        async with self._db.transaction() as tx:
            # Read and write in one transaction: two moves at once cannot both see the old stage.
            current = await tx.fetchone(
                "SELECT stage FROM pipeline_stages WHERE contact_id = ? ORDER BY id DESC LIMIT 1", (contact_id,)
            )
            if current is not None and current[0] == stage:
                return None
            payload = {"contact_id": contact_id, "stage": stage, "from": current[0] if current else None}
            event_id = await tx.append_event("pipeline.stage", actor, {**payload, "reason": reason})
            written = await tx.execute(
                "INSERT INTO pipeline_stages (contact_id, stage, actor, reason, event_id, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (contact_id, stage, actor, reason, event_id, at.isoformat()),
            )
        assert written.lastrowid is not None
        return StageMove(written.lastrowid, contact_id, stage, actor, reason, event_id, at)

    async def history(self, contact_id: str) -> list[StageMove]:
        """Every move of a contact, oldest first."""
        rows = await self._db.fetchall(_STAGES.select("WHERE contact_id = ? ORDER BY id"), (contact_id,))
        return [_move(r) for r in rows]

    async def stages(self) -> dict[str, StageMove]:
        """The latest move of every contact that has a stage."""
        rows = await self._db.fetchall(
            _STAGES.select("WHERE id IN (SELECT MAX(id) FROM pipeline_stages GROUP BY contact_id)"), ()
        )
        return {m.contact_id: m for m in map(_move, rows)}

    async def set_next(self, contact_id: str, what: str, due: date, actor: str) -> NextStep:
        """Set (or replace) a contact's next step."""
        what = " ".join(what.split())
        if not what or len(what) > MAX_WHAT:
            raise ValueError(f"a next step is 1 to {MAX_WHAT} characters")
        at = utcnow()
        async with self._db.transaction() as tx:
            payload = {"contact_id": contact_id, "what": what, "due": due.isoformat()}
            event_id = await tx.append_event("pipeline.next", actor, payload)
            await tx.execute(
                "INSERT OR REPLACE INTO pipeline_next (contact_id, what, due, actor, event_id, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (contact_id, what, due.isoformat(), actor, event_id, at.isoformat()),
            )
        return NextStep(contact_id, what, due, actor, event_id, at)

    async def clear_next(self, contact_id: str, actor: str) -> bool:
        """Drop a contact's next step (done); False when it had none."""
        async with self._db.transaction() as tx:
            gone = await tx.execute("DELETE FROM pipeline_next WHERE contact_id = ?", (contact_id,))
            if gone.rowcount:
                await tx.append_event("pipeline.next_done", actor, {"contact_id": contact_id})
        return bool(gone.rowcount)

    async def next_steps(self) -> dict[str, NextStep]:
        """Every contact's next step."""
        rows = await self._db.fetchall(_NEXT.select("ORDER BY due"), ())
        return {step.contact_id: step for step in map(_step, rows)}


def _move(row: Any) -> StageMove:
    move = _STAGES.read(row)
    return StageMove(**{**move, "at": datetime.fromisoformat(move["at"])})


def _step(row: Any) -> NextStep:
    step = _NEXT.read(row)
    return NextStep(**{**step, "due": date.fromisoformat(step["due"]), "at": datetime.fromisoformat(step["at"])})

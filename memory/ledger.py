"""The model-cost ledger (I5): every call's usage and cost, and holds on the budget while calls run.

A call first takes a *hold* for its estimated cost, in the same transaction that reads what was
spent, so concurrent calls cannot all pass a cap that fits only one of them. After the call the hold
is settled into a ledger row with the reported usage (or released when nothing was billed). A hold a
dead process left behind is never forgotten: on start it becomes a ledger row at its estimate.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from memory.db import Database, LLMCall, dumps, utcnow

T = TypeVar("T")

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    session TEXT,
    workflow TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    estimated INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    cost REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS llm_calls_at ON llm_calls(at);
CREATE TABLE IF NOT EXISTS budget_holds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    session TEXT,
    workflow TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    cost REAL NOT NULL
);
"""

_SPENT = (
    "SELECT (SELECT COALESCE(SUM(cost), 0) FROM llm_calls WHERE at >= ?1 AND (?2 IS NULL OR workflow = ?2)) + "
    "(SELECT COALESCE(SUM(cost), 0) FROM budget_holds WHERE at >= ?1 AND (?2 IS NULL OR workflow = ?2))"
)


@dataclass(frozen=True)
class Hold:
    """Money set aside for one call that is about to be made."""

    id: int
    model: str
    cost: float


class Booking:
    """Reads spend and takes holds inside one transaction, on SQLite's thread (see :meth:`CostLedger.book`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        """The connection, inside the booking's transaction (for reads of other tables in it)."""

    def spent(self, since: datetime, workflow: str | None = None) -> float:
        """Cost since ``since`` (all workflows, or one), holds included."""
        row = self.conn.execute(_SPENT, (since.isoformat(), workflow)).fetchone()
        return float(row[0])

    def hold(self, session: str | None, workflow: str, model: str, prompt_tokens: int, cost: float) -> Hold:
        """Set ``cost`` aside for a call."""
        cur = self.conn.execute(
            "INSERT INTO budget_holds (at, session, workflow, model, prompt_tokens, cost) VALUES (?, ?, ?, ?, ?, ?)",
            (utcnow().isoformat(), session, workflow, model, prompt_tokens, cost),
        )
        assert cur.lastrowid is not None
        return Hold(cur.lastrowid, model, cost)


class CostLedger:
    """The ``llm_calls`` ledger and the budget holds."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> int:
        """Create the tables; turn holds left by a process that died mid-call into ledger rows.

        Returns how many holds were recovered (their calls may have been billed: they count).
        """
        await self._db.script(LEDGER_SCHEMA)
        rows = await self._db.fetchall("SELECT id, session, workflow, model, prompt_tokens, cost FROM budget_holds")
        for hold_id, session, workflow, model, prompt, cost in rows:
            call = LLMCall(
                session, workflow, model, prompt, 0, True, 0, "unknown: the process stopped during the call", cost
            )
            await self.settle(hold_id, call)
        return len(rows)

    async def book(self, work: Callable[[Booking], T]) -> T:
        """Run ``work`` (synchronous: spend reads, holds) in one transaction and one round trip; other
        writers wait until it is committed."""
        return await self._db.run_transaction(lambda conn: work(Booking(conn)))

    async def settle(self, hold_id: int | None, call: LLMCall) -> bool:
        """Replace a hold by the call's ledger row (and its event), atomically.

        Settling is idempotent per hold: the row is written only if this settle removed the hold, so
        a hold already settled or released (e.g. a settle committed although its caller was cancelled
        while it was written, then settled again at the estimate) is not recorded twice. Returns
        whether a row was written (always, without a hold).
        """
        row, event = _call_rows(call)

        def work(conn: sqlite3.Connection) -> bool:
            if hold_id is not None and conn.execute("DELETE FROM budget_holds WHERE id = ?", (hold_id,)).rowcount == 0:
                return False
            conn.execute(_INSERT_CALL, row)
            conn.execute(_INSERT_EVENT, event)
            return True

        return await self._db.run_transaction(work)

    async def release(self, hold_id: int) -> None:
        """Drop a hold: the call was not made or not billed."""
        await self._db.write("DELETE FROM budget_holds WHERE id = ?", (hold_id,))

    async def record(self, call: LLMCall) -> None:
        """Record a call that held nothing (e.g. a failed attempt the provider certainly did not process)."""
        await self.settle(None, call)

    async def calls(self) -> list[LLMCall]:
        """All recorded model calls, oldest first."""
        rows = await self._db.fetchall(
            "SELECT session, workflow, model, prompt_tokens, completion_tokens, estimated, latency_ms, "
            "outcome, cost FROM llm_calls ORDER BY id"
        )
        return [LLMCall(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8]) for r in rows]

    async def spent(self, since: datetime, workflow: str | None = None) -> float:
        """Cost since ``since`` (all workflows, or one), holds of running calls included."""
        row = await self._db.fetchone(_SPENT, (since.isoformat(), workflow))
        return float(row[0])

    async def spent_by_workflow(self, since: datetime) -> dict[str, float]:
        """Cost per workflow since ``since``, holds included."""
        rows = await self._db.fetchall(
            "SELECT workflow, SUM(cost) FROM (SELECT workflow, cost FROM llm_calls WHERE at >= ?1 "
            "UNION ALL SELECT workflow, cost FROM budget_holds WHERE at >= ?1) GROUP BY workflow ORDER BY workflow",
            (since.isoformat(),),
        )
        return {r[0]: float(r[1]) for r in rows}

    async def spent_by_model(self, since: datetime) -> dict[str, float]:
        """Cost per model since ``since``, holds included, dearest first (which model answered, and what it cost)."""
        rows = await self._db.fetchall(
            "SELECT model, SUM(cost) AS total FROM (SELECT model, cost FROM llm_calls WHERE at >= ?1 "
            "UNION ALL SELECT model, cost FROM budget_holds WHERE at >= ?1) GROUP BY model ORDER BY total DESC, model",
            (since.isoformat(),),
        )
        return {r[0]: float(r[1]) for r in rows}


_INSERT_CALL = (
    "INSERT INTO llm_calls (at, session, workflow, model, prompt_tokens, completion_tokens, estimated, "
    "latency_ms, outcome, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENT = "INSERT INTO events (at, actor, session, kind, payload) VALUES (?, ?, ?, ?, ?)"


def _call_rows(call: LLMCall) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """The ledger row of a call and its ``llm.call`` event row."""
    at = utcnow().isoformat()
    row = (
        at,
        call.session,
        call.workflow,
        call.model,
        call.prompt_tokens,
        call.completion_tokens,
        int(call.estimated),
        call.latency_ms,
        call.outcome,
        call.cost,
    )
    payload = {
        "model": call.model,
        "workflow": call.workflow,
        "prompt_tokens": call.prompt_tokens,
        "completion_tokens": call.completion_tokens,
        "estimated": call.estimated,
        "latency_ms": call.latency_ms,
        "outcome": call.outcome,
        "cost": call.cost,
    }
    return row, (at, "coo", call.session, "llm.call", dumps(payload))

"""Operator controls in SQLite: budgets, a small key-value table (pause, breaker state, notices),
and schedule slots that make a job run once per slot even across processes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from memory.db import Database, utcnow

CONTROL_SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (
    scope TEXT NOT NULL,
    period TEXT NOT NULL CHECK (period IN ('day', 'week', 'month')),
    amount REAL NOT NULL CHECK (amount >= 0),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (scope, period)
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_runs (
    job TEXT NOT NULL,
    slot TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (job, slot)
);
"""

Period = Literal["day", "week", "month"]
PERIODS: tuple[Period, ...] = ("day", "week", "month")


@dataclass(frozen=True)
class Budget:
    """A cap: ``scope`` is "all" or a workflow name."""

    scope: str
    period: Period
    amount: float


class ControlStore:
    """Budgets, key-value flags and schedule slots (single statements: safe on the shared connection)."""

    def __init__(self, db: Database) -> None:
        self._conn = db.connection

    async def setup(self) -> None:
        """Create the tables."""
        await self._conn.executescript(CONTROL_SCHEMA)
        await self._conn.commit()

    async def budgets(self) -> list[Budget]:
        """Every cap, "all" first."""
        async with self._conn.execute("SELECT scope, period, amount FROM budgets") as cur:
            rows = [Budget(r[0], r[1], float(r[2])) for r in await cur.fetchall()]
        order = {p: i for i, p in enumerate(PERIODS)}
        return sorted(rows, key=lambda b: (b.scope != "all", b.scope, order[b.period]))

    async def set_budget(self, budget: Budget) -> None:
        """Set (or replace) one cap."""
        await self._conn.execute(
            "INSERT OR REPLACE INTO budgets (scope, period, amount, updated_at) VALUES (?, ?, ?, ?)",
            (budget.scope, budget.period, budget.amount, utcnow().isoformat()),
        )
        await self._conn.commit()

    async def remove_budget(self, scope: str, period: Period) -> int:
        """Remove one cap; returns 1 if it existed."""
        cur = await self._conn.execute("DELETE FROM budgets WHERE scope = ? AND period = ?", (scope, period))
        await self._conn.commit()
        return cur.rowcount

    async def remove_budgets(self, scope: str) -> int:
        """Remove every cap of a scope; returns how many."""
        cur = await self._conn.execute("DELETE FROM budgets WHERE scope = ?", (scope,))
        await self._conn.commit()
        return cur.rowcount

    async def get(self, key: str) -> Any | None:
        """A JSON value, or None."""
        async with self._conn.execute("SELECT value FROM kv WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return json.loads(row[0]) if row else None

    async def put(self, key: str, value: Any) -> None:
        """Store a JSON value."""
        await self._conn.execute(
            "INSERT OR REPLACE INTO kv (key, value, updated_at) VALUES (?, ?, ?)",
            (key, json.dumps(value), utcnow().isoformat()),
        )
        await self._conn.commit()

    async def put_new(self, key: str, value: Any) -> bool:
        """Store a value only if the key is absent; True when this call stored it."""
        cur = await self._conn.execute(
            "INSERT OR IGNORE INTO kv (key, value, updated_at) VALUES (?, ?, ?)",
            (key, json.dumps(value), utcnow().isoformat()),
        )
        await self._conn.commit()
        return cur.rowcount == 1

    async def delete(self, key: str) -> bool:
        """Remove a key; True when it existed."""
        cur = await self._conn.execute("DELETE FROM kv WHERE key = ?", (key,))
        await self._conn.commit()
        return cur.rowcount == 1

    async def keys(self, prefix: str) -> dict[str, Any]:
        """Every key with a prefix, with its value."""
        async with self._conn.execute(
            "SELECT key, value FROM kv WHERE key LIKE ? ESCAPE '\\'",
            (prefix.replace("%", "\\%").replace("_", "\\_") + "%",),
        ) as cur:
            return {r[0]: json.loads(r[1]) for r in await cur.fetchall()}

    async def claim_slot(self, job: str, slot: str) -> bool:
        """Claim one run of a job (e.g. the digest of 2026-11-21). Only one claim ever wins, across processes."""
        cur = await self._conn.execute(
            "INSERT OR IGNORE INTO schedule_runs (job, slot, claimed_at) VALUES (?, ?, ?)",
            (job, slot, utcnow().isoformat()),
        )
        await self._conn.commit()
        return cur.rowcount == 1

"""Operator controls in SQLite: budgets, a small key-value table (pause, breaker state, notices),
and schedule slots that make a job run once per slot even across processes."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
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
        self._db = db

    async def setup(self) -> None:
        """Create the tables."""
        await self._db.script(CONTROL_SCHEMA)

    async def budgets(self) -> list[Budget]:
        """Every cap, "all" first."""
        return _ordered(await self._db.fetchall(_BUDGETS))

    async def set_budget(self, budget: Budget) -> None:
        """Set (or replace) one cap."""
        await self._db.write(
            "INSERT OR REPLACE INTO budgets (scope, period, amount, updated_at) VALUES (?, ?, ?, ?)",
            (budget.scope, budget.period, budget.amount, utcnow().isoformat()),
        )

    async def remove_budget(self, scope: str, period: Period) -> int:
        """Remove one cap; returns 1 if it existed."""
        return (await self._db.write("DELETE FROM budgets WHERE scope = ? AND period = ?", (scope, period))).rowcount

    async def remove_budgets(self, scope: str) -> int:
        """Remove every cap of a scope; returns how many."""
        return (await self._db.write("DELETE FROM budgets WHERE scope = ?", (scope,))).rowcount

    async def get(self, key: str) -> Any | None:
        """A JSON value, or None."""
        row = await self._db.fetchone("SELECT value FROM kv WHERE key = ?", (key,))
        return json.loads(row[0]) if row else None

    async def put(self, key: str, value: Any) -> None:
        """Store a JSON value."""
        await self._db.write(
            "INSERT OR REPLACE INTO kv (key, value, updated_at) VALUES (?, ?, ?)",
            (key, json.dumps(value), utcnow().isoformat()),
        )

    async def put_new(self, key: str, value: Any) -> bool:
        """Store a value only if the key is absent; True when this call stored it."""
        written = await self._db.write(
            "INSERT OR IGNORE INTO kv (key, value, updated_at) VALUES (?, ?, ?)",
            (key, json.dumps(value), utcnow().isoformat()),
        )
        return written.rowcount == 1

    async def delete(self, key: str) -> bool:
        """Remove a key; True when it existed."""
        return (await self._db.write(_DELETE_KEY, (key,))).rowcount == 1

    async def keys(self, prefix: str) -> dict[str, Any]:
        """Every key with a prefix, with its value."""
        rows = await self._db.fetchall(
            "SELECT key, value FROM kv WHERE key LIKE ? ESCAPE '\\'",
            (prefix.replace("%", "\\%").replace("_", "\\_") + "%",),
        )
        return {r[0]: json.loads(r[1]) for r in rows}

    async def claim_slot(self, job: str, slot: str) -> bool:
        """Claim one run of a job (e.g. the digest of 2026-11-21). Only one claim ever wins, across processes."""
        written = await self._db.write(
            "INSERT OR IGNORE INTO schedule_runs (job, slot, claimed_at) VALUES (?, ?, ?)",
            (job, slot, utcnow().isoformat()),
        )
        return written.rowcount == 1


_BUDGETS = "SELECT scope, period, amount FROM budgets"
_DELETE_KEY = "DELETE FROM kv WHERE key = ?"


def budgets_in(conn: sqlite3.Connection) -> list[Budget]:
    """Every cap, "all" first, read on SQLite's thread (inside a caller's transaction)."""
    return _ordered(conn.execute(_BUDGETS).fetchall())


def delete_key_in(conn: sqlite3.Connection, key: str) -> bool:
    """Remove a key on SQLite's thread (inside a caller's transaction); True when it existed."""
    return conn.execute(_DELETE_KEY, (key,)).rowcount == 1


def _ordered(rows: Iterable[Any]) -> list[Budget]:
    order = {p: i for i, p in enumerate(PERIODS)}
    caps = [Budget(r[0], r[1], float(r[2])) for r in rows]
    return sorted(caps, key=lambda b: (b.scope != "all", b.scope, order[b.period]))

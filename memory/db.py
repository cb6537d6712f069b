"""The application's SQLite database: event log, inbox (dedupe), operators, model-call ledger.

One aiosqlite connection in WAL mode with a busy timeout. The event log is append-only:
this module offers no way to update or delete an event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    session TEXT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_session ON events(session, id);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, id);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

CREATE TABLE IF NOT EXISTS inbox (
    update_key TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done')),
    received_at TEXT NOT NULL,
    done_at TEXT
);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox(status, received_at);

CREATE TABLE IF NOT EXISTS operators (
    identity TEXT PRIMARY KEY,
    added_at TEXT NOT NULL,
    via TEXT NOT NULL
);

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
"""


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Event:
    """One row of the event log."""

    id: int
    at: datetime
    actor: str
    session: str | None
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class LLMCall:
    """One model call as recorded in the ledger."""

    session: str | None
    workflow: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    latency_ms: int
    outcome: str
    cost: float = 0.0


class Database:
    """Typed access to the application database. Construct with :func:`open_database`."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @property
    def connection(self) -> aiosqlite.Connection:
        """The underlying connection (for modules that own their own tables)."""
        return self._conn

    # -- event log ---------------------------------------------------------------------------
    async def append_event(self, kind: str, actor: str, payload: dict[str, Any], session: str | None = None) -> int:
        """Append one event; returns its id."""
        cur = await self._conn.execute(
            "INSERT INTO events (at, actor, session, kind, payload) VALUES (?, ?, ?, ?, ?)",
            (utcnow().isoformat(), actor, session, kind, json.dumps(payload, ensure_ascii=False)),
        )
        await self._conn.commit()
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def events(
        self,
        kind: str | tuple[str, ...] | None = None,
        session: str | None = None,
        limit: int = 1000,
        since: datetime | None = None,
    ) -> list[Event]:
        """Events, oldest first, optionally filtered by kind (one or several), session and time."""
        sql = "SELECT id, at, actor, session, kind, payload FROM events WHERE 1=1"
        args: list[Any] = []
        if kind is not None:
            kinds = (kind,) if isinstance(kind, str) else kind
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args.extend(kinds)
        if session is not None:
            sql += " AND session = ?"
            args.append(session)
        if since is not None:
            sql += " AND at >= ?"
            args.append(since.astimezone(UTC).isoformat())  # stored times are UTC ISO strings
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        async with self._conn.execute(sql, args) as cur:
            rows = await cur.fetchall()
        return [Event(r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    # -- inbox: at-most-once handling of platform deliveries (I3) -----------------------------
    async def claim_update(self, update_key: str, session: str, payload: dict[str, Any]) -> bool:
        """Record a delivery before handling it. False means it was seen before: drop it."""
        cur = await self._conn.execute(
            "INSERT OR IGNORE INTO inbox (update_key, session, payload, status, received_at) "
            "VALUES (?, ?, ?, 'pending', ?)",
            (update_key, session, json.dumps(payload, ensure_ascii=False), utcnow().isoformat()),
        )
        await self._conn.commit()
        return cur.rowcount == 1

    async def finish_update(self, update_key: str) -> None:
        """Mark a claimed delivery as fully handled."""
        await self._conn.execute(
            "UPDATE inbox SET status = 'done', done_at = ? WHERE update_key = ?",
            (utcnow().isoformat(), update_key),
        )
        await self._conn.commit()

    async def pending_updates(self) -> list[tuple[str, dict[str, Any]]]:
        """Deliveries claimed but not finished (a crash mid-handling), oldest first."""
        async with self._conn.execute(
            "SELECT update_key, payload FROM inbox WHERE status = 'pending' ORDER BY received_at"
        ) as cur:
            rows = await cur.fetchall()
        return [(r[0], json.loads(r[1])) for r in rows]

    # -- operators ---------------------------------------------------------------------------
    async def add_operator(self, identity: str, via: str) -> None:
        """Persist an operator (e.g. after pairing)."""
        await self._conn.execute(
            "INSERT OR IGNORE INTO operators (identity, added_at, via) VALUES (?, ?, ?)",
            (identity, utcnow().isoformat(), via),
        )
        await self._conn.commit()

    async def operators(self) -> set[str]:
        """Operators stored in the database (paired ones)."""
        async with self._conn.execute("SELECT identity FROM operators") as cur:
            return {r[0] for r in await cur.fetchall()}

    # -- model-call ledger -------------------------------------------------------------------
    async def record_llm_call(self, call: LLMCall) -> None:
        """Record one model call's usage (also mirrored into the event log)."""
        await self._conn.execute(
            "INSERT INTO llm_calls (at, session, workflow, model, prompt_tokens, completion_tokens, "
            "estimated, latency_ms, outcome, cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                utcnow().isoformat(),
                call.session,
                call.workflow,
                call.model,
                call.prompt_tokens,
                call.completion_tokens,
                int(call.estimated),
                call.latency_ms,
                call.outcome,
                call.cost,
            ),
        )
        await self._conn.commit()
        await self.append_event(
            "llm.call",
            "coo",
            {
                "model": call.model,
                "workflow": call.workflow,
                "prompt_tokens": call.prompt_tokens,
                "completion_tokens": call.completion_tokens,
                "estimated": call.estimated,
                "latency_ms": call.latency_ms,
                "outcome": call.outcome,
                "cost": call.cost,
            },
            session=call.session,
        )

    async def llm_calls(self) -> list[LLMCall]:
        """All recorded model calls, oldest first."""
        async with self._conn.execute(
            "SELECT session, workflow, model, prompt_tokens, completion_tokens, estimated, latency_ms, "
            "outcome, cost FROM llm_calls ORDER BY id"
        ) as cur:
            rows = await cur.fetchall()
        return [LLMCall(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6], r[7], r[8]) for r in rows]

    async def spend_since(self, since: datetime, workflow: str | None = None) -> float:
        """Total model cost since ``since`` (all workflows, or one)."""
        sql = "SELECT COALESCE(SUM(cost), 0) FROM llm_calls WHERE at >= ?"
        args: list[Any] = [since.isoformat()]
        if workflow is not None:
            sql += " AND workflow = ?"
            args.append(workflow)
        async with self._conn.execute(sql, args) as cur:
            row = await cur.fetchone()
        return float(row[0]) if row else 0.0

    async def spend_by_workflow(self, since: datetime) -> dict[str, float]:
        """Cost per workflow since ``since``."""
        async with self._conn.execute(
            "SELECT workflow, COALESCE(SUM(cost), 0) FROM llm_calls WHERE at >= ? GROUP BY workflow ORDER BY workflow",
            (since.isoformat(),),
        ) as cur:
            return {r[0]: float(r[1]) for r in await cur.fetchall()}


async def connect_sqlite(path: Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    """Open a SQLite file in WAL mode with a busy timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path, timeout=busy_timeout_ms / 1000)
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    await conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@asynccontextmanager
async def open_database(data_dir: Path, busy_timeout_ms: int = 5000) -> AsyncIterator[Database]:
    """Open (creating if needed) ``<data_dir>/coo.sqlite`` and close it on exit."""
    conn = await connect_sqlite(data_dir / "coo.sqlite", busy_timeout_ms)
    try:
        await conn.executescript(_SCHEMA)
        await conn.commit()
        yield Database(conn)
    finally:
        await conn.close()

"""The approval store's tables (approvals, the outbox, edit requests, the digest-keying marker) and the
migrations that bring an older file up to date, among them the one-time keying of its action digests with
the install secret (``memory.install``)."""

from __future__ import annotations

import json

import aiosqlite

from memory.db import utcnow
from memory.install import Install, content_digest

APPROVALS_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    root_id TEXT NOT NULL,
    thread TEXT NOT NULL,
    origin TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    digest TEXT NOT NULL,
    approvers TEXT NOT NULL,
    nonce TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending','approved','rejected','expired','superseded')),
    decided_by TEXT,
    decided_at TEXT,
    cards TEXT NOT NULL DEFAULT '[]',
    context TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS approvals_state ON approvals(state, expires_at);
CREATE TABLE IF NOT EXISTS outbox (
    approval_id TEXT PRIMARY KEY REFERENCES approvals(id),
    idempotency_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    digest TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued','running','sent','failed','unknown')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    external_id TEXT,
    updated_at TEXT NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0,
    progress TEXT NOT NULL DEFAULT '{}',
    owner TEXT,
    restored INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(state, next_attempt_at);
-- One row once the action digests are keyed with the install secret (memory.install): written by the
-- one-time keying of an older data dir, or by an import, so digests are never keyed twice.
CREATE TABLE IF NOT EXISTS digests_keyed (
    install_id TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS edit_requests (
    thread TEXT PRIMARY KEY,
    approval_id TEXT NOT NULL,
    requested_at TEXT NOT NULL
);
"""


async def migrate_approvals(conn: aiosqlite.Connection, install: Install | None) -> None:
    """Create the tables if needed (the caller commits); with ``install``, key the action digests of a data dir
    from before digests were keyed (once, in the same transaction as the marker that says it was done)."""
    await conn.executescript(APPROVALS_SCHEMA)
    async with conn.execute("PRAGMA table_info(outbox)") as cur:
        columns = {r[1] for r in await cur.fetchall()}
    if "reported" not in columns:  # files from before card reconciliation
        await conn.execute("ALTER TABLE outbox ADD COLUMN reported INTEGER NOT NULL DEFAULT 0")
    async with conn.execute("PRAGMA table_info(approvals)") as cur:
        if "context" not in {r[1] for r in await cur.fetchall()}:  # files from before provenance
            await conn.execute("ALTER TABLE approvals ADD COLUMN context TEXT NOT NULL DEFAULT '{}'")
    if "progress" not in columns:  # files from before resumable executions
        await conn.execute("ALTER TABLE outbox ADD COLUMN progress TEXT NOT NULL DEFAULT '{}'")
    if "owner" not in columns:  # files from before two processes could tell each other's work
        await conn.execute("ALTER TABLE outbox ADD COLUMN owner TEXT")
    if "restored" not in columns:  # files from before imports were told apart
        await conn.execute("ALTER TABLE outbox ADD COLUMN restored INTEGER NOT NULL DEFAULT 0")
    if install is not None:
        await key_digests(conn, install)


async def key_digests(conn: aiosqlite.Connection, install: Install) -> None:
    """Replace every unkeyed action digest (the action's own SHA-256) by this install's seal of it.

    A digest that is not the hash of its row's action is left as it is: it verifies neither before
    nor after, so that row still fails closed."""
    async with conn.execute("SELECT 1 FROM digests_keyed LIMIT 1") as cur:
        if await cur.fetchone() is not None:
            return
    for table, key in (("approvals", "id"), ("outbox", "approval_id")):
        async with conn.execute(f"SELECT {key}, action, digest FROM {table}") as cur:
            rows = await cur.fetchall()
        await conn.executemany(
            f"UPDATE {table} SET digest = ? WHERE {key} = ?",
            [(install.seal(r[2]), r[0]) for r in rows if content_digest(json.loads(r[1])) == r[2]],
        )
    await conn.execute("INSERT INTO digests_keyed (install_id, at) VALUES (?, ?)", (install.id, utcnow().isoformat()))

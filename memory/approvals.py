"""Approval rows and the outbox, in the application database.

Every state change is a compare-and-set on the current state, so two presses, two devices or
two processes can never both win. Approving inserts the outbox row in the same transaction (a
crash between "approved" and "queued" cannot lose the action).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import astuple, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

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

ApprovalState = Literal["pending", "approved", "rejected", "expired", "superseded"]
OutboxState = Literal["queued", "running", "sent", "failed", "unknown"]


@dataclass(frozen=True)
class CardRef:
    """Where a card was shown, so it can be edited in place (``message_id`` is empty while it is
    being sent)."""

    channel: str
    chat_id: str
    thread_id: str | None
    message_id: str


@dataclass(frozen=True)
class ApprovalRow:
    """One approval as stored."""

    id: str
    root_id: str
    thread: str
    origin: str
    kind: str
    action: dict[str, Any]
    digest: str
    approvers: tuple[str, ...]
    nonce: str
    created_at: datetime
    expires_at: datetime
    state: ApprovalState
    decided_by: str | None
    decided_at: datetime | None
    cards: tuple[CardRef, ...]
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxRow:
    """One approved action waiting for, or done with, execution."""

    approval_id: str
    idempotency_key: str
    kind: str
    action: dict[str, Any]
    digest: str
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    detail: str
    external_id: str | None
    updated_at: datetime
    progress: dict[str, Any]
    owner: str | None = None
    """The process that claimed it last (``memory.liveness``): a row left running by a live one is its work."""
    restored: bool = False
    """Brought by ``coo import``: history, never evidence that its target is known (I8)."""


_A_COLS = (
    "id, root_id, thread, origin, kind, action, digest, approvers, nonce, created_at, expires_at, "
    "state, decided_by, decided_at, cards, context"
)
_O_COLS = "approval_id, idempotency_key, kind, action, digest, state, attempts, next_attempt_at, detail, external_id"
_O_READ = _O_COLS + ", updated_at, progress, owner, restored"


def _approval(r: Any) -> ApprovalRow:
    return ApprovalRow(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        json.loads(r[5]),
        r[6],
        tuple(json.loads(r[7])),
        r[8],
        datetime.fromisoformat(r[9]),
        datetime.fromisoformat(r[10]),
        r[11],
        r[12],
        datetime.fromisoformat(r[13]) if r[13] else None,
        tuple(CardRef(*c) for c in json.loads(r[14])),
        json.loads(r[15]),
    )


def _outbox(r: Any) -> OutboxRow:
    return OutboxRow(
        r[0],
        r[1],
        r[2],
        json.loads(r[3]),
        r[4],
        r[5],
        r[6],
        datetime.fromisoformat(r[7]),
        r[8],
        r[9],
        datetime.fromisoformat(r[10]),
        json.loads(r[11]),
        r[12],
        bool(r[13]),
    )


class ApprovalStore:
    """Approvals, the outbox and pending edit requests.

    Owns its connection, and a lock around every use of it: an open transaction on a shared
    connection would otherwise be committed by any other coroutine's commit.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        # Threads that may have an edit request, read once from the table, then kept here: every
        # message asks, almost always about a thread without one, and the answer then costs no
        # SQLite round trip. Only this store writes requests; an entry may be stale (the card was
        # decided since), never missing.
        self._edit_threads: set[str] | None = None

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """The lock, and a commit at the end; a failure rolls back (an implicit transaction left
        open would make every later write on this connection fail)."""
        async with self._lock:
            try:
                yield
                await self._conn.commit()
            except BaseException:
                if self._conn.in_transaction:
                    await self._conn.rollback()
                raise

    async def setup(self, install: Install | None = None) -> None:
        """Create the tables if needed; with ``install``, key the action digests of a data dir from before
        digests were keyed (once, in the same transaction as the marker that says it was done)."""
        async with self._writing():
            await self._conn.executescript(APPROVALS_SCHEMA)
            async with self._conn.execute("PRAGMA table_info(outbox)") as cur:
                columns = {r[1] for r in await cur.fetchall()}
            if "reported" not in columns:  # files from before card reconciliation
                await self._conn.execute("ALTER TABLE outbox ADD COLUMN reported INTEGER NOT NULL DEFAULT 0")
            async with self._conn.execute("PRAGMA table_info(approvals)") as cur:
                if "context" not in {r[1] for r in await cur.fetchall()}:  # files from before provenance
                    await self._conn.execute("ALTER TABLE approvals ADD COLUMN context TEXT NOT NULL DEFAULT '{}'")
            if "progress" not in columns:  # files from before resumable executions
                await self._conn.execute("ALTER TABLE outbox ADD COLUMN progress TEXT NOT NULL DEFAULT '{}'")
            if "owner" not in columns:  # files from before two processes could tell each other's work
                await self._conn.execute("ALTER TABLE outbox ADD COLUMN owner TEXT")
            if "restored" not in columns:  # files from before imports were told apart
                await self._conn.execute("ALTER TABLE outbox ADD COLUMN restored INTEGER NOT NULL DEFAULT 0")
            if install is not None:
                await self._key_digests(install)

    async def _key_digests(self, install: Install) -> None:
        """Replace every unkeyed action digest (the action's own SHA-256) by this install's seal of it.

        A digest that is not the hash of its row's action is left as it is: it verifies neither before
        nor after, so that row still fails closed."""
        async with self._conn.execute("SELECT 1 FROM digests_keyed LIMIT 1") as cur:
            if await cur.fetchone() is not None:
                return
        for table, key in (("approvals", "id"), ("outbox", "approval_id")):
            async with self._conn.execute(f"SELECT {key}, action, digest FROM {table}") as cur:
                rows = await cur.fetchall()
            await self._conn.executemany(
                f"UPDATE {table} SET digest = ? WHERE {key} = ?",
                [(install.seal(r[2]), r[0]) for r in rows if content_digest(json.loads(r[1])) == r[2]],
            )
        await self._conn.execute(
            "INSERT INTO digests_keyed (install_id, at) VALUES (?, ?)", (install.id, utcnow().isoformat())
        )

    async def create(self, row: ApprovalRow) -> bool:
        """Insert a new approval; False when that id exists already (an idempotent re-run)."""
        async with self._writing():
            cur = await self._conn.execute(
                f"INSERT OR IGNORE INTO approvals ({_A_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    row.id,
                    row.root_id,
                    row.thread,
                    row.origin,
                    row.kind,
                    json.dumps(row.action, sort_keys=True),
                    row.digest,
                    json.dumps(list(row.approvers)),
                    row.nonce,
                    row.created_at.isoformat(),
                    row.expires_at.isoformat(),
                    row.state,
                    row.decided_by,
                    row.decided_at.isoformat() if row.decided_at else None,
                    "[]",
                    json.dumps(row.context),
                ),
            )
            return cur.rowcount == 1

    async def _get(self, approval_id: str) -> ApprovalRow | None:
        async with self._conn.execute(f"SELECT {_A_COLS} FROM approvals WHERE id = ?", (approval_id,)) as cur:
            r = await cur.fetchone()
        return _approval(r) if r else None

    async def get(self, approval_id: str) -> ApprovalRow | None:
        """One approval by id."""
        async with self._lock:
            return await self._get(approval_id)

    async def list_approvals(self, state: ApprovalState | None = None, limit: int = 100) -> list[ApprovalRow]:
        """Approvals, oldest first, optionally in one state."""
        async with self._lock:
            sql = (
                f"SELECT {_A_COLS} FROM approvals"
                + (" WHERE state = ?" if state else "")
                + " ORDER BY created_at LIMIT ?"
            )
            args: tuple[Any, ...] = (state, limit) if state else (limit,)
            async with self._conn.execute(sql, args) as cur:
                return [_approval(r) for r in await cur.fetchall()]

    async def recent_decided(self, limit: int = 20) -> list[ApprovalRow]:
        """Decided approvals, newest first."""
        async with self._lock:
            sql = f"SELECT {_A_COLS} FROM approvals WHERE state != 'pending' ORDER BY created_at DESC LIMIT ?"
            async with self._conn.execute(sql, (limit,)) as cur:
                return [_approval(r) for r in await cur.fetchall()]

    async def add_card(self, approval_id: str, card: CardRef) -> None:
        """Remember where a card is shown. A ref without a message id is a card being sent: it is
        recorded first, so a press that arrives before the send returns is already accepted; the
        id that comes back then fills that ref in."""
        async with self._writing():
            row = await self._get(approval_id)
            if row is None:
                return
            refs = list(row.cards)
            spot = next(
                (
                    i
                    for i, c in enumerate(refs)
                    if not c.message_id
                    and (c.channel, c.chat_id, c.thread_id) == (card.channel, card.chat_id, card.thread_id)
                ),
                None,
            )
            if spot is None or not card.message_id:
                refs.append(card)
            else:
                refs[spot] = card
            cards = [list(astuple(c)) for c in refs]
            await self._conn.execute("UPDATE approvals SET cards = ? WHERE id = ?", (json.dumps(cards), approval_id))

    async def decide(
        self,
        approval_id: str,
        nonce: str,
        new_state: ApprovalState,
        decided_by: str,
        outbox_key: str | None = None,
        retry_at: datetime | None = None,
    ) -> bool:
        """Compare-and-set pending -> ``new_state``; with ``outbox_key`` also queue the action, atomically.

        Returns False when the approval was not pending (someone else decided first) or the nonce differs.
        """
        async with self._lock:
            now = utcnow()
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = await self._conn.execute(
                    "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ? "
                    "WHERE id = ? AND state = 'pending' AND nonce = ?",
                    (new_state, decided_by, now.isoformat(), approval_id, nonce),
                )
                won = cur.rowcount == 1
                if won:  # a decided card ends any edit request waiting on it
                    await self._conn.execute("DELETE FROM edit_requests WHERE approval_id = ?", (approval_id,))
                if won and outbox_key is not None:
                    await self._conn.execute(
                        f"INSERT INTO outbox ({_O_COLS}, updated_at) "
                        "SELECT id, ?, kind, action, digest, 'queued', 0, ?, '', NULL, ? FROM approvals WHERE id = ?",
                        (outbox_key, (retry_at or now).isoformat(), now.isoformat(), approval_id),
                    )
                await self._conn.commit()
            except BaseException:
                await self._conn.rollback()
                raise
            return won

    async def for_goal(self, goal_id: str) -> list[ApprovalRow]:
        """Approvals proposed for a goal (its plan cards and its tasks' cards), oldest first."""
        async with (
            self._lock,
            self._conn.execute(
                f"SELECT {_A_COLS} FROM approvals WHERE json_extract(context, '$.goal_id') = ? "
                "OR (kind = 'goal.plan' AND json_extract(action, '$.goal_id') = ?) ORDER BY created_at",
                (goal_id, goal_id),
            ) as cur,
        ):
            return [_approval(r) for r in await cur.fetchall()]

    async def due_expired(self, now: datetime) -> list[ApprovalRow]:
        """Pending approvals past their expiry."""
        async with (
            self._lock,
            self._conn.execute(
                f"SELECT {_A_COLS} FROM approvals WHERE state = 'pending' AND expires_at <= ?",
                (now.isoformat(),),
            ) as cur,
        ):
            return [_approval(r) for r in await cur.fetchall()]

    # -- edit requests ------------------------------------------------------------------------
    async def request_edit(self, thread: str, approval_id: str) -> None:
        """The next message in ``thread`` is the correction for ``approval_id``."""
        async with self._writing():
            threads = await self._threads_with_edit_requests()
            threads.add(thread)  # before the write: an entry may be stale, never missing
            await self._conn.execute(
                "INSERT OR REPLACE INTO edit_requests (thread, approval_id, requested_at) VALUES (?, ?, ?)",
                (thread, approval_id, utcnow().isoformat()),
            )

    async def take_edit_request(self, thread: str) -> str | None:
        """Pop the approval id waiting for a correction in ``thread``."""
        threads = self._edit_threads
        if threads is None:
            async with self._lock:
                threads = await self._threads_with_edit_requests()
        if thread not in threads:
            return None
        async with self._writing():
            async with self._conn.execute("SELECT approval_id FROM edit_requests WHERE thread = ?", (thread,)) as cur:
                r = await cur.fetchone()
            if r is not None:
                await self._conn.execute("DELETE FROM edit_requests WHERE thread = ?", (thread,))
        # After the commit: had it failed, the request would still be there, and so would the entry.
        threads.discard(thread)
        return None if r is None else str(r[0])

    async def _threads_with_edit_requests(self) -> set[str]:
        # Callers hold the lock.
        if self._edit_threads is None:
            async with self._conn.execute("SELECT thread FROM edit_requests") as cur:
                self._edit_threads = {str(row[0]) for row in await cur.fetchall()}
        return self._edit_threads

    # -- outbox -------------------------------------------------------------------------------
    async def outbox(self, approval_id: str) -> OutboxRow | None:
        """The outbox row of an approval."""
        async with self._lock:
            async with self._conn.execute(f"SELECT {_O_READ} FROM outbox WHERE approval_id = ?", (approval_id,)) as cur:
                r = await cur.fetchone()
            return _outbox(r) if r else None

    async def outbox_in(self, state: OutboxState) -> list[OutboxRow]:
        """Outbox rows in one state, oldest first."""
        async with (
            self._lock,
            self._conn.execute(
                f"SELECT {_O_READ} FROM outbox WHERE state = ? ORDER BY next_attempt_at", (state,)
            ) as cur,
        ):
            return [_outbox(r) for r in await cur.fetchall()]

    async def claim_due(self, now: datetime, owner: str | None = None) -> OutboxRow | None:
        """Move the oldest due queued row to 'running' (attempt + 1, claimed by ``owner``) before any call is made."""
        async with self._writing():
            async with self._conn.execute(
                f"SELECT {_O_READ} FROM outbox WHERE state = 'queued' AND next_attempt_at <= ? "
                "ORDER BY next_attempt_at LIMIT 1",
                (now.isoformat(),),
            ) as cur:
                r = await cur.fetchone()
            if r is None:
                return None
            row = _outbox(r)
            cur2 = await self._conn.execute(
                "UPDATE outbox SET state = 'running', attempts = attempts + 1, updated_at = ?, owner = ? "
                "WHERE approval_id = ? AND state = 'queued'",
                (now.isoformat(), owner, row.approval_id),
            )
            if cur2.rowcount != 1:
                return None
            async with self._conn.execute(
                f"SELECT {_O_READ} FROM outbox WHERE approval_id = ?", (row.approval_id,)
            ) as cur3:
                r3 = await cur3.fetchone()
            return _outbox(r3) if r3 else None

    async def unreported(self) -> list[OutboxRow]:
        """Finished rows whose outcome was not yet shown on their cards (e.g. a crash before the edit)."""
        async with (
            self._lock,
            self._conn.execute(
                f"SELECT {_O_READ} FROM outbox WHERE state IN ('sent', 'failed', 'unknown') AND reported = 0 "
                "ORDER BY updated_at"
            ) as cur,
        ):
            return [_outbox(r) for r in await cur.fetchall()]

    async def mark_reported(self, approval_id: str, state: OutboxState) -> None:
        """The cards now show this outcome."""
        async with self._writing():
            await self._conn.execute(
                "UPDATE outbox SET reported = 1 WHERE approval_id = ? AND state = ?", (approval_id, state)
            )

    async def save_progress(self, approval_id: str, progress: dict[str, Any]) -> None:
        """Store the steps a running execution completed (before it starts the next one)."""
        async with self._writing():
            await self._conn.execute(
                "UPDATE outbox SET progress = ?, updated_at = ? WHERE approval_id = ?",
                (json.dumps(progress), utcnow().isoformat(), approval_id),
            )

    async def release(self, approval_id: str, retry_in: timedelta) -> bool:
        """Put a claimed row back without counting the attempt (nothing was called)."""
        async with self._writing():
            cur = await self._conn.execute(
                "UPDATE outbox SET state = 'queued', attempts = attempts - 1, next_attempt_at = ?, updated_at = ? "
                "WHERE approval_id = ? AND state = 'running'",
                ((utcnow() + retry_in).isoformat(), utcnow().isoformat(), approval_id),
            )
            return cur.rowcount == 1

    async def finish(
        self,
        approval_id: str,
        state: OutboxState,
        detail: str = "",
        external_id: str | None = None,
        retry_in: timedelta | None = None,
        expect: OutboxState = "running",
    ) -> bool:
        """Compare-and-set the outbox row out of ``expect``; ``retry_in`` re-queues it."""
        async with self._writing():
            now = utcnow()
            next_at = (now + retry_in) if retry_in is not None else now
            cur = await self._conn.execute(
                "UPDATE outbox SET state = ?, detail = ?, external_id = COALESCE(?, external_id), next_attempt_at = ?, "
                "updated_at = ?, reported = 0 WHERE approval_id = ? AND state = ?",
                (state, detail, external_id, next_at.isoformat(), now.isoformat(), approval_id, expect),
            )
            return cur.rowcount == 1

"""Approval rows and the outbox, in the application database.

Every state change is a compare-and-set on the current state, so two presses, two devices or
two processes can never both win. Approving inserts the outbox row in the same transaction (a
crash between "approved" and "queued" cannot lose the action).

Its parts, one module each: the tables and migrations (``memory.approval_schema``), the rows
(``memory.approval_rows``), the outbox (``memory.outbox_queue``), edit requests (``memory.edit_requests``).
"""

from __future__ import annotations

import json
from dataclasses import astuple
from datetime import datetime
from typing import Any

from memory.approval_rows import (
    SELECT_APPROVALS,
    ApprovalRow,
    ApprovalState,
    CardRef,
    OutboxRow,
    OutboxState,
    read_approval,
)
from memory.approval_schema import migrate_approvals
from memory.db import utcnow
from memory.edit_requests import EditRequests
from memory.install import Install
from memory.outbox_queue import OutboxQueue

__all__ = ["ApprovalRow", "ApprovalState", "ApprovalStore", "CardRef", "OutboxRow", "OutboxState"]

# The columns an approval fills in its outbox row when it is approved (the others keep their defaults).
_O_COLS = "approval_id, idempotency_key, kind, action, digest, state, attempts, next_attempt_at, detail, external_id"


class ApprovalStore(OutboxQueue, EditRequests):
    """Approvals, the outbox and pending edit requests, on a connection the store owns
    (``memory.owned_connection``)."""

    async def setup(self, install: Install | None = None) -> None:
        """Create the tables if needed; with ``install``, key the action digests of a data dir from before
        digests were keyed (``memory.approval_schema``)."""
        async with self._writing():
            await migrate_approvals(self._conn, install)

    async def create(self, row: ApprovalRow) -> bool:
        """Insert a new approval; False when that id exists already (an idempotent re-run)."""
        async with self._writing():
            cur = await self._conn.execute(
                f"INSERT OR IGNORE INTO approvals ({read_approval.columns}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
        async with self._conn.execute(f"{SELECT_APPROVALS} WHERE id = ?", (approval_id,)) as cur:
            r = await cur.fetchone()
        return read_approval(r) if r else None

    async def get(self, approval_id: str) -> ApprovalRow | None:
        """One approval by id."""
        async with self._lock:
            return await self._get(approval_id)

    async def list_approvals(self, state: ApprovalState | None = None, limit: int = 100) -> list[ApprovalRow]:
        """Approvals, oldest first, optionally in one state."""
        async with self._lock:
            sql = f"{SELECT_APPROVALS}" + (" WHERE state = ?" if state else "") + " ORDER BY created_at LIMIT ?"
            args: tuple[Any, ...] = (state, limit) if state else (limit,)
            async with self._conn.execute(sql, args) as cur:
                return [read_approval(r) for r in await cur.fetchall()]

    async def recent_decided(self, limit: int = 20) -> list[ApprovalRow]:
        """Decided approvals, newest first."""
        async with self._lock:
            sql = f"{SELECT_APPROVALS} WHERE state != 'pending' ORDER BY created_at DESC LIMIT ?"
            async with self._conn.execute(sql, (limit,)) as cur:
                return [read_approval(r) for r in await cur.fetchall()]

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
                f"{SELECT_APPROVALS} WHERE json_extract(context, '$.goal_id') = ? "
                "OR (kind = 'goal.plan' AND json_extract(action, '$.goal_id') = ?) ORDER BY created_at",
                (goal_id, goal_id),
            ) as cur,
        ):
            return [read_approval(r) for r in await cur.fetchall()]

    async def due_expired(self, now: datetime) -> list[ApprovalRow]:
        """Pending approvals past their expiry."""
        async with (
            self._lock,
            self._conn.execute(
                f"{SELECT_APPROVALS} WHERE state = 'pending' AND expires_at <= ?",
                (now.isoformat(),),
            ) as cur,
        ):
            return [read_approval(r) for r in await cur.fetchall()]

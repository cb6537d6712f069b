"""The outbox: approved actions waiting for, or done with, execution. A row is claimed (queued -> running)
before any call is made, released when nothing was called, finished with its outcome, and reported once
its cards show that outcome."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from memory.approval_rows import SELECT_OUTBOX, OutboxRow, OutboxState, read_outbox
from memory.db import utcnow
from memory.owned_connection import OwnedConnection


class OutboxQueue(OwnedConnection):
    """Outbox rows read, claimed and finished (part of ``memory.approvals.ApprovalStore``)."""

    async def outbox(self, approval_id: str) -> OutboxRow | None:
        """The outbox row of an approval."""
        async with self._lock:
            async with self._conn.execute(f"{SELECT_OUTBOX} WHERE approval_id = ?", (approval_id,)) as cur:
                r = await cur.fetchone()
            return read_outbox(r) if r else None

    async def outbox_in(self, state: OutboxState) -> list[OutboxRow]:
        """Outbox rows in one state, oldest first."""
        async with (
            self._lock,
            self._conn.execute(f"{SELECT_OUTBOX} WHERE state = ? ORDER BY next_attempt_at", (state,)) as cur,
        ):
            return [read_outbox(r) for r in await cur.fetchall()]

    async def claim_due(self, now: datetime, owner: str | None = None) -> OutboxRow | None:
        """Move the oldest due queued row to 'running' (attempt + 1, claimed by ``owner``) before any call is made."""
        async with self._writing():
            async with self._conn.execute(
                f"{SELECT_OUTBOX} WHERE state = 'queued' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT 1",
                (now.isoformat(),),
            ) as cur:
                r = await cur.fetchone()
            if r is None:
                return None
            row = read_outbox(r)
            cur2 = await self._conn.execute(
                "UPDATE outbox SET state = 'running', attempts = attempts + 1, updated_at = ?, owner = ? "
                "WHERE approval_id = ? AND state = 'queued'",
                (now.isoformat(), owner, row.approval_id),
            )
            if cur2.rowcount != 1:
                return None
            async with self._conn.execute(f"{SELECT_OUTBOX} WHERE approval_id = ?", (row.approval_id,)) as cur3:
                r3 = await cur3.fetchone()
            return read_outbox(r3) if r3 else None

    async def unreported(self) -> list[OutboxRow]:
        """Finished rows whose outcome was not yet shown on their cards (e.g. a crash before the edit)."""
        async with (
            self._lock,
            self._conn.execute(
                f"{SELECT_OUTBOX} WHERE state IN ('sent', 'failed', 'unknown') AND reported = 0 ORDER BY updated_at"
            ) as cur,
        ):
            return [read_outbox(r) for r in await cur.fetchall()]

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

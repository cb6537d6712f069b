"""What follow-ups are matched against: emails sent through approved cards that have no automatic follow-up
yet, the replies stored mail brings (read past a cursor), the cards of proposed follow-ups once settled, and
when automatic follow-ups began. The mail, outbox and approvals tables belong to their own stores (same
file); they are only read here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from memory.db import Database, utcnow

REPLY_CURSOR = "followups.reply_cursor"
AUTO_SINCE = "followups.auto_since"


def stamp(at: datetime) -> str:
    """How a time is stored: UTC, ISO, to the second (so stored times compare as text)."""
    return at.astimezone(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Unanswered:
    """An email we sent (through an approved card) that has no automatic follow-up yet."""

    message_id: str
    recipients: tuple[str, ...]
    subject: str
    sent_at: datetime
    refs: tuple[str, ...]


class FollowupMail:
    """Sent mail and replies as follow-ups see them (part of ``memory.followups.FollowupStore``)."""

    _db: Database

    async def unanswered(self, since: datetime, limit: int = 500) -> list[Unanswered]:
        """Emails sent since ``since`` through an approved card (outbox ``sent``) with no automatic follow-up
        yet, other than those a follow-up or a payment reminder sent (those are chased already)."""
        return [_unanswered(r) for r in await self._db.fetchall(_UNANSWERED, (stamp(since), limit))]

    async def replies_since(self, after: int, limit: int = 1000) -> tuple[list[str], int]:
        """The Message-IDs answered (In-Reply-To and References) by mail stored after mail id ``after``, and
        the last mail id read."""
        rows = await self._db.fetchall(
            "SELECT id, in_reply_to, refs FROM mail_messages WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        answered = [ref for r in rows for ref in (r[1], *json.loads(r[2])) if ref]
        return answered, (int(rows[-1][0]) if rows else after)

    async def replied(self, message_id: str) -> bool:
        """Whether stored mail answers ``message_id`` (In-Reply-To, or in its References)."""
        row = await self._db.fetchone(
            "SELECT 1 FROM mail_messages WHERE in_reply_to = ? OR thread = ? OR instr(refs, ?) > 0 LIMIT 1",
            (message_id, message_id, json.dumps(message_id)),
        )
        return row is not None

    async def settled_cards(self) -> list[tuple[int, str]]:
        """Proposed follow-up cards whose approval is settled: ``(id, "done")`` once its email went out,
        ``(id, "cancelled")`` once it was rejected or expired."""
        rows = await self._db.fetchall(_SETTLED)
        return [(int(r[0]), str(r[1])) for r in rows]

    async def last_sent_to(self, email: str) -> Unanswered | None:
        """The newest email sent to ``email`` through an approved card (to thread a follow-up to it)."""
        row = await self._db.fetchone(_LAST_SENT, (json.dumps(email),))
        return _unanswered(row) if row else None

    async def auto_since(self) -> datetime:
        """When automatic follow-ups began (the first call): emails sent before it get none, so an upgrade
        does not bring a follow-up for every email ever sent."""
        row = await self._db.fetchone("SELECT value FROM kv WHERE key = ?", (AUTO_SINCE,))
        if row is not None:
            return datetime.fromisoformat(json.loads(row[0]))
        now = stamp(utcnow())
        await self._db.write(
            "INSERT OR IGNORE INTO kv (key, value, updated_at) VALUES (?, ?, ?)", (AUTO_SINCE, json.dumps(now), now)
        )
        return await self.auto_since()

    async def reply_cursor(self) -> int:
        """The last mail id whose replies were looked at."""
        row = await self._db.fetchone("SELECT value FROM kv WHERE key = ?", (REPLY_CURSOR,))
        return int(json.loads(row[0])) if row else 0

    async def set_reply_cursor(self, mail_id: int) -> None:
        """Move the reply cursor."""
        await self._db.write(
            "INSERT OR REPLACE INTO kv (key, value, updated_at) VALUES (?, ?, ?)",
            (REPLY_CURSOR, json.dumps(mail_id), stamp(utcnow())),
        )


# The mail, outbox and approvals tables belong to their own stores (same file); read here only to find sent
# emails without a follow-up and the cards of proposed ones.


_UNANSWERED = """
SELECT s.message_id, s.recipients, s.subject, s.sent_at, json_extract(a.action, '$.references')
FROM mail_sent s
JOIN outbox o ON o.idempotency_key = s.idempotency_key AND o.state = 'sent'
JOIN approvals a ON a.id = o.approval_id
WHERE s.sent_at >= ? AND a.origin NOT IN ('followups', 'receivables')
  AND NOT EXISTS (SELECT 1 FROM followups f WHERE f.source = 'auto' AND f.message_id = s.message_id)
ORDER BY s.sent_at
LIMIT ?
"""

_LAST_SENT = """
SELECT s.message_id, s.recipients, s.subject, s.sent_at, json_extract(a.action, '$.references')
FROM mail_sent s
JOIN outbox o ON o.idempotency_key = s.idempotency_key AND o.state = 'sent'
JOIN approvals a ON a.id = o.approval_id
WHERE instr(s.recipients, ?) > 0
ORDER BY s.sent_at DESC
LIMIT 1
"""

_SETTLED = """
SELECT f.id, CASE WHEN o.state = 'sent' THEN 'done' ELSE 'cancelled' END
FROM followups f
JOIN approvals a ON a.root_id = f.approval_id
LEFT JOIN outbox o ON o.approval_id = a.id
WHERE f.state = 'proposed' AND f.approval_id IS NOT NULL
  AND (o.state = 'sent' OR a.state IN ('rejected', 'expired'))
"""


def _unanswered(row: Any) -> Unanswered:
    refs = tuple(json.loads(row[4] or "[]"))
    return Unanswered(row[0], tuple(json.loads(row[1])), row[2], datetime.fromisoformat(row[3]), refs)

"""Replies to the emails our cards sent: which received message answers which sent email (linked by intake when
it stores the message, see ``memory.mail``), found by the task or goal whose card sent it, and whether the task
that waited for it got it. The outbox and approvals tables belong to the approval store (same file); they are
read here only to go from a sent email to its card, goal and task."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from memory.db import Database, Transaction
from memory.mail import MailStore, SentMail, StoredMail


@dataclass(frozen=True)
class Reply:
    """A received message that answers an email one of our cards sent."""

    mail: StoredMail
    answers: SentMail
    delivered: bool
    """Already handed to the task that waited for it."""

    @property
    def from_recipient(self) -> bool:
        """Whether it comes from someone our email was sent to (anyone else's answer wakes no task)."""
        sender = self.mail.record.from_addr.strip().lower()
        return bool(sender) and sender in {r.strip().lower() for r in self.answers.recipients}


class MailReplies:
    """Reads the links between replies and the emails they answer; marks replies handed to their task."""

    def __init__(self, db: Database, mail: MailStore) -> None:
        self._db = db
        self._mail = mail

    async def sent_for_task(self, task_id: str) -> list[SentMail]:
        """The emails a goal's task got sent (its cards' outbox rows that ended ``sent``), oldest first."""
        rows = await self._db.fetchall(_SENT_BY_TASK, (task_id,))
        return [SentMail(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4], r[5], r[6]) for r in rows]

    async def replies_for(self, field: str, value: str) -> list[Reply]:
        """Received answers to the emails of one task (``field="task_id"``) or goal (``"goal_id"``), oldest first."""
        if field not in ("task_id", "goal_id"):
            raise ValueError(f"replies are found by task_id or goal_id, not {field}")
        rows = await self._db.fetchall(_REPLIES.format(field=field), (value,))
        found = []
        for r in rows:
            mail = await self._mail.get(int(r[0]))
            if mail is not None:
                sent = SentMail(r[2], r[3], tuple(json.loads(r[4])), r[5], r[6], r[7], r[8])
                found.append(Reply(mail, sent, bool(r[1])))
        return found

    @staticmethod
    async def mark_delivered(tx: Transaction, mail_ids: Sequence[int]) -> None:
        """Mark replies handed to their task, inside the transaction that wakes the task (both or neither)."""
        for mail_id in mail_ids:
            await tx.execute("UPDATE mail_replies SET delivered = 1 WHERE mail_id = ?", (mail_id,))


_SENT_BY_TASK = """
SELECT s.message_id, s.idempotency_key, s.recipients, s.subject, o.approval_id,
       json_extract(a.context, '$.goal_id'), json_extract(a.context, '$.task_id')
FROM mail_sent s
JOIN outbox o ON o.idempotency_key = s.idempotency_key
JOIN approvals a ON a.id = o.approval_id
WHERE json_extract(a.context, '$.task_id') = ? AND o.state = 'sent'
ORDER BY s.sent_at, s.message_id
"""

_REPLIES = """
SELECT r.mail_id, r.delivered, s.message_id, s.idempotency_key, s.recipients, s.subject, o.approval_id,
       json_extract(a.context, '$.goal_id'), json_extract(a.context, '$.task_id')
FROM mail_replies r
JOIN mail_sent s ON s.message_id = r.sent_message_id
JOIN outbox o ON o.idempotency_key = s.idempotency_key
JOIN approvals a ON a.id = o.approval_id
WHERE json_extract(a.context, '$.{field}') = ?
ORDER BY r.mail_id
"""

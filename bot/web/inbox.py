"""Received mail that needs the operator, for Today: what ``/inbox`` lists, urgent first, then newest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.commands.inbox import CLASS_LABELS
from memory.db import Database

_NEEDING = (
    "SELECT id, from_addr, from_name, subject, class, urgency, summary, received_at, "
    "(SELECT COUNT(*) FROM mail_messages WHERE needs_operator = 1) FROM mail_messages WHERE needs_operator = 1 "
    "ORDER BY CASE urgency WHEN 'high' THEN 0 WHEN 'normal' THEN 1 ELSE 2 END, id DESC LIMIT ?"
)


@dataclass(frozen=True)
class InboxItem:
    """One message as Today lists it."""

    id: int
    sender: str
    subject: str
    label: str
    urgent: bool
    summary: str
    received: str


@dataclass(frozen=True)
class Inbox:
    """The first items and how many need the operator in all."""

    items: list[InboxItem]
    total: int


async def inbox_items(db: Database, timezone: str, limit: int = 10) -> Inbox:
    """Messages triaged as needing the operator (a reply, one of ours answered, something suspicious)."""
    rows = await db.fetchall(_NEEDING, (limit,))
    items = [
        InboxItem(
            id=int(r[0]),
            sender=f"{r[2]} <{r[1]}>" if r[2] else (r[1] or "(unknown sender)"),
            subject=r[3] or "(no subject)",
            label=CLASS_LABELS.get(r[4] or "", "not sorted yet"),
            urgent=r[5] == "high",
            summary=r[6] or "",
            received=datetime.fromisoformat(r[7]).astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M"),
        )
        for r in rows
    ]
    return Inbox(items, int(rows[0][8]) if rows else 0)

"""Follow-ups due by the end of today (in the operator's time zone), for Today: what ``/followups`` lists
first, overdue ones included, soonest due first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from memory.db import Database, utcnow
from memory.followups import FollowupStore

_SINCE_EVER = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DueFollowup:
    """One follow-up as Today lists it."""

    id: int
    what: str
    contact: str
    due: str
    overdue: bool
    proposed: bool
    """Its card (or reminder) is already out: the card is among the cards above, or the reminder in chat."""


async def followups_due(db: Database, timezone: str, now: datetime | None = None, limit: int = 10) -> list[DueFollowup]:
    """Open or proposed follow-ups due before tomorrow in ``timezone``; ``now`` defaults to the clock."""
    zone = ZoneInfo(timezone)
    now = now or utcnow()
    tomorrow = datetime.combine(now.astimezone(zone).date() + timedelta(days=1), time(), zone)
    found = await FollowupStore(db).between(_SINCE_EVER, tomorrow.astimezone(UTC))
    return [
        DueFollowup(
            id=f.id,
            what=f.what,
            contact=f.contact or f.email,
            due=f.due.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            overdue=f.due < now,
            proposed=f.state == "proposed",
        )
        for f in found[:limit]
    ]

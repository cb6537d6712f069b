"""Budget periods in the operator's time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from memory.control import Period


def period_start(period: Period, now: datetime, timezone: str) -> datetime:
    """Start (UTC) of the day, week (Monday) or month containing ``now``, in the operator's zone."""
    local = now.astimezone(ZoneInfo(timezone))
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        midnight -= timedelta(days=local.weekday())
    elif period == "month":
        midnight = midnight.replace(day=1)
    # Re-localise: the wall-clock midnight may have a different offset than ``now`` (DST).
    naive = midnight.replace(tzinfo=None)
    return naive.replace(tzinfo=ZoneInfo(timezone)).astimezone(UTC)


# Days past a period's start that land inside the next period, whatever its length (a month has at
# most 31 days); half a day more keeps clear of a DST shift.
_INTO_NEXT = {"day": 1, "week": 7, "month": 31}


def period_end(period: Period, now: datetime, timezone: str) -> datetime:
    """End (UTC) of the day, week or month containing ``now``: the start of the next one."""
    start = period_start(period, now, timezone)
    return period_start(period, start + timedelta(days=_INTO_NEXT[period], hours=12), timezone)

"""When a follow-up is due: ``3d``, ``2w``, ``2026-12-20``, ``friday`` (or ``fri``), ``today``, ``tomorrow``,
read in the operator's zone against an injected "now". A day means 09:00 that day, the operator's time."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from graph.days import named_day
from memory.errors import InternalError
from prompts import messages

DUE_HOUR = time(9, 0)
MAX_AHEAD = timedelta(days=731)


class WhenError(InternalError, ValueError):
    """The "when" could not be read; the message says why, for the operator."""


def due_day(text: str, today: date) -> date:
    """The day ``text`` names, counted from ``today`` (the operator's date). A weekday is the next one
    after today (``friday`` on a Friday is a week on)."""
    day = named_day(text, today)
    if day is None:
        raise WhenError(messages.FOLLOWUP_WHEN_BAD.format(text=text.strip()[:40]))
    if day < today:
        raise WhenError(messages.FOLLOWUP_WHEN_PAST.format(day=day.isoformat()))
    if day - today > MAX_AHEAD:
        raise WhenError(messages.FOLLOWUP_WHEN_FAR.format(day=day.isoformat()))
    return day


def parse_when(text: str, now: datetime, zone: str) -> datetime:
    """When ``text`` is due, in UTC: 09:00 on the day it names, in the operator's zone ``zone``."""
    tz = ZoneInfo(zone)
    day = due_day(text, now.astimezone(tz).date())
    return datetime.combine(day, DUE_HOUR, tzinfo=tz).astimezone(UTC)


def add_business_days(start: datetime, days: int, zone: str) -> datetime:
    """``days`` working days (Monday to Friday) after ``start``, at the same time of day in ``zone``; a start
    on a weekend counts from the Monday after."""
    tz = ZoneInfo(zone)
    local = start.astimezone(tz)
    day = local.date()
    left = days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return datetime.combine(day, local.timetz().replace(tzinfo=None), tzinfo=tz).astimezone(UTC)

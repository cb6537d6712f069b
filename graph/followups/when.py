"""When a follow-up is due: ``3d``, ``2w``, ``2026-12-20``, ``friday`` (or ``fri``), ``today``, ``tomorrow``,
read in the operator's zone against an injected "now". A day means 09:00 that day, the operator's time."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from memory.errors import InternalError
from prompts import messages

DUE_HOUR = time(9, 0)
MAX_AHEAD = timedelta(days=731)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_RELATIVE = re.compile(r"^(\d{1,3})([dw])$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class WhenError(InternalError, ValueError):
    """The "when" could not be read; the message says why, for the operator."""


def due_day(text: str, today: date) -> date:
    """The day ``text`` names, counted from ``today`` (the operator's date). A weekday is the next one
    after today (``friday`` on a Friday is a week on)."""
    word = text.strip().lower()
    if found := _RELATIVE.match(word):
        count = int(found.group(1))
        day = today + timedelta(days=count * (7 if found.group(2) == "w" else 1))
    elif _DATE.match(word):
        try:
            day = date.fromisoformat(word)
        except ValueError:
            raise WhenError(messages.FOLLOWUP_WHEN_BAD.format(text=text.strip())) from None
    elif word in ("today", "tomorrow"):
        day = today + timedelta(days=word == "tomorrow")
    elif names := [i for i, name in enumerate(WEEKDAYS) if len(word) >= 3 and name.startswith(word)]:
        day = today + timedelta(days=(names[0] - today.weekday() - 1) % 7 + 1)
    else:
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

"""The day the operator named: ``3d``, ``2w``, ``2026-12-20``, ``friday`` (or ``fri``), ``today``, ``tomorrow``, read
against today in the operator's zone. Follow-ups and the pipeline's next steps both read days this way."""

from __future__ import annotations

import re
from datetime import date, timedelta

_SPAN = re.compile(r"(\d{1,3})\s*([dw])")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def named_day(text: str, today: date) -> date | None:
    """The day ``text`` names (None when it names none). A weekday is the next one after today (``friday`` on
    a Friday is a week on)."""
    word = text.strip().lower()
    if word == "today":
        return today
    if word == "tomorrow":
        return today + timedelta(days=1)
    if span := _SPAN.fullmatch(word):
        count = int(span.group(1))
        return today + timedelta(days=count * (7 if span.group(2) == "w" else 1))
    for index, name in enumerate(_WEEKDAYS):
        if len(word) >= 3 and name.startswith(word):
            return today + timedelta(days=(index - today.weekday() - 1) % 7 + 1)
    try:
        return date.fromisoformat(word) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", word) else None
    except ValueError:
        return None

"""What a recall question says beyond its words: who it is about and when.

- ``speakers_named``: the speakers of the scope that the question names ("What did Caroline
  research?"); in a conversation, what someone did is almost always told by that person.
- ``time_window``: a period the question names ("in July 2023", "on 13 October, 2023", "last week"),
  so notes from that period can be preferred. Relative periods count back from ``now``.
- ``capped``: the head of an over-long question, so one huge message never costs seconds of embedding.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

# A question's embedding costs ~20 ms at 100 characters and ~0.1 s at 500: longer ones are cut (the
# full-text search gets more of them).
MAX_QUERY_EMBED_CHARS = 500
MAX_QUERY_TEXT_CHARS = 2_000
# A note written this long after a named period still belongs to it ("I went camping last week").
REPORT_LAG = timedelta(days=10)

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTH = r"(?P<month>january|february|march|april|may|june|july|august|september|october|november|december)"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:19|20)\d\d)"
_PATTERNS = [
    re.compile(rf"\b{_DAY}\s+{_MONTH},?\s+{_YEAR}\b", re.I),  # 13 October, 2023
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b", re.I),  # October 13, 2023
    re.compile(rf"\b{_MONTH},?\s+{_YEAR}\b", re.I),  # July 2023
    re.compile(rf"\b(?:in|during|of|since)\s+{_MONTH}\b", re.I),  # in June
    re.compile(rf"\b(?:in|during|of)\s+{_YEAR}\b", re.I),  # in 2023
]
_RELATIVE = {
    "yesterday": (timedelta(days=2), timedelta(0)),
    "today": (timedelta(days=1), timedelta(0)),
    "last week": (timedelta(days=14), timedelta(0)),
    "this week": (timedelta(days=7), timedelta(0)),
    "last weekend": (timedelta(days=10), timedelta(0)),
    "last month": (timedelta(days=62), timedelta(0)),
    "this month": (timedelta(days=31), timedelta(0)),
    "last year": (timedelta(days=730), timedelta(days=0)),
}
_NAME_WORD = re.compile(r"[^\W\d_][\w'-]*")


@dataclass(frozen=True)
class TimeWindow:
    """A period; ``month_only`` means a month of any year ("in June")."""

    start: datetime
    end: datetime
    month: int | None = None

    def contains(self, at: datetime) -> bool:
        """Whether a note written at ``at`` may tell of this period."""
        if self.month is not None:
            reported = at - REPORT_LAG
            return at.month == self.month or reported.month == self.month
        return self.start <= at <= self.end + REPORT_LAG


def capped(query: str, limit: int) -> str:
    """The head of ``query``, cut at whitespace, at most ``limit`` characters."""
    if len(query) <= limit:
        return query
    cut = query.rfind(" ", limit // 2, limit)
    return query[: cut if cut > 0 else limit]


def speakers_named(query: str, speakers: Iterable[str]) -> set[str]:
    """Speakers whose name (first name, or its start of 3+ letters as in "Mel") the question uses."""
    words = {w.lower().removesuffix("'s") for w in _NAME_WORD.findall(query) if w[0].isupper()}
    named = set()
    for speaker in speakers:
        parts = [p.lower() for p in speaker.split()]
        if not parts:
            continue
        if any(p in words for p in parts) or any(len(w) >= 3 and parts[0].startswith(w) for w in words):
            named.add(speaker)
    return named


def time_window(query: str, now: datetime) -> TimeWindow | None:
    """The period ``query`` names, if any (the first one found)."""
    for pattern in _PATTERNS:
        match = pattern.search(query)
        if not match:
            continue
        groups = match.groupdict()
        month = _MONTHS.get((groups.get("month") or "").lower())
        year = int(groups["year"]) if groups.get("year") else None
        day = int(groups["day"]) if groups.get("day") else None
        if year is None and month is not None:
            return TimeWindow(now, now, month=month)
        if year is None:
            continue
        if month is None:
            return TimeWindow(datetime(year, 1, 1, tzinfo=UTC), datetime(year, 12, 31, 23, 59, tzinfo=UTC))
        last = calendar.monthrange(year, month)[1]
        if day is not None and 1 <= day <= last:
            start = datetime(year, month, day, tzinfo=UTC)
            return TimeWindow(start - timedelta(days=7), start + timedelta(days=1))
        return TimeWindow(datetime(year, month, 1, tzinfo=UTC), datetime(year, month, last, 23, 59, tzinfo=UTC))
    lowered = query.lower()
    for phrase, (back, forward) in _RELATIVE.items():
        if phrase in lowered:
            return TimeWindow(now - back, now + forward)
    return None

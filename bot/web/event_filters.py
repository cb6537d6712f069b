"""The timeline's filters: parsed from a plain GET form (kind, contact, goal, a date range in the operator's
zone, paging) into one SQL condition over the event log.

A goal's events are its own (``goal_id``), its tasks' (``task_id``) and its cards' (``approval_id`` of an
approval proposed for it). A contact's events are those that name its record id or one of its addresses as a
whole JSON value, and those of every card whose action does (an email to it, an invoice for it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from memory.db import Database
from memory.records import Contact, Records

_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_GOAL_EVENTS = (
    "(json_extract(payload, '$.goal_id') = ?"
    " OR json_extract(payload, '$.task_id') IN (SELECT id FROM tasks WHERE goal_id = ?)"
    " OR json_extract(payload, '$.approval_id') IN (SELECT id FROM approvals WHERE"
    " json_extract(context, '$.goal_id') = ? OR (kind = 'goal.plan' AND json_extract(action, '$.goal_id') = ?)))"
)


@dataclass(frozen=True)
class Filters:
    """What the operator asked to see. Dates are days in the operator's zone, both ends included."""

    kind: str = ""
    contact: str = ""
    goal: str = ""
    start: date | None = None
    end: date | None = None
    before: int | None = None

    def query(self, **changes: Any) -> str:
        """The filters as a query string (for the export link and paging), with ``changes`` applied."""
        shown = replace(self, **changes)
        pairs = {
            "kind": shown.kind,
            "contact": shown.contact,
            "goal": shown.goal,
            "from": shown.start.isoformat() if shown.start else "",
            "to": shown.end.isoformat() if shown.end else "",
            "before": str(shown.before) if shown.before else "",
        }
        return urlencode({k: v for k, v in pairs.items() if v})

    @property
    def any(self) -> bool:
        """True when something narrows the log."""
        return bool(self.kind or self.contact or self.goal or self.start or self.end)


@dataclass(frozen=True)
class Parsed:
    """Filters as read from a form, what was wrong with it (one line; empty when nothing) and the contact."""

    filters: Filters
    problem: str
    contact: Contact | None


async def parse_filters(query: Mapping[str, str], records: Records, db: Database) -> Parsed:
    """Read the form. A bad field is dropped and named in ``problem``; the others still apply."""
    wrong: list[str] = []
    kind = query.get("kind", "").strip()[:100]
    start = _day(query.get("from", "") or query.get("date", ""), wrong)
    end = _day(query.get("to", "") or query.get("date", ""), wrong)
    if start and end and start > end:
        wrong.append(f"the range starts ({start}) after it ends ({end})")
        start = end = None
    contact_id = query.get("contact", "").strip()
    contact = None
    if contact_id:
        record = await records.get("contact", contact_id) if _ID.match(contact_id) else None
        if record is None:
            wrong.append(f"there is no contact {contact_id!r}")
            contact_id = ""
        else:
            assert isinstance(record.data, Contact)
            contact = record.data
    goal = query.get("goal", "").strip()
    if goal and (not _ID.match(goal) or await db.fetchone("SELECT 1 FROM goals WHERE id = ?", (goal,)) is None):
        wrong.append(f"there is no goal {goal!r}")
        goal = ""
    before_text = query.get("before", "").strip()
    before = int(before_text) if before_text.isdigit() and len(before_text) < 19 else None
    if before_text and before is None:
        wrong.append(f"{before_text!r} is not a place in the log")
    problem = ""
    if wrong:
        problem = "Not applied: " + "; ".join(wrong) + ". Showing the rest."
    return Parsed(Filters(kind, contact_id, goal, start, end, before), problem, contact)


def where(filters: Filters, contact: Contact | None, zone: ZoneInfo) -> tuple[str, list[Any]]:
    """The SQL condition over ``events`` (with its arguments, in order) for ``filters``."""
    parts: list[str] = ["1=1"]
    args: list[Any] = []
    if filters.kind:
        parts.append("kind = ?")
        args.append(filters.kind)
    if filters.start:
        parts.append("at >= ?")
        args.append(_midnight(filters.start, zone))
    if filters.end:
        parts.append("at < ?")
        args.append(_midnight(filters.end + timedelta(days=1), zone))
    if filters.goal:
        parts.append(_GOAL_EVENTS)
        args += [filters.goal] * 4
    if filters.contact:
        needles = [f'"{filters.contact}"', *(f'"{e}"' for e in (contact.emails if contact else []))]
        in_payload = " OR ".join("instr(payload, ?) > 0" for _ in needles)
        in_action = " OR ".join("instr(action, ?) > 0" for _ in needles)
        parts.append(
            f"({in_payload} OR json_extract(payload, '$.approval_id') IN (SELECT id FROM approvals WHERE {in_action}))"
        )
        args += [*needles, *needles]
    if filters.before:
        parts.append("id < ?")
        args.append(filters.before)
    return " AND ".join(parts), args


def _day(text: str, wrong: list[str]) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problem = f"{text[:40]!r} is not a date (YYYY-MM-DD)"
        if problem not in wrong:
            wrong.append(problem)
        return None


def _midnight(day: date, zone: ZoneInfo) -> str:
    """The start of ``day`` in ``zone`` as stored times are written (UTC, ISO)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(ZoneInfo("UTC")).isoformat()

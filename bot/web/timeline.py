"""The Timeline page: the event log filtered by kind, contact, goal and a date range (a plain GET form),
each decision shown as who decided what, when, with the digest; and Export of the filtered view as JSON
Lines, line for line as ``coo export`` writes ``events.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.export import jsonl_line
from bot.web.auth import session_of
from bot.web.event_filters import parse_filters, where
from bot.web.services import Services
from graph.errors import UserFacingError
from memory.db import Event
from memory.event_log import event_line, events_query
from memory.records import Contact

PAGE = 200
EXPORT_CHUNK = 500
DECISIONS = {
    "approved": "Approved",
    "rejected": "Rejected",
    "expired": "Expired",
    "superseded": "Replaced by an edit",
    "withdrawn": "Withdrawn",
}
Render = Callable[..., Awaitable[web.Response]]


@dataclass(frozen=True)
class Row:
    """One event as the page shows it: a decision reads as a sentence with its card and digest."""

    id: int
    at: str
    kind: str
    actor: str
    details: str
    decision: str = ""
    what: str = ""
    digest: str = ""


def register_timeline(app: web.Application, services: Services, render: Render) -> None:
    """Add ``/timeline`` and ``/timeline/export``."""
    page = Timeline(services, render)
    app.router.add_get("/timeline", page.show)
    app.router.add_get("/timeline/export", page.export)


class Timeline:
    """The page and its export."""

    def __init__(self, services: Services, render: Render) -> None:
        self._services = services
        self._render = render
        self._db = services.views.db
        self._zone = ZoneInfo(services.views.timezone)

    async def show(self, request: web.Request) -> web.Response:
        """The latest matching events (200 a page, newest first), the form, and what was not applied."""
        parsed = await parse_filters(request.query, self._services.records, self._db)
        condition, args = where(parsed.filters, parsed.contact, self._zone)
        rows = await self._db.fetchall(
            f"SELECT id, at, actor, session, kind, payload FROM events WHERE {condition} ORDER BY id DESC LIMIT {PAGE}",
            args,
        )
        events = await self._rows(rows)
        older = parsed.filters.query(before=events[-1].id) if len(events) == PAGE else ""
        return await self._render(
            request,
            "timeline.html",
            events=events,
            filters=parsed.filters,
            kinds=await self._services.views.event_kinds(),
            contacts=await self._contacts(),
            goals=await self._services.views.tasks.goals(),
            export=parsed.filters.query(before=None),
            older=older,
            notes=[parsed.problem] if parsed.problem else [],
            zone=self._services.views.timezone,
        )

    async def export(self, request: web.Request) -> web.StreamResponse:
        """Every matching event, oldest first, one JSON object a line; refused (400) when a filter is bad,
        so what is saved is always what was asked for."""
        parsed = await parse_filters(request.query, self._services.records, self._db)
        if parsed.problem:
            raise web.HTTPBadRequest(text=parsed.problem.replace(" Showing the rest.", " Nothing was exported."))
        filters = replace(parsed.filters, before=None)  # the whole filtered view, not one page of it
        condition, args = where(filters, parsed.contact, self._zone)
        operator = session_of(request).operator
        stamp = datetime.now(self._zone).strftime("%Y%m%d-%H%M")
        response = web.StreamResponse(
            headers={
                "Content-Type": "application/jsonl; charset=utf-8",
                "Content-Disposition": f'attachment; filename="coo-timeline-{stamp}.jsonl"',
            }
        )
        await response.prepare(request)
        count, after = 0, 0
        while True:
            chunk = await self._db.fetchall(
                events_query(f"WHERE {condition} AND id > ? ORDER BY id LIMIT {EXPORT_CHUNK}"), [*args, after]
            )
            if not chunk:
                break
            lines = [event_line(r) for r in chunk]
            await response.write("".join(jsonl_line(line) for line in lines).encode())
            count, after = count + len(lines), lines[-1]["id"]
        await self._services.auth.record(operator, "web.export", {"filters": filters.query(), "events": count})
        await response.write_eof()
        return response

    async def _rows(self, rows: list[Any]) -> list[Row]:
        cards = await self._cards({_approval_id(r[5]) for r in rows if r[4].startswith("approval.")} - {""})
        shown = []
        for r in rows:
            at = datetime.fromisoformat(r[1]).astimezone(self._zone).strftime("%Y-%m-%d %H:%M:%S")
            payload = json.loads(r[5])
            row = Row(r[0], at, r[4], r[2], _short(payload))
            if r[4] == "approval.decided":
                decision = DECISIONS.get(str(payload.get("decision")), str(payload.get("decision")))
                what = cards.get(str(payload.get("approval_id")), "a card")
                row = Row(r[0], at, r[4], r[2], "", decision, what, str(payload.get("digest", "")))
            shown.append(row)
        return shown

    async def _cards(self, ids: set[str]) -> dict[str, str]:
        """One line per card (``email to ana@example.org: "Proposal ready"``), read in one query."""
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        found = await self._db.fetchall(f"SELECT id, kind, action FROM approvals WHERE id IN ({marks})", list(ids))
        lines = {}
        for approval_id, kind_name, action in found:
            try:
                kind = self._services.views.approvals.kind(kind_name)
                lines[approval_id] = kind.summary(kind.parse(json.loads(action)))
            except (UserFacingError, ValueError):  # a kind no longer configured, or an action it now refuses
                lines[approval_id] = kind_name
        return lines

    async def _contacts(self) -> list[tuple[str, str]]:
        contacts = []
        for record in await self._services.records.all("contact"):
            assert isinstance(record.data, Contact)
            contacts.append((record.id, record.data.name))
        return sorted(contacts, key=lambda c: c[1].lower())


def _approval_id(payload: str) -> str:
    try:
        return str(json.loads(payload).get("approval_id", ""))
    except (ValueError, AttributeError):
        return ""


def _event(r: Any) -> Event:
    return Event(r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4], json.loads(r[5]))


def _short(payload: Any, limit: int = 300) -> str:
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"

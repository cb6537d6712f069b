"""The Memory page: contacts and the other records with every version (who changed what, when, by which
event), the remembered notes, and Forget, which asks once more and then runs ``/forget`` itself (the chat
command, so the note leaves the ledger, semantic memory and search exactly as in chat, with the same
``memory.forgotten`` audit event)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel

from bot.messages import InboundMessage
from bot.web.auth import session_of
from bot.web.channel import WEB
from bot.web.services import Services
from graph.errors import UserFacingError
from memory.records import MODELS, Contact, Record
from prompts.messages import money

Render = Callable[..., Awaitable[web.Response]]
KIND_NAMES = {
    "contact": "Contacts",
    "project": "Projects",
    "deal": "Deals",
    "invoice": "Invoices",
    "draft": "Drafts",
    "task": "Tasks",
}
TITLE_FIELDS = ("name", "title", "number")
FORGET_OFF = "Forgetting needs semantic memory, which is off here (COO_MEMORY__SEMANTIC); nothing was changed."
NO_NOTE = "There is no remembered note {ref}; nothing was changed."


@dataclass(frozen=True)
class Item:
    """A record in a list: its latest version, a title, a short line and how many versions it has."""

    kind: str
    id: str
    title: str
    line: str
    versions: int
    at: str


@dataclass(frozen=True)
class Version:
    """One version of a record as the history shows it."""

    number: int
    at: str
    actor: str
    event_id: int
    deleted: bool
    fields: list[tuple[str, str]]
    changed: list[tuple[str, str, str]]


def register_memory_pages(
    app: web.Application, services: Services, render: Render, back: Callable[[str], web.HTTPSeeOther]
) -> None:
    """Add ``/memory``, a record's history, and Forget (a confirmation page, then the POST)."""
    pages = MemoryPages(services, render, back)
    app.router.add_get("/memory", pages.overview)
    app.router.add_get("/memory/forget", pages.confirm)
    app.router.add_post("/memory/forget", pages.forget)
    app.router.add_get("/memory/{kind}/{id}", pages.history)


class MemoryPages:
    """The page's handlers."""

    def __init__(self, services: Services, render: Render, back: Callable[[str], web.HTTPSeeOther]) -> None:
        self._services = services
        self._render = render
        self._back = back
        self._zone = ZoneInfo(services.views.timezone)
        self._currency = services.views.currency

    async def overview(self, request: web.Request) -> web.Response:
        """Every live record by kind (contacts first), and the remembered notes, newest first."""
        return await self._render(request, "memory.html", **await self._overview())

    async def _overview(self) -> dict[str, Any]:
        counts = {
            (str(k), str(i)): int(n)
            for k, i, n in await self._services.views.db.fetchall(
                "SELECT kind, id, COUNT(*) FROM records GROUP BY kind, id"
            )
        }
        names = await self._contact_names()
        sections = []
        for kind, name in KIND_NAMES.items():
            records = await self._services.records.all(kind)
            items = [self._item(r, counts.get((kind, r.id), 1), names) for r in records]
            sections.append((kind, name, sorted(items, key=lambda i: i.title.lower())))
        notes = sorted(await self._services.notes.all(), key=lambda n: n.at, reverse=True)
        return {
            "sections": sections,
            "remembered": [(n.ref, self._when(n.at), n.source, n.text) for n in notes],
            "can_forget": self._can_forget(),
        }

    async def history(self, request: web.Request) -> web.Response:
        """One record's versions, newest first, each with what changed from the one before."""
        kind, record_id = request.match_info["kind"], request.match_info["id"]
        versions = await self._services.records.history(kind, record_id) if kind in MODELS else []
        if not versions:
            raise web.HTTPNotFound(text="No such record.")
        shown: list[Version] = []
        before: list[tuple[str, str]] | None = None
        names = await self._contact_names()
        for record in versions:
            now = self._fields(record.data, names)
            changed = _changes(before, now) if before is not None else []
            shown.append(
                Version(
                    record.version, self._when(record.at), record.actor, record.event_id, record.deleted, now, changed
                )
            )
            before = now
        latest = versions[-1]
        return await self._render(
            request,
            "memory_record.html",
            kind=kind,
            kind_name=KIND_NAMES.get(kind, kind),
            title=_title(latest.data),
            record_id=record_id,
            versions=list(reversed(shown)),
        )

    async def confirm(self, request: web.Request) -> web.Response:
        """The question before forgetting: the note in full, Forget or Keep it."""
        ref = request.query.get("ref", "").strip()
        note = next((n for n in await self._services.notes.all() if n.ref == ref), None)
        if note is None:
            return await self._refuse(request, 404, NO_NOTE.format(ref=ref[:40]))
        return await self._render(
            request, "memory_forget.html", ref=note.ref, text=note.text, at=self._when(note.at), can=self._can_forget()
        )

    async def forget(self, request: web.Request) -> web.StreamResponse:
        """Run ``/forget <ref>`` as the signed-in operator (the CSRF token was checked by the middleware)."""
        ref = str((await request.post()).get("ref", "")).strip()
        if not ref or any(c.isspace() for c in ref) or len(ref) > 64:
            return await self._refuse(request, 400, "Choose a note to forget; nothing was changed.")
        if not self._can_forget():
            return await self._refuse(request, 409, FORGET_OFF)
        operator = session_of(request).operator
        inbound = InboundMessage(WEB, operator, operator, f"/forget {ref}", "command", private=True)
        try:
            said = await self._services.commands.run(inbound)
        except UserFacingError as exc:
            return await self._refuse(request, 400, str(exc))
        self._services.channel.note(operator, said)
        self._services.channel.poke()
        raise self._back("/memory")

    async def _refuse(self, request: web.Request, status: int, text: str) -> web.Response:
        return await self._render(request, "memory.html", status=status, notes=[text], **await self._overview())

    def _can_forget(self) -> bool:
        return any(name == "forget" for name, _ in self._services.commands.menu())

    async def _contact_names(self) -> dict[str, str]:
        contacts = await self._services.records.all("contact")
        return {r.id: str(getattr(r.data, "name", r.id)) for r in contacts}

    def _item(self, record: Record, versions: int, names: dict[str, str]) -> Item:
        fields = self._fields(record.data, names)
        line = " · ".join(f"{label}: {value}" for label, value in fields[1:4])
        return Item(record.kind, record.id, _title(record.data), line, versions, self._when(record.at))

    def _fields(self, data: BaseModel, names: dict[str, str]) -> list[tuple[str, str]]:
        """The fields that hold something, as the operator reads them (an amount with its currency, a
        contact by its name)."""
        values = data.model_dump(mode="json")
        currency = str(values.pop("currency", "") or self._currency)
        shown = []
        for name, value in values.items():
            if value in ("", None, [], 0) and name != "amount":
                continue
            if name == "amount":
                text = money(float(value), currency)
            elif name == "contact_id":
                name, text = "contact", names.get(str(value), f"a removed contact ({value})")
            elif isinstance(value, list):
                text = ", ".join(str(v) for v in value)
            else:
                text = str(value)
            shown.append((name.replace("_", " "), text))
        return shown

    def _when(self, at: Any) -> str:
        return str(at.astimezone(self._zone).strftime("%Y-%m-%d %H:%M"))


def _title(data: BaseModel) -> str:
    for name in TITLE_FIELDS:
        value = getattr(data, name, "")
        if value:
            return str(value) + (f" ({data.company})" if isinstance(data, Contact) and data.company else "")
    return "(untitled)"


def _changes(before: list[tuple[str, str]], now: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(field, old, new) for each field that differs; an emptied field reads as new ``(none)``."""
    old, new = dict(before), dict(now)
    return [(name, old.get(name, "(none)"), new.get(name, "(none)")) for name in dict.fromkeys([*old, *new])
            if old.get(name) != new.get(name)]  # fmt: skip

"""Adding, listing and closing follow-ups (for ``/followup`` and the model's tool): no model, no outside call.

Who a follow-up is with comes from the operator's words or the contact records, never from outside text. A
follow-up with an address is threaded to the newest email sent to it, when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from graph.errors import UserFacingError
from graph.followups.when import parse_when
from memory.addresses import normalise_address
from memory.db import utcnow
from memory.followups import Followup, FollowupStore, NewFollowup, Source
from memory.records import Contact, Records
from prompts import messages

_WORD = re.compile(r"\w+")
MAX_WHAT = 500
MAX_WHO = 200


class FollowupBook:
    """Follow-ups as the operator (or the model for them) keeps them."""

    def __init__(
        self, store: FollowupStore, records: Records | None, timezone: str, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._store = store
        self._records = records
        self._zone = timezone
        self._clock = clock

    @property
    def store(self) -> FollowupStore:
        """Where follow-ups are kept."""
        return self._store

    async def add(self, who: str, when: str, what: str, source: Source) -> Followup:
        """A new follow-up with ``who`` (an address or a contact's name) on the day ``when`` names.
        UserFacingError (one clear line) for a day that cannot be read or a name that matches several contacts."""
        what = " ".join(what.split())[:MAX_WHAT]
        who = " ".join(who.split())[:MAX_WHO]
        if not who or not what:
            raise UserFacingError(messages.FOLLOWUP_USAGE)
        try:
            due = parse_when(when, self._clock(), self._zone)
        except ValueError as exc:
            raise UserFacingError(str(exc)) from None
        contact, email = await self._who(who)
        sent = await self._store.last_sent_to(email) if email else None
        new = NewFollowup(contact, what, due, source, email)
        if sent is not None:
            new = NewFollowup(contact, what, due, source, email, sent.message_id, sent.subject, sent.refs)
        return await self._store.add(new)

    async def close(self, followup_id: int, state: Literal["done", "cancelled"]) -> Followup:
        """Mark a follow-up done or cancelled."""
        closed = await self._store.close(followup_id, state)
        if closed is None:
            raise UserFacingError(messages.FOLLOWUP_UNKNOWN.format(id=followup_id))
        return closed

    def due_text(self, followup: Followup) -> str:
        """When it is due, in the operator's zone: ``Fri 18 Dec 09:00``."""
        return followup.due.astimezone(ZoneInfo(self._zone)).strftime("%a %d %b %Y %H:%M")

    def saved_text(self, followup: Followup) -> str:
        """What the operator is told once a follow-up is saved."""
        if followup.email and followup.message_id:
            how = messages.FOLLOWUP_HOW_THREADED.format(email=followup.email)
        elif followup.email:
            how = messages.FOLLOWUP_HOW_EMAIL.format(email=followup.email)
        else:
            how = messages.FOLLOWUP_HOW_REMINDER
        return messages.FOLLOWUP_SAVED.format(
            id=followup.id,
            what=followup.what,
            contact=self.contact_text(followup),
            due=self.due_text(followup),
            how=how,
        )

    def line(self, followup: Followup) -> str:
        """One line of ``/followups``: id, due, contact, what (and whether it came up already)."""
        came = " (came up: card or reminder sent)" if followup.state == "proposed" else ""
        return f"#{followup.id} due {self.due_text(followup)} · {self.contact_text(followup)} · {followup.what}{came}"

    @staticmethod
    def contact_text(followup: Followup) -> str:
        """``Ana Silva <ana@example.org>``, or whichever of the two it has."""
        if followup.email and followup.contact and followup.contact != followup.email:
            return f"{followup.contact} <{followup.email}>"
        return followup.email or followup.contact

    async def name_of(self, email: str) -> str:
        """The name of the contact with ``email``, or the address itself."""
        named = [c for c in await self._contacts(email) if email in c.emails]
        return named[0].name if named else email

    async def _who(self, who: str) -> tuple[str, str]:
        """(name, address): an address stays as given (named after its contact when one has it); a name
        matching one contact with an address takes that address; an unknown name has none (a reminder)."""
        if "@" in who:
            try:
                email = normalise_address(who.strip("<>"))
            except ValueError as exc:
                raise UserFacingError(str(exc)) from None
            named = [c for c in await self._contacts(email) if email in c.emails]
            return (named[0].name if named else email), email
        found = [c for c in await self._contacts(who) if _named(who, c)]
        with_email = [c for c in found if c.emails]
        if len(with_email) > 1:
            options = "; ".join(f"{c.name} <{c.emails[0]}>" for c in with_email[:5])
            raise UserFacingError(messages.FOLLOWUP_AMBIGUOUS.format(query=who, options=options))
        if with_email:
            return with_email[0].name, with_email[0].emails[0]
        return (found[0].name if len(found) == 1 else who), ""

    async def _contacts(self, query: str) -> list[Contact]:
        if self._records is None:
            return []
        return [r.data for r in await self._records.find_contacts(query) if isinstance(r.data, Contact)]


def _named(query: str, contact: Contact) -> bool:
    """Every word of ``query`` begins a word of the contact's name, company or address."""
    words = _WORD.findall(" ".join([contact.name, contact.company, *contact.emails]).casefold())
    return all(any(word.startswith(part) for word in words) for part in _WORD.findall(query.casefold()))

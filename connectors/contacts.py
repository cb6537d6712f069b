"""Who an action goes to, resolved from the contact records: never guessed, never taken from outside text.

A contact is found by any field that names one person: an email address, a phone number, a Stripe
customer id (``cus_...``) or words of the name, company or address."""

from __future__ import annotations

import re
from dataclasses import dataclass

from connectors.base import ActionError
from memory.records import Contact, Record, Records

_WORD = re.compile(r"\w+")
_STRIPE_ID = re.compile(r"^cus_[A-Za-z0-9]+$")
_PHONE = re.compile(r"^\+?[\d\s().-]+$")
_MIN_PHONE_DIGITS = 6


@dataclass(frozen=True)
class Person:
    """A resolved recipient: the contact (when there is one), a name and one address."""

    contact_id: str | None
    name: str
    email: str


async def resolve_person(query: str, records: Records | None) -> Person:
    """An address stays as given (matched to its contact when one has it); a phone number, a Stripe customer
    id or a name must match exactly one contact with an email. ActionError (telling the model to ask the
    operator) otherwise."""
    query = query.strip()
    if "@" in query:
        email = query.strip("<>").lower()
        if records is not None:
            for record in await records.find_contacts(email):
                contact = record.data
                if isinstance(contact, Contact) and email in contact.emails:
                    return Person(record.id, contact.name, email)
        return Person(None, email.split("@", 1)[0], email)
    field = _field_of(query)
    if field is not None:
        return await _by_field(query, field, records)
    found = []
    if records is not None:
        found = [r for r in await records.find_contacts(query) if _named(query, r)]
    if not found:
        raise ActionError(f"no contact named {query!r} has an email address; ask the operator for it")
    if len(found) > 1:
        options = "; ".join(f"{r.data.name} <{r.data.emails[0]}>" for r in found[:5])  # type: ignore[attr-defined]
        raise ActionError(f"{query!r} is ambiguous ({options}); ask the operator which one")
    contact = found[0].data
    assert isinstance(contact, Contact)
    return Person(found[0].id, contact.name, contact.emails[0])


def _field_of(query: str) -> str | None:
    """Which contact field ``query`` is a value of, when it is not a name."""
    if _STRIPE_ID.match(query):
        return "stripe_customer_id"
    if _PHONE.match(query) and len(_digits(query)) >= _MIN_PHONE_DIGITS:
        return "phone"
    return None


def _digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())


async def _by_field(query: str, field: str, records: Records | None) -> Person:
    """The one contact whose phone (compared digit by digit) or Stripe id is ``query``, with its first email."""
    wanted = _digits(query) if field == "phone" else query
    found: list[tuple[str, Contact]] = []
    for record in await records.all("contact") if records is not None else []:
        contact = record.data
        if isinstance(contact, Contact):
            value = getattr(contact, field)
            if value and (_digits(value) if field == "phone" else value) == wanted:
                found.append((record.id, contact))
    what = "phone number" if field == "phone" else "Stripe customer id"
    if not found:
        raise ActionError(f"no contact has the {what} {query!r}; ask the operator who it is")
    if len(found) > 1:
        names = "; ".join(contact.name for _, contact in found[:5])
        raise ActionError(f"the {what} {query!r} is on more than one contact ({names}); ask the operator which one")
    contact_id, contact = found[0]
    if not contact.emails:
        raise ActionError(f"{contact.name} has no email address; ask the operator for it")
    return Person(contact_id, contact.name, contact.emails[0])


async def resolve_addresses(names: list[str], records: Records | None) -> list[str]:
    """Email addresses for a list of addresses or contact names."""
    return [(await resolve_person(name, records)).email if "@" not in name else name for name in names]


def _named(query: str, record: Record) -> bool:
    """Every word of ``query`` begins a word of the contact's name, company or address, and it has an
    address: "Ana" is Ana Silva, not Joana Lopes (a search by substring would take both)."""
    contact = record.data
    if not isinstance(contact, Contact) or not contact.emails:
        return False
    words = _WORD.findall(" ".join([contact.name, contact.company, *contact.emails]).casefold())
    return all(any(word.startswith(part) for word in words) for part in _WORD.findall(query.casefold()))

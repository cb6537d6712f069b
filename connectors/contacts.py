"""Who an action goes to, resolved from the contact records: never guessed, never taken from outside text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from connectors.base import ActionError
from memory.records import Contact, Record, Records

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Person:
    """A resolved recipient: the contact (when there is one), a name and one address."""

    contact_id: str | None
    name: str
    email: str


async def resolve_person(query: str, records: Records | None) -> Person:
    """An address stays as given (matched to its contact when one has it); a name must match exactly one
    contact with an email. ActionError (telling the model to ask the operator) otherwise."""
    query = query.strip()
    if "@" in query:
        email = query.strip("<>").lower()
        if records is not None:
            for record in await records.find_contacts(email):
                contact = record.data
                if isinstance(contact, Contact) and email in contact.emails:
                    return Person(record.id, contact.name, email)
        return Person(None, email.split("@", 1)[0], email)
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

"""Who an action goes to: a name resolves to exactly one contact, by whole words, never by a piece of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.base import ActionError
from connectors.contacts import resolve_addresses, resolve_person
from memory.db import open_database
from memory.records import Records


async def test_a_name_matches_the_start_of_words_not_a_piece_of_one(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        records = Records(db)
        await records.setup()
        await records.upsert("contact", {"name": "Joana Lopes", "emails": ["joana@lopes.pt"]}, "op")
        with pytest.raises(ActionError, match="no contact named 'Ana'"):
            await resolve_person("Ana", records)  # "jo-ANA" is not Ana
        await records.upsert("contact", {"name": "Ana Silva", "company": "Acme Corp", "emails": ["ana@silva.pt"]}, "op")
        assert (await resolve_person("Ana", records)).email == "ana@silva.pt"
        assert (await resolve_person("ana silva", records)).email == "ana@silva.pt"
        assert (await resolve_person("Acme", records)).email == "ana@silva.pt"
        assert (await resolve_person("Jo", records)).email == "joana@lopes.pt"  # a word's beginning
        with pytest.raises(ActionError, match="ambiguous"):
            await resolve_person("pt", records)  # both addresses end in .pt


async def test_a_phone_number_or_a_stripe_customer_id_finds_its_one_contact(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        records = Records(db)
        await records.setup()
        ana = await records.upsert(
            "contact",
            {
                "name": "Ana Silva",
                "emails": ["ana@silva.pt"],
                "phone": "+351 912 345 678",
                "stripe_customer_id": "cus_A1",
            },
            "op",
        )
        await records.upsert("contact", {"name": "Bo", "emails": ["bo@x.org"], "phone": "555 0100"}, "op")
        by_phone = await resolve_person("+351-912-345-678", records)  # written another way: digit by digit
        assert (by_phone.contact_id, by_phone.name, by_phone.email) == (ana.id, "Ana Silva", "ana@silva.pt")
        assert (await resolve_person("cus_A1", records)).email == "ana@silva.pt"
        assert await resolve_addresses(["(555) 0100", "cus_A1"], records) == ["bo@x.org", "ana@silva.pt"]
        with pytest.raises(ActionError, match="no contact has the phone number '912 345 678'; ask the operator"):
            await resolve_person("912 345 678", records)  # a part of a number is not the number
        with pytest.raises(ActionError, match="no contact has the Stripe customer id 'cus_B2'"):
            await resolve_person("cus_B2", records)


async def test_a_field_on_two_contacts_or_a_contact_without_email_is_asked_about(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        records = Records(db)
        await records.setup()
        await records.upsert("contact", {"name": "Cy", "emails": ["cy@x.org"], "phone": "555 0199"}, "op")
        await records.upsert("contact", {"name": "Di", "emails": ["di@x.org"], "phone": "5550199"}, "op")
        await records.upsert("contact", {"name": "Ed", "stripe_customer_id": "cus_E"}, "op")
        with pytest.raises(ActionError, match=r"'555-0199' is on more than one contact \(Cy; Di\); ask the operator"):
            await resolve_person("555-0199", records)
        with pytest.raises(ActionError, match="Ed has no email address; ask the operator for it"):
            await resolve_person("cus_E", records)
        with pytest.raises(ActionError, match="no contact has the Stripe customer id 'cus_E'"):
            await resolve_person("cus_E", None)

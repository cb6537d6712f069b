"""Who an action goes to: a name resolves to exactly one contact, by whole words, never by a piece of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.base import ActionError
from connectors.contacts import resolve_person
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

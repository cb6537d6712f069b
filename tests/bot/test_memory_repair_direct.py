"""MemoryRepair built directly: real SQLite (the event log and the note ledger) and a real LanceDB index
with a small hashing embedder. A deleted index is rebuilt from SQLite, minus what was forgotten; what a crash
kept out of the index is found; asking twice runs one repair; a note the index refuses costs no other.
(The runs through ``coo run`` are in tests/bot/test_memory_repair.py.)"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.memory_repair import MemoryRepair
from memory.db import Database, open_database
from memory.notes import NoteLedger, StoredNote
from memory.semantic.api import Memory, Note, open_memory
from memory.semantic.notes import MAX_TEXT_CHARS
from tests.memory.semantic.test_semantic import HashEmbedder

AT = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class Parts:
    repair: MemoryRepair
    memory: Memory
    db: Database
    notes: NoteLedger
    root: Path

    async def said(self, text: str, kind: str = "message") -> str:
        """A message as the dispatcher logs it; its memory ref."""
        event_id = await self.db.append_event(
            "message.in", "telegram:1001", {"kind": kind, "text": text}, session="rec:1001"
        )
        return f"msg-{event_id}"

    async def remembered(self, ref: str, text: str) -> None:
        await self.notes.add(StoredNote(ref, "default", "remember:rec", text, AT))


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    async with open_database(tmp_path) as db, open_memory(tmp_path, embedder=HashEmbedder()) as memory:
        notes = NoteLedger(db)
        await notes.setup()
        repair = MemoryRepair(memory, db, notes, "default", "UTC")
        yield Parts(repair, memory, db, notes, tmp_path)
        await repair.aclose()


async def test_a_healthy_index_is_left_alone(parts: Parts) -> None:
    await parts.said("Globex signed the maintenance contract")
    assert await parts.repair.run() == 0
    assert await parts.memory.count("default") == 0  # nothing fed back: the index was not rebuilt


async def test_a_deleted_index_is_rebuilt_from_sqlite_minus_what_was_forgotten(parts: Parts) -> None:
    kept = await parts.said("Globex signed the maintenance contract")
    await parts.said("/remember something", kind="command")  # a command is not a memory
    forgotten = await parts.said("my old phone number is 555 0100")
    await parts.db.append_event("memory.forgotten", "telegram:1001", {"ref": forgotten})
    await parts.remembered("n-1", "Acme pays invoices net 45")
    shutil.rmtree(parts.root / "lancedb")
    assert await parts.repair.run() == 2
    assert await parts.memory.refs("default") == {kept, "n-1"}


async def test_what_a_crash_kept_out_of_the_index_is_found(parts: Parts) -> None:
    indexed = await parts.said("Globex signed the maintenance contract")
    lost = await parts.said("Initech wants a quote by Friday")
    await parts.remembered("n-1", "Acme pays invoices net 45")
    await parts.memory.add_many([Note("Globex signed the maintenance contract", ref=indexed, at=AT)])
    assert sorted(n.ref for n in await parts.repair.missing()) == sorted([lost, "n-1"])
    await parts.memory.add_many(await parts.repair.missing())
    assert await parts.repair.missing() == []


async def test_asking_while_a_repair_runs_starts_no_second_one(parts: Parts, caplog: pytest.LogCaptureFixture) -> None:
    await parts.said("Globex signed the maintenance contract")
    shutil.rmtree(parts.root / "lancedb")
    parts.repair.request()
    parts.repair.request()
    assert await parts.repair.wait() == 1
    rebuilt = [r for r in caplog.records if r.getMessage().startswith("semantic memory was rebuilt from the log")]
    assert len(rebuilt) == 1 and await parts.memory.count("default") == 1


async def test_a_note_the_index_refuses_does_not_cost_the_others(
    parts: Parts, caplog: pytest.LogCaptureFixture
) -> None:
    """A ledger row the index cannot take (too long: from an old backup, say) is skipped with a warning."""
    kept = await parts.said("Globex signed the maintenance contract")
    await parts.remembered("n-bad", "x" * (MAX_TEXT_CHARS + 1))
    await parts.remembered("n-good", "Acme pays invoices net 45")
    shutil.rmtree(parts.root / "lancedb")
    assert await parts.repair.run() == 2
    assert await parts.memory.refs("default") == {kept, "n-good"}
    warned = [r.getMessage() for r in caplog.records if r.name == "bot.memory_repair" and r.levelno == logging.WARNING]
    assert any(m.startswith("semantic memory refused n-bad while rebuilding") for m in warned)

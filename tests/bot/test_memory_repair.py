"""A lost semantic index is rebuilt from SQLite: the operator's messages and remembered notes come back,
what was forgotten does not, what was queued meanwhile is not indexed twice, and the commands say what
happens instead of failing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.messages import InboundMessage
from bot.runtime import open_runtime
from memory.db import open_database, utcnow
from memory.notes import NoteLedger, StoredNote
from memory.semantic.api import MemoryUnavailable
from tests.conftest import RecordingChannel, make_settings
from tests.fakes.polling import eventually_async

_n = iter(range(10**6))


def said(text: str, kind: str = "command") -> InboundMessage:
    return InboundMessage("rec", "1001", "telegram:1001", text, kind=kind, update_key=f"r:{next(_n)}")  # type: ignore[arg-type]


async def test_a_deleted_index_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, memory={"semantic": True})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        assert rt.ingestor is not None and rt.memory is not None and rt.memory_repair is not None
        await rt.dispatcher.handle(said("Globex signed the maintenance contract for 2027", kind="message"))
        await rt.dispatcher.handle(said("/remember Acme pays invoices net 45"))
        await rt.dispatcher.handle(said("/remember the studio closes in August"))
        forgotten = chan.sent[-1].text.removeprefix("Remembered (").removesuffix(").")
        await rt.dispatcher.handle(said(f"/forget {forgotten}"))
        await rt.ingestor.flush()
        assert await rt.memory.count("default") == 2

        shutil.rmtree(tmp_path / "lancedb")
        await rt.dispatcher.handle(said("/recall Acme payment terms"))
        assert "not searchable right now" in chan.sent[-1].text and "rebuilding" in chan.sent[-1].text
        assert await rt.memory_repair.wait() == 2  # the chat message and the note not forgotten

        await rt.dispatcher.handle(said("/recall Acme payment terms"))
        assert "Acme pays invoices net 45" in chan.sent[-1].text
        await rt.dispatcher.handle(said("/recall Globex contract"))
        assert "Globex signed the maintenance contract for 2027" in chan.sent[-1].text
        assert not chan.sent[-1].text.count("[2") > 1  # the chat note's own date prefix is not shown twice
        await rt.dispatcher.handle(said("/recall studio August"))
        assert "closes in August" not in chan.sent[-1].text


async def test_remember_while_the_index_is_down_keeps_the_note(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, memory={"semantic": True})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        assert rt.memory is not None and rt.memory_repair is not None
        await rt.dispatcher.handle(said("/remember first note"))
        shutil.rmtree(tmp_path / "lancedb")
        await rt.dispatcher.handle(said("/remember Initech renews every March"))
        assert chan.sent[-1].text.startswith("Kept as ") and "not searchable right now" in chan.sent[-1].text
        await rt.memory_repair.wait()
        await rt.dispatcher.handle(said("/recall Initech renewal"))
        assert "Initech renews every March" in chan.sent[-1].text


async def test_a_rebuild_while_chat_notes_wait_does_not_index_them_twice(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, memory={"semantic": True})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        assert rt.ingestor is not None and rt.memory is not None and rt.memory_repair is not None
        await rt.dispatcher.handle(said("Globex signed the maintenance contract for 2027", kind="message"))
        await rt.ingestor.flush()
        shutil.rmtree(tmp_path / "lancedb")  # the index breaks
        await rt.dispatcher.handle(said("Initech renews its licence every March", kind="message"))
        with pytest.raises(MemoryUnavailable):
            await rt.ingestor.flush()  # the note stays queued, to be retried
        assert rt.ingestor.pending == 1
        await rt.dispatcher.handle(said("/recall Initech licence"))  # reports the failure, starts the rebuild
        assert await rt.memory_repair.wait() == 2  # both messages, from the log
        await rt.ingestor.flush()  # the retry finds the queued note indexed already
        hits = await rt.memory.recall("Initech licence renewal", k=10)
        assert [h.ref for h in hits].count(hits[0].ref) == 1 and "Initech" in hits[0].text
        assert await rt.memory.count() == 2


async def test_what_a_crash_kept_out_of_the_index_is_indexed_at_the_next_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, memory={"semantic": True})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        assert rt.ingestor is not None and rt.memory is not None
        await rt.dispatcher.handle(said("Globex signed the maintenance contract for 2027", kind="message"))
        await rt.dispatcher.handle(said("/remember Acme pays invoices net 45"))
        await rt.dispatcher.handle(said("Initech renews its licence every March", kind="message"))
        await rt.ingestor.flush()
        initech = (await rt.memory.recall("Initech licence", k=1))[0].ref
        await rt.dispatcher.handle(said(f"/forget {initech}"))
    # What a kill -9 leaves: a message logged but not indexed (its note was queued in process memory
    # only), and a remembered note kept in the ledger whose indexing was still to be retried.
    async with open_database(tmp_path) as db:
        await db.append_event("message.in", "telegram:1001", {"text": "Hooli moves to Porto in May", "kind": "message"})
        note = StoredNote("n-lost", "default", "remember:rec", "the studio alarm code changes monthly", utcnow())
        await NoteLedger(db).add(note)
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        memory, repair = rt.memory, rt.memory_repair
        assert memory is not None and repair is not None

        async def indexed() -> bool:
            return await memory.count() == 4  # Globex, Acme, and the two lost ones; not the forgotten one

        await eventually_async(indexed, timeout=30, what="the lost notes indexed")
        assert await repair.missing() == []
        await rt.dispatcher.handle(said("/recall Hooli Porto"))
        assert "Hooli moves to Porto in May" in chan.sent[-1].text
        await rt.dispatcher.handle(said("/recall alarm code"))
        assert chan.sent[-1].text.startswith("n-lost [")
        await rt.dispatcher.handle(said("/recall Initech licence"))
        assert "Initech" not in chan.sent[-1].text

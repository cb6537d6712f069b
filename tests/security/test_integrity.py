"""Smaller holes: forgotten notes quoted by offline replies, records written in one transaction, message
search over the full history, text no store can encode, and bidi controls on cards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.runtime import open_runtime
from graph.conversation.tools import search_messages
from memory.db import open_database
from memory.records import Records
from tests.conftest import RecordingChannel, make_settings, operator_message
from tests.fakes.smtp_server import SMTPServer


async def test_forget_leaves_nothing_when_an_offline_reply_quoted_the_note(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, memory={"semantic": True})  # no model: offline replies quote memory
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/remember The spare key code is falcon-42", kind="command"))
        ref = chan.sent[-1].text.removeprefix("Remembered (").removesuffix(").")
        await rt.dispatcher.handle(operator_message("what is the spare key code?"))
        assert "falcon-42" in chan.sent[-1].text  # the operator saw it
        await rt.dispatcher.handle(operator_message(f"/forget {ref}", kind="command"))
        events = await rt.db.events(limit=10_000)
    assert not any("falcon-42" in str(e.payload) for e in events)  # before: the offline reply kept it
    assert any(ref in str(e.payload) for e in events if e.kind == "message.out")  # the reference is logged


async def test_a_record_version_and_its_event_are_written_together(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        records = Records(db)
        await records.setup()
        ana = await records.upsert("contact", {"name": "Ana"}, "op")
        results = await asyncio.gather(
            *(records.upsert("contact", {"notes": f"edit {i}"}, "op", record_id=ana.id) for i in range(5)),
            return_exceptions=True,
        )
        versions = await records.history("contact", ana.id)
        events = await db.events(kind="record.upserted")
    assert any(isinstance(r, Exception) for r in results)  # racing writers: some lose on the version key
    assert len(events) == len(versions)  # but never an event without its version (before: 6 events, 2 versions)


async def test_message_search_finds_messages_past_the_first_100k_events(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        rows = [
            ("2026-01-01T00:00:00+00:00", "op", "s", "message.in", f'{{"text": "filler {i}"}}') for i in range(100_050)
        ]
        await db.connection.executemany(
            "INSERT INTO events (at, actor, session, kind, payload) VALUES (?, ?, ?, ?, ?)", rows
        )
        await db.connection.commit()
        await db.append_event("message.in", "op", {"text": "The Zephyr contract renews in May"}, session="s")
        found = await search_messages(db, "when does Zephyr renew?", 5)
    assert len(found) == 1 and "Zephyr contract" in found[0][0]  # before: only the first 100k were scanned


async def test_a_lone_surrogate_is_answered_not_dropped(tmp_path: Path) -> None:
    async with open_runtime(make_settings(tmp_path), console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("broken emoji \ud83d here"))
        logged = await rt.db.events(kind="message.in")
    assert len(chan.sent) == 1 and "Offline mode" in chan.sent[0].text
    assert logged[0].payload["text"] == "broken emoji \ufffd here"


@pytest.mark.parametrize("control", ["\u202e", "\u2066", "\u200f"])
async def test_bidi_controls_show_on_a_card_instead_of_reordering_it(tmp_path: Path, control: str) -> None:
    with SMTPServer() as smtp:
        async with open_runtime(make_settings(tmp_path, smtp=smtp.settings()), console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            subject = f"Invoice {control}0001 EUR 000,01"
            await rt.dispatcher.handle(operator_message(f"/email ana@example.org {subject} | Hi", kind="command"))
    card = next(m for m in chan.sent if m.buttons)
    assert control not in card.text and f"<U+{ord(control):04X}>" in card.text

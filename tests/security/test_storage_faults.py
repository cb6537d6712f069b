"""Storage faults: a deleted semantic-memory folder degrades recall to SQLite; a database that cannot be
written keeps updates unconfirmed until it can; cards are reconciled with their outbox rows on start."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from bot.messages import OutboundMessage
from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.smtp_server import SMTPServer
from tests.fakes.telegram_api import FakeTelegram


async def test_a_deleted_memory_folder_degrades_recall_to_the_message_log(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    memory = {"semantic": True, "ingest_interval_s": 0.05}
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm), memory=memory)
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("Acme Robotics pays on net 45 terms."))
        assert rt.ingestor is not None
        await rt.ingestor.wait_idle()
        shutil.rmtree(tmp_path / "lancedb")
        await rt.dispatcher.handle(operator_message("What terms does Acme Robotics pay on?"))
    assert chan.sent[-1].text == "echo: What terms does Acme Robotics pay on?"  # before: a generic error
    data = fake_llm.chat_requests[-1]["messages"][1]["content"]
    assert "Acme Robotics pays on net 45 terms." in data


async def test_an_update_that_cannot_be_stored_is_kept_by_telegram_and_answered_once_later(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    async with FakeTelegram("1:T") as tg:
        telegram = {"token": "1:T", "api_base_url": tg.api_root, "poll_timeout_s": 0.5}
        settings = make_settings(tmp_path, telegram=telegram, llm=llm_settings(fake_llm))
        async with open_runtime(settings, console=False) as rt:
            await tg.wait_for("getUpdates")
            await rt.db.connection.execute("PRAGMA query_only = ON")  # the disk refuses every write
            update_id = tg.push_message(1001, 1001, "written while the disk is full")
            await tg.wait_for(lambda c: c.method == "getUpdates" and c.params.get("offset") in (None, update_id), 3)
            assert not any(c.method == "sendMessage" for c in tg.calls)
            await rt.db.connection.execute("PRAGMA query_only = OFF")  # space again
            await tg.wait_for(lambda c: c.method == "sendMessage", 1, timeout=15)
            await tg.wait_for(lambda c: c.method == "getUpdates" and c.params.get("offset") == update_id + 1)
            await asyncio.sleep(0.5)
    replies = [c.params["text"] for c in tg.calls if c.method == "sendMessage"]
    assert replies == ["echo: written while the disk is full"]  # not lost, not doubled


class _BrokenEdits(RecordingChannel):
    """A chat where editing a message fails (the platform is down, or the process died before it)."""

    async def send(self, message: OutboundMessage) -> list[str]:
        if message.edit_message_id is not None:
            raise ConnectionError("edit failed")
        return await super().send(message)


async def test_cards_show_the_outcome_after_a_restart_when_the_edit_was_lost(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        settings = make_settings(tmp_path, smtp=smtp.settings(), outbox={"poll_s": 0.05})
        async with open_runtime(settings, console=False) as rt:
            broken = _BrokenEdits("rec")
            rt.dispatcher.attach(broken)
            await rt.dispatcher.handle(operator_message("/email ana@example.org Hi | Hello", kind="command"))
            card = next(m for m in broken.sent if m.buttons)
            approve = next(b.data for b in card.buttons if b.label == "Approve")
            await rt.dispatcher.handle(operator_message("", kind="callback", data=approve))
            await smtp.wait_delivered(1)
        # (shutting down let the outbox record "sent" before it stopped)
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.runner.recover()  # what every start does (the recording channel joined after it)
            await rt.runner.recover()  # and only once per outcome
    edits = [m.text for m in chan.sent if m.edit_message_id is not None]
    assert len(smtp.delivered) == 1 and len(edits) == 1 and edits[0].startswith("Sent at")

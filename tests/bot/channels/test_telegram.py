"""The real TelegramChannel against the fake Bot API over HTTP, in polling and webhook mode."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr
from telegram.error import InvalidToken

from bot.channels.telegram import TelegramChannel
from bot.channels.telegram_format import split_text, utf16_len
from bot.messages import Button, InboundMessage, OutboundMessage
from bot.settings import TelegramSettings
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import free_port
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "123:ABC"
COMMANDS = [("help", "What I can do"), ("pending", "Waiting approvals")]


class Inbox:
    """Records what the channel hands over; ``gate`` may hold delivery for some messages."""

    def __init__(self) -> None:
        self.items: list[InboundMessage] = []
        self.gate: Callable[[InboundMessage], asyncio.Event | None] = lambda _: None
        self.on_receive: Callable[[InboundMessage], None] = lambda _: None
        self._changed = asyncio.Event()

    async def handle(self, message: InboundMessage) -> None:
        self.on_receive(message)
        self.items.append(message)
        self._changed.set()
        gate = self.gate(message)
        if gate is not None:
            await gate.wait()

    async def wait(self, count: int = 1, within: float = 5) -> list[InboundMessage]:
        async with asyncio.timeout(within):
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.items


def make_settings(tg: FakeTelegram, **extra: Any) -> TelegramSettings:
    return TelegramSettings(token=SecretStr(TOKEN), api_base_url=tg.api_root, poll_timeout_s=1, **extra)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN, username="MyBot") as fake:
        yield fake


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def channel(tg: FakeTelegram, inbox: Inbox) -> AsyncIterator[TelegramChannel]:
    ch = TelegramChannel(make_settings(tg), inbox.handle, COMMANDS)
    await ch.start()
    yield ch
    await ch.stop()


async def test_text_message_arrives_with_all_fields(tg: FakeTelegram, inbox: Inbox, channel: TelegramChannel):
    update_id = tg.push_message(user_id=7, chat_id=7, text="hello 👋")
    [msg] = await inbox.wait()
    assert (msg.channel, msg.chat_id, msg.sender, msg.text, msg.kind) == (
        "telegram",
        "7",
        "telegram:7",
        "hello 👋",
        "message",
    )
    assert msg.update_key == f"telegram:{update_id}"
    assert msg.message_id is not None and msg.thread_id is None
    assert msg.session_key == "telegram:7"


async def test_forum_topic_sets_thread_id(tg: FakeTelegram, inbox: Inbox, channel: TelegramChannel):
    tg.push_message(user_id=7, chat_id=-100555, text="in a topic", thread_id=42)
    [msg] = await inbox.wait()
    assert (msg.chat_id, msg.thread_id, msg.session_key) == ("-100555", "42", "telegram:-100555:42")


async def test_commands_and_bot_suffix(tg: FakeTelegram, inbox: Inbox, channel: TelegramChannel):
    tg.push_message(7, 7, "/help@MyBot")
    tg.push_message(7, 7, "/budget@mybot 100 usd")
    tg.push_message(7, 7, "/pause@OtherBot")
    got = {m.text: m.kind for m in await inbox.wait(3)}
    assert got == {"/help": "command", "/budget 100 usd": "command", "/pause@OtherBot": "other"}


async def test_edit_arrives_as_edit(tg: FakeTelegram, inbox: Inbox, channel: TelegramChannel):
    tg.push_edit(user_id=7, chat_id=7, message_id=99, text="fixed typo")
    [msg] = await inbox.wait()
    assert (msg.kind, msg.text, msg.message_id) == ("edit", "fixed typo", "99")


async def test_callback_is_answered_only_after_it_was_stored(tg: FakeTelegram, inbox: Inbox, channel: TelegramChannel):
    answered_first: list[bool] = []
    inbox.on_receive = lambda _: answered_first.append(any(c.method == "answerCallbackQuery" for c in tg.calls))
    card = OutboundMessage("telegram", "7", "Send it?", buttons=(Button("Yes", "ap:1"),))
    [card_id] = await channel.send(card)
    update_id = tg.push_callback(user_id=7, chat_id=7, message_id=int(card_id), data="ap:1")
    [msg] = await inbox.wait()
    assert (msg.kind, msg.callback_data, msg.message_id, msg.chat_id) == ("callback", "ap:1", card_id, "7")
    assert msg.update_key == f"telegram:{update_id}"
    await tg.wait_for("answerCallbackQuery")
    assert answered_first == [False]  # I3: Telegram hears of the tap only once the core has it


async def test_other_update_types_carry_the_sender(tg: FakeTelegram, inbox: Inbox, channel: TelegramChannel):
    stranger = {"id": 666, "is_bot": False, "first_name": "Eve"}
    tg.push_raw({"channel_post": {"message_id": 1, "date": 0, "chat": {"id": -1001, "type": "channel"}}})
    tg.push_raw({"inline_query": {"id": "q1", "from": stranger, "query": "x", "offset": ""}})
    member = {"user": stranger, "status": "member"}
    tg.push_raw(
        {
            "my_chat_member": {
                "chat": {"id": -100777, "type": "supergroup", "title": "G"},
                "from": stranger,
                "date": 0,
                "old_chat_member": {**member, "status": "left"},
                "new_chat_member": member,
            }
        }
    )
    msgs = await inbox.wait(2)
    assert sorted((m.kind, m.sender, m.chat_id) for m in msgs) == [
        ("other", "telegram:666", "-100777"),
        ("other", "telegram:666", "666"),
    ]


async def test_duplicate_delivery_keeps_the_update_key(tg: FakeTelegram, inbox: Inbox, channel: TelegramChannel):
    update_id = tg.push_message(7, 7, "once")
    await inbox.wait()
    tg.push_message(7, 7, "once", update_id=update_id)
    first, second = await inbox.wait(2)
    assert first.update_key == second.update_key == f"telegram:{update_id}"


async def test_long_text_with_emoji_is_split_under_the_limit(tg: FakeTelegram, channel: TelegramChannel):
    text = "intro line\n" + "😀" * 3000 + "\n" + " ".join(["word"] * 1500) + "\n" + "🚀" * 5000
    ids = await channel.send(OutboundMessage("telegram", "7", text, buttons=(Button("OK", "ok"),)))
    parts = tg.sent(7)
    assert len(ids) == len(parts) > 3
    assert all(utf16_len(p["text"]) <= 4096 for p in parts)
    assert "".join(p["text"] for p in parts) == text
    assert [("reply_markup" in p) for p in parts] == [False] * (len(parts) - 1) + [True]


def test_split_prefers_newlines_then_spaces():
    assert split_text("a" * 3000 + "\n" + "b" * 3000) == ["a" * 3000 + "\n", "b" * 3000]
    assert split_text("a " * 3000) == ["a " * 2048, "a " * 952]
    assert split_text("😀" * 2049) == ["😀" * 2048, "😀"]
    assert split_text("x" + "😀" * 2048) == ["x" + "😀" * 2047, "😀" * 1]
    assert split_text("") == [""] and split_text("short") == ["short"]
    # A ZWJ family emoji stays whole when the cut would land inside it.
    family = "👩\u200d👩\u200d👧"
    parts = split_text("x" * 4092 + family)
    assert parts == ["x" * 4092, family]


async def test_buttons_become_an_inline_keyboard(tg: FakeTelegram, channel: TelegramChannel):
    buttons = (Button("Approve", "ap:1"), Button("Reject", "rj:1"))
    await channel.send(OutboundMessage("telegram", "-100555", "Card", thread_id="42", buttons=buttons))
    [params] = tg.sent(-100555)
    assert params["message_thread_id"] == 42 and "parse_mode" not in params
    assert params["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "Approve", "callback_data": "ap:1"}],
            [{"text": "Reject", "callback_data": "rj:1"}],
        ]
    }
    with pytest.raises(ValueError, match="64 bytes"):
        await channel.send(OutboundMessage("telegram", "7", "x", buttons=(Button("Too long", "é" * 33),)))
    assert tg.sent(7) == []


async def test_edit_message_id_edits_in_place(tg: FakeTelegram, channel: TelegramChannel):
    [card] = await channel.send(OutboundMessage("telegram", "7", "Send?", buttons=(Button("Yes", "y"),)))
    assert await channel.send(OutboundMessage("telegram", "7", "✅ sent", edit_message_id=card)) == [card]
    # Same content again: Telegram says "not modified"; the result is what was asked, so no error.
    assert await channel.send(OutboundMessage("telegram", "7", "✅ sent", edit_message_id=card)) == [card]
    await channel.send(OutboundMessage("telegram", "7", "🙂" * 3000, edit_message_id=card))
    edits = [c.params for c in tg.calls if c.method == "editMessageText"]
    assert edits[0] == {"chat_id": 7, "message_id": int(card), "text": "✅ sent"}
    assert utf16_len(edits[-1]["text"]) <= 4096 and edits[-1]["text"].endswith("…")
    assert len(tg.sent()) == 1


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # raised inside PTB
async def test_rate_limit_is_retried_once(tg: FakeTelegram, channel: TelegramChannel):
    tg.fail_next("sendMessage", 429, retry_after=0.01)
    assert len(await channel.send(OutboundMessage("telegram", "7", "hi"))) == 1
    assert [c.status for c in tg.calls if c.method == "sendMessage"] == [429, 200]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_server_errors_and_long_waits_are_not_retried(tg: FakeTelegram, channel: TelegramChannel):
    from telegram.error import NetworkError, RetryAfter

    tg.fail_next("sendMessage", 500)
    with pytest.raises(NetworkError):  # may have been delivered: never sent twice
        await channel.send(OutboundMessage("telegram", "7", "maybe delivered"))
    tg.fail_next("sendMessage", 429, retry_after=60)
    with pytest.raises(RetryAfter):  # waiting a minute would stall the conversation: give up at once
        await channel.send(OutboundMessage("telegram", "7", "later"))
    assert [c.status for c in tg.calls if c.method == "sendMessage"] == [500, 429]


async def test_typing_repeats_until_exit(tg: FakeTelegram, channel: TelegramChannel):
    channel.typing_interval_s = 0.05
    tg.fail_next("sendChatAction", 500)  # an indicator failure must never break the reply
    async with channel.typing("-100555", "42"):
        calls = await tg.wait_for("sendChatAction", 3)
    assert calls[1].params == {"chat_id": -100555, "action": "typing", "message_thread_id": 42}
    await asyncio.sleep(0.15)
    assert len([c for c in tg.calls if c.method == "sendChatAction"]) <= 4


async def test_a_reply_sooner_than_the_typing_delay_costs_no_typing_call(tg: FakeTelegram, channel: TelegramChannel):
    channel.typing_delay_s = 60.0
    async with channel.typing("7", None):
        await channel.send(OutboundMessage("telegram", "7", "quick"))
    assert [c.method for c in tg.calls if c.method in ("sendChatAction", "sendMessage")] == ["sendMessage"]


async def test_commands_registered_at_start(tg: FakeTelegram, channel: TelegramChannel):
    assert tg.commands == [
        {"command": "help", "description": "What I can do"},
        {"command": "pending", "description": "Waiting approvals"},
    ]


async def test_the_offset_moves_past_an_update_only_once_it_is_stored(
    tg: FakeTelegram, inbox: Inbox, channel: TelegramChannel
):
    gate = asyncio.Event()
    inbox.gate = lambda m: gate if m.text == "first" else None  # storing "first" takes a while
    first = tg.push_message(7, 7, "first")
    await inbox.wait(1)
    second = tg.push_message(7, 7, "second")
    await asyncio.sleep(0.2)  # time for a poll that would confirm "first" too early
    assert [c.params.get("offset") for c in tg.calls if c.method == "getUpdates"][-1] in (None, 0)
    gate.set()
    await inbox.wait(2)
    polls = await tg.wait_for(lambda c: c.method == "getUpdates" and c.params.get("offset") == second + 1)
    offsets = [c.params.get("offset") for c in polls]
    assert first + 1 in offsets or second + 1 in offsets


async def test_an_update_that_cannot_be_stored_is_fetched_again_not_lost(
    tg: FakeTelegram, inbox: Inbox, caplog: pytest.LogCaptureFixture
):
    failures = iter([True, True])

    def disk_full(message: InboundMessage) -> None:
        if message.text == "boom" and next(failures, False):
            raise OSError("database or disk is full")

    inbox.on_receive = disk_full
    channel = TelegramChannel(make_settings(tg), inbox.handle, COMMANDS, retry_base_s=0.01)
    await channel.start()
    try:
        tg.push_message(7, 7, "boom")
        tg.push_message(7, 7, "after")
        msgs = await inbox.wait(2)
    finally:
        await channel.stop()
    assert [m.text for m in msgs] == ["boom", "after"]  # in order, none lost
    errors = [r for r in caplog.records if r.name == "bot.channels.telegram" and r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all("could not be stored" in r.getMessage() for r in errors)


async def test_a_batch_is_stored_at_once_before_the_offset_moves(tg: FakeTelegram, inbox: Inbox):
    batches: list[list[str]] = []
    failures = iter([True])
    gate = asyncio.Event()

    async def store(messages: Sequence[InboundMessage]) -> None:
        if next(failures, False):
            raise OSError("database or disk is full")  # nothing of this batch was stored
        batches.append([m.text for m in messages])
        await gate.wait()

    ids = [tg.push_message(7, 7, text) for text in ("one", "two", "three")]  # queued before the first poll
    channel = TelegramChannel(make_settings(tg), inbox.handle, COMMANDS, on_batch=store, retry_base_s=0.01)
    await channel.start()
    try:
        await eventually(lambda: batches)
        polls = [c.params.get("offset") for c in tg.calls if c.method == "getUpdates"]
        assert all(offset is None or offset <= ids[0] for offset in polls)  # not confirmed while storing
        gate.set()
        await tg.wait_for(lambda c: c.method == "getUpdates" and c.params.get("offset") == ids[-1] + 1)
    finally:
        await channel.stop()
    assert batches == [["one", "two", "three"]]  # fetched again whole after the failure, stored once
    assert inbox.items == []  # the one-by-one handler is not used in batch mode


async def test_an_update_ptb_cannot_parse_is_skipped_once(
    tg: FakeTelegram, inbox: Inbox, channel: TelegramChannel, caplog: pytest.LogCaptureFixture
):
    bad = tg.push_raw({"poll_answer": {"poll_id": "p1", "option_ids": [0]}})  # fields a newer PTB requires
    tg.push_message(7, 7, "after")
    [msg] = await inbox.wait(1)
    assert msg.text == "after"
    await tg.wait_for(lambda c: c.method == "getUpdates" and c.params.get("offset") == bad + 2)
    skipped = [r for r in caplog.records if "could not be parsed" in r.getMessage()]
    assert len(inbox.items) == 1 and len(skipped) == 1 and f"update {bad} " in skipped[0].getMessage()


@asynccontextmanager
async def webhook_channel(tg: FakeTelegram, inbox: Inbox) -> AsyncIterator[str]:
    """A started channel in webhook mode (secret ``s3cret``); yields the hook's URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/tg/hook"
    settings = make_settings(
        tg, webhook_url=url, webhook_secret=SecretStr("s3cret"), webhook_listen=f"127.0.0.1:{port}"
    )
    channel = TelegramChannel(settings, inbox.handle, COMMANDS)
    await channel.start()
    try:
        yield url
    finally:
        await channel.stop()


async def test_webhook_mode_checks_the_secret(tg: FakeTelegram, inbox: Inbox):
    async with webhook_channel(tg, inbox) as url:
        [hook] = [c.params for c in tg.calls if c.method == "setWebhook"]
        assert (hook["url"], hook["secret_token"]) == (url, "s3cret")
        update = {
            "update_id": 501,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 7, "type": "private"},
                "from": {"id": 7, "is_bot": False, "first_name": "Op"},
                "text": "via hook",
            },
        }
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                async with http.post(url, json=update, headers=headers) as resp:
                    assert resp.status == 403
            assert inbox.items == []  # refused before anything is stored; a late one would be a second item below
            right = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
            async with http.post(url, json=update, headers=right) as resp:
                assert resp.status == 200
        [msg] = await inbox.wait()
        assert (msg.text, msg.update_key) == ("via hook", "telegram:501")
        assert not any(c.method == "getUpdates" for c in tg.calls)


async def test_a_webhook_secret_header_with_non_ascii_characters_is_refused_not_a_crash(
    tg: FakeTelegram, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    async with webhook_channel(tg, inbox) as url:
        update = {"update_id": 502, "message": {"message_id": 1, "date": 0, "chat": {"id": 7, "type": "private"}}}
        async with aiohttp.ClientSession() as http:
            for secret in ("s3crét", "s3cret\u2028"):  # a stranger's guesses
                headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
                async with http.post(url, json=update, headers=headers) as resp:
                    assert resp.status == 403  # before: 500, and a TypeError traceback in the log
    assert inbox.items == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_stop_is_clean_and_idempotent(tg: FakeTelegram, inbox: Inbox):
    before = asyncio.all_tasks()
    channel = TelegramChannel(make_settings(tg), inbox.handle, COMMANDS)
    await channel.start()
    await tg.wait_for("getUpdates")
    async with channel.typing("7", None):
        await tg.wait_for("sendChatAction")
    await channel.stop()
    await channel.stop()
    await asyncio.sleep(0)
    # The fake server's own connection handlers wind down on their own; nothing else may be left.
    left = [
        t for t in asyncio.all_tasks() - before if getattr(t.get_coro(), "__qualname__", "") != "RequestHandler.start"
    ]
    assert left == []
    with pytest.raises(RuntimeError):
        await channel.send(OutboundMessage("telegram", "7", "after stop"))


async def test_bad_token_fails_start_cleanly(tg: FakeTelegram, inbox: Inbox):
    settings = make_settings(tg).model_copy(update={"token": SecretStr("123:WRONG")})
    channel = TelegramChannel(settings, inbox.handle, COMMANDS)
    with pytest.raises(InvalidToken) as caught:
        await channel.start()
    assert "WRONG" not in str(caught.value)
    await channel.stop()
    assert [c.status for c in tg.calls] == [401]

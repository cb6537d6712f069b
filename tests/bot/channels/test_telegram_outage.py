"""The real TelegramChannel while the Bot API refuses connections (the fake stops listening, then
listens again on the same port, when the test says so): every call retries, nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.channels.telegram import TelegramChannel
from bot.messages import ChannelUnreachable, InboundMessage, OutboundMessage
from tests.bot.channels.test_telegram import COMMANDS, TOKEN, Inbox, make_settings
from tests.fakes.polling import eventually
from tests.fakes.telegram_api import FakeTelegram


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN, username="MyBot") as fake:
        yield fake


def retries_logged(caplog: pytest.LogCaptureFixture, what: str) -> int:
    return sum(1 for r in caplog.records if r.name == "bot.channels.telegram" and what in r.getMessage())


async def test_the_fake_refuses_connections_while_down(tg: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as session:
        await tg.go_down()
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.post(f"{tg.api_root}/bot{TOKEN}/getMe")
        await tg.come_back()
        async with session.post(f"{tg.api_root}/bot{TOKEN}/getMe") as response:
            assert response.status == 200


async def test_a_reply_sent_during_an_outage_arrives_once_it_is_back(
    tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bot.channels.telegram")
    channel = TelegramChannel(make_settings(tg), Inbox().handle, COMMANDS, retry_base_s=0.02, retry_max_s=0.1)
    await channel.start()
    try:
        await tg.go_down()
        # Once polling has met the outage, the idle connections it closed are known closed here too.
        await eventually(lambda: retries_logged(caplog, "polling failed") >= 1, what="a refused poll")
        sending = asyncio.create_task(channel.send(OutboundMessage("telegram", "7", "the answer")))
        await eventually(lambda: retries_logged(caplog, "sending failed") >= 2, what="two refused sends")
        assert not sending.done()
        await tg.come_back()
        ids = await asyncio.wait_for(sending, 10)
    finally:
        await channel.stop()
    assert [p["text"] for p in tg.sent()] == ["the answer"] and ids == [str(tg.calls[-1].message_id)]


async def test_a_send_that_cannot_reach_telegram_in_its_window_says_so(
    tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bot.channels.telegram")
    channel = TelegramChannel(
        make_settings(tg), Inbox().handle, COMMANDS, retry_base_s=0.02, retry_max_s=0.05, send_retry_s=0.2
    )
    await channel.start()
    try:
        await tg.go_down()
        await eventually(lambda: retries_logged(caplog, "polling failed") >= 1, what="a refused poll")
        with pytest.raises(ChannelUnreachable):
            await channel.send(OutboundMessage("telegram", "7", "not now"))
    finally:
        await tg.come_back()
        await channel.stop()
    assert tg.sent() == []


async def test_a_start_during_an_outage_waits_for_telegram_and_registers_the_menu(
    tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bot.channels.telegram")
    inbox = Inbox()
    channel = TelegramChannel(make_settings(tg), inbox.handle, COMMANDS, retry_base_s=0.02, retry_max_s=0.1)
    await tg.go_down()
    starting = asyncio.create_task(channel.start())
    try:
        await eventually(lambda: retries_logged(caplog, "unreachable") >= 2, what="refused start-up calls")
        assert not starting.done()
        await tg.come_back()
        await asyncio.wait_for(starting, 10)
        assert [c["command"] for c in tg.commands] == ["help", "pending"]
        tg.push_message(7, 7, "hello")
        [message] = await inbox.wait(1)
    finally:
        await channel.stop()
    assert message.text == "hello"


async def test_the_menu_set_after_start_is_retried_in_the_background(
    tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bot.channels.telegram")
    channel = TelegramChannel(make_settings(tg), Inbox().handle, (), retry_base_s=0.02, retry_max_s=0.1)
    await channel.start()
    try:
        await tg.go_down()
        await channel.set_commands([("status", "How things stand")])  # returns: an outage never fails it
        await eventually(lambda: retries_logged(caplog, "setMyCommands failed") >= 2, what="refused menu calls")
        await tg.come_back()
        await eventually(lambda: tg.commands == [{"command": "status", "description": "How things stand"}])
    finally:
        await channel.stop()


async def test_polling_goes_on_after_an_outage_and_loses_nothing(
    tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bot.channels.telegram")
    inbox = Inbox()
    channel = TelegramChannel(make_settings(tg), inbox.handle, COMMANDS, retry_base_s=0.02, retry_max_s=0.1)
    await channel.start()
    try:
        tg.push_message(7, 7, "before")
        await inbox.wait(1)
        await tg.go_down()
        tg.push_message(7, 7, "during")  # waits at Telegram, as it would
        await eventually(lambda: retries_logged(caplog, "polling failed") >= 2, what="refused polls")
        await tg.come_back()
        messages: list[InboundMessage] = await inbox.wait(2)
    finally:
        await channel.stop()
    assert [m.text for m in messages] == ["before", "during"]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_a_rate_limit_at_start_is_waited_out(tg: FakeTelegram) -> None:
    tg.fail_next("getMe", 429, retry_after=0.05)
    tg.fail_next("setMyCommands", 429, retry_after=0.05)
    tg.fail_next("deleteWebhook", 502)
    channel = TelegramChannel(make_settings(tg), Inbox().handle, COMMANDS, retry_base_s=0.02)
    await channel.start()
    try:
        methods = [c.method for c in tg.calls]
    finally:
        await channel.stop()
    assert methods.count("getMe") == 2 and methods.count("setMyCommands") == 2 and methods.count("deleteWebhook") == 2

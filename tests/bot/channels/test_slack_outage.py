"""The real SlackChannel while the Web API refuses connections: a send waits for Slack to come back
instead of failing the reply, and says so (ChannelUnreachable) when it does not come back in time."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.channels.slack import SlackChannel
from bot.messages import ChannelUnreachable, OutboundMessage
from tests.bot.channels.test_slack import Inbox, settings_for
from tests.fakes.polling import eventually
from tests.fakes.slack_api import FakeSlack


def refused_sends(caplog: pytest.LogCaptureFixture) -> int:
    return sum(1 for r in caplog.records if r.name == "bot.channels.slack" and "sending failed" in r.getMessage())


async def test_a_reply_sent_during_an_outage_arrives_once_slack_is_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "bot.channels.slack")
    async with FakeSlack() as slack:
        channel = SlackChannel(settings_for(slack), Inbox(), retry_base_s=0.02, retry_max_s=0.1)
        await channel.start()
        try:
            await slack.go_down()
            sending = asyncio.create_task(channel.send(OutboundMessage("slack", "D1", "the answer")))
            await eventually(lambda: refused_sends(caplog) >= 2, what="two refused sends")
            assert not sending.done()
            await slack.come_back()
            ids = await asyncio.wait_for(sending, 10)
        finally:
            await channel.stop()
        posts = [c for c in slack.of("chat.postMessage") if c.params.get("text") == "the answer"]
    assert len(posts) == 1 and len(ids) == 1


async def test_a_send_that_cannot_reach_slack_in_its_window_says_so() -> None:
    async with FakeSlack() as slack:
        channel = SlackChannel(settings_for(slack), Inbox(), retry_base_s=0.02, retry_max_s=0.05, send_retry_s=0.2)
        await channel.start()
        try:
            await slack.go_down()
            with pytest.raises(ChannelUnreachable):
                await channel.send(OutboundMessage("slack", "D1", "not now"))
        finally:
            await slack.come_back()
            await channel.stop()
        assert slack.of("chat.postMessage") == []

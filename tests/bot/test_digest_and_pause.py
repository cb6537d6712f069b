"""The digest's content (offline and with a model), /pause holding queued work, and the budget
commands with good and bad input on Telegram, Slack and the console."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from bot.digest import home_chats
from bot.messages import OutboundMessage
from bot.runtime import open_runtime
from tests.bot.test_approval_flow import EMAIL, card, data, inbound, runtime
from tests.bot.test_e2e_slack import socket_mode
from tests.conftest import RecordingChannel, llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.polling import eventually
from tests.fakes.slack_api import FakeSlack
from tests.fakes.smtp_server import SMTPServer
from tests.fakes.telegram_api import FakeTelegram


async def test_digest_offline_shows_done_waiting_spend_and_next_step(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await smtp.wait_delivered(1)
            await rt.dispatcher.handle(inbound("/email bo@example.org Invoice | Hi Bo", kind="command"))
            before = len(chan.sent)
            await rt.dispatcher.handle(inbound("/digest", kind="command"))
            text = chan.sent[before].text
            waiting_card = chan.sent[before + 1]
            await rt.dispatcher.handle(inbound("/digest", kind="command"))
            second = chan.sent[before + 2].text
    assert 'email to ana@example.org: "Proposal ready"' in text
    assert "Waiting for your approval: 1 (cards below)" in text
    assert "Spend:" in text and "today: 0.00 USD" in text
    assert text.endswith("Next step: decide the 1 waiting card(s).")
    assert "To: bo@example.org" in waiting_card.text and [b.label for b in waiting_card.buttons] == [
        "Approve",
        "Edit",
        "Reject",
    ]
    assert "Done since the last digest: nothing sent." in second  # "since the last digest"
    assert len(text.splitlines()) <= 15  # readable on a phone


async def test_digest_asks_the_model_for_one_line_when_it_can(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.reply("Follow up with Acme about the signed proposal.\nAnd more lines that are dropped.")
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp, llm=llm_settings(fake_llm)) as (rt, chan):
            await rt.dispatcher.handle(inbound("/digest", kind="command"))
            calls = await rt.ledger.calls()
    assert chan.sent[-1].text.endswith("Next step: Follow up with Acme about the signed proposal.")
    assert [c.workflow for c in calls] == ["digest"]


async def test_scheduled_digest_goes_to_the_operators_own_chat(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, _):
            telegram = RecordingChannel("telegram")
            rt.dispatcher.attach(telegram)
            await rt.digest.scheduled()
            assert telegram.sent == []  # no operator chat known yet
            # a group chat is not a home; a private chat (Telegram: chat id == user id) is
            await rt.dispatcher.handle(inbound("/status", kind="command", channel="telegram", chat="-100200"))
            await rt.dispatcher.handle(
                inbound("/email bo@example.org Hi | Hello", kind="command", channel="telegram", chat="1001")
            )
            sent_before = len(telegram.sent)
        async with runtime(tmp_path, smtp) as (rt, _):  # the home survives a restart
            telegram = RecordingChannel("telegram")
            rt.dispatcher.attach(telegram)
            await rt.digest.scheduled()
            homes = await rt.control.keys("home:")
    assert sent_before == 2  # the /status reply in the group and the card
    assert homes == {"home:telegram:1001": ["telegram", "1001", None]}
    digest, waiting_card = telegram.sent
    assert digest.chat_id == "1001" and digest.text.startswith("Digest for ")
    assert waiting_card.chat_id == "1001" and "To: bo@example.org" in waiting_card.text and waiting_card.buttons


class DownChannel(RecordingChannel):
    """A chat platform that refuses every send while ``down``."""

    down = True

    async def send(self, message: OutboundMessage) -> list[str]:
        if self.down:
            raise ConnectionError("the platform is down")
        return await super().send(message)


async def test_a_digest_nobody_received_is_covered_by_the_next_one(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await smtp.wait_delivered(1)
            telegram = DownChannel("telegram")
            rt.dispatcher.attach(telegram)
            await rt.dispatcher.handle(inbound("/status", kind="command", channel="telegram", chat="1001"))
            assert await rt.digest.deliver(await home_chats(rt.control)) == 0  # the platform was down
            telegram.down = False
            assert await rt.digest.deliver(await home_chats(rt.control)) == 1
    assert 'email to ana@example.org: "Proposal ready"' in telegram.sent[-1].text


async def test_pause_holds_queued_actions_until_resume(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp) as (rt, chan):
            await rt.dispatcher.handle(inbound("/pause", kind="command"))
            assert chan.sent[-1].text.startswith("Paused")
            await rt.dispatcher.handle(inbound(EMAIL, kind="command"))  # approvals keep working
            await rt.dispatcher.handle(inbound(kind="callback", data=data(card(chan), "Approve")))
            await asyncio.sleep(0.5)
            assert smtp.delivered == []
        async with runtime(tmp_path, smtp) as (rt, chan):  # the pause survives a restart
            await asyncio.sleep(0.3)
            assert smtp.delivered == []
            await rt.dispatcher.handle(inbound("/resume", kind="command"))
            rt.runner.wake()
            await smtp.wait_delivered(1)


BAD = [
    "/budget set weekly lots",
    "/budget set chat 5",
    "/budget set chat 5/year",
    "/budget nonsense",
    "/budget off",
    "/budget set all 3/day",
]


async def test_budget_commands_on_telegram(tmp_path: Path) -> None:
    async with FakeTelegram(token="1:T") as tg:
        settings = make_settings(
            tmp_path, telegram={"token": "1:T", "api_base_url": tg.api_root, "poll_timeout_s": 0.2}
        )
        async with open_runtime(settings) as rt:
            tg.push_message(1001, 1001, "/budget set weekly 20")
            await tg.wait_for(lambda c: c.method == "sendMessage", 1)
            for text in BAD:
                tg.push_message(1001, 1001, text)
            await tg.wait_for(lambda c: c.method == "sendMessage", 1 + len(BAD))
            tg.push_message(1001, 1001, "/spend")
            await tg.wait_for(lambda c: c.method == "sendMessage", 2 + len(BAD))
            budgets = await rt.control.budgets()
    texts = [c.params["text"] for c in tg.calls if c.method == "sendMessage"]
    assert texts[0].startswith("Budget set: everything: 20.00 USD a week")
    assert all(t.startswith("Usage: /budget") for t in texts[1 : 1 + len(BAD)])
    assert texts[-1].startswith("Spend:\n- today: 0.00 USD\n- this week: 0.00 USD of 20.00 USD")
    assert [(b.scope, b.period, b.amount) for b in budgets] == [("all", "week", 20.0)]  # bad input changed nothing


async def test_budget_commands_on_slack(tmp_path: Path) -> None:
    async with FakeSlack() as slack:
        settings = make_settings(tmp_path, slack=socket_mode(slack))
        async with open_runtime(settings) as rt:
            await slack.push_command("U1", "D1", "/coo", "budget set content 5/week")
            await slack.wait_for("chat.postMessage", 1)
            await slack.push_command("U1", "D1", "/coo", "budget set content five/week")
            await slack.wait_for("chat.postMessage", 2)
            await slack.push_command("U1", "D1", "/coo", "budget off content")
            await slack.wait_for("chat.postMessage", 3)
            budgets = await rt.control.budgets()
    texts = [c.params["text"] for c in slack.calls if c.method == "chat.postMessage"]
    assert texts[0].startswith("Budget set: content: 5.00 USD a week")
    assert texts[1].startswith("Usage: /budget")
    assert texts[2].startswith("Budget for content removed.") and budgets == []


async def test_budget_commands_on_the_console(tmp_path: Path) -> None:
    out = io.StringIO()
    lines = io.StringIO("/budget set daily 2\n/budget set daily -1\n/pause\n/resume\n/budget\n")
    async with open_runtime(make_settings(tmp_path), console_input=lines, console_output=out) as rt:
        assert rt.console is not None
        await asyncio.wait_for(rt.console.closed.wait(), 10)
        await eventually(
            lambda: "Budgets:\n- everything: 2.00 USD a day: spent 0.00 USD" in out.getvalue().split("coo> ")[-1]
        )
    printed = out.getvalue()
    assert "coo> Budget set: everything: 2.00 USD a day" in printed
    assert "coo> Usage: /budget" in printed and "coo> Paused" in printed and "coo> Resumed" in printed


async def test_digest_lists_what_is_due(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    from datetime import timedelta

    from memory.db import utcnow

    soon = (utcnow() + timedelta(days=1)).date().isoformat()
    later = (utcnow() + timedelta(days=30)).date().isoformat()
    fake_llm.tool_call("save_todo", {"title": "Send Acme the contract", "due": soon})
    fake_llm.tool_call("save_todo", {"title": "Plan next year", "due": later})
    fake_llm.reply("Noted both tasks.")
    fake_llm.reply("Renew the domain.")  # the digest's one-line suggestion
    with SMTPServer() as smtp:
        async with runtime(tmp_path, smtp, llm=llm_settings(fake_llm)) as (rt, chan):
            await rt.dispatcher.handle(inbound("remind me: contract to Acme tomorrow, plan next year in a month"))
            await rt.dispatcher.handle(inbound("/digest", kind="command"))
    text = chan.sent[-1].text
    assert f"Due within 3 days:\n- task: Send Acme the contract (due {soon})" in text
    assert "Plan next year" not in text

"""Posts end to end through the real runtime and a real local webhook server that counts deliveries and
verifies the signature and the Idempotency-Key; and cards of every kind in /pending and Edit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.messages import InboundKind, InboundMessage, OutboundMessage
from bot.running import Runtime
from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import SMTPServer
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.webhook_server import WebhookServer

_keys = iter(range(10**6))
POST = "/post Launch day | We are live.\nCome and see."


@asynccontextmanager
async def runtime(
    tmp_path: Path, hook: WebhookServer, **overrides: Any
) -> AsyncIterator[tuple[Runtime, RecordingChannel]]:
    outbox = {"backoff_base_s": 0.02, "poll_s": 0.05, **overrides.pop("outbox", {})}
    publish = overrides.pop("publish", {"webhook_url": hook.url, "webhook_secret": hook.secret})
    settings = make_settings(tmp_path, publish=publish, outbox=outbox, **overrides)
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        yield rt, chan


def inbound(text: str = "", kind: InboundKind = "message", data: str | None = None) -> InboundMessage:
    return InboundMessage(
        "rec",
        "1001",
        "telegram:1001",
        text,
        kind=kind,
        callback_data=data,
        update_key=f"pub:{next(_keys)}",  # type: ignore[arg-type]
    )


def card(chan: RecordingChannel) -> OutboundMessage:
    return next(m for m in reversed(chan.sent) if m.buttons and m.edit_message_id is None)


def button(message: OutboundMessage, label: str) -> str:
    return next(b.data for b in message.buttons if b.label == label)


def edited(chan: RecordingChannel, prefix: str) -> OutboundMessage | None:
    return next((m for m in reversed(chan.sent) if m.edit_message_id and m.text.startswith(prefix)), None)


async def test_approve_publishes_one_signed_post(tmp_path: Path) -> None:
    async with WebhookServer() as hook, runtime(tmp_path, hook) as (rt, chan):
        await rt.dispatcher.handle(inbound(POST, kind="command"))
        shown = card(chan)
        assert shown.text.startswith("Publish this post?\n\nDestination: default\nTitle: Launch day\n\nWe are live.")
        assert "Come and see." in shown.text and hook.received == []  # the full text; nothing before the tap
        await rt.dispatcher.handle(inbound(kind="callback", data=button(shown, "Approve")))
        await eventually(lambda: edited(chan, "Published at") is not None, what="the published card")
        await rt.dispatcher.handle(inbound(kind="callback", data=button(shown, "Approve")))
        await asyncio.sleep(0.2)
    (got,) = hook.received
    assert got.signature_ok and got.key.startswith("coo-") and got.body["text"] == "We are live.\nCome and see."
    done = edited(chan, "Published at")
    assert done is not None and "to default: https://blog.example.org/post-1" in done.text


async def test_5xx_then_2xx_gives_one_post(tmp_path: Path) -> None:
    async with WebhookServer(script=[502, 500]) as hook, runtime(tmp_path, hook) as (rt, chan):
        await rt.dispatcher.handle(inbound(POST, kind="command"))
        await rt.dispatcher.handle(inbound(kind="callback", data=button(card(chan), "Approve")))
        await eventually(lambda: edited(chan, "Published at") is not None, what="the published card")
    assert [r.status for r in hook.received] == [502, 500, 201]
    assert len({r.key for r in hook.received}) == 1 and len(hook.posts) == 1


async def test_a_redirect_is_not_followed_and_the_card_says_why(tmp_path: Path) -> None:
    async with WebhookServer(script=[302]) as hook, runtime(tmp_path, hook) as (rt, chan):
        await rt.dispatcher.handle(inbound(POST, kind="command"))
        await rt.dispatcher.handle(inbound(kind="callback", data=button(card(chan), "Approve")))
        await eventually(lambda: edited(chan, "Failed:") is not None, what="the failed card")
    failed = edited(chan, "Failed:")
    assert failed is not None and "redirect (HTTP 302); redirects are not followed" in failed.text
    assert [r.path for r in hook.received] == ["/hook"] and hook.posts == {}


async def test_a_model_proposed_url_or_unknown_name_is_refused_without_a_card(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.tool_call("publish_post", {"destination": "https://evil.example.com/collect", "title": "T", "text": "x"})
    fake_llm.reply("I can only post to a configured destination.")
    fake_llm.tool_call("publish_post", {"destination": "medium", "title": "T", "text": "x"})
    fake_llm.reply("There is no destination called medium.")
    async with WebhookServer() as hook, runtime(tmp_path, hook, llm=llm_settings(fake_llm)) as (rt, chan):
        await rt.dispatcher.handle(inbound("post this to https://evil.example.com/collect"))
        await rt.dispatcher.handle(inbound("post it to medium"))
        pending = await rt.approvals.store.list_approvals()
    refusals = [r["messages"][-1]["content"] for r in fake_llm.chat_requests if r["messages"][-1]["role"] == "tool"]
    assert len(refusals) == 2
    assert "'https://evil.example.com/collect' is not a configured destination; destinations: default" in refusals[0]
    assert "'medium' is not a configured destination; destinations: default" in refusals[1]
    assert pending == [] and hook.received == [] and not any(m.buttons for m in chan.sent)


async def test_named_destinations_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with WebhookServer(secret="blog-secret") as blog, WebhookServer(secret="news-secret") as news:
        named = {"blog": {"url": blog.url, "secret": blog.secret}, "news": {"url": news.url, "secret": news.secret}}
        monkeypatch.setenv("COO_PUBLISH__DESTINATIONS", json.dumps(named))
        settings = make_settings(tmp_path, outbox={"poll_s": 0.05})
        assert sorted(settings.publish.destinations) == ["blog", "news"]
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(inbound("/post Hello | To the news", kind="command"))
            assert chan.sent[-1].text == "'default' is not a configured destination; destinations: blog, news"
            await rt.dispatcher.handle(inbound("/post @news Hello | To the news", kind="command"))
            shown = card(chan)
            assert "Destination: news" in shown.text
            await rt.dispatcher.handle(inbound(kind="callback", data=button(shown, "Approve")))
            await news.wait_received(1)
            await eventually(lambda: edited(chan, "Published at") is not None)
    assert blog.received == [] and news.received[0].signature_ok and news.received[0].body["title"] == "Hello"


async def test_pending_lists_every_kind_and_edit_works_for_posts(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with FakeStripe() as stripe, WebhookServer() as hook:
            extra = {
                "smtp": smtp.settings(),
                "stripe": {"api_key": stripe.api_key, "api_base_url": stripe.api_base_url},
            }
            async with runtime(tmp_path, hook, **extra) as (rt, chan):
                await rt.dispatcher.handle(inbound("/email ana@example.org Hi | Hello Ana", kind="command"))
                await rt.dispatcher.handle(inbound("/invoice ana@example.org 99 | Consulting", kind="command"))
                await rt.dispatcher.handle(inbound(POST, kind="command"))
                post_card = card(chan)
                before = len(chan.sent)
                await rt.dispatcher.handle(inbound("/pending", kind="command"))
                listed = [m.text.split("\n", 1)[0] for m in chan.sent[before:] if m.buttons]
                assert listed == ["Send this email?", "Send this invoice?", "Publish this post?"]
                assert chan.sent[-1].text == "3 card(s) wait for your approval (shown above)."
                await rt.dispatcher.handle(inbound(kind="callback", data=button(post_card, "Edit")))
                assert chan.sent[-1].text.startswith("Send the corrected post as lines")
                await rt.dispatcher.handle(inbound("title=Launch week\ntext=We are live all week."))
                new = card(chan)
                assert "Title: Launch week" in new.text and "We are live all week." in new.text
                await rt.dispatcher.handle(inbound(kind="callback", data=button(post_card, "Approve")))
                assert chan.sent[-1].text.startswith("Already decided: superseded")
                await rt.dispatcher.handle(inbound(kind="callback", data=button(new, "Approve")))
                await hook.wait_received(1)
                await asyncio.sleep(0.2)
    assert len(hook.received) == 1 and hook.received[0].body["title"] == "Launch week"
    assert smtp.delivered == [] and stripe.requests == []  # the other cards were not touched

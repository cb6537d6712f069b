"""End to end on Slack: real slack-bolt/slack-sdk against the fake Slack, real runtime and graph,
fake model server. Socket Mode and HTTP mode."""

from __future__ import annotations

import json
from pathlib import Path

from bot.channels.slack import SlackChannel
from bot.runtime import open_runtime
from prompts.messages import REFUSAL
from tests.conftest import llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.polling import eventually
from tests.fakes.slack_api import FakeSlack, signed_post

SECRET = "slack-signing-secret-for-tests"


def socket_mode(slack: FakeSlack) -> dict[str, str]:
    """Slack settings for Socket Mode against the fake."""
    return {"bot_token": "xoxb-test", "app_token": "xapp-test", "api_base_url": slack.api_base_url}


def dm(text: str, user: str = "U1", ts: str = "1.0001") -> dict[str, str]:
    return {"type": "message", "channel_type": "im", "channel": "D1", "user": user, "text": text, "ts": ts}


async def test_socket_mode_dm_and_mention_reach_the_graph(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.reply("Hello from the COO")
    async with FakeSlack() as slack:
        settings = make_settings(
            tmp_path,
            llm=llm_settings(fake_llm),
            slack=socket_mode(slack),
        )
        async with open_runtime(settings) as rt:
            assert [c.name for c in rt.channels] == ["slack"]
            await slack.push_event(dm("hi coo"))
            sent = await slack.wait_for("chat.postMessage", 1)
            assert sent[0].params["channel"] == "D1" and sent[0].params["text"] == "Hello from the COO"
            mention = {
                "type": "app_mention",
                "channel": "C9",
                "user": "U1",
                "text": "<@UBOT> status?",
                "ts": "7.5",
            }
            await slack.push_event(mention)
            sent = await slack.wait_for("chat.postMessage", 2)
            assert sent[1].params["thread_ts"] == "7.5" and sent[1].params["text"] == "echo: status?"
            await slack.wait_acks()
    assert fake_llm.chat_requests[0]["messages"][-1]["content"] == "hi coo"


async def test_socket_mode_stranger_refused_and_duplicates_dropped(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with FakeSlack() as slack:
        settings = make_settings(
            tmp_path,
            llm=llm_settings(fake_llm),
            slack=socket_mode(slack),
        )
        async with open_runtime(settings) as rt:
            await slack.push_event(dm("let me in", user="U666"))
            await slack.push_command("U666", "D1", "/coo", "status")
            await slack.push_action("U666", "D1", "some-approval-id", "1.0001")
            await slack.push_event(
                {
                    "type": "reaction_added",
                    "user": "U666",
                    "reaction": "x",
                    "item": {"type": "message", "channel": "C1", "ts": "1.0"},
                }
            )
            await eventually(lambda: len(slack.acks) >= 4)
            await eventually(lambda: len([c for c in slack.calls if c.method == "chat.postMessage"]) >= 1)
            for _ in range(2):
                await slack.push_event(dm("only once please", ts="3.0"), event_id="EvDUP")
            await slack.wait_for("chat.postMessage", 2)
            await slack.wait_acks()
            denied = await rt.db.events(kind="access.deny")
    texts = [c.params["text"] for c in slack.calls if c.method == "chat.postMessage"]
    assert texts == [REFUSAL, "echo: only once please"]
    assert len(denied) == 4 and {e.actor for e in denied} == {"slack:T1:U666"}
    assert [r["messages"][-1]["content"] for r in fake_llm.chat_requests] == ["only once please"]


async def test_http_mode_signed_events_only(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with FakeSlack() as slack:
        settings = make_settings(
            tmp_path,
            llm=llm_settings(fake_llm),
            slack={
                "bot_token": "xoxb-test",
                "signing_secret": SECRET,
                "http_listen": "127.0.0.1:0",
                "api_base_url": slack.api_base_url,
            },
        )
        async with open_runtime(settings) as rt:
            channel = rt.channels[0]
            assert isinstance(channel, SlackChannel) and channel.http_port
            url = f"http://127.0.0.1:{channel.http_port}/slack/events"
            body = slack.event_callback(dm("over http"), "EvHTTP1")
            assert (await signed_post(url, body, None))[0] == 401
            assert (await signed_post(url, body, SECRET, bad_signature=True))[0] == 401
            assert (await signed_post(url, body, "wrong-secret"))[0] == 401
            assert (await signed_post(url, body, SECRET))[0] == 200
            assert (await signed_post(url, body, SECRET))[0] == 200  # Slack's retry of the same event
            later = slack.event_callback(dm("and then this", ts="2.0"), "EvHTTP2")
            assert (await signed_post(url, later, SECRET))[0] == 200
            sent = await slack.wait_for("chat.postMessage", 2)
    assert sorted(c.params["text"] for c in sent) == ["echo: and then this", "echo: over http"]
    assert len(fake_llm.chat_requests) == 2


async def test_socket_mode_approval_card_sends_exactly_one_email(tmp_path: Path) -> None:
    from tests.fakes.smtp_server import SMTPServer

    with SMTPServer() as smtp:
        async with FakeSlack() as slack:
            settings = make_settings(
                tmp_path,
                smtp=smtp.settings(),
                outbox={"poll_s": 0.05},
                slack=socket_mode(slack),
            )
            async with open_runtime(settings):
                await slack.push_command("U1", "D1", "/coo", "email ana@example.org Proposal | Hi Ana,\nready.")
                posted = await slack.wait_for("chat.postMessage", 1)
                card = posted[0].params
                blocks = card["blocks"] if isinstance(card["blocks"], list) else json.loads(card["blocks"])
                buttons = {
                    e["text"]["text"]: e["value"] for b in blocks if b["type"] == "actions" for e in b["elements"]
                }
                assert set(buttons) == {"Approve", "Edit", "Reject"}
                assert "To: ana@example.org" in card["text"] and "Hi Ana,\nready." in card["text"]
                ts = "1700000000.000001"  # the fake numbers posted messages from 1
                # a stranger's press (signed as another user) changes nothing
                await slack.push_action("U666", "D1", buttons["Approve"], ts)
                await slack.push_action("U1", "D1", buttons["Approve"], ts)
                await slack.push_action("U1", "D1", buttons["Approve"], ts)  # double tap
                await smtp.wait_delivered(1)
                updates = await slack.wait_for("chat.update", 2)
                await eventually(
                    lambda: any(
                        str(c.params.get("text", "")).startswith("Sent at")
                        for c in slack.calls
                        if c.method == "chat.update"
                    )
                )
                await slack.wait_acks()
    assert len(smtp.delivered) == 1 and smtp.delivered[0].body == "Hi Ana,\nready."
    assert all(u.params["channel"] == "D1" and u.params["ts"] == ts for u in updates)

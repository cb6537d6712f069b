"""End to end on Telegram: the real runtime and graph with the real python-telegram-bot client against the
fake Bot API, and the fake model server. Long polling and webhook mode."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from bot.channels.telegram import TelegramChannel
from bot.channels.telegram_format import utf16_len
from bot.running import Runtime
from bot.runtime import open_runtime
from bot.settings import Settings
from prompts.messages import REFUSAL
from tests.conftest import llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.polling import eventually, eventually_async
from tests.fakes.smtp_server import free_port
from tests.fakes.telegram_api import Call, FakeTelegram

TOKEN = "123:ABC"
OPERATOR = 1001
STRANGER = 666
HOOK_SECRET = "s3cret-Value_1"


def tg_settings(tg: FakeTelegram, **extra: Any) -> dict[str, Any]:
    return {"token": TOKEN, "api_base_url": tg.api_root, "poll_timeout_s": 0.5, **extra}


def settings_for(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAI, *, llm_extra: Any = None, **extra: Any) -> Settings:
    return make_settings(tmp_path, llm=llm_settings(llm, **(llm_extra or {})), telegram=tg_settings(tg), **extra)


@asynccontextmanager
async def fakes() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(TOKEN, username="CooBot") as tg:
        yield tg


async def wait_events(rt: Runtime, kind: str, count: int, timeout: float = 5) -> list[Any]:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        events = await rt.db.events(kind=kind)
        if len(events) >= count:
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {count} {kind} event(s), got {len(events)}")
        await asyncio.sleep(0.01)


def sends(tg: FakeTelegram, chat_id: int | None = None) -> Callable[[Call], bool]:
    """Predicate for successful sendMessage calls (to ``chat_id`` if given)."""
    return lambda call: (
        call.method == "sendMessage"
        and call.status == 200
        and (chat_id is None or str(call.params.get("chat_id")) == str(chat_id))
    )


def last_user(request: dict[str, Any]) -> str:
    return str(next(m["content"] for m in reversed(request["messages"]) if m["role"] == "user"))


def update_json(update_id: int, user_id: int, chat_id: int, text: str) -> dict[str, Any]:
    """A Bot API ``message`` update, as Telegram would POST it to a webhook."""
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"},
            "from": {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"},
            "text": text,
        },
    }


async def test_operator_message_reaches_graph_and_reply_comes_back(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.reply("Hello from the COO", delay_s=TelegramChannel.typing_delay_s + 0.5)  # a reply slow enough to type
    async with fakes() as tg, open_runtime(settings_for(tmp_path, tg, fake_llm)) as rt:
        assert [c.name for c in rt.channels] == ["telegram"]
        tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text="hi coo 👋")
        [reply] = await tg.wait_for(sends(tg))
        typing = [c for c in tg.calls if c.method == "sendChatAction"]
    assert reply.params["chat_id"] == OPERATOR and reply.params["text"] == "Hello from the COO"
    assert [last_user(r) for r in fake_llm.chat_requests] == ["hi coo 👋"]
    assert typing and typing[0].params["action"] == "typing" and typing[0].params["chat_id"] == OPERATOR
    # typing was shown before the reply went out
    assert tg.calls.index(typing[0]) < tg.calls.index(reply)
    menu = {c["command"] for c in tg.commands}
    assert {"help", "status", "email", "pending"} <= menu
    assert all(c["description"] for c in tg.commands)


async def test_stranger_refused_on_every_update_type_without_a_model_call(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    stranger = {"id": STRANGER, "is_bot": False, "first_name": "Mallory"}
    async with fakes() as tg, open_runtime(settings_for(tmp_path, tg, fake_llm)) as rt:
        tg.push_message(user_id=STRANGER, chat_id=STRANGER, text="let me in")
        tg.push_edit(user_id=STRANGER, chat_id=STRANGER, message_id=1, text="let me in, please")
        tg.push_callback(user_id=STRANGER, chat_id=STRANGER, message_id=1, data="ap:someid:somenonce")
        tg.push_message(user_id=STRANGER, chat_id=STRANGER, text="/status")
        tg.push_raw({"inline_query": {"id": "iq1", "from": stranger, "query": "status", "offset": ""}})
        tg.push_raw(
            {
                "my_chat_member": {
                    "chat": {"id": STRANGER, "type": "private", "first_name": "Mallory"},
                    "from": stranger,
                    "date": int(time.time()),
                    "old_chat_member": {"status": "member", "user": tg.bot_user},
                    "new_chat_member": {"status": "kicked", "user": tg.bot_user, "until_date": 0},
                }
            }
        )
        denied = await wait_events(rt, "access.deny", 6)
        await tg.wait_for(sends(tg))
        # leaving the runtime waits for in-flight updates: nothing more can be sent after this
    assert len(denied) == 6
    assert {e.actor for e in denied} == {f"telegram:{STRANGER}"}
    assert sorted(e.payload["kind"] for e in denied) == ["callback", "command", "edit", "message", "other", "other"]
    assert fake_llm.requests == []
    assert [(m["chat_id"], m["text"]) for m in tg.sent()] == [(STRANGER, REFUSAL)]
    assert not [c for c in tg.calls if c.method in ("sendChatAction", "editMessageText")]


async def test_duplicated_update_id_gets_one_reply(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with fakes() as tg, open_runtime(settings_for(tmp_path, tg, fake_llm)) as rt:
        tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text="only once please", update_id=500)
        tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text="only once please", update_id=500)
        await tg.wait_for(sends(tg))
        # a redelivery after it was answered is dropped as well
        tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text="only once please", update_id=500)
        tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text="and then this")
        await tg.wait_for(sends(tg), 2)
        inbound = await rt.db.events(kind="message.in")
    assert [m["text"] for m in tg.sent()] == ["echo: only once please", "echo: and then this"]
    assert [last_user(r) for r in fake_llm.chat_requests] == ["only once please", "and then this"]
    assert [e.payload["text"] for e in inbound] == ["only once please", "and then this"]


async def test_webhook_mode_checks_the_secret(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    port = free_port()
    async with fakes() as tg:
        hook = {
            "webhook_url": "https://example.org/tg-hook",
            "webhook_secret": HOOK_SECRET,
            "webhook_listen": f"127.0.0.1:{port}",
        }
        settings = make_settings(tmp_path, llm=llm_settings(fake_llm), telegram=tg_settings(tg, **hook))
        async with open_runtime(settings):
            assert tg.webhook is not None and tg.webhook["url"] == "https://example.org/tg-hook"
            assert tg.webhook["secret_token"] == HOOK_SECRET
            assert not [c for c in tg.calls if c.method == "getUpdates"]
            url = f"http://127.0.0.1:{port}/tg-hook"
            body = json.dumps(update_json(41, OPERATOR, OPERATOR, "over the hook"))
            plain = {"Content-Type": "application/json"}
            async with aiohttp.ClientSession() as http:
                async with http.post(url, data=body, headers=plain) as resp:
                    assert resp.status == 403
                wrong = {**plain, "X-Telegram-Bot-Api-Secret-Token": "s3cret-Value_2"}
                async with http.post(url, data=body, headers=wrong) as resp:
                    assert resp.status == 403
                assert fake_llm.requests == [] and tg.sent() == []
                right = {**plain, "X-Telegram-Bot-Api-Secret-Token": HOOK_SECRET}
                async with http.post(url, data=body, headers=right) as resp:
                    assert resp.status == 200
                [reply] = await tg.wait_for(sends(tg))
    # the runtime is closed (every update finished): the refused posts left nothing behind
    assert reply.params["chat_id"] == OPERATOR and reply.params["text"] == "echo: over the hook"
    assert [last_user(r) for r in fake_llm.chat_requests] == ["over the hook"] and len(tg.sent()) == 1


async def test_restart_keeps_the_conversation(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.reply("Noted: your client is Acme.")
    async with fakes() as tg:
        settings = settings_for(tmp_path, tg, fake_llm)
        async with open_runtime(settings):
            tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text="my client is Acme")
            await tg.wait_for(sends(tg))
        async with open_runtime(settings) as rt:
            tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text="who is my client?")
            await tg.wait_for(sends(tg), 2)
            inbound = await rt.db.events(kind="message.in")
    assert [m["text"] for m in tg.sent()] == ["Noted: your client is Acme.", "echo: who is my client?"]
    assert len(fake_llm.chat_requests) == 2
    second = fake_llm.chat_requests[1]["messages"]
    turns = [(m["role"], m["content"]) for m in second if m["role"] in ("user", "assistant")]
    assert turns[-3:] == [
        ("user", "my client is Acme"),
        ("assistant", "Noted: your client is Acme."),
        ("user", "who is my client?"),
    ]
    assert {e.session for e in inbound} == {f"telegram:{OPERATOR}"}


async def test_model_500_tells_the_operator_and_answers_offline(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(500, times=2)
    async with fakes() as tg:
        settings = settings_for(tmp_path, tg, fake_llm, llm_extra={"max_attempts": 2})
        async with open_runtime(settings):
            tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text="draft the Acme update")
            [reply] = await tg.wait_for(sends(tg))
    text = reply.params["text"]
    assert reply.params["chat_id"] == OPERATOR
    assert "can't reach the model" in text and "HTTP 500" in text
    assert "Offline mode: the model is not answering" in text and "COO_LLM__BASE_URL" not in text  # a model is set
    assert len(fake_llm.chat_requests) == 2


async def test_one_slow_chat_does_not_block_another(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    a_released = asyncio.Event()  # A's answer stays at the model until the test lets it go
    fake_llm.script.append(Scripted(content="slow answer for A", hold=a_released))
    async with fakes() as tg:
        settings = settings_for(tmp_path, tg, fake_llm, operators="telegram:1001,telegram:1002")
        async with open_runtime(settings):
            tg.push_message(user_id=1001, chat_id=1001, text="a slow question")
            # B must not take A's scripted (slow) answer: push it only once A's request is at the model
            await eventually(lambda: len(fake_llm.chat_requests) == 1, what="A's model request")
            tg.push_message(user_id=1002, chat_id=1002, text="a quick one")
            [b_reply] = await tg.wait_for(sends(tg, 1002))  # B is answered while A is still held
            assert not a_released.is_set() and tg.sent(1001) == []
            a_released.set()
            [a_reply] = await tg.wait_for(sends(tg, 1001))
    assert b_reply.params["text"] == "echo: a quick one" and a_reply.params["text"] == "slow answer for A"
    assert tg.calls.index(b_reply) < tg.calls.index(a_reply)


async def test_turns_within_one_chat_stay_in_order(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.append(Scripted(content="first, slowly", delay_s=0.5))
    async with fakes() as tg, open_runtime(settings_for(tmp_path, tg, fake_llm)):
        tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text="one")
        await eventually(lambda: len(fake_llm.chat_requests) == 1, what="the first model request")
        for text in ("two", "three", "four"):
            tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text=text)
        await tg.wait_for(sends(tg), 4)
    assert [m["text"] for m in tg.sent()] == ["first, slowly", "echo: two", "echo: three", "echo: four"]
    assert [last_user(r) for r in fake_llm.chat_requests] == ["one", "two", "three", "four"]


async def test_long_reply_is_split_at_the_utf16_limit(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    words = [f"line {i} 🚀 ✨ 👩‍💻 ok" + ("\n" if i % 7 == 6 else " ") for i in range(520)]
    long_text = "".join(words)[:9000].strip()
    assert utf16_len(long_text) > 2 * 4096
    fake_llm.reply(long_text)
    async with fakes() as tg, open_runtime(settings_for(tmp_path, tg, fake_llm)):
        tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text="tell me everything")
        await tg.wait_for(sends(tg), 3)
    # the runtime is closed (the turn finished): nothing further can follow
    parts = [m["text"] for m in tg.sent(OPERATOR)]
    assert len(parts) == 3
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert "".join(parts) == long_text


async def test_approval_card_keyboard_and_a_strangers_press_changes_nothing(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    smtp = {"host": "127.0.0.1", "port": free_port(), "from_addr": "me@example.org", "security": "none"}
    async with fakes() as tg:
        settings = settings_for(tmp_path, tg, fake_llm, smtp=smtp)
        async with open_runtime(settings) as rt:
            tg.push_message(user_id=OPERATOR, chat_id=OPERATOR, text="/email ana@example.org Proposal | Hi Ana")
            [card] = await tg.wait_for(sends(tg))
            assert "ana@example.org" in card.params["text"] and "Hi Ana" in card.params["text"]
            rows = card.params["reply_markup"]["inline_keyboard"]
            buttons = [button for row in rows for button in row]
            assert [b["text"] for b in buttons] == ["Approve", "Edit", "Reject"]
            assert all(len(b["callback_data"].encode()) <= 64 for b in buttons)
            approve = buttons[0]["callback_data"]
            verb, approval_id, _nonce = approve.split(":")
            assert verb == "ap"
            # the card's message id is stored once sendMessage has returned

            async def card_stored() -> bool:
                row = await rt.approvals.store.get(approval_id)
                return row is not None and bool(row.cards) and bool(row.cards[0].message_id)

            await eventually_async(card_stored, what="the card's message id")
            shown = await rt.approvals.store.get(approval_id)
            assert shown is not None and shown.state == "pending" and len(shown.cards) == 1
            message_id = int(shown.cards[0].message_id)
            tg.push_callback(user_id=STRANGER, chat_id=OPERATOR, message_id=message_id, data=approve)
            denied = await wait_events(rt, "access.deny", 1)
            await tg.wait_for(sends(tg), 2)  # the stranger's one refusal
            row = await rt.approvals.store.get(approval_id)
            decided = await rt.db.events(kind="approval.decided")
    assert denied[0].actor == f"telegram:{STRANGER}" and denied[0].payload["kind"] == "callback"
    assert row is not None and row.state == "pending" and row.decided_by is None
    assert decided == []
    assert [m["text"] for m in tg.sent()][1:] == [REFUSAL]
    assert not [c for c in tg.calls if c.method == "editMessageText"]
    assert fake_llm.requests == []

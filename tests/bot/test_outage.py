"""Telegram refusing connections for a while, around a real `coo run`: the process never dies of it,
an answer is delivered once Telegram is back, and one that cannot be delivered stays due (I3).

The fake Bot API stops listening and listens again on the same port when the test says so.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.bot.test_crash_recovery import TOKEN, bot, bot_env
from tests.bot.test_stop import inbox_states, replies, stop_with, until_logged
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import free_port
from tests.fakes.telegram_api import Call, FakeTelegram


def model_env(tg: FakeTelegram, llm: FakeOpenAI, data_dir: Path) -> dict[str, str]:
    return bot_env(
        tg, data_dir, free_port(), COO_LLM__BASE_URL=llm.base_url, COO_LLM__API_KEY=llm.api_key,
        COO_MEMORY__SEMANTIC="false",
    )  # fmt: skip


async def test_an_answer_ready_during_an_outage_is_delivered_once_telegram_is_back(tmp_path: Path) -> None:
    async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
        llm.gate = asyncio.Event()
        llm.reply("here is the answer")
        async with bot(model_env(tg, llm, tmp_path)) as proc:
            tg.push_message(1001, 1001, "how are we doing?")
            await eventually(lambda: len(llm.chat_requests) == 1, timeout=60, what="the model call")
            await tg.go_down()
            await until_logged(tmp_path, "telegram polling failed")
            llm.gate.set()  # the answer is ready while Telegram refuses connections
            await until_logged(tmp_path, "telegram: sending failed")
            await tg.come_back()
            await tg.wait_for(lambda c: bool(replies(tg, "here is the answer")), timeout=60)
            await eventually(lambda: [s for _, s in inbox_states(tmp_path)] == ["done"], what="the update done")
            assert await stop_with(proc) == 0
    assert len(replies(tg, "here is the answer")) == 1 and len(llm.chat_requests) == 1


async def test_an_answer_still_undelivered_at_a_stop_is_delivered_after_the_restart(tmp_path: Path) -> None:
    async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
        llm.gate = asyncio.Event()
        llm.reply("here is the answer")
        # The stop waits out its grace while Telegram is down: a short one (the default's bound is tested in test_stop).
        env = {**model_env(tg, llm, tmp_path), "COO_STOP_GRACE_S": "1"}
        async with bot(env) as proc:
            tg.push_message(1001, 1001, "how are we doing?")
            await eventually(lambda: len(llm.chat_requests) == 1, timeout=60, what="the model call")
            await tg.go_down()
            await until_logged(tmp_path, "telegram polling failed")
            llm.gate.set()
            await until_logged(tmp_path, "telegram: sending failed")
            assert await stop_with(proc) == 0  # Telegram is still down
        assert [status for _, status in inbox_states(tmp_path)] == ["pending"]  # never done unanswered
        await tg.come_back()
        async with bot(env) as restarted:
            await tg.wait_for(lambda c: bool(replies(tg, "here is the answer")), timeout=60)
            assert await stop_with(restarted) == 0
    assert len(replies(tg, "here is the answer")) == 1
    assert len(llm.chat_requests) == 1  # the answer was kept: the model is not asked (and paid) again
    assert [status for _, status in inbox_states(tmp_path)] == ["done"]


async def test_telegram_gone_while_the_bot_starts_does_not_end_the_process(tmp_path: Path) -> None:
    """Polling began, then Telegram went away while the rest loaded: the command menu (set after the
    build) is retried instead of failing the start, and the bot answers once Telegram is back."""
    async with FakeTelegram(token=TOKEN) as tg:
        env = bot_env(tg, tmp_path, free_port(), COO_MEMORY__SEMANTIC="false")
        outage: list[asyncio.Task[None]] = []

        def on_first_poll(call: Call) -> None:
            if call.method == "getUpdates" and not outage:
                outage.append(asyncio.create_task(tg.go_down()))

        tg.on_call = on_first_poll
        async with bot(env) as proc:
            await until_logged(tmp_path, "setMyCommands failed")
            await until_logged(tmp_path, "solo-coo is running.")
            assert proc.returncode is None
            tg.on_call = None
            await tg.come_back()
            await tg.wait_for(lambda c: c.method == "setMyCommands" and c.status == 200, timeout=60)
            tg.push_message(1001, 1001, "/status")
            await tg.wait_for("sendMessage", timeout=60)
            assert await stop_with(proc) == 0
    assert "channels: telegram" in tg.sent()[0]["text"]
